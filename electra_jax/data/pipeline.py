"""Corpus -> (vocabulary) -> ArrayRecord shards + meta.json, in parallel and resumable.

The corpus is cut into chunks of about `shard_mb` MB of raw text that end on document
boundaries (`sources.iter_chunks`). Each chunk is decoded, tokenised and turned into examples by
one worker with its own builder seeded from (seed, chunk index), and written as one shard. The
output therefore depends only on the arguments, not on the number of processes. The held-out
eval split is the last examples of the corpus (`eval_fraction` of them or `eval_examples`).

Work happens in `OUTPUT.partial/` (a manifest of the arguments, the vocabulary, one shard and
one `.json` marker per finished chunk); a restarted run with the same arguments keeps finished
chunks. On success the shards are renamed to `train-XXXXX-of-YYYYY.array_record` /
`eval-...`, meta.json is written and the directory is renamed to OUTPUT.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from electra_jax.data import records
from electra_jax.data.decode import DEFAULT_MAX_LINE_CHARS, CorpusStats, blob_documents
from electra_jax.data.example_builder import Example, ExampleBuilder
from electra_jax.data.meta import (
    FORMAT,
    FORMAT_VERSION,
    META_FILE,
    PACKED_FORMAT_VERSION,
    read_meta,
)
from electra_jax.data.packing import pack_examples
from electra_jax.data.sources import BUILTIN_PYDOCS, Blob, Source, iter_chunks, parse_corpus
from electra_jax.data.tokenizer import SPECIAL_TOKENS, Tokenizer, file_sha256, load_tokenizer
from electra_jax.errors import UserError

MANIFEST_FILE = "manifest.json"
DEFAULT_SHARD_MB = 16.0
DEFAULT_VOCAB_SAMPLE_MB = 100.0
_ENCODE_BATCH = 4096  # sentences per `encode_batch` call (bounds worker memory)


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to turn one chunk into one shard."""

    index: int
    blobs: list[Blob]
    tokenizer_dir: str
    tokenizer_settings: dict
    max_seq_len: int
    seed: int
    max_line_chars: int
    work_dir: str
    pack: bool = False


def chunk_seed(seed: int, index: int) -> int:
    """The builder seed of chunk `index`: independent streams per chunk, fixed by `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


def _chunk_name(index: int) -> str:
    return f"chunk-{index:05d}"


_TOKENIZERS: dict[str, Tokenizer] = {}


def _worker_tokenizer(directory: str, settings: dict) -> Tokenizer:
    key = json.dumps([directory, settings], sort_keys=True)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(directory, settings)
    return _TOKENIZERS[key]


def _iter_examples(
    blobs: list[Blob],
    tokenizer: Tokenizer,
    builder: ExampleBuilder,
    stats: CorpusStats,
    counts: collections.Counter,
    max_line_chars: int,
) -> Iterator[Example]:
    """Runs the builder over the chunk's documents, tokenising ~4k sentences per call."""
    documents = (doc for blob in blobs for doc in blob_documents(blob, stats, max_line_chars))
    while True:
        batch: list[list[str]] = []
        n_sentences = 0
        for document in documents:
            batch.append(document)
            n_sentences += len(document)
            if n_sentences >= _ENCODE_BATCH:
                break
        if not batch:
            return
        ids = tokenizer.encode_batch([sentence for document in batch for sentence in document])
        position = 0
        for document in batch:
            for token_ids in ids[position : position + len(document)]:
                counts["source_tokens"] += len(token_ids)
                if not token_ids:
                    stats.dropped_empty_lines += 1
                    continue
                example = builder.add_sentence(token_ids)
                if example is not None:
                    yield example
            position += len(document)
            example = builder.end_document()
            if example is not None:
                yield example


def _counted(examples: Iterator[Example], counts: collections.Counter) -> Iterator[Example]:
    """Passes examples through, counting builder examples, tokens and truncation."""
    for example in examples:
        counts["builder_examples"] += 1
        counts["tokens"] += example.num_tokens
        counts["truncated_tokens"] += example.truncated_tokens
        counts["two_segment_examples"] += example.has_second_segment
        yield example


