"""Corpus -> (vocabulary) -> a prepared dataset: ArrayRecord shards + meta.json, resumable.
Work happens in `OUTPUT.partial/` (the arguments' manifest, the vocabulary, the chunk shards; a
restart with the same arguments keeps finished chunks), renamed to OUTPUT on success. A remote
OUTPUT (gs://) is built in a local staging folder of the cache, then uploaded with meta.json last
(readers take a folder without it for no dataset). The eval split is the corpus tail."""

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

from etils import epath

from electra_jax.data import dataset_format, sources
from electra_jax.data.shard_workers import ChunkTask, run_chunks
from electra_jax.data.sources import CorpusStats, parse_corpus
from electra_jax.data.tokenizer import SPECIAL_TOKENS, VOCAB_FILES, file_sha256
from electra_jax.data.vocab_training import load_or_train_tokenizer
from electra_jax.errors import UserError
from electra_jax.storage import (
    absolute,
    check_location,
    copy_tree,
    is_remote,
    local_cache_dir,
    write_atomic,
)  # fmt: skip

MANIFEST_FILE = "manifest.json"
DEFAULT_SHARD_MB = 16.0
DEFAULT_VOCAB_SAMPLE_MB = 100.0
_CORPUS_COUNTS = ("source_tokens", "truncated_tokens", "two_segment_examples")


def _check_existing_output(output: str, manifest: dict, staged: bool = False) -> dict | None:
    """Returns the existing meta if `output` already holds this dataset; refuses any other.
    `staged`: a whole copy waits in the local staging folder (an interrupted upload), so an
    unfinished remote `output` is no obstacle."""
    target = epath.Path(output)
    if not target.exists():
        return None
    if not target.is_dir():
        raise UserError(f"--output={output} is a file; pass a directory path")
    if (target / dataset_format.META_FILE).is_file():
        meta = dataset_format.read_meta(output)
        old = meta.get("manifest", {})
        if old == manifest:
            return meta
        key = next(k for k in sorted(set(old) | set(manifest)) if old.get(k) != manifest.get(k))
        raise UserError(f"{output} already holds a different dataset ({key} differs); pass "
                        f"another --output or delete {output}")  # fmt: skip
    if any(target.iterdir()) and not staged:
        raise UserError(f"--output={output} exists and is not a prepared dataset; pass a new path")
    return None


def staging_dir(output: str) -> str:
    """The local folder in which a dataset for a remote `output` is built (one per URL)."""
    key = hashlib.sha256(output.encode()).hexdigest()[:16]
    return os.path.join(local_cache_dir(), "staging", key)


def _staged_meta(local_output: str, manifest: dict) -> dict | None:
    """The meta of a whole dataset with `manifest` waiting in `local_output`, else None."""
    path = os.path.join(local_output, dataset_format.META_FILE)
    if not os.path.isfile(path):
        return None
    meta = dataset_format.read_meta(local_output)
    return meta if meta.get("manifest") == manifest else None


