"""ELECTRA pre-training: `python -m electra_jax.pretrain --config=configs/pretrain.py:tiny ...`.

One readable trainer in banner sections (setup, input, model and sharding, update,
checkpoint, evals, loop, export). `train(config, workdir)` is what tests and notebooks call.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from electra_jax.errors import UserError
from electra_jax.files.run_files import MetricsLogger, format_duration, truncate_metrics_after
from electra_jax.files.storage import make_workdir, write_json
from electra_jax.model.config import ModelConfig
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.model.flops import device_peak_flops, train_flops_per_token
from electra_jax.model.layers import cudnn_attention_problem
from electra_jax.train import sharding as shd
from electra_jax.train.checkpoints import RunCheckpoints
from electra_jax.train.objective import ObjectiveConfig, finalize_metrics
from electra_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer
from electra_jax.train.step import (
    RNG_IMPLS,
    StepConfig,
    TrainState,
    create_train_state,
    make_eval_step,
    make_multi_step,
    make_train_step,
)

EXIT_NONFINITE = 3


class NonFiniteLoss(UserError):
    """Training hit a non-finite loss with on_nonfinite='stop'."""


# ----------------------------------------------------------------------------- setup


def maybe_initialize_distributed() -> None:
    """jax.distributed on multi-host: TPU pods and SLURM are detected; else coordinator vars."""
    env = os.environ
    multi_host = (
        "JAX_COORDINATOR_ADDRESS" in env
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
    )
    if multi_host and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Fails fast, before any data or compile work, on inconsistent settings."""
    k = config.steps_per_call
    for field in ("log_every", "eval_every", "checkpoint_every"):
        if config[field] % k:
            raise UserError(
                f"config.{field}={config[field]} is not a multiple of steps_per_call={k}; "
                f"set --config.{field} to a multiple of {k}"
            )
    if config.num_train_steps % k:
        raise UserError(
            f"config.num_train_steps={config.num_train_steps} is not a multiple of "
            f"steps_per_call={k}"
        )
    if config.batch_size % config.grad_accum_steps:
        raise UserError(
            f"batch_size={config.batch_size} is not divisible by "
            f"grad_accum_steps={config.grad_accum_steps}"
        )
    if config.on_nonfinite not in ("stop", "skip"):
        raise UserError(f"config.on_nonfinite={config.on_nonfinite!r}; expected stop or skip")
    if config.rng_impl not in RNG_IMPLS:
        raise UserError(
            f"config.rng_impl={config.rng_impl!r}; expected one of {', '.join(RNG_IMPLS)}"
        )
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"config.dtype={config.dtype!r}; expected float32, bfloat16 or float16")


def check_attention_backend(config: ml_collections.ConfigDict) -> None:
    """cuDNN attention needs a GPU and half precision: fail in one line before any compile."""
    if config.model.attention_impl != "cudnn":
        return
    problem = cudnn_attention_problem(config.dtype, jax.default_backend())
    if problem:
        raise UserError(
            f"config.model.attention_impl='cudnn' {problem}; use --config.model."
            "attention_impl=fused (or auto) here"
        )


# ----------------------------------------------------------------------------- input


def resolve_data_dir(config: ml_collections.ConfigDict) -> str:
    """The prepared shards, or the built-in corpus prepared on the fly for small configs."""
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
    from electra_jax.data.pipeline import ensure_builtin_dataset

    print("data: preparing the built-in corpus (cached after the first run)...", flush=True)
    return ensure_builtin_dataset(
        vocab_size=config.data.builtin_vocab_size,
        max_seq_len=config.max_seq_len,
        pack=config.data.builtin_pack,
    )


# ----------------------------------------------------------------------------- model


