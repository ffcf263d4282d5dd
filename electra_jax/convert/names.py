"""One table between electra_jax and Hugging Face ELECTRA: config fields and parameter names.

HF import, HF export (and through them the TF import) and the torch benchmark all read these,
so a field or a weight is named in one place. HF Linear weights are [out, in], ours [in, out].
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from electra_jax.model.config import EncoderConfig, ModelConfig

# (ElectraConfig key, our field, ElectraConfig's default): `tower.` fields are one tower's
# EncoderConfig, the others ModelConfig's; hidden_act has no field (always the exact GELU).
HF_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("vocab_size", "vocab_size", 30522),
    ("embedding_size", "embedding_size", 128),
    ("hidden_size", "tower.hidden_size", 256),
    ("num_hidden_layers", "tower.num_layers", 12),
    ("num_attention_heads", "tower.num_heads", 4),
    ("intermediate_size", "tower.intermediate_size", 1024),
    ("hidden_act", "", "gelu"),
    ("hidden_dropout_prob", "hidden_dropout", 0.1),
    ("attention_probs_dropout_prob", "attention_dropout", 0.1),
    ("max_position_embeddings", "max_position_embeddings", 512),
    ("type_vocab_size", "type_vocab_size", 2),
    ("initializer_range", "initializer_range", 0.02),
    ("layer_norm_eps", "layer_norm_eps", 1e-12),
)
HF_DEFAULTS: dict[str, Any] = {key: default for key, _, default in HF_FIELDS}


def hf_config_fields(config: ModelConfig, tower: EncoderConfig) -> dict[str, Any]:
    """ElectraConfig keyword arguments for one tower of `config` (every HF_FIELDS key)."""
    out = {}
    for key, ours, default in HF_FIELDS:
        source, _, name = ours.rpartition(".")
        out[key] = getattr(tower if source else config, name) if name else default
    return out


def hf_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """{our field: value} of an HF config dict (tower fields under EncoderConfig's names)."""
    out = {}
    for key, ours, default in HF_FIELDS:
        if ours:
            value = cfg.get(key, default)
            out[ours.removeprefix("tower.")] = float(value) if isinstance(default, float) else value
    return out


def hf_tower(cfg: Mapping[str, Any]) -> EncoderConfig:
    """The tower shape an HF config dict describes."""
    fields = hf_fields(cfg)
    return EncoderConfig(**{f.name: fields[f.name] for f in dataclasses.fields(EncoderConfig)})


# Our module path -> (HF module, kernel input dims). In a path one tower's group is renamed
# `tower`; {i} is a layer index. Our leaves map by HF_LEAVES, kernels are transposed.
_LAYER = "electra.encoder.layer.{i}"
HF_MODULES: dict[str, tuple[str, int]] = {
    "embeddings": ("electra.embeddings", 0),
    "embeddings/LayerNorm": ("electra.embeddings.LayerNorm", 0),
    "tower/embeddings_project": ("electra.embeddings_project", 1),
    "tower/layer_{i}/attention/query": (f"{_LAYER}.attention.self.query", 1),
    "tower/layer_{i}/attention/key": (f"{_LAYER}.attention.self.key", 1),
    "tower/layer_{i}/attention/value": (f"{_LAYER}.attention.self.value", 1),
    "tower/layer_{i}/attention/output": (f"{_LAYER}.attention.output.dense", 2),  # [N, D, H]
    "tower/layer_{i}/attention_LayerNorm": (f"{_LAYER}.attention.output.LayerNorm", 0),
    "tower/layer_{i}/intermediate": (f"{_LAYER}.intermediate.dense", 1),
    "tower/layer_{i}/output": (f"{_LAYER}.output.dense", 1),
    "tower/layer_{i}/output_LayerNorm": (f"{_LAYER}.output.LayerNorm", 0),
    "discriminator_head/dense": ("discriminator_predictions.dense", 1),
    "discriminator_head/dense_prediction": ("discriminator_predictions.dense_prediction", 1),
    "generator_head/dense": ("generator_predictions.dense", 1),
    "generator_head/LayerNorm": ("generator_predictions.LayerNorm", 0),
    "generator_head": ("generator_lm_head", 0),  # output_bias; the weight is the word table
}
HF_LEAVES = {"kernel": "weight", "scale": "weight", "output_bias": "bias"} | {
    f"{t}_embeddings": f"{t}_embeddings.weight" for t in ("word", "position", "token_type")
}


def hf_layout(path: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Our parameter path (tower group renamed `tower`) and shape -> (HF key, HF shape)."""
    module, leaf = path.rsplit("/", 1)
    hf_module, fan_in = HF_MODULES[re.sub(r"layer_\d+", "layer_{i}", module)]
    layer = re.search(r"layer_(\d+)", module)
    key = f"{hf_module.format(i=layer.group(1) if layer else '')}.{HF_LEAVES.get(leaf, leaf)}"
    if leaf == "kernel":  # [in..., out...] -> [out, in]
        return key, (math.prod(shape[fan_in:]), math.prod(shape[:fan_in]))
    return key, (math.prod(shape),) if leaf.endswith("bias") else tuple(shape)


def to_hf(path: str, value: Any) -> tuple[str, np.ndarray]:
    """One of our parameters -> (HF key, float32 HF array)."""
    key, shape = hf_layout(path, np.shape(value))
    array = np.asarray(value, np.float32)
    array = array.reshape(shape[::-1]).T if path.endswith("kernel") else array.reshape(shape)
    return key, np.ascontiguousarray(array)


def from_hf(path: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An HF array already checked against hf_layout's shape -> our parameter of `shape`."""
    return (array.T if path.endswith("kernel") else array).reshape(shape)
