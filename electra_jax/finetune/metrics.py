"""Fine-tuning metrics in numpy: GLUE's (tested against scikit-learn / scipy; 0.0 where undefined,
as scikit-learn's MCC), the GLUE score, SQuAD's official EM / F1 (and MRQA's, the v1.1 script's
with unanswered questions skipped), and the original's tagging span F1 (`tagging_metrics.py`)."""

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
    """The v2.0 script's `compute_f1`: token-overlap F1 (2PR / (P + R), computed as the script
    does, so the floats agree bit for bit); both empty (no answer) 1, one empty 0."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    overlap = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision, recall = 1.0 * overlap / len(pred_tokens), 1.0 * overlap / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def token_f1_v1(prediction: str, gold: str) -> float:
    """The v1.1 script's `f1_score`: as `token_f1`, but 0 whenever nothing overlaps (both empty
    included)."""
    both = normalize_answer(prediction).split() and normalize_answer(gold).split()
    return token_f1(prediction, gold) if both else 0.0


def squad_v1_scores(
    predictions: dict[str, str], golds: dict[str, list[str]], skip_unanswered: bool = False
) -> dict[str, float]:
    """The official v1.1 script (`squad_official_eval_v1.evaluate`): EM / F1 x100, each question
    against its best gold; a question without a prediction scores 0, or (`skip_unanswered`, the
    MRQA script `mrqa_official_eval.evaluate(..., skip_no_answer=True)` as the original calls it:
    same normalization and F1) is left out of the total."""
    best = lambda fn, i: max((fn(predictions[i], g) for g in golds[i]), default=0.0)
    answered = [i for i in golds if i in predictions]
    total = len(answered) if skip_unanswered else len(golds)
    if not total:
        raise ValueError("no question to score: none has a prediction")
    exact = sum(best(exact_match, i) for i in answered)
    f1 = sum(best(token_f1_v1, i) for i in answered)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def squad_v2_scores(
    predictions: dict[str, str], golds: dict[str, list[str]],
    na_probs: dict[str, float] | None = None, na_threshold: float = 1.0,
) -> dict[str, float]:  # fmt: skip
    """The official v2.0 script's output dict: EM / F1 x100 where a question whose no-answer
    probability exceeds `na_threshold` counts as answered "no answer", HasAns_ / NoAns_ splits
    with their totals and, with `na_probs`, `best_exact` / `best_f1` and their thresholds."""
    ids = list(golds)
    if missing := [i for i in ids if i not in predictions]:
        raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[0]!r}")
    has_answer = {i: bool(golds[i]) for i in ids}
    # Golds normalizing to "" are dropped; none left: the only right answer is "".
    kept = {i: [gold for gold in golds[i] if normalize_answer(gold)] or [""] for i in ids}
    raw = {k: {i: max(fn(predictions[i], g) for g in kept[i]) for i in ids}
           for k, fn in (("exact", exact_match), ("f1", token_f1))}  # fmt: skip
    probs = na_probs if na_probs is not None else dict.fromkeys(ids, 0.0)
    drop = lambda i: probs[i] > na_threshold  # predicted "no answer": right iff there is none
    final = {k: {i: float(not has_answer[i]) if drop(i) else v[i] for i in ids}
             for k, v in raw.items()}  # fmt: skip
    out: dict[str, float] = {}
    subsets = [("", ids), ("HasAns_", [i for i in ids if has_answer[i]]),
               ("NoAns_", [i for i in ids if not has_answer[i]])]  # fmt: skip
    for prefix, subset in (s for s in subsets if s[1]):
        for k, v in final.items():
            out[f"{prefix}{k}"] = 100.0 * sum(v[i] for i in subset) / len(subset)
        out[f"{prefix}total"] = len(subset)
    if na_probs is not None:
        for k, v in raw.items():
            out[f"best_{k}"], out[f"best_{k}_thresh"] = best_threshold(
                predictions, v, na_probs, has_answer
            )
    return out


def best_threshold(
    predictions: dict[str, str], raw_scores: dict[str, float], na_probs: dict[str, float],
    has_answer: dict[str, bool],
) -> tuple[float, float]:  # fmt: skip
    """The official `find_best_thresh`: sweep the no-answer threshold over the probabilities in
    ascending order (ties in `na_probs`' order); start from "no answer everywhere"."""
    score = current = float(sum(1 for i in raw_scores if not has_answer[i]))
    best_thresh = 0.0
    for i in sorted(na_probs, key=lambda k: na_probs[k]):
        if i not in raw_scores:
            continue
        # Answerable: its score; unanswerable: -1 if an answer was given, else 0.
        current += raw_scores[i] if has_answer[i] else (-1.0 if predictions[i] else 0.0)
        if current > score:
            score, best_thresh = current, na_probs[i]
    return 100.0 * score / len(raw_scores), float(best_thresh)


def squad_scores(
    predictions: dict[str, str], golds: dict[str, list[str]],
    na_probs: dict[str, float] | None = None, na_threshold: float = 1.0, v2: bool = True,
    mrqa: bool = False,
) -> dict[str, float]:  # fmt: skip
    """What the fine-tuning trainer reports for a SQuAD / MRQA dev set: the v2.0 script's dict
    (SQuAD 2.0: `na_probs` are the null odds, `na_threshold` the original's qa_na_threshold), or
    the v1.1 script's EM / F1 (`mrqa`: the MRQA script's) with `exact` = `exact_match` beside it
    (one key for every version)."""
    if v2:
        return squad_v2_scores(predictions, golds, na_probs, na_threshold)
    scores = squad_v1_scores(predictions, golds, skip_unanswered=mrqa)
    return {**scores, "exact": scores["exact_match"]}


Span = tuple[int, int, str]  # (first word, last word, type)


def span_labels(tags: list[str]) -> list[Span]:
    """The original's `tagging_utils.get_span_labels`: a span opens at B- or S-, or at any tag
    after O, and closes before B-, S- or O; an I- or E- tag never closes one (so `E-X I-X` and
    `I-X I-Y` continue it), and the span's type is its last tag's."""
    spans, last, start = [], "O", -1
    for i, tag in enumerate(tags):
        prefix = None if tag == "O" else tag.split("-")[0]
        if (prefix in ("B", "S") or tag == "O") and last != "O":
            spans.append((start, i - 1, last.split("-")[-1]))
        if prefix in ("B", "S") or last == "O":
            start = i
        last = tag
    if tags and tags[-1] != "O":
        spans.append((start, len(tags) - 1, tags[-1].split("-")[-1]))
    return spans


def bioes_tags(spans: list[Span], length: int) -> list[str]:
    """The original's `get_tags(spans, length, "BIOES")`: the labels its tagging models learn."""
    tags = ["O"] * length
    for start, end, kind in spans:
        tags[start : end + 1] = [f"I-{kind}"] * (end + 1 - start)
        tags[end], tags[start] = f"E-{kind}", f"B-{kind}"
        if start == end:
            tags[start] = f"S-{kind}"
    return tags


def span_f1(labels: list[list[str]], predictions: list[list[str]]) -> dict[str, float]:
    """The original's `EntityLevelF1Scorer`: each sentence's gold and predicted spans as sets,
    micro precision / recall / F1 x100 over all sentences; all 0 when no span is right."""
    correct = predicted = gold = 0
    for gold_tags, predicted_tags in zip(labels, predictions, strict=True):
        gold_spans, predicted_spans = set(span_labels(gold_tags)), set(span_labels(predicted_tags))
        correct += len(gold_spans & predicted_spans)
        gold, predicted = gold + len(gold_spans), predicted + len(predicted_spans)
    if correct == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    p, r = 100.0 * correct / predicted, 100.0 * correct / gold
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r)}


def tagging_scores(
    labels_NxP: np.ndarray, preds_NxP: np.ndarray, mask_NxP: np.ndarray, names: tuple[str, ...]
) -> dict[str, float]:
    """Span F1 of label ids at each sentence's tagged words (the first `sum(mask)` positions, as
    the original's scorer cuts them), ids read as `names`; `score` is the F1."""
    counts = np.rint(np.asarray(mask_NxP, np.float64).sum(-1)).astype(int)
    as_tags = lambda ids_NxP: [
        [names[int(i)] for i in row[:n]] for row, n in zip(ids_NxP, counts, strict=True)
    ]
    scores = span_f1(as_tags(labels_NxP), as_tags(preds_NxP))
    return {**scores, "score": scores["f1"]}
