"""Hugging Face `transformers` ELECTRA <-> electra_jax parameters, configs and directories.

HF layout (transformers 5.x, `modeling_electra.py`): ElectraForPreTraining holds
`electra.{embeddings, embeddings_project, encoder.layer.i}` and `discriminator_predictions.
{dense, dense_prediction}`; ElectraForMaskedLM holds its own `electra.*` (the generator) plus
`generator_predictions.{dense, LayerNorm}` and `generator_lm_head` (weight tied to the word
embeddings, bias = our `generator_head/output_bias`). Linear weights are [out, in] (ours are
[in, out]); attention projections are split into heads as [N * D] = head-major.

In our default `tied` layout the two towers share one embedding block: converting a generator
and a discriminator keeps the discriminator's tables (the released checkpoints have identical
ones) and warns when the generator's differ, or keeps both with `untied=True`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from electra_jax.cli import warn
from electra_jax.data.tokenizer import Tokenizer, WordPieceTokenizer
from electra_jax.errors import UserError
from electra_jax.files.storage import atomic_directory, write_json
from electra_jax.model.config import EncoderConfig, ModelConfig, default_num_heads
from electra_jax.model.shapes import check_param_shapes

# ElectraConfig's defaults (transformers 5.x), for config.json files that omit a field.
HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "embedding_size": 128,
    "hidden_size": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
}
# Fields both towers must agree on (one shared embedding block, one config).
SHARED_FIELDS = (
    "vocab_size",
    "embedding_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
)
# Non-persistent buffers some transformers versions saved; never weights.
IGNORED_KEY_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")
EMBEDDING_TOLERANCE = 1e-6
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")

Params = dict[str, Any]
StateDict = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- configs


def _hf(cfg: Mapping[str, Any], key: str) -> Any:
    return cfg.get(key, HF_DEFAULTS[key])


def check_hf_config(cfg: Mapping[str, Any], what: str) -> None:
    """Rejects HF configs our model cannot reproduce exactly (one line naming the field)."""
    for key, default in HF_DEFAULTS.items():  # a hand-edited config.json: "hidden_size": "256"
        value = _hf(cfg, key)
        if isinstance(default, int):
            ok, expected = isinstance(value, int) and value > 0, "a positive integer"
        elif isinstance(default, float):
            ok, expected = isinstance(value, int | float), "a number"
        else:
            ok, expected = isinstance(value, str), "a string"
        if not ok or isinstance(value, bool):
            raise UserError(f"{what}: {key}={value!r} should be {expected}; fix config.json")
    act = _hf(cfg, "hidden_act")
    if act != "gelu":
        raise UserError(
            f"{what}: hidden_act={act!r}; only 'gelu' (exact erf GELU, the original's) is supported"
        )
    position_type = cfg.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise UserError(f"{what}: position_embedding_type={position_type!r}; expected absolute")
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        raise UserError(f"{what}: decoder / cross-attention ELECTRA is not supported")
    hidden, heads = _hf(cfg, "hidden_size"), _hf(cfg, "num_attention_heads")
    if hidden % heads:
        raise UserError(f"{what}: hidden_size={hidden} is not divisible by {heads} heads")


def hf_tower(cfg: Mapping[str, Any]) -> EncoderConfig:
    """The tower shape an HF ElectraConfig describes."""
    return EncoderConfig(
        num_layers=_hf(cfg, "num_hidden_layers"),
        hidden_size=_hf(cfg, "hidden_size"),
        num_heads=_hf(cfg, "num_attention_heads"),
        intermediate_size=_hf(cfg, "intermediate_size"),
    )


def hf_to_model_config(
    disc_cfg: Mapping[str, Any] | None,
    gen_cfg: Mapping[str, Any] | None,
    untied: bool = False,
) -> ModelConfig:
    """ModelConfig from one or two HF configs; the generator's shape becomes fractions.

    With only a generator, its tower is described as the discriminator shape with fractions
    1.0 (only generator parameters are then converted).
    """
    if disc_cfg is None and gen_cfg is None:
        raise UserError("nothing to convert: pass a discriminator and/or a generator")
    for cfg, what in ((disc_cfg, "discriminator config"), (gen_cfg, "generator config")):
        if cfg is not None:
            check_hf_config(cfg, what)
    base = disc_cfg if disc_cfg is not None else gen_cfg
    assert base is not None
    if disc_cfg is not None and gen_cfg is not None:
        for key in SHARED_FIELDS:
            if _hf(disc_cfg, key) != _hf(gen_cfg, key):
                raise UserError(
                    f"generator {key}={_hf(gen_cfg, key)} differs from the discriminator's "
                    f"{_hf(disc_cfg, key)}; they must share one embedding block"
                )
    disc = hf_tower(base)
    config = ModelConfig(
        vocab_size=_hf(base, "vocab_size"),
        embedding_size=_hf(base, "embedding_size"),
        hidden_size=disc.hidden_size,
        num_layers=disc.num_layers,
        num_heads=None if disc.num_heads == default_num_heads(disc.hidden_size) else disc.num_heads,
        intermediate_size=(
            None if disc.intermediate_size == 4 * disc.hidden_size else disc.intermediate_size
        ),
        max_position_embeddings=_hf(base, "max_position_embeddings"),
        type_vocab_size=_hf(base, "type_vocab_size"),
        hidden_dropout=float(_hf(base, "hidden_dropout_prob")),
        attention_dropout=float(_hf(base, "attention_probs_dropout_prob")),
        initializer_range=float(_hf(base, "initializer_range")),
        layer_norm_eps=float(_hf(base, "layer_norm_eps")),
        generator_hidden_size=1.0,
        generator_layers=1.0,
        embedding_sharing="untied" if untied else "tied",
    )
    if gen_cfg is None:
        return config
    gen = hf_tower(gen_cfg)
    if disc_cfg is not None:
        config = config.replace(
            generator_hidden_size=gen.hidden_size / disc.hidden_size,
            generator_layers=gen.num_layers / disc.num_layers,
        )
    if config.generator != gen:
        raise UserError(
            f"generator shape {gen} is not the original's derived shape {config.generator} "
            "(heads = max(1, hidden // 64), FFN = 4 x hidden); it cannot be represented"
        )
    return config


def model_config_to_hf(
    config: ModelConfig, tower: EncoderConfig, architecture: str, pad_token_id: int = 0
) -> dict[str, Any]:
    """An HF ElectraConfig dict (config.json contents) for one tower of `config`."""
    return {
        "architectures": [architecture],
        "model_type": "electra",
        "vocab_size": config.vocab_size,
        "embedding_size": config.embedding_size,
        "hidden_size": tower.hidden_size,
        "num_hidden_layers": tower.num_layers,
        "num_attention_heads": tower.num_heads,
        "intermediate_size": tower.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": pad_token_id,
        "tie_word_embeddings": True,
    }


# ----------------------------------------------------------------------------- HF -> ours


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor or array-like as a float32 (floating) numpy array."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return array


class _Weights:
    """An HF state dict with the `electra.` prefix made optional; records which keys were used."""

    def __init__(self, state_dict: Mapping[str, Any], what: str):
        self.what = what
        self.arrays: StateDict = {}
        for key, value in state_dict.items():
            if key.endswith(IGNORED_KEY_SUFFIXES):
                continue
            name = key.removeprefix("electra.")
            self.arrays[name] = to_numpy(value)
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.arrays

    def get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self.arrays:
            raise UserError(f"{self.what}: weight {key!r} is missing (not an ELECTRA checkpoint?)")
        array = self.arrays[key]
        if array.shape != shape:
            raise UserError(
                f"{self.what}: weight {key!r} has shape {array.shape}; its config implies {shape}"
            )
        self.used.add(key)
        return array

    def dense(self, key: str, fan_in: int, fan_out: int) -> Params:
        return {
            "kernel": self.get(f"{key}.weight", (fan_out, fan_in)).T,
            "bias": self.get(f"{key}.bias", (fan_out,)),
        }

    def layer_norm(self, key: str, width: int) -> Params:
        return {
            "scale": self.get(f"{key}.weight", (width,)),
            "bias": self.get(f"{key}.bias", (width,)),
        }

    def warn_unused(self) -> None:
        unused = sorted(set(self.arrays) - self.used)
        if unused:
            shown = ", ".join(unused[:3]) + (", ..." if len(unused) > 3 else "")
            warn(f"{self.what}: ignored {len(unused)} weight(s) not part of ELECTRA ({shown})")


def _embeddings_from_hf(w: _Weights, config: ModelConfig) -> Params:
    E = config.embedding_size
    return {
        "word_embeddings": w.get("embeddings.word_embeddings.weight", (config.vocab_size, E)),
        "position_embeddings": w.get(
            "embeddings.position_embeddings.weight", (config.max_position_embeddings, E)
        ),
        "token_type_embeddings": w.get(
            "embeddings.token_type_embeddings.weight", (config.type_vocab_size, E)
        ),
        "LayerNorm": w.layer_norm("embeddings.LayerNorm", E),
    }


def _tower_from_hf(w: _Weights, config: ModelConfig, tower: EncoderConfig) -> Params:
    """`embeddings_project` and `layer_i` of one tower, kernels reshaped to DenseGeneral's."""
    H, N, D, F = tower.hidden_size, tower.num_heads, tower.head_dim, tower.intermediate_size
    out: Params = {}
    if config.embedding_size != H:
        out["embeddings_project"] = w.dense("embeddings_project", config.embedding_size, H)
    for i in range(tower.num_layers):
        p = f"encoder.layer.{i}"
        attention: Params = {}
        for name in ("query", "key", "value"):
            proj = w.dense(f"{p}.attention.self.{name}", H, H)
            attention[name] = {
                "kernel": proj["kernel"].reshape(H, N, D),
                "bias": proj["bias"].reshape(N, D),
            }
        proj = w.dense(f"{p}.attention.output.dense", H, H)
        attention["output"] = {"kernel": proj["kernel"].reshape(N, D, H), "bias": proj["bias"]}
        out[f"layer_{i}"] = {
            "attention": attention,
            "attention_LayerNorm": w.layer_norm(f"{p}.attention.output.LayerNorm", H),
            "intermediate": w.dense(f"{p}.intermediate.dense", H, F),
            "output": w.dense(f"{p}.output.dense", F, H),
            "output_LayerNorm": w.layer_norm(f"{p}.output.LayerNorm", H),
        }
    extra = f"encoder.layer.{tower.num_layers}.attention.self.query.weight"
    if w.has(extra):
        raise UserError(
            f"{w.what}: has more than num_hidden_layers={tower.num_layers} layers; fix config.json"
        )
    return out


