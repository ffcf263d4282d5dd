"""Times our jitted ELECTRA pre-training step: tokens/s, TFLOP/s, MFU and peak device memory.

    python bench/pretrain_step.py [--config=configs/pretrain.py:small] [--config.FIELD=VALUE ...]
        [--steps=50 --warmup=5 --repeats=3 --window=10] [--packed] [--compile-only]

What is timed is the config, as `python -m electra_jax.pretrain` would train it (default
`configs/pretrain.py:tiny`): the model, `batch_size` (global) x `max_seq_len`, `dtype`, `remat`,
`rng_impl`, `steps_per_call`, `grad_accum_steps`, `model.attention_impl`, the mesh
(`mesh.data` x `mesh.fsdp`, `mesh.num_devices`) and `peak_flops`; e.g.
`--config=configs/pretrain.py:base --config.batch_size=64 --config.mesh.fsdp=8` times Base under
FSDP on 8 devices. The step is electra_jax's own (`make_train_step`, `make_multi_step`,
`make_optimizer`), compiled as the trainer compiles it: one `jax.jit` over the mesh with the
train state donated. The batch is synthetic and resident on the devices (no input pipeline in
the timing); `--packed` makes it rows of two packed examples. Timing excludes compilation and
warm-up, synchronises with `block_until_ready` and reports the median over windows of calls and
then over repeats. MFU counts 6 x matmul parameters + attention FLOPs (model/flops.py) per
device over the device's dense bf16 peak: null on CPU unless --config.peak_flops is set.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from bench import benchlib
from bench.benchlib import Shape, StepRunner
from electra_jax.errors import exit_on_user_error
from electra_jax.model.config import ModelConfig
from electra_jax.model.flops import device_peak_flops, train_flops_per_token
from electra_jax.model.layers import use_fused_attention
from electra_jax.train.objective import ObjectiveConfig
from electra_jax.train.program import build_program
from electra_jax.train.trainer import check_attention_backend, validate_config


def host_batch(
    vocab_size: int, shape: Shape, steps_per_call: int, packed: bool = False
) -> dict[str, np.ndarray]:
    """The synthetic batch, stacked [K, B, L] for K steps per call; `packed`: two examples per
    row with `packing_ids`."""
    make = benchlib.packed_synthetic_batch if packed else benchlib.synthetic_batch
    batch = make(vocab_size, shape.batch, shape.seq)
    if steps_per_call > 1:
        batch = {k: np.stack([v] * steps_per_call) for k, v in batch.items()}
    return batch


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on device 0 since the process started (None on CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def check_step_config(config: ml_collections.ConfigDict) -> None:
    """The trainer's checks of the config, less the loop's: only the step is timed here, so
    log_every, eval_every, ... need not be multiples of steps_per_call."""
    step_only = config.copy_and_resolve_references()
    for field in ("log_every", "eval_every", "checkpoint_every", "num_train_steps"):
        step_only[field] = config.steps_per_call
    validate_config(step_only)
    check_attention_backend(config)


@dataclasses.dataclass
class CompiledStep:
    """Our step compiled for one config, with its donated state and resident batch."""

    compiled: Any
    state: Any
    batch: dict[str, jax.Array]
    model: ModelConfig
    objective: ObjectiveConfig
    mesh: jax.sharding.Mesh
    compile_s: float


def compile_ours(config: ml_collections.ConfigDict, packed: bool = False) -> CompiledStep:
    """Compiles our train step for `config` as the trainer does: the mesh and shardings of
    train/sharding.py, one jit with the state donated."""
    check_step_config(config)
    program = build_program(config, benchlib.SPECIAL_IDS)
    state = program.init_state()
    batch = host_batch(
        program.model_cfg.vocab_size, benchlib.shape_of(config), config.steps_per_call, packed
    )
    batch = jax.device_put(batch, program.batch_sh)
    start = time.perf_counter()
    compiled = program.step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    model_cfg, objective, mesh = program.model_cfg, program.objective, program.mesh
    return CompiledStep(compiled, state, batch, model_cfg, objective, mesh, compile_s)


def variant_label(config: ml_collections.ConfigDict, packed: bool) -> str:
    """`ours` and how this row differs from the plain step: K, remat, PRNG, packing, FSDP."""
    K, rng_impl, fsdp = config.steps_per_call, config.rng_impl, config.mesh.fsdp
    return (
        "ours"
        + ("" if K == 1 else f" K={K}")
        + (" remat" if config.remat else "")
        + ("" if rng_impl == "threefry2x32" else f" {rng_impl}")
        + (" packed" if packed else "")
        + ("" if fsdp == 1 else f" fsdp={fsdp}")
    )


def build_ours(config: ml_collections.ConfigDict, packed: bool = False) -> StepRunner:
    """Compiles our train step for `config` with the state donated; returns it ready to time."""
    ours = compile_ours(config, packed)
    compiled, batch, cfg = ours.compiled, ours.batch, ours.model
    holder = {"state": ours.state, "metrics": None}

    def call() -> None:
        holder["state"], holder["metrics"] = compiled(holder["state"], batch)

    def sync() -> None:
        jax.block_until_ready((holder["state"], holder["metrics"]))

    device = jax.devices()[0]
    shape = benchlib.shape_of(config)
    num_predictions = ours.objective.num_predictions(shape.seq)
    return StepRunner(
        impl=variant_label(config, packed),
        shape=shape,
        dtype=config.dtype,
        call=call,
        sync=sync,
        last_loss=lambda: np.asarray(jax.device_get(holder["metrics"]["loss"])),
        peak_memory_bytes=peak_memory_bytes,
        flops_per_token=train_flops_per_token(cfg, shape.seq, num_predictions),
        peak_flops=device_peak_flops(device, config.peak_flops or None),
        device=describe_device(device),
        steps_per_call=config.steps_per_call,
        num_devices=ours.mesh.size,
        info={
            "attention": (
                ("cudnn" if cfg.attention_impl == "cudnn" else "fused")
                if use_fused_attention(cfg, deterministic=False)
                else "exact"
            ),
            "mesh": dict(ours.mesh.shape),
            "compile_s": ours.compile_s,
            "xla_memory_mib": xla_memory_bytes(compiled) / 2**20,
            "xla_temp_mib": xla_temp_bytes(compiled) / 2**20,
            "remat": config.remat,
            "rng_impl": config.rng_impl,
            "packed": packed,
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
    config: ml_collections.ConfigDict,
    packed: bool = False,
    steps: int = 20,
    warmup: int = 3,
    repeats: int = 1,
    window: int = 1,
    compile_only: bool = False,
) -> dict:
    """One benchmark row for our step (see the module docstring); `steps` timed calls.

    `compile_only`: no timing, only the compile time and XLA's memory analysis (on any backend,
    e.g. to see on CPU how a change moves the temporary memory of a shape that OOMs on a GPU).
    """
    runner = build_ours(config, packed)
    if compile_only:
        shape = runner.shape
        return {"impl": runner.impl, "size": shape.size, "batch": shape.batch, "seq": shape.seq,
                "dtype": runner.dtype, "device": runner.device, **runner.info}  # fmt: skip
    return benchlib.run_benchmark(runner, steps, warmup, repeats, window)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = benchlib.config_parser("pretrain_step.py", __doc__)
    benchlib.add_timing_args(parser)
    parser.add_argument("--packed", action="store_true",
                        help="two examples per row: time the packed attention path")  # fmt: skip
    parser.add_argument("--compile-only", action="store_true",
                        help="print compile time and XLA memory analysis, no timing")  # fmt: skip
    args, [(spec, config)] = benchlib.parse_config_args(parser, argv)
    row = bench_ours(
        config, args.packed, args.steps, args.warmup, args.repeats, args.window, args.compile_only
    )
    print(json.dumps({"config": spec, "overrides": args.overrides, **row}, indent=2))


if __name__ == "__main__":
    main()
