"""The RTD objective against RECIPE.md: masking counts and split, labels, gradient isolation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from electra_jax.model.config import preset
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train.objective import (
    AUC_BINS,
    ObjectiveConfig,
    auc_bins,
    candidates_mask,
    finalize_metrics,
    histogram_auc,
    mask_batch,
    max_predictions_per_seq,
    metric_sums,
    pretrain_forward,
    replace_tokens,
    sample_tokens,
    select_positions,
)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
OBJ = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK)


def random_batch(seed: int, B: int = 64, L: int = 128, vocab: int = 500) -> dict:
    """Right-padded rows laid out [CLS] A [SEP] B [SEP], random lengths, some [MASK] in text."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((B, L), np.int32)
    segs = np.zeros((B, L), np.int32)
    for b in range(B):
        n = int(rng.integers(6, L + 1))
        row = rng.integers(5, vocab, n)
        split = int(rng.integers(2, n - 2))
        row[0], row[split], row[n - 1] = CLS, SEP, SEP
        row[rng.random(n) < 0.02] = MASK  # literal [MASK] tokens must never be selected
        ids[b, :n] = row
        segs[b, split + 1 : n] = 1
    mask = (np.arange(L)[None] < (ids != 0).cumsum(1).max(1, keepdims=True)).astype(np.int32)
    return {"input_ids": jnp.asarray(ids), "input_mask": jnp.asarray(mask), "segment_ids": segs}


def test_max_predictions_matches_recipe():
    assert max_predictions_per_seq(128, 0.15) == 19
    assert max_predictions_per_seq(512, 0.15) == 79
    assert max_predictions_per_seq(512, 0.25) == 130


def test_per_row_counts_and_candidates_over_many_batches():
    for seed in range(20):
        batch = random_batch(seed)
        positions, weights = select_positions(jax.random.key(seed), batch, OBJ)
        positions, weights = np.asarray(positions), np.asarray(weights)
        n_real = np.asarray(batch["input_mask"]).sum(1)
        # float32 product and half-to-even rounding, as the original's tf.round(float32)
        expected = np.maximum(
            1, np.minimum(19, np.round(n_real.astype(np.float32) * np.float32(0.15)))
        )
        cand = np.asarray(candidates_mask(batch, OBJ))
        expected[~cand.any(1)] = 0  # a row with no candidate at all selects nothing
        np.testing.assert_array_equal(weights.sum(1), expected)
        rows = np.arange(positions.shape[0])[:, None]
        chosen_is_candidate = cand[rows, positions]
        assert chosen_is_candidate[weights > 0].all(), "special, [MASK] or pad token selected"
        assert (positions[weights == 0] == 0).all(), "unused slots must hold position 0"


def test_without_replacement_switch_gives_unique_positions():
    cfg = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, positions_with_replacement=False)
    batch = random_batch(3)
    positions, weights = select_positions(jax.random.key(0), batch, cfg)
    for row, w in zip(np.asarray(positions), np.asarray(weights), strict=True):
        used = row[w > 0]
        assert len(set(used.tolist())) == len(used)


def test_mask_split_is_85_15_with_no_random_replacement():
    masked_slots, total_slots = 0, 0
    for seed in range(30):
        batch = random_batch(100 + seed)
        ids = np.asarray(batch["input_ids"])
        masked = mask_batch(jax.random.key(seed), batch, OBJ)
        new_ids = np.asarray(masked.masked_ids_BxL)
        changed = new_ids != ids
        assert (new_ids[changed] == MASK).all(), "a selected token was replaced by a non-[MASK]"
        pos, w = np.asarray(masked.positions_BxN), np.asarray(masked.weights_BxN)
        for b in range(ids.shape[0]):
            unique = np.unique(pos[b][w[b] > 0])
            masked_slots += int(changed[b, unique].sum())
            total_slots += len(unique)
            assert changed[b].sum() == changed[b, unique].sum(), "unselected position changed"
    frac = masked_slots / total_slots
    # A position drawn twice is masked if either draw says so (P = 1 - 0.15^2), so the expected
    # fraction is a hair above 0.85. With ~20k selected positions the binomial std is
    # sqrt(.85 * .15 / 20000) = 0.0025; 0.015 is six standard deviations.
    assert total_slots > 15_000
    assert abs(frac - 0.85) < 0.015, frac


