"""The trainer's own step compiled for a TPU slice from any machine (abstract arguments on
libtpu's compile-only devices): the compiler's memory plan per chip and its FLOPs, and, when it
does not fit, the cheapest of the usual fixes that does. `python -m electra_jax.compile_check`
prints these; the launchers run it before paying for a slice.

Memory and FLOPs only: XLA's time estimate for these programs is wrong (negative), so no time
is ever reported from it.
"""

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import ml_collections
from jax.experimental.compilation_cache import compilation_cache

from electra_jax.data import dataset_format
from electra_jax.errors import UserError
from electra_jax.model.config import PRESETS
from electra_jax.model.flops import train_flops_per_token
from electra_jax.model.layers import cudnn_attention_problem
from electra_jax.train.program import TrainProgram, build_program
from electra_jax.train.topologies import GiB, Slice
from electra_jax.train.trainer import validate_config

# The objective needs [CLS], [SEP] and [MASK]'s ids; as constants they do not change the
# program's memory or FLOPs. BERT's uncased WordPiece ids.
SPECIAL_IDS = {"cls_id": 101, "sep_id": 102, "mask_id": 103}


@dataclasses.dataclass(frozen=True)
class Plan:
    """The compiler's memory plan of one compiled step, per chip, in bytes."""

    settings: dict[str, Any]  # the overrides compiled (empty: the config as given)
    arguments: int  # train state (donated) + the batch
    outputs: int
    aliased: int  # outputs written into the donated arguments' buffers
    temporaries: int  # activations, gradients, optimiser scratch
    code: int  # the compiled program itself
    flops: float  # per chip per optimiser step (XLA's cost analysis, loops scaled: read_plan)
    compile_seconds: float

    @property
    def total(self) -> int:
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


def with_overrides(config: ml_collections.ConfigDict, settings: dict[str, Any]):
    """A copy of `config` with dotted `settings` applied (the caller's config stays as given)."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for field, value in settings.items():
            *parents, name = field.split(".")
            node = config
            for key in parents:
                node = node[key]
            node[name] = value
    return config


def check_inputs(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, tuple]:
    """(config, batch keys) as the trainer would see them without the data: `tiny` on the
    built-in corpus takes its vocabulary size; prepared data is assumed unpacked."""
    builtin = config.size == "tiny" and not config.data.dir
    if builtin and config.model.vocab_size == PRESETS["tiny"].vocab_size:
        config = with_overrides(config, {"model.vocab_size": config.data.builtin_vocab_size})
    packed = bool(config.data.get("builtin_pack", False)) and not config.data.dir
    keys = dataset_format.FEATURES + (("packing_ids",) if packed else ())
    return config, keys


def slice_mesh_devices(config: ml_collections.ConfigDict, devices: Sequence, s: Slice) -> list:
    """The devices the trainer's mesh would use on the slice, or a one-line error when the
    mesh does not divide it."""
    devices = list(devices)
    if config.mesh.num_devices > 0:
        devices = devices[: config.mesh.num_devices]
    n, data, fsdp = len(devices), config.mesh.data, config.mesh.fsdp
    used = (data if data > 0 else 1) * (fsdp if fsdp > 0 else 1)
    if (data == -1 and fsdp == -1) or used < 1 or n % used or (data > 0 and fsdp > 0 and used != n):
        raise UserError(
            f"mesh data={data} x fsdp={fsdp} does not divide {s.name}'s {n} chips; set "
            f"--config.mesh.fsdp to a divisor of {n} and --config.mesh.data=-1 (the rest)"
        )
    return devices


def build(config: ml_collections.ConfigDict, devices: Sequence) -> TrainProgram:
    """The trainer's program (train/program.py: mesh, shardings, donation, K steps per call,
    remat, accumulation) on the slice's devices, after the trainer's own config checks."""
    validate_config(config)
    problem = cudnn_attention_problem(config.dtype, "tpu")
    if config.model.attention_impl == "cudnn" and problem:
        raise UserError(f"config.model.attention_impl='cudnn' {problem}; use --config.model."
                        "attention_impl=fused (or auto) on TPU")  # fmt: skip
    return build_program(config, SPECIAL_IDS, devices)


def state_bytes(program: TrainProgram) -> int:
    """The whole train state's bytes (parameters + optimiser state), summed over the slice."""
    leaves = jax.tree.leaves(program.abstract_state())
    return sum(int(x.size) * x.dtype.itemsize for x in leaves)


@contextlib.contextmanager
def no_persistent_cache() -> Iterator[None]:
    """Keeps compile-only executables out of JAX's persistent compilation cache: reading one
    back needs a TPU client ("PjRtCompiler must be constructed with a Client"), so writing it
    only costs time. The cache's state is re-read from the config afterwards."""
    previous = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", previous)
        compilation_cache.reset_cache()


def compile_step(program: TrainProgram, keys: Sequence[str]) -> Any:
    """The compiled step executable (the one call the trainer makes before its loop)."""
    with no_persistent_cache():
        return program.compile(keys)


def plan_of(program: TrainProgram, keys: Sequence[str], settings: dict[str, Any]) -> Plan:
    """Compiles the step and reads the executable's memory and FLOPs per chip."""
    t0 = time.perf_counter()
    compiled = compile_step(program, keys)
    seconds = time.perf_counter() - t0
    return read_plan(compiled, settings, seconds, program.config.grad_accum_steps)


