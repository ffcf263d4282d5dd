r"""BENCHMARKS.md's compile-check table: ELECTRA small, base and large at the paper's batch and
length compiled for TPU slices by `python -m electra_jax.compile_check` (the compiler's memory
plans, not measurements of a run). One compile at a time; each row is appended to --out (JSON
lines) as it finishes, so a partial run keeps what it did.

  nohup nice -n 19 python bench/compile_plans.py --out=runs/compile_plans.jsonl &
  python bench/compile_plans.py --table=runs/compile_plans.jsonl   # the markdown rows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from configs.pretrain import PAPER_TRAINING

SIZES = ("small", "base", "large")  # at configs/pretrain.py's paper batch x length
SLICES = ("v4-8", "v5litepod-8", "v5p-8", "v6e-8")
# Large at 2048 x 512 is ~256 rows per chip on 8 chips: one v5e slice with room for it as is.
BIG_V5E = "v5litepod-256"
GiB = 2**30


def rows() -> list[tuple[str, str]]:
    """Every (size, slice): small everywhere and base on the 16 GiB v5e first (a base compile
    took 45 min on the shared 2-core VM), then base elsewhere, large on a v5e slice big enough
    for it; large on 8 chips last: its fixes mean several compiles of large each."""
    first = [("small", "v4-8"), ("base", "v5litepod-8"), ("small", "v5litepod-8"),
             ("small", "v5p-8"), ("small", "v6e-8"), ("base", "v4-8"),
             ("large", BIG_V5E)]  # fmt: skip
    rest = [(size, s) for size in SIZES for s in SLICES if (size, s) not in first]
    return first + rest


def run_row(size: str, slice_name: str) -> dict:
    """One compile-check subprocess (a clean environment: no test-suite XLA flags)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    command = [sys.executable, "-m", "electra_jax.compile_check",
               f"--config=configs/pretrain.py:{size}", f"--topology={slice_name}",
               f"--json={path}"]  # fmt: skip
    dropped = ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    t0 = time.time()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    row = {"size": size, "slice": slice_name, "exit": result.returncode,
           "wall_seconds": round(time.time() - t0, 1), "stderr": result.stderr.strip()[-500:],
           "command": " ".join(command[1:-1])}  # fmt: skip
    if os.path.getsize(path):
        with open(path) as f:
            row["check"] = json.load(f)
    os.unlink(path)
    return row


def gib(n: float) -> str:
    return f"{n / GiB:.2f}"


def settings_text(settings: dict) -> str:
    return " ".join(f"`{k}={v}`" for k, v in settings.items()) or "as configured"


def table(path: str) -> str:
    """Markdown rows of the finished checks in `path`."""
    lines = [
        "| size (batch x len) | slice | chips | HBM/chip GiB | plan/chip GiB (arguments, "
        "temporaries, program) | fits as configured | cheapest settings that fit (GiB/chip) "
        "| FLOPs/step/chip | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            check = row.get("check")
            if not check:
                last = row["stderr"].splitlines()[-1] if row["stderr"] else "?"
                lines.append(f"| {row['size']} | {row['slice']} | | | | failed: {last} | | | |")
                continue
            plan, fix = check["plan"], check["fix"]
            if check["fits"]:
                cheapest = "as configured"
            elif fix:
                cheapest = f"{settings_text(fix['settings'])} ({gib(fix['total'])})"
            else:
                best = min((t["total"] for t in check["tried"]), default=plan["total"])
                cheapest = f"none tried fits (best {gib(best)})"
            paper = PAPER_TRAINING[row["size"]]
            parts = f"{gib(plan['arguments'])}, {gib(plan['temporaries'])}, {gib(plan['code'])}"
            lines.append(
                f"| {row['size']} ({paper['batch_size']} x {paper['max_seq_len']}) | "
                f"{check['slice']} | {check['chips']} | {gib(check['hbm_bytes'])} | "
                f"{gib(plan['total'])} ({parts}) | "
                f"{'yes' if check['fits'] else 'no'} | {cheapest} | {plan['flops']:.3g} | "
                f"{plan['compile_seconds']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/compile_plans.jsonl", help="JSON lines, appended")
    parser.add_argument("--table", default="", help="print the markdown rows of this file")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = {(r["size"], r["slice"]) for r in map(json.loads, f)}
    for size, slice_name in rows():
        if (size, slice_name) in done:
            continue
        print(f"{time.strftime('%H:%M:%S')} {size} on {slice_name} ...", flush=True)
        row = run_row(size, slice_name)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"  exit {row['exit']} after {row['wall_seconds']}s", flush=True)


if __name__ == "__main__":
    main()
