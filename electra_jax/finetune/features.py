"""GLUE-style featurization: [CLS] A [SEP] (B [SEP]), the longer segment truncated first, into
`input_ids`, `input_mask`, `segment_ids` [N, L] and `labels` [N] (STS-B: the raw score)."""

from __future__ import annotations

import numpy as np

from electra_jax.data.tokenizer import Tokenizer
from electra_jax.finetune.readers import Example


def double_unordered(examples: list[Example]) -> list[Example]:
    """Adds (B, A) after each (A, B): the original's training-set doubling for MRPC and STS-B."""
    doubled = []
    for e in examples:
        doubled.append(e)
        if e.text_b is not None:
            doubled.append(Example(e.guid + "-swap", e.text_b, e.text_a, e.label))
    return doubled


def truncate_pair(ids_a: list[int], ids_b: list[int], max_tokens: int) -> None:
    """Pops tokens from the end of the longer segment until both fit (the original's rule)."""
    while len(ids_a) + len(ids_b) > max_tokens:
        (ids_a if len(ids_a) > len(ids_b) else ids_b).pop()


def pad_rows(rows: list[tuple[list[int], list[int]]], max_seq_len: int, pad_id: int) -> dict:
    """(token ids, segment ids) rows -> `input_ids`, `input_mask`, `segment_ids` [N, L] int32."""
    N, L = len(rows), max_seq_len
    arrays = {"input_ids": np.full((N, L), pad_id, np.int32)}
    arrays["input_mask"], arrays["segment_ids"] = np.zeros((2, N, L), np.int32)
    for i, (ids, segments) in enumerate(rows):
        arrays["input_ids"][i, : len(ids)] = ids
        arrays["input_mask"][i, : len(ids)] = 1
        arrays["segment_ids"][i, : len(ids)] = segments
    return arrays


def encode_examples(
    examples: list[Example], tokenizer: Tokenizer, max_seq_len: int, regression: bool = False
) -> dict[str, np.ndarray]:
    """Examples -> padded arrays; labels of test examples (None) become 0."""
    encoded_a = tokenizer.encode_batch([e.text_a for e in examples])
    pairs = [i for i, e in enumerate(examples) if e.text_b is not None]
    encoded_b = dict(zip(pairs, tokenizer.encode_batch([examples[i].text_b for i in pairs]),
                         strict=True))  # fmt: skip
    rows = []
    for i, a in enumerate(encoded_a):
        ids_a, ids_b = list(a), list(encoded_b.get(i, []))
        truncate_pair(ids_a, ids_b, max_seq_len - (3 if i in encoded_b else 2))
        second = [*ids_b, tokenizer.sep_id] if i in encoded_b else []
        rows.append(([tokenizer.cls_id, *ids_a, tokenizer.sep_id, *second],
                     [0] * (len(ids_a) + 2) + [1] * len(second)))  # fmt: skip
    arrays = pad_rows(rows, max_seq_len, tokenizer.pad_id)
    labels = [0 if e.label is None else e.label for e in examples]
    arrays["labels"] = np.array(labels, np.float32 if regression else np.int32)
    return arrays
