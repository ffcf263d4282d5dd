"""Electric (the original's `electric_objective`; docs/spec.md §9): the pieces that differ from
replaced-token detection, as pure functions. `objective.pretrain_forward` calls them when
`ObjectiveConfig.electric` is set; the masking, sampling and losses stay objective.py's.

The discriminator's output is an energy E(x)_t; with the cloze generator's q(x_t | context) as
the noise distribution and k/n = mask_prob / (1 - mask_prob) noise samples per data sample, the
probability that the token at t is noise is sigmoid(E + log q + log(k/n)), and the loss is that
sigmoid's cross-entropy against "the sampler wrote here" over all real tokens.
"""

import jax
import jax.numpy as jnp


def gather_positions(x_BxLxD: jax.Array, positions_BxN: jax.Array) -> jax.Array:
    """x at each row's positions: [B, N, D] (the original's `gather_positions`)."""
    return jnp.take_along_axis(x_BxLxD, positions_BxN[..., None], axis=1)


def noise_positions(
    positions_BxN: jax.Array, weights_BxN: jax.Array, seq_len: int, duplicates: str
) -> jax.Array:
    """Electric's labels, int32 [B, L]: 1 at every position a used slot wrote a sample to, whether
    or not the sample equals the original token (the original's `scatter_update` mask). With
    `duplicates="floor_mean"` (the original's arithmetic) position 0 is never written."""
    B = positions_BxN.shape[0]
    used_BxN = (weights_BxN > 0).astype(jnp.int32)
    count_BxL = jnp.zeros((B, seq_len), jnp.int32).at[jnp.arange(B)[:, None], positions_BxN]
    written_BxL = count_BxL.add(used_BxN) > 0
    if duplicates == "floor_mean":
        written_BxL &= (jnp.arange(seq_len) > 0)[None, :]
    return written_BxL.astype(jnp.int32)


def log_noise_probs(cloze_logits_BxLxV: jax.Array, ids_BxL: jax.Array) -> jax.Array:
    """log q(x_t | context) of each token of `ids_BxL` under the cloze generator, float32 [B, L],
    without gradient (the original stops it: only the cloze loss trains the generator)."""
    log_q_BxLxV = jax.nn.log_softmax(cloze_logits_BxLxV.astype(jnp.float32), axis=-1)
    log_q_BxL = jnp.take_along_axis(log_q_BxLxV, ids_BxL[..., None], axis=-1)[..., 0]
    return jax.lax.stop_gradient(log_q_BxL)


def nce_logits(
    energy_BxL: jax.Array, cloze_logits_BxLxV: jax.Array, fake_ids_BxL: jax.Array,
    mask_prob: float,
) -> jax.Array:  # fmt: skip
    """The noise-contrastive logit of "this token is noise" (spec §9): the discriminator head's
    output + log q(token) + log(mask_prob / (1 - mask_prob)), float32 [B, L]."""
    log_ratio = jnp.log(mask_prob / (1.0 - mask_prob))
    log_q_BxL = log_noise_probs(cloze_logits_BxLxV, fake_ids_BxL)
    return energy_BxL.astype(jnp.float32) + log_q_BxL + log_ratio
