"""Electric (the original's `electric_objective`, docs/spec.md §9) and the fully tied generator
(`untied_generator=False`): the noise-contrastive loss against a hand computation of the
original's formula, the two towers' causal masks, the tied generator's parameters, and a short
pre-training run of each objective."""

import math
import os
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.pretrain import get_config
from electra_jax.config_fields import build
from electra_jax.convert.hf import params_to_hf
from electra_jax.errors import UserError
from electra_jax.files.model_io import load_model
from electra_jax.files.run_files import read_metrics
from electra_jax.model.config import ModelConfig, preset
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.model.flops import train_flops_per_token
from electra_jax.model.layers import causal_attention_mask
from electra_jax.train.electric import nce_logits, noise_positions
from electra_jax.train.objective import (
    ObjectiveConfig,
    disc_loss,
    finalize_metrics,
    loss_denominators,
    metric_sums,
    pretrain_forward,
)
from electra_jax.train.program import build_configs
from electra_jax.train.trainer import train

MASK_PROB = 0.15


def test_nce_loss_equals_the_originals_formula_by_hand():
    """run_pretraining.py `_get_discriminator_output` with electric_objective: logits = head +
    stop_gradient(log softmax(cloze logits)[token]) + log(mask_prob / (1 - mask_prob)), sigmoid
    cross-entropy against the written positions, over input_mask, / (sum(mask) + 1e-6)."""
    energy = [0.5, -1.0, 2.0, 0.3]
    cloze = [[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.5, 0.5, -1.0], [3.0, 0.0, 1.0]]
    fake_ids, labels, mask = [0, 2, 1, 0], [0, 1, 1, 0], [1, 1, 1, 0]
    total = 0.0
    for t in range(4):
        log_q = cloze[t][fake_ids[t]] - math.log(sum(math.exp(c) for c in cloze[t]))
        z = energy[t] + log_q + math.log(MASK_PROB / (1 - MASK_PROB))
        p_noise = 1 / (1 + math.exp(-z))
        total += mask[t] * -math.log(p_noise if labels[t] else 1 - p_noise)
    expected = total / (sum(mask) + 1e-6)

    def loss(energy_BxL, cloze_BxLxV):
        logits_BxL = nce_logits(energy_BxL, cloze_BxLxV, jnp.array([fake_ids]), MASK_PROB)
        return disc_loss(logits_BxL, jnp.array([labels]), jnp.array([mask]))

    args = (jnp.array([energy]), jnp.array([cloze]))
    value, (grad_energy, grad_cloze) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(*args)
    assert float(value) == pytest.approx(expected, rel=1e-6)
    assert np.all(np.asarray(grad_cloze) == 0.0)  # log q is stopped: only the cloze loss trains q
    assert np.count_nonzero(np.asarray(grad_energy)) == 3  # the padding position has no loss


def test_labels_are_every_written_position_even_where_the_sample_is_the_original():
    """Electric labels the sampler's writes (`scatter_update`'s mask), not "differs from the
    original"; position 0 is never written with the original's arithmetic; unused slots none."""
    positions = jnp.array([[0, 2, 2, 5], [3, 1, 0, 0]])
    weights = jnp.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    floor_mean = noise_positions(positions, weights, 6, "floor_mean")
    np.testing.assert_array_equal(floor_mean, [[0, 0, 1, 0, 0, 1], [0, 1, 0, 1, 0, 0]])
    first = noise_positions(positions, weights, 6, "first")
    np.testing.assert_array_equal(first, [[1, 0, 1, 0, 0, 1], [0, 1, 0, 1, 0, 0]])


def test_causal_masks_of_the_two_towers_by_hand():
    """modeling.py's ltr / rtl: band_part(ones, -1, 0) / (0, -1) times the key mask; a query left
    with no key attends to every key (the additive -10000 mask on a whole row is no mask)."""
    input_mask = jnp.array([[1, 1, 1, 0]])
    ltr = [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]
    rtl = [[1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0], [1, 1, 1, 1]]
    np.testing.assert_array_equal(causal_attention_mask(input_mask, "ltr")[0], ltr)
    np.testing.assert_array_equal(causal_attention_mask(input_mask, "rtl")[0], rtl)


def small(**overrides) -> ModelConfig:
    return preset(
        "tiny", vocab_size=50, num_layers=1, max_position_embeddings=16, **overrides
    )  # fmt: skip


def model_and_params(config: ModelConfig) -> tuple[ElectraModel, dict]:
    model = ElectraModel(config)
    return model, nn.unbox(init_params(model, jax.random.key(0)))


L = 8
IDS = jnp.array([[2, 11, 12, 13, 14, 15, 16, 3]])  # [CLS] ... [SEP] in the tests' vocabulary
SEGMENTS, MASK = jnp.zeros_like(IDS), jnp.ones_like(IDS)


