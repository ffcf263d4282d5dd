"""Parameter trees against the shapes a ModelConfig implies (no arrays allocated), so a
mismatched checkpoint fails with one line naming the parameter, not a Flax error in `apply`."""

import functools
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
    return shapes_of(tree)


def shapes_of(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"a/b/c": shape} of a nested dict of arrays, ShapeDtypeStructs or checkpoint metadata."""
    return {path: tuple(leaf.shape) for path, leaf in flatten(tree).items()}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a/b/c": leaf}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flats = [flatten(v, f"{prefix}/{k}" if prefix else str(k)) for k, v in tree.items()]
    return {path: leaf for flat in flats for path, leaf in flat.items()}


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a/b/c": leaf} -> nested dict."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, last = path.split("/")
        functools.reduce(lambda node, key: node.setdefault(key, {}), parents, tree)[last] = value
    return tree


def check_param_shapes(config: ModelConfig, params: Any, source: str) -> None:
    """UserError naming the first missing, extra or mis-shaped parameter of the groups present."""
    expected, groups, actual = expected_shapes(config), set(params), flatten(params)
    if unknown := sorted(groups - {path.split("/")[0] for path in expected}):
        raise UserError(f"{source}: unexpected parameter group(s) {unknown}; {MISMATCH_FIX}")
    for path, shape in ((p, s) for p, s in expected.items() if p.split("/")[0] in groups):
        if path not in actual:
            raise UserError(f"{source}: parameter {path} is missing; {MISMATCH_FIX}")
        if (got := tuple(np.shape(actual[path]))) != shape:
            problem = f"parameter {path} has shape {got}, config implies {shape}"
            raise UserError(f"{source}: {problem}; {MISMATCH_FIX}")
    if extra := sorted(set(actual) - set(expected)):
        raise UserError(f"{source}: unexpected parameter {extra[0]}; {MISMATCH_FIX}")
