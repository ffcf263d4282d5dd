"""The fine-tuning trainer, `run(config, workdir)`: seeds train together under `jax.vmap` (one
step over a seed axis; own head init, dropout and data order) as `vectorize_budget` allows."""

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Sequence
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
from electra_jax.files.run_files import CONFIG_FILE, RESULTS_FILE, MetricsLogger, write_results
from electra_jax.finetune import features, metrics
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.finetune.heads import (
    HEAD_INITS,
    LOSS_REDUCTIONS,
    FinetuneModel,
    finetune_model,
    layerwise_multipliers,
    task_loss,
)
from electra_jax.finetune.readers import read_split, split_path, with_tagging_labels
from electra_jax.finetune.tasks import BUILTIN_TASKS, TaskSpec, get_task
from electra_jax.model.config import ModelConfig, preset
from electra_jax.model.shapes import check_param_shapes
from electra_jax.storage import is_file, make_dirs, make_workdir, write_atomic, write_json
from electra_jax.train.compile_cache import CompileWatch, enable_compile_cache
from electra_jax.train.distributed import initialize_if_multi_host
from electra_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer

Config = ml_collections.ConfigDict


@dataclasses.dataclass
class EvalSet:
    """One dev or test set: model inputs, the examples behind them, and where predictions go."""

    name: str
    arrays: dict[str, np.ndarray]
    windows: list | None  # SQuAD window metadata
    examples: list
    file_name: str  # the median seed's predictions file; "" for none (GLUE dev sets)
    has_labels: bool = True


def validate_config(config: Config) -> None:
    """Fails fast, before any data or compile work, on inconsistent settings."""
    for field in ("seeds", "batch_size", "eval_batch_size", "max_seq_len", "log_every"):
        if config[field] < 1:
            raise UserError(f"config.{field}={config[field]} must be at least 1")
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
             if not data_dir or is_file(split_path(data_dir, spec, stem))]  # fmt: skip
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


def make_steps(model: FinetuneModel, spec: TaskSpec, tx: Any, config: Config) -> tuple:
    def train_step(params: Any, opt_state: Any, batch: dict, key: jax.Array, step: Any) -> tuple:
        rng = jax.random.fold_in(key, step)

        def loss_fn(p: Any) -> jax.Array:
            out = model.apply({"params": p}, batch, deterministic=False, rngs={"dropout": rng})
            s = config.squad
            return task_loss(out, batch, spec.kind, s.answerable_classifier, s.answerable_weight,
                             config.loss_reduction)  # fmt: skip

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    predict = lambda params, batch: model.apply({"params": params}, batch, deterministic=True)
    train = jax.jit(jax.vmap(train_step, in_axes=(0, 0, 0, 0, None)), donate_argnums=(0, 1))
    return train, jax.jit(jax.vmap(predict, in_axes=(0, None)))


def train_group(
    config: Config, tx: Any, train_step: Any, schedule: optax.Schedule, train: dict,
    params_S: Any, seeds: list[int], num_steps: int, logger: MetricsLogger,
) -> Any:  # fmt: skip
    """Trains a group of seeds together; returns their parameters and last-step training losses."""
    B, N = config.batch_size, len(train["input_ids"])
    opt_S = jax.jit(jax.vmap(tx.init))(params_S)
    permute = [np.random.default_rng(s).permutation for s in seeds]  # a fresh order per epoch
    orders = [np.concatenate([p(N) for _ in range(math.ceil(num_steps * B / N))]) for p in permute]
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    t0 = time.perf_counter()
    for step in range(num_steps):
        rows = [order[step * B : (step + 1) * B] for order in orders]
        batch = {k: np.stack([v[r] for r in rows]) for k, v in train.items()}
        params_S, opt_S, loss_S = train_step(params_S, opt_S, batch, keys, step)
        if (step + 1) % config.log_every and step + 1 != num_steps:
            continue
        loss = float(np.mean(jax.device_get(loss_S)))
        if not np.isfinite(loss):
            raise UserError(
                f"non-finite loss at step {step + 1} (seeds {seeds}); lower --config.learning_rate"
            )
        values = {"loss": loss, "learning_rate": float(schedule(step)), "seeds": str(seeds)}
        logger.write(step + 1, values)
        logger.progress(step + 1, values, (step + 1) / max(time.perf_counter() - t0, 1e-9))
    return params_S, np.asarray(jax.device_get(loss_S), np.float64)


