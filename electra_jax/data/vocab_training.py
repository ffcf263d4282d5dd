"""Vocabulary training, deterministic, with [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 (the fixed
ids the rest of the code relies on); `load_or_train_tokenizer`, a dataset's tokenizer.

WordPiece: the `tokenizers` trainer numbers the `##` characters in hash-map order, which changes
merge tie-breaks between runs (huggingface/tokenizers#1794); we count the alphabet ourselves
(ties by code point) and register every `##c` after the special tokens, so the vocabulary is
byte-identical across runs. SentencePiece: one thread, no input sampling or shuffling."""

import collections
import io
import os
from collections.abc import Iterable

from electra_jax.data.sources import Source, sample_sentences
from electra_jax.data.tokenizer import SPECIAL_TOKENS, VOCAB_FILES, Tokenizer, load_tokenizer
from electra_jax.errors import UserError
from electra_jax.storage import write_atomic

LIMIT_ALPHABET = 1000  # as in BERT's WordPiece recipe


def _checked(texts: list[str], what: str) -> list[str]:
    if not any(t.strip() for t in texts):
        raise UserError(f"cannot train a {what} vocabulary on an empty corpus; check --corpus")
    return texts


def _write(output_dir: str, kind: str, data: bytes) -> str:
    os.makedirs(output_dir, exist_ok=True)
    return write_atomic(os.path.join(output_dir, VOCAB_FILES[kind]), data)


def train_wordpiece(
    texts_iter: Iterable[str], vocab_size: int, output_dir: str, lowercase: bool = True, *,
    limit_alphabet: int = LIMIT_ALPHABET,
) -> str:  # fmt: skip
    """Trains a BERT WordPiece vocabulary on sentences into `output_dir/vocab.txt` (its path),
    normalized as `WordPieceTokenizer` does (cased: accents kept, as in BERT)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    texts = _checked(list(texts_iter), "WordPiece")
    normalizer = normalizers.BertNormalizer(strip_accents=lowercase, lowercase=lowercase)
    counts = collections.Counter(c for text in texts for c in normalizer.normalize_str(text))
    ranked = sorted((c for c in counts if c not in " \t\n\r"), key=lambda c: (-counts[c], c))
    alphabet = sorted(ranked[:limit_alphabet])
    continuations = [f"##{char}" for char in alphabet]
    if vocab_size < (minimum := len(SPECIAL_TOKENS) + 2 * len(alphabet)):
        raise UserError(f"--vocab-size={vocab_size} is too small for the corpus alphabet of "
                        f"{len(alphabet)} characters; use at least {minimum}")  # fmt: skip
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *continuations],
        initial_alphabet=alphabet, limit_alphabet=len(alphabet), continuing_subword_prefix="##",
        show_progress=False,
    )  # fmt: skip
    tokenizer.train_from_iterator(texts, trainer=trainer)
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    assert tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS), tokens[:8]
    return _write(output_dir, "wordpiece", ("\n".join(tokens) + "\n").encode("utf-8"))


def train_sentencepiece(
    texts_iter: Iterable[str], vocab_size: int, output_dir: str, lowercase: bool = True, *,
    model_type: str = "unigram", character_coverage: float = 0.9995,
) -> str:  # fmt: skip
    """Trains a SentencePiece model on sentences into `output_dir/spm.model` (its path): [PAD]
    and [UNK] its pad/unk pieces, [CLS]/[SEP]/[MASK] control symbols, no BOS/EOS."""
    import sentencepiece as spm

    texts = _checked([t for t in texts_iter if t.strip()], "SentencePiece")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage, pad_id=0, unk_id=1,
            bos_id=-1, eos_id=-1, pad_piece=SPECIAL_TOKENS[0], unk_piece=SPECIAL_TOKENS[1],
            control_symbols=list(SPECIAL_TOKENS[2:]),
            normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc", num_threads=1,
            input_sentence_size=0, shuffle_input_sentence=False, hard_vocab_limit=False,
            minloglevel=2,
        )  # fmt: skip
    except RuntimeError as e:
        raise UserError(f"SentencePiece training failed: {e}; try a smaller --vocab-size") from e
    return _write(output_dir, "sentencepiece", model.getvalue())


def load_or_train_tokenizer(
    sources: list[Source], work_dir: str, *, vocab: str | None, train_vocab: str | None,
    vocab_size: int | None, lowercase: bool, vocab_sample_bytes: int, max_line_chars: int,
    log,
) -> Tokenizer:  # fmt: skip
    """`vocab` loaded, or a `train_vocab` vocabulary trained on the corpus's first
    `vocab_sample_bytes` into `work_dir` (kept across restarts); saved in `work_dir`."""
    if train_vocab is not None:
        kind, path = train_vocab, os.path.join(work_dir, VOCAB_FILES[train_vocab])
        if not os.path.isfile(path):
            sentences = sample_sentences(sources, vocab_sample_bytes, max_line_chars)
            log(f"training a {vocab_size}-token {kind} vocabulary on {len(sentences):,} lines")
            train = train_wordpiece if kind == "wordpiece" else train_sentencepiece
            train(sentences, vocab_size, work_dir, lowercase=lowercase)
    else:
        assert vocab is not None
        kind, path = ("sentencepiece" if vocab.endswith(".model") else "wordpiece"), vocab
    directory, file = os.path.split(path)
    settings = {"kind": kind, "file": file, "lowercase": lowercase, "strip_accents": lowercase}
    tokenizer = load_tokenizer(directory, settings)
    tokenizer.save(work_dir)
    return tokenizer