def test_a_position_never_sees_its_own_token_and_each_tower_one_side():
    """Changing token t changes no cloze logit at t (1 <= t <= L-2; the ends wrap around as in
    the original's `roll`), no left-to-right state before t and no right-to-left state after t."""
    model, params = model_and_params(small(two_tower_generator=True))
    variables = {"params": params}

    def towers(m: ElectraModel, ids: jax.Array) -> tuple[jax.Array, ...]:
        emb = m.embeddings(ids, SEGMENTS, True)
        ltr = m.generator_ltr(emb, causal_attention_mask(MASK, "ltr"), True)
        rtl = m.generator_rtl(emb, causal_attention_mask(MASK, "rtl"), True)
        return ltr, rtl, m.generator_logits(ids, SEGMENTS, MASK)

    apply = jax.jit(lambda ids: model.apply(variables, ids, method=towers))
    run = lambda ids: [np.asarray(x[0]) for x in apply(ids)]  # noqa: E731

    ltr, rtl, cloze = run(IDS)
    assert cloze.shape == (L, 50)
    for t in range(L):
        ltr2, rtl2, cloze2 = run(IDS.at[0, t].set(40))
        np.testing.assert_allclose(ltr2[:t], ltr[:t], atol=1e-6)
        np.testing.assert_allclose(rtl2[t + 1 :], rtl[t + 1 :], atol=1e-6)
        assert not np.allclose(ltr2[t], ltr[t]) and not np.allclose(rtl2[t], rtl[t])
        if 1 <= t <= L - 2:
            np.testing.assert_allclose(cloze2[t], cloze[t], atol=1e-5)
        others = [s for s in range(L) if s != t]
        assert not np.allclose(cloze2[others], cloze[others])
    _, _, cloze0 = run(IDS.at[0, 0].set(40))  # position 0 reads the ltr tower's last position
    assert not np.allclose(cloze0[0], cloze[0])


