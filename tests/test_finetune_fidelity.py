"""Issue 19, fine-tuning side: each default pinned to the original's behaviour (values worked out
by hand or from its formulas: run_finetuning.py, qa_tasks.py, qa_metrics.py, tf.layers.dense),
each switch to this code's earlier alternative, and SQuAD evaluation against the outputs of the
original's official scripts (../shared/reference/squad_official_eval_golden.json)."""

import functools
import json
import math
import os
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.finetune import get_config
from electra_jax.data.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer
from electra_jax.finetune import metrics
from electra_jax.finetune.features import decode_answers, featurize_squad
from electra_jax.finetune.heads import ClassificationHead, SpanHead, finetune_model, task_loss
from electra_jax.finetune.readers import SquadExample, read_split, split_path
from electra_jax.finetune.tasks import TASKS, get_task
from electra_jax.finetune.trainer import make_steps
from electra_jax.model.config import ModelConfig

# CI and the development checkout have ../shared beside the repository.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "reference" / "squad_official_eval_golden.json"
H = 64  # hidden width of the heads under test: enough kernel entries for the variance checks
CFG = ModelConfig(vocab_size=40, embedding_size=H, hidden_size=H, num_layers=1, num_heads=2,
                  max_position_embeddings=64)  # fmt: skip
WORDS = "who won ? the game was won by denver broncos in 2016 at levi stadium".split()  # noqa: SIM905


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join([*SPECIAL_TOKENS, *WORDS]) + "\n")
    return WordPieceTokenizer(str(path))


def test_config_defaults_are_the_originals():
    """configure_finetuning.py: answerable_classifier, answerable_uses_start_logits and
    joint_prediction True, answerable_weight 0.5, qa_na_threshold -2.75; run_finetuning.py's
    reduce_sum; tf.layers.dense's Glorot uniform; qa_hidden without LayerNorm; is_impossible
    from the question."""
    c = get_config("task=squad20,size=small")
    assert (c.loss_reduction, c.head_init) == ("sum", "glorot_uniform")
    s = c.squad
    assert s.joint_prediction and s.answerable_classifier and s.answerable_uses_start_logits
    assert (s.answerable_weight, s.na_threshold) == (0.5, -2.75)
    assert not s.end_layer_norm and not s.missed_answer_is_impossible


# --------------------------------------------------------------------------- 1. loss


def test_batch_loss_is_the_sum_of_per_example_losses_by_hand():
    # Two rows, label 0: CE = log(1 + e^-(2 - 0)) and log(1 + e^(1 - 0)).
    outputs, batch = {"logits": jnp.array([[2.0, 0.0], [0.0, 1.0]])}, {"labels": jnp.array([0, 0])}
    by_hand = math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))
    assert float(task_loss(outputs, batch, "classification")) == pytest.approx(by_hand, rel=1e-6)
    mean = task_loss(outputs, batch, "classification", reduction="mean")
    assert float(mean) == pytest.approx(by_hand / 2, rel=1e-6)
    with pytest.raises(ValueError, match="loss_reduction"):
        task_loss(outputs, batch, "classification", reduction="avg")


@pytest.mark.parametrize("reduction, factor", [("sum", 1.0), ("mean", 0.5)])
def test_trainer_step_uses_config_loss_reduction(reduction, factor):
    """The trainer's jitted step returns the configured reduction (a stand-in model returns the
    batch's own logits, so only the reduction is under test)."""

    class Logits:
        def apply(self, variables, batch, deterministic=True, rngs=None):
            return {"logits": batch["logits"] + 0.0 * variables["params"]["w"]}

    config = get_config("task=rte,size=tiny")
    config.loss_reduction = reduction
    train, _ = make_steps(Logits(), TASKS["rte"], optax.sgd(0.0), config)
    params_S = {"w": jnp.zeros((1, 2))}
    batch = {"logits": jnp.array([[[2.0, 0.0], [0.0, 1.0]]]), "labels": jnp.array([[0, 0]])}
    _, _, loss_S = train(params_S, optax.sgd(0.0).init(params_S), batch,
                         jnp.stack([jax.random.key(0)]), 0)  # fmt: skip
    by_hand = math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))
    assert float(loss_S[0]) == pytest.approx(factor * by_hand, rel=1e-6)


