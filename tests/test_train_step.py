"""The compiled pre-training step: skipped non-finite steps and an in-place state update."""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest
from test_golden_step import fixed_batch

from bench import profile_step
from configs.pretrain import get_config
from electra_jax.errors import UserError
from electra_jax.model.config import preset
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train.objective import ObjectiveConfig
from electra_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer
from electra_jax.train.step import RNG_IMPLS, StepConfig, create_train_state, make_train_step
from electra_jax.train.trainer import validate_config


@functools.cache
def tiny_step(rng_impl: str = "threefry2x32", nonfinite_test_step: int = 1):
    """A jitted tiny step (state donated), poisoning step 1 by default, and a fresh-state maker.

    Cached: the tests of this module share three compiles.
    """
    model = ElectraModel(preset("tiny"))
    params = nn.unbox(init_params(model, jax.random.key(0)))
    opt_cfg = OptimizerConfig(learning_rate=1e-3, num_train_steps=10, warmup_steps=0)
    tx = make_optimizer(opt_cfg)
    step = make_train_step(
        model,
        ObjectiveConfig(cls_id=2, sep_id=3, mask_id=4),
        tx,
        StepConfig(seed=0, nonfinite_test_step=nonfinite_test_step, rng_impl=rng_impl),
        learning_rate_schedule(opt_cfg),
    )
    init_state = jax.jit(lambda p: create_train_state(p, tx))  # distinct buffers, as trained
    return jax.jit(step, donate_argnums=0), lambda: init_state(params)


def test_nonfinite_step_leaves_params_and_optimizer_state_unchanged():
    step, new_state = tiny_step()
    state, _ = step(new_state(), fixed_batch())
    before = jax.device_get((state.params, state.opt_state))
    state, metrics = step(state, fixed_batch())
    assert not np.isfinite(float(metrics["loss"]))
    assert int(state.step) == 2 and int(state.nonfinite_steps) == 1
    assert int(state.first_nonfinite_step) == 1
    after = jax.device_get((state.params, state.opt_state))
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(new, old)
    state, metrics = step(state, fixed_batch())  # and the next finite step applies again
    moved = jax.device_get(state.params)
    assert np.isfinite(float(metrics["loss"]))
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(after[0]), jax.tree.leaves(moved), strict=True)
    )


def test_donated_state_is_updated_in_place_without_copies():
    """XLA copies a donated buffer that is read after its new value is written (a select over
    the finished state did that to 160 of tiny's 240 state arrays): none may be copied.

    Compiled as in training, without the test-only poisoned step (XLA's copy decisions depend
    on the whole program: with the poison the old code happened to compile without copies)."""
    step, new_state = tiny_step(nonfinite_test_step=-1)
    state = new_state()
    hlo = step.lower(state, fixed_batch()).compile().as_text()
    copied, num_arrays = profile_step.copied_parameters(hlo)
    assert num_arrays >= 3 * len(jax.tree.leaves(state.params))  # params, mu, nu, batch...
    assert copied == [], f"{len(copied)} donated state arrays copied, e.g. {copied[:3]}"


def first_loss(rng_impl: str) -> float:
    step, new_state = tiny_step(rng_impl)
    return float(step(new_state(), fixed_batch())[1]["loss"])


def test_rbg_keys_train_deterministically_with_their_own_stream():
    """rng_impl=rbg: the same seed gives the same step; masks and dropout differ from threefry."""
    rbg = first_loss("rbg")
    assert np.isfinite(rbg) and rbg == first_loss("rbg")
    assert rbg != first_loss("threefry2x32")


def test_unknown_rng_impl_is_a_one_line_config_error():
    config = get_config("tiny")
    config.rng_impl = "philox"
    with pytest.raises(UserError, match="config.rng_impl='philox'; expected one of threefry2x32"):
        validate_config(config)
    for impl in RNG_IMPLS:
        config.rng_impl = impl
        validate_config(config)
