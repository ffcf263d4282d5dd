"""The side-by-side step benchmark runs on CPU: both sides train and give finite scalar losses.

Speed is not asserted (benchmarks, not tests). compare.py runs in a subprocess: it sets its own
XLA flags before jax loads, and the lowest XLA backend optimisation level keeps the compile
short (the timings of this run mean nothing).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_compare(tmp_path, *flags: str) -> list[dict]:
    out = tmp_path / "rows.json"
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_backend_optimization_level=0",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    command = [sys.executable, os.path.join(REPO, "bench", "compare.py"), f"--json={out}"]
    subprocess.run([*command, *flags], check=True, env=env, cwd=REPO, timeout=300)
    return json.loads(out.read_text())


def test_compare_runs_both_sides_on_cpu(tmp_path):
    rows = run_compare(
        tmp_path,
        "--sizes=tiny",
        "--config.batch_size=4",
        "--config.max_seq_len=32",
        "--steps=2",
        "--warmup=1",
        "--repeats=1",
        "--no-compile",
        "--threads=1",
    )
    by_impl = {row["impl"]: row for row in rows}
    assert set(by_impl) == {"ours", "peer eager"}
    for row in rows:
        assert row["loss_shape"] == []  # a scalar on both sides
        assert math.isfinite(row["loss"]) and row["loss"] > 0
        assert row["tokens_per_s"] > 0 and row["dtype"] == "float32"
        assert (row["batch"], row["seq"]) == (4, 32)
        assert row["mfu"] is None  # no CPU peak unless --peak-flops
    assert by_impl["ours"]["flops_per_token"] == by_impl["peer eager"]["flops_per_token"]
