"""Printing prepared examples: decoded text with segment markers, or JSON lines of features."""

from __future__ import annotations

import json
import os

import numpy as np

from electra_jax.data.dataset_format import (
    FEATURES,
    decode_records,
    is_packed,
    read_meta,
    read_records,
    split_paths,
)
from electra_jax.data.tokenizer import Tokenizer, load_tokenizer


def read_examples(data_dir: str, n: int, split: str = "train", meta: dict | None = None) -> dict:
    """The first `n` examples of a split in stored order: int32 arrays [n, max_seq_len]."""
    meta = meta or read_meta(data_dir)
    records: list[bytes] = []
    for path in split_paths(meta, data_dir, split):
        if len(records) >= n:
            break
        records += read_records(path, n - len(records))
    if not records:
        return {}
    return decode_records(
        records, meta["max_seq_len"], meta["record"]["dtypes"][0], is_packed(meta)
    )


def format_example(
    tokenizer: Tokenizer, ids_L: np.ndarray, mask_L: np.ndarray, segments_L: np.ndarray
) -> str:
    """`[CLS] first segment [SEP] second segment [SEP]`, each segment decoded to text."""
    length = int(mask_L.sum())
    n_first = int(np.count_nonzero(segments_L[:length] == 0))  # [CLS] A [SEP]
    ids = [int(i) for i in ids_L[:length]]
    text = f"[CLS] {tokenizer.decode(ids[1 : n_first - 1])} [SEP]"
    if length > n_first:
        text += f" {tokenizer.decode(ids[n_first : length - 1])} [SEP]"
    return text


def show_lines(
    data_dir: str, n: int, as_json: bool = False, split: str = "train", meta: dict | None = None
) -> list[str]:
    """N examples as lines: decoded with segment markers, or JSON objects of the features."""
    meta = meta or read_meta(data_dir)
    batch = read_examples(data_dir, n, split, meta)
    if not batch:
        return []
    if as_json:
        return [
            json.dumps({name: values[i].tolist() for name, values in batch.items()})
            for i in range(len(batch["input_ids"]))
        ]
    tokenizer = load_tokenizer(os.path.abspath(data_dir), meta["tokenizer"])
    lines = []
    for i in range(len(batch["input_ids"])):
        n_tokens = int(batch["input_mask"][i].sum())
        numbers_L = batch.get("packing_ids", batch["input_mask"])[i]
        texts = []
        for number in range(1, int(numbers_L.max(initial=0)) + 1):  # one example, or a packed row
            in_example_L = numbers_L == number
            ids, mask, segments = (batch[k][i][in_example_L] for k in FEATURES)
            texts.append(format_example(tokenizer, ids, mask, segments))
        plural = "s" if len(texts) != 1 else ""
        packed = f", {len(texts)} example{plural}" if "packing_ids" in batch else ""
        lines.append(f"#{i} ({split}, {n_tokens} tokens{packed}): {' | '.join(texts)}")
    return lines
