"""GLUE-style featurisation: [CLS] A [SEP] (B [SEP]), the longer segment truncated first.

Arrays are what the jitted step eats: `input_ids`, `input_mask`, `segment_ids` ([N, L] int32)
and `labels` ([N] int32 for classification, float32 for regression, the raw STS-B score).
"""

from __future__ import annotations

import numpy as np

from electra_jax.data.tokenizer import Tokenizer
from electra_jax.finetune.readers import Example


def double_unordered(examples: list[Example]) -> list[Example]:
    """Adds (B, A) after each (A, B): the original's training-set doubling for MRPC and STS-B."""
    doubled = []
    for example in examples:
        doubled.append(example)
        if example.text_b is not None:
            doubled.append(
                Example(example.guid + "-swap", example.text_b, example.text_a, example.label)
            )
    return doubled


def truncate_pair(ids_a: list[int], ids_b: list[int], max_tokens: int) -> None:
    """Pops tokens from the end of the longer segment until both fit (the original's rule)."""
    while len(ids_a) + len(ids_b) > max_tokens:
        (ids_a if len(ids_a) > len(ids_b) else ids_b).pop()


def encode_examples(
    examples: list[Example], tokenizer: Tokenizer, max_seq_len: int, regression: bool = False
) -> dict[str, np.ndarray]:
    """Examples -> padded arrays; labels of test examples (None) become 0."""
    N, L = len(examples), max_seq_len
    ids_NxL = np.full((N, L), tokenizer.pad_id, np.int32)
    mask_NxL = np.zeros((N, L), np.int32)
    segments_NxL = np.zeros((N, L), np.int32)
    labels_N = np.zeros((N,), np.float32 if regression else np.int32)
    encoded_a = tokenizer.encode_batch([e.text_a for e in examples])
    pairs = [i for i, e in enumerate(examples) if e.text_b is not None]
    encoded_b = dict(zip(pairs, tokenizer.encode_batch([examples[i].text_b for i in pairs]),
                         strict=True))  # fmt: skip
    for i, example in enumerate(examples):
        ids_a, ids_b = list(encoded_a[i]), list(encoded_b.get(i, []))
        if example.text_b is None:
            del ids_a[L - 2 :]
        else:
            truncate_pair(ids_a, ids_b, L - 3)
        tokens = [tokenizer.cls_id, *ids_a, tokenizer.sep_id]
        segment = [0] * len(tokens)
        if example.text_b is not None:
            tokens += [*ids_b, tokenizer.sep_id]
            segment += [1] * (len(ids_b) + 1)
        ids_NxL[i, : len(tokens)] = tokens
        mask_NxL[i, : len(tokens)] = 1
        segments_NxL[i, : len(tokens)] = segment
        if example.label is not None:
            labels_N[i] = example.label
    return {
        "input_ids": ids_NxL,
        "input_mask": mask_NxL,
        "segment_ids": segments_NxL,
        "labels": labels_N,
    }