def _max_abs_diff(a: Params, b: Params) -> float:
    """Largest absolute difference between two same-structured trees of arrays."""
    if isinstance(a, dict):
        return max(_max_abs_diff(a[k], b[k]) for k in a)
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def hf_to_params(
    disc_state_dict: Mapping[str, Any] | None,
    gen_state_dict: Mapping[str, Any] | None,
    disc_hf_config: Mapping[str, Any] | None,
    gen_hf_config: Mapping[str, Any] | None,
    untied: bool = False,
) -> tuple[ModelConfig, Params]:
    """HF ElectraForPreTraining / ElectraForMaskedLM weights -> (ModelConfig, our params).

    Either side may be None (discriminator-only or generator-only conversion). A
    discriminator without `discriminator_predictions` (a bare ElectraModel or a fine-tuned
    encoder) converts without `discriminator_head`, with a warning.
    """
    if (disc_state_dict is None) != (disc_hf_config is None) or (gen_state_dict is None) != (
        gen_hf_config is None
    ):
        raise UserError("each converted tower needs both its weights and its config")
    both = disc_hf_config is not None and gen_hf_config is not None
    config = hf_to_model_config(disc_hf_config, gen_hf_config, untied=untied and both)
    params: Params = {}
    disc_embeddings = gen_embeddings = None
    if disc_state_dict is not None:
        w = _Weights(disc_state_dict, "discriminator")
        disc_embeddings = _embeddings_from_hf(w, config)
        params["discriminator"] = _tower_from_hf(w, config, config.discriminator)
        H = config.hidden_size
        if w.has("discriminator_predictions.dense.weight"):
            params["discriminator_head"] = {
                "dense": w.dense("discriminator_predictions.dense", H, H),
                "dense_prediction": w.dense("discriminator_predictions.dense_prediction", H, 1),
            }
        else:
            warn("discriminator has no discriminator_predictions head; converted the encoder only")
        w.warn_unused()
    if gen_state_dict is not None:
        w = _Weights(gen_state_dict, "generator")
        gen_embeddings = _embeddings_from_hf(w, config)
        params["generator"] = _tower_from_hf(w, config, config.generator)
        params["generator_head"] = {
            "dense": w.dense(
                "generator_predictions.dense", config.generator.hidden_size, config.embedding_size
            ),
            "LayerNorm": w.layer_norm("generator_predictions.LayerNorm", config.embedding_size),
            "output_bias": w.get("generator_lm_head.bias", (config.vocab_size,)),
        }
        if w.has("generator_lm_head.weight"):
            lm_weight = w.get(
                "generator_lm_head.weight", (config.vocab_size, config.embedding_size)
            )
            if _max_abs_diff(lm_weight, gen_embeddings["word_embeddings"]) > EMBEDDING_TOLERANCE:
                raise UserError(
                    "generator: generator_lm_head.weight differs from its word embeddings "
                    "(untied output layer); electra_jax ties the generator softmax to them"
                )
        w.warn_unused()
    if disc_embeddings is not None:
        params["embeddings"] = disc_embeddings
        if gen_embeddings is not None:
            if config.embedding_sharing == "untied":
                params["generator_embeddings"] = gen_embeddings
            else:
                diff = _max_abs_diff(gen_embeddings, disc_embeddings)
                if diff > EMBEDDING_TOLERANCE:
                    warn(
                        f"generator embeddings differ from the discriminator's (max |diff| "
                        f"{diff:.3g}); kept the discriminator's (use --untied to keep both)"
                    )
    else:
        params["embeddings"] = gen_embeddings
    check_param_shapes(config, params, "converted model")
    return config, params