def _open_work_dir(work_dir: str, manifest: dict, log) -> None:
    """Keeps an unfinished run with the same manifest (its finished chunks); removes any other."""
    path = os.path.join(work_dir, MANIFEST_FILE)
    if os.path.isdir(work_dir):
        try:
            with open(path) as f:
                same = json.load(f) == manifest
        except (OSError, json.JSONDecodeError):
            same = False
        log(f"resuming the unfinished run in {work_dir}" if same else
            f"removing {work_dir}: an unfinished run with other arguments")  # fmt: skip
        if not same:
            shutil.rmtree(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    write_atomic(path, json.dumps(manifest, indent=1))


def _eval_count(n_examples: int, eval_fraction: float, eval_examples: int | None) -> int:
    count = eval_examples
    if count is None:
        count = round(eval_fraction * n_examples)
        count = max(1, count) if eval_fraction > 0 and n_examples >= 2 else count
    if count >= n_examples:
        raise UserError(
            f"the corpus gives only {n_examples} examples, too few for {count} held-out eval "
            f"examples; lower --eval-examples/--eval-fraction or add text"
        )
    return count


def _split_shards(
    results: list[dict], work_dir: str, out_dir: str, n_eval: int, max_seq_len: int, id_dtype: str
) -> dict:
    """Moves the chunk shards into `out_dir`, the last `n_eval` examples as eval (splitting the
    chunk that straddles the boundary); returns meta.json's `splits`."""
    parts: dict[str, list] = {"train": [], "eval": []}  # (path or records, examples, tokens)
    start, first_eval = 0, sum(result["examples"] for result in results) - n_eval
    for result in results:
        path, n = os.path.join(work_dir, result["file"]), result["examples"]
        if start < first_eval < start + n:
            records, cut = dataset_format.read_records(path), first_eval - start
            for split, part in ("train", records[:cut]), ("eval", records[cut:]):
                mask = dataset_format.decode_records(part, max_seq_len, id_dtype)["input_mask"]
                parts[split].append((part, len(part), int(mask.sum())))
        elif n > 0:
            parts["train" if start < first_eval else "eval"].append((path, n, result["tokens"]))
        start += n
    splits = {}
    for split, chunks in parts.items():
        shards = [f"{split}-{i:05d}-of-{len(chunks):05d}.array_record" for i in range(len(chunks))]
        for name, (content, _, _) in zip(shards, chunks, strict=True):
            if isinstance(content, str):
                os.replace(content, os.path.join(out_dir, name))
            else:
                dataset_format.write_records(os.path.join(out_dir, name), content)
        examples, tokens = (sum(chunk[i] for chunk in chunks) for i in (1, 2))
        splits[split] = {"examples": examples, "tokens": tokens, "shards": shards}
    return splits


def prepare_dataset(
    corpus: str | Sequence[str], output: str, *, vocab: str | None = None,
    train_vocab: str | None = None, vocab_size: int | None = None, max_seq_len: int = 128,
    seed: int = 0, num_processes: int = 1, eval_fraction: float = 0.01,
    eval_examples: int | None = None, lowercase: bool = True, one_doc_per_file: bool = False,
    shard_mb: float = DEFAULT_SHARD_MB, max_line_chars: int = sources.DEFAULT_MAX_LINE_CHARS,
    vocab_sample_mb: float = DEFAULT_VOCAB_SAMPLE_MB, cache_dir: str | None = None,
    progress: bool = True, pack: bool = False,
) -> dict:  # fmt: skip
    """Builds a dataset in `output` (at once if it holds this one; never over another) and
    returns its meta.json. `num_processes` > 1 spawns processes: the caller needs a `__main__`
    guard. `pack` fills rows with several examples; `examples` then counts rows."""
    checks = [
        ((vocab is None) == (train_vocab is None),
         "pass exactly one of --vocab=PATH or --train-vocab=wordpiece|sentencepiece"),
        (train_vocab not in (None, *VOCAB_FILES),
         f"--train-vocab={train_vocab}: expected wordpiece or sentencepiece"),
        (train_vocab is not None and not vocab_size,
         "--train-vocab needs --vocab-size=N (e.g. 30522 for BERT-sized)"),
        (vocab is not None and not epath.Path(vocab).is_file(),
         f"--vocab={vocab} does not exist; pass a BERT vocab.txt or a .model file"),
        (max_seq_len < 8, f"--max-seq-len={max_seq_len} is too short; use at least 8 (e.g. 128)"),
        (num_processes < 1, f"--num-processes={num_processes}: expected at least 1"),
        (not 0 <= eval_fraction < 1,
         f"--eval-fraction={eval_fraction}: expected a value in [0, 1)"),
        (eval_examples is not None and eval_examples < 0,
         f"--eval-examples={eval_examples}: expected a count >= 0"),
        (shard_mb <= 0, f"--shard-mb={shard_mb}: expected a positive size"),
    ]  # fmt: skip
    if failed := [message for bad, message in checks if bad]:
        raise UserError(failed[0])
    log = (lambda message: print(message, file=sys.stderr)) if progress else (lambda _: None)
    output = absolute(output)
    check_location(output, "--output")
    corpus_sources = parse_corpus(corpus, one_doc_per_file=one_doc_per_file, cache_dir=cache_dir)
    chunk_bytes = max(1, int(shard_mb * 1e6))
    vocab_key = (
        {"train": train_vocab, "vocab_size": vocab_size} if train_vocab
        else {"file": absolute(vocab), "sha256": file_sha256(vocab)}  # type: ignore[arg-type]
    )  # fmt: skip
    manifest = {  # the arguments that determine the dataset (not the process count)
        "format_version": dataset_format.FORMAT_VERSION,
        "corpus": [source.fingerprint() for source in corpus_sources], "vocab": vocab_key,
        "max_seq_len": max_seq_len, "seed": seed,
        "eval_fraction": None if eval_examples is not None else eval_fraction,
        "eval_examples": eval_examples, "lowercase": lowercase,
        "one_doc_per_file": one_doc_per_file, "chunk_bytes": chunk_bytes,
        "max_line_chars": max_line_chars,
        **({"pack": True} if pack else {}),  # absent when off: earlier manifests stay valid
    }  # fmt: skip
    local_output = staging_dir(output) if is_remote(output) else output
    staged = _staged_meta(local_output, manifest) if local_output != output else None
    if (existing := _check_existing_output(output, manifest, staged is not None)) is not None:
        log(f"{output} already holds this dataset; nothing to do")
        return existing
    if staged is not None:  # built before, its upload interrupted
        return _upload(local_output, output, staged, log)
    work_dir = local_output + ".partial"
    _open_work_dir(work_dir, manifest, log)
    tokenizer = load_or_train_tokenizer(
        corpus_sources, work_dir, vocab=vocab, train_vocab=train_vocab, vocab_size=vocab_size,
        lowercase=lowercase, vocab_sample_bytes=int(vocab_sample_mb * 1e6),
        max_line_chars=max_line_chars, log=log,
    )  # fmt: skip
    settings = tokenizer.settings()
    task = ChunkTask(-1, [], work_dir, settings, max_seq_len, seed, max_line_chars, work_dir, pack)
    started = time.monotonic()
    results = run_chunks(corpus_sources, task, chunk_bytes, num_processes, progress)
    seconds = time.monotonic() - started
    stats = CorpusStats(**{k: sum(r[k] for r in results) for k in asdict(CorpusStats())})
    totals = {k: sum(r.get(k, 0) for r in results) for k in ("examples", "tokens", *_CORPUS_COUNTS)}
    # Chunks finished before packing existed were unpacked: one example per record.
    totals["builder_examples"] = sum(r.get("builder_examples", r["examples"]) for r in results)
    spec = corpus if isinstance(corpus, str) else ",".join(corpus)
    try:
        if totals["examples"] == 0:
            raise UserError(
                f"--corpus={spec} gave no examples ({stats.lines} lines, {stats.raw_bytes} bytes, "
                f"all empty or dropped); pass non-empty UTF-8 text, one sentence per line"
            )
        n_eval = _eval_count(totals["examples"], eval_fraction, eval_examples)
    except UserError:
        shutil.rmtree(work_dir)
        raise
    out_dir = os.path.join(work_dir, "out")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    id_dtype = dataset_format.id_dtype_name(tokenizer.vocab_size)
    splits = _split_shards(results, work_dir, out_dir, n_eval, max_seq_len, id_dtype)
    tokenizer.save(out_dir)
    version = dataset_format.PACKED_FORMAT_VERSION if pack else dataset_format.FORMAT_VERSION
    padding_share = round(1 - totals["tokens"] / (totals["examples"] * max_seq_len), 4)
    meta = {
        "format": dataset_format.FORMAT, "format_version": version,
        "source": spec, "seed": seed, "max_seq_len": max_seq_len,
        "vocab_size": tokenizer.vocab_size, "vocab_hash": tokenizer.vocab_hash,
        "vocab_file": settings["file"],
        "special_ids": {t: getattr(tokenizer, f"{t[1:-1].lower()}_id") for t in SPECIAL_TOKENS},
        "tokenizer": settings,
        "record": dataset_format.record_layout(max_seq_len, id_dtype, packed=pack),
        "splits": splits,
        "corpus": {**asdict(stats), **{k: totals[k] for k in _CORPUS_COUNTS},
                   "builder_examples": totals["builder_examples"], "padding_share": padding_share},
        "manifest": manifest,
    }  # fmt: skip
    write_atomic(os.path.join(out_dir, dataset_format.META_FILE), json.dumps(meta, indent=1))
    if os.path.isdir(local_output):  # empty (checked above), or a stale staging copy
        (os.rmdir if local_output == output else shutil.rmtree)(local_output)
    os.replace(out_dir, local_output)
    shutil.rmtree(work_dir)
    if local_output != output:
        _upload(local_output, output, meta, log)
    mb = stats.raw_bytes / 1e6
    unit = f"rows ({totals['builder_examples']:,} examples packed)" if pack else "examples"
    dropped = stats.dropped_blank_lines + stats.dropped_overlong_lines + stats.dropped_empty_lines
    log(
        f"wrote {output}: {splits['train']['examples']:,} train / {splits['eval']['examples']:,} "
        f"eval {unit}, {totals['tokens']:,} tokens, {100 * padding_share:.1f}% padding, from "
        f"{stats.documents:,} documents, {mb:.1f} MB in {seconds:.1f} s "
        f"({mb / max(seconds, 1e-9):.1f} MB/s); replaced {stats.replaced_bytes} bad bytes, "
        f"dropped {dropped} lines"
    )
    return meta


def _upload(local_output: str, output: str, meta: dict, log) -> dict:
    """Copies a dataset built in its staging folder to the remote `output`, meta.json last."""
    log(f"uploading the dataset to {output}")
    copy_tree(local_output, output, last=dataset_format.META_FILE)
    shutil.rmtree(local_output)
    return meta


def default_cache_dir() -> str:
    return local_cache_dir()


def ensure_builtin_dataset(
    cache_dir: str | None = None, vocab_size: int = 8192, max_seq_len: int = 128, seed: int = 0,
    pack: bool = False,
) -> str:  # fmt: skip
    """`builtin:pydocs` prepared with a trained WordPiece vocabulary (offline, ~15 s once, then
    cached); a file lock serializes concurrent callers (processes, pytest workers)."""
    cache_dir = cache_dir or default_cache_dir()
    name = f"pydocs-wp{vocab_size}-len{max_seq_len}-seed{seed}" + ("-packed" if pack else "")
    data_dir = os.path.join(cache_dir, name)
    if os.path.isfile(os.path.join(data_dir, dataset_format.META_FILE)):
        return data_dir
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".builtin.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(data_dir, dataset_format.META_FILE)):
            print(f"data: preparing the built-in corpus once into {data_dir}...", flush=True)
            prepare_dataset(
                sources.BUILTIN_PYDOCS, data_dir, train_vocab="wordpiece", vocab_size=vocab_size,
                max_seq_len=max_seq_len, seed=seed, shard_mb=1.0, cache_dir=cache_dir,
                progress=False, pack=pack,
            )  # fmt: skip
    return data_dir
