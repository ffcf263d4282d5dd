"""A SentencePiece model behind the `Tokenizer` protocol.

Case folding, if any, lives in the model's normalizer (chosen when it was trained), so there are
no lower-casing switches here. The model must define the five special pieces (models trained by
`vocab_training.train_sentencepiece` have them at ids 0-4).
"""

from __future__ import annotations

import os
import shutil

from electra_jax.data.tokenizer_protocol import SPECIAL_TOKENS, file_sha256
from electra_jax.errors import UserError


class SentencePieceTokenizer:
    """Encodes with a SentencePiece `.model` file; special tokens are never added by `encode`."""

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
        missing = [token for token, i in ids.items() if i == unk]
        if pad == unk:
            missing.insert(0, "[PAD]")
        if missing:
            raise UserError(
                f"SentencePiece model {model_path} lacks special piece(s) {missing}; retrain it "
                f"with control_symbols (see electra_jax.data.vocab_training.train_sentencepiece)"
            )
        self.pad_id, self.unk_id = pad, unk
        self.cls_id, self.sep_id, self.mask_id = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
        self._hash = file_sha256(model_path)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def vocab_hash(self) -> str:
        return self._hash

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
        """What `load_tokenizer` needs to rebuild this tokenizer."""
        return {"kind": self.kind, "file": "spm.model"}
