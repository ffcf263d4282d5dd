"""Tokenizers behind one `Tokenizer` protocol: WordPiece (a BERT vocab.txt, on the Rust
`tokenizers` library) and SentencePiece (a .model file); `load_tokenizer` rebuilds either from
its saved settings. `encode` never adds special tokens: the example builder lays them out."""

import hashlib
import os
import shutil
from typing import Protocol, runtime_checkable

from electra_jax.data.wordpiece_fast_path import MAX_WORD_CHARS, AsciiWordPieceMemo
from electra_jax.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline, the trainer and `detect` need from a tokenizer."""

    kind: str
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    @property
    def vocab_size(self) -> int: ...
    @property
    def vocab_hash(self) -> str: ...
    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: list[int]) -> str: ...
    def id_to_token(self, token_id: int) -> str: ...
    def save(self, directory: str) -> str: ...
    def settings(self) -> dict: ...


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file: identifies a vocabulary in dataset and checkpoint metadata."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_vocab_txt(path: str) -> list[str]:
    """Reads a BERT vocab.txt (one token per line) or fails with a one-line error."""
    if not os.path.isfile(path):
        raise UserError(f"vocabulary file {path} does not exist; pass a BERT vocab.txt")
    try:
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n").rstrip("\r") for line in f]
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}); expected a BERT vocab.txt") from e
    while tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise UserError(f"vocabulary file {path} is empty; expected one token per line")
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise UserError(
            f"vocabulary {path} lacks required special token(s) {missing}; "
            f"add them (expected all of {list(SPECIAL_TOKENS)})"
        )
    return tokens


class WordPieceTokenizer:
    """BERT WordPiece with the original's lower-casing and accent stripping."""

    kind = "wordpiece"

    def __init__(self, vocab_path: str, lowercase: bool = True, strip_accents: bool = True):
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers

        self.vocab_path, self.lowercase, self.strip_accents = vocab_path, lowercase, strip_accents
        self._tokens = read_vocab_txt(vocab_path)
        vocab = {token: index for index, token in enumerate(self._tokens)}
        model = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=MAX_WORD_CHARS)
        self._tokenizer = tok = HFTokenizer(model)
        tok.normalizer = normalizers.BertNormalizer(
            strip_accents=strip_accents, lowercase=lowercase
        )
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()
        self._memo = AsciiWordPieceMemo(self.encode_batch_rust, lowercase=lowercase, vocab=vocab)
        ids = [vocab[token] for token in SPECIAL_TOKENS]
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
        self.vocab_hash = file_sha256(vocab_path)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Plain-ASCII texts through the per-word memo, the rest in one Rust batch call."""
        ids = self._memo.encode_batch(texts)
        rest = [index for index, text_ids in enumerate(ids) if text_ids is None]
        rust_ids = self.encode_batch_rust([texts[index] for index in rest]) if rest else []
        for index, text_ids in zip(rest, rust_ids, strict=True):
            ids[index] = text_ids
        return ids  # type: ignore[return-value]

    def encode_batch_rust(self, texts: list[str]) -> list[list[int]]:
        """The Rust pipeline alone (the reference the memo is tested against). `encode_batch_fast`
        skips the character offsets we never use: same ids, ~25% faster."""
        encodings = self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def id_to_token(self, token_id: int) -> str:
        return self._tokens[token_id]

    def tokens(self) -> list[str]:
        return list(self._tokens)

    def save(self, directory: str) -> str:
        """Writes vocab.txt into `directory` (atomically) and returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "vocab.txt")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(self._tokens) + "\n")
        os.replace(path + ".tmp", path)
        return path

    def settings(self) -> dict:
        """What `load_tokenizer` needs to rebuild this tokenizer (stored beside checkpoints)."""
        return {"kind": self.kind, "file": "vocab.txt", "lowercase": self.lowercase,
                "strip_accents": self.strip_accents}  # fmt: skip


class SentencePieceTokenizer:
    """A SentencePiece `.model`. Case folding, if any, lives in the model's normalizer (chosen
    when it was trained). The model must define the five special pieces (models trained by
    `vocab_training.train_sentencepiece` have them at ids 0-4)."""

    kind = "sentencepiece"

    def __init__(self, model_path: str):
        import sentencepiece as spm

        if not os.path.isfile(model_path):
            raise UserError(f"SentencePiece model {model_path} does not exist; pass a .model file")
        self.model_path = model_path
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(model_path)
        except (OSError, RuntimeError) as e:
            raise UserError(f"{model_path} is not a SentencePiece model ({e})") from e
        unk = self._sp.unk_id()
        pad = self._sp.pad_id() if self._sp.pad_id() >= 0 else self._sp.piece_to_id("[PAD]")
        ids = {token: self._sp.piece_to_id(token) for token in SPECIAL_TOKENS[2:]}
        missing = ["[PAD]"] * (pad == unk) + [token for token, i in ids.items() if i == unk]
        if missing:
            raise UserError(
                f"SentencePiece model {model_path} lacks special piece(s) {missing}; retrain it "
                f"with control_symbols (see electra_jax.data.vocab_training.train_sentencepiece)"
            )
        self.pad_id, self.unk_id = pad, unk
        self.cls_id, self.sep_id, self.mask_id = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
        self.vocab_hash = file_sha256(model_path)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def id_to_token(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))

    def save(self, directory: str) -> str:
        """Copies the model file into `directory` as spm.model and returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "spm.model")
        if os.path.abspath(path) != os.path.abspath(self.model_path):
            shutil.copyfile(self.model_path, path + ".tmp")
            os.replace(path + ".tmp", path)
        return path

    def settings(self) -> dict:
        return {"kind": self.kind, "file": "spm.model"}


def load_tokenizer(directory: str, settings: dict) -> Tokenizer:
    """Rebuilds a tokenizer saved with `save` + `settings` in a checkpoint or dataset directory."""
    kind = settings.get("kind", "wordpiece")
    path = os.path.join(directory, settings.get("file", "vocab.txt"))
    if kind == "wordpiece":
        return WordPieceTokenizer(
            path, settings.get("lowercase", True), settings.get("strip_accents", True)
        )
    if kind == "sentencepiece":
        return SentencePieceTokenizer(path)
    raise UserError(
        f"unknown tokenizer kind {kind!r} in {directory}; expected wordpiece or sentencepiece"
    )
