"""Exported model directories, what `convert`, `detect`, `finetune` and `init_from` exchange:
model.json (format, ModelConfig, tokenizer settings, parts), params/ (Orbax), the tokenizer file."""

import json
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from electra_jax.data.tokenizer import Tokenizer, load_tokenizer
from electra_jax.errors import UserError
from electra_jax.model.config import ModelConfig
from electra_jax.storage import absolute, atomic_directory, check_location, write_json

FORMAT = "electra_jax.model/1"
MODEL_JSON = "model.json"


def load_json(path: str, fix: str) -> Any:
    """The JSON value in `path`; unreadable text is a UserError ending with `fix`."""
    try:
        return json.loads(epath.Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}){fix}") from e


def this_host_checkpointer() -> ocp.StandardCheckpointer:
    """A checkpointer of this process alone: on a pod only host 0 exports, and every host reads
    an export by itself, so Orbax must not wait for the other hosts."""
    me = jax.process_index()
    only_me = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.StandardCheckpointer(multiprocessing_options=only_me)


def save_model(
    directory: str, params: Any, config: ModelConfig, tokenizer: Tokenizer | None = None,
    overwrite: bool = False, extra: dict | None = None,
) -> str:  # fmt: skip
    """Exports `params` (a subset of ElectraModel's tree is fine) with config and tokenizer, into
    a local or remote `directory` (written whole, model.json last: see storage.atomic_directory);
    `extra` adds model.json keys (a fine-tuned model's `head`)."""
    directory = absolute(directory)
    params = jax.tree.map(np.asarray, nn.unbox(params))
    # cuDNN attention is this machine's run-time choice: an export must load anywhere.
    if config.attention_impl == "cudnn":
        config = config.replace(attention_impl="auto")
    with (
        atomic_directory(directory, overwrite, MODEL_JSON) as tmp,
        this_host_checkpointer() as checkpointer,
    ):
        checkpointer.save(os.path.join(tmp, "params"), params)
        if tokenizer is not None:
            tokenizer.save(tmp)
        settings = tokenizer.settings() if tokenizer is not None else None
        meta = {"format": FORMAT, "model": config.to_dict(), "tokenizer": settings}
        write_json(os.path.join(tmp, MODEL_JSON), meta | {"parts": sorted(params)} | (extra or {}))
    return directory


def read_model_meta(directory: str) -> dict:
    path = os.path.join(directory, MODEL_JSON)
    check_location(directory, "checkpoint")
    if not epath.Path(directory).is_dir():
        raise UserError(f"checkpoint {directory} does not exist; pass an exported model directory")
    if not epath.Path(path).is_file():
        raise UserError(
            f"{directory} has no {MODEL_JSON}: not an electra_jax model directory "
            "(export one with `python -m electra_jax.convert` or a pre-training run)"
        )
    meta = load_json(path, "; re-export the model")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise UserError(f"{path} has format {found!r}; expected {FORMAT!r}; re-export the model")
    return meta


def read_model_config(directory: str, meta: dict | None = None) -> ModelConfig:
    """The ModelConfig of DIR/model.json (no parameters read), or a one-line UserError."""
    directory = absolute(directory)
    meta = read_model_meta(directory) if meta is None else meta
    try:
        return ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{directory}/{MODEL_JSON}: bad model config ({e}); re-export it") from e


def load_model(directory: str) -> tuple[ModelConfig, dict, Tokenizer | None]:
    """Returns (config, params as numpy arrays, tokenizer or None); Orbax reads a remote
    directory itself."""
    directory = absolute(directory)
    config = read_model_config(directory, meta := read_model_meta(directory))
    params_dir = os.path.join(directory, "params")
    if not epath.Path(params_dir).is_dir():
        raise UserError(f"{directory} has no params/ directory; re-export the model")
    try:
        with this_host_checkpointer() as checkpointer:
            params = checkpointer.restore(params_dir)
    except Exception as e:  # orbax raises many types for unreadable data
        raise UserError(f"cannot read parameters in {params_dir} ({type(e).__name__})") from e
    tokenizer = load_tokenizer(directory, meta["tokenizer"]) if meta.get("tokenizer") else None
    if tokenizer is not None and (tokens := tokenizer.vocab_size) > (size := config.vocab_size):
        raise UserError(f"{directory}: its vocabulary has {tokens} tokens but the model's "
                        f"vocab_size is {size}; put the model's own vocabulary there")  # fmt: skip
    return config, jax.tree.map(np.asarray, params), tokenizer


def is_model_dir(directory: str) -> bool:
    """`directory` holds an exported model (its model.json, written last, is there)."""
    return epath.Path(directory, MODEL_JSON).is_file()


def export_dir(path: str) -> str:
    """`path`, or `path/export` when `path` is a pre-training run's workdir."""
    exported = os.path.join(path, "export")
    return exported if is_model_dir(exported) and not is_model_dir(path) else path