def predict_all(predict: Any, params_S: Any, arrays: dict, batch_size: int) -> dict:
    """Model outputs [S, N, ...]; the last batch repeats the last row (one shape, one compile)."""
    N, outs = len(arrays["input_ids"]), []
    for start in range(0, N, batch_size):
        rows = np.minimum(np.arange(start, start + batch_size), N - 1)
        outs.append(jax.device_get(predict(params_S, {k: v[rows] for k, v in arrays.items()})))
    return {k: np.concatenate([o[k] for o in outs], axis=1)[:, :N] for k in outs[0]}


def score_seed(
    config: Config, spec: TaskSpec, eval_set: EvalSet, out: dict[str, np.ndarray],
    tokenizer: Tokenizer,
) -> tuple[dict[str, float] | None, Any]:  # fmt: skip
    """(metrics, None for a test set; GLUE class ids or 0-5 scores, tag ids, or SQuAD (answers,
    nulls))."""
    if spec.kind == "tagging":
        a, preds = eval_set.arrays, out["logits"].argmax(-1)
        return metrics.tagging_scores(a["labels"], preds, a["labels_mask"], spec.labels), preds
    if spec.kind != "span":
        preds = out["predictions"] * 5.0 if spec.kind == "regression" else out["logits"].argmax(-1)
        if not eval_set.has_labels:
            return None, preds
        return metrics.glue_metrics(spec.metric, eval_set.arrays["labels"], preds), preds
    s = config.squad
    answers, nulls, _ = features.decode_answers(
        eval_set.examples, eval_set.windows, out, tokenizer, eval_set.arrays["input_ids"],
        s.max_answer_len, s.n_best,
    )  # fmt: skip
    submitted = answers  # SQuAD 2.0: "" where the null odds exceed the threshold
    if spec.squad_v2:
        submitted = {q: ("" if nulls[q] > s.na_threshold else a) for q, a in answers.items()}
    if not eval_set.has_labels:
        return None, (submitted, nulls)
    # The official scripts' inputs, as the original passes them: the best non-null answers, the
    # null odds and qa_na_threshold (SQuAD 2.0).
    golds = {e.qid: [text for text, _ in e.answers] for e in eval_set.examples}
    scores = metrics.squad_scores(answers, golds, nulls, s.na_threshold, spec.squad_v2,
                                  mrqa=spec.metric == "mrqa")  # fmt: skip
    return {**scores, "score": scores["f1"]}, (submitted, nulls)


def write_glue_submission(
    path: str, spec: TaskSpec, indices: Sequence[str], predictions_N: np.ndarray
) -> None:
    """A leaderboard TSV (`index<TAB>prediction`): labels, or STS-B scores in [0, 5], 3 decimals."""
    if spec.kind == "regression":
        values = [f"{float(v):.3f}" for v in np.clip(predictions_N, 0.0, 5.0)]
    else:
        values = [spec.labels[int(i)] for i in predictions_N]
    rows = [f"{i}\t{v}\n" for i, v in zip(indices, values, strict=True)]
    write_atomic(path, "".join(["index\tprediction\n", *rows]))


def write_predictions(
    directory: str, spec: TaskSpec, eval_sets: Sequence[EvalSet], predictions: dict, chosen: int
) -> list[str]:
    """Writes run `chosen`'s predictions for each set with a `file_name` (GLUE TSV, or SQuAD JSON
    {question id: answer or ""} and for 2.0 its null odds: the official script's inputs)."""
    written = []
    for eval_set in (s for s in eval_sets if s.file_name):
        make_dirs(directory)
        path = os.path.join(directory, eval_set.file_name)
        preds = predictions[eval_set.name][chosen]
        if spec.kind == "span":  # (answers, null odds)
            write_json(path, preds[0])
            if spec.squad_v2:
                write_json(path.replace(".json", "_null_odds.json"), preds[1])
        else:
            write_glue_submission(path, spec, [e.guid for e in eval_set.examples], preds)
        written.append(path)
    return written


