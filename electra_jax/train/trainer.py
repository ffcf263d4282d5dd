"""The pre-training loop, read top to bottom: setup, input, model and sharding, resume, compile,
loop, export. `train(config, workdir)` is what `python -m electra_jax.pretrain`, tests and
notebooks call.
"""

import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from electra_jax.data import dataset_format
from electra_jax.data.dataset import ensure_builtin_dataset
from electra_jax.data.loader import check_meta, make_eval_batches, make_train_loader, read_meta
from electra_jax.data.tokenizer import load_tokenizer
from electra_jax.errors import UserError
from electra_jax.files.model_io import (
    export_dir,
    is_model_dir,
    load_model,
    read_model_config,
    save_model,
)
from electra_jax.files.run_files import (
    CONFIG_FILE,
    MetricsLogger,
    config_change,
    format_duration,
    read_metrics,
    truncate_metrics_after,
)
from electra_jax.model.config import PRESETS, ModelConfig
from electra_jax.model.flops import device_peak_flops, train_flops_per_token
from electra_jax.model.layers import cudnn_attention_problem
from electra_jax.storage import make_workdir, write_json
from electra_jax.train import sharding as shd
from electra_jax.train.checkpoints import PreemptionFlag, RunCheckpoints
from electra_jax.train.compile_cache import CompileWatch, enable_compile_cache
from electra_jax.train.distributed import (
    exit_when_a_host_is_lost,
    fetch_to_host,
    initialize_if_multi_host,
)
from electra_jax.train.objective import finalize_metrics
from electra_jax.train.program import build_program
from electra_jax.train.startup import StartupClock
from electra_jax.train.step import RNG_IMPLS, TrainState, make_eval_step

EXIT_NONFINITE = 3
# Changing these on resume makes the learning rate jump (allow_schedule_change=True permits it).
SCHEDULE_FIELDS = ("learning_rate", "num_train_steps", "warmup_steps", "optimizer.schedule")


class NonFiniteLoss(UserError):
    """Training hit a non-finite loss with on_nonfinite='stop' (see train/step.py)."""


