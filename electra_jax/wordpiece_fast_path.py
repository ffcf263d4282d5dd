"""A per-word memo in front of the Rust WordPiece tokeniser for plain-ASCII sentences.

The Rust `tokenizers` pipeline (BERT normaliser, pre-tokeniser, WordPiece, Encoding objects)
runs at ~1.4 MB per CPU-second; most of that is per-token bookkeeping we never use. For a line
of printable ASCII the BERT normaliser is only lower-casing (no accents, no control or CJK
characters) and the BERT pre-tokeniser splits into runs of [a-z0-9] and single punctuation
characters (every other printable ASCII character is punctuation to BERT). WordPiece is applied
per pre-token, so a word's pieces never depend on its neighbours: they are computed once by the
Rust tokeniser and memoised. Any other line goes to the Rust tokeniser whole. The ids are
identical to the Rust path (tests/test_tokenizer_fast_path.py checks crafted lines and the
whole built-in corpus); prepare runs several times faster (BENCHMARKS.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain

# Printable ASCII plus tab: lines the BERT normaliser only lower-cases (tab becomes a space).
_PLAIN_ASCII = re.compile(r"[\x20-\x7e\t]*")
_CASED_WORDS = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9\s]")
MAX_WORD_CHARS = 100  # the tokeniser's max_input_chars_per_word: longer words become [UNK]
# Bounds the memo beyond the vocabulary (~100 bytes per entry); words past it are still
# tokenised, just not stored.
MAX_MEMO_WORDS = 1_000_000


class AsciiWordPieceMemo:
    """Encodes sentences like `encode_one`, memoising per-word pieces on plain-ASCII lines."""

    def __init__(
        self, encode_one: Callable[[str], list[int]], lowercase: bool, vocab: dict[str, int]
    ):
        self._encode_one = encode_one
        self._lowercase = lowercase
        # A whole word that is itself a vocabulary entry is its own single piece (WordPiece
        # matches the longest prefix first): seeding these makes the memo warm from the start.
        self._pieces: dict[str, list[int]] = {
            token: [token_id]
            for token, token_id in vocab.items()
            if _CASED_WORDS.fullmatch(token) and len(token) <= MAX_WORD_CHARS
        }
        self._max_words = len(self._pieces) + MAX_MEMO_WORDS

    def encode(self, text: str) -> list[int] | None:
        """Token ids of `text`, or None when it is not plain ASCII (use the full tokeniser)."""
        if _PLAIN_ASCII.fullmatch(text) is None:
            return None
        if self._lowercase:
            text = text.lower()
        words = _CASED_WORDS.findall(text)
        try:  # all words seen before: one C-level pass
            return list(chain.from_iterable(map(self._pieces.__getitem__, words)))
        except KeyError:
            return self._encode_with_misses(words)

    def _encode_with_misses(self, words: list[str]) -> list[int]:
        pieces = self._pieces
        ids: list[int] = []
        for word in words:
            word_ids = pieces.get(word)
            if word_ids is None:
                word_ids = self._encode_one(word)
                if len(pieces) < self._max_words:
                    pieces[word] = word_ids
            ids += word_ids
        return ids
