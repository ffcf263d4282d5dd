"""Prediction files: GLUE leaderboard submissions and SQuAD predictions JSON, plus results.json.

GLUE's server wants one `<Task>.tsv` per test set (CoLA.tsv, SST-2.tsv, MRPC.tsv, STS-B.tsv,
QQP.tsv, MNLI-m.tsv, MNLI-mm.tsv, QNLI.tsv, RTE.tsv, WNLI.tsv) with a header `index\tprediction`
and label strings (`entailment`, `not_entailment`, `0` / `1`, STS-B scores in [0, 5]). SQuAD's
is a JSON object {question id: answer text} ("" for no answer), plus a null-odds file for 2.0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from electra_jax.finetune.tasks import TaskSpec


def write_json(path: str, value: Any) -> None:
    """Writes JSON atomically (a temporary file renamed over `path`)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def glue_prediction_strings(spec: TaskSpec, predictions_N: np.ndarray) -> list[str]:
    """Class ids -> label strings; STS-B scores clipped to [0, 5] with three decimals."""
    if spec.kind == "regression":
        return [f"{float(v):.3f}" for v in np.clip(predictions_N, 0.0, 5.0)]
    return [spec.labels[int(i)] for i in predictions_N]


def write_glue_submission(
    path: str, spec: TaskSpec, indices: Sequence[str], predictions_N: np.ndarray
) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("index\tprediction\n")
        for index, value in zip(indices, glue_prediction_strings(spec, predictions_N), strict=True):
            f.write(f"{index}\t{value}\n")
    os.replace(tmp, path)


def median_summary(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """The median over seeds of every metric (the paper reports the median of 10 runs)."""
    return {k: float(np.median([m[k] for m in per_seed])) for k in per_seed[0]}


def median_seed_index(scores: Sequence[float]) -> int:
    """The run whose score is the (lower) median: its predictions are the submission."""
    order = np.argsort(np.asarray(scores), kind="stable")
    return int(order[(len(scores) - 1) // 2])
