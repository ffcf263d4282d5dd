"""Time to the first step, by phase, for a first launch (cold XLA cache) and a restart (warm).

Each repeat launches `python -m electra_jax.pretrain` in a fresh workdir, stops it with SIGTERM
(a preemption notice) once its first step is done, and launches the same command again: that
restart restores the checkpoint and loads the compiled programs from the run's cache
(`<workdir>/xla_cache`, the default). The phases are the trainer's own `start-up:` line
(electra_jax/train/startup.py): imports (process start to the trainer: interpreter, imports,
flags), data (data open, mesh, loaders), init or restore, compile (tracing plus XLA's compile or
cache load), first step; and of the total, the seconds XLA spent compiling or loading programs
from the cache. Prints a Markdown table of the medians over the repeats.

  python bench/time_to_first_step.py --sizes=tiny,small --repeats=3
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from electra_jax.cli import ArgumentParser
from electra_jax.data.dataset import ensure_builtin_dataset
from electra_jax.train.startup import PREFIX

PHASES = ("imports", "data", "init", "restore", "compile", "first step")
COMPILE_LINE = re.compile(r"^compile: train step (cached \()?([\d.]+) s")
TRACING = re.compile(r"tracing ([\d.]+) s")
XLA = re.compile(r"\(([\d.]+) s of it in XLA\)")


def launch(args: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, float | str]:
    """Runs the pre-training command until its first step, then SIGTERM; returns its phases."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "electra_jax.pretrain", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    row: dict[str, float | str] = {}
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if match := COMPILE_LINE.match(line):
            row["cache"] = "hit" if match.group(1) else "miss"
            row["tracing"] = float(TRACING.search(line).group(1))
        if line.startswith(PREFIX):
            row["outside"] = time.perf_counter() - start  # launch to the first step, measured here
            phases, _, rest = line[len(PREFIX) :].partition(";")
            row["xla"] = float(XLA.search(rest).group(1))
            for item in phases.split(","):
                name, seconds, _unit = item.strip().rsplit(" ", 2)
                row[name] = float(seconds)
            proc.send_signal(signal.SIGTERM)  # a preemption notice: save, exit 0
    if proc.wait(timeout=timeout) != 0 or PREFIX not in "".join(lines):
        raise SystemExit(f"the run failed (exit {proc.returncode}):\n{''.join(lines[-30:])}")
    return row


def measure(size: str, data_dir: str, batch_size: int, scratch: str) -> list[dict]:
    """(first launch, restart) rows of one repeat, in a fresh workdir (so a cold cache)."""
    workdir = tempfile.mkdtemp(prefix=f"{size}-", dir=scratch)
    args = [
        f"--config=configs/pretrain.py:{size}", f"--workdir={workdir}",
        f"--config.data.dir={data_dir}", f"--config.batch_size={batch_size}",
        "--config.dtype=float32", "--config.eval_batches=0", "--config.num_train_steps=100000",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the default: <workdir>/xla_cache
    env.setdefault("JAX_PLATFORMS", "cpu")
    try:
        cold = launch(args, env, timeout=1800)
        warm = launch(args, env, timeout=1800)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # checkpoints and the cache: small's are big
    return [
        {"size": size, "case": "first launch", **cold},
        {"size": size, "case": "restart", **warm},
    ]


def table(rows: list[dict]) -> str:
    """Medians per (size, case), in seconds."""
    lines = [
        "| size | case | cache | imports | data | init / restore | compile (tracing) | first step "
        "| to first step | of it XLA | measured outside |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in dict.fromkeys((r["size"], r["case"]) for r in rows):
        group = [r for r in rows if (r["size"], r["case"]) == key]

        def med(name: str, group: list[dict] = group) -> float:
            return statistics.median(r.get(name, 0.0) for r in group)

        total = statistics.median(sum(r.get(p, 0.0) for p in PHASES) for r in group)
        lines.append(
            f"| {key[0]} | {key[1]} | {'/'.join(sorted({r['cache'] for r in group}))} | "
            f"{med('imports'):.1f} | {med('data'):.1f} | {med('init') + med('restore'):.1f} | "
            f"{med('compile'):.1f} ({med('tracing'):.1f}) | {med('first step'):.1f} | "
            f"{total:.1f} | {med('xla'):.1f} | {med('outside'):.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(prog="python bench/time_to_first_step.py", description=__doc__)
    parser.add_argument("--sizes", default="tiny,small", help="comma list of config sizes")
    parser.add_argument("--repeats", type=int, default=3, help="launch pairs per size (median)")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (CPU: small)")
    parser.add_argument("--scratch", default=None, help="where the workdirs go (default: temp)")
    args = parser.parse_args(argv)
    data_dir = ensure_builtin_dataset(vocab_size=8192, max_seq_len=128)  # the built-in corpus
    scratch = args.scratch or tempfile.mkdtemp(prefix="time_to_first_step-")
    rows = []
    for size in args.sizes.split(","):
        for i in range(args.repeats):
            rows += measure(size, data_dir, args.batch_size, scratch)
            print(f"# {size} repeat {i + 1}: {rows[-2:]}", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
