"""Hugging Face ELECTRA <-> electra_jax parameters (named by `convert.names`) and directories.
Our `tied` layout shares one embedding block: the discriminator's is kept, or both if untied."""

import importlib.util
import json
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from electra_jax.cli import warn
from electra_jax.convert import names
from electra_jax.data.tokenizer import Tokenizer, WordPieceTokenizer
from electra_jax.errors import UserError
from electra_jax.files.model_io import load_json
from electra_jax.model.config import ModelConfig
from electra_jax.model.shapes import check_param_shapes, expected_shapes, flatten, unflatten
from electra_jax.storage import absolute, atomic_directory, write_json

# Non-persistent buffers some transformers versions saved; never weights.
IGNORED_KEY_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")
EMBEDDING_TOLERANCE = 1e-6
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")

Params = dict[str, Any]
StateDict = dict[str, np.ndarray]


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() else value).numpy()
    array = np.asarray(value)
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array


def _read_side(
    state_dict: Mapping[str, Any], side: str, config: ModelConfig, expected: dict[str, Any]
) -> Params:
    """One HF model -> our embeddings, `side` tower and head, shaped as `expected` says."""
    keep = lambda key: not key.endswith(IGNORED_KEY_SUFFIXES)
    arrays = {k.removeprefix("electra."): to_numpy(v) for k, v in state_dict.items() if keep(k)}
    own = side == "generator" and config.embedding_sharing == "untied"
    tables = "generator_embeddings" if own else "embeddings"  # our group of its HF embeddings
    roles = {tables: "embeddings", side: "tower", f"{side}_head": f"{side}_head"}
    if side == "discriminator" and "discriminator_predictions.dense.weight" not in arrays:
        warn("discriminator has no discriminator_predictions head; converted the encoder only")
        del roles["discriminator_head"]
    flat, used = {}, set()
    for path, shape in expected.items():
        if (group := path.split("/")[0]) not in roles:
            continue
        key, hf_shape = names.hf_layout(roles[group] + path.removeprefix(group), shape)
        if (key := key.removeprefix("electra.")) not in arrays:
            raise UserError(f"{side}: weight {key!r} is missing (not an ELECTRA checkpoint?)")
        if (found := arrays[key].shape) != hf_shape:
            raise UserError(f"{side}: weight {key!r} has shape {found}, config implies {hf_shape}")
        used.add(key)
        array = arrays[key].T if path.endswith("kernel") else arrays[key]  # HF kernels: [out, in]
        flat[path] = array.reshape(shape)
    layers = getattr(config, side).num_layers
    if f"encoder.layer.{layers}.attention.self.query.weight" in arrays:
        raise UserError(f"{side}: has more than num_hidden_layers={layers} layers; fix config.json")
    if side == "generator" and "generator_lm_head.weight" in arrays:
        used.add("generator_lm_head.weight")
        lm_VxE, word_VxE = arrays["generator_lm_head.weight"], flat[f"{tables}/word_embeddings"]
        if lm_VxE.shape != word_VxE.shape or np.abs(lm_VxE - word_VxE).max() > EMBEDDING_TOLERANCE:
            raise UserError("generator: generator_lm_head.weight differs from its word "
                            "embeddings (untied output layer); electra_jax ties them")  # fmt: skip
    if unused := sorted(set(arrays) - used):
        shown = ", ".join(unused[:3]) + (", ..." if len(unused) > 3 else "")
        warn(f"{side}: ignored {len(unused)} weight(s) not part of ELECTRA ({shown})")
    return unflatten(flat)


def hf_to_params(
    disc_state_dict: Mapping[str, Any] | None, gen_state_dict: Mapping[str, Any] | None,
    disc_hf_config: Mapping[str, Any] | None, gen_hf_config: Mapping[str, Any] | None,
    untied: bool = False,
) -> tuple[ModelConfig, Params]:  # fmt: skip
    """HF ElectraForPreTraining / ElectraForMaskedLM (either may be None) -> (config, params)."""
    sides = {"discriminator": (disc_state_dict, disc_hf_config)}
    sides["generator"] = (gen_state_dict, gen_hf_config)
    if any((weights is None) != (cfg is None) for weights, cfg in sides.values()):
        raise UserError("each converted tower needs both its weights and its config")
    both = disc_hf_config is not None and gen_hf_config is not None
    config = names.hf_to_model_config(disc_hf_config, gen_hf_config, untied=untied and both)
    expected = expected_shapes(config)
    read = {s: _read_side(w, s, config, expected) for s, (w, _) in sides.items() if w is not None}
    disc, gen = read.get("discriminator", {}), read.get("generator", {})
    params = {**gen, **disc}  # the discriminator's embeddings win (untied: gen has its own)
    if both and config.embedding_sharing != "untied":
        flat_disc = flatten(disc["embeddings"])
        diffs = [np.max(np.abs(v - flat_disc[k])) for k, v in flatten(gen["embeddings"]).items()]
        if (diff := float(max(diffs))) > EMBEDDING_TOLERANCE:
            warn(f"generator embeddings differ from the discriminator's (max |diff| {diff:.3g}); "
                 "kept the discriminator's (use --untied to keep both)")  # fmt: skip
    return config, params


