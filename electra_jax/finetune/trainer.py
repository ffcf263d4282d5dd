"""The fine-tuning trainer: `run(config, workdir)`, called by the entry point, tests, notebooks.

Banner sections: setup, model and tokeniser, input, update, seeds (train + evaluate), outputs.
Several seeds train together under `jax.vmap` (one compiled step over a leading seed axis: each
seed has its own head initialisation, dropout and data order) when their parameters fit
`vectorize_budget`; otherwise groups run one after another. Every seed starts from the same
pre-trained encoder.
"""

from __future__ import annotations

import dataclasses
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

from electra_jax.data.tokenizer import Tokenizer
from electra_jax.errors import UserError
from electra_jax.files.run_files import MetricsLogger
from electra_jax.files.storage import make_workdir
from electra_jax.finetune import metrics as ft_metrics
from electra_jax.finetune import outputs as ft_outputs
from electra_jax.finetune.features import double_unordered, encode_examples
from electra_jax.finetune.heads import FinetuneModel, task_loss
from electra_jax.finetune.layerwise import layerwise_multipliers
from electra_jax.finetune.readers import read_split, split_path
from electra_jax.finetune.squad import decode_answers, featurize
from electra_jax.finetune.tasks import BUILTIN_TASKS, TaskSpec, get_task
from electra_jax.model.config import ModelConfig, preset
from electra_jax.model.shapes import check_param_shapes
from electra_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer

RESULTS_FILE = "results.json"


@dataclasses.dataclass
class EvalSet:
    """One dev or test set: model inputs, the examples behind them, and where predictions go."""

    name: str
    arrays: dict[str, np.ndarray]
    examples: list
    windows: list | None = None  # SQuAD window metadata
    leaderboard_file: str = ""  # test sets only
    has_labels: bool = True


@dataclasses.dataclass
class TaskData:
    train: dict[str, np.ndarray]
    evals: list[EvalSet]
    tests: list[EvalSet]
    skipped_rows: dict[str, int]


