"""The per-word WordPiece memo (data/wordpiece_fast_path.py) gives the Rust path's ids."""

import os

import pytest

from electra_jax.data import wordpiece_fast_path
from electra_jax.data.pydocs import pydocs_text
from electra_jax.data.tokenizer import WordPieceTokenizer

CRAFTED_LINES = [
    "The cat sat on the mat.",
    "snake_case_name = obj.attr[0] + f(x, *args, **kwargs)  # comment",
    "tabs\tinside\t\tthe line, and   runs of   spaces",
    "Numbers 3.14159, 1e-6 and 0x7FFF; versions 2.0.1-rc3",
    "ALL CAPS AND MiXeD CaSe WoRdS",
    "quotes 'single' \"double\" `back` and ~tilde^caret|pipe{brace}<angle>@at$dollar%",
    "a" * 101 + " after an over-long word",  # > max_input_chars_per_word: [UNK]
    "unknownzzzqqqxxxwordpiecebreaker and supercalifragilisticexpialidocious",
    "café naïve résumé",  # accents: not plain ASCII, goes to Rust whole
    "中文 mixed with ascii",  # CJK: not plain ASCII
    "control\x07char and \x7f delete",  # control characters: not plain ASCII
    "form\x0cfeed and vertical\x0btab",  # whitespace-like controls: not plain ASCII
    "!!!",
    "x",
    "",
]


@pytest.fixture(scope="module")
def vocab_path(builtin_data_dir: str) -> str:
    return os.path.join(builtin_data_dir, "vocab.txt")


@pytest.mark.parametrize("lowercase", [True, False])
def test_crafted_lines_match_rust(vocab_path: str, lowercase: bool):
    tokenizer = WordPieceTokenizer(vocab_path, lowercase=lowercase)
    assert tokenizer.encode_batch(CRAFTED_LINES) == tokenizer.encode_batch_rust(CRAFTED_LINES)
    # Twice: the second pass is served from the memo.
    assert tokenizer.encode_batch(CRAFTED_LINES) == tokenizer.encode_batch_rust(CRAFTED_LINES)
    assert [tokenizer.encode(line) for line in CRAFTED_LINES] == tokenizer.encode_batch_rust(
        CRAFTED_LINES
    )


def test_only_plain_ascii_lines_take_the_memo(vocab_path: str):
    memo = WordPieceTokenizer(vocab_path)._memo
    plain = [ids is not None for ids in memo.encode_batch(CRAFTED_LINES)]
    assert plain == [True] * 8 + [False] * 4 + [True] * 3


def test_whole_builtin_corpus_matches_rust(builtin_data_dir: str, vocab_path: str):
    cache_dir = os.path.dirname(builtin_data_dir)
    lines = [line.strip() for line in pydocs_text(cache_dir).split("\n") if line.strip()]
    tokenizer = WordPieceTokenizer(vocab_path)
    assert tokenizer.encode_batch(lines) == tokenizer.encode_batch_rust(lines)


def test_full_memo_still_encodes_correctly(vocab_path: str, monkeypatch):
    monkeypatch.setattr(wordpiece_fast_path, "MAX_MEMO_WORDS", 3)
    tokenizer = WordPieceTokenizer(vocab_path)
    seeded = len(tokenizer._memo._pieces)  # the vocabulary's whole words
    assert tokenizer.encode_batch(CRAFTED_LINES) == tokenizer.encode_batch_rust(CRAFTED_LINES)
    assert len(tokenizer._memo._pieces) == seeded + 3


def test_vocabulary_words_seed_the_memo(vocab_path: str):
    """Each whole-word vocabulary entry is its own single piece, as the Rust WordPiece says."""
    tokenizer = WordPieceTokenizer(vocab_path)
    ids = {token: index for index, token in enumerate(tokenizer.tokens())}
    words = [t for t in ids if t.isalnum() and t.isascii() and t.islower()]
    assert len(words) > 1000
    rust_ids = tokenizer.encode_batch_rust(words)
    assert rust_ids == [[ids[w]] for w in words]
    assert [tokenizer._memo._pieces[w] for w in words] == rust_ids