def test_labels_zero_where_sample_equals_original():
    batch = random_batch(7, B=16, L=32, vocab=8)  # tiny vocab: many samples equal the original
    masked = mask_batch(jax.random.key(1), batch, OBJ)
    V = 8
    logits = jax.random.normal(jax.random.key(2), masked.positions_BxN.shape + (V,))
    samples = sample_tokens(jax.random.key(3), logits, masked.targets_BxN, OBJ)
    fake, labels = replace_tokens(batch, masked, samples)
    fake, labels, ids = np.asarray(fake), np.asarray(labels), np.asarray(batch["input_ids"])
    np.testing.assert_array_equal(labels, (fake != ids) & (np.asarray(batch["input_mask"]) > 0))
    positions, used = np.asarray(masked.positions_BxN), np.asarray(masked.weights_BxN) > 0
    drawn = [np.bincount(p[u], minlength=32) for p, u in zip(positions, used, strict=True)]
    once = np.take_along_axis(np.stack(drawn), positions, 1) == 1  # duplicates: floor mean
    equal_samples = np.asarray(samples == masked.targets_BxN) & once & used
    assert equal_samples.any(), "fixture should produce some correct samples"
    rows = np.nonzero(equal_samples)
    assert (labels[rows[0], np.asarray(masked.positions_BxN)[rows]] == 0).all()


def test_disallow_correct_never_samples_the_target():
    cfg = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, disallow_correct=True)
    targets = jnp.zeros((4, 19), jnp.int32) + 3
    logits = jnp.zeros((4, 19, 10)).at[..., 3].set(20.0)  # the target dominates
    samples = sample_tokens(jax.random.key(0), logits, targets, cfg)
    assert not np.any(np.asarray(samples) == 3)
    samples_default = sample_tokens(jax.random.key(0), logits, targets, OBJ)
    assert np.all(np.asarray(samples_default) == 3)


def test_low_temperature_sampling_is_argmax():
    cfg = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, temperature=1e-3)
    logits = jax.random.normal(jax.random.key(0), (8, 19, 50))
    samples = sample_tokens(jax.random.key(1), logits, jnp.zeros((8, 19), jnp.int32), cfg)
    np.testing.assert_array_equal(samples, jnp.argmax(logits, -1))


@pytest.mark.parametrize("sharing", ["tied", "gdes"])
def test_disc_loss_gradient_is_zero_on_generator_only_params(sharing):
    cfg = preset("tiny", embedding_sharing=sharing)
    model = ElectraModel(cfg)
    params = nn.unbox(init_params(model, jax.random.key(0)))
    batch = random_batch(0, B=4, L=32, vocab=cfg.vocab_size)

    def disc_only(p):
        return pretrain_forward(p, batch, jax.random.key(1), model=model, cfg=OBJ)[1]["disc_loss"]

    grads = jax.jit(jax.grad(disc_only))(params)
    for name in ("generator", "generator_head"):
        leaves = jax.tree.leaves(grads[name])
        assert leaves and all(float(jnp.max(jnp.abs(g))) == 0.0 for g in leaves), name
    # ...but it does reach the shared embeddings (tied) and the discriminator.
    assert float(jnp.max(jnp.abs(grads["discriminator"]["layer_0"]["output"]["kernel"]))) > 0
    word_grad = grads["embeddings"]["word_embeddings"]
    if sharing == "tied":
        assert float(jnp.max(jnp.abs(word_grad))) > 0
    else:  # GDES: the discriminator's loss updates only its delta, not the shared table
        assert float(jnp.max(jnp.abs(word_grad))) == 0.0
        assert float(jnp.max(jnp.abs(grads["gdes"]["word_embeddings_delta"]))) > 0