# ----------------------------------------------------------------------------- setup


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Fails fast, before any data or compile work, on inconsistent settings."""
    positive = ("seeds", "batch_size", "eval_batch_size", "max_seq_len", "log_every")
    for field in positive:
        if config[field] < 1:
            raise UserError(f"config.{field}={config[field]} must be at least 1")
    if config.num_epochs <= 0:
        raise UserError(f"config.num_epochs={config.num_epochs} must be positive")
    if not 0.0 < config.layerwise_lr_decay <= 1.0:
        raise UserError(f"config.layerwise_lr_decay={config.layerwise_lr_decay} must be in (0, 1]")
    if config.dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"config.dtype={config.dtype!r}; expected float32, bfloat16 or float16")


# ----------------------------------------------------------------------------- model, tokeniser


def resolve_init_dir(path: str) -> str:
    """An exported model dir, or a pre-training workdir (its `export/`)."""
    if not os.path.isfile(os.path.join(path, "model.json")) and os.path.isfile(
        os.path.join(path, "export", "model.json")
    ):
        return os.path.join(path, "export")
    return path


def load_encoder(config: ml_collections.ConfigDict) -> tuple[ModelConfig, dict | None, Tokenizer]:
    """(model config, pre-trained params or None, the checkpoint's own tokeniser)."""
    from electra_jax.files.model_io import load_model

    if config.init_from:
        directory = resolve_init_dir(config.init_from)
        model_cfg, params, tokenizer = load_model(directory)
        if tokenizer is None:
            raise UserError(
                f"init_from {directory} has no tokeniser; re-export it with its vocab.txt"
            )
        if not model_cfg.electra_objective and "generator" in params:
            # A BERT-baseline run: its one full-size masked-LM tower is the encoder to fine-tune.
            params = {**params, "discriminator": params["generator"]}
            model_cfg = model_cfg.replace(electra_objective=True)
        missing = [g for g in ("embeddings", "discriminator") if g not in params]
        if missing:
            raise UserError(f"init_from {directory} lacks parameter group(s) {missing}")
        check_param_shapes(model_cfg, params, f"init_from {directory}")  # before any compile
        return model_cfg, params, tokenizer
    tokenizer = random_init_tokenizer(config.vocab_dir)
    try:
        model_cfg = preset(config.size, vocab_size=tokenizer.vocab_size)
    except ValueError as e:
        raise UserError(str(e)) from e
    return model_cfg, None, tokenizer


def random_init_tokenizer(vocab_dir: str) -> Tokenizer:
    """A prepared dataset dir (its meta.json settings), a dir with vocab.txt, or the built-in."""
    from electra_jax.data.loader import read_meta
    from electra_jax.data.tokenizer import WordPieceTokenizer, load_tokenizer

    if not vocab_dir:
        from electra_jax.data.dataset import ensure_builtin_dataset

        vocab_dir = ensure_builtin_dataset(vocab_size=8192, max_seq_len=128)
    if os.path.isfile(os.path.join(vocab_dir, "meta.json")):
        return load_tokenizer(vocab_dir, read_meta(vocab_dir)["tokenizer"])
    return WordPieceTokenizer(os.path.join(vocab_dir, "vocab.txt"))


# ----------------------------------------------------------------------------- input


def resolve_data_dir(config: ml_collections.ConfigDict, spec: TaskSpec) -> str:
    if config.data_dir or spec.name not in BUILTIN_TASKS:
        return config.data_dir
    from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks

    b = config.builtin
    return ensure_builtin_tasks(train=b.train, dev=b.dev, test=b.test)


def featurise(
    config: ml_collections.ConfigDict, spec: TaskSpec, examples: list, tokenizer: Tokenizer,
    is_training: bool,
) -> tuple[dict[str, np.ndarray], list | None]:  # fmt: skip
    if spec.kind == "span":
        s = config.squad
        return featurize(examples, tokenizer, config.max_seq_len, s.doc_stride,
                         s.max_query_len, is_training)  # fmt: skip
    if is_training and spec.double_unordered:
        examples = double_unordered(examples)
    arrays = encode_examples(examples, tokenizer, config.max_seq_len, spec.kind == "regression")
    return arrays, None


def load_task_data(
    config: ml_collections.ConfigDict, spec: TaskSpec, tokenizer: Tokenizer
) -> TaskData:
    """Reads, checks and featurises train, dev and (when present) test sets."""
    data_dir = resolve_data_dir(config, spec)
    skipped: dict[str, int] = {}

    def read(stem: str, is_test: bool = False) -> list:
        result = read_split(data_dir, spec, stem, is_test, config.skip_malformed)
        if result.skipped:
            skipped[split_path(data_dir, spec, stem) if data_dir else stem] = result.skipped
        return result.examples

    train_examples = read("train")
    if config.max_train_examples > 0:
        train_examples = train_examples[: config.max_train_examples]
    train, _ = featurise(config, spec, train_examples, tokenizer, is_training=True)
    evals = []
    for name, stem in spec.dev_sets:
        examples = read(stem)
        arrays, windows = featurise(config, spec, examples, tokenizer, is_training=False)
        evals.append(EvalSet(name, arrays, examples, windows))
    tests = []
    for name, stem, leaderboard in spec.test_sets:
        if data_dir and not os.path.isfile(split_path(data_dir, spec, stem)):
            continue  # test files are optional: no submission without them
        examples = read(stem, is_test=True)
        arrays, windows = featurise(config, spec, examples, tokenizer, is_training=False)
        tests.append(EvalSet(name, arrays, examples, windows, leaderboard, has_labels=False))
    return TaskData(train, evals, tests, skipped)


def seed_orders(seed: int, num_examples: int, num_indices: int) -> np.ndarray:
    """The data order of one seed: epochs of fresh permutations, concatenated."""
    rng = np.random.default_rng(seed)
    epochs = math.ceil(num_indices / num_examples)
    return np.concatenate([rng.permutation(num_examples) for _ in range(epochs)])[:num_indices]


# ----------------------------------------------------------------------------- update


def make_model(config: ml_collections.ConfigDict, spec: TaskSpec, model_cfg: ModelConfig):
    return FinetuneModel(
        model_cfg, spec.kind, num_labels=max(spec.num_labels, 1), squad_v2=spec.squad_v2,
        beam_size=config.squad.n_best, dtype=jnp.dtype(config.dtype),
    )  # fmt: skip


def make_tx(
    config: ml_collections.ConfigDict, num_steps: int, num_layers: int
) -> tuple[optax.GradientTransformation, OptimizerConfig]:
    """The original's AdamW and schedule with layer-wise LR decay (optimizer.make_optimizer)."""
    o = config.optimizer
    opt_cfg = OptimizerConfig(
        learning_rate=config.learning_rate, num_train_steps=num_steps,
        warmup_steps=int(num_steps * config.warmup_proportion), weight_decay=config.weight_decay,
        b1=o.b1, b2=o.b2, eps=o.eps, clip_norm=o.clip_norm or None,
        bias_correction=o.bias_correction, schedule=o.schedule,
    )  # fmt: skip
    decay, fix = config.layerwise_lr_decay, config.layerwise_fix
    scale = lambda tree: layerwise_multipliers(tree, num_layers, decay, fix)  # noqa: E731
    return make_optimizer(opt_cfg, lr_scale=scale), opt_cfg


def init_seed_params(
    model: FinetuneModel, seeds: list[int], example: dict[str, np.ndarray],
    pretrained: dict | None,
) -> Any:  # fmt: skip
    """Parameters with a leading seed axis: fresh heads per seed, the shared pre-trained encoder."""
    dummy = {k: jnp.asarray(v[:2]) for k, v in example.items()}

    def init_one(rng: jax.Array) -> Any:
        return nn.unbox(model.init({"params": rng}, dummy, deterministic=True)["params"])

    rngs = jnp.stack([jax.random.key(s) for s in seeds])
    params_S = jax.jit(jax.vmap(init_one))(rngs)
    if pretrained is None:
        return params_S
    encoder = dict(params_S["electra"])
    for group in encoder:
        if group not in pretrained:
            raise UserError(f"init_from lacks parameter group {group!r} that the encoder needs")
        source = jax.tree.map(np.shape, pretrained[group])
        target = jax.tree.map(lambda x: x.shape[1:], encoder[group])
        if source != target:
            raise UserError(f"init_from: parameter group {group!r} has other shapes than the model")
        encoder[group] = jax.tree.map(
            lambda x, like: jnp.broadcast_to(jnp.asarray(x, like.dtype), like.shape),
            pretrained[group], encoder[group],
        )  # fmt: skip
    return {**params_S, "electra": encoder}


def make_steps(model: FinetuneModel, spec: TaskSpec, tx: Any, config: ml_collections.ConfigDict):
    """Jitted train and predict functions over a leading seed axis."""

    def train_step(params: Any, opt_state: Any, batch: dict, key: jax.Array, step: Any) -> tuple:
        rng = jax.random.fold_in(key, step)

        def loss_fn(p: Any) -> jax.Array:
            out = model.apply({"params": p}, batch, deterministic=False, rngs={"dropout": rng})
            return task_loss(out, batch, spec.kind, spec.squad_v2,
                             config.squad.answerable_weight)  # fmt: skip

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def predict(params: Any, batch: dict) -> dict:
        return model.apply({"params": params}, batch, deterministic=True)

    train = jax.jit(jax.vmap(train_step, in_axes=(0, 0, 0, 0, None)), donate_argnums=(0, 1))
    return train, jax.jit(jax.vmap(predict, in_axes=(0, None)))


def train_group(
    config: ml_collections.ConfigDict, tx: Any, train_step: Any, schedule: Any,
    train: dict[str, np.ndarray], params_S: Any, seeds: list[int], num_steps: int,
    logger: MetricsLogger,
) -> Any:  # fmt: skip
    """Trains one group of seeds together (a leading seed axis); returns their parameters."""
    B = config.batch_size
    num_train = len(train["input_ids"])
    opt_S = jax.jit(jax.vmap(tx.init))(params_S)
    orders = [seed_orders(s, num_train, num_steps * B) for s in seeds]
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
    return params_S


# ----------------------------------------------------------------------------- evaluation


def predict_all(
    predict: Any, params_S: Any, arrays: dict, batch_size: int
) -> dict[str, np.ndarray]:
    """Model outputs [S, N, ...] for every row; the last batch is padded (one compile)."""
    N = len(arrays["input_ids"])
    chunks: list[dict] = []
    for start in range(0, N, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in arrays.items()}
        n = len(batch["input_ids"])
        if n < batch_size:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)])
                     for k, v in batch.items()}  # fmt: skip
        out = jax.device_get(predict(params_S, batch))
        chunks.append({k: v[:, :n] for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}


def point_predictions(spec: TaskSpec, out: dict[str, np.ndarray]) -> np.ndarray:
    """One seed's GLUE predictions: class ids, or STS-B scores on the 0-5 scale."""
    if spec.kind == "regression":
        return out["predictions"] * 5.0
    return np.argmax(out["logits"], axis=-1)


def score_seed(
    config: ml_collections.ConfigDict, spec: TaskSpec, eval_set: EvalSet,
    out: dict[str, np.ndarray], tokenizer: Tokenizer,
) -> tuple[dict[str, float] | None, Any]:  # fmt: skip
    """(metrics or None for a test set, predictions) of one seed on one set."""
    if spec.kind != "span":
        preds = point_predictions(spec, out)
        if not eval_set.has_labels:
            return None, preds
        return ft_metrics.glue_metrics(spec.metric, eval_set.arrays["labels"], preds), preds
    s = config.squad
    answers, nulls, _ = decode_answers(
        eval_set.examples, eval_set.windows, out, tokenizer, eval_set.arrays["input_ids"],
        s.max_answer_len, s.n_best,
    )  # fmt: skip
    if spec.squad_v2:
        answers = {q: ("" if nulls[q] > s.na_threshold else a) for q, a in answers.items()}
    if not eval_set.has_labels:
        return None, (answers, nulls)
    golds = {e.qid: [text for text, _ in e.answers] for e in eval_set.examples}
    scores = ft_metrics.squad_scores(answers, golds, nulls if spec.squad_v2 else None, float("inf"))
    return {**scores, "score": scores["f1"]}, (answers, nulls)


# ----------------------------------------------------------------------------- run


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Fine-tunes `config.seeds` runs on `config.task`; writes results.json and predictions."""
    validate_config(config)
    spec = get_task(config.task)
    make_workdir(workdir)  # config.json is written once the inputs are checked
    run_start = time.perf_counter()

    # ---- model and tokeniser
    model_cfg, pretrained, tokenizer = load_encoder(config)
    if config.max_seq_len > model_cfg.max_position_embeddings:
        raise UserError(
            f"max_seq_len={config.max_seq_len} exceeds the model's max_position_embeddings="
            f"{model_cfg.max_position_embeddings}; lower --config.max_seq_len"
        )

    # ---- input
    data = load_task_data(config, spec, tokenizer)
    ft_outputs.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    num_train = len(data.train["input_ids"])
    num_steps = max(1, int(num_train * config.num_epochs / config.batch_size))
    for path, count in data.skipped_rows.items():
        print(f"data: skipped {count} malformed row(s) in {path}")
    print(f"data: {spec.name}: {num_train} training rows, {num_steps} steps of "
          f"{config.batch_size}; eval sets {[e.name for e in data.evals]}, "
          f"test sets {[t.name for t in data.tests]}")  # fmt: skip

    # ---- update
    model = make_model(config, spec, model_cfg)
    tx, opt_cfg = make_tx(config, num_steps, model_cfg.num_layers)
    schedule = learning_rate_schedule(opt_cfg)
    train_step, predict = make_steps(model, spec, tx, config)
    seeds = [config.seed + i for i in range(config.seeds)]
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
        jax.eval_shape(lambda: init_seed_params(model, [0], data.train, None))))  # fmt: skip
    group = config.seeds_per_group or max(1, int(config.vectorize_budget // max(n_params, 1)))
    group = min(group, len(seeds))
    init_note = config.init_from or "random init"
    print(f"model: {config.size} ({n_params / 1e6:.2f}M params) from {init_note}; "
          f"{len(seeds)} seed(s), {group} at a time under vmap")  # fmt: skip

    # ---- seeds: train, then evaluate every dev and test set
    logger = MetricsLogger(workdir, num_steps)
    dev_scores: dict[str, list[dict]] = {e.name: [] for e in data.evals}
    predictions: dict[str, list] = {e.name: [] for e in data.evals + data.tests}
    try:
        for g in range(0, len(seeds), group):
            group_seeds = seeds[g : g + group]
            params_S = init_seed_params(model, group_seeds, data.train, pretrained)
            params_S = train_group(config, tx, train_step, schedule, data.train, params_S,
                                   group_seeds, num_steps, logger)  # fmt: skip
            for eval_set in data.evals + data.tests:
                out_S = predict_all(predict, params_S, eval_set.arrays, config.eval_batch_size)
                for i, seed in enumerate(group_seeds):
                    one = {k: v[i] for k, v in out_S.items()}
                    scores, preds = score_seed(config, spec, eval_set, one, tokenizer)
                    predictions[eval_set.name].append(preds)
                    if scores is None:
                        continue
                    dev_scores[eval_set.name].append({"seed": seed, **scores})
                    shown = ", ".join(f"{k}={v:.2f}" for k, v in scores.items())
                    print(f"eval: seed {seed} {eval_set.name}: {shown}")
    finally:
        logger.close()

    # ---- outputs: results.json (per seed + median) and the median seed's predictions
    first = data.evals[0].name
    headline = [m["score"] for m in dev_scores[first]]
    chosen = ft_outputs.median_seed_index(headline)
    results: dict[str, Any] = {
        "task": spec.name, "size": config.size, "init_from": config.init_from,
        "seeds": seeds, "seeds_per_group": group, "num_train_examples": num_train,
        "num_train_steps": num_steps, "skipped_rows": data.skipped_rows,
        "dev": {name: {"per_seed": per_seed, "median": median_of(per_seed)}
                for name, per_seed in dev_scores.items()},
        "score": float(np.median(headline)), "median_seed": seeds[chosen],
        "seconds": round(time.perf_counter() - run_start, 1),
    }  # fmt: skip
    if config.write_predictions:
        results["predictions"] = write_predictions(workdir, spec, data, predictions, chosen)
    ft_outputs.write_json(os.path.join(workdir, RESULTS_FILE), results)
    print(f"done: {spec.name} median dev score {results['score']:.2f} over {len(seeds)} seed(s) "
          f"({[round(s, 2) for s in headline]}) in {results['seconds']:.0f}s; "
          f"{os.path.join(workdir, RESULTS_FILE)}")  # fmt: skip
    return results


def median_of(per_seed: list[dict]) -> dict[str, float]:
    return ft_outputs.median_summary(
        [{k: v for k, v in m.items() if k != "seed"} for m in per_seed]
    )


def write_predictions(
    workdir: str, spec: TaskSpec, data: TaskData, predictions: dict, chosen: int
) -> list[str]:
    """Files of the median seed: GLUE leaderboard TSVs for test sets; SQuAD predictions JSON
    (and null odds for 2.0) for dev and test sets, the official evaluation script's input."""
    written = []
    directory = os.path.join(workdir, "predictions")
    sets = [(t, t.leaderboard_file) for t in data.tests]
    if spec.kind == "span":
        sets += [(e, f"{e.name}_predictions.json") for e in data.evals]
    for test, file_name in sets:
        preds = predictions[test.name][chosen]
        path = os.path.join(directory, file_name)
        if spec.kind == "span":
            answers, nulls = preds
            ft_outputs.write_json(path, answers)
            if spec.squad_v2:
                ft_outputs.write_json(path.replace(".json", "_null_odds.json"), nulls)
        else:
            ft_outputs.write_glue_submission(path, spec, [e.guid for e in test.examples], preds)
        written.append(path)
    return written
