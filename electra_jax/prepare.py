"""Text corpus -> pre-training shards: `python -m electra_jax.prepare`.

    python -m electra_jax.prepare --corpus=builtin:pydocs --train-vocab=wordpiece \\
        --vocab-size=8192 --output=/tmp/pydocs --show=3
    python -m electra_jax.prepare --corpus='wiki/*.txt' --vocab=vocab.txt --output=data/wiki \\
        --num-processes=16
    python -m electra_jax.prepare --corpus=tfds:wikipedia/20230601.en --vocab=vocab.txt ...

Writes OUTPUT/{train,eval}-XXXXX-of-YYYYY.array_record, OUTPUT/meta.json and the vocabulary
(see electra_jax.data.pipeline). Progress and the summary go to stderr; --show / --show-json
print examples to stdout. Bad input stops with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from electra_jax.data.decode import DEFAULT_MAX_LINE_CHARS
from electra_jax.data.pipeline import (
    DEFAULT_SHARD_MB,
    DEFAULT_VOCAB_SAMPLE_MB,
    ensure_builtin_dataset,
    prepare_dataset,
)
from electra_jax.errors import UserError, exit_on_user_error

__all__ = ["main", "prepare_dataset", "ensure_builtin_dataset"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports flag errors as one-line UserErrors (exit code 2, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message}; see python -m electra_jax.prepare --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m electra_jax.prepare",
        description="Tokenise and pack a text corpus into ELECTRA pre-training shards.",
    )
    parser.add_argument(
        "--corpus",
        required=True,
        help="comma-separated text files, directories, globs, tfds:NAME[:SPLIT] or builtin:pydocs",
    )
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--vocab", help="BERT vocab.txt (WordPiece) or SentencePiece .model")
    vocab.add_argument("--train-vocab", choices=["wordpiece", "sentencepiece"])
    parser.add_argument("--vocab-size", type=int, help="vocabulary size for --train-vocab")
    parser.add_argument("--output", required=True, help="dataset directory to create")
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument("--eval-fraction", type=float, default=0.01)
    held_out.add_argument("--eval-examples", type=int, default=None)
    parser.add_argument(
        "--no-lowercase", action="store_true", help="keep case and accents (cased models)"
    )
    parser.add_argument(
        "--one-doc-per-file",
        action="store_true",
        help="each file is one document, blank lines skipped (OpenWebText)",
    )
    parser.add_argument(
        "--shard-mb", type=float, default=DEFAULT_SHARD_MB, help="raw text MB per shard"
    )
    parser.add_argument(
        "--max-line-chars",
        type=int,
        default=DEFAULT_MAX_LINE_CHARS,
        help="drop (and count) longer lines; 0 keeps all",
    )
    parser.add_argument(
        "--vocab-sample-mb",
        type=float,
        default=DEFAULT_VOCAB_SAMPLE_MB,
        help="train the vocabulary on the corpus's first N MB",
    )
    parser.add_argument("--cache-dir", default=None, help="cache for builtin:pydocs text")
    parser.add_argument(
        "--pack",
        action="store_true",
        help="pack several examples into each row instead of padding (attention stays within "
        "an example; not the original's layout)",
    )
    parser.add_argument("--show", type=int, default=0, metavar="N", help="print N examples")
    parser.add_argument(
        "--show-json", action="store_true", help="print the --show examples as JSON lines"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    prepare_dataset(
        args.corpus,
        args.output,
        vocab=args.vocab,
        train_vocab=args.train_vocab,
        vocab_size=args.vocab_size,
        max_seq_len=args.max_seq_len,
        seed=args.seed,
        num_processes=args.num_processes,
        eval_fraction=args.eval_fraction,
        eval_examples=args.eval_examples,
        lowercase=not args.no_lowercase,
        one_doc_per_file=args.one_doc_per_file,
        shard_mb=args.shard_mb,
        max_line_chars=args.max_line_chars,
        vocab_sample_mb=args.vocab_sample_mb,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
        pack=args.pack,
    )
    show = args.show or (5 if args.show_json else 0)
    if show:
        from electra_jax.data.show import show_lines

        for line in show_lines(args.output, show, as_json=args.show_json):
            print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
