"""Featurization (pairs, doubling, SQuAD windows and answers), layer-wise LR, heads, outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from electra_jax.data.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer
from electra_jax.finetune.features import (
    decode_answers,
    double_unordered,
    encode_examples,
    featurize_squad,
    final_text,
    truncate_pair,
)
from electra_jax.finetune.heads import FinetuneModel, layerwise_multipliers, task_loss
from electra_jax.finetune.readers import Example, SquadExample
from electra_jax.finetune.tasks import TASKS
from electra_jax.finetune.trainer import median_seed_index, write_glue_submission
from electra_jax.model.config import ModelConfig

WORDS = (  # noqa: SIM905
    "the cat sat on a mat dog ran in park super bowl was won by denver broncos 2016 who did it"
    " . , ? ! 50"
).split()  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join([*SPECIAL_TOKENS, *WORDS]) + "\n")
    return WordPieceTokenizer(str(path))


def test_truncate_pair_pops_from_the_longer_segment():
    a, b = list(range(10)), list(range(4))
    truncate_pair(a, b, 9)
    assert (len(a), len(b)) == (5, 4)
    a, b = list(range(3)), list(range(3))
    truncate_pair(a, b, 4)
    assert (len(a), len(b)) == (2, 2)


def test_double_unordered_adds_swapped_copies():
    doubled = double_unordered([Example("1", "a", "b", 1), Example("2", "c", "d", 0)])
    assert [(e.text_a, e.text_b, e.label) for e in doubled] == [
        ("a", "b", 1), ("b", "a", 1), ("c", "d", 0), ("d", "c", 0)]  # fmt: skip


def test_pair_layout_cls_a_sep_b_sep(tokenizer):
    arrays = encode_examples([Example("1", "the cat sat", "a dog ran", 1)], tokenizer, 8)
    tokens = [tokenizer.id_to_token(int(i)) for i in arrays["input_ids"][0]]
    assert tokens == ["[CLS]", "the", "cat", "sat", "[SEP]", "a", "dog", "[SEP]"]  # b cut (tie)
    assert list(arrays["segment_ids"][0]) == [0, 0, 0, 0, 0, 1, 1, 1]
    assert arrays["input_mask"][0].sum() == 8 and arrays["labels"][0] == 1


# --------------------------------------------------------------------------- SQuAD

CONTEXT = "Super Bowl 50 was won by the Denver Broncos, in 2016."


def test_squad_windows_map_the_answer_and_decode_back(tokenizer):
    example = SquadExample("q1", "who won ?", CONTEXT, (("Denver Broncos", 29),))
    arrays, metas = featurize_squad([example], tokenizer, max_seq_len=14, doc_stride=3,
                                    max_query_len=8, is_training=True)  # fmt: skip
    assert len(metas) > 2  # the context needs several windows of 14 - 3 - 3 = 8 tokens
    inside = [w for w in range(len(metas)) if arrays["start_positions"][w] > 0]
    assert inside and all(arrays["is_impossible"][w] == 0 for w in inside)
    for w in inside:
        s, e = arrays["start_positions"][w], arrays["end_positions"][w]
        assert tokenizer.decode(arrays["input_ids"][w, s : e + 1].tolist()) == "denver broncos"
    outside = [w for w in range(len(metas)) if w not in inside]
    # The original (qa_tasks.py) keeps the question's is_impossible (0) on windows that miss.
    assert outside and all(arrays["is_impossible"][w] == 0 for w in outside)
    # Decoding: put all the probability on the gold span of one window.
    w = inside[0]
    K, N = 2, len(metas)
    outputs = {
        "start_top_index": np.zeros((N, K), np.int32),
        "start_top_log_probs": np.full((N, K), -9.0, np.float32),
        "end_top_index": np.zeros((N, K, K), np.int32),
        "end_top_log_probs": np.full((N, K, K), -9.0, np.float32),
    }
    outputs["start_top_index"][w, 0] = arrays["start_positions"][w]
    outputs["start_top_log_probs"][w, 0] = 0.0
    outputs["end_top_index"][w, 0, 0] = arrays["end_positions"][w]
    outputs["end_top_log_probs"][w, 0, 0] = 0.0
    answers, nulls, nbest = decode_answers([example], metas, outputs, tokenizer,
                                           arrays["input_ids"])  # fmt: skip
    assert answers == {"q1": "Denver Broncos"}  # the word's comma is cut off
    assert nulls["q1"] == float("-inf") and nbest["q1"][0]["text"] == "Denver Broncos"


def test_final_text_trims_punctuation_keeps_case():
    assert final_text("denver broncos", "Denver Broncos,") == "Denver Broncos"
    assert final_text("zzz", "Denver") == "Denver"


# --------------------------------------------------------------------------- layer-wise LR


def twelve_layer_tree():
    layer = {"attention": {"query": {"kernel": 0.0}}, "output_LayerNorm": {"scale": 0.0}}
    return {
        "electra": {
            "embeddings": {"word_embeddings": 0.0},
            "discriminator": {"embeddings_project": {"kernel": 0.0},
                              **{f"layer_{i}": layer for i in range(12)}},
        },
        "head": {"output": {"kernel": 0.0, "bias": 0.0}},
    }  # fmt: skip


@pytest.mark.parametrize("fixed", [False, True])
def test_layerwise_multipliers_match_recipe_formula(fixed):
    n, d = 12, 0.8
    top = n + 1 if fixed else n + 2  # RECIPE: lr x d^(n + 2 - depth); the fix uses n + 1
    m = layerwise_multipliers(twelve_layer_tree(), n, d, fixed)
    assert m["electra"]["embeddings"]["word_embeddings"] == pytest.approx(d**top)
    assert m["electra"]["discriminator"]["embeddings_project"]["kernel"] == pytest.approx(d**top)
    for i in range(n):
        layer = m["electra"]["discriminator"][f"layer_{i}"]
        assert layer["attention"]["query"]["kernel"] == pytest.approx(d ** (top - (i + 1)))
        assert layer["output_LayerNorm"]["scale"] == pytest.approx(d ** (top - (i + 1)))
    assert m["head"]["output"]["kernel"] == 1.0
    top_layer = m["electra"]["discriminator"]["layer_11"]["attention"]["query"]["kernel"]
    assert top_layer == pytest.approx(d if fixed else d**2)  # the off-by-one of issue #51


# --------------------------------------------------------------------------- heads


TINY = ModelConfig(vocab_size=40, embedding_size=8, hidden_size=16, num_layers=2, num_heads=2,
                   max_position_embeddings=32)  # fmt: skip


def batch_of(B=3, L=12):
    ids = jnp.tile(jnp.arange(L, dtype=jnp.int32)[None] % 30 + 5, (B, 1))
    segments = jnp.zeros((B, L), jnp.int32).at[:, 4:].set(1)
    mask = jnp.ones((B, L), jnp.int32)
    answer_mask = (mask * segments).at[:, 0].set(1)
    return {"input_ids": ids, "segment_ids": segments, "input_mask": mask,
            "answer_mask": answer_mask, "labels": jnp.array([0, 1, 1]),
            "start_positions": jnp.array([5, 0, 6]), "end_positions": jnp.array([7, 0, 6]),
            "is_impossible": jnp.array([0, 1, 0])}  # fmt: skip


def test_span_head_shapes_and_loss():
    model = FinetuneModel(TINY, "span", beam_size=3)
    batch = batch_of()
    params = jax.jit(model.init)(jax.random.key(0), batch)["params"]
    assert set(params) == {"electra", "head"}
    assert set(params["electra"]) == {"embeddings", "discriminator"}
    out = jax.jit(model.apply)({"params": params}, batch)
    assert out["start_top_index"].shape == (3, 3) and out["end_top_index"].shape == (3, 3, 3)
    # Predicted starts lie in the context or on [CLS]; probabilities elsewhere are ~0.
    assert bool(jnp.all(jnp.take_along_axis(batch["answer_mask"], out["start_top_index"], 1)))
    train_apply = jax.jit(
        lambda p, r: model.apply({"params": p}, batch, False, rngs={"dropout": r})
    )
    train_out = train_apply(params, jax.random.key(1))
    assert train_out["end_log_probs"].shape == (3, 12) and train_out["answerable_logit"].shape == (
        3,
    )
    loss = task_loss(train_out, batch, "span")
    assert bool(jnp.isfinite(loss)) and float(loss) > 0


def test_regression_loss_is_mse_on_label_over_5():
    outputs = {"predictions": jnp.array([0.2, 1.0])}
    batch = {"labels": jnp.array([1.0, 5.0])}
    assert float(task_loss(outputs, batch, "regression")) == pytest.approx(0.0)
    outputs = {"predictions": jnp.array([0.0, 0.0])}
    # The original sums the per-example losses over the batch; "mean" divides by its size.
    assert float(task_loss(outputs, batch, "regression")) == pytest.approx(0.04 + 1.0)
    mean = task_loss(outputs, batch, "regression", reduction="mean")
    assert float(mean) == pytest.approx((0.04 + 1.0) / 2)


def test_glue_submission_file_format(tmp_path):
    path = tmp_path / "RTE.tsv"
    write_glue_submission(str(path), TASKS["rte"], ["0", "1"], np.array([1, 0]))
    assert path.read_text() == "index\tprediction\n0\tnot_entailment\n1\tentailment\n"
    write_glue_submission(str(path), TASKS["stsb"], ["0"], np.array([5.7]))
    assert path.read_text() == "index\tprediction\n0\t5.000\n"
    assert median_seed_index([70.0, 50.0, 60.0]) == 2
    assert median_seed_index([1.0, 4.0, 3.0, 2.0]) == 3  # the lower median
