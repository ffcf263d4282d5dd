"""Data pipeline throughput: prepare (MB of raw text/s per process) and loader (tokens/s).

    python bench/data_throughput.py [--repeats=5] [--write]

Uses the offline `builtin:pydocs` corpus and its trained 8,192-token WordPiece vocabulary
(`ensure_builtin_dataset`, cached under --cache-dir). Measures, as the median of --repeats runs:
  * tokenize: the Rust WordPiece pipeline alone, and the tokeniser as prepare runs it (the
    per-word memo for plain-ASCII lines, electra_jax/data/wordpiece_fast_path.py) with its memo cold
    (a new tokeniser per pass) and warm; MB/s and MB per CPU-second;
  * prepare/process: one worker turning the whole corpus into examples (decode, tokenise,
    build, write ArrayRecord) with a cold and a warm memo, MB/s per process and MB per
    CPU-second (robust to other load);
  * prepare end to end: `prepare_dataset` with 1 and --processes processes (vocabulary given,
    spawn start-up included), MB/s;
  * loader: `make_train_loader` batches (256 x 128) into host memory, tokens/s.
Prints a table; --write appends the rows to BENCHMARKS.md (device, date, commit, command).
"""

from __future__ import annotations

import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time

from bench.benchlib import REPO, cpu_name, git_commit
from electra_jax.cli import ArgumentParser
from electra_jax.data import dataset, shard_workers
from electra_jax.data.dataset_format import read_meta
from electra_jax.data.loader import make_train_loader
from electra_jax.data.pydocs import pydocs_text
from electra_jax.data.sources import Blob
from electra_jax.data.tokenizer import load_tokenizer

TABLE_MARKER = "## Data pipeline (bench/data_throughput.py)"
TABLE_HEADER = [
    TABLE_MARKER,
    "",
    "| benchmark | median | unit | device | date | commit | command |",
    "|---|---|---|---|---|---|---|",
]


CPU = time.process_time


def median_rate(fn, amount: float, repeats: int, clock=time.perf_counter) -> float:
    """Median of amount / seconds over `repeats` timed calls of fn (after one warm-up).

    `clock=time.process_time` gives amount per CPU-second of this process (all its threads),
    which stays meaningful on a machine shared with other jobs.
    """
    fn()
    rates = []
    for _ in range(repeats):
        start = clock()
        fn()
        rates.append(amount / max(clock() - start, 1e-9))
    return statistics.median(rates)


def bench(args) -> list[tuple[str, float, str]]:

    data_dir = dataset.ensure_builtin_dataset(args.cache_dir, vocab_size=8192, max_seq_len=128)
    meta = read_meta(data_dir)
    tokenizer = load_tokenizer(data_dir, meta["tokenizer"])
    text = pydocs_text(args.cache_dir)
    raw = text.encode("utf-8")
    mb = len(raw) / 1e6
    lines = [line for line in text.split("\n") if line]
    rows = []

    def fresh_tokenizer():
        return load_tokenizer(data_dir, meta["tokenizer"])

    tokenize_cases = [
        ("tokenize: Rust pipeline alone", lambda: tokenizer.encode_batch_rust(lines)),
        ("tokenize: word memo, cold", lambda: fresh_tokenizer().encode_batch(lines)),
        ("tokenize: word memo, warm", lambda: tokenizer.encode_batch(lines)),
    ]
    for name, fn in tokenize_cases:
        rows.append((name, median_rate(fn, mb, args.repeats), "MB/s"))
        rows.append((name + ", per CPU-second", median_rate(fn, mb, args.repeats, CPU), "MB/CPU-s"))

    work = tempfile.mkdtemp(prefix="bench-data-")
    try:
        task = shard_workers.ChunkTask(
            0, [Blob(raw, True)], data_dir, meta["tokenizer"], 128, 0, 100_000, work
        )

        def cold_chunk():
            shard_workers._TOKENIZERS.clear()  # a new worker: tokeniser and memo built from scratch
            shard_workers.process_chunk(task)

        chunk_cases = [
            ("prepare: one worker, cold memo (decode+tokenize+build+write)", cold_chunk),
            ("prepare: one worker, warm memo", lambda: shard_workers.process_chunk(task)),
        ]
        for name, fn in chunk_cases:
            rows.append((name, median_rate(fn, mb, args.repeats), "MB/s/process"))
            rows.append(
                (name + ", per CPU-second", median_rate(fn, mb, args.repeats, CPU), "MB/CPU-s")
            )
        vocab = os.path.join(data_dir, "vocab.txt")
        for processes in sorted({1, args.processes}):

            def run(processes=processes):
                out = os.path.join(work, f"out-{processes}")
                shutil.rmtree(out, ignore_errors=True)
                dataset.prepare_dataset(
                    "builtin:pydocs", out, vocab=vocab, num_processes=processes, shard_mb=0.25,
                    cache_dir=args.cache_dir, progress=False,
                )  # fmt: skip

            rate = median_rate(run, mb, max(1, args.repeats // 2))
            rows.append((f"prepare_dataset end to end, {processes} process(es)", rate, "MB/s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    batch, n_batches = 256, args.loader_batches
    for workers in sorted({0, args.loader_workers}):
        it = make_train_loader(
            data_dir, global_batch_size=batch, seed=0, process_index=0, process_count=1,
            worker_count=workers,
        )  # fmt: skip

        def consume(it=it):
            for _ in range(n_batches):
                next(it)

        rate = median_rate(consume, batch * 128 * n_batches, args.repeats)
        rows.append((f"loader: {batch}x128 batches, {workers} grain workers", rate, "tokens/s"))
        if workers:
            it.close()
    rows.append(("padding in loader batches (what packing could save)",
                 padding_share(data_dir, batch, n_batches), "% of positions"))  # fmt: skip
    return rows


def padding_share(data_dir: str, batch: int, n_batches: int) -> float:
    """Percent of batch positions that are padding (input_mask 0) over `n_batches` batches."""
    it = make_train_loader(data_dir, global_batch_size=batch, seed=0, process_index=0,
                           process_count=1)  # fmt: skip
    real = total = 0
    for _ in range(n_batches):
        mask = next(it)["input_mask"]
        real, total = real + int(mask.sum()), total + mask.size
    return 100.0 * (1 - real / total)


def write_rows(rows, command: str) -> None:
    path = os.path.join(REPO, "BENCHMARKS.md")
    lines = ["# Benchmarks", ""]
    if os.path.exists(path):
        with open(path) as f:
            lines = f.read().split("\n")
    if TABLE_MARKER not in lines:
        if lines and lines[-1] == "":
            lines.pop()
        lines += ["", *TABLE_HEADER, ""]
    end = lines.index(TABLE_MARKER) + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    date = datetime.date.today().isoformat()
    new = [
        f"| {name} | {value:,.3g} | {unit} | {cpu_name()} | {date} | {git_commit()} | `{command}` |"
        for name, value, unit in rows
    ]
    lines[end:end] = new
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = ArgumentParser(
        prog="python bench/data_throughput.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--loader-batches", type=int, default=100)
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--cache-dir", default=dataset.default_cache_dir())
    parser.add_argument("--write", action="store_true", help="append rows to BENCHMARKS.md")
    args = parser.parse_args()
    rows = bench(args)
    width = max(len(name) for name, _, _ in rows)
    print(f"{'benchmark':<{width}}  {'median':>12}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>12,.2f}  {unit}")
    print(f"device: {cpu_name()}  commit: {git_commit()}")
    if args.write:
        write_rows(rows, "python " + " ".join(["bench/data_throughput.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