# ----------------------------------------------------------------------------- ours -> HF


def _dense_to_hf(prefix: str, dense: Params, fan_in_dims: int = 1) -> StateDict:
    """A DenseGeneral kernel ([in..., out...]) -> HF Linear weight [out, in] and flat bias."""
    kernel = np.asarray(dense["kernel"])
    kernel = kernel.reshape(int(np.prod(kernel.shape[:fan_in_dims])), -1)
    return {f"{prefix}.weight": kernel.T, f"{prefix}.bias": np.asarray(dense["bias"]).reshape(-1)}


def _layer_norm_to_hf(prefix: str, norm: Params) -> StateDict:
    return {
        f"{prefix}.weight": np.asarray(norm["scale"]),
        f"{prefix}.bias": np.asarray(norm["bias"]),
    }


def _embeddings_to_hf(embeddings: Params, word_VxE: np.ndarray) -> StateDict:
    p = "electra.embeddings"
    return {
        f"{p}.word_embeddings.weight": word_VxE,
        f"{p}.position_embeddings.weight": np.asarray(embeddings["position_embeddings"]),
        f"{p}.token_type_embeddings.weight": np.asarray(embeddings["token_type_embeddings"]),
        **_layer_norm_to_hf(f"{p}.LayerNorm", embeddings["LayerNorm"]),
    }


