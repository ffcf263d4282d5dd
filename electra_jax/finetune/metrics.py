"""Fine-tuning metrics in numpy: GLUE's (tested against scikit-learn / scipy; 0.0 where undefined,
as scikit-learn's MCC), the GLUE score, and SQuAD's official EM / F1."""

import collections
import re
import string

import numpy as np


def accuracy(labels_N: np.ndarray, preds_N: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels_N) == np.asarray(preds_N)))


def binary_f1(labels_N: np.ndarray, preds_N: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (MRPC, QQP: label 1 = paraphrase / duplicate)."""
    labels_N, preds_N = np.asarray(labels_N) == positive, np.asarray(preds_N) == positive
    tp = float(np.sum(labels_N & preds_N))
    denominator = float(np.sum(labels_N) + np.sum(preds_N))
    return 2.0 * tp / denominator if denominator else 0.0


def matthews_corrcoef(labels_N: np.ndarray, preds_N: np.ndarray) -> float:
    """Binary or multi-class MCC (Gorodkin's form, as scikit-learn computes it)."""
    labels_N, preds_N = np.asarray(labels_N), np.asarray(preds_N)
    classes = np.union1d(labels_N, preds_N)
    count_K = lambda x_N: (x_N[:, None] == classes).sum(0).astype(np.float64)
    true_K, pred_K = count_K(labels_N), count_K(preds_N)
    n, correct = float(len(labels_N)), float(np.sum(labels_N == preds_N))
    cov_pp, cov_tt = n * n - pred_K @ pred_K, n * n - true_K @ true_K
    if cov_pp * cov_tt == 0.0:
        return 0.0
    return float((correct * n - true_K @ pred_K) / np.sqrt(cov_tt * cov_pp))


def pearson(x_N: np.ndarray, y_N: np.ndarray) -> float:
    x_N = np.asarray(x_N, np.float64) - np.mean(x_N)
    y_N = np.asarray(y_N, np.float64) - np.mean(y_N)
    denominator = np.sqrt(np.sum(x_N * x_N) * np.sum(y_N * y_N))
    return float(np.sum(x_N * y_N) / denominator) if denominator else 0.0


def average_ranks(x_N: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (scipy.stats.rankdata's 'average')."""
    _, group_N, counts = np.unique(np.asarray(x_N), return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[group_N.reshape(-1)]


def spearman(x_N: np.ndarray, y_N: np.ndarray) -> float:
    return pearson(average_ranks(x_N), average_ranks(y_N))


# Each GLUE metric's measures and its headline (the paper's choice per task).
GLUE_METRICS = {
    "mcc": ({"mcc": matthews_corrcoef}, "mcc"),
    "correlation": ({"pearson": pearson, "spearman": spearman}, "spearman"),
    "accuracy_f1": ({"accuracy": accuracy, "f1": binary_f1}, "accuracy"),
    "accuracy": ({"accuracy": accuracy}, "accuracy"),
}


def glue_metrics(metric: str, labels_N: np.ndarray, preds_N: np.ndarray) -> dict[str, float]:
    """A task's measures x100, the headline also under `score`."""
    if metric not in GLUE_METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    measures, headline = GLUE_METRICS[metric]
    out = {k: 100.0 * fn(labels_N, preds_N) for k, fn in measures.items()}
    return {**out, "score": out[headline]}


# The GLUE score (docs/spec.md §5.7): the mean of these tasks' headlines above (MNLI matched).
GLUE_SCORE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")


def glue_score(scores: dict[str, float]) -> float:
    if missing := [t for t in GLUE_SCORE_TASKS if t not in scores]:
        raise ValueError(f"GLUE score needs all of {GLUE_SCORE_TASKS}; missing {missing}")
    return float(np.mean([scores[t] for t in GLUE_SCORE_TASKS]))


def normalize_answer(text: str) -> str:
    """The official SQuAD normalization: lower, drop punctuation, articles, extra spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 = 2 x overlap / (|pred| + |gold|); both empty (no answer) 1, one empty 0."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    overlap = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    return 2.0 * sum(overlap.values()) / (len(pred_tokens) + len(gold_tokens))


def squad_scores(
    predictions: dict[str, str], golds: dict[str, list[str]],
    na_probs: dict[str, float] | None = None, na_threshold: float = 1.0,
) -> dict[str, float]:  # fmt: skip
    """EM / F1 x100 as the official v1.1 / v2.0 scripts: with `na_probs`, "" where the no-answer
    probability exceeds `na_threshold`, and `best_exact` / `best_f1` at the best threshold."""
    ids = list(golds)
    if missing := [i for i in ids if i not in predictions]:
        raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[0]!r}")
    # Each against its best gold; golds normalizing to "" are dropped, none left = no answer.
    kept = {i: [gold for gold in golds[i] if normalize_answer(gold)] or [""] for i in ids}
    score = lambda fn, preds: {i: max(fn(preds[i], gold) for gold in kept[i]) for i in ids}
    drop = lambda i: na_probs is not None and na_probs[i] > na_threshold
    final = {i: "" if drop(i) else predictions[i] for i in ids}
    per_question = {"exact": score(exact_match, final), "f1": score(token_f1, final)}
    out = {k: 100.0 * np.mean(list(v.values())) for k, v in per_question.items()}
    has_answer, no_answer = [i for i in ids if golds[i]], [i for i in ids if not golds[i]]
    if no_answer:
        for name, subset in (("HasAns", has_answer), ("NoAns", no_answer)):
            for k, v in per_question.items():
                out[f"{name}_{k}"] = 100.0 * np.mean([v[i] for i in subset]) if subset else 0.0
    if na_probs is not None:
        for k, fn in (("exact", exact_match), ("f1", token_f1)):
            best = best_threshold(predictions, score(fn, predictions), na_probs, golds)
            out[f"best_{k}"], out[f"best_{k}_thresh"] = best
    return {k: float(v) for k, v in out.items()}


def best_threshold(
    predictions: dict[str, str], raw_scores: dict[str, float], na_probs: dict[str, float],
    golds: dict[str, list[str]],
) -> tuple[float, float]:  # fmt: skip
    """The official `find_best_thresh`: sweep the no-answer threshold over the sorted probs."""
    score = current = float(sum(1 for i in golds if not golds[i]))
    best_thresh = 0.0
    for i in sorted(golds, key=lambda k: na_probs[k]):
        # Answerable: its score; unanswerable: -1 if an answer was given, else 0.
        current += raw_scores[i] if golds[i] else (-1.0 if predictions[i] else 0.0)
        if current > score:
            score, best_thresh = current, na_probs[i]
    return 100.0 * score / len(golds), float(best_thresh)
