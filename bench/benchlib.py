"""Helpers shared by the step benchmarks (ours and the PyTorch peer): the config flags, shapes,
data, timing.

Every benchmark that builds a model takes the trainer's config, `--config=configs/pretrain.py:ARG`
(default tiny) with `--config.FIELD=VALUE` overrides, so a row times what that config trains:
model, global batch (`batch_size`), `max_seq_len`, `dtype`, `remat`, `rng_impl`,
`steps_per_call`, `mesh` (data and FSDP axes) and the rest. Both sides train on the same
synthetic batch layout and are timed by the same function, so a ratio between them compares the
steps, not the harnesses.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from electra_jax import cli
from electra_jax.errors import UserError
from electra_jax.train.program import build_configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN_CONFIG = "configs/pretrain.py"
DEFAULT_CONFIG = f"{PRETRAIN_CONFIG}:tiny"

# Special token ids of the synthetic batches (BERT-like layout; any vocabulary works).
PAD_ID, CLS_ID, SEP_ID, MASK_ID = 0, 2, 3, 4
FIRST_WORD_ID = 5
SPECIAL_IDS = {"cls_id": CLS_ID, "sep_id": SEP_ID, "mask_id": MASK_ID}  # for the objective


# ----------------------------------------------------------------------------- configs


def config_parser(
    script: str, description: str, several: bool = False, default: str = DEFAULT_CONFIG
) -> cli.ArgumentParser:
    """A bench script's parser with the trainer's config flags: `--config=FILE:ARG` (default
    `default`) and `--config.FIELD=VALUE` overrides (`parse_config_args` takes those).
    `several`: `--config` may repeat, and `--sizes=small,base` is short for
    `--config=configs/pretrain.py:small --config=configs/pretrain.py:base`."""
    parser = cli.ArgumentParser(
        prog=f"python bench/{script}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="this message and the fields")
    spec = f"config file and argument (default {default})"
    if several:
        parser.add_argument("--config", action="append", default=[], help=spec + "; repeatable")
        parser.add_argument(
            "--sizes", default="", help=f"comma list: --config={PRETRAIN_CONFIG}:SIZE for each"
        )
    else:
        parser.add_argument("--config", default=default, help=spec)
    parser.set_defaults(default_config=default)
    return parser


def parse_config_args(
    parser: cli.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, list[tuple[str, ml_collections.ConfigDict]]]:
    """(flags, [(spec, config), ...]): every config with the `--config.FIELD=VALUE` overrides
    applied. `--help` lists the flags and the (first) config's fields, then exits 0; a bad flag,
    config or override is one line and exit status 2."""
    overrides, rest = cli.split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(rest)
    args.overrides = overrides
    specs = [args.config] if isinstance(args.config, str) else list(args.config)
    specs += [f"{PRETRAIN_CONFIG}:{size}" for size in getattr(args, "sizes", "").split(",") if size]
    specs = specs or [args.default_config]
    if args.help:
        cli.print_config_help(parser, specs[0])
        sys.exit(0)
    try:
        return args, [(spec, cli.load_config(spec, overrides)) for spec in specs]
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def step_configs(config: ml_collections.ConfigDict) -> tuple[Any, Any, Any]:
    """(ModelConfig, ObjectiveConfig, OptimizerConfig) as the trainer builds them from `config`,
    the objective with the synthetic batches' special ids."""
    return build_configs(config, SPECIAL_IDS)


def mesh_size(config: ml_collections.ConfigDict, device_count: int) -> int:
    """How many devices the config's mesh takes (`mesh.num_devices`, -1: all)."""
    n = config.mesh.num_devices
    return min(n, device_count) if n > 0 else device_count


@dataclasses.dataclass(frozen=True)
class Shape:
    """What one benchmark row measures: model size, global batch, sequence length, mask rate."""

    size: str
    batch: int
    seq: int
    mask_prob: float = 0.15

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq


def shape_of(config: ml_collections.ConfigDict) -> Shape:
    """The config's size, `batch_size` (global), `max_seq_len` and `objective.mask_prob`."""
    return Shape(config.size, config.batch_size, config.max_seq_len, config.objective.mask_prob)


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
    the first device's peak allocation so far (None where the backend does not say);
    `num_devices` share the step (TFLOP/s and MFU are per device).
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
    num_devices: int = 1
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
    """The row of one runner: median over repeats of tokens/s, TFLOP/s and MFU per device,
    memory, loss."""
    seconds = median(step_seconds)
    tokens_per_s = runner.shape.tokens_per_step / seconds
    tflops = tokens_per_s * runner.flops_per_token / runner.num_devices / 1e12
    loss = np.asarray(runner.last_loss())
    peak = runner.peak_memory_bytes()
    return {
        "impl": runner.impl,
        "size": runner.shape.size,
        "batch": runner.shape.batch,
        "seq": runner.shape.seq,
        "dtype": runner.dtype,
        "device": runner.device,
        "devices": runner.num_devices,
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


def add_timing_args(parser: argparse.ArgumentParser) -> None:
    """Timing flags shared by the step benchmarks (what is timed comes from --config)."""
    parser.add_argument("--steps", type=int, default=20, help="timed calls per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls after compiling")
    parser.add_argument("--repeats", type=int, default=3, help="medians over this many runs")
    parser.add_argument("--window", type=int, default=1, help="calls between synchronisations")
