"""Sequence packing (opt-in, `prepare --pack`): several builder examples per fixed-length row.

The original pads every example to max_seq_len, leaving 11% of the positions of the built-in
corpus at 128 as padding (examples ending at a document boundary, and the 5% with a short
target length). Packing fills that space with further examples. A row holds examples 1..k back
to back; the record's input_mask byte stores each position's example number (0 = padding), so
the loader rebuilds `packing_ids` and the model keeps attention within an example and restarts
positions at each (`layers.packed_attention_mask`, `layers.packed_positions`). Both losses are
per token; masking draws round(0.15 x real tokens) positions per row (capped at int(0.155 L)):
the same rate, with the row as the unit. Rows are filled first-fit over a few open rows in
builder order: deterministic, one pass, bounded memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

from electra_jax.data.example_builder import PretrainExample

# The example number is stored in one byte per position: at most 255 examples in a row.
MAX_EXAMPLES_PER_ROW = 255
# The shortest example the builder makes: [CLS] token [SEP]. A row with less room is closed.
MIN_EXAMPLE_TOKENS = 3
DEFAULT_OPEN_ROWS = 16


@dataclasses.dataclass
class PackedRow:
    """Examples laid out back to back in one row of `max_seq_len` positions."""

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
        ids = np.concatenate([np.asarray(e.token_ids, np.int64) for e in self.examples])
        numbers = np.repeat(
            np.arange(1, len(self.examples) + 1), [e.num_tokens for e in self.examples]
        )
        segments = np.concatenate([
            (np.arange(e.num_tokens) >= e.first_length).astype(np.int64) for e in self.examples
        ])  # fmt: skip
        return ids, numbers, segments


def pack_examples(
    examples: Iterable[PretrainExample], max_seq_len: int, open_rows: int = DEFAULT_OPEN_ROWS
) -> Iterator[PackedRow]:
    """Packs examples first-fit into rows, keeping at most `open_rows` open (when none has room,
    the fullest leaves). Each example lands in one row, in builder order; a full-length example
    leaves at once as a row of its own."""
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
