"""Scoring a fine-tuned seed and writing what it predicted: model outputs over an eval set,
GLUE / tagging / SQuAD metrics, leaderboard TSVs and SQuAD JSON, the median over seeds."""

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from electra_jax.data.tokenizer import Tokenizer
from electra_jax.finetune import features, metrics
from electra_jax.finetune.tasks import TaskSpec
from electra_jax.storage import make_dirs, write_atomic, write_json

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


def predict_all(predict: Any, params_S: Any, arrays: dict, batch_size: int) -> dict:
    """Model outputs [S, N, ...] (a tree: a multi-task model's are per task); the last batch
    repeats the last row (one shape, one compile)."""
    N, outs = len(arrays["input_ids"]), []
    for start in range(0, N, batch_size):
        rows = np.minimum(np.arange(start, start + batch_size), N - 1)
        outs.append(jax.device_get(predict(params_S, {k: v[rows] for k, v in arrays.items()})))
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=1)[:, :N], *outs)


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


def set_results(records: Sequence[dict], spec: TaskSpec, eval_set: EvalSet, field: str) -> list:
    """One set's per-seed `scores` or `predictions`, in seed order, from the groups' records."""
    return [x for r in records for x in r["tasks"][spec.name][eval_set.name][field]]


def task_summary(spec: TaskSpec, eval_sets: Sequence[EvalSet], records: Sequence[dict]) -> dict:
    """One task's dev sets (each seed's metrics and train_loss; medians), its score (the median
    of the first dev set's) and median seed."""
    seeds = [seed for r in records for seed in r["seeds"]]
    losses = [loss for r in records for loss in r["train_loss"]]
    dev = {}
    for eval_set in (e for e in eval_sets if e.has_labels):
        scores = set_results(records, spec, eval_set, "scores")
        per_seed = [{"seed": seed, **sc, "train_loss": loss}
                    for seed, sc, loss in zip(seeds, scores, losses, strict=True)]  # fmt: skip
        dev[eval_set.name] = {"per_seed": per_seed, "median": median_summary(per_seed)}
    headline = [m["score"] for m in next(iter(dev.values()))["per_seed"]]
    return {"dev": dev, "score": float(np.median(headline)),
            "median_seed": seeds[median_seed_index(headline)]}  # fmt: skip


def summarize(
    specs: Sequence[TaskSpec], eval_sets: Sequence[Sequence[EvalSet]], records: Sequence[dict]
) -> dict[str, Any]:
    """results.json's scores: one task's as they are; several tasks' under `tasks`, with `score`
    their mean and `median_seed` the seed whose mean over the tasks is the median."""
    seeds = [seed for r in records for seed in r["seeds"]]
    tasks = {
        s.name: task_summary(s, sets, records) for s, sets in zip(specs, eval_sets, strict=True)
    }
    if len(specs) == 1:
        return {"task": specs[0].name, "seeds": seeds, **tasks[specs[0].name]}
    by_seed = [[m["score"] for m in next(iter(t["dev"].values()))["per_seed"]]
               for t in tasks.values()]  # fmt: skip
    chosen = median_seed_index(np.mean(by_seed, axis=0))
    return {"task": "+".join(tasks), "seeds": seeds, "tasks": tasks,
            "score": float(np.mean([t["score"] for t in tasks.values()])),
            "median_seed": seeds[chosen]}  # fmt: skip


def write_all_predictions(
    directory: str, specs: Sequence[TaskSpec], eval_sets: Sequence[Sequence[EvalSet]],
    records: Sequence[dict], results: dict,
) -> list[str]:  # fmt: skip
    """Each task's prediction files from its median seed (test sets first, then SQuAD's dev)."""
    seeds, written = results["seeds"], []
    for spec, sets in zip(specs, eval_sets, strict=True):
        summary = results["tasks"][spec.name] if "tasks" in results else results
        ordered = sorted(sets, key=lambda e: e.has_labels)
        predictions = {e.name: set_results(records, spec, e, "predictions") for e in ordered}
        chosen = seeds.index(summary["median_seed"])
        written += write_predictions(directory, spec, ordered, predictions, chosen)
    return written
