"""The prepared-dataset format: ArrayRecord shards of fixed-size records, described by meta.json.
A record is input_ids (max_seq_len x uint16, or int32 past 65,536 entries), then input_mask and
segment_ids (max_seq_len x uint8 each), little-endian: a third of three int32 arrays, and a batch
decodes with one `np.frombuffer`. Packed datasets (`record.packed`) store each position's example
number (1, 2, ...; 0 = padding) in the input_mask byte, decoded into `packing_ids`."""

import json
from collections.abc import Iterable, Sequence

import numpy as np
from etils import epath

from electra_jax.data.shard_cache import local_shards
from electra_jax.errors import UserError
from electra_jax.storage import check_location, is_remote

META_FILE = "meta.json"
FORMAT = "electra_jax/pretraining-examples"
FORMAT_VERSION = 1
# Packed: a new version, which older code refuses (it would misread example numbers as a mask).
PACKED_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (FORMAT_VERSION, PACKED_FORMAT_VERSION)
_REQUIRED = ("format_version", "vocab_size", "max_seq_len", "record", "splits", "tokenizer")
FEATURES = ("input_ids", "input_mask", "segment_ids")
# group_size:1 for grain's random access; uncompressed: decompression would cost loader throughput.
WRITER_OPTIONS = "group_size:1,uncompressed"


def read_meta(data_dir: str) -> dict:
    """Reads `data_dir/meta.json` (local or gs://), or fails with one line saying how to fix it."""
    check_location(data_dir, "data directory")
    path = epath.Path(data_dir) / META_FILE
    if not path.is_file():
        raise UserError(
            f"{path} not found: {data_dir} is not a prepared dataset; create one with "
            f"python -m electra_jax.prepare --corpus=... --output={data_dir}"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
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
    """Fails with one line naming the file, field, values and fix if the dataset does not fit."""
    path = epath.Path(data_dir) / META_FILE
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


def batch_keys(meta: dict) -> tuple[str, ...]:
    return FEATURES + (("packing_ids",) if is_packed(meta) else ())


def special_ids(meta: dict) -> dict[str, int]:
    """{cls_id, sep_id, mask_id}: what the objective needs, without building the tokenizer."""
    ids = meta["special_ids"]
    return {"cls_id": ids["[CLS]"], "sep_id": ids["[SEP]"], "mask_id": ids["[MASK]"]}


def is_packed(meta: dict) -> bool:
    return bool(meta["record"].get("packed", False))


def split_paths(meta: dict, data_dir: str, split: str) -> list[str]:
    """The local paths of a split's shards: in `data_dir`, or for a remote `data_dir` (which
    ArrayRecord cannot read) in the local cache (shard_cache)."""
    shards = meta["splits"].get(split, {}).get("shards", [])
    paths = [str(epath.Path(data_dir) / shard) for shard in shards]
    if missing := [p for p in paths if not epath.Path(p).is_file()]:
        raise UserError(f"{epath.Path(data_dir) / META_FILE} lists shard {missing[0]} which is "
                        "missing; re-run electra_jax.prepare into a fresh --output")  # fmt: skip
    return local_shards(data_dir, meta, paths, split) if is_remote(data_dir) else paths


def id_dtype_name(vocab_size: int) -> str:
    return "<u2" if vocab_size <= 1 << 16 else "<i4"


def record_layout(max_seq_len: int, id_dtype: str, packed: bool = False) -> dict:
    n_bytes = max_seq_len * (np.dtype(id_dtype).itemsize + 2)
    return {"features": list(FEATURES), "dtypes": [id_dtype, "u1", "u1"], "bytes": n_bytes,
            "packed": packed}  # fmt: skip


def _record(
    token_ids: Sequence[int], mask: bytes, segments: bytes, max_seq_len: int, id_dtype: str
) -> bytes:
    n_pad = max_seq_len - len(token_ids)
    return b"".join((
        np.asarray(token_ids, id_dtype).tobytes(), bytes(n_pad * np.dtype(id_dtype).itemsize),
        mask, bytes(n_pad), segments, bytes(n_pad),
    ))  # fmt: skip


def encode_example_record(
    token_ids: Sequence[int], first_length: int, max_seq_len: int, id_dtype: str
) -> bytes:
    """One example (`first_length` tokens of segment 0, then segment 1) as a zero-padded record."""
    n_tokens = len(token_ids)
    segments = bytes(first_length) + b"\x01" * (n_tokens - first_length)
    return _record(token_ids, b"\x01" * n_tokens, segments, max_seq_len, id_dtype)


def encode_row_record(
    token_ids: np.ndarray, example_numbers: np.ndarray, segment_ids: np.ndarray,
    max_seq_len: int, id_dtype: str,
) -> bytes:  # fmt: skip
    """One packed row (ids, example numbers 1..k, segment ids; unpadded) as a record."""
    numbers, segments = (np.asarray(a, np.uint8).tobytes() for a in (example_numbers, segment_ids))
    return _record(token_ids, numbers, segments, max_seq_len, id_dtype)


def decode_records(
    records: Sequence[bytes], max_seq_len: int, id_dtype: str, packed: bool = False
) -> dict:
    """b records -> {input_ids, input_mask, segment_ids}: int32 arrays [b, L]; `packed` adds
    `packing_ids` (each position's example number, 0 = padding), input_mask stays 0/1."""
    id_bytes = np.dtype(id_dtype).itemsize * max_seq_len
    raw_BxR = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), -1)
    if raw_BxR.shape[1] != id_bytes + 2 * max_seq_len:
        raise ValueError(f"record of {raw_BxR.shape[1]} bytes does not match max_seq_len")
    mask_bytes_BxL = raw_BxR[:, id_bytes : id_bytes + max_seq_len]
    batch = {
        "input_ids": raw_BxR[:, :id_bytes].copy().view(id_dtype).astype(np.int32),
        "input_mask": (mask_bytes_BxL > 0).astype(np.int32),
        "segment_ids": raw_BxR[:, id_bytes + max_seq_len :].astype(np.int32),
    }
    if packed:
        batch["packing_ids"] = mask_bytes_BxL.astype(np.int32)
    return batch


def write_records(path: str, records: Iterable[bytes]) -> int:
    from array_record.python.array_record_module import ArrayRecordWriter

    writer, count = ArrayRecordWriter(path, WRITER_OPTIONS), 0
    for count, record in enumerate(records, 1):  # noqa: B007 (the count is the result)
        writer.write(record)
    writer.close()
    return count


def read_records(path: str, limit: int | None = None) -> list[bytes]:
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(path)
    try:
        n = reader.num_records() if limit is None else min(limit, reader.num_records())
        return list(reader.read(range(n))) if n > 0 else []
    finally:
        reader.close()


def read_examples(data_dir: str, n: int, split: str = "train", meta: dict | None = None) -> dict:
    """The first `n` examples of a split in stored order: int32 arrays [n, max_seq_len]."""
    meta = meta or read_meta(data_dir)
    records: list[bytes] = []
    for path in split_paths(meta, data_dir, split):
        records += read_records(path, n - len(records)) if len(records) < n else []
    dtype = meta["record"]["dtypes"][0]
    return decode_records(records, meta["max_seq_len"], dtype, is_packed(meta)) if records else {}
