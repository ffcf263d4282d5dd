"""The fine-tuning trainer, `run(config, workdir)`: seeds train together under `jax.vmap` (one
step over a seed axis; own head init, dropout and data order) as `vectorize_budget` allows."""

import contextlib
import math
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from electra_jax.config_fields import build
from electra_jax.data.dataset import ensure_builtin_dataset
from electra_jax.data.dataset_format import META_FILE, read_meta
from electra_jax.data.tokenizer import Tokenizer, WordPieceTokenizer, load_tokenizer
from electra_jax.errors import UserError
from electra_jax.files.model_io import export_dir, load_model
from electra_jax.files.run_files import (
    CONFIG_FILE,
    RESULTS_FILE,
    MetricsLogger,
    truncate_metrics_after,
    write_results,
)
from electra_jax.finetune import features
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.finetune.checkpoints import (
    GroupState,
    check_resumable,
    export_seed,
    finish_group,
    group_checkpoints,
    keep_median_export,
    read_group_record,
    saved_step,
)
from electra_jax.finetune.heads import (
    HEAD_INITS,
    LOSS_REDUCTIONS,
    FinetuneModel,
    finetune_model,
    layerwise_multipliers,
    task_loss,
)
from electra_jax.finetune.multitask import (
    MultiTaskModel,
    get_tasks,
    head_name,
    merge_train,
    multitask_loss,
    task_outputs,
)
from electra_jax.finetune.readers import read_split, split_path, tfds_has_split, with_tagging_labels
from electra_jax.finetune.scoring import (  # median_seed_index, write_glue_submission: re-exported
    EvalSet,
    median_seed_index,  # noqa: F401
    predict_all,
    score_seed,
    summarize,
    write_all_predictions,
    write_glue_submission,  # noqa: F401
)
from electra_jax.finetune.tasks import BUILTIN_TASKS, TaskSpec
from electra_jax.model.config import ModelConfig, preset
from electra_jax.model.shapes import check_param_shapes
from electra_jax.storage import is_file, make_workdir, write_json
from electra_jax.train.checkpoints import PreemptionFlag, RunCheckpoints
from electra_jax.train.compile_cache import CompileWatch, enable_compile_cache
from electra_jax.train.distributed import initialize_if_multi_host
from electra_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer

Config = ml_collections.ConfigDict


def validate_config(config: Config) -> None:
    """Fails fast, before any data or compile work, on inconsistent settings."""
    for field in ("seeds", "batch_size", "eval_batch_size", "max_seq_len", "log_every"):
        if config[field] < 1:
            raise UserError(f"config.{field}={config[field]} must be at least 1")
    if config.checkpoint_every < 0 or config.keep_checkpoints < 1:
        raise UserError(
            f"config.checkpoint_every={config.checkpoint_every} must be >= 0 (0: none) and "
            f"config.keep_checkpoints={config.keep_checkpoints} >= 1"
        )
    if config.num_epochs <= 0:
        raise UserError(f"config.num_epochs={config.num_epochs} must be positive")
    if not 0.0 < config.layerwise_lr_decay <= 1.0:
        raise UserError(f"config.layerwise_lr_decay={config.layerwise_lr_decay} must be in (0, 1]")
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"config.dtype={config.dtype!r}; expected float32, bfloat16 or float16")
    for field, choices in (("loss_reduction", LOSS_REDUCTIONS), ("head_init", HEAD_INITS)):
        if config[field] not in choices:
            raise UserError(f"config.{field}={config[field]!r}; expected one of {choices}")