def params_to_hf(
    params: Params, config: ModelConfig, pad_token_id: int = 0
) -> tuple[StateDict | None, StateDict | None, dict | None, dict | None]:
    """Ours -> (disc state dict, gen state dict, disc config.json, gen config.json), or Nones."""
    params = nn.unbox(params)
    check_param_shapes(config, params, "model")
    fixed = {"model_type": "electra", "pad_token_id": pad_token_id, "tie_word_embeddings": True}

    def hf_config(tower: Any, arch: str, width: int | None = None) -> dict[str, Any]:
        return {"architectures": [arch], **fixed, **names.hf_config_fields(config, tower, width)}

    embeddings = params["embeddings"]
    disc_sd = gen_sd = disc_cfg = gen_cfg = None
    if "discriminator" in params and config.electra_objective:
        word_VxE = np.asarray(embeddings["word_embeddings"])
        if config.embedding_sharing == "gdes" and "gdes" in params:
            word_VxE = word_VxE + np.asarray(params["gdes"]["word_embeddings_delta"])
        head = {k: params[k] for k in ("discriminator_head",) if k in params}
        tables = {**embeddings, "word_embeddings": word_VxE}
        disc_sd = names.to_hf({"embeddings": tables, "tower": params["discriminator"], **head})
        architecture = "ElectraForPreTraining" if head else "ElectraModel"
        disc_cfg = hf_config(config.discriminator, architecture)
    (tower, *rest) = config.generator_towers  # two towers (Electric): no HF masked-LM model
    if "generator_head" in params and tower in params and not rest:
        if config.embedding_sharing == "untied":
            embeddings = params.get("generator_embeddings", embeddings)
        parts = {"embeddings": embeddings, "tower": params[tower]}
        gen_sd = names.to_hf(parts | {"generator_head": params["generator_head"]})
        width = config.generator_embedding_width  # an untied generator's tables: its own
        gen_cfg = hf_config(config.generator, "ElectraForMaskedLM", width)
    return disc_sd, gen_sd, disc_cfg, gen_cfg


def _load_safetensors(path: str) -> StateDict:
    try:
        with safe_open(path, framework="np") as f:
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a Mapping)
    except TypeError:  # bfloat16 has no numpy dtype: read through torch
        with safe_open(path, framework="pt") as f:
            return {key: to_numpy(f.get_tensor(key)) for key in f.keys()}  # noqa: SIM118


def read_hf_weights(directory: str) -> StateDict:
    """Reads model.safetensors (single or sharded) or pytorch_model.bin from an HF directory."""
    path = next((p for n in WEIGHT_FILES if os.path.isfile(p := os.path.join(directory, n))), "")
    if not path:
        expected = ", ".join(WEIGHT_FILES)
        raise UserError(f"{directory} has no weights file (expected one of {expected})")
    if path.endswith(".bin") and importlib.util.find_spec("torch") is None:
        raise UserError(f"{path} needs PyTorch to read; pip install torch")
    try:
        if path.endswith(".index.json"):
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            shard_paths = [os.path.join(directory, shard) for shard in shards]
            return {k: v for p in shard_paths for k, v in _load_safetensors(p).items()}
        if path.endswith(".safetensors"):
            return _load_safetensors(path)
        torch = importlib.import_module("torch")  # optional: only pytorch_model.bin needs it
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: to_numpy(v) for k, v in state.items()}
    except Exception as e:  # corrupt or truncated files raise many types
        raise UserError(
            f"cannot read weights {path} ({type(e).__name__}: {e}); the file is corrupt or "
            "truncated: re-download or re-save the checkpoint"
        ) from e


def read_hf_config(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, "config.json")
    if not os.path.isdir(directory):
        raise UserError(f"{directory} does not exist; pass a Hugging Face model directory")
    if not os.path.isfile(path):
        raise UserError(f"{directory} has no config.json; not a Hugging Face model directory")
    cfg = load_json(path, "; expected the config.json that save_pretrained writes")
    if not isinstance(cfg, dict):
        kind = type(cfg).__name__
        raise UserError(f"{path} holds a JSON {kind}; expected an ElectraConfig object")
    if cfg.get("model_type", "electra") != "electra":
        raise UserError(f"{path}: model_type={cfg.get('model_type')!r}; expected electra")
    return cfg


def read_hf_tokenizer(directory: str) -> Tokenizer | None:
    """vocab.txt as a WordPieceTokenizer (lower-casing from tokenizer_config.json), else None."""
    vocab, path = (os.path.join(directory, n) for n in ("vocab.txt", "tokenizer_config.json"))
    if not os.path.isfile(vocab):
        return None
    settings = load_json(path, "") if os.path.isfile(path) else {}
    lowercase, strip = bool(settings.get("do_lower_case", True)), settings.get("strip_accents")
    strip_accents = lowercase if strip is None else bool(strip)
    return WordPieceTokenizer(vocab, lowercase=lowercase, strip_accents=strip_accents)


def write_hf_dir(
    directory: str, state_dict: StateDict, hf_config: dict[str, Any],
    tokenizer: Tokenizer | None = None, overwrite: bool = False,
) -> str:  # fmt: skip
    """Writes config.json + model.safetensors (+ vocab.txt) atomically, for `from_pretrained`
    (local or gs://)."""
    directory = absolute(directory)
    with atomic_directory(directory, overwrite) as tmp:
        save_file(state_dict, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        write_json(os.path.join(tmp, "config.json"), hf_config)
        if isinstance(tokenizer, WordPieceTokenizer):
            tokenizer.save(tmp)
            lowercase, strip = tokenizer.lowercase, tokenizer.strip_accents
            settings = {"tokenizer_class": "ElectraTokenizer", "do_lower_case": lowercase}
            settings["strip_accents"] = None if strip == lowercase else strip
            settings["model_max_length"] = hf_config["max_position_embeddings"]
            write_json(os.path.join(tmp, "tokenizer_config.json"), settings)
        elif tokenizer is not None:
            warn(f"tokenizer kind {tokenizer.kind!r} is not exported to {directory}")
    return directory


def is_generator_state_dict(state_dict: Mapping[str, Any]) -> bool:
    has_disc_head = any(k.startswith("discriminator_predictions.") for k in state_dict)
    return "generator_predictions.dense.weight" in state_dict and not has_disc_head
