"""The original's optimiser on optax (docs/spec.md §3): global-norm clip, Adam without bias
correction, decoupled weight decay, the overlapping warm-up x linear-decay schedule; each quirk a
switch (`OptimizerConfig`). optax's `scale_by_adam` always bias-corrects, hence our own."""

import dataclasses
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

NO_DECAY_PATTERN = r"LayerNorm|layer_norm|bias"


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Defaults reproduce the original exactly; the switches are the known improvements."""

    learning_rate: float = 5e-4
    num_train_steps: int = 1_000_000
    warmup_steps: int = 10_000
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-6
    clip_norm: float | None = 1.0
    bias_correction: bool = False  # the original has none
    # "overlap": linear decay over all steps times min(1, step/warmup) (the original);
    # "sequential": warm-up to lr, then linear decay over the remaining steps.
    schedule: str = "overlap"
    end_learning_rate: float = 0.0
    power: float = 1.0
    no_decay_pattern: str = NO_DECAY_PATTERN


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """The LR at optimiser step `count` (0 for the first update, as the original's global_step)."""
    total, warmup = cfg.num_train_steps, cfg.warmup_steps
    lr, end = cfg.learning_rate, cfg.end_learning_rate

    def polynomial(step: jax.Array, horizon: int) -> jax.Array:
        frac = jnp.clip(step / max(horizon, 1), 0.0, 1.0)
        return (lr - end) * (1.0 - frac) ** cfg.power + end

    def schedule(count: jax.Array) -> jax.Array:
        step = jnp.asarray(count, jnp.float32)
        warm = jnp.minimum(1.0, step / warmup) if warmup > 0 else 1.0
        if cfg.schedule == "overlap":
            return polynomial(step, total) * warm
        if cfg.schedule == "sequential":
            decayed = polynomial(step - warmup, total - warmup)
            return jnp.where(step < warmup, lr * warm, decayed)
        raise ValueError(f"schedule={cfg.schedule!r}; expected overlap or sequential")

    return schedule


class ScaleByAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def keep_unless(apply_update: jax.Array | bool, new: Any, old: Any) -> Any:
    """`new` where `apply_update`, else `old`, leaf by leaf; applied where each new value is
    produced, so XLA updates the state in place (train/step.py's non-finite policy)."""
    return jax.tree.map(lambda n, o: jnp.where(apply_update, n, o), new, old)


def scale_by_adam(
    b1: float, b2: float, eps: float, bias_correction: bool
) -> optax.GradientTransformationExtraArgs:
    """Adam's direction m / (sqrt(v) + eps), optionally without bias correction (original);
    `apply_update=False` (a non-finite step) keeps the moments and count as they were."""

    def init(params: Any) -> ScaleByAdamState:
        zeros = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params)
        return ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(
        updates: Any, state: ScaleByAdamState, params: Any = None, *,
        apply_update: jax.Array | bool = True, **extra: Any,
    ) -> tuple:  # fmt: skip
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        mu, nu = keep_unless(apply_update, (mu, nu), (state.mu, state.nu))
        count = keep_unless(apply_update, optax.safe_increment(state.count), state.count)
        mu_hat, nu_hat = mu, nu
        if bias_correction:
            mu_hat = optax.tree.bias_correction(mu, b1, count)
            nu_hat = optax.tree.bias_correction(nu, b2, count)
        direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
        return direction, ScaleByAdamState(count, mu, nu)

    return optax.GradientTransformationExtraArgs(init, update)


def scale_by_learning_rate(schedule: optax.Schedule) -> optax.GradientTransformationExtraArgs:
    """optax's `scale_by_learning_rate` (same state), whose count stays on a skipped step."""

    def init(params: Any) -> optax.ScaleByScheduleState:
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(
        updates: Any, state: optax.ScaleByScheduleState, params: Any = None, *,
        apply_update: jax.Array | bool = True, **extra: Any,
    ) -> tuple:  # fmt: skip
        step_size = -schedule(state.count)
        updates = jax.tree.map(lambda u: jnp.asarray(step_size, u.dtype) * u, updates)
        count = keep_unless(apply_update, optax.safe_increment(state.count), state.count)
        return updates, optax.ScaleByScheduleState(count=count)

    return optax.GradientTransformationExtraArgs(init, update)


def path_name(path: tuple) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params: Any, pattern: str = NO_DECAY_PATTERN) -> Any:
    """True for parameters that get weight decay: names not matching LayerNorm / bias."""
    regex = re.compile(pattern)
    return jax.tree_util.tree_map_with_path(lambda p, _: not regex.search(path_name(p)), params)


def make_optimizer(
    cfg: OptimizerConfig, lr_scale: Callable[[Any], Any] | None = None,
    schedule: optax.Schedule | None = None,
) -> optax.GradientTransformation:  # fmt: skip
    """clip -> Adam direction -> + wd * param -> * -lr, optionally scaled per parameter by
    `lr_scale(params) -> pytree of multipliers` (fine-tuning's layer-wise decay). `schedule`:
    `learning_rate_schedule(cfg)` when the caller already built it (for logging).

    With `tx.update(..., apply_update=False)` the state keeps its values but the updates are not
    zero (stale; NaN on a skipped first step with bias correction): the caller keeps its params,
    as train_step does. Every stateful part must honour `apply_update` (stock optax ones don't).
    """
    parts = []
    if cfg.clip_norm:  # None or 0: no clipping
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(scale_by_adam(cfg.b1, cfg.b2, cfg.eps, cfg.bias_correction))
    if cfg.weight_decay:
        decays = lambda p: decay_mask(p, cfg.no_decay_pattern)
        parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=decays))
    if lr_scale is not None:  # a fixed factor per parameter, computed from the tree
        scaled = lambda updates, _: jax.tree.map(lambda u, m: u * m, updates, lr_scale(updates))
        parts.append(optax.stateless(scaled))
    parts.append(scale_by_learning_rate(schedule or learning_rate_schedule(cfg)))
    return optax.chain(*parts)
