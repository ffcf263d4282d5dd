"""Sentences -> pre-training examples, following the original `ExampleBuilder` rule by rule.

google-research/electra `build_pretraining_dataset.py` (RECIPE.md, "Pre-training data"):
  * sentences accumulate until >= target_length tokens or a document boundary;
  * with probability 0.1 the example has one segment, otherwise the first segment's target is
    (target - 3) // 2; a sentence goes to A if A is empty, or A + sentence stays under the
    target, or (B still empty, A under the target) with probability 0.5; otherwise to B;
  * A is truncated to max_len - 2, B to max_len - len(A) - 3;
  * with probability 0.05 the next example's target length is randint(5, max_len);
  * layout [CLS] A [SEP] (B [SEP]); segment ids 0 for [CLS]/A/first [SEP], 1 for B and its
    [SEP]; zero padding.
Random draws happen in the same order as in the original (Python `random`, short-circuit
evaluation included), from a seeded `random.Random` instead of the global generator.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import numpy as np

SINGLE_SEGMENT_PROB = 0.1
SHORT_TARGET_PROB = 0.05
OVERFLOW_TO_A_PROB = 0.5
MIN_SHORT_TARGET = 5


@dataclasses.dataclass(frozen=True)
class PretrainExample:
    """One example as its unpadded layout `[CLS] A [SEP] (B [SEP])`. The shard writer encodes
    `token_ids` straight into a record (keeping numpy off prepare's per-example path); the
    padded arrays are built on demand, for tests."""

    token_ids: tuple[int, ...]
    first_length: int  # tokens with segment id 0: [CLS], A and the first [SEP]
    max_seq_len: int
    truncated_tokens: int  # tokens of the accumulated sentences cut by the truncation rules

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def has_second_segment(self) -> bool:
        return len(self.token_ids) > self.first_length

    @property
    def input_ids(self) -> np.ndarray:
        return np.pad(np.asarray(self.token_ids, np.int32), (0, self.max_seq_len - self.num_tokens))

    @property
    def input_mask(self) -> np.ndarray:
        return (np.arange(self.max_seq_len) < self.num_tokens).astype(np.int32)

    @property
    def segment_ids(self) -> np.ndarray:
        return self.input_mask * (np.arange(self.max_seq_len) >= self.first_length)


def make_example(
    first_segment: Sequence[int], second_segment: Sequence[int], *, cls_id: int, sep_id: int,
    max_seq_len: int, truncated_tokens: int = 0,
) -> PretrainExample:  # fmt: skip
    """Lays out [CLS] A [SEP] (B [SEP]); segment ids 1 from B on, zero padding to max_seq_len."""
    ids = [cls_id, *first_segment, sep_id]
    first_length = len(ids)
    if second_segment:
        ids += [*second_segment, sep_id]
    if len(ids) > max_seq_len:
        raise ValueError(f"example of {len(ids)} tokens exceeds max_seq_len={max_seq_len}")
    return PretrainExample(tuple(ids), first_length, max_seq_len, truncated_tokens)


class ExampleBuilder:
    """Accumulates tokenized sentences and emits examples (stateful, seeded, deterministic)."""

    def __init__(self, *, max_seq_len: int, cls_id: int, sep_id: int, rng: random.Random):
        if max_seq_len < MIN_SHORT_TARGET:
            raise ValueError(f"max_seq_len must be >= {MIN_SHORT_TARGET}, got {max_seq_len}")
        self.max_seq_len, self.cls_id, self.sep_id, self.rng = max_seq_len, cls_id, sep_id, rng
        self.target_length = max_seq_len
        self._sentences: list[Sequence[int]] = []
        self._length = 0

    def add_sentence(self, token_ids: Sequence[int]) -> PretrainExample | None:
        """Adds one sentence; returns an example once >= target_length tokens are pending."""
        if not token_ids:  # the original appends it, but it can change neither A/B nor the RNG
            return None
        self._sentences.append(token_ids)
        self._length += len(token_ids)
        return self._create_example() if self._length >= self.target_length else None

    def end_document(self) -> PretrainExample | None:
        """A document boundary: flushes the pending sentences (if any) into an example."""
        return self._create_example() if self._length else None

    def _create_example(self) -> PretrainExample:
        rng = self.rng
        if rng.random() < SINGLE_SEGMENT_PROB:
            first_target = 100000  # the original's "no second segment" target
        else:
            first_target = (self.target_length - 3) // 2  # -3: [CLS] and two [SEP] to come
        first: list[int] = []
        second: list[int] = []
        for sentence in self._sentences:
            if (
                not first
                or len(first) + len(sentence) < first_target
                or (not second and len(first) < first_target and rng.random() < OVERFLOW_TO_A_PROB)
            ):
                first += sentence
            else:
                second += sentence
        total = len(first) + len(second)
        first = first[: self.max_seq_len - 2]
        second = second[: max(0, self.max_seq_len - len(first) - 3)]
        self._sentences, self._length = [], 0
        if rng.random() < SHORT_TARGET_PROB:
            self.target_length = rng.randint(MIN_SHORT_TARGET, self.max_seq_len)
        else:
            self.target_length = self.max_seq_len
        return make_example(
            first, second, cls_id=self.cls_id, sep_id=self.sep_id, max_seq_len=self.max_seq_len,
            truncated_tokens=total - len(first) - len(second),
        )  # fmt: skip
