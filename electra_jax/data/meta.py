"""meta.json: the description of a prepared dataset, and its checks against a model config.

Written by `electra_jax.prepare` next to the shards; read by the loaders and the trainer. A
mismatch with the model config (vocabulary size, sequence length) stops with one line naming
the file, the field, both values and the fix.
"""

from __future__ import annotations

import json

from etils import epath

from electra_jax.errors import UserError

META_FILE = "meta.json"
FORMAT = "electra_jax/pretraining-examples"
FORMAT_VERSION = 1
# Packed datasets (`prepare --pack`) are version 2: their input_mask bytes hold example numbers,
# which code from before packing would misread as a mask, so it must refuse them.
PACKED_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (FORMAT_VERSION, PACKED_FORMAT_VERSION)
_REQUIRED = ("format_version", "vocab_size", "max_seq_len", "record", "splits", "tokenizer")


def meta_path(data_dir: str) -> str:
    return str(epath.Path(data_dir) / META_FILE)  # epath: local paths and gs:// alike


def read_meta(data_dir: str) -> dict:
    """Reads `data_dir/meta.json`, or fails with a one-line error saying how to create it."""
    path = meta_path(data_dir)
    if not epath.Path(path).is_file():
        raise UserError(
            f"{path} not found: {data_dir} is not a prepared dataset; create one with "
            f"python -m electra_jax.prepare --corpus=... --output={data_dir}"
        )
    try:
        meta = json.loads(epath.Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is unreadable or corrupt ({e}); re-run electra_jax.prepare") from e
    if not isinstance(meta, dict) or any(key not in meta for key in _REQUIRED):
        raise UserError(
            f"{path} lacks required fields {list(_REQUIRED)}; re-run electra_jax.prepare"
        )
    if meta["format_version"] not in READABLE_FORMAT_VERSIONS:
        raise UserError(
            f"{path}: format_version is {meta['format_version']} but this code reads "
            f"{' or '.join(map(str, READABLE_FORMAT_VERSIONS))}; re-run electra_jax.prepare"
        )
    return meta


def check_meta(meta: dict, data_dir: str, *, vocab_size: int, max_seq_len: int) -> None:
    """Fails with one line if the dataset does not fit the model config."""
    path = meta_path(data_dir)
    if meta["vocab_size"] != vocab_size:
        raise UserError(
            f"{path}: vocab_size is {meta['vocab_size']} but the model config expects "
            f"{vocab_size}; set the model's vocab_size={meta['vocab_size']} or re-prepare the "
            f"data with a {vocab_size}-token vocabulary (--vocab or --vocab-size)"
        )
    if meta["max_seq_len"] != max_seq_len:
        raise UserError(
            f"{path}: max_seq_len is {meta['max_seq_len']} but the config expects "
            f"{max_seq_len}; set max_seq_len={meta['max_seq_len']} or re-prepare the data with "
            f"--max-seq-len={max_seq_len}"
        )


def split_paths(meta: dict, data_dir: str, split: str) -> list[str]:
    """Absolute shard paths of a split, checking that they exist."""
    shards = meta["splits"].get(split, {}).get("shards", [])
    paths = [str(epath.Path(data_dir) / shard) for shard in shards]
    missing = [p for p in paths if not epath.Path(p).is_file()]
    if missing:
        raise UserError(
            f"{meta_path(data_dir)} lists shard {missing[0]} which is missing; re-run "
            f"electra_jax.prepare into a fresh --output"
        )
    return paths