def load_encoder(config: Config) -> tuple[ModelConfig, dict | None, Tokenizer]:
    """(model config, pre-trained params or None, the checkpoint's own tokenizer)."""
    if not config.init_from:
        vocab_dir = config.vocab_dir or ensure_builtin_dataset(vocab_size=8192, max_seq_len=128)
        if is_file(os.path.join(vocab_dir, META_FILE)):  # a prepared dataset
            tokenizer = load_tokenizer(vocab_dir, read_meta(vocab_dir)["tokenizer"])
        else:
            tokenizer = WordPieceTokenizer(os.path.join(vocab_dir, "vocab.txt"))
        try:
            return preset(config.size, vocab_size=tokenizer.vocab_size), None, tokenizer
        except ValueError as e:
            raise UserError(str(e)) from e
    directory = export_dir(config.init_from)  # an export, or a pre-training workdir
    model_cfg, params, tokenizer = load_model(directory)
    params = {k: v for k, v in params.items() if not k.startswith("head")}  # a fine-tuned export
    if tokenizer is None:
        raise UserError(f"init_from {directory} has no tokenizer; re-export it with its vocab.txt")
    if not model_cfg.electra_objective and "generator" in params:  # BERT: fine-tune its MLM tower
        params = {**params, "discriminator": params["generator"]}
        model_cfg = model_cfg.replace(electra_objective=True)
    gdes = {"gdes"} if model_cfg.embedding_sharing == "gdes" else set()
    if missing := sorted({"embeddings", "discriminator", *gdes} - set(params)):
        raise UserError(f"init_from {directory} lacks parameter group(s) {missing}")
    check_param_shapes(model_cfg, params, f"init_from {directory}")  # before any compile
    return model_cfg, params, tokenizer


def task_data_dir(config: Config, spec: TaskSpec) -> str:
    """config.data_dir, or the generated built-in tasks' folder for a built-in task."""
    if not config.data_dir and spec.name in BUILTIN_TASKS:
        return ensure_builtin_tasks(**config.builtin.to_dict())
    return config.data_dir


def load_task_data(config: Config, spec: TaskSpec, tokenizer: Tokenizer) -> tuple:
    """(train arrays, dev sets + test sets, skipped rows by file): read, checked, featurized."""
    data_dir = task_data_dir(config, spec)
    skipped: dict[str, int] = {}

    def featurized(stem: str, is_test: bool = False, is_training: bool = False) -> tuple:
        """(arrays, SQuAD windows or None, examples) of one split."""
        result = read_split(data_dir, spec, stem, is_test, config.skip_malformed)
        if result.skipped:
            skipped[split_path(data_dir, spec, stem) if data_dir else stem] = result.skipped
        examples = result.examples
        if is_training and config.max_train_examples > 0:
            examples = examples[: config.max_train_examples]
        if spec.kind == "span":
            s = config.squad
            args = (config.max_seq_len, s.doc_stride, s.max_query_len, is_training,
                    s.missed_answer_is_impossible)  # fmt: skip
            return (*features.featurize_squad(examples, tokenizer, *args), examples)
        if spec.kind == "tagging":  # spec.labels: with_tagging_labels
            arrays = features.encode_tagging(examples, tokenizer, config.max_seq_len, spec.labels)
            return arrays, None, examples
        if is_training and spec.double_unordered:
            examples = features.double_unordered(examples)
        regression = spec.kind == "regression"
        arrays = features.encode_examples(examples, tokenizer, config.max_seq_len, regression)
        return arrays, None, examples

    train = featurized("train", is_training=True)[0]
    span_file = "{}_predictions.json" if spec.kind == "span" else ""
    evals = [EvalSet(name, *featurized(stem), span_file.format(name))
             for name, stem in spec.dev_sets]  # fmt: skip
    tests = [EvalSet(name, *featurized(stem, is_test=True), leaderboard, has_labels=False)
             for name, stem, leaderboard in spec.test_sets  # test files are optional
             if (is_file(split_path(data_dir, spec, stem)) if data_dir
                 else tfds_has_split(spec, stem))]  # fmt: skip
    return train, evals + tests, skipped


def make_tx(config: Config, num_steps: int, num_layers: int) -> tuple[Any, optax.Schedule]:
    """The original's AdamW and schedule (also returned, for logging), layer-wise LR decay."""
    opt_cfg = build(OptimizerConfig, config.optimizer, "config.optimizer",
                    learning_rate=config.learning_rate, num_train_steps=num_steps,
                    warmup_steps=int(num_steps * config.warmup_proportion),
                    weight_decay=config.weight_decay)  # fmt: skip
    schedule = learning_rate_schedule(opt_cfg)
    decay, fix = config.layerwise_lr_decay, config.layerwise_fix
    scale = lambda tree: layerwise_multipliers(tree, num_layers, decay, fix)
    return make_optimizer(opt_cfg, lr_scale=scale, schedule=schedule), schedule


