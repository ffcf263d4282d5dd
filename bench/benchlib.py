"""Helpers shared by the step benchmarks (ours and the PyTorch peer): shapes, data, timing.

Both sides train on the same synthetic batch layout and are timed by the same function, so a
ratio between them compares the steps, not the harnesses.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Special token ids of the synthetic batches (BERT-like layout; any vocabulary works).
PAD_ID, CLS_ID, SEP_ID, MASK_ID = 0, 2, 3, 4
FIRST_WORD_ID = 5

# Per-device (batch, seq) defaults: the paper's shapes where one device can hold them.
# tiny is ours (CPU tests); large trained at batch 2048 on a TPU pod, so 64 per device here.
DEFAULT_SHAPES: dict[str, tuple[int, int]] = {
    "tiny": (32, 128),
    "small": (128, 128),
    "small++": (128, 128),
    "base": (256, 512),
    "large": (64, 512),
}
# RECIPE.md: large masks 25% of tokens, the others 15%.
MASK_PROB: dict[str, float] = {"large": 0.25}


@dataclasses.dataclass(frozen=True)
class Shape:
    """What one benchmark row measures: model size, per-device batch, sequence length."""

    size: str
    batch: int
    seq: int

    @property
    def mask_prob(self) -> float:
        return MASK_PROB.get(self.size, 0.15)

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq


def default_shape(size: str, batch: int | None = None, seq: int | None = None) -> Shape:
    """The size's default shape with optional overrides."""
    if size not in DEFAULT_SHAPES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(DEFAULT_SHAPES)}")
    default_batch, default_seq = DEFAULT_SHAPES[size]
    return Shape(size, batch or default_batch, seq or default_seq)


def synthetic_batch(vocab_size: int, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length rows `[CLS] A [SEP] B [SEP]` of random word ids (int32 [B, L]).

    No padding: every row is real tokens, as packed pre-training data mostly is.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(FIRST_WORD_ID, vocab_size, size=(batch, seq), dtype=np.int32)
    half = seq // 2
    ids[:, 0] = CLS_ID
    ids[:, half - 1] = SEP_ID
    ids[:, -1] = SEP_ID
    segments = np.zeros((batch, seq), np.int32)
    segments[:, half:] = 1
    mask = np.ones((batch, seq), np.int32)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments}


def packed_synthetic_batch(
    vocab_size: int, batch: int, seq: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """`synthetic_batch` as packed rows: two one-segment examples `[CLS] A [SEP]` per row, with
    `packing_ids` 1 and 2 (what `prepare --pack` stores), to time the packed attention path."""
    out = synthetic_batch(vocab_size, batch, seq, seed)
    half = seq // 2
    out["input_ids"][:, half] = CLS_ID
    out["segment_ids"][:] = 0
    out["packing_ids"] = (
        np.where(np.arange(seq) < half, 1, 2).astype(np.int32)[None].repeat(batch, axis=0)
    )
    return out


def time_per_step(
    step: Callable[[], None], sync: Callable[[], None], steps: int, window: int = 1
) -> list[float]:
    """Seconds per step over consecutive windows of `window` calls, synchronised at each end.

    A window longer than one step lets asynchronous dispatch overlap the host's work with the
    device's, as a training loop that does not fetch metrics every step does.
    """
    window = max(1, min(window, steps))
    times = []
    sync()
    for _ in range(max(1, steps // window)):
        start = time.perf_counter()
        for _ in range(window):
            step()
        sync()
        times.append((time.perf_counter() - start) / window)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def git_commit() -> str:
    """Short HEAD hash, with `-dirty` when the working tree has changes.

    Where the tree is a copy without git (a remote accelerator), $BENCH_COMMIT names it.
    """
    try:
        sha = subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True, stderr=subprocess.DEVNULL
        ).strip()
        dirty = subprocess.check_output(["git", "status", "--porcelain"], cwd=REPO, text=True)
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BENCH_COMMIT", "unknown")


def cpu_name() -> str:
    """The CPU model and core count (the device of a CPU row)."""
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


@dataclasses.dataclass
class StepRunner:
    """One compiled training step, ready to time: what both benchmark sides hand back.

    `call` runs `steps_per_call` optimiser steps on the resident batch, `sync` waits for the
    device, `last_loss` returns the most recent total loss (host array), `peak_memory_bytes`
    the device's peak allocation so far (None where the backend does not say).
    """

    impl: str
    shape: Shape
    dtype: str
    call: Callable[[], None]
    sync: Callable[[], None]
    last_loss: Callable[[], np.ndarray]
    peak_memory_bytes: Callable[[], int | None]
    flops_per_token: float
    peak_flops: float | None
    device: str
    steps_per_call: int = 1
    info: dict = dataclasses.field(default_factory=dict)

    def warm_up(self, calls: int) -> None:
        for _ in range(max(1, calls)):
            self.call()
        self.sync()

    def measure(self, steps: int, window: int) -> float:
        """Median seconds per optimiser step over `steps` timed calls (after warm-up)."""
        per_call = time_per_step(self.call, self.sync, steps, window)
        return median(per_call) / self.steps_per_call


def summarize(runner: StepRunner, step_seconds: list[float]) -> dict:
    """The row of one runner: median over repeats of tokens/s, TFLOP/s, MFU, memory, loss."""
    seconds = median(step_seconds)
    tokens_per_s = runner.shape.tokens_per_step / seconds
    tflops = tokens_per_s * runner.flops_per_token / 1e12
    loss = np.asarray(runner.last_loss())
    peak = runner.peak_memory_bytes()
    return {
        "impl": runner.impl,
        "size": runner.shape.size,
        "batch": runner.shape.batch,
        "seq": runner.shape.seq,
        "dtype": runner.dtype,
        "device": runner.device,
        "steps_per_call": runner.steps_per_call,
        "step_ms": seconds * 1e3,
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_repeats": [runner.shape.tokens_per_step / s for s in step_seconds],
        "flops_per_token": runner.flops_per_token,
        "tflops": tflops,
        "mfu": tflops * 1e12 / runner.peak_flops if runner.peak_flops else None,
        "peak_memory_mib": None if peak is None else peak / 2**20,
        "loss": float(loss) if loss.size == 1 else None,
        "loss_shape": list(loss.shape),
        **runner.info,
    }


def run_benchmark(
    runner: StepRunner, steps: int, warmup: int = 2, repeats: int = 1, window: int = 1
) -> dict:
    """Warm up, then `repeats` measurements of `steps` calls each; the summary row."""
    runner.warm_up(warmup)
    return summarize(runner, [runner.measure(steps, window) for _ in range(repeats)])


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Shape, precision and timing flags shared by every benchmark script."""
    parser.add_argument("--batch", type=int, default=None, help="default: the size's shape")
    parser.add_argument("--seq", type=int, default=None, help="default: the size's shape")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls after compiling")
    parser.add_argument("--repeats", type=int, default=3, help="medians over this many runs")
    parser.add_argument("--window", type=int, default=1, help="calls between synchronisations")
    parser.add_argument("--peak-flops", type=float, default=None, help="override, FLOP/s")
