"""Times our jitted ELECTRA pre-training step: tokens/s, TFLOP/s, MFU and peak device memory.

    python bench/pretrain_step.py --size=small [--batch=128 --seq=128] [--dtype=auto]
        [--steps=50 --warmup=5 --repeats=3 --window=10] [--steps-per-call=1]
        [--attention-impl=auto|exact|fused] [--remat] [--rng-impl=threefry2x32|rbg|unsafe_rbg]
        [--peak-flops=FLOP/s] [--compile-only]

The step is electra_jax's own (`make_train_step`, `make_multi_step`, `make_optimizer`), compiled
as the trainer compiles it: one `jax.jit` with the train state donated. The batch is synthetic
and resident on the device (no input pipeline in the timing). Timing excludes compilation and
warm-up, synchronises with `block_until_ready` and reports the median over windows of calls and
then over repeats. MFU counts 6 x matmul parameters + attention FLOPs (model/flops.py) over
the device's dense bf16 peak: null on CPU unless --peak-flops is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from benchlib import Shape, StepRunner  # noqa: E402

from electra_jax.model.config import ModelConfig, preset  # noqa: E402
from electra_jax.model.electra import ElectraModel, init_params  # noqa: E402
from electra_jax.model.flops import device_peak_flops, train_flops_per_token  # noqa: E402
from electra_jax.model.layers import use_fused_attention  # noqa: E402
from electra_jax.train.objective import ObjectiveConfig  # noqa: E402
from electra_jax.train.optimizer import (  # noqa: E402
    OptimizerConfig,
    learning_rate_schedule,
    make_optimizer,
)
from electra_jax.train.step import (  # noqa: E402
    RNG_IMPLS,
    StepConfig,
    create_train_state,
    make_multi_step,
    make_train_step,
)


def resolve_dtype(dtype: str) -> str:
    """ "auto": bfloat16 on an accelerator, float32 on CPU."""
    if dtype == "auto":
        return "float32" if jax.default_backend() == "cpu" else "bfloat16"
    return dtype


def model_config(shape: Shape, attention_impl: str | None = None) -> ModelConfig:
    """The preset, with room for the sequence length and an optional attention override."""
    overrides: dict[str, Any] = {}
    base = preset(shape.size)
    if shape.seq > base.max_position_embeddings:
        overrides["max_position_embeddings"] = shape.seq
    if attention_impl:
        overrides["attention_impl"] = attention_impl
    return base.replace(**overrides)


def objective_config(shape: Shape) -> ObjectiveConfig:
    """The original's objective on the synthetic batch's special ids."""
    return ObjectiveConfig(
        cls_id=benchlib.CLS_ID,
        sep_id=benchlib.SEP_ID,
        mask_id=benchlib.MASK_ID,
        mask_prob=shape.mask_prob,
    )


def device_batch(
    vocab_size: int, shape: Shape, steps_per_call: int, packed: bool = False
) -> dict[str, jax.Array]:
    """The synthetic batch on the default device, stacked [K, B, L] for K steps per call;
    `packed`: two examples per row with `packing_ids`."""
    make = benchlib.packed_synthetic_batch if packed else benchlib.synthetic_batch
    batch = make(vocab_size, shape.batch, shape.seq)
    if steps_per_call > 1:
        batch = {k: np.stack([v] * steps_per_call) for k, v in batch.items()}
    return jax.device_put(batch)


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on device 0 since the process started (None on CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """How our step is built beyond its shape: the variants the benchmarks compare."""

    dtype: str = "auto"
    steps_per_call: int = 1
    attention_impl: str | None = None  # None: the preset's (auto)
    remat: bool = False
    rng_impl: str = "threefry2x32"
    packed: bool = False  # two examples per row, with packing_ids
    seed: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StepOptions:
        """The options parsed by `add_ours_args` (and `--dtype` from benchlib)."""
        return cls(
            dtype=args.dtype, steps_per_call=args.steps_per_call,
            attention_impl=args.attention_impl, remat=args.remat, rng_impl=args.rng_impl,
            packed=args.packed,
        )  # fmt: skip


@dataclasses.dataclass
class CompiledStep:
    """Our step compiled for one shape, with its donated state and resident batch."""

    compiled: Any
    state: Any
    batch: dict[str, jax.Array]
    config: ModelConfig
    objective: ObjectiveConfig
    dtype: str
    compile_s: float


def compile_ours(shape: Shape, options: StepOptions = StepOptions()) -> CompiledStep:
    """Compiles our train step for `shape` as the trainer does (one jit, state donated)."""
    dtype = resolve_dtype(options.dtype)
    cfg = model_config(shape, options.attention_impl)
    objective = objective_config(shape)
    model = ElectraModel(cfg, dtype=jnp.dtype(dtype), remat=options.remat)
    opt_cfg = OptimizerConfig()
    tx = make_optimizer(opt_cfg)
    params = jax.jit(lambda r: nn.unbox(init_params(model, r)))(jax.random.key(options.seed))
    state = jax.jit(lambda p: create_train_state(p, tx), donate_argnums=0)(params)
    step_cfg = StepConfig(seed=options.seed, rng_impl=options.rng_impl)
    step = make_train_step(model, objective, tx, step_cfg, learning_rate_schedule(opt_cfg))
    K = options.steps_per_call
    jitted = jax.jit(make_multi_step(step, K), donate_argnums=0)
    batch = device_batch(cfg.vocab_size, shape, K, options.packed)
    start = time.perf_counter()
    compiled = jitted.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    return CompiledStep(compiled, state, batch, cfg, objective, dtype, compile_s)


def build_ours(
    shape: Shape, options: StepOptions = StepOptions(), peak_flops: float | None = None
) -> StepRunner:
    """Compiles our train step for `shape` with the state donated; returns it ready to time."""
    ours = compile_ours(shape, options)
    K, rng_impl = options.steps_per_call, options.rng_impl
    compiled, batch, cfg = ours.compiled, ours.batch, ours.config
    holder = {"state": ours.state, "metrics": None}

    def call() -> None:
        holder["state"], holder["metrics"] = compiled(holder["state"], batch)

    def sync() -> None:
        jax.block_until_ready((holder["state"], holder["metrics"]))

    device = jax.devices()[0]
    num_predictions = ours.objective.num_predictions(shape.seq)
    return StepRunner(
        impl="ours"
        + ("" if K == 1 else f" K={K}")
        + (" remat" if options.remat else "")
        + ("" if rng_impl == "threefry2x32" else f" {rng_impl}")
        + (" packed" if options.packed else ""),
        shape=shape,
        dtype=ours.dtype,
        call=call,
        sync=sync,
        last_loss=lambda: np.asarray(jax.device_get(holder["metrics"]["loss"])),
        peak_memory_bytes=peak_memory_bytes,
        flops_per_token=train_flops_per_token(cfg, shape.seq, num_predictions),
        peak_flops=device_peak_flops(device, peak_flops),
        device=describe_device(device),
        steps_per_call=K,
        info={
            "attention": (
                ("cudnn" if cfg.attention_impl == "cudnn" else "fused")
                if use_fused_attention(cfg, deterministic=False)
                else "exact"
            ),
            "compile_s": ours.compile_s,
            "xla_memory_mib": xla_memory_bytes(compiled) / 2**20,
            "xla_temp_mib": xla_temp_bytes(compiled) / 2**20,
            "remat": options.remat,
            "rng_impl": rng_impl,
            "packed": options.packed,
        },
    )


def xla_memory_bytes(compiled: Any) -> float:
    """XLA's own count for one call: arguments + outputs + temporaries - donated aliases."""
    m = compiled.memory_analysis()
    if m is None:
        return float("nan")
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    return float(total - m.alias_size_in_bytes)