def init_seed_params(
    model: FinetuneModel, seeds: list[int], example: dict[str, np.ndarray], pretrained: dict | None
) -> Any:
    """Parameters with a leading seed axis: fresh heads per seed, the shared pre-trained encoder."""
    dummy = {k: jnp.asarray(v[:2]) for k, v in example.items()}
    init = lambda rng: nn.unbox(model.init({"params": rng}, dummy, deterministic=True)["params"])
    params_S = jax.jit(jax.vmap(init))(jnp.stack([jax.random.key(s) for s in seeds]))
    if pretrained is None:
        return params_S
    broadcast = lambda x, like: jnp.broadcast_to(jnp.asarray(x, like.dtype), like.shape)
    encoder = {group: jax.tree.map(broadcast, pretrained[group], like)
               for group, like in params_S["electra"].items()}  # fmt: skip
    return {**params_S, "electra": encoder}


def make_steps(
    model: nn.Module, spec: TaskSpec, tx: Any, config: Config, loss: Any = None
) -> tuple:
    """(train step, predict), both over a leading seed axis; `loss(outputs, batch)` replaces the
    single task's loss (multi-task runs)."""
    s = config.squad
    loss = loss or (lambda out, batch: task_loss(
        out, batch, spec.kind, s.answerable_classifier, s.answerable_weight, config.loss_reduction
    ))  # fmt: skip

    def train_step(params: Any, opt_state: Any, batch: dict, key: jax.Array, step: Any) -> tuple:
        rng = jax.random.fold_in(key, step)

        def loss_fn(p: Any) -> jax.Array:
            out = model.apply({"params": p}, batch, deterministic=False, rngs={"dropout": rng})
            return loss(out, batch)

        value, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    predict = lambda params, batch: model.apply({"params": params}, batch, deterministic=True)
    train = jax.jit(jax.vmap(train_step, in_axes=(0, 0, 0, 0, None)), donate_argnums=(0, 1))
    return train, jax.jit(jax.vmap(predict, in_axes=(0, None)))


def seed_slice(tree_S: Any, i: int) -> Any:
    """Seed `i`'s arrays of a tree with a leading seed axis."""
    return jax.tree.map(lambda v: v[i], tree_S)


class Preempted(Exception):
    """SIGTERM reached the training loop: the group's state is saved; the run stops cleanly."""


def train_group(
    config: Config, tx: Any, train_step: Any, schedule: optax.Schedule, train: dict,
    params_S: Any, seeds: list[int], num_steps: int, logger: MetricsLogger,
    checkpoints: RunCheckpoints | None = None, preemption: PreemptionFlag | None = None,
    step_offset: int = 0,
) -> Any:  # fmt: skip
    """Trains a group of seeds together (from its latest checkpoint, if any, saving one every
    `checkpoint_every` steps and on SIGTERM); returns their parameters and last-step losses.
    Batches and dropout are functions of seed and step: a resumed group trains bit-identically."""
    B, N = config.batch_size, len(train["input_ids"])
    opt_S = jax.jit(jax.vmap(tx.init))(params_S)
    loss_S, start = jnp.zeros(len(seeds), jnp.float32), 0
    # On a pod Orbax writes no process-local jax.Array: host copies there (host 0 saves alone).
    as_saved = jax.device_get if jax.process_count() > 1 else lambda state: state
    template = as_saved(GroupState(params_S, opt_S, loss_S))
    if checkpoints is not None and (restored := checkpoints.restore_latest(template, None)):
        start, state = restored[0], jax.device_put(restored[1])
        params_S, opt_S, loss_S = state.params, state.opt_state, state.loss
        print(f"resume: seeds {seeds} from step {start} in {checkpoints.directory}")
    permute = [np.random.default_rng(s).permutation for s in seeds]  # a fresh order per epoch
    orders = [np.concatenate([p(N) for _ in range(math.ceil(num_steps * B / N))]) for p in permute]
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    t0 = time.perf_counter()
    for step in range(start, num_steps):
        rows = [order[step * B : (step + 1) * B] for order in orders]
        batch = {k: np.stack([v[r] for r in rows]) for k, v in train.items()}
        params_S, opt_S, loss_S = train_step(params_S, opt_S, batch, keys, step)
        done = step + 1
        if done % config.log_every == 0 or done == num_steps:
            loss = float(np.mean(jax.device_get(loss_S)))
            if not np.isfinite(loss):
                raise UserError(
                    f"non-finite loss at step {done} (seeds {seeds}); lower --config.learning_rate"
                )
            values = {"loss": loss, "learning_rate": float(schedule(step)), "seeds": str(seeds)}
            logger.write(step_offset + done, values)
            logger.progress(step_offset + done, values,
                            (done - start) / max(time.perf_counter() - t0, 1e-9))  # fmt: skip
        if checkpoints is None:
            continue
        stop = preemption is not None and (
            preemption.requested or checkpoints.reached_preemption(done))  # fmt: skip
        if (done % config.checkpoint_every == 0 or stop) and jax.process_index() == 0:
            checkpoints.save(done, as_saved(GroupState(params_S, opt_S, loss_S)), None, force=stop)
        if stop:
            checkpoints.wait()
            raise Preempted(f"saved step {done} of seeds {seeds} in {checkpoints.directory}")
    if checkpoints is not None:
        checkpoints.wait()
    return params_S, np.asarray(jax.device_get(loss_S), np.float64)


