"""Layer-wise learning-rate decay (RECIPE.md): lr × d^(n + 2 − depth), faithful by default.

Depths: the embeddings (and `embeddings_project`, and the GDES delta) 0, encoder layer i at
i + 1, the task head n + 2. With the original's n + 2 the top layer gets d² and nothing gets d
(google-research/electra issue #51). `fixed=True` uses n + 1 instead: the head keeps the full
lr, the top layer gets d, the embeddings d^(n + 1).
"""

from __future__ import annotations

import re
from typing import Any

import jax

from electra_jax.train.optimizer import path_name

_LAYER = re.compile(r"(?:^|/)layer_(\d+)(?:/|$)")
_EMBEDDING = re.compile(r"(?:^|/)(embeddings|embeddings_project|gdes)(?:/|$)")


def parameter_depth(name: str, num_layers: int) -> int:
    """Depth of one parameter from its path (`electra/discriminator/layer_3/...` -> 4)."""
    layer = _LAYER.search(name)
    if layer and "discriminator" in name:
        return int(layer.group(1)) + 1
    if _EMBEDDING.search(name):
        return 0
    return num_layers + 2  # the task head


def layerwise_multipliers(params: Any, num_layers: int, decay: float, fixed: bool = False) -> Any:
    """A tree of LR multipliers shaped like `params` (1.0 everywhere when decay == 1)."""
    top = num_layers + (1 if fixed else 2)

    def multiplier(path: tuple, _: Any) -> float:
        depth = min(parameter_depth(path_name(path), num_layers), top)
        return float(decay ** (top - depth))

    return jax.tree_util.tree_map_with_path(multiplier, params)