# ----------------------------------------------------------------------------- setup


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Fails fast, before any data or compile work, on inconsistent settings."""
    k = config.steps_per_call
    for field in ("log_every", "eval_every", "checkpoint_every", "num_train_steps"):
        if config[field] % k:
            raise UserError(
                f"config.{field}={config[field]} is not a multiple of steps_per_call={k}; "
                f"set --config.{field} to a multiple of {k}"
            )
    if config.batch_size % config.grad_accum_steps:
        raise UserError(
            f"batch_size={config.batch_size} is not divisible by "
            f"grad_accum_steps={config.grad_accum_steps}"
        )
    choices = {  # field: (allowed values, how the error says them)
        "on_nonfinite": (("stop", "skip"), "stop or skip"),
        "rng_impl": (RNG_IMPLS, f"one of {', '.join(RNG_IMPLS)}"),
        "dtype": (("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
    }
    for field, (allowed, expected) in choices.items():
        if config[field] not in allowed:
            raise UserError(f"config.{field}={config[field]!r}; expected {expected}")
    if config.warmup_steps >= config.num_train_steps:
        print(
            f"warning: warmup_steps={config.warmup_steps} >= num_train_steps="
            f"{config.num_train_steps}: the learning rate never reaches its peak "
            f"{config.learning_rate}; lower --config.warmup_steps",
            file=sys.stderr,
        )


def adopt_data_vocab(config: ml_collections.ConfigDict, meta: dict) -> ml_collections.ConfigDict:
    """The data's vocabulary size when the config keeps its preset's (data prepared with
    `prepare --vocab-size`); a size the user set stays, and check_meta names a mismatch."""
    preset_size, data_size = PRESETS[config.size].vocab_size, meta["vocab_size"]
    if config.model.vocab_size != preset_size or data_size == preset_size:
        return config
    config = config.copy_and_resolve_references()  # the caller's config stays as given
    config.model.vocab_size = data_size
    print(f"model: vocab_size={data_size} from the data's meta.json (the preset's: {preset_size})")
    return config


def check_attention_backend(config: ml_collections.ConfigDict) -> None:
    """cuDNN attention needs a GPU and half precision: fail in one line before any compile."""
    problem = cudnn_attention_problem(config.dtype, jax.default_backend())
    if config.model.attention_impl == "cudnn" and problem:
        raise UserError(
            f"config.model.attention_impl='cudnn' {problem}; use --config.model."
            "attention_impl=fused (or auto) here"
        )


# ----------------------------------------------------------------------------- input


def resolve_data_dir(config: ml_collections.ConfigDict) -> str:
    """The prepared shards, or the built-in corpus prepared on the fly for `tiny`."""
    if config.data.dir:
        if config.data.builtin_pack:
            raise UserError(
                f"config.data.builtin_pack packs the built-in corpus only, but data.dir="
                f"{config.data.dir} is set; prepare that data with electra_jax.prepare --pack "
                "instead and drop --config.data.builtin_pack"
            )
        return config.data.dir
    if config.size != "tiny":
        raise UserError(
            f"config.data.dir is empty for size {config.size!r}; prepare shards with "
            "`python -m electra_jax.prepare` and pass --config.data.dir=DIR"
        )
    return ensure_builtin_dataset(
        vocab_size=config.data.builtin_vocab_size,
        max_seq_len=config.max_seq_len,
        pack=config.data.builtin_pack,
    )


# ----------------------------------------------------------------------------- model


def check_init_from(path: str, model_cfg: ModelConfig, source_cfg: ModelConfig | None = None):
    """Fails (before any compile: only model.json is read) when `path` is another model size."""
    source_cfg = source_cfg or read_model_config(export_dir(path))
    mismatched = [
        f"{k}={getattr(source_cfg, k)} (run: {getattr(model_cfg, k)})"
        for k in ("vocab_size", "embedding_size", "hidden_size", "num_layers")
        if getattr(source_cfg, k) != getattr(model_cfg, k)
    ]
    if mismatched:
        raise UserError(
            f"init_from {path} is another model size: {', '.join(mismatched)}; "
            "pick the matching --config size"
        )


def load_init_from(path: str, params: Any, model_cfg: ModelConfig) -> Any:
    """Copies the parameter groups of an exported model into fresh params (shapes must agree)."""
    source_cfg, source, _ = load_model(export_dir(path))
    check_init_from(path, model_cfg, source_cfg)
    merged, groups = dict(params), sorted(set(source) & set(params))
    to_device = lambda new, old: jax.device_put(jnp.asarray(new, old.dtype), old.sharding)
    for group in groups:
        if jax.tree.map(np.shape, source[group]) != jax.tree.map(jnp.shape, merged[group]):
            raise UserError(f"init_from {path}: parameter group {group!r} has other shapes")
        merged[group] = jax.tree.map(to_device, source[group], merged[group])
    print(f"init: loaded {groups} from {path}")
    return merged


def memory_summary(compiled: Any) -> str:
    try:
        m = compiled.memory_analysis()
        total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
        return f"device memory ~{total / 2**20:.0f} MiB (temp {m.temp_size_in_bytes / 2**20:.0f})"
    except Exception:  # not every backend reports it
        return "device memory: not reported by this backend"


# ----------------------------------------------------------------------------- loop


class Throughput:
    """Tokens/s, real (non-padding) tokens/s, TFLOP/s per device and MFU over a log interval."""

    def __init__(self, tokens_per_step: int, flops_per_token: float, num_devices: int):
        self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
        self.num_devices, self.peak = num_devices, None
        self.reset()

    def reset(self) -> None:
        self.start, self.steps, self.real_tokens = time.perf_counter(), 0, 0

    def measure(self) -> tuple[dict[str, float], float]:
        """(metrics, steps per second) since the last reset."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        tokens_per_sec = self.steps * self.tokens_per_step / elapsed
        tflops = tokens_per_sec * self.flops_per_token / self.num_devices / 1e12
        values = {
            "tokens_per_sec": tokens_per_sec,
            # This host's count times the hosts: its batches are a random share of the global
            # batch. Sequence packing raises it.
            "real_tokens_per_sec": self.real_tokens * jax.process_count() / elapsed,
            "tflops_per_device": tflops,
        }
        if self.peak:
            values["mfu"] = tflops * 1e12 / self.peak
        return values, self.steps / elapsed


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs (or resumes) pre-training in `workdir`; returns the last logged metrics. SIGTERM is
    handled from the start, so a notice during start-up also ends in a clean exit."""
    preemption = PreemptionFlag()
    try:
        with exit_when_a_host_is_lost():
            return _train(config, workdir, preemption)
    finally:
        preemption.restore()


def _train(
    config: ml_collections.ConfigDict, workdir: str, preemption: PreemptionFlag
) -> dict[str, Any]:
    clock = StartupClock()  # phases to the first step, printed there
    validate_config(config)
    K, B, L = config.steps_per_call, config.batch_size, config.max_seq_len
    initialize_if_multi_host()
    check_attention_backend(config)  # after distributed init: it starts the XLA backend
    is_primary = jax.process_index() == 0
    make_workdir(workdir)  # config.json is written once the inputs are checked
    cache_dir = enable_compile_cache(config.compile_cache_dir, workdir)  # warm restarts

    # ---- input
    data_dir = resolve_data_dir(config)
    meta = read_meta(data_dir)  # read once, passed on
    config = adopt_data_vocab(config, meta)

    # ---- mesh, model, sharding, the jitted step (train/program.py)
    program = build_program(config, dataset_format.special_ids(meta))
    model_cfg, objective, mesh = program.model_cfg, program.objective, program.mesh
    check_meta(meta, data_dir, vocab_size=model_cfg.vocab_size, max_seq_len=config.max_seq_len)
    if dataset_format.is_packed(meta):
        corpus, splits = meta.get("corpus", {}), meta["splits"]
        print(f"data: packed rows ({corpus.get('builder_examples', '?')} examples in "
              f"{splits['train']['examples'] + splits['eval']['examples']} rows, "
              f"{100 * corpus.get('padding_share', float('nan')):.1f}% padding)")  # fmt: skip
    if config.init_from:
        check_init_from(config.init_from, model_cfg)
    train_iter = make_train_loader(
        data_dir, meta=meta, global_batch_size=B, seed=config.seed,
        worker_count=config.data.worker_count, read_threads=config.data.read_threads,
    )  # fmt: skip
    eval_batches = (  # eval_batches=0 turns held-out evaluation off
        make_eval_batches(data_dir, global_batch_size=B, num_batches=config.eval_batches, meta=meta)
        if config.eval_batches > 0
        else []
    )
    clock.mark("data")
    abstract_state = program.abstract_state()
    n_params = sum(int(x.size) for x in jax.tree.leaves(abstract_state.params))
    print(
        f"model: {config.size} ({n_params / 1e6:.2f}M params, dtype {config.dtype}), "
        f"mesh {dict(mesh.shape)} on {jax.device_count()} {jax.devices()[0].platform} device(s)"
    )

    # ---- checkpoint: resume (a checkpoint of another model stops the run, touching nothing),
    # or initialise (and load init_from)
    checkpoints = RunCheckpoints(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    change = config_change(workdir, config.to_dict())
    restored = checkpoints.restore_latest(abstract_state, train_iter, change)
    if restored is not None:
        start_step, state = restored
        changed = f"; config changed since: {change}" if change else ""
        print(f"resume: from step {start_step} in {checkpoints.directory}{changed}")
        schedule_change = config_change(workdir, config.to_dict(), SCHEDULE_FIELDS)
        if schedule_change and not config.allow_schedule_change:
            checkpoints.close()
            raise UserError(
                f"resuming step {start_step} on another learning-rate schedule "
                f"({schedule_change}) would make the rate jump; rerun with the saved values, "
                "or add --config.allow_schedule_change=True"
            )
    else:
        load = lambda params: load_init_from(config.init_from, params, model_cfg)
        start_step, state = 0, program.init_state(load if config.init_from else None)
    clock.mark("init" if restored is None else "restore")
    export = os.path.join(workdir, "export")

    def export_model(params: Any) -> None:
        """The discriminator + generator, for fine-tuning, detect and `convert --to=hf`."""
        if config.export:
            host_params = fetch_to_host(params)  # FSDP shards span hosts: every host gathers
            if is_primary:
                tokenizer = load_tokenizer(data_dir, meta["tokenizer"])
                save_model(export, host_params, model_cfg, tokenizer, overwrite=True)

    if start_step >= config.num_train_steps:  # finished: no compile, no second export
        if not is_model_dir(export):  # stopped between its last checkpoint and the export
            export_model(state.params)
        checkpoints.close()
        print(
            f"done: the run in {workdir} finished at step {start_step} already; nothing to do "
            "(to train on, raise --config.num_train_steps with "
            "--config.allow_schedule_change=True)"
        )
        return (read_metrics(workdir) or [{}])[-1]
    if is_primary:  # every input and the checkpoint are checked: now the run files may change
        write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())
        truncate_metrics_after(workdir, start_step)

    # ---- update: compile before the loop
    watch = CompileWatch()
    compiled = program.compile(dataset_format.batch_keys(meta))
    print(f"compile: train step {watch.summary()}; {memory_summary(compiled)}; cache {cache_dir}")
    clock.mark("compile")
    batch_sh, eval_sh = program.batch_sh, shd.batch_sharding(mesh)
    eval_step = jax.jit(make_eval_step(program.model, objective))
    throughput = Throughput(
        B * L, train_flops_per_token(model_cfg, L, objective.num_predictions(L)), mesh.size
    )
    throughput.peak = device_peak_flops(override=config.peak_flops or None)

    def evaluate(params: Any) -> dict[str, float]:
        sums = None
        for i, local in enumerate(eval_batches):
            batch = shd.global_batch(local, eval_sh)
            out = eval_step(params, batch, jax.random.fold_in(jax.random.key(config.seed + 1), i))
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        return {f"eval/{k}": v for k, v in finalize_metrics(fetch_to_host(sums)).items()}

    def check_finite(state: TrainState) -> int:
        """The count of skipped non-finite steps; raises NonFiniteLoss under 'stop'."""
        bad = int(jax.device_get(state.nonfinite_steps))
        if bad and config.on_nonfinite == "stop":
            first = int(jax.device_get(state.first_nonfinite_step))
            raise NonFiniteLoss(
                f"non-finite loss or gradient at step {first}; the update was not applied and "
                f"no later checkpoint was written (last good: step {checkpoints.latest_step()} "
                f"in {checkpoints.directory}); lower the learning rate or set "
                "--config.on_nonfinite=skip"
            )
        return bad

    # ---- loop
    logger = MetricsLogger(workdir, config.num_train_steps, is_primary)
    step, last = start_step, {}
    run_start = time.perf_counter()
    try:
        if preemption.requested:  # the notice came during start-up: nothing new to save
            print(f"preempted during start-up; latest checkpoint is step {start_step}")
            return last
        while step < config.num_train_steps:
            local = [next(train_iter) for _ in range(K)]
            throughput.real_tokens += sum(np.count_nonzero(b["input_mask"]) for b in local)
            stacked = local[0] if K == 1 else {k: np.stack([b[k] for b in local]) for k in local[0]}
            state, metrics = compiled(state, shd.global_batch(stacked, batch_sh))
            if report := clock.first_step(metrics):
                print(report)
            step += K
            throughput.steps += K
            if step % config.log_every == 0 or step == config.num_train_steps:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                speed, steps_per_sec = throughput.measure()
                values.update(speed, examples_seen=step * B, nonfinite_steps=check_finite(state))
                at_eval = step % config.eval_every == 0 or step == config.num_train_steps
                if eval_batches and at_eval:
                    values.update(evaluate(state.params))
                    evals = " ".join(f"{k[5:]}={v:.4f}" for k, v in values.items() if "/" in k)
                    if is_primary:  # held-out numbers on the console too, not only in metrics
                        print(f"eval: step {step} {evals}")
                logger.write(step, values)
                logger.progress(step, values, steps_per_sec)
                last = values
                throughput.reset()
            should_stop = preemption.requested or checkpoints.reached_preemption(step)
            if step % config.checkpoint_every == 0 or should_stop:
                check_finite(state)
                checkpoints.save(step, state, train_iter, force=should_stop)
            if should_stop:
                checkpoints.wait()
                print(f"preempted: saved step {step}; rerun the same command to resume")
                return last
        # ---- end of run: final checkpoint, export
        check_finite(state)
        if checkpoints.latest_step() != step:
            checkpoints.save(step, state, train_iter, force=True)
        checkpoints.wait()
        export_model(state.params)
        took = format_duration(time.perf_counter() - run_start)
        shown = ", ".join(f"{k}={v:.4f}" for k, v in last.items() if k.startswith("eval/"))
        where = f"exported to {workdir}/export" if config.export else "not exported (export=False)"
        print(f"done: {step} steps in {took}; {shown}; {where}")
        return last
    finally:
        checkpoints.close()  # waits for a pending save; its error was already raised by wait()
        logger.close()