def run(config: Config, workdir: str) -> dict[str, Any]:
    """Fine-tunes `config.seeds` runs on `config.task` (several tasks: "rte+mrpc"); writes
    results.json, predictions and `export/`. A rerun of the same command resumes; SIGTERM saves
    the running group and returns {"preempted": ...} (exit 0)."""
    preemption = PreemptionFlag()
    try:
        return _run(config, workdir, preemption)
    except Preempted as stop:
        print(f"preempted: {stop}; rerun the same command to resume")
        return {"preempted": str(stop)}
    finally:
        preemption.restore()


def _run(config: Config, workdir: str, preemption: PreemptionFlag) -> dict[str, Any]:
    validate_config(config)
    specs = get_tasks(config.task)
    multi = len(specs) > 1
    initialize_if_multi_host()  # each host then fine-tunes the same seeds; host 0 writes
    is_primary = jax.process_index() == 0
    make_workdir(workdir)  # config.json is written once the inputs are checked
    cache_dir, compiles = enable_compile_cache(config.compile_cache_dir, workdir), CompileWatch()
    run_start = time.perf_counter()
    model_cfg, pretrained, tokenizer = load_encoder(config)
    if config.max_seq_len > model_cfg.max_position_embeddings:
        raise UserError(
            f"max_seq_len={config.max_seq_len} exceeds the model's max_position_embeddings="
            f"{model_cfg.max_position_embeddings}; lower --config.max_seq_len"
        )
    specs = [with_tagging_labels(s, task_data_dir(config, s), config.skip_malformed) for s in specs]
    loaded = [load_task_data(config, spec, tokenizer) for spec in specs]
    eval_sets = [sets for _, sets, _ in loaded]
    train = merge_train([t for t, _, _ in loaded]) if multi else loaded[0][0]
    skipped_rows = {path: n for _, _, skipped in loaded for path, n in skipped.items()}
    check_resumable(workdir, config)  # progress under another config stops here
    if is_primary:
        write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())
    num_train = len(train["input_ids"])
    num_steps = max(1, int(num_train * config.num_epochs / config.batch_size))
    for path, count in skipped_rows.items():
        print(f"data: skipped {count} malformed row(s) in {path}")
    for spec, (task_train, sets, _) in zip(specs, loaded, strict=True):
        print(f"data: {spec.name}: {len(task_train['input_ids'])} training rows; eval sets "
              f"{[e.name for e in sets if e.has_labels]}, test sets "
              f"{[e.name for e in sets if not e.has_labels]}")  # fmt: skip
    print(f"data: {num_steps} steps of {config.batch_size}")
    dtype = jnp.dtype(config.dtype)
    if multi:
        model = MultiTaskModel(model_cfg, tuple(specs), config.head_init, dtype)
        loss = lambda out, batch: multitask_loss(out, batch, specs, config.loss_reduction)
    else:
        kind, num_labels = specs[0].kind, len(specs[0].labels)
        model, loss = finetune_model(model_cfg, kind, num_labels, config, dtype), None
    tx, schedule = make_tx(config, num_steps, model_cfg.num_layers)
    train_step, predict = make_steps(model, specs[0], tx, config, loss)
    seeds = [config.seed + i for i in range(config.seeds)]
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
        jax.eval_shape(lambda: init_seed_params(model, [0], train, None))))  # fmt: skip
    group = config.seeds_per_group or max(1, int(config.vectorize_budget // max(n_params, 1)))
    group = min(group, len(seeds))
    groups = [seeds[g : g + group] for g in range(0, len(seeds), group)]
    print(f"model: {config.size} ({n_params / 1e6:.2f}M params) from "
          f"{config.init_from or 'random init'}; {len(seeds)} seed(s), {group} at a time under "
          "vmap")  # fmt: skip
    head = {"tasks": [{"name": s.name, "kind": s.kind, "labels": list(s.labels),
                       "part": head_name(s) if multi else "head"} for s in specs]}  # fmt: skip

    def train_and_score(index: int, group_seeds: list[int], logger: MetricsLogger) -> dict:
        """One group's training (resumable), its scores and predictions, its seeds' exports."""
        params_S = init_seed_params(model, group_seeds, train, pretrained)
        every = config.checkpoint_every > 0
        ckpt = group_checkpoints(workdir, group_seeds, config.keep_checkpoints) if every else None
        with contextlib.closing(ckpt) if ckpt else contextlib.nullcontext():
            params_S, loss_S = train_group(config, tx, train_step, schedule, train, params_S,
                                           group_seeds, num_steps, logger, ckpt, preemption,
                                           index * num_steps)  # fmt: skip
        record: dict[str, Any] = {"seeds": group_seeds, "train_loss": loss_S, "tasks": {}}
        for spec, sets in zip(specs, eval_sets, strict=True):
            for eval_set in sets:
                out_S = predict_all(predict, params_S, eval_set.arrays, config.eval_batch_size)
                out_S = task_outputs(out_S, spec, multi)
                scored = [score_seed(config, spec, eval_set, seed_slice(out_S, i), tokenizer)
                          for i in range(len(group_seeds))]  # fmt: skip
                for seed, (scores, _) in zip(group_seeds, scored, strict=True):
                    if scores is not None:
                        shown = ", ".join(f"{k}={v:.2f}" for k, v in scores.items())
                        print(f"eval: seed {seed} {spec.name} {eval_set.name}: {shown}")
                record["tasks"].setdefault(spec.name, {})[eval_set.name] = {
                    "scores": [sc for sc, _ in scored],
                    "predictions": [p if eval_set.file_name else None for _, p in scored],
                }
        if config.export and is_primary:
            host_S = jax.device_get(params_S)
            for i, seed in enumerate(group_seeds):
                export_seed(workdir, seed, seed_slice(host_S, i), model_cfg, tokenizer, head)
        return finish_group(workdir, group_seeds, record, is_primary)

    records = [read_group_record(workdir, g) for g in groups]
    if is_primary and (todo := [i for i, r in enumerate(records) if r is None]):
        start = saved_step(workdir, groups[todo[0]])  # the records after it are logged again
        truncate_metrics_after(workdir, todo[0] * num_steps + start)
    with contextlib.closing(MetricsLogger(workdir, num_steps * len(groups), is_primary)) as logger:
        for index, group_seeds in enumerate(groups):
            if records[index] is None:
                records[index] = train_and_score(index, group_seeds, logger)
    print(f"compile: {compiles.counts()} (cache {cache_dir})")
    results = summarize(specs, eval_sets, records)
    results.update(size=config.size, init_from=config.init_from, seeds_per_group=group,
                   num_train_examples=num_train, num_train_steps=num_steps,
                   skipped_rows=skipped_rows)  # fmt: skip
    if config.write_predictions and is_primary:
        directory = os.path.join(workdir, "predictions")
        written = write_all_predictions(directory, specs, eval_sets, records, results)
        results["predictions"] = written
    if config.export and is_primary:
        results["export"] = keep_median_export(workdir, results["median_seed"], seeds)
    results["seconds"] = round(time.perf_counter() - run_start, 1)
    if is_primary:
        write_results(workdir, results)
    print(
        f"done: {results['task']} median dev score {results['score']:.2f} over {len(seeds)} "
        f"seed(s) in {results['seconds']:.0f}s; {os.path.join(workdir, RESULTS_FILE)}"
    )
    return results