def test_answerable_loss_only_with_the_answerable_classifier():
    # start p = 1/4 at the gold start, end p = 1/4 at the gold end: span loss (log 4 + log 4) / 2;
    # answerable logit 0 against label 0: log 2, weighted 0.5.
    log_p = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    outputs = {"start_log_probs": log_p, "end_log_probs": log_p,
               "answerable_logit": jnp.array([0.0])}  # fmt: skip
    batch = {"start_positions": jnp.array([1]), "end_positions": jnp.array([2]),
             "is_impossible": jnp.array([0])}  # fmt: skip
    with_classifier = task_loss(outputs, batch, "span")
    assert float(with_classifier) == pytest.approx(math.log(4) + 0.5 * math.log(2), rel=1e-6)
    without = task_loss(outputs, batch, "span", answerable_classifier=False)
    assert float(without) == pytest.approx(math.log(4), rel=1e-6)


# --------------------------------------------------------------------------- 2, 4. heads


@functools.cache
def _span_params(fields: tuple) -> dict:
    head = SpanHead(CFG, beam_size=3, **dict(fields))
    h_BxLxH = jax.random.normal(jax.random.key(1), (2, 8, H))
    mask_BxL = jnp.ones((2, 8), jnp.int32)
    init = jax.jit(lambda key: nn.unbox(head.init(key, h_BxLxH, mask_BxL, None)["params"]))
    return jax.device_get(init(jax.random.key(0)))


def span_params(**fields) -> dict:
    """The SpanHead's parameters (alone, on random hidden states) with these fields."""
    return _span_params(tuple(sorted(fields.items())))


# The standard deviation of a standard normal cut at +-2 (TF's truncated_normal, not rescaled).
PHI_2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
TRUNCATED_STD = math.sqrt(1 - 2 * 2 * PHI_2 / math.erf(2 / math.sqrt(2)))


def check_glorot_uniform(kernel: np.ndarray) -> None:
    """tf.layers.dense's default: U(-b, b), b = sqrt(6 / (fan_in + fan_out)), variance b^2 / 3."""
    fan_in, fan_out = kernel.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= bound
    if kernel.size >= 10_000:  # enough samples to pin the distribution itself
        assert np.abs(kernel).max() > 0.99 * bound
        assert np.var(kernel) == pytest.approx(bound**2 / 3, rel=0.05)
    else:  # a truncated normal 0.02 never leaves +-0.04; these bounds are >= 0.17
        assert np.abs(kernel).max() > 0.5 * bound > 0.04


def test_heads_default_to_glorot_uniform_and_switch_to_truncated_normal():
    params = span_params()
    shapes = {name: p["kernel"].shape for name, p in params.items()}
    assert shapes == {"start": (H, 1), "end_dense": (2 * H, 512), "end": (512, 1),
                      "answerable_dense": (2 * H, 512), "answerable": (512, 1)}  # fmt: skip
    for name, p in params.items():
        check_glorot_uniform(np.asarray(p["kernel"]))
        assert not np.any(np.asarray(p["bias"])), name  # zero bias
    cls = ClassificationHead(CFG, 3)
    cls_params = cls.init(jax.random.key(0), jnp.ones((2, 4, H)), True)["params"]
    check_glorot_uniform(np.asarray(nn.unbox(cls_params)["output"]["kernel"]))
    # The switch: the encoder's truncated normal, stddev 0.02, cut at 2 stddev.
    for p in span_params(head_init="truncated_normal").values():
        kernel = np.asarray(p["kernel"])
        assert np.abs(kernel).max() <= 0.04
        if kernel.size >= 10_000:
            assert np.std(kernel) == pytest.approx(0.02 * TRUNCATED_STD, rel=0.05)


def test_end_head_has_no_layer_norm_unless_switched_on():
    assert not any("LayerNorm" in name for name in span_params())
    with_norm = span_params(end_layer_norm=True)
    assert set(with_norm["end_LayerNorm"]) == {"scale", "bias"}


