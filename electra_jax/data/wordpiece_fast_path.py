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
from collections import ChainMap
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
    """Encodes sentences like the Rust tokeniser, memoising per-word pieces on plain-ASCII lines.

    `encode_words` is the Rust tokeniser on a list of single words (one batched call per
    `encode_batch`, for the words not yet in the memo).
    """

    def __init__(
        self,
        encode_words: Callable[[list[str]], list[list[int]]],
        lowercase: bool,
        vocab: dict[str, int],
    ):
        self._encode_words = encode_words
        self._lowercase = lowercase
        # A whole word that is itself a vocabulary entry is its own single piece (WordPiece
        # matches the longest prefix first): seeding these makes the memo warm from the start.
        self._pieces: dict[str, list[int]] = {
            token: [token_id]
            for token, token_id in vocab.items()
            if _CASED_WORDS.fullmatch(token) and len(token) <= MAX_WORD_CHARS
        }
        self._max_words = len(self._pieces) + MAX_MEMO_WORDS

    def encode_batch(self, texts: list[str]) -> list[list[int] | None]:
        """Token ids per text; None for a text that is not plain ASCII (use the full tokeniser)."""
        lookup = self._pieces.__getitem__
        ids: list[list[int] | None] = [None] * len(texts)
        unseen: list[tuple[int, list[str]]] = []  # texts with a word not in the memo
        for index, text in enumerate(texts):
            if _PLAIN_ASCII.fullmatch(text) is None:
                continue
            words = _CASED_WORDS.findall(text.lower() if self._lowercase else text)
            try:  # every word seen before: one C-level pass
                ids[index] = list(chain.from_iterable(map(lookup, words)))
            except KeyError:
                unseen.append((index, words))
        if unseen:
            new_pieces = self._learn({w for _, words in unseen for w in words})
            lookup = self._pieces.__getitem__  # the C-level lookup, unless the memo is full
            if any(word not in self._pieces for word in new_pieces):
                lookup = ChainMap(new_pieces, self._pieces).__getitem__
            for index, words in unseen:
                ids[index] = list(chain.from_iterable(map(lookup, words)))
        return ids

    def _learn(self, words: set[str]) -> dict[str, list[int]]:
        """Tokenises the words missing from the memo in one Rust call; stores them while room."""
        missing = sorted(w for w in words if w not in self._pieces)
        new_pieces = dict(zip(missing, self._encode_words(missing), strict=True))
        room = self._max_words - len(self._pieces)
        self._pieces.update(
            new_pieces if room >= len(missing) else missing_prefix(new_pieces, room)
        )
        return new_pieces


def missing_prefix(pieces: dict[str, list[int]], count: int) -> dict[str, list[int]]:
    """The first `count` entries of `pieces` (what still fits in a nearly full memo)."""
    return dict(list(pieces.items())[: max(0, count)])