def _tower_to_hf(tower: Params) -> StateDict:
    out: StateDict = {}
    if "embeddings_project" in tower:
        out.update(_dense_to_hf("electra.embeddings_project", tower["embeddings_project"]))
    i = 0
    while f"layer_{i}" in tower:
        layer, p = tower[f"layer_{i}"], f"electra.encoder.layer.{i}"
        attention = layer["attention"]
        for name in ("query", "key", "value"):
            out.update(_dense_to_hf(f"{p}.attention.self.{name}", attention[name]))
        out.update(_dense_to_hf(f"{p}.attention.output.dense", attention["output"], fan_in_dims=2))
        out.update(
            _layer_norm_to_hf(f"{p}.attention.output.LayerNorm", layer["attention_LayerNorm"])
        )
        out.update(_dense_to_hf(f"{p}.intermediate.dense", layer["intermediate"]))
        out.update(_dense_to_hf(f"{p}.output.dense", layer["output"]))
        out.update(_layer_norm_to_hf(f"{p}.output.LayerNorm", layer["output_LayerNorm"]))
        i += 1
    return out


def params_to_hf(
    params: Params, config: ModelConfig, pad_token_id: int = 0
) -> tuple[StateDict | None, StateDict | None, dict | None, dict | None]:
    """Ours -> (disc state dict, gen state dict, disc config.json dict, gen config.json dict).

    A side is None when `params` lacks it. "gdes" exports the discriminator's effective table
    (generator table + delta); "untied" exports each tower's own embeddings. With
    `electra_objective=False` the masked-LM model is the discriminator tower plus the
    generator head.
    """
    import flax.linen as nn

    params = nn.unbox(params)
    check_param_shapes(config, params, "model")
    embeddings = params["embeddings"]
    disc_sd = gen_sd = disc_cfg = gen_cfg = None
    if "discriminator" in params and config.electra_objective:
        word_VxE = np.asarray(embeddings["word_embeddings"])
        if config.embedding_sharing == "gdes" and "gdes" in params:
            word_VxE = word_VxE + np.asarray(params["gdes"]["word_embeddings_delta"])
        disc_sd = {
            **_embeddings_to_hf(embeddings, word_VxE),
            **_tower_to_hf(params["discriminator"]),
        }
        architecture = "ElectraModel"
        if "discriminator_head" in params:
            head = params["discriminator_head"]
            disc_sd.update(_dense_to_hf("discriminator_predictions.dense", head["dense"]))
            disc_sd.update(
                _dense_to_hf("discriminator_predictions.dense_prediction", head["dense_prediction"])
            )
            architecture = "ElectraForPreTraining"
        disc_cfg = model_config_to_hf(config, config.discriminator, architecture, pad_token_id)
    tower_name = "generator" if config.electra_objective else "discriminator"
    if "generator_head" in params and tower_name in params:
        gen_embeddings = params.get("generator_embeddings", embeddings)
        if config.embedding_sharing != "untied":
            gen_embeddings = embeddings
        word_VxE = np.asarray(gen_embeddings["word_embeddings"])
        head = params["generator_head"]
        gen_sd = {
            **_embeddings_to_hf(gen_embeddings, word_VxE),
            **_tower_to_hf(params[tower_name]),
            **_dense_to_hf("generator_predictions.dense", head["dense"]),
            **_layer_norm_to_hf("generator_predictions.LayerNorm", head["LayerNorm"]),
            "generator_lm_head.bias": np.asarray(head["output_bias"]),
        }
        gen_cfg = model_config_to_hf(config, config.generator, "ElectraForMaskedLM", pad_token_id)
    as_f32 = lambda sd: (
        None if sd is None else {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}
    )
    return as_f32(disc_sd), as_f32(gen_sd), disc_cfg, gen_cfg


