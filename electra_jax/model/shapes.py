"""Checks a parameter tree against the shapes a ModelConfig implies (no arrays allocated).

Conversion and `detect` call this so that a mismatched checkpoint fails with one line naming
the parameter, instead of a Flax shape error deep inside `apply`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from electra_jax.errors import UserError
from electra_jax.model.config import ModelConfig
from electra_jax.model.electra import ElectraModel, init_params

MISMATCH_FIX = "the parameters and the model config disagree: re-export or re-convert it"


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Flat {"a/b/c": shape} of every parameter ElectraModel(config) creates."""
    tree = jax.eval_shape(lambda: nn.unbox(init_params(ElectraModel(config), jax.random.key(0))))
    return {path: tuple(leaf.shape) for path, leaf in flatten(tree).items()}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a/b/c": leaf}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a/b/c": leaf} -> nested dict."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, last = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return tree


def check_param_shapes(config: ModelConfig, params: Any, source: str) -> None:
    """Raises UserError naming the first parameter that is missing, extra or mis-shaped.

    Only the top-level groups present in `params` are checked (a discriminator-only export is
    a valid subset of the tree).
    """
    expected = expected_shapes(config)
    groups = set(params)
    unknown = sorted(groups - {path.split("/")[0] for path in expected})
    if unknown:
        raise UserError(f"{source}: unexpected parameter group(s) {unknown}; {MISMATCH_FIX}")
    actual = flatten(params)
    for path, shape in expected.items():
        if path.split("/")[0] not in groups:
            continue
        if path not in actual:
            raise UserError(f"{source}: parameter {path} is missing; {MISMATCH_FIX}")
        got = tuple(np.shape(actual[path]))
        if got != shape:
            raise UserError(
                f"{source}: parameter {path} has shape {got}, config implies {shape}; "
                + MISMATCH_FIX
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise UserError(f"{source}: unexpected parameter {extra[0]}; {MISMATCH_FIX}")
