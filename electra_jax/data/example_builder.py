"""Sentences -> pre-training examples by the original `ExampleBuilder`'s rules (docs/spec.md §4),
its random draws in the original's order (short-circuit evaluation included) from a seeded
`random.Random`. Packing (`prepare --pack`, README.md "Data") fills rows first-fit over a few
open rows in builder order: deterministic, one pass, bounded memory."""

import dataclasses
import random
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

SINGLE_SEGMENT_PROB = 0.1
SHORT_TARGET_PROB = 0.05
OVERFLOW_TO_A_PROB = 0.5
MIN_SHORT_TARGET = 5
MAX_EXAMPLES_PER_ROW = 255  # the example number is stored in one byte
MIN_EXAMPLE_TOKENS = 3  # [CLS] token [SEP]: a row with less room is closed
DEFAULT_OPEN_ROWS = 16


@dataclasses.dataclass(frozen=True)
class PretrainExample:
    """One example, unpadded: `[CLS] A [SEP] (B [SEP])`; the padded arrays are built on demand."""

    token_ids: tuple[int, ...]
    first_length: int  # tokens with segment id 0: [CLS], A and the first [SEP]
    max_seq_len: int
    truncated_tokens: int  # tokens of the accumulated sentences cut by the truncation rules

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

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
        return self._create_example() if self._length else None

    def _create_example(self) -> PretrainExample:
        rng = self.rng
        # 100000: the original's "no second segment" target; -3: [CLS] and two [SEP] to come.
        single = rng.random() < SINGLE_SEGMENT_PROB
        first_target = 100000 if single else (self.target_length - 3) // 2
        first, second = [], []
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
        self.target_length = self.max_seq_len
        if rng.random() < SHORT_TARGET_PROB:
            self.target_length = rng.randint(MIN_SHORT_TARGET, self.max_seq_len)
        return make_example(
            first, second, cls_id=self.cls_id, sep_id=self.sep_id, max_seq_len=self.max_seq_len,
            truncated_tokens=total - len(first) - len(second),
        )  # fmt: skip


@dataclasses.dataclass
class PackedRow:
    max_seq_len: int
    examples: list[PretrainExample] = dataclasses.field(default_factory=list)
    num_tokens: int = 0

    @property
    def free(self) -> int:
        return self.max_seq_len - self.num_tokens

    def fits(self, example: PretrainExample) -> bool:
        return example.num_tokens <= self.free and len(self.examples) < MAX_EXAMPLES_PER_ROW

    def add(self, example: PretrainExample) -> None:
        self.examples.append(example)
        self.num_tokens += example.num_tokens

    @property
    def closed(self) -> bool:
        return self.free < MIN_EXAMPLE_TOKENS or len(self.examples) >= MAX_EXAMPLES_PER_ROW

    def features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token ids, example numbers 1..k, segment ids), each [num_tokens], unpadded."""
        ids = np.concatenate([e.token_ids for e in self.examples])
        counts = [e.num_tokens for e in self.examples]
        numbers = np.repeat(np.arange(1, len(self.examples) + 1), counts)
        segments = np.concatenate([e.segment_ids[: e.num_tokens] for e in self.examples])
        return ids, numbers, segments


def pack_examples(
    examples: Iterable[PretrainExample], max_seq_len: int, open_rows: int = DEFAULT_OPEN_ROWS
) -> Iterator[PackedRow]:
    """Packs examples first-fit into rows, keeping at most `open_rows` open (when none has room,
    the fullest leaves); a row that cannot take even the shortest example leaves at once."""
    if open_rows < 1:
        raise ValueError(f"open_rows must be >= 1, got {open_rows}")
    pending: list[PackedRow] = []
    for example in examples:
        row = next((r for r in pending if r.fits(example)), None)
        if row is None:
            if len(pending) == open_rows:
                yield pending.pop(min(range(len(pending)), key=lambda i: pending[i].free))
            row = PackedRow(max_seq_len)
            pending.append(row)
        row.add(example)
        if row.closed:
            pending.remove(row)
            yield row
    yield from pending