def test_independent_start_and_end_without_joint_prediction():
    params = span_params(joint_prediction=False, answerable_uses_start_logits=False)
    shapes = {name: p["kernel"].shape for name, p in params.items()}
    assert shapes == {"start": (H, 1), "end": (H, 1), "answerable": (H, 1)}
    head = SpanHead(CFG, beam_size=3, joint_prediction=False, answerable_classifier=False)
    h_BxLxH, mask_BxL = jnp.ones((2, 8, H)), jnp.ones((2, 8), jnp.int32).at[:, 5:].set(0)
    variables = head.init(jax.random.key(0), h_BxLxH, mask_BxL, None)
    out = head.apply(variables, h_BxLxH, mask_BxL, None)
    assert set(out) == {"start_logits", "end_logits"}
    assert float(out["end_logits"][0, 6]) < -900.0  # outside the answer mask: -1000
    train = head.apply(variables, h_BxLxH, mask_BxL, jnp.array([1, 2]))
    assert set(train) == {"start_log_probs", "end_log_probs"}


def test_finetune_model_takes_the_config_fields():
    config = get_config("task=squad20,size=tiny")
    config.head_init, config.squad.end_layer_norm = "truncated_normal", True
    config.squad.joint_prediction = config.squad.answerable_classifier = False
    model = finetune_model(CFG, "span", 0, config)
    assert (model.head_init, model.end_layer_norm) == ("truncated_normal", True)
    assert not model.joint_prediction and not model.answerable_classifier
    assert model.answerable_uses_start_logits and model.beam_size == config.squad.n_best


# --------------------------------------------------------------------------- 3. labels


def test_window_missing_the_answer_keeps_is_impossible_0(tokenizer):
    context = "the game was won by denver broncos in 2016 at levi stadium"
    answerable = SquadExample("a", "who won ?", context, (("levi stadium", context.index("levi")),))
    impossible = SquadExample("i", "who won ?", context, (), is_impossible=True)
    kw = dict(max_seq_len=12, doc_stride=3, max_query_len=4, is_training=True)
    arrays, metas = featurize_squad([answerable, impossible], tokenizer, **kw)
    first = [w for w, m in enumerate(metas) if m.example_index == 0]
    missed = [w for w in first if arrays["start_positions"][w] == 0]
    assert missed and len(missed) < len(first)  # some windows of "a" miss its answer
    assert [int(arrays["is_impossible"][w]) for w in first] == [0] * len(first)
    rest = [w for w, m in enumerate(metas) if m.example_index == 1]
    assert all(arrays["is_impossible"][w] == 1 for w in rest)
    # The switch: windows that miss the answer are labelled 1 (impossible questions still 1).
    switched, _ = featurize_squad([answerable, impossible], tokenizer, **kw,
                                  missed_answer_is_impossible=True)  # fmt: skip
    want = [int(switched["start_positions"][w] == 0) for w in first] + [1] * len(rest)
    assert switched["is_impossible"].tolist() == want


# --------------------------------------------------------------------------- decoding


def one_window(tokenizer):
    context = "the game was won by denver broncos"
    example = SquadExample("q", "who won ?", context, (("denver broncos", 20),))
    arrays, metas = featurize_squad([example], tokenizer, max_seq_len=16)
    offset = arrays["segment_ids"][0].tolist().index(1)  # first context token
    return example, arrays, metas, offset


def test_independent_decoding_scores_by_logits_and_null_odds_without_classifier(tokenizer):
    example, arrays, metas, c = one_window(tokenizer)
    start, end = np.full((1, 16), -10.0, np.float32), np.full((1, 16), -10.0, np.float32)
    start[0, 0], end[0, 0] = 1.0, 0.5  # [CLS]: the null score 1.5
    start[0, c + 5], end[0, c + 6] = 3.0, 2.0  # "denver broncos": 5.0
    start[0, c + 6], end[0, c + 5] = 2.5, 1.0  # "broncos" (2.5 + 2.0); end before start: none
    outputs = {"start_logits": start, "end_logits": end}
    answers, nulls, nbest = decode_answers([example], metas, outputs, tokenizer,
                                           arrays["input_ids"], n_best=3)  # fmt: skip
    assert answers == {"q": "denver broncos"}
    assert [e["text"] for e in nbest["q"][:2]] == ["denver broncos", "broncos"]
    assert [e["score"] for e in nbest["q"][:2]] == [5.0, 4.5]
    assert nulls["q"] == pytest.approx(1.5 - 5.0)  # score_null - best start - best end logit
    # With the classifier, the null odds are its lowest logit over the question's windows.
    outputs["answerable_logit"] = np.array([-1.25])
    _, with_classifier, _ = decode_answers([example], metas, outputs, tokenizer,
                                           arrays["input_ids"])  # fmt: skip
    assert with_classifier["q"] == -1.25


