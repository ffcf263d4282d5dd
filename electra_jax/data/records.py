"""The binary record stored per example in the ArrayRecord shards.

A record is fixed-size: input_ids (max_seq_len x uint16, or int32 when the vocabulary has more
than 65,536 entries), then input_mask and segment_ids (max_seq_len x uint8 each), all
little-endian. 512 bytes at max_seq_len=128, a third of three int32 arrays, and a batch of
records decodes with one `np.frombuffer` (no per-example Python work in the loader).

In a packed dataset (`prepare --pack`, meta.json `record.packed`) the input_mask byte holds each
position's example number within the row (1, 2, ...; 0 = padding), decoded into `packing_ids`
beside the usual 0/1 input_mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FEATURES = ("input_ids", "input_mask", "segment_ids")
# ArrayRecord writer options: group_size:1 for grain's random access; records stay uncompressed
# (they are small and mostly token ids, and decompression would cost loader throughput).
WRITER_OPTIONS = "group_size:1,uncompressed"


def id_dtype_name(vocab_size: int) -> str:
    """The narrowest stored dtype for token ids of a vocabulary."""
    return "<u2" if vocab_size <= 1 << 16 else "<i4"


def record_layout(max_seq_len: int, id_dtype: str, packed: bool = False) -> dict:
    """The record description stored in meta.json."""
    id_bytes = np.dtype(id_dtype).itemsize
    return {
        "features": list(FEATURES),
        "dtypes": [id_dtype, "u1", "u1"],
        "bytes": max_seq_len * (id_bytes + 2),
        "packed": packed,
    }


def is_packed(meta: dict) -> bool:
    """Whether a dataset's rows hold several examples (meta.json `record.packed`)."""
    return bool(meta["record"].get("packed", False))


def pack_record(
    token_ids: Sequence[int], first_length: int, max_seq_len: int, id_dtype: str
) -> bytes:
    """Packs one unpadded example (`first_length` tokens of segment 0, then segment 1) into a
    record: ids, input_mask and segment_ids, each zero-padded to max_seq_len."""
    n_tokens = len(token_ids)
    n_pad = max_seq_len - n_tokens
    return b"".join((
        np.asarray(token_ids, id_dtype).tobytes(),
        bytes(n_pad * np.dtype(id_dtype).itemsize),
        b"\x01" * n_tokens,
        bytes(n_pad + first_length),
        b"\x01" * (n_tokens - first_length),
        bytes(n_pad),
    ))  # fmt: skip


def pack_row_record(
    token_ids: np.ndarray, example_numbers: np.ndarray, segment_ids: np.ndarray,
    max_seq_len: int, id_dtype: str,
) -> bytes:  # fmt: skip
    """Packs one unpadded packed row (ids, example numbers 1..k, segment ids) into a record."""
    n_pad = max_seq_len - len(token_ids)
    return b"".join((
        np.asarray(token_ids, id_dtype).tobytes(),
        bytes(n_pad * np.dtype(id_dtype).itemsize),
        np.asarray(example_numbers, np.uint8).tobytes(),
        bytes(n_pad),
        np.asarray(segment_ids, np.uint8).tobytes(),
        bytes(n_pad),
    ))  # fmt: skip


def decode_records(
    records: Sequence[bytes], max_seq_len: int, id_dtype: str, packed: bool = False
) -> dict:
    """Decodes b records into {input_ids, input_mask, segment_ids}: int32 arrays [b, L].

    `packed` adds `packing_ids` (each position's example number, 0 = padding); input_mask
    stays 0/1 either way.
    """
    id_bytes = np.dtype(id_dtype).itemsize * max_seq_len
    raw_BxR = np.frombuffer(b"".join(records), np.uint8).reshape(len(records), -1)
    if raw_BxR.shape[1] != id_bytes + 2 * max_seq_len:
        raise ValueError(f"record of {raw_BxR.shape[1]} bytes does not match max_seq_len")
    ids_BxL = raw_BxR[:, :id_bytes].copy().view(id_dtype).astype(np.int32)
    mask_bytes_BxL = raw_BxR[:, id_bytes : id_bytes + max_seq_len]
    segments_BxL = raw_BxR[:, id_bytes + max_seq_len :].astype(np.int32)
    batch = {
        "input_ids": ids_BxL,
        "input_mask": (mask_bytes_BxL > 0).astype(np.int32),
        "segment_ids": segments_BxL,
    }
    if packed:
        batch["packing_ids"] = mask_bytes_BxL.astype(np.int32)
    return batch
