"""Tokenize a text corpus into ELECTRA pre-training shards: `python -m electra_jax.prepare`.

    python -m electra_jax.prepare --corpus=builtin:pydocs --train-vocab=wordpiece \\
        --vocab-size=8192 --output=/tmp/pydocs --show=3
    python -m electra_jax.prepare --corpus='wiki/*.txt' --vocab=vocab.txt --output=data/wiki \\
        --num-processes=16
    python -m electra_jax.prepare --corpus=tfds:wikipedia/20230601.en --vocab=vocab.txt ...

Writes OUTPUT/{train,eval}-XXXXX-of-YYYYY.array_record, OUTPUT/meta.json and the vocabulary
(see electra_jax.data.dataset); --corpus files, --vocab and --output may be on gs://.
Progress and the summary go to stderr; --show / --show-json print examples to stdout. Bad input
stops with one line on stderr and exit code 2.
"""

import json
import sys

import numpy as np

from electra_jax.cli import ArgumentParser
from electra_jax.data.dataset import DEFAULT_SHARD_MB, DEFAULT_VOCAB_SAMPLE_MB, prepare_dataset
from electra_jax.data.dataset_format import read_examples, read_meta
from electra_jax.data.sources import DEFAULT_MAX_LINE_CHARS
from electra_jax.data.tokenizer import load_tokenizer
from electra_jax.errors import exit_on_user_error
from electra_jax.storage import absolute


def show_lines(
    data_dir: str, n: int, as_json: bool = False, split: str = "train", meta: dict | None = None
) -> list[str]:
    """N examples decoded, `[CLS] A [SEP] B [SEP]` (packed: ` | ` between examples), or as JSON."""
    meta = meta or read_meta(data_dir)
    batch = read_examples(data_dir, n, split, meta)
    rows = range(len(batch["input_ids"]) if batch else 0)
    if as_json or not batch:
        return [json.dumps({k: values[i].tolist() for k, values in batch.items()}) for i in rows]
    tokenizer = load_tokenizer(absolute(data_dir), meta["tokenizer"])
    lines = []
    for i in rows:
        numbers_L, texts = batch.get("packing_ids", batch["input_mask"])[i], []
        for number in range(1, int(numbers_L.max(initial=0)) + 1):  # one example, or a packed row
            ids = [int(token) for token in batch["input_ids"][i][numbers_L == number]]
            n_first = int(np.count_nonzero(batch["segment_ids"][i][numbers_L == number] == 0))
            second = f" {tokenizer.decode(ids[n_first:-1])} [SEP]" if len(ids) > n_first else ""
            texts.append(f"[CLS] {tokenizer.decode(ids[1 : n_first - 1])} [SEP]{second}")
        plural = "s" if len(texts) != 1 else ""
        packed = f", {len(texts)} example{plural}" if "packing_ids" in batch else ""
        n_tokens = int(batch["input_mask"][i].sum())
        lines.append(f"#{i} ({split}, {n_tokens} tokens{packed}): {' | '.join(texts)}")
    return lines


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m electra_jax.prepare", description=__doc__)
    add = parser.add_argument
    # fmt: off
    add("--corpus", required=True,
        help="comma-separated text files, directories, globs, tfds:NAME[@SPLIT] or builtin:pydocs")
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--vocab", help="BERT vocab.txt (WordPiece) or SentencePiece .model")
    vocab.add_argument("--train-vocab", choices=["wordpiece", "sentencepiece"],
                       help="train a vocabulary of --vocab-size tokens on the corpus")
    add("--vocab-size", type=int,
        help="vocabulary size for --train-vocab (no default: required with it, e.g. 30522)")
    add("--output", required=True, help="dataset directory to create")
    add("--max-seq-len", type=int, default=128, help="tokens per example")
    add("--seed", type=int, default=0, help="seed of the example builder")
    add("--num-processes", type=int, default=1, help="worker processes")
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument("--eval-fraction", type=float, default=0.01,
                          help="share of examples held out for eval")
    held_out.add_argument("--eval-examples", type=int,
                          help="number of examples held out for eval (default: --eval-fraction)")
    add("--no-lowercase", dest="lowercase", action="store_false",
        help="keep case and accents (cased models; default: lower-case, strip accents)")
    add("--one-doc-per-file", action="store_true",
        help="each file is one document, blank lines skipped (OpenWebText; default: a "
             "blank line ends a document)")
    add("--shard-mb", type=float, default=DEFAULT_SHARD_MB, help="raw text MB per shard")
    add("--max-line-chars", type=int, default=DEFAULT_MAX_LINE_CHARS,
        help="drop (and count) longer lines; 0 keeps all")
    add("--vocab-sample-mb", type=float, default=DEFAULT_VOCAB_SAMPLE_MB,
        help="train the vocabulary on the corpus's first N MB")
    add("--cache-dir", help="cache for builtin:pydocs text (default: none, rebuilt each run, ~6 s)")
    add("--pack", action="store_true",
        help="pack several examples into each row instead of padding (attention stays within "
             "an example; not the original's layout; default: off, one padded example per row)")
    add("--show", type=int, default=0, metavar="N", help="print N examples")
    add("--show-json", action="store_true",
        help="print the --show examples as JSON lines (default: off; alone: 5 examples)")
    add("--quiet", dest="progress", action="store_false",
        help="no progress bar or summary (default: both, on stderr)")
    # fmt: on
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    kwargs = vars(build_parser().parse_args(argv))  # the flags are prepare_dataset's arguments
    show, as_json = kwargs.pop("show"), kwargs.pop("show_json")
    meta = prepare_dataset(**kwargs)
    if n_shown := show or (5 if as_json else 0):  # (a remote dataset is copied to be read)
        for line in show_lines(kwargs["output"], n_shown, as_json, meta=meta):
            print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