def process_chunk(task: ChunkTask) -> dict:
    """Worker: one chunk -> `work_dir/chunk-XXXXX.array_record` plus its `.json` result marker."""
    from array_record.python.array_record_module import ArrayRecordWriter

    tokenizer = _worker_tokenizer(task.tokenizer_dir, task.tokenizer_settings)
    id_dtype = records.id_dtype_name(tokenizer.vocab_size)
    rng = random.Random(chunk_seed(task.seed, task.index))
    builder = ExampleBuilder(
        max_seq_len=task.max_seq_len, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, rng=rng
    )
    stats = CorpusStats()
    counts = collections.Counter()
    name = _chunk_name(task.index)
    path = os.path.join(task.work_dir, f"{name}.array_record")
    writer = ArrayRecordWriter(path + ".tmp", records.WRITER_OPTIONS)
    examples = _counted(
        _iter_examples(task.blobs, tokenizer, builder, stats, counts, task.max_line_chars), counts
    )
    if task.pack:
        for row in pack_examples(examples, task.max_seq_len):
            writer.write(records.pack_row_record(*row.features(), task.max_seq_len, id_dtype))
            counts["examples"] += 1
    else:
        for example in examples:
            writer.write(
                records.pack_record(
                    example.token_ids, example.first_length, example.max_seq_len, id_dtype
                )
            )
            counts["examples"] += 1
    writer.close()
    os.replace(path + ".tmp", path)
    result = {"index": task.index, "file": os.path.basename(path), **counts, **stats.to_dict()}
    marker = os.path.join(task.work_dir, f"{name}.json")
    with open(marker + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(marker + ".tmp", marker)
    return result


def _finished_chunk(work_dir: str, index: int) -> dict | None:
    marker = os.path.join(work_dir, f"{_chunk_name(index)}.json")
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        result = json.load(f)
    return result if os.path.isfile(os.path.join(work_dir, result["file"])) else None


class _Progress:
    """A tqdm bar on stderr in MB with docs/s (tqdm adds MB/s and the ETA); silent if disabled."""

    def __init__(self, total_bytes: int | None, enabled: bool):
        self.start = time.monotonic()
        self.documents = 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm comes with transformers; progress is optional
                return
            self.bar = tqdm(
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                desc="prepare",
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def update(self, n_bytes: int, documents: int) -> None:
        self.documents += documents
        if self.bar is not None:
            elapsed = max(time.monotonic() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.documents / elapsed:,.0f} docs/s", refresh=False)
            self.bar.update(n_bytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _init_worker() -> None:
    """One tokeniser thread per worker process: the processes already fill the cores."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _run_chunks(
    sources: list[Source], make_task, work_dir: str, chunk_bytes: int, num_processes: int, progress
) -> list[dict]:
    """Processes every chunk not finished yet (in a process pool), returning results in order."""
    results: dict[int, dict] = {}
    pending: collections.deque[tuple[int, int, Future]] = collections.deque()
    pool = None
    if num_processes > 1:
        context = multiprocessing.get_context("spawn")  # fork is unsafe once JAX has threads
        pool = ProcessPoolExecutor(num_processes, mp_context=context, initializer=_init_worker)

    def collect(block: bool) -> None:
        while pending and (block or pending[0][2].done()):
            index, n_bytes, future = pending.popleft()
            results[index] = future.result()
            progress.update(n_bytes, results[index]["documents"])

    try:
        for index, blobs in enumerate(iter_chunks(sources, chunk_bytes)):
            n_bytes = sum(len(blob.data) for blob in blobs)
            done = _finished_chunk(work_dir, index)
            if done is not None:
                results[index] = done
                progress.update(n_bytes, done["documents"])
                continue
            task = make_task(index, blobs)
            if pool is None:
                results[index] = process_chunk(task)
                progress.update(n_bytes, results[index]["documents"])
                continue
            pending.append((index, n_bytes, pool.submit(process_chunk, task)))
            collect(block=False)
            while len(pending) >= 2 * num_processes:  # bounded: never read far ahead
                index0, n0, future0 = pending.popleft()
                results[index0] = future0.result()
                progress.update(n0, results[index0]["documents"])
        collect(block=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return [results[i] for i in sorted(results)]


def _eval_count(n_examples: int, eval_fraction: float, eval_examples: int | None) -> int:
    if eval_examples is not None:
        count = eval_examples
    else:
        count = round(eval_fraction * n_examples)
        if eval_fraction > 0 and n_examples >= 2:
            count = max(1, count)
    if count >= n_examples:
        raise UserError(
            f"the corpus gives only {n_examples} examples, too few for {count} held-out eval "
            f"examples; lower --eval-examples/--eval-fraction or add text"
        )
    return count


def _read_all(path: str) -> list[bytes]:
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(path)
    try:
        return list(reader.read(range(reader.num_records()))) if reader.num_records() else []
    finally:
        reader.close()


def _write_records(path: str, items: Sequence[bytes]) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(path, records.WRITER_OPTIONS)
    for item in items:
        writer.write(item)
    writer.close()


def _tokens_in(items: Sequence[bytes], max_seq_len: int, id_dtype: str) -> int:
    if not items:
        return 0
    return int(records.decode_records(items, max_seq_len, id_dtype)["input_mask"].sum())


def _finalize_shards(
    results: list[dict], work_dir: str, out_dir: str, n_eval: int, max_seq_len: int, id_dtype: str
) -> dict:
    """Splits chunk shards into train / eval (the corpus tail) and renames them into `out_dir`."""
    train: list[tuple[str, int, int]] = []  # (source path or records, examples, tokens)
    evals: list[tuple[object, int, int]] = []
    remaining_eval = n_eval
    for result in reversed(results):
        path = os.path.join(work_dir, result["file"])
        n = result["examples"]
        if n == 0:
            continue
        if remaining_eval >= n:
            evals.append((path, n, result["tokens"]))
            remaining_eval -= n
        elif remaining_eval > 0:
            items = _read_all(path)
            head, tail = items[: n - remaining_eval], items[n - remaining_eval :]
            evals.append((tail, len(tail), _tokens_in(tail, max_seq_len, id_dtype)))
            train.append((head, len(head), _tokens_in(head, max_seq_len, id_dtype)))
            remaining_eval = 0
        else:
            train.append((path, n, result["tokens"]))
    train.reverse()
    evals.reverse()
    splits = {}
    for split, parts in (("train", train), ("eval", evals)):
        shards = []
        for i, (content, _, _) in enumerate(parts):
            name = f"{split}-{i:05d}-of-{len(parts):05d}.array_record"
            if isinstance(content, str):
                os.replace(content, os.path.join(out_dir, name))
            else:
                _write_records(os.path.join(out_dir, name), content)
            shards.append(name)
        splits[split] = {
            "examples": sum(part[1] for part in parts),
            "tokens": sum(part[2] for part in parts),
            "shards": shards,
        }
    return splits


def _manifest(
    sources: list[Source], vocab: dict, *, max_seq_len: int, seed: int, eval_fraction: float,
    eval_examples: int | None, lowercase: bool, one_doc_per_file: bool, chunk_bytes: int,
    max_line_chars: int, pack: bool,
) -> dict:  # fmt: skip
    """The arguments that determine a dataset (not the process count): restart/overwrite key."""
    return {
        "format_version": FORMAT_VERSION,
        "corpus": [source.fingerprint() for source in sources],
        "vocab": vocab,
        "max_seq_len": max_seq_len,
        "seed": seed,
        "eval_fraction": None if eval_examples is not None else eval_fraction,
        "eval_examples": eval_examples,
        "lowercase": lowercase,
        "one_doc_per_file": one_doc_per_file,
        "chunk_bytes": chunk_bytes,
        "max_line_chars": max_line_chars,
        **({"pack": True} if pack else {}),  # absent when off: earlier manifests stay valid
    }


def _first_difference(old: dict, new: dict) -> str:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return key
    return "?"


def _check_existing_output(output: str, manifest: dict) -> dict | None:
    """Returns the existing meta if `output` already holds this dataset; refuses any other."""
    if not os.path.exists(output):
        return None
    if not os.path.isdir(output):
        raise UserError(f"--output={output} is a file; pass a directory path")
    if os.path.isfile(os.path.join(output, META_FILE)):
        meta = read_meta(output)
        if meta.get("manifest") == manifest:
            return meta
        key = _first_difference(meta.get("manifest", {}), manifest)
        raise UserError(
            f"{output} already holds a different dataset ({key} differs); pass another --output "
            f"or delete {output}"
        )
    if os.listdir(output):
        raise UserError(f"--output={output} exists and is not a prepared dataset; pass a new path")
    return None


def _vocab_sentences(sources: list[Source], max_bytes: int, max_line_chars: int) -> list[str]:
    """Sentences for vocabulary training: the corpus's first `max_bytes` of text."""
    stats = CorpusStats()
    sentences: list[str] = []
    for blobs in iter_chunks(sources, 1 << 20):
        for blob in blobs:
            for document in blob_documents(blob, stats, max_line_chars):
                sentences.extend(document)
        if stats.raw_bytes >= max_bytes:
            break
    return sentences


def _prepare_tokenizer(
    sources: list[Source], work_dir: str, *, vocab: str | None, train_vocab: str | None,
    vocab_size: int | None, lowercase: bool, vocab_sample_bytes: int, max_line_chars: int,
    log,
) -> Tokenizer:  # fmt: skip
    """Loads `vocab`, or trains a vocabulary into `work_dir` (kept across restarts)."""
    from electra_jax.data.sentencepiece_tokenizer import SentencePieceTokenizer
    from electra_jax.data.tokenizer import WordPieceTokenizer
    from electra_jax.data.vocab_training import (
        SENTENCEPIECE_FILE,
        WORDPIECE_FILE,
        train_sentencepiece,
        train_wordpiece,
    )

    if train_vocab is not None:
        kind = train_vocab
        name = WORDPIECE_FILE if kind == "wordpiece" else SENTENCEPIECE_FILE
        path = os.path.join(work_dir, name)
        if not os.path.isfile(path):
            sentences = _vocab_sentences(sources, vocab_sample_bytes, max_line_chars)
            log(f"training a {vocab_size}-token {kind} vocabulary on {len(sentences):,} lines")
            train = train_wordpiece if kind == "wordpiece" else train_sentencepiece
            train(sentences, vocab_size, work_dir, lowercase=lowercase)
    else:
        assert vocab is not None
        kind = "sentencepiece" if vocab.endswith(".model") else "wordpiece"
        path = vocab
    if kind == "sentencepiece":
        tokenizer = SentencePieceTokenizer(path)
    else:
        tokenizer = WordPieceTokenizer(path, lowercase=lowercase, strip_accents=lowercase)
    tokenizer.save(work_dir)
    return tokenizer


def _validate(
    vocab: str | None, train_vocab: str | None, vocab_size: int | None, max_seq_len: int,
    num_processes: int, eval_fraction: float, eval_examples: int | None, shard_mb: float,
) -> None:  # fmt: skip
    if (vocab is None) == (train_vocab is None):
        raise UserError("pass exactly one of --vocab=PATH or --train-vocab=wordpiece|sentencepiece")
    if train_vocab is not None and train_vocab not in ("wordpiece", "sentencepiece"):
        raise UserError(f"--train-vocab={train_vocab}: expected wordpiece or sentencepiece")
    if train_vocab is not None and not vocab_size:
        raise UserError("--train-vocab needs --vocab-size=N (e.g. 30522 for BERT-sized)")
    if vocab is not None and not os.path.isfile(vocab):
        raise UserError(f"--vocab={vocab} does not exist; pass a BERT vocab.txt or a .model file")
    if max_seq_len < 8:
        raise UserError(f"--max-seq-len={max_seq_len} is too short; use at least 8 (e.g. 128)")
    if num_processes < 1:
        raise UserError(f"--num-processes={num_processes}: expected at least 1")
    if not 0 <= eval_fraction < 1:
        raise UserError(f"--eval-fraction={eval_fraction}: expected a value in [0, 1)")
    if eval_examples is not None and eval_examples < 0:
        raise UserError(f"--eval-examples={eval_examples}: expected a count >= 0")
    if shard_mb <= 0:
        raise UserError(f"--shard-mb={shard_mb}: expected a positive size")


def prepare_dataset(
    corpus: str | Sequence[str],
    output: str,
    *,
    vocab: str | None = None,
    train_vocab: str | None = None,
    vocab_size: int | None = None,
    max_seq_len: int = 128,
    seed: int = 0,
    num_processes: int = 1,
    eval_fraction: float = 0.01,
    eval_examples: int | None = None,
    lowercase: bool = True,
    one_doc_per_file: bool = False,
    shard_mb: float = DEFAULT_SHARD_MB,
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
    vocab_sample_mb: float = DEFAULT_VOCAB_SAMPLE_MB,
    cache_dir: str | None = None,
    progress: bool = True,
    pack: bool = False,
) -> dict:
    """Builds a pre-training dataset in `output` and returns its meta.json contents.

    `vocab` is a BERT vocab.txt or a SentencePiece .model; alternatively `train_vocab`
    ("wordpiece" / "sentencepiece") with `vocab_size` trains one on the first `vocab_sample_mb`
    MB of the corpus. `num_processes` > 1 uses spawned processes (the calling script needs the
    usual `if __name__ == "__main__":` guard). Returns at once if `output` already holds the
    same dataset; refuses to overwrite a different one. `pack` fills each stored row with
    several examples (`data/packing.py`); a split's `examples` then counts rows.
    """
    _validate(
        vocab, train_vocab, vocab_size, max_seq_len, num_processes, eval_fraction, eval_examples,
        shard_mb,
    )  # fmt: skip
    log = (lambda message: print(message, file=sys.stderr)) if progress else (lambda _: None)
    output = os.path.abspath(output)
    sources = parse_corpus(corpus, one_doc_per_file=one_doc_per_file, cache_dir=cache_dir)
    chunk_bytes = max(1, int(shard_mb * 1e6))
    vocab_key = (
        {"train": train_vocab, "vocab_size": vocab_size}
        if train_vocab
        else {"file": os.path.abspath(vocab), "sha256": file_sha256(vocab)}  # type: ignore[arg-type]
    )
    manifest = _manifest(
        sources, vocab_key, max_seq_len=max_seq_len, seed=seed, eval_fraction=eval_fraction,
        eval_examples=eval_examples, lowercase=lowercase, one_doc_per_file=one_doc_per_file,
        chunk_bytes=chunk_bytes, max_line_chars=max_line_chars, pack=pack,
    )  # fmt: skip
    existing = _check_existing_output(output, manifest)
    if existing is not None:
        log(f"{output} already holds this dataset; nothing to do")
        return existing

    work_dir = output + ".partial"
    manifest_path = os.path.join(work_dir, MANIFEST_FILE)
    if os.path.isdir(work_dir):
        try:
            with open(manifest_path) as f:
                same = json.load(f) == manifest
        except (OSError, json.JSONDecodeError):
            same = False
        if not same:
            log(f"removing {work_dir}: an unfinished run with other arguments")
            shutil.rmtree(work_dir)
        else:
            log(f"resuming the unfinished run in {work_dir}")
    os.makedirs(work_dir, exist_ok=True)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)

    tokenizer = _prepare_tokenizer(
        sources, work_dir, vocab=vocab, train_vocab=train_vocab, vocab_size=vocab_size,
        lowercase=lowercase, vocab_sample_bytes=int(vocab_sample_mb * 1e6),
        max_line_chars=max_line_chars, log=log,
    )  # fmt: skip
    settings = tokenizer.settings()  # type: ignore[attr-defined]
    id_dtype = records.id_dtype_name(tokenizer.vocab_size)

    def make_task(index: int, blobs: list[Blob]) -> ChunkTask:
        return ChunkTask(
            index, blobs, work_dir, settings, max_seq_len, seed, max_line_chars, work_dir, pack
        )

    total = None
    if all(source.kind != "tfds" for source in sources):
        total = sum(source.total_bytes() or 0 for source in sources)
    bar = _Progress(total, progress)
    started = time.monotonic()
    try:
        results = _run_chunks(sources, make_task, work_dir, chunk_bytes, num_processes, bar)
    finally:
        bar.close()
    seconds = time.monotonic() - started

    stats = CorpusStats()
    for result in results:
        stats.add(CorpusStats(**{k: result[k] for k in CorpusStats().to_dict()}))
    totals = collections.Counter()
    for result in results:
        for key in ("examples", "tokens", "source_tokens", "truncated_tokens"):
            totals[key] += result.get(key, 0)
        totals["two_segment_examples"] += result.get("two_segment_examples", 0)
        # Chunks finished before packing existed were unpacked: one example per record.
        totals["builder_examples"] += result.get("builder_examples", result.get("examples", 0))
    spec = corpus if isinstance(corpus, str) else ",".join(corpus)
    if totals["examples"] == 0:
        shutil.rmtree(work_dir)
        raise UserError(
            f"--corpus={spec} gave no examples ({stats.lines} lines, {stats.raw_bytes} bytes, "
            f"all empty or dropped); pass non-empty UTF-8 text, one sentence per line"
        )
    try:
        n_eval = _eval_count(totals["examples"], eval_fraction, eval_examples)
    except UserError:
        shutil.rmtree(work_dir)
        raise

    out_dir = os.path.join(work_dir, "out")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    splits = _finalize_shards(results, work_dir, out_dir, n_eval, max_seq_len, id_dtype)
    tokenizer.save(out_dir)
    meta = {
        "format": FORMAT,
        "format_version": PACKED_FORMAT_VERSION if pack else FORMAT_VERSION,
        "source": spec,
        "seed": seed,
        "max_seq_len": max_seq_len,
        "vocab_size": tokenizer.vocab_size,
        "vocab_hash": tokenizer.vocab_hash,
        "vocab_file": settings["file"],
        "special_ids": {
            token: getattr(tokenizer, f"{token.strip('[]').lower()}_id") for token in SPECIAL_TOKENS
        },
        "tokenizer": settings,
        "record": records.record_layout(max_seq_len, id_dtype, packed=pack),
        "splits": splits,
        "corpus": {
            **stats.to_dict(),
            "source_tokens": totals["source_tokens"],
            "truncated_tokens": totals["truncated_tokens"],
            "two_segment_examples": totals["two_segment_examples"],
            "builder_examples": totals["builder_examples"],
            "padding_share": round(1 - totals["tokens"] / (totals["examples"] * max_seq_len), 4),
        },
        "manifest": manifest,
    }
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)
    if os.path.isdir(output):
        os.rmdir(output)  # empty (checked above)
    os.replace(out_dir, output)
    shutil.rmtree(work_dir)
    mb = stats.raw_bytes / 1e6
    unit = f"rows ({totals['builder_examples']:,} examples packed)" if pack else "examples"
    padding = 100 * meta["corpus"]["padding_share"]
    log(
        f"wrote {output}: {splits['train']['examples']:,} train / {splits['eval']['examples']:,} "
        f"eval {unit}, {totals['tokens']:,} tokens, {padding:.1f}% padding, from "
        f"{stats.documents:,} documents, "
        f"{mb:.1f} MB in {seconds:.1f} s ({mb / max(seconds, 1e-9):.1f} MB/s); replaced "
        f"{stats.replaced_bytes} bad bytes, dropped "
        f"{stats.dropped_blank_lines + stats.dropped_overlong_lines + stats.dropped_empty_lines}"
        f" lines"
    )
    return meta


def default_cache_dir() -> str:
    """Where built-in datasets are cached: $ELECTRA_JAX_CACHE or ~/.cache/electra_jax."""
    return os.environ.get(
        "ELECTRA_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "electra_jax")
    )


def ensure_builtin_dataset(
    cache_dir: str | None = None,
    vocab_size: int = 8192,
    max_seq_len: int = 128,
    seed: int = 0,
    pack: bool = False,
) -> str:
    """Prepares `builtin:pydocs` with a trained WordPiece vocabulary unless cached; returns its dir.

    The first call takes ~15 s on a busy 2-core machine (corpus ~6-8 s, vocabulary ~3-4 s,
    examples ~2-3 s); later calls return at once. A file lock serialises concurrent callers
    (several local processes, pytest workers). Used by the `tiny` pre-training config and the
    tests; needs no network.
    """
    import fcntl

    cache_dir = cache_dir or default_cache_dir()
    name = f"pydocs-wp{vocab_size}-len{max_seq_len}-seed{seed}" + ("-packed" if pack else "")
    data_dir = os.path.join(cache_dir, name)
    if os.path.isfile(os.path.join(data_dir, META_FILE)):
        return data_dir
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".builtin.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(data_dir, META_FILE)):
            prepare_dataset(
                BUILTIN_PYDOCS, data_dir, train_vocab="wordpiece", vocab_size=vocab_size,
                max_seq_len=max_seq_len, seed=seed, shard_mb=1.0, cache_dir=cache_dir,
                progress=False, pack=pack,
            )  # fmt: skip
    return data_dir
