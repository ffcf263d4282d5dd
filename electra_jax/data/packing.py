"""Sequence packing (opt-in, `prepare --pack`): several builder examples per fixed-length row.

The original pads every example to max_seq_len; examples that end at a document boundary, and
the 5% with a random short target length, leave part of the row as padding (11% of the
positions of the built-in corpus at 128). Packing fills that space with further examples. Each
stored row then holds examples 1..k back to back; the record's input_mask byte stores the
example number of each position (0 = padding), so the loader can rebuild `packing_ids` and the
model can keep attention within an example and restart positions at each one
(`layers.packed_attention_mask`, `layers.packed_positions`). Both losses are per token and
need no change. Masking draws round(0.15 x real tokens) positions per row (capped at
int(0.155 L)) rather than per example: the same rate, with the row as the unit.

Rows are filled first-fit over a few open rows, in the builder's order: deterministic, one pass,
bounded memory. A full-length example leaves at once as a row of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

from electra_jax.data.example_builder import Example

# The example number is stored in one byte per position: at most 255 examples in a row.
MAX_EXAMPLES_PER_ROW = 255
# The shortest example the builder makes: [CLS] token [SEP]. A row with less room is closed.
MIN_EXAMPLE_TOKENS = 3
DEFAULT_OPEN_ROWS = 16


@dataclasses.dataclass
class PackedRow:
    """Examples laid out back to back in one row of `max_seq_len` positions."""

    max_seq_len: int
    examples: list[Example] = dataclasses.field(default_factory=list)
    num_tokens: int = 0

    @property
    def free(self) -> int:
        return self.max_seq_len - self.num_tokens

    def fits(self, example: Example) -> bool:
        return (
            example.num_tokens <= self.free and len(self.examples) < MAX_EXAMPLES_PER_ROW
        )  # fmt: skip

    def add(self, example: Example) -> None:
        self.examples.append(example)
        self.num_tokens += example.num_tokens

    @property
    def closed(self) -> bool:
        return self.free < MIN_EXAMPLE_TOKENS or len(self.examples) >= MAX_EXAMPLES_PER_ROW

    def features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token ids, example numbers 1..k, segment ids), each [num_tokens], unpadded."""
        ids = np.concatenate([np.asarray(e.token_ids, np.int64) for e in self.examples])
        numbers = np.repeat(
            np.arange(1, len(self.examples) + 1), [e.num_tokens for e in self.examples]
        )
        segments = np.concatenate([
            (np.arange(e.num_tokens) >= e.first_length).astype(np.int64) for e in self.examples
        ])  # fmt: skip
        return ids, numbers, segments


def pack_examples(
    examples: Iterable[Example], max_seq_len: int, open_rows: int = DEFAULT_OPEN_ROWS
) -> Iterator[PackedRow]:
    """Packs examples first-fit into rows, keeping at most `open_rows` rows open.

    When no open row has room and all `open_rows` are taken, the fullest one is emitted to make
    space. Every example lands in exactly one row, and in builder order within its row.
    """
    if open_rows < 1:
        raise ValueError(f"open_rows must be >= 1, got {open_rows}")
    pending: list[PackedRow] = []
    for example in examples:
        row = next((r for r in pending if r.fits(example)), None)
        if row is None:
            if len(pending) == open_rows:
                fullest = min(range(len(pending)), key=lambda i: pending[i].free)
                yield pending.pop(fullest)
            row = PackedRow(max_seq_len)
            pending.append(row)
        row.add(example)
        if row.closed:
            pending.remove(row)
            yield row
    yield from pending
