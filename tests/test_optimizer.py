"""The original's optimiser: no bias correction, decay mask, clip, overlapping schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from electra_jax.train.optimizer import (
    OptimizerConfig,
    decay_mask,
    learning_rate_schedule,
    make_optimizer,
)


def test_overlapping_schedule_matches_recipe_formula():
    cfg = OptimizerConfig(learning_rate=5e-4, num_train_steps=1000, warmup_steps=100)
    schedule = learning_rate_schedule(cfg)
    for step in (0, 1, 50, 100, 101, 500, 999, 1000):
        expected = 5e-4 * (1 - step / 1000) * min(1.0, step / 100)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-4, abs=1e-12)  # float32


def test_sequential_schedule_switch_peaks_at_lr():
    cfg = OptimizerConfig(learning_rate=1e-3, num_train_steps=1000, warmup_steps=100,
                          schedule="sequential")  # fmt: skip
    schedule = learning_rate_schedule(cfg)
    assert float(schedule(100)) == pytest.approx(1e-3)
    assert float(schedule(550)) == pytest.approx(0.5e-3, rel=1e-5)


def test_decay_mask_skips_layernorm_and_bias():
    params = {
        "LayerNorm": {"scale": 1.0, "bias": 1.0},
        "dense": {"kernel": 1.0, "bias": 1.0},
        "generator_head": {"output_bias": 1.0},
        "embeddings": {"word_embeddings": 1.0},
    }
    mask = decay_mask(params)
    assert mask["dense"]["kernel"] and mask["embeddings"]["word_embeddings"]
    assert not any([mask["LayerNorm"]["scale"], mask["LayerNorm"]["bias"], mask["dense"]["bias"],
                    mask["generator_head"]["output_bias"]])  # fmt: skip


def reference_update(g, p, lr, steps, wd=0.01, b1=0.9, b2=0.999, eps=1e-6):
    """The original AdamWeightDecayOptimizer by hand (no bias correction), scalar params."""
    m = v = 0.0
    for _ in range(steps):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (np.sqrt(v) + eps) + wd * p)
    return p


def test_update_equals_original_adam_without_bias_correction():
    cfg = OptimizerConfig(learning_rate=1e-2, num_train_steps=10**9, warmup_steps=0,
                          clip_norm=None)  # fmt: skip
    tx = make_optimizer(cfg)
    params = {"dense": {"kernel": jnp.array(0.5)}, "LayerNorm": {"bias": jnp.array(0.5)}}
    grads = jax.tree.map(lambda _: jnp.array(0.2), params)
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert float(params["dense"]["kernel"]) == pytest.approx(
        reference_update(0.2, 0.5, 1e-2, 3), rel=1e-5
    )
    assert float(params["LayerNorm"]["bias"]) == pytest.approx(
        reference_update(0.2, 0.5, 1e-2, 3, wd=0.0), rel=1e-5
    )
    corrected = make_optimizer(
        OptimizerConfig(
            learning_rate=1e-2,
            num_train_steps=10**9,
            warmup_steps=0,
            clip_norm=None,
            bias_correction=True,
            weight_decay=0.0,
        )  # fmt: skip
    )
    p = {"w": jnp.array(0.5)}
    u, _ = corrected.update({"w": jnp.array(0.2)}, corrected.init(p), p)
    assert float(u["w"]) == pytest.approx(-1e-2, rel=1e-4)  # bias-corrected first step: lr*sign


def test_global_norm_clip_is_first_in_the_chain():
    """A huge gradient is clipped to norm 1 before Adam: the moments see the clipped value."""
    cfg = OptimizerConfig(learning_rate=1.0, num_train_steps=10**9, warmup_steps=0,
                          weight_decay=0.0)  # fmt: skip
    tx = make_optimizer(cfg)
    params = {"a": jnp.zeros(2)}
    state = tx.init(params)
    _, state = tx.update({"a": jnp.array([30.0, 40.0])}, state, params)
    adam_state = state[1]
    np.testing.assert_allclose(np.asarray(adam_state.mu["a"]), [0.06, 0.08], rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, lr_scale",
    [
        ({}, None),
        ({"bias_correction": True}, None),
        ({"clip_norm": None, "weight_decay": 0.0}, None),
        ({}, lambda tree: jax.tree.map(lambda _: 0.5, tree)),  # fine-tuning's layer-wise decay
    ],
)
def test_skipped_update_keeps_every_state_leaf(overrides, lr_scale):
    """apply_update=False (a non-finite step) leaves moments and both counts as they were."""
    cfg = OptimizerConfig(learning_rate=1e-2, num_train_steps=100, warmup_steps=10, **overrides)
    tx = make_optimizer(cfg, lr_scale=lr_scale)
    params = {"dense": {"kernel": jnp.ones((2, 3))}, "LayerNorm": {"bias": jnp.zeros(3)}}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    _, state = tx.update(grads, tx.init(params), params)
    nan_grads = jax.tree.map(lambda g: g * jnp.nan, grads)
    skip = jax.jit(lambda g, s, p: tx.update(g, s, p, apply_update=jnp.array(False)))
    updates, kept = skip(nan_grads, state, params)
    for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(kept), strict=True):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    assert [int(x) for x in jax.tree.leaves(kept) if x.ndim == 0] == [1, 1]
    assert all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(updates))
