"""Fine-tuning metrics: equal to scikit-learn / scipy on random inputs; SQuAD by hand."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from electra_jax.finetune import metrics as fm


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    labels, preds = rng.integers(0, 2, n), rng.integers(0, 2, n)
    assert fm.accuracy(labels, preds) == pytest.approx(skm.accuracy_score(labels, preds))
    assert fm.binary_f1(labels, preds) == pytest.approx(skm.f1_score(labels, preds))
    assert fm.matthews_corrcoef(labels, preds) == pytest.approx(
        skm.matthews_corrcoef(labels, preds)
    )
    labels3, preds3 = rng.integers(0, 3, n), rng.integers(0, 3, n)
    assert fm.matthews_corrcoef(labels3, preds3) == pytest.approx(
        skm.matthews_corrcoef(labels3, preds3)
    )


def test_degenerate_classification_inputs_match_sklearn():
    labels, constant = np.array([0, 1, 1, 0]), np.zeros(4, int)
    assert fm.matthews_corrcoef(labels, constant) == skm.matthews_corrcoef(labels, constant) == 0.0
    assert fm.binary_f1(constant, constant) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_correlations_equal_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 200))
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    assert fm.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert fm.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    # STS-B gold scores are coarse: ties everywhere.
    xt, yt = np.round(rng.uniform(0, 5, n) * 2) / 2, np.round(rng.uniform(0, 5, n))
    assert fm.spearman(xt, yt) == pytest.approx(stats.spearmanr(xt, yt)[0])
    assert np.allclose(fm.average_ranks(xt), stats.rankdata(xt))


def test_glue_metrics_headline_and_scale():
    out = fm.glue_metrics("accuracy_f1", np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    assert out["accuracy"] == pytest.approx(75.0) and out["score"] == out["accuracy"]
    assert out["f1"] == pytest.approx(100 * 2 * 2 / (3 + 2))
    sts = fm.glue_metrics("correlation", np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4]))
    assert sts["score"] == sts["spearman"] == pytest.approx(80.0)


def test_glue_score_is_the_mean_of_eight_tasks_without_wnli():
    scores = {t: float(i) for i, t in enumerate(fm.GLUE_SCORE_TASKS)}
    assert fm.glue_score({**scores, "wnli": 1000.0}) == pytest.approx(np.mean(range(8)))
    with pytest.raises(ValueError, match="rte"):
        fm.glue_score({k: v for k, v in scores.items() if k != "rte"})


# --------------------------------------------------------------------------- SQuAD


def test_squad_normalisation_and_token_f1_by_hand():
    assert fm.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert fm.exact_match("the Denver Broncos", "Denver Broncos.") == 1.0
    # pred {denver, broncos, won}, gold {broncos}: P = 1/3, R = 1 -> F1 = 0.5
    assert fm.token_f1("Denver Broncos won", "Broncos") == pytest.approx(0.5)
    # repeated tokens count once per match: pred {a:2 -> "x x y"}, gold "x y y": common x1 y1
    assert fm.token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert fm.token_f1("", "") == 1.0 and fm.token_f1("x", "") == 0.0


def test_squad_scores_max_over_golds_and_no_answer_by_hand():
    golds = {
        "q1": ["Denver Broncos", "Broncos"],  # exact against the second gold
        "q2": ["Santa Clara, California"],  # partial: pred "Santa Clara" P=1 R=2/3 F1=0.8
        "q3": [],  # no answer, predicted none: EM 1, F1 1
        "q4": [],  # no answer, predicted text: 0, 0
        "q5": ["Levi's Stadium"],  # answerable, predicted none: 0, 0
    }
    preds = {"q1": "broncos", "q2": "Santa Clara", "q3": "", "q4": "a stadium", "q5": ""}
    out = fm.squad_scores(preds, golds)
    assert out["exact"] == pytest.approx(100 * 2 / 5)
    assert out["f1"] == pytest.approx(100 * (1 + 0.8 + 1) / 5)
    assert out["HasAns_exact"] == pytest.approx(100 / 3)
    assert out["NoAns_f1"] == pytest.approx(50.0)


def test_squad_no_answer_threshold_and_best_threshold_by_hand():
    golds = {"a": ["cat"], "b": [], "c": []}
    preds = {"a": "cat", "b": "dog", "c": "cow"}
    na = {"a": 0.1, "b": 0.9, "c": 0.4}
    # threshold 0.5: b becomes "" (correct), c stays "cow" (wrong): EM = 2/3.
    out = fm.squad_scores(preds, golds, na, na_threshold=0.5)
    assert out["exact"] == pytest.approx(200 / 3)
    # Official sweep: start 2 (all no-answer right); a (+1) -> 3 at thresh 0.1; c -1; b -1.
    assert out["best_exact"] == pytest.approx(100.0)
    assert out["best_exact_thresh"] == pytest.approx(0.1)
    assert fm.squad_scores(preds, golds, na)["exact"] == pytest.approx(100 / 3)  # default 1.0
