"""Raw bytes -> documents of sentences, counting what was repaired or dropped.

Bad bytes are not fatal: each byte that is not valid UTF-8 becomes U+FFFD and is counted.
Lines are stripped as in the original (`line.strip()`); whitespace-only lines end a document
(blank-line mode) or are dropped and counted (one-document-per-file mode); lines longer than
`max_line_chars` are dropped and counted (they would contribute only their first ~126 tokens).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from electra_jax.data.sources import Blob

DEFAULT_MAX_LINE_CHARS = 100_000
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass
class CorpusStats:
    """Counts reported in meta.json: what the corpus held and what was repaired or dropped."""

    documents: int = 0
    lines: int = 0
    raw_bytes: int = 0
    replaced_bytes: int = 0
    dropped_blank_lines: int = 0
    dropped_overlong_lines: int = 0
    dropped_empty_lines: int = 0  # lines that tokenize to nothing (control characters etc.)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def decode_utf8(data: bytes, stats: CorpusStats) -> str:
    """Decodes UTF-8, replacing each invalid byte with U+FFFD and counting it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        text, replaced = _ESCAPED_BYTE.subn("\ufffd", text)
        stats.replaced_bytes += replaced
        return text


def blob_documents(
    blob: Blob, stats: CorpusStats, max_line_chars: int = DEFAULT_MAX_LINE_CHARS
) -> Iterator[list[str]]:
    """Yields each document of a blob as its list of non-empty, stripped lines (sentences)."""
    stats.raw_bytes += len(blob.data)
    text = decode_utf8(blob.data, stats)
    document: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        stats.lines += 1
        line = line.strip()
        if not line:
            if blob.blank_line_ends_document:
                if document:
                    stats.documents += 1
                    yield document
                    document = []
            else:
                stats.dropped_blank_lines += 1
            continue
        if max_line_chars and len(line) > max_line_chars:
            stats.dropped_overlong_lines += 1
            continue
        document.append(line)
    if document:
        stats.documents += 1
        yield document