def build_configs(
    config: ml_collections.ConfigDict, tokenizer: Any
) -> tuple[ModelConfig, ObjectiveConfig, OptimizerConfig]:
    try:
        model_cfg = ModelConfig.from_dict(config.model.to_dict())
    except (TypeError, ValueError) as e:
        raise UserError(f"config.model: {e}") from e
    if config.max_seq_len > model_cfg.max_position_embeddings:
        raise UserError(
            f"max_seq_len={config.max_seq_len} exceeds model.max_position_embeddings="
            f"{model_cfg.max_position_embeddings}; lower --config.max_seq_len"
        )
    o = config.objective
    objective = ObjectiveConfig(
        cls_id=tokenizer.cls_id,
        sep_id=tokenizer.sep_id,
        mask_id=tokenizer.mask_id,
        mask_prob=o.mask_prob,
        mask_token_prob=o.mask_token_prob,
        positions_with_replacement=o.positions_with_replacement,
        temperature=o.temperature,
        disallow_correct=o.disallow_correct,
        uniform_generator=o.uniform_generator,
        gen_weight=o.gen_weight,
        disc_weight=o.disc_weight,
        electra_objective=model_cfg.electra_objective,
    )
    p = config.optimizer
    optimizer = OptimizerConfig(
        learning_rate=config.learning_rate,
        num_train_steps=config.num_train_steps,
        warmup_steps=config.warmup_steps,
        weight_decay=p.weight_decay,
        b1=p.b1,
        b2=p.b2,
        eps=p.eps,
        clip_norm=p.clip_norm or None,
        bias_correction=p.bias_correction,
        schedule=p.schedule,
    )
    return model_cfg, objective, optimizer


def check_init_from(
    path: str, model_cfg: ModelConfig, source_cfg: ModelConfig | None = None
) -> None:
    """Fails (before any compile: only model.json is read) when `path` is another model size."""
    from electra_jax.files.model_io import read_model_config

    source_cfg = source_cfg or read_model_config(path)
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
    from electra_jax.files.model_io import load_model

    source_cfg, source, _ = load_model(path)
    check_init_from(path, model_cfg, source_cfg)
    merged = dict(params)
    for group, values in source.items():
        if group not in merged:
            continue
        target_shapes = jax.tree.map(jnp.shape, merged[group])
        if jax.tree.map(np.shape, values) != target_shapes:
            raise UserError(f"init_from {path}: parameter group {group!r} has other shapes")
        merged[group] = jax.tree.map(
            lambda new, old: jax.device_put(jnp.asarray(new, old.dtype), old.sharding),
            values,
            merged[group],
        )
    print(f"init: loaded {sorted(set(source) & set(params))} from {path}")
    return merged


# ----------------------------------------------------------------------------- loop


class PreemptionFlag:
    """SIGTERM (preemption notice) sets the flag; the loop saves and exits cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        del signum, frame
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def stack_batches(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs (or resumes) pre-training in `workdir`; returns the last logged metrics.

    The SIGTERM handler is installed first, so a preemption notice that arrives while the run
    is still starting up also ends in a saved checkpoint and a clean exit.
    """
    preemption = PreemptionFlag()
    try:
        return _train(config, workdir, preemption)
    finally:
        preemption.restore()