def xla_temp_bytes(compiled: Any) -> float:
    """XLA's temporary buffers for one call (activations kept for the backward pass, etc.)."""
    m = compiled.memory_analysis()
    return float("nan") if m is None else float(m.temp_size_in_bytes)


def describe_device(device: jax.Device) -> str:
    if device.platform == "cpu":
        return benchlib.cpu_name()
    return device.device_kind


def bench_ours(
    size: str,
    batch: int | None = None,
    seq: int | None = None,
    options: StepOptions = StepOptions(),
    steps: int = 20,
    warmup: int = 3,
    repeats: int = 1,
    window: int = 1,
    peak_flops: float | None = None,
    compile_only: bool = False,
) -> dict:
    """One benchmark row for our step (see the module docstring); `steps` timed calls.

    `compile_only`: no timing, only the compile time and XLA's memory analysis (on any backend,
    e.g. to see on CPU how a change moves the temporary memory of a shape that OOMs on a GPU).
    """
    shape = benchlib.default_shape(size, batch, seq)
    runner = build_ours(shape, options, peak_flops)
    if compile_only:
        return {"impl": runner.impl, "size": size, "batch": shape.batch, "seq": shape.seq,
                "dtype": runner.dtype, "device": runner.device, **runner.info}  # fmt: skip
    return benchlib.run_benchmark(runner, steps, warmup, repeats, window)


def add_ours_args(parser: argparse.ArgumentParser) -> None:
    """Flags of our step only (compare.py has them too)."""
    parser.add_argument("--steps-per-call", type=int, default=1, help="K steps per jitted call")
    parser.add_argument(
        "--attention-impl", choices=("auto", "exact", "fused", "cudnn"), default=None
    )
    parser.add_argument("--remat", action="store_true", help="rematerialise each layer")
    parser.add_argument("--rng-impl", default="threefry2x32", choices=RNG_IMPLS, help="PRNG")
    parser.add_argument("--packed", action="store_true",
                        help="two examples per row: time the packed attention path")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", help="tiny, small, small++, base, large")
    benchlib.add_common_args(parser)
    add_ours_args(parser)
    parser.add_argument("--compile-only", action="store_true",
                        help="print compile time and XLA memory analysis, no timing")  # fmt: skip
    args = parser.parse_args(argv)
    row = bench_ours(
        args.size, args.batch, args.seq, StepOptions.from_args(args), args.steps, args.warmup,
        args.repeats, args.window, args.peak_flops, args.compile_only,
    )  # fmt: skip
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