def test_no_valid_span_gives_the_originals_empty_entry(tokenizer):
    example, arrays, metas, _ = one_window(tokenizer)
    outputs = {"start_logits": np.zeros((1, 16), np.float32),
               "end_logits": np.zeros((1, 16), np.float32)}  # fmt: skip
    outputs["start_logits"][0, 1:] = outputs["end_logits"][0, 1:] = -50.0
    answers, nulls, nbest = decode_answers([example], metas, outputs, tokenizer,
                                           arrays["input_ids"], n_best=1)  # fmt: skip
    # Only [CLS] ranks in the top 1: no valid span, the nonce "empty" (score 0) stands in.
    assert nbest["q"] == [{"text": "empty", "score": 0.0}] and answers["q"] == "empty"
    assert nulls["q"] == 0.0  # null 0 + 0 at [CLS] minus the nonce's 0


# --------------------------------------------------------------------------- 9. data layout


def test_the_originals_squad_folders_and_task_names(tmp_path):
    for folder in ("squad", "squadv1"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.json").write_text("{}")
    for task, folder in (("squad20", "squad"), ("squad11", "squadv1")):
        assert split_path(str(tmp_path), TASKS[task], "train") == str(
            tmp_path / folder / "train.json"
        )
    (tmp_path / "squad20").mkdir()
    (tmp_path / "squad20" / "train.json").write_text("{}")  # ours first when both exist
    assert split_path(str(tmp_path), TASKS["squad20"], "train").endswith("squad20/train.json")
    assert split_path(str(tmp_path / "squad"), TASKS["squad20"], "dev").endswith("squad/dev.json")
    assert get_task("squad") is TASKS["squad20"] and get_task("squadv1") is TASKS["squad11"]
    assert get_config("task=squadv1,size=tiny").task == "squad11"
    # The original's other task names are tasks now (tests/test_mrqa.py, tests/test_tagging.py).
    assert get_task("newsqa").metric == "mrqa" and get_config("task=chunk").max_seq_len == 256


# --------------------------------------------------------------------------- SQuAD evaluation


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.is_file():
        pytest.fail(f"{GOLDEN} is missing (the official scripts' outputs, in ../shared)")
    return json.loads(GOLDEN.read_text())


def golds_as_the_trainer_reads_them(dataset: dict, tmp_path: Path, task: str) -> dict:
    """The dev set from the original's folder through the trainer's reader (`read_split`), golds
    as `trainer.score_seed` builds them. (The synthetic set's answer_start values are not all
    where the text is: evaluation, as the original's, reads only the texts.)"""
    folder = tmp_path / TASKS[task].other_dir_names[0]  # squadv1/, squad/
    folder.mkdir()
    (folder / "dev.json").write_text(json.dumps(dataset))
    examples = read_split(str(tmp_path), TASKS[task], "dev").examples
    return {e.qid: [text for text, _ in e.answers] for e in examples}


def test_squad11_equals_the_official_v1_script(golden, tmp_path):
    squad = golden["squad11"]
    golds = golds_as_the_trainer_reads_them(squad["dataset"], tmp_path, "squad11")
    out = metrics.squad_scores(squad["predictions"], golds, None, -2.75, v2=False)
    assert {k: out[k] for k in squad["result"]} == squad["result"]  # bit for bit
    assert out["exact"] == out["exact_match"]


@pytest.mark.parametrize("threshold", ["1.0", "0.5"])
def test_squad20_equals_the_official_v2_script(golden, tmp_path, threshold):
    squad = golden["squad20"]
    golds = golds_as_the_trainer_reads_them(squad["dataset"], tmp_path, "squad20")
    out = metrics.squad_scores(squad["predictions"], golds, squad["na_probs"], float(threshold))
    assert out == squad[f"result_thresh_{threshold}"]  # every key, bit for bit


def test_per_pair_exact_and_f1_equal_the_v2_script(golden):
    for pair in golden["pairs"]:
        got = (metrics.exact_match(pair["pred"], pair["gold"]),
               metrics.token_f1(pair["pred"], pair["gold"]))  # fmt: skip
        assert got == (pair["exact"], pair["f1"]), pair
    assert os.path.basename(GOLDEN) == "squad_official_eval_golden.json"
