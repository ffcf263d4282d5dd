"""What every tokenizer shares: the five special tokens, the `Tokenizer` protocol, file hashes."""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline, the trainer and `detect` need. `encode` never adds special
    tokens: the example builder lays out [CLS]/[SEP] itself."""

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
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
