"""The one mapping between electra_jax and Hugging Face ELECTRA: config fields and parameter
names/layouts, read by HF import and export (so TF import too) and the torch benchmark."""

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from electra_jax.errors import UserError
from electra_jax.model.config import EncoderConfig, ModelConfig, default_num_heads
from electra_jax.model.shapes import flatten

# ElectraConfig key -> (our ModelConfig field, ElectraConfig's default). The TOWER_FIELDS are
# one tower's (its EncoderConfig's); hidden_act has no field: always the exact erf GELU.
HF_FIELDS: dict[str, tuple[str | None, Any]] = {
    "vocab_size": ("vocab_size", 30522),
    "embedding_size": ("embedding_size", 128),
    "hidden_size": ("hidden_size", 256),
    "num_hidden_layers": ("num_layers", 12),
    "num_attention_heads": ("num_heads", 4),
    "intermediate_size": ("intermediate_size", 1024),
    "hidden_act": (None, "gelu"),
    "hidden_dropout_prob": ("hidden_dropout", 0.1),
    "attention_probs_dropout_prob": ("attention_dropout", 0.1),
    "max_position_embeddings": ("max_position_embeddings", 512),
    "type_vocab_size": ("type_vocab_size", 2),
    "initializer_range": ("initializer_range", 0.02),
    "layer_norm_eps": ("layer_norm_eps", 1e-12),
}
HF_DEFAULTS: dict[str, Any] = {key: default for key, (_, default) in HF_FIELDS.items()}
# Fields both towers must agree on (one shared embedding block, one config).
SHARED_FIELDS = "vocab_size embedding_size max_position_embeddings type_vocab_size layer_norm_eps"
TOWER_FIELDS = {field.name for field in dataclasses.fields(EncoderConfig)}


def hf_config_fields(
    config: ModelConfig, tower: EncoderConfig, embedding_size: int | None = None
) -> dict[str, Any]:
    """ElectraConfig keyword arguments (every HF_FIELDS key) for one tower of `config` whose
    tables are `embedding_size` wide (default E; an untied generator's: its own width)."""
    value = lambda ours: getattr(tower if ours in TOWER_FIELDS else config, ours)
    fields = {key: value(ours) if ours else d for key, (ours, d) in HF_FIELDS.items()}
    return fields | {"embedding_size": embedding_size or config.embedding_size}


def hf_fields(cfg: Mapping[str, Any], what: str) -> dict[str, Any]:
    """{our field: value} of an HF config dict (floats as floats), checked by check_hf_config."""
    check_hf_config(cfg, what)
    typed = lambda value, default: float(value) if isinstance(default, float) else value
    return {ours: typed(cfg.get(key, d), d) for key, (ours, d) in HF_FIELDS.items() if ours}


def check_hf_config(cfg: Mapping[str, Any], what: str) -> None:
    """Rejects HF configs our model cannot reproduce exactly (one line naming the field)."""
    values = HF_DEFAULTS | dict(cfg)
    for key, default in HF_DEFAULTS.items():  # a hand-edited "hidden_size": "256"
        value, kind = values[key], type(default)
        expected = {int: "a positive integer", float: "a number", str: "a string"}[kind]
        ok = isinstance(value, int | float if kind is float else kind)
        if not ok or isinstance(value, bool) or (kind is int and value <= 0):
            raise UserError(f"{what}: {key}={value!r} should be {expected}; fix config.json")
    if (act := values["hidden_act"]) != "gelu":
        raise UserError(f"{what}: hidden_act={act!r}; only 'gelu' (exact erf GELU) is supported")
    if (position_type := cfg.get("position_embedding_type", "absolute")) != "absolute":
        raise UserError(f"{what}: position_embedding_type={position_type!r}; expected absolute")
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        raise UserError(f"{what}: decoder / cross-attention ELECTRA is not supported")
    if (hidden := values["hidden_size"]) % (heads := values["num_attention_heads"]):
        raise UserError(f"{what}: hidden_size={hidden} is not divisible by {heads} heads")


def hf_to_model_config(
    disc_cfg: Mapping[str, Any] | None, gen_cfg: Mapping[str, Any] | None, untied: bool = False
) -> ModelConfig:
    """ModelConfig from one or two HF configs (the generator's shape as fractions of the other)."""
    given = {"discriminator": disc_cfg, "generator": gen_cfg}
    given = {side: cfg for side, cfg in given.items() if cfg is not None}
    if not given:
        raise UserError("nothing to convert: pass a discriminator and/or a generator")
    fields = {side: hf_fields(cfg, f"{side} config") for side, cfg in given.items()}
    shared = [k for k in SHARED_FIELDS.split() if not (untied and k == "embedding_size")]
    for key in shared if len(given) == 2 else ():  # same names as HF's
        if (disc_value := fields["discriminator"][key]) != (gen_value := fields["generator"][key]):
            raise UserError(f"generator {key}={gen_value} differs from the discriminator's "
                            f"{disc_value}; they must share one embedding block")  # fmt: skip
    tower = lambda f: EncoderConfig(**{k: v for k, v in f.items() if k in TOWER_FIELDS})
    base = next(iter(fields.values()))  # the discriminator's, if given
    disc, gen = tower(base), tower(fields.get("generator", base))
    if disc.num_heads == default_num_heads(disc.hidden_size):
        base["num_heads"] = None  # the original's derived shape: kept implicit
    if disc.intermediate_size == 4 * disc.hidden_size:
        base["intermediate_size"] = None
    gen_width = fields.get("generator", base)["embedding_size"]  # untied: its own tables
    own_width = untied and gen_width != gen.hidden_size  # a projection the original lacks
    config = ModelConfig(**base, embedding_sharing="untied" if untied else "tied",
                         generator_hidden_size=gen.hidden_size / disc.hidden_size,
                         generator_layers=gen.num_layers / disc.num_layers,
                         generator_embedding_size=gen_width if own_width else None)  # fmt: skip
    if gen_cfg is not None and config.generator != gen:
        raise UserError(f"generator shape {gen} is not the original's derived shape "
                        f"{config.generator} (heads = max(1, hidden // 64), FFN = 4 x hidden); "
                        "it cannot be represented")  # fmt: skip
    return config


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


def to_hf(parts: dict[str, Any]) -> dict[str, np.ndarray]:
    """{table role ("tower", "embeddings", a head): our subtree} -> HF state dict (float32)."""
    out = {}
    for path, value in flatten(parts).items():
        key, shape = hf_layout(path, np.shape(value))
        array = np.asarray(value, np.float32)
        array = array.reshape(shape[::-1]).T if path.endswith("kernel") else array
        out[key] = np.ascontiguousarray(array.reshape(shape))
    return out
