"""The median seed and its files: GLUE leaderboard TSVs (`index<TAB>prediction`, label strings,
STS-B scores in [0, 5]) and SQuAD predictions JSON {question id: answer, "" for none} with, for
2.0, a null-odds file: the official evaluation script's inputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from electra_jax.files.storage import write_json
from electra_jax.finetune.tasks import TaskSpec


def write_glue_submission(
    path: str, spec: TaskSpec, indices: Sequence[str], predictions_N: np.ndarray
) -> None:
    """Class ids as label strings; STS-B scores clipped to [0, 5] with three decimals."""
    if spec.kind == "regression":
        values = [f"{float(v):.3f}" for v in np.clip(predictions_N, 0.0, 5.0)]
    else:
        values = [spec.labels[int(i)] for i in predictions_N]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("index\tprediction\n")
        f.writelines(f"{i}\t{v}\n" for i, v in zip(indices, values, strict=True))
    os.replace(tmp, path)


def write_predictions(
    directory: str, spec: TaskSpec, eval_sets: Sequence[Any], predictions: dict, chosen: int
) -> list[str]:
    """Writes run `chosen`'s predictions for each set with a `file_name`; returns the paths."""
    written = []
    for eval_set in (s for s in eval_sets if s.file_name):
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, eval_set.file_name)
        preds = predictions[eval_set.name][chosen]
        if spec.kind == "span":
            answers, nulls = preds
            write_json(path, answers)
            if spec.squad_v2:
                write_json(path.replace(".json", "_null_odds.json"), nulls)
        else:
            write_glue_submission(path, spec, [e.guid for e in eval_set.examples], preds)
        written.append(path)
    return written


def median_summary(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """The median over seeds of every metric but `seed` (the paper reports the median of 10)."""
    return {k: float(np.median([m[k] for m in per_seed])) for k in per_seed[0] if k != "seed"}


def median_seed_index(scores: Sequence[float]) -> int:
    """The run whose score is the (lower) median: its predictions are the submission."""
    order = np.argsort(np.asarray(scores), kind="stable")
    return int(order[(len(scores) - 1) // 2])
