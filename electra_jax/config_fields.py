"""One path between config sections and frozen dataclasses, both ways.
Config files build a section from a dataclass's defaults (`section`), so a default is written
once; trainers build the dataclass from the section (`build`) with the run-level fields added."""

import dataclasses
from typing import Any, TypeVar

import ml_collections

from electra_jax.errors import UserError

T = TypeVar("T")


def section(
    cls: type, exclude: tuple[str, ...] = (), **overrides: Any
) -> ml_collections.ConfigDict:
    """A ConfigDict of `cls`'s fields with their defaults (minus `exclude`, plus `overrides`)."""
    fields = [f for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING]
    values = {f.name: f.default for f in fields if f.name not in exclude}
    return ml_collections.ConfigDict({**values, **overrides})


def build(cls: type[T], values: Any, where: str, **fields: Any) -> T:
    """`cls(**values, **fields)`; an unknown field or a rejected value is a one-line UserError."""
    values = dict(values.to_dict() if isinstance(values, ml_collections.ConfigDict) else values)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**{**values, **fields})
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from e