def test_uniform_generator_samples_uniformly_and_trains_no_generator():
    cfg = preset("tiny")
    obj = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, uniform_generator=True)
    model = ElectraModel(cfg)
    params = nn.unbox(init_params(model, jax.random.key(0)))
    batch = random_batch(0, B=64, L=64, vocab=cfg.vocab_size)
    forward = jax.jit(lambda p: pretrain_forward(p, batch, jax.random.key(1), model=model, cfg=obj))
    (loss, out), grads = jax.value_and_grad(forward, has_aux=True)(params)
    assert float(out["mlm_loss"]) == pytest.approx(np.log(cfg.vocab_size), rel=1e-5)
    samples = np.asarray(out["samples_BxN"])[np.asarray(out["weights_BxN"]) > 0]
    # ~640 uniform draws over 8192 ids: nearly all distinct, spread over the whole range.
    assert len(np.unique(samples)) > 0.9 * samples.size
    assert samples.min() < cfg.vocab_size // 8 and samples.max() > cfg.vocab_size * 7 // 8
    for name in ("generator", "generator_head"):
        assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads[name]))
    assert float(jnp.max(jnp.abs(grads["discriminator"]["layer_0"]["output"]["kernel"]))) > 0


def test_bert_baseline_has_no_discriminator():
    cfg = preset("tiny", electra_objective=False)
    obj = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, electra_objective=False)
    model = ElectraModel(cfg)
    params = nn.unbox(init_params(model, jax.random.key(0)))
    assert "generator" not in params and "discriminator_head" not in params
    batch = random_batch(0, B=4, L=32, vocab=cfg.vocab_size)
    forward = jax.jit(lambda p: pretrain_forward(p, batch, jax.random.key(1), model=model, cfg=obj))
    loss, out = forward(params)
    assert float(loss) == pytest.approx(float(out["mlm_loss"]))
    assert set(finalize_metrics(metric_sums(out))) == {"masked_lm_accuracy", "masked_lm_loss"}


def test_total_loss_weights():
    cfg = preset("tiny")
    model = ElectraModel(cfg)
    params = nn.unbox(init_params(model, jax.random.key(0)))
    batch = random_batch(0, B=4, L=32, vocab=cfg.vocab_size)
    forward = jax.jit(lambda p: pretrain_forward(p, batch, jax.random.key(1), model=model, cfg=OBJ))
    loss, out = forward(params)
    expected = float(out["mlm_loss"]) + 50.0 * float(out["disc_loss"])
    assert float(loss) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("spread", [2.0, 0.01])  # a trained and a young discriminator
def test_histogram_auc_matches_exact_auc(spread: float):
    """Exact to ~1e-3 even when every logit lies within a few hundredths of the others."""
    rng = np.random.default_rng(0)
    labels = rng.random(20_000) < 0.12
    logits = rng.normal(-2.0 + 0.5 * spread * labels, spread).astype(np.float32)
    bins = np.asarray(auc_bins(jnp.asarray(logits)))
    pos = np.bincount(bins[labels], minlength=AUC_BINS)
    neg = np.bincount(bins[~labels], minlength=AUC_BINS)
    auc = float(histogram_auc(jnp.asarray(pos, jnp.float32), jnp.asarray(neg, jnp.float32)))
    exact = roc_auc_score(labels, logits)
    assert exact > 0.6
    assert abs(auc - exact) < 1e-3


def test_metrics_match_hand_computation():
    out = {
        "weights_BxN": jnp.array([[1.0, 1.0, 0.0]]),
        "targets_BxN": jnp.array([[5, 6, 0]]),
        "gen_logits_BxNxV": jax.nn.one_hot(jnp.array([[5, 7, 1]]), 8) * 10.0,
        "samples_BxN": jnp.array([[5, 5, 0]]),
        "input_mask_BxL": jnp.array([[1, 1, 1, 1, 0]]),
        "labels_BxL": jnp.array([[0, 1, 1, 0, 0]]),
        "disc_logits_BxL": jnp.array([[-2.0, 3.0, -1.0, 1.0, 9.0]]),
    }
    m = finalize_metrics(metric_sums(out))
    assert m["masked_lm_accuracy"] == pytest.approx(0.5)
    assert m["sampled_masked_lm_accuracy"] == pytest.approx(0.5)
    assert m["disc_accuracy"] == pytest.approx(0.5)  # pad position (logit 9) ignored
    assert m["disc_precision"] == pytest.approx(0.5)
    assert m["disc_recall"] == pytest.approx(0.5)