def test_tied_generator_is_the_discriminator_network():
    """untied_generator=False: no generator parameters; the masked-LM logits are the generator
    head on the discriminator tower's states; the HF generator export holds its weights."""
    model, params = model_and_params(small(untied_generator=False))
    assert sorted(params) == ["discriminator", "discriminator_head", "embeddings", "generator_head"]
    positions = jnp.array([[1, 4]])

    def by_hand(m, ids):
        h = jnp.take_along_axis(
            m.discriminator_hidden(ids, SEGMENTS, MASK), positions[..., None], 1
        )
        return m.generator_head(h, m.embeddings)

    def both(m: ElectraModel, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        return m.generator_logits(ids, SEGMENTS, MASK, positions), by_hand(m, ids)

    logits, expected = jax.jit(lambda p: model.apply({"params": p}, IDS, method=both))(params)
    np.testing.assert_array_equal(logits, expected)
    disc_sd, gen_sd, _, gen_cfg = params_to_hf(params, model.config)
    assert gen_cfg["hidden_size"] == 64 and gen_cfg["architectures"] == ["ElectraForMaskedLM"]
    shared = [k for k in disc_sd if k.startswith("electra.encoder")]
    assert shared and all(np.array_equal(gen_sd[k], disc_sd[k]) for k in shared)


@pytest.mark.parametrize("bad", ["no_two_tower", "uniform", "tied"])
def test_pairings_the_original_cannot_run_are_refused(bad):
    config = get_config("tiny,electric")
    if bad == "no_two_tower":
        config.model.two_tower_generator = False
    elif bad == "uniform":
        config.objective.uniform_generator = True
    else:
        config.model.untied_generator = False
    with pytest.raises(UserError, match="two_tower_generator"):
        build_configs(config, {"cls_id": 2, "sep_id": 3, "mask_id": 4})


def test_pretrain_forward_puts_the_pieces_together():
    """The electric config: the generator loss is the cloze loss over every candidate of the
    unmasked input, the labels are the written positions, the logits the NCE ones."""
    config = get_config("tiny,electric")
    model_cfg = build(ModelConfig, config.model, "model").replace(
        vocab_size=50, num_layers=1, max_position_embeddings=16
    )
    objective = build(ObjectiveConfig, config.objective, "objective", cls_id=2, sep_id=3, mask_id=4)
    assert objective.electric and model_cfg.two_tower_generator and objective.disc_weight == 50.0
    model, params = model_and_params(model_cfg)
    batch = {"input_ids": jnp.tile(IDS, (2, 1)), "segment_ids": jnp.tile(SEGMENTS, (2, 1)),
             "input_mask": jnp.array([[1] * 8, [1] * 6 + [0] * 2])}  # fmt: skip
    batch["input_ids"] = batch["input_ids"].at[1, 5].set(3).at[1, 6:].set(0)

    def forward(params: dict, batch: dict) -> tuple:
        loss, out = pretrain_forward(params, batch, jax.random.key(1), model=model,
                                     cfg=objective, deterministic=True)  # fmt: skip
        inputs = (batch["segment_ids"], batch["input_mask"])
        apply = partial(model.apply, {"params": params})
        cloze = apply(batch["input_ids"], *inputs, method=ElectraModel.generator_logits)
        energy = apply(out["fake_ids_BxL"], *inputs, method=ElectraModel.discriminator_logits)
        return loss, out, cloze, energy

    loss, out, cloze, energy = jax.jit(forward)(params, batch)
    log_p = np.asarray(jax.nn.log_softmax(cloze))
    ids = np.asarray(batch["input_ids"])
    candidates = [(b, t) for b in range(2) for t in range(L) if ids[b, t] > 4]
    cloze_loss = -sum(log_p[b, t, ids[b, t]] for b, t in candidates) / (len(candidates) + 1e-6)
    assert float(out["mlm_loss"]) == pytest.approx(cloze_loss, rel=1e-5)
    labels, fake = np.asarray(out["labels_BxL"]), np.asarray(out["fake_ids_BxL"])
    assert np.all(labels[fake != ids] == 1) and labels.sum() > 0  # every change is a write
    assert np.all(labels[(ids <= 4) | (np.asarray(batch["input_mask"]) == 0)] == 0)
    np.testing.assert_allclose(out["disc_logits_BxL"], nce_logits(energy, cloze, fake, MASK_PROB))
    metrics = finalize_metrics(metric_sums(out))  # the original's eval metrics, on NCE logits
    assert len(metrics) == 8 and all(np.isfinite(v) for v in metrics.values())
    expected = float(out["mlm_loss"]) + 50.0 * float(out["disc_loss"])
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # Gradient accumulation: each row's share divides by the whole batch's candidate count.
    den = loss_denominators(batch, objective)
    assert float(den["cloze"]) == len(candidates)
    forward_share = partial(pretrain_forward, model=model, cfg=objective, deterministic=True)
    share = jax.jit(lambda p, row: forward_share(p, row, jax.random.key(2), denominators=den))
    rows = [jax.tree.map(lambda x, b=b: x[b : b + 1], batch) for b in range(2)]
    shares = [share(params, row) for row in rows]
    assert sum(float(x[1]["mlm_loss"]) for x in shares) == pytest.approx(cloze_loss, rel=1e-5)


def short_run(modifier: str, tiny_config, workdir, eval_batches: int) -> None:
    """8 steps of the `tiny,MODIFIER` config, one layer: the loss falls, checkpoints and the
    export hold the modifier's parameter groups."""
    config = tiny_config(
        num_train_steps=8, log_every=1, eval_every=8, checkpoint_every=4,
        eval_batches=eval_batches, warmup_steps=1,
        **{"model.num_layers": 1, "mesh.num_devices": 1},
    )  # fmt: skip
    extra = get_config(f"tiny,{modifier}")
    config.model.two_tower_generator = extra.model.two_tower_generator
    config.model.untied_generator = extra.model.untied_generator
    config.objective.electric = extra.objective.electric
    train(config, str(workdir))
    records = read_metrics(str(workdir))
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 8 and np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    evaluated = [r for r in records if "eval/disc_auc" in r]
    assert bool(evaluated) == bool(eval_batches)
    assert all(np.isfinite(r["eval/disc_loss"]) for r in evaluated)
    assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]
    exported = load_model(str(workdir / "export"))[1]
    towers = {"electric": {"generator_ltr", "generator_rtl"}, "tied_generator": set()}[modifier]
    assert {k for k in exported if k.startswith("generator") and k != "generator_head"} == towers


def test_a_short_electric_run_trains_checkpoints_and_exports(tiny_config, tmp_path):
    short_run("electric", tiny_config, tmp_path, eval_batches=0)


@pytest.mark.slow
@pytest.mark.parametrize("modifier", ["electric", "tied_generator"])
def test_short_runs_with_held_out_evaluation(modifier, tiny_config, tmp_path):
    short_run(modifier, tiny_config, tmp_path, eval_batches=1)


def test_mfu_count_has_both_towers_and_the_head_at_every_position():
    """6 x matmul weights + 12 L H per layer (model/flops.py), worked by hand for a two-tower
    generator (G = 32, F = 128, one layer, E = 32: no projection) beside the 64-wide disc."""
    gen_tower = 4 * 32 * 32 + 2 * 32 * 128
    gen_head = 2 * 32 * 32 + 32 * 50  # dense 2G -> E, then the tied softmax, at all 8 positions
    disc = 4 * 64 * 64 + 2 * 64 * 256 + 32 * 64 + 64 * 65  # layer, projection, RTD head
    attention = 2 * 12 * 8 * 32 + 12 * 8 * 64
    expected = 6 * (2 * gen_tower + gen_head + disc) + attention
    assert train_flops_per_token(small(two_tower_generator=True), 8, 1) == expected
