"""A per-word memo in front of the Rust WordPiece tokenizer for plain-ASCII sentences.
On printable ASCII the BERT normalizer only lower-cases and the pre-tokenizer splits into runs of
[a-z0-9] and single punctuation characters, so a word's pieces never depend on its neighbors:
Rust computes them once, the memo serves them after. Other lines go to Rust whole. Same ids
(tests/test_tokenizer_fast_path.py); prepare runs several times faster (BENCHMARKS.md)."""

import re
from collections import ChainMap
from collections.abc import Callable
from itertools import chain

# Printable ASCII plus tab: lines the BERT normalizer only lower-cases (tab becomes a space).
_PLAIN_ASCII = re.compile(r"[\x20-\x7e\t]*")
_CASED_WORDS = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9\s]")
MAX_WORD_CHARS = 100  # the tokenizer's max_input_chars_per_word: longer words become [UNK]
# Bounds the memo beyond the vocabulary (~100 bytes per entry); later words are not stored.
MAX_MEMO_WORDS = 1_000_000


class AsciiWordPieceMemo:
    """Encodes like the Rust tokenizer, memoizing per-word pieces on plain-ASCII lines;
    `encode_words`: the Rust tokenizer on a list of single words."""

    def __init__(
        self, encode_words: Callable[[list[str]], list[list[int]]], lowercase: bool,
        vocab: dict[str, int],
    ):  # fmt: skip
        self._encode_words, self._lowercase = encode_words, lowercase
        # A whole-word vocabulary entry is its own single piece (longest prefix first): warm start.
        self._pieces: dict[str, list[int]] = {
            token: [token_id] for token, token_id in vocab.items()
            if _CASED_WORDS.fullmatch(token) and len(token) <= MAX_WORD_CHARS
        }  # fmt: skip
        self._max_words = len(self._pieces) + MAX_MEMO_WORDS

    def encode_batch(self, texts: list[str]) -> list[list[int] | None]:
        """Token ids per text; None for a text that is not plain ASCII (use the full tokenizer)."""
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
        if unseen:  # their missing words in one Rust call, stored while the memo has room
            missing = sorted({w for _, words in unseen for w in words} - self._pieces.keys())
            new_pieces = dict(zip(missing, self._encode_words(missing), strict=True))
            room = max(0, self._max_words - len(self._pieces))
            self._pieces.update(list(new_pieces.items())[:room])
            lookup = self._pieces.__getitem__  # the C-level lookup, unless the memo is full
            if any(word not in self._pieces for word in new_pieces):
                lookup = ChainMap(new_pieces, self._pieces).__getitem__
            for index, words in unseen:
                ids[index] = list(chain.from_iterable(map(lookup, words)))
        return ids