def _train(
    config: ml_collections.ConfigDict, workdir: str, preemption: PreemptionFlag
) -> dict[str, Any]:
    from electra_jax.data import records
    from electra_jax.data.loader import check_meta, make_eval_batches, make_train_loader, read_meta
    from electra_jax.data.tokenizer import load_tokenizer

    validate_config(config)
    maybe_initialize_distributed()
    check_attention_backend(config)  # after distributed init: it starts the XLA backend
    is_primary = jax.process_index() == 0
    make_workdir(workdir)  # config.json is written once the inputs are checked
    if "://" in workdir and is_primary:
        print(
            f"note: --workdir={workdir} is remote: checkpoints go there through Orbax, but "
            "config.json, metrics.jsonl, tensorboard/ and export/ are written under the local "
            f"directory {os.path.abspath(workdir)} (remote run files are not supported yet)"
        )

    # ---- input
    data_dir = resolve_data_dir(config)
    meta = read_meta(data_dir)
    tokenizer = load_tokenizer(data_dir, meta["tokenizer"])
    model_cfg, objective, opt_cfg = build_configs(config, tokenizer)
    check_meta(meta, data_dir, vocab_size=model_cfg.vocab_size, max_seq_len=config.max_seq_len)
    if records.is_packed(meta):
        corpus = meta.get("corpus", {})
        print(
            f"data: packed rows ({corpus.get('builder_examples', '?')} examples in "
            f"{meta['splits']['train']['examples'] + meta['splits']['eval']['examples']} rows, "
            f"{100 * corpus.get('padding_share', float('nan')):.1f}% padding); attention stays "
            "within each example"
        )
    if config.init_from:
        check_init_from(config.init_from, model_cfg)
    train_iter = make_train_loader(
        data_dir,
        global_batch_size=config.batch_size,
        seed=config.seed,
        worker_count=config.data.worker_count,
        read_threads=config.data.read_threads,
    )
    eval_batches = []  # eval_batches=0 turns held-out evaluation off
    if config.eval_batches > 0:
        eval_batches = make_eval_batches(
            data_dir, global_batch_size=config.batch_size, num_batches=config.eval_batches
        )

    # ---- mesh, model, sharding
    devices = jax.devices()
    if config.mesh.num_devices > 0:
        devices = devices[: config.mesh.num_devices]
    mesh = shd.make_mesh(config.mesh.data, config.mesh.fsdp, devices)
    model = ElectraModel(model_cfg, dtype=jnp.dtype(config.dtype), remat=config.remat)
    init_rng = jax.random.key(config.seed)
    abstract_boxed = jax.eval_shape(lambda r: init_params(model, r), init_rng)
    param_sh = shd.param_shardings(abstract_boxed, mesh)
    params = jax.jit(lambda r: nn.unbox(init_params(model, r)), out_shardings=param_sh)(init_rng)
    if config.init_from:
        params = load_init_from(config.init_from, params, model_cfg)
    tx = make_optimizer(opt_cfg)
    state = jax.jit(lambda p: create_train_state(p, tx))(params)
    state_sh = jax.tree.map(lambda x: x.sharding, state)
    n_params = sum(int(x.size) for x in jax.tree.leaves(params))
    print(
        f"model: {config.size} ({n_params / 1e6:.2f}M params, dtype {config.dtype}), "
        f"mesh {dict(mesh.shape)} on {jax.device_count()} {jax.devices()[0].platform} device(s)"
    )

    if is_primary:  # every input is checked: a bad one never overwrites the previous config.json
        write_json(os.path.join(workdir, "config.json"), config.to_dict())

    # ---- checkpoint (resume)
    checkpoints = RunCheckpoints(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    restored = checkpoints.restore_latest(abstract_state, train_iter)
    if restored is not None:
        start_step, state = restored
        print(f"resume: from step {start_step} in {checkpoints.directory}")
    else:
        start_step = 0
    if is_primary:
        truncate_metrics_after(workdir, start_step)

    # ---- update: compile before the loop
    K = config.steps_per_call
    step_cfg = StepConfig(
        seed=config.seed,
        grad_accum_steps=config.grad_accum_steps,
        nonfinite_test_step=config.nonfinite_test_step,
        rng_impl=config.rng_impl,
    )
    schedule = learning_rate_schedule(opt_cfg)
    train_step = make_multi_step(make_train_step(model, objective, tx, step_cfg, schedule), K)
    batch_sh = shd.batch_sharding(mesh, extra_leading_dims=1 if K > 1 else 0)
    jitted_step = jax.jit(
        train_step,
        in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, shd.replicated(mesh)),
        donate_argnums=0,
    )
    L, B = config.max_seq_len, config.batch_size
    lead = (K,) if K > 1 else ()
    batch_spec = {
        k: jax.ShapeDtypeStruct(lead + (B, L), jnp.int32, sharding=batch_sh)
        for k in ("input_ids", "input_mask", "segment_ids")
        + (("packing_ids",) if records.is_packed(meta) else ())
    }
    t0 = time.perf_counter()
    compiled = jitted_step.lower(state, batch_spec).compile()
    print(f"compile: train step in {time.perf_counter() - t0:.1f}s; {memory_summary(compiled)}")
    eval_sh = shd.batch_sharding(mesh)
    eval_step = jax.jit(make_eval_step(model, objective))

    flops_per_token = train_flops_per_token(model_cfg, L, objective.num_predictions(L))
    peak = device_peak_flops(override=config.peak_flops or None)

    def evaluate(params: Any) -> dict[str, float]:
        sums = None
        for i, local in enumerate(eval_batches):
            batch = shd.global_batch(local, eval_sh)
            out = eval_step(params, batch, jax.random.fold_in(jax.random.key(config.seed + 1), i))
            sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
        return {f"eval/{k}": v for k, v in finalize_metrics(jax.device_get(sums)).items()}

    def check_finite(state: TrainState) -> int:
        bad = int(jax.device_get(state.nonfinite_steps))
        if bad and config.on_nonfinite == "stop":
            first = int(jax.device_get(state.first_nonfinite_step))
            last_good = checkpoints.latest_step()
            raise NonFiniteLoss(
                f"non-finite loss or gradient at step {first}; the update was not applied and "
                f"no later checkpoint was written (last good: step {last_good} in "
                f"{checkpoints.directory}); lower the learning rate or set "
                "--config.on_nonfinite=skip"
            )
        return bad

    # ---- loop
    logger = MetricsLogger(workdir, config.num_train_steps, is_primary)
    step = start_step
    last = {}
    interval_start, interval_steps, interval_real = time.perf_counter(), 0, 0
    run_start = time.perf_counter()
    try:
        if preemption.requested:  # the notice came during start-up: nothing new to save
            print(f"preempted during start-up; latest checkpoint is step {start_step}")
            return last
        while step < config.num_train_steps:
            local = [next(train_iter) for _ in range(K)]
            interval_real += sum(np.count_nonzero(b["input_mask"]) for b in local)
            batch = shd.global_batch(local[0] if K == 1 else stack_batches(local), batch_sh)
            state, metrics = compiled(state, batch)
            step += K
            interval_steps += K
            if step % config.log_every == 0 or step == config.num_train_steps:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                skipped = check_finite(state)
                elapsed = time.perf_counter() - interval_start
                tokens_per_sec = interval_steps * B * L / max(elapsed, 1e-9)
                tflops = tokens_per_sec * flops_per_token / mesh.size / 1e12
                # Non-padding tokens: this host's count times the hosts (its batches are a
                # random share of the global batch), what sequence packing raises.
                real_per_sec = interval_real * jax.process_count() / max(elapsed, 1e-9)
                values.update(
                    tokens_per_sec=tokens_per_sec,
                    real_tokens_per_sec=real_per_sec,
                    tflops_per_device=tflops,
                    examples_seen=step * B,
                    nonfinite_steps=skipped,
                )
                if peak:
                    values["mfu"] = tflops * 1e12 / peak
                at_eval = step % config.eval_every == 0 or step == config.num_train_steps
                if eval_batches and at_eval:
                    values.update(evaluate(state.params))
                logger.write(step, values)
                logger.progress(step, values, interval_steps / max(elapsed, 1e-9))
                last = values
                interval_start, interval_steps, interval_real = time.perf_counter(), 0, 0
            should_stop = preemption.requested or checkpoints.reached_preemption(step)
            if step % config.checkpoint_every == 0 or should_stop:
                check_finite(state)
                checkpoints.save(step, state, train_iter, force=should_stop)
            if should_stop:
                checkpoints.wait()
                print(f"preempted: saved step {step}; rerun the same command to resume")
                return last
        # ---- end of run
        check_finite(state)
        if checkpoints.latest_step() != step:
            checkpoints.save(step, state, train_iter, force=True)
        checkpoints.wait()
        if config.export and is_primary:
            export_model(os.path.join(workdir, "export"), state.params, model_cfg, tokenizer)
        took = format_duration(time.perf_counter() - run_start)
        shown = ", ".join(f"{k}={v:.4f}" for k, v in last.items() if k.startswith("eval/"))
        where = f"exported to {workdir}/export" if config.export else "not exported (export=False)"
        print(f"done: {step} steps in {took}; {shown}; {where}")
        return last
    finally:
        checkpoints.close()  # waits for a pending save; its error was already raised by wait()
        logger.close()


def memory_summary(compiled: Any) -> str:
    try:
        m = compiled.memory_analysis()
        total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
        return f"device memory ~{total / 2**20:.0f} MiB (temp {m.temp_size_in_bytes / 2**20:.0f})"
    except Exception:  # not every backend reports it
        return "device memory: not reported by this backend"


def export_model(directory: str, params: Any, model_cfg: ModelConfig, tokenizer: Any) -> None:
    """The final discriminator + generator, for fine-tuning, detect and `convert --to=hf`."""
    from electra_jax.files.model_io import save_model

    save_model(directory, jax.device_get(params), model_cfg, tokenizer, overwrite=True)