# ----------------------------------------------------------------------------- directories


def _load_safetensors(path: str) -> StateDict:
    from safetensors import safe_open

    out: StateDict = {}
    try:
        with safe_open(path, framework="np") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                out[key] = f.get_tensor(key)
    except TypeError:  # bfloat16 has no numpy dtype: read through torch
        with safe_open(path, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118
                out[key] = to_numpy(f.get_tensor(key))
    return out


def read_hf_weights(directory: str) -> StateDict:
    """Reads model.safetensors (single or sharded) or pytorch_model.bin from an HF directory."""
    path = next(
        (
            os.path.join(directory, n)
            for n in WEIGHT_FILES
            if os.path.isfile(os.path.join(directory, n))
        ),
        None,
    )
    if path is None:
        raise UserError(
            f"{directory} has no weights file (expected one of {', '.join(WEIGHT_FILES)})"
        )
    try:
        if path.endswith(".index.json"):
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            out: StateDict = {}
            for shard in shards:
                out.update(_load_safetensors(os.path.join(directory, shard)))
            return out
        if path.endswith(".safetensors"):
            return _load_safetensors(path)
        try:
            import torch
        except ImportError as e:
            raise UserError(f"{path} needs PyTorch to read; pip install torch") from e
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: to_numpy(v) for k, v in state.items()}
    except UserError:
        raise
    except Exception as e:  # corrupt or truncated files raise many types
        raise UserError(
            f"cannot read weights {path} ({type(e).__name__}: {e}); the file is corrupt or "
            "truncated: re-download or re-save the checkpoint"
        ) from e