def read_plan(compiled: Any, settings: dict[str, Any], seconds: float, loop: int = 1) -> Plan:
    """The Plan of a compiled executable. XLA's cost analysis counts a loop's body once
    (measured on TPU and CPU: tiny's count halves at grad_accum_steps=2 and stays at
    steps_per_call=2), so one optimiser step is the count times the micro-batches `loop`
    (the K-steps-per-call loop's body is one step already)."""
    m = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float((cost or {}).get("flops", float("nan"))) * loop
    return Plan(
        dict(settings), m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes,
        m.temp_size_in_bytes, m.generated_code_size_in_bytes, flops, seconds,
    )  # fmt: skip


def analytic_flops(config: ml_collections.ConfigDict, program: TrainProgram) -> float:
    """model/flops.py's count for one optimiser step of the whole batch (all chips)."""
    L = config.max_seq_len
    per_token = train_flops_per_token(program.model_cfg, L, program.objective.num_predictions(L))
    return per_token * config.batch_size * L


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def fix_ladder(config: ml_collections.ConfigDict, chips: int) -> list[dict[str, Any]]:
    """The fixes to try, cheapest first, each keeping the one before: shard the train state
    over more chips (`mesh.fsdp`, up to every chip: no extra compute, more communication),
    recompute activations in the backward pass (`remat`: ~1/3 more compute), then accumulate
    gradients over more micro-batches (`grad_accum_steps`: the same update from smaller
    matmuls), down to one row per chip. A smaller batch is never tried: it changes the recipe
    and lowers memory no further than accumulation does (both bottom out at a row per chip)."""
    ladder: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    fsdp = chips if config.mesh.fsdp == -1 else config.mesh.fsdp
    for f in divisors(chips):
        if f > fsdp:
            settings = {"mesh.data": -1, "mesh.fsdp": f}
            ladder.append(dict(settings))
    if not config.remat:
        settings = {**settings, "remat": True}
        ladder.append(dict(settings))
    batch = config.batch_size
    for accum in divisors(batch):
        if accum > config.grad_accum_steps and (batch // accum) % chips == 0:
            ladder.append({**settings, "grad_accum_steps": accum})
    return ladder


# A rung is compiled unless the last compiled plan, scaled to the rung (temporaries by the rows
# per micro-batch, the sharded state by mesh.fsdp), predicts a total over this many times the
# HBM: compiles of large take minutes each. What is reported is always compiled.
SKIP_FACTOR = 1.25


def setting(config: ml_collections.ConfigDict, settings: dict, field: str) -> Any:
    """`field` (dotted) under `settings`, else the config's."""
    if field in settings:
        return settings[field]
    node = config
    for key in field.split("."):
        node = node[key]
    return node


def predicted_total(last: Plan, config: ml_collections.ConfigDict, settings: dict) -> float:
    """An estimate of `settings`' total from `last` (0, no estimate, when remat differs)."""
    value = lambda d, field: setting(config, d, field)  # noqa: E731
    rows = lambda d: value(d, "batch_size") / value(d, "grad_accum_steps")  # noqa: E731
    fsdp_new, fsdp_old = value(settings, "mesh.fsdp"), value(last.settings, "mesh.fsdp")
    if value(settings, "remat") != value(last.settings, "remat") or min(fsdp_new, fsdp_old) < 1:
        return 0.0
    state = last.arguments + last.outputs - last.aliased
    rest = last.total - state - last.temporaries
    return (
        rest + state * fsdp_old / fsdp_new
        + last.temporaries * rows(settings) / rows(last.settings)
    )  # fmt: skip


def format_settings(settings: dict[str, Any]) -> str:
    return " ".join(f"--config.{k}={v}" for k, v in settings.items())


@dataclasses.dataclass
class Check:
    """The plan of the config as given and, when it does not fit, of the fixes tried."""

    slice: Slice
    program: TrainProgram
    plan: Plan
    analytic_flops: float
    tried: list[Plan]
    fix: Plan | None

    @property
    def fits(self) -> bool:
        return self.plan.total <= self.slice.hbm_bytes


def run_check(
    config: ml_collections.ConfigDict, s: Slice, devices: Sequence, try_fixes: bool = True,
    log: Any = print,
) -> Check:  # fmt: skip
    """Compiles the config's step for slice `s`; when it does not fit, walks `fix_ladder` and
    keeps the first fix that fits. Fails in one line when even the whole state, sharded over
    every chip, exceeds a chip's HBM (no fix can help)."""
    config, keys = check_inputs(config)
    devices = slice_mesh_devices(config, devices, s)
    program = build(config, devices)
    floor = state_bytes(program) / len(devices)
    if floor > s.hbm_bytes:
        raise UserError(
            f"{config.size} cannot fit on {s.name} even with every fix: its parameters and "
            f"optimiser state alone are {floor / GiB:.1f} GiB per chip when sharded over all "
            f"{len(devices)} chips (HBM {s.hbm_bytes / GiB:.0f} GiB); pick a bigger slice"
        )
    log(f"compiling the train step for {s.name} ({len(devices)} chips) ...")
    plan = plan_of(program, keys, {})
    check = Check(s, program, plan, analytic_flops(config, program), [], None)
    if check.fits or not try_fixes:
        return check
    for settings in fix_ladder(config, len(devices)):
        last = check.tried[-1] if check.tried else plan
        guess = predicted_total(last, config, settings)
        if guess > SKIP_FACTOR * s.hbm_bytes:
            log(f"skipping {format_settings(settings)}: predicted {guess / GiB:.1f} GiB")
            continue
        log(f"does not fit; trying {format_settings(settings)} ...")
        fixed = build(with_overrides(config, settings), devices)
        tried = plan_of(fixed, keys, settings)
        check.tried.append(tried)
        if tried.total <= s.hbm_bytes:
            check.fix = tried
            break
    return check