def median_summary(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """The median over seeds of every metric but `seed` (the paper reports the median of 10)."""
    return {k: float(np.median([m[k] for m in per_seed])) for k in per_seed[0] if k != "seed"}


def median_seed_index(scores: Sequence[float]) -> int:
    """The run whose score is the (lower) median: its predictions are the submission."""
    return int(np.argsort(np.asarray(scores), kind="stable")[(len(scores) - 1) // 2])


def run(config: Config, workdir: str) -> dict[str, Any]:
    """Fine-tunes `config.seeds` runs on `config.task`; writes results.json and predictions."""
    validate_config(config)
    spec = get_task(config.task)
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
    spec = with_tagging_labels(spec, task_data_dir(config, spec), config.skip_malformed)
    train, eval_sets, skipped_rows = load_task_data(config, spec, tokenizer)
    if is_primary:
        write_json(os.path.join(workdir, CONFIG_FILE), config.to_dict())
    num_train = len(train["input_ids"])
    num_steps = max(1, int(num_train * config.num_epochs / config.batch_size))
    for path, count in skipped_rows.items():
        print(f"data: skipped {count} malformed row(s) in {path}")
    dev_names = [e.name for e in eval_sets if e.has_labels]
    print(f"data: {spec.name}: {num_train} training rows, {num_steps} steps of "
          f"{config.batch_size}; eval sets {dev_names}, "
          f"test sets {[e.name for e in eval_sets if not e.has_labels]}")  # fmt: skip
    model = finetune_model(model_cfg, spec.kind, len(spec.labels), config, jnp.dtype(config.dtype))
    tx, schedule = make_tx(config, num_steps, model_cfg.num_layers)
    train_step, predict = make_steps(model, spec, tx, config)
    seeds = [config.seed + i for i in range(config.seeds)]
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
        jax.eval_shape(lambda: init_seed_params(model, [0], train, None))))  # fmt: skip
    group = config.seeds_per_group or max(1, int(config.vectorize_budget // max(n_params, 1)))
    group = min(group, len(seeds))
    print(f"model: {config.size} ({n_params / 1e6:.2f}M params) from "
          f"{config.init_from or 'random init'}; {len(seeds)} seed(s), {group} at a time under "
          "vmap")  # fmt: skip
    dev_scores: dict[str, list[dict]] = {name: [] for name in dev_names}
    predictions: dict[str, list] = {e.name: [] for e in eval_sets}
    with contextlib.closing(MetricsLogger(workdir, num_steps, is_primary)) as logger:
        for g in range(0, len(seeds), group):
            group_seeds = seeds[g : g + group]
            params_S = init_seed_params(model, group_seeds, train, pretrained)
            params_S, train_loss_S = train_group(
                config, tx, train_step, schedule, train, params_S, group_seeds, num_steps, logger
            )
            for eval_set in eval_sets:
                out_S = predict_all(predict, params_S, eval_set.arrays, config.eval_batch_size)
                for i, seed in enumerate(group_seeds):
                    one = {k: v[i] for k, v in out_S.items()}
                    scores, preds = score_seed(config, spec, eval_set, one, tokenizer)
                    predictions[eval_set.name].append(preds)
                    if scores is not None:
                        row = {"seed": seed, **scores, "train_loss": float(train_loss_S[i])}
                        dev_scores[eval_set.name].append(row)
                        shown = ", ".join(f"{k}={v:.2f}" for k, v in scores.items())
                        print(f"eval: seed {seed} {eval_set.name}: {shown}")
    print(f"compile: {compiles.counts()} (cache {cache_dir})")
    headline = [m["score"] for m in dev_scores[dev_names[0]]]
    chosen = median_seed_index(headline)
    results: dict[str, Any] = {
        "task": spec.name, "size": config.size, "init_from": config.init_from,
        "seeds": seeds, "seeds_per_group": group, "num_train_examples": num_train,
        "num_train_steps": num_steps, "skipped_rows": skipped_rows,
        "dev": {name: {"per_seed": per_seed, "median": median_summary(per_seed)}
                for name, per_seed in dev_scores.items()},
        "score": float(np.median(headline)), "median_seed": seeds[chosen],
        "seconds": round(time.perf_counter() - run_start, 1),
    }  # fmt: skip
    if config.write_predictions and is_primary:  # test sets first, then SQuAD's dev sets
        results["predictions"] = write_predictions(
            os.path.join(workdir, "predictions"), spec,
            sorted(eval_sets, key=lambda e: e.has_labels), predictions, chosen)  # fmt: skip
    if is_primary:
        write_results(workdir, results)
    print(f"done: {spec.name} median dev score {results['score']:.2f} over {len(seeds)} seed(s) "
          f"({[round(s, 2) for s in headline]}) in {results['seconds']:.0f}s; "
          f"{os.path.join(workdir, RESULTS_FILE)}")  # fmt: skip
    return results
