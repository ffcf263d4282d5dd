"""Shard workers: each corpus chunk -> one ArrayRecord shard, in a process pool, resumable.
A chunk's builder is seeded from (seed, chunk index), so the output depends only on the
arguments, never on the process count. A finished chunk leaves `chunk-XXXXX.array_record` and a
`.json` marker in the work directory; a restarted run skips it."""

import collections
import dataclasses
import itertools
import json
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from electra_jax.data import dataset_format
from electra_jax.data.example_builder import ExampleBuilder, PretrainExample, pack_examples
from electra_jax.data.sources import Blob, CorpusStats, Source, blob_documents, grouped, iter_chunks
from electra_jax.data.tokenizer import Tokenizer, load_tokenizer
from electra_jax.storage import write_atomic

_ENCODE_BATCH = 4096  # sentences per `encode_batch` call (bounds worker memory)


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    index: int
    blobs: list[Blob]
    tokenizer_dir: str
    tokenizer_settings: dict
    max_seq_len: int
    seed: int
    max_line_chars: int
    work_dir: str
    pack: bool = False


_TOKENIZERS: dict[str, Tokenizer] = {}  # per worker process: built once, memo kept warm


def _chunk_examples(
    task: ChunkTask, tokenizer: Tokenizer, stats: CorpusStats, counts: collections.Counter
) -> Iterator[PretrainExample]:
    """The chunk's builder examples, tokenizing ~4k sentences per call, counted into `counts`."""
    chunk_seed = np.random.SeedSequence([task.seed, task.index]).generate_state(1, np.uint64)[0]
    rng = random.Random(int(chunk_seed))
    builder = ExampleBuilder(
        max_seq_len=task.max_seq_len, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, rng=rng
    )
    documents = (d for b in task.blobs for d in blob_documents(b, stats, task.max_line_chars))
    for batch in grouped(documents, _ENCODE_BATCH, len):
        ids = iter(tokenizer.encode_batch([sentence for doc in batch for sentence in doc]))
        for document in batch:
            sentences = list(itertools.islice(ids, len(document)))
            counts["source_tokens"] += sum(map(len, sentences))
            stats.dropped_empty_lines += sum(not token_ids for token_ids in sentences)
            for example in [*map(builder.add_sentence, sentences), builder.end_document()]:
                if example is not None:
                    counts["builder_examples"] += 1
                    counts["tokens"] += example.num_tokens
                    counts["truncated_tokens"] += example.truncated_tokens
                    counts["two_segment_examples"] += example.num_tokens > example.first_length
                    yield example


def process_chunk(task: ChunkTask) -> dict:
    """Worker: one chunk -> `work_dir/chunk-XXXXX.array_record` plus its `.json` result marker."""
    key = json.dumps([task.tokenizer_dir, task.tokenizer_settings], sort_keys=True)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(task.tokenizer_dir, task.tokenizer_settings)
    tokenizer = _TOKENIZERS[key]
    id_dtype, length = dataset_format.id_dtype_name(tokenizer.vocab_size), task.max_seq_len
    stats, counts = CorpusStats(), collections.Counter()
    examples = _chunk_examples(task, tokenizer, stats, counts)
    if task.pack:
        rows = (row.features() for row in pack_examples(examples, length))
        records = (dataset_format.encode_row_record(*row, length, id_dtype) for row in rows)
    else:
        encode = dataset_format.encode_example_record
        records = (encode(e.token_ids, e.first_length, length, id_dtype) for e in examples)
    stem = os.path.join(task.work_dir, f"chunk-{task.index:05d}")
    counts["examples"] = dataset_format.write_records(stem + ".array_record.tmp", records)
    os.replace(stem + ".array_record.tmp", stem + ".array_record")
    name = os.path.basename(stem) + ".array_record"
    result = {"index": task.index, "file": name, **counts, **dataclasses.asdict(stats)}
    write_atomic(stem + ".json", json.dumps(result).encode())  # chunk finished
    return result


def _finished_chunk(work_dir: str, index: int) -> dict | None:
    marker = os.path.join(work_dir, f"chunk-{index:05d}.json")
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        result = json.load(f)
    return result if os.path.isfile(os.path.join(work_dir, result["file"])) else None


def _progress_bar(sources: list[Source]):
    """A tqdm bar on stderr in MB (tqdm adds MB/s and the ETA); None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with transformers; progress is optional
        return None
    sizes = [source.total_bytes() for source in sources]  # None: unknown (TFDS)
    return tqdm(
        total=None if None in sizes else sum(sizes), unit="B", unit_scale=True,  # type: ignore
        unit_divisor=1000, desc="prepare", file=sys.stderr, dynamic_ncols=True,
    )  # fmt: skip


def _init_worker() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread each: the processes fill the cores


def run_chunks(
    sources: list[Source], template: ChunkTask, chunk_bytes: int, num_processes: int,
    progress: bool,
) -> list[dict]:  # fmt: skip
    """Every chunk's result in order, unfinished ones processed (in a pool if num_processes > 1)."""
    results: dict[int, dict] = {}
    pending: collections.deque[tuple[int, int, Future]] = collections.deque()
    bar, start = _progress_bar(sources) if progress else None, time.monotonic()

    def finish(index: int, n_bytes: int, result: dict) -> None:
        results[index] = result
        if bar is not None:
            documents = sum(r["documents"] for r in results.values())
            rate = documents / max(time.monotonic() - start, 1e-9)
            bar.set_postfix_str(f"{rate:,.0f} docs/s", refresh=False)
            bar.update(n_bytes)

    pool = None
    if num_processes > 1:
        context = multiprocessing.get_context("spawn")  # fork is unsafe once JAX has threads
        pool = ProcessPoolExecutor(num_processes, mp_context=context, initializer=_init_worker)
    try:
        for index, blobs in enumerate(iter_chunks(sources, chunk_bytes)):
            n_bytes = sum(len(blob.data) for blob in blobs)
            task = dataclasses.replace(template, index=index, blobs=blobs)
            done = _finished_chunk(template.work_dir, index)
            if done is not None or pool is None:
                finish(index, n_bytes, done or process_chunk(task))
                continue
            pending.append((index, n_bytes, pool.submit(process_chunk, task)))
            # Collect finished chunks in order; block once 2 per process wait (bounded read-ahead).
            while pending and (pending[0][2].done() or len(pending) >= 2 * num_processes):
                done_index, done_bytes, future = pending.popleft()
                finish(done_index, done_bytes, future.result())
        for done_index, done_bytes, future in pending:
            finish(done_index, done_bytes, future.result())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return [results[i] for i in sorted(results)]