def read_hf_config(directory: str) -> dict[str, Any]:
    """Reads config.json of an HF ELECTRA directory."""
    path = os.path.join(directory, "config.json")
    if not os.path.isdir(directory):
        raise UserError(f"{directory} does not exist; pass a Hugging Face model directory")
    if not os.path.isfile(path):
        raise UserError(f"{directory} has no config.json; not a Hugging Face model directory")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(
            f"{path} is not valid JSON ({e}); expected the config.json that save_pretrained writes"
        ) from e
    if not isinstance(cfg, dict):
        raise UserError(
            f"{path} holds a JSON {type(cfg).__name__}; expected an ElectraConfig object"
        )
    if cfg.get("model_type", "electra") != "electra":
        raise UserError(f"{path}: model_type={cfg.get('model_type')!r}; expected electra")
    return cfg


def read_hf_tokenizer(directory: str) -> Tokenizer | None:
    """vocab.txt as a WordPieceTokenizer (lower-casing from tokenizer_config.json), else None."""
    vocab = os.path.join(directory, "vocab.txt")
    if not os.path.isfile(vocab):
        return None
    settings: dict[str, Any] = {}
    path = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(path):
        try:
            with open(path) as f:
                settings = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path} is not valid JSON ({e})") from e
    lowercase = bool(settings.get("do_lower_case", True))
    strip_accents = settings.get("strip_accents")
    return WordPieceTokenizer(
        vocab,
        lowercase=lowercase,
        strip_accents=lowercase if strip_accents is None else bool(strip_accents),
    )


def write_hf_dir(
    directory: str,
    state_dict: StateDict,
    hf_config: dict[str, Any],
    tokenizer: Tokenizer | None = None,
    overwrite: bool = False,
) -> str:
    """Writes config.json + model.safetensors (+ vocab.txt) atomically, for `from_pretrained`."""
    from safetensors.numpy import save_file

    directory = os.path.abspath(directory)
    with atomic_directory(directory, overwrite) as tmp:
        save_file(state_dict, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        write_json(os.path.join(tmp, "config.json"), hf_config)
        if isinstance(tokenizer, WordPieceTokenizer):
            tokenizer.save(tmp)
            tokenizer_config = {
                "tokenizer_class": "ElectraTokenizer",
                "do_lower_case": tokenizer.lowercase,
                "strip_accents": None
                if tokenizer.strip_accents == tokenizer.lowercase
                else tokenizer.strip_accents,
                "model_max_length": hf_config["max_position_embeddings"],
            }
            write_json(os.path.join(tmp, "tokenizer_config.json"), tokenizer_config)
        elif tokenizer is not None:
            warn(f"tokenizer kind {tokenizer.kind!r} is not exported to {directory}")
    return directory


def is_generator_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True for an ElectraForMaskedLM checkpoint (generator head, no discriminator head)."""
    keys = set(state_dict)
    return "generator_predictions.dense.weight" in keys and not any(
        k.startswith("discriminator_predictions.") for k in keys
    )
