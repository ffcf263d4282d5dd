"""Train state and the jitted pre-training step (gradient accumulation, K steps per call).

The RNG of step s is fold_in(key(seed), s): a resumed run draws the same masks and samples as
an uninterrupted one.

Non-finite steps, the whole policy in one place: a step whose loss or gradient norm is not
finite is never applied. The optimiser's stateful parts keep their state (`tx.update(...,
apply_update=finite)`, honoured by every transformation in train/optimizer.py) and the params
are selected leaf by leaf (`keep_unless`) where each new value is produced, so XLA updates the
donated state in place (a select over the finished state would copy all of it: a measured cost,
tests/test_train_step.py). The state counts such steps; the trainer then stops before the next
checkpoint (`on_nonfinite="stop"`, exit 3) or logs the count and goes on ("skip").
`StepConfig.nonfinite_test_step` poisons one step's loss for the tests.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from electra_jax.model.electra import ElectraModel
from electra_jax.train.objective import (
    Batch,
    ObjectiveConfig,
    loss_denominators,
    metric_sums,
    pretrain_forward,
)
from electra_jax.train.optimizer import keep_unless


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    nonfinite_steps: jax.Array  # how many steps had a non-finite loss or gradient
    first_nonfinite_step: jax.Array  # -1 while none


def create_train_state(params: Any, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(
        step=jnp.zeros([], jnp.int32),
        params=params,
        opt_state=tx.init(params),
        nonfinite_steps=jnp.zeros([], jnp.int32),
        first_nonfinite_step=jnp.full([], -1, jnp.int32),
    )


# PRNG implementations of the step's key: threefry2x32 is JAX's default (same stream on every
# backend, partitioned across a mesh); rbg / unsafe_rbg use XLA's RngBitGenerator (fewer ops per
# number; backend-specific streams; not partitioned on GPU meshes). See configs/pretrain.py.
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    seed: int
    grad_accum_steps: int = 1
    nonfinite_test_step: int = -1  # test-only: poison the loss at this step
    rng_impl: str = "threefry2x32"


def split_micro_batches(batch: Batch, num: int) -> Batch:
    """[B, L] -> [num, B / num, L] (row b goes to micro-batch b % num: keeps host locality)."""
    return jax.tree.map(
        lambda x: x.reshape(x.shape[0] // num, num, *x.shape[1:]).swapaxes(0, 1), batch
    )


def make_train_step(
    model: ElectraModel, objective: ObjectiveConfig, tx: optax.GradientTransformation,
    step_cfg: StepConfig, lr_schedule: Callable[[jax.Array], jax.Array],
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:  # fmt: skip
    """One optimiser step on one global batch."""

    def loss_and_grads(params: Any, batch: Batch, rng: jax.Array, den: Any = None) -> tuple:
        def loss_fn(p: Any) -> tuple:
            loss, out = pretrain_forward(
                p, batch, rng, model=model, cfg=objective, denominators=den
            )
            return loss, {k: out[k] for k in ("loss", "mlm_loss", "disc_loss") if k in out}

        (_, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return parts, grads

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(jax.random.key(step_cfg.seed, impl=step_cfg.rng_impl), state.step)
        A = step_cfg.grad_accum_steps
        if A == 1:
            parts, grads = loss_and_grads(state.params, batch, rng)
        else:  # each micro-batch's share of the whole batch's loss: their sum is that loss
            micro, den = split_micro_batches(batch, A), loss_denominators(batch, objective)

            def accumulate(carry: tuple, xs: tuple) -> tuple:
                micro_batch, index = xs
                rng_i = jax.random.fold_in(rng, index)
                return jax.tree.map(jnp.add, carry, loss_and_grads(
                    state.params, micro_batch, rng_i, den)), None  # fmt: skip

            first_micro = jax.tree.map(lambda x: x[0], micro)
            shapes = jax.eval_shape(loss_and_grads, state.params, first_micro, rng, den)
            zeros = jax.tree.map(jnp.zeros_like, shapes)
            (parts, grads), _ = jax.lax.scan(accumulate, zeros, (micro, jnp.arange(A)))
        if step_cfg.nonfinite_test_step >= 0:
            poison = jnp.where(state.step == step_cfg.nonfinite_test_step, jnp.nan, 0.0)
            parts = dict(parts, loss=parts["loss"] + poison)
        with jax.named_scope("optimizer"):
            grad_norm = optax.tree.norm(grads)
            finite = jnp.isfinite(parts["loss"]) & jnp.isfinite(grad_norm)
            # Non-finite steps: see the module docstring.
            updates, new_opt_state = tx.update(
                grads, state.opt_state, state.params, apply_update=finite
            )
            new_params = optax.apply_updates(state.params, updates)
            new_params = keep_unless(finite, new_params, state.params)
        first_bad = state.first_nonfinite_step
        new_state = TrainState(
            step=state.step + 1, params=new_params, opt_state=new_opt_state,
            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
            first_nonfinite_step=jnp.where((first_bad < 0) & ~finite, state.step, first_bad),
        )  # fmt: skip
        metrics = dict(parts, grad_norm=grad_norm, learning_rate=lr_schedule(state.step))
        return new_state, metrics

    return train_step


def make_multi_step(
    train_step: Callable[[TrainState, Batch], tuple[TrainState, dict]], num_steps: int
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """K steps per call over stacked batches [K, B, L] (fewer dispatches for tiny models);
    returns the metrics of the last step."""
    if num_steps == 1:
        return train_step

    def multi_step(state: TrainState, batches: Batch) -> tuple[TrainState, dict]:
        state, metrics = jax.lax.scan(train_step, state, batches)
        return state, jax.tree.map(lambda x: x[-1], metrics)

    return multi_step


def make_eval_step(
    model: ElectraModel, objective: ObjectiveConfig
) -> Callable[[Any, Batch, jax.Array], dict[str, jax.Array]]:
    """Additive metric statistics of one held-out batch (dropout off)."""

    def eval_step(params: Any, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
        _, out = pretrain_forward(
            params, batch, rng, model=model, cfg=objective, deterministic=True
        )
        return metric_sums(out)

    return eval_step
