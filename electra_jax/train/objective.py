"""The replaced-token-detection objective (docs/spec.md §2) as pure functions of (params, batch,
rng). A batch is a dict of int32 [B, L] arrays: `input_ids`, `input_mask`, `segment_ids`, and for
packed datasets `packing_ids` (each position's example number: masking and the losses are
per-token, so only the model reads it)."""

import dataclasses
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp

from electra_jax.errors import UserError
from electra_jax.model.config import ModelConfig
from electra_jax.model.electra import ElectraModel
from electra_jax.train import electric

Batch = dict[str, jax.Array]
# disc_auc from score histograms (summable over batches and devices): 65,536 bins uniform in
# logit space over [-16, 16), 4.9e-4 logits wide. Bins in probability space (the original's
# tf.metrics.auc has 200 thresholds) merge a young discriminator's nearly equal scores into one
# bin and report ~0.5 whatever their ranking.
AUC_BINS = 1 << 16
AUC_LOGIT_RANGE = 16.0
# What a position drawn more than once receives (spec §2.2): "floor_mean" (the original's
# scatter_update: the writes are summed and floor-divided by their count, position 0 never
# written) or "first" (the first used slot's value).
DuplicateWrites = Literal["floor_mean", "first"]


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Masking, sampling and loss settings (spec §2.8); defaults are the original's."""

    cls_id: int
    sep_id: int
    mask_id: int
    mask_prob: float = 0.15
    mask_token_prob: float = 0.85  # selected positions set to [MASK]; the rest keep the token
    max_predictions: int | None = None  # None: int((mask_prob + 0.005) * max_seq_len)
    positions_with_replacement: bool = True  # the original samples with replacement
    duplicate_positions: DuplicateWrites = "floor_mean"  # see DuplicateWrites
    temperature: float = 1.0
    disallow_correct: bool = False
    gen_weight: float = 1.0
    disc_weight: float = 50.0
    electra_objective: bool = True  # False: BERT masked-LM baseline, no discriminator
    # The original's `uniform_generator`: all-zero generator logits (uniform samples, MLM ln V).
    uniform_generator: bool = False
    # The original's `electric_objective` (spec §9): the noise-contrastive loss on the
    # discriminator's energies, the labels every written position; needs the two-tower generator.
    electric: bool = False

    def __post_init__(self) -> None:
        if self.duplicate_positions not in get_args(DuplicateWrites):
            expected = " or ".join(repr(v) for v in get_args(DuplicateWrites))
            raise ValueError(
                f"duplicate_positions={self.duplicate_positions!r}; expected {expected}"
            )

    def check_model(self, model: ModelConfig) -> None:
        """The pairings the original cannot run, as one-line UserErrors."""
        if self.electric and not model.two_tower_generator:
            raise UserError(
                "objective.electric=True needs model.two_tower_generator=True (the original's "
                "electric_objective forces it): use configs/pretrain.py:SIZE,electric"
            )
        if self.uniform_generator and model.two_tower_generator:
            raise UserError(
                "objective.uniform_generator=True has no use for model.two_tower_generator=True "
                "(the original cannot run both): set one of them to False"
            )

    def num_predictions(self, seq_len: int) -> int:
        if self.max_predictions is not None:
            return self.max_predictions
        return max_predictions_per_seq(seq_len, self.mask_prob)


def max_predictions_per_seq(seq_len: int, mask_prob: float) -> int:
    """N slots per row (spec §2.1)."""
    return int((mask_prob + 0.005) * seq_len)


@dataclasses.dataclass(frozen=True)
class MaskedBatch:
    """The selected positions and what the generator sees."""

    positions_BxN: jax.Array  # int32; unused slots hold 0
    weights_BxN: jax.Array  # float32; 1 for used slots
    targets_BxN: jax.Array  # original ids at the positions
    masked_ids_BxL: jax.Array  # generator input


def candidates_mask(batch: Batch, cfg: ObjectiveConfig) -> jax.Array:
    """Real tokens that are not [CLS], [SEP] or [MASK] may be selected."""
    ids_BxL = batch["input_ids"]
    special_BxL = (ids_BxL == cfg.cls_id) | (ids_BxL == cfg.sep_id) | (ids_BxL == cfg.mask_id)
    return (batch["input_mask"] > 0) & ~special_BxL


def num_to_predict(batch: Batch, cfg: ObjectiveConfig, num_slots: int) -> jax.Array:
    """Used slots per row, k (spec §2.1; round half to even, as tf.round)."""
    num_real_B = jnp.sum(batch["input_mask"], axis=-1).astype(jnp.float32)
    count_B = jnp.round(num_real_B * cfg.mask_prob).astype(jnp.int32)
    return jnp.maximum(1, jnp.minimum(num_slots, count_B))


def used_slots(batch: Batch, cfg: ObjectiveConfig) -> jax.Array:
    """The used slots of each row: k, at most the candidates without replacement, 0 for a row
    without any candidate. A function of the batch alone (no random draw)."""
    cand_BxL = candidates_mask(batch, cfg)
    count_B = num_to_predict(batch, cfg, cfg.num_predictions(cand_BxL.shape[-1]))
    if not cfg.positions_with_replacement:
        count_B = jnp.minimum(count_B, jnp.sum(cand_BxL, axis=-1))
    return jnp.where(jnp.any(cand_BxL, axis=-1), count_B, 0)


def loss_denominators(batch: Batch, cfg: ObjectiveConfig) -> dict[str, jax.Array]:
    """What the two losses divide by (spec §2.6): used slots and real tokens of `batch`. Gradient
    accumulation divides every micro-batch by the whole batch's, so that it computes the whole
    batch's loss (a mean of micro-batch means would weight emptier micro-batches more)."""
    return {
        "mlm": jnp.sum(used_slots(batch, cfg)).astype(jnp.float32),
        "disc": jnp.sum(batch["input_mask"] > 0).astype(jnp.float32),
        "cloze": jnp.sum(candidates_mask(batch, cfg)).astype(jnp.float32),  # two-tower generator
    }


def select_positions(
    rng: jax.Array, batch: Batch, cfg: ObjectiveConfig
) -> tuple[jax.Array, jax.Array]:
    """(positions, weights) of N slots per row drawn over the candidates (spec §2.2), or without
    replacement by Gumbel top-k. Rows without any candidate get all-zero weights."""
    B, L = batch["input_ids"].shape
    N = cfg.num_predictions(L)
    cand_BxL = candidates_mask(batch, cfg)
    logits_BxL = jnp.where(cand_BxL, 0.0, -jnp.inf)
    logits_BxL = jnp.where(jnp.any(cand_BxL, axis=-1)[:, None], logits_BxL, 0.0)
    if cfg.positions_with_replacement:
        positions_BxN = jax.random.categorical(rng, logits_BxL, axis=-1, shape=(N, B)).T
    else:
        gumbel_BxL = jax.random.gumbel(rng, (B, L))
        _, positions_BxN = jax.lax.top_k(logits_BxL + gumbel_BxL, N)
    used_BxN = jnp.arange(N)[None, :] < used_slots(batch, cfg)[:, None]
    positions_BxN = jnp.where(used_BxN, positions_BxN, 0).astype(jnp.int32)
    return positions_BxN, used_BxN.astype(jnp.float32)


def first_occurrence(positions_BxN: jax.Array, weights_BxN: jax.Array) -> jax.Array:
    """True for used slots whose position no earlier used slot holds (`duplicate_positions`
    "first": only these slots write)."""
    N = positions_BxN.shape[-1]
    used_BxN = weights_BxN > 0
    same_BxNxN = positions_BxN[:, :, None] == positions_BxN[:, None, :]
    same_BxNxN &= used_BxN[:, :, None] & used_BxN[:, None, :]
    earlier_NxN = jnp.tril(jnp.ones((N, N), bool), k=-1)
    return used_BxN & ~jnp.any(same_BxNxN & earlier_NxN, axis=-1)


def scatter_floor_mean(
    ids_BxL: jax.Array, updates_BxN: jax.Array, positions_BxN: jax.Array, used_BxN: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The original's `scatter_update` on ids (spec §2.2): at each position the used slots'
    updates are summed and floor-divided by their count, so a position drawn twice with s1, s2
    gets floor((s1 + s2) / 2); position 0 is never written. Returns (ids, written mask)."""
    B, L = ids_BxL.shape
    rows_Bx1 = jnp.arange(B)[:, None]
    used_BxN = used_BxN.astype(jnp.int32)
    count_BxL = jnp.zeros((B, L), jnp.int32).at[rows_Bx1, positions_BxN].add(used_BxN)
    sum_BxL = jnp.zeros((B, L), jnp.int32).at[rows_Bx1, positions_BxN].add(used_BxN * updates_BxN)
    written_BxL = (count_BxL > 0) & (jnp.arange(L) > 0)[None, :]
    mean_BxL = jnp.floor_divide(sum_BxL, jnp.maximum(count_BxL, 1))
    return jnp.where(written_BxL, mean_BxL, ids_BxL), written_BxL


def mask_batch(rng: jax.Array, batch: Batch, cfg: ObjectiveConfig) -> MaskedBatch:
    """Selects positions and masks the generator's input (spec §2.3): a position is [MASK] if any
    of its slots chose [MASK] (with "floor_mean", as the original, never position 0)."""
    select_rng, mask_rng = jax.random.split(rng)
    ids_BxL = batch["input_ids"]
    positions_BxN, weights_BxN = select_positions(select_rng, batch, cfg)
    targets_BxN = jnp.take_along_axis(ids_BxL, positions_BxN, axis=-1)
    to_mask_BxN = jax.random.uniform(mask_rng, positions_BxN.shape) < cfg.mask_token_prob
    to_mask_BxN &= weights_BxN > 0
    if cfg.duplicate_positions == "floor_mean":
        mask_ids_BxN = jnp.full(positions_BxN.shape, cfg.mask_id, ids_BxL.dtype)
        masked_ids_BxL, _ = scatter_floor_mean(ids_BxL, mask_ids_BxN, positions_BxN, to_mask_BxN)
    else:
        rows_BxN = jnp.broadcast_to(jnp.arange(ids_BxL.shape[0])[:, None], positions_BxN.shape)
        is_masked_BxL = jnp.zeros(ids_BxL.shape, bool).at[rows_BxN, positions_BxN].max(to_mask_BxN)
        masked_ids_BxL = jnp.where(is_masked_BxL, cfg.mask_id, ids_BxL)
    return MaskedBatch(positions_BxN, weights_BxN, targets_BxN, masked_ids_BxL)


def sample_tokens(
    rng: jax.Array, logits_BxNxV: jax.Array, targets_BxN: jax.Array, cfg: ObjectiveConfig
) -> jax.Array:
    """Gumbel-max sample from softmax(logits / temperature), float32, no gradient (spec §2.4)."""
    logits_BxNxV = jax.lax.stop_gradient(logits_BxNxV).astype(jnp.float32) / cfg.temperature
    if cfg.disallow_correct:
        V = logits_BxNxV.shape[-1]
        logits_BxNxV -= 1000.0 * jax.nn.one_hot(targets_BxN, V, dtype=jnp.float32)
    uniform_BxNxV = jax.random.uniform(rng, logits_BxNxV.shape, jnp.float32)
    gumbel_BxNxV = -jnp.log(-jnp.log(uniform_BxNxV + 1e-9) + 1e-9)
    return jnp.argmax(logits_BxNxV + gumbel_BxNxV, axis=-1).astype(jnp.int32)


def replace_tokens(
    batch: Batch, masked: MaskedBatch, samples_BxN: jax.Array,
    duplicates: DuplicateWrites = "floor_mean",
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """Discriminator input and labels (spec §2.5): 1 where the written id differs from the
    original (never on padding). A position drawn twice gets the floor of its samples' mean (the
    original's scatter_update) or, with `duplicates="first"`, its first slot's sample."""
    ids_BxL = batch["input_ids"]
    B, L = ids_BxL.shape
    positions_BxN, used_BxN = masked.positions_BxN, masked.weights_BxN > 0
    if duplicates == "floor_mean":
        fake_ids_BxL, _ = scatter_floor_mean(ids_BxL, samples_BxN, positions_BxN, used_BxN)
    else:
        first_BxN = first_occurrence(positions_BxN, masked.weights_BxN)
        target_BxN = jnp.where(first_BxN, positions_BxN, L)  # out of range: dropped
        rows_Bx1 = jnp.arange(B)[:, None]
        fake_ids_BxL = ids_BxL.at[rows_Bx1, target_BxN].set(samples_BxN, mode="drop")
    labels_BxL = (fake_ids_BxL != ids_BxL) & (batch["input_mask"] > 0)
    return fake_ids_BxL, labels_BxL.astype(jnp.int32)


def uniform_logits(shape: tuple[int, ...]) -> jax.Array:
    """All-zero generator logits (`uniform_generator`), made opaque to XLA: without the barrier
    it evaluates the log-softmax, argmax and gathers of a constant [B, N, V] array at compile
    time (constant folding: 9-17 s per compile at V = 30522, issue 20)."""
    return jax.lax.optimization_barrier(jnp.zeros(shape, jnp.float32))


def weighted_mean(
    losses: jax.Array, weights: jax.Array, denominator: jax.Array | None = None
) -> jax.Array:
    """sum(w * loss) / (sum(w) + 1e-6), the original's reduction of both losses (spec §2.6);
    `denominator` replaces sum(w) for a micro-batch (see `loss_denominators`)."""
    total = jnp.sum(weights) if denominator is None else denominator
    return jnp.sum(weights * losses) / (total + 1e-6)


def mlm_token_losses(logits_BxNxV: jax.Array, targets_BxN: jax.Array) -> jax.Array:
    log_probs_BxNxV = jax.nn.log_softmax(logits_BxNxV.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs_BxNxV, targets_BxN[..., None], axis=-1)[..., 0]


def mlm_loss(
    logits_BxNxV: jax.Array, targets_BxN: jax.Array, weights_BxN: jax.Array,
    denominator: jax.Array | None = None,
) -> jax.Array:  # fmt: skip
    return weighted_mean(mlm_token_losses(logits_BxNxV, targets_BxN), weights_BxN, denominator)


def disc_token_losses(logits_BxL: jax.Array, labels_BxL: jax.Array) -> jax.Array:
    """Sigmoid cross-entropy per token, numerically stable."""
    x_BxL, y_BxL = logits_BxL.astype(jnp.float32), labels_BxL.astype(jnp.float32)
    return jnp.maximum(x_BxL, 0) - x_BxL * y_BxL + jnp.log1p(jnp.exp(-jnp.abs(x_BxL)))


def disc_loss(
    logits_BxL: jax.Array, labels_BxL: jax.Array, mask_BxL: jax.Array,
    denominator: jax.Array | None = None,
) -> jax.Array:  # fmt: skip
    """Over all real tokens, [CLS] and [SEP] included."""
    losses_BxL = disc_token_losses(logits_BxL, labels_BxL)
    return weighted_mean(losses_BxL, mask_BxL.astype(jnp.float32), denominator)


def pretrain_forward(
    params: Any, batch: Batch, rng: jax.Array, *, model: ElectraModel, cfg: ObjectiveConfig,
    deterministic: bool = False, denominators: dict[str, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:  # fmt: skip
    """Total loss and every intermediate the metrics need, for one batch (a micro-batch's share
    of the whole batch's loss with the whole batch's `loss_denominators`)."""
    den = denominators or {}
    mask_rng, sample_rng, gen_dropout, disc_dropout = jax.random.split(rng, 4)
    variables, packing_ids_BxL = {"params": params}, batch.get("packing_ids")
    segment_ids_BxL, mask_BxL = batch["segment_ids"], batch["input_mask"]
    with jax.named_scope("masking"):  # named scopes label the ops in profiles
        masked = mask_batch(mask_rng, batch, cfg)
    cloze_BxLxV = None  # a two-tower generator's logits at every position (spec §9)
    if cfg.uniform_generator and cfg.electra_objective:
        gen_logits_BxNxV = uniform_logits((*masked.positions_BxN.shape, model.config.vocab_size))
    else:
        two_tower = model.config.two_tower_generator  # it reads the unmasked input, everywhere
        gen_ids_BxL = batch["input_ids"] if two_tower else masked.masked_ids_BxL
        gen_logits = model.apply(
            variables, gen_ids_BxL, segment_ids_BxL, mask_BxL,
            None if two_tower else masked.positions_BxN, deterministic, packing_ids_BxL,
            method=ElectraModel.generator_logits, rngs={"dropout": gen_dropout},
        )  # fmt: skip
        cloze_BxLxV = gen_logits if two_tower else None
        gen_logits_BxNxV = (
            electric.gather_positions(gen_logits, masked.positions_BxN) if two_tower else gen_logits
        )
    with jax.named_scope("mlm_loss"):
        if cloze_BxLxV is None:
            gen_loss = mlm_loss(
                gen_logits_BxNxV, masked.targets_BxN, masked.weights_BxN, den.get("mlm")
            )
        else:  # the cloze loss: every candidate token, as the original's `_get_cloze_outputs`
            cloze_weights_BxL = candidates_mask(batch, cfg).astype(jnp.float32)
            ids_BxL = batch["input_ids"]
            gen_loss = mlm_loss(cloze_BxLxV, ids_BxL, cloze_weights_BxL, den.get("cloze"))
    out = {
        "mlm_loss": gen_loss,
        "gen_logits_BxNxV": gen_logits_BxNxV,
        "targets_BxN": masked.targets_BxN,
        "weights_BxN": masked.weights_BxN,
        "input_mask_BxL": mask_BxL,
    }
    if not cfg.electra_objective:
        out["loss"] = cfg.gen_weight * gen_loss
        return out["loss"], out
    with jax.named_scope("sampling"):
        samples_BxN = sample_tokens(sample_rng, gen_logits_BxNxV, masked.targets_BxN, cfg)
        fake_ids_BxL, labels_BxL = replace_tokens(
            batch, masked, samples_BxN, cfg.duplicate_positions
        )
        if cfg.electric:
            labels_BxL = electric.noise_positions(
                masked.positions_BxN, masked.weights_BxN, fake_ids_BxL.shape[-1],
                cfg.duplicate_positions,
            )  # fmt: skip
    disc_logits_BxL = model.apply(
        variables, fake_ids_BxL, segment_ids_BxL, mask_BxL, deterministic, packing_ids_BxL,
        method=ElectraModel.discriminator_logits, rngs={"dropout": disc_dropout},
    )  # fmt: skip
    if cfg.electric:
        disc_logits_BxL = electric.nce_logits(
            disc_logits_BxL, cloze_BxLxV, fake_ids_BxL, cfg.mask_prob
        )
    with jax.named_scope("disc_loss"):
        d_loss = disc_loss(disc_logits_BxL, labels_BxL, mask_BxL, den.get("disc"))
    out.update(
        disc_loss=d_loss,
        samples_BxN=samples_BxN,
        fake_ids_BxL=fake_ids_BxL,
        labels_BxL=labels_BxL,
        disc_logits_BxL=disc_logits_BxL,
        loss=cfg.gen_weight * gen_loss + cfg.disc_weight * d_loss,
    )
    return out["loss"], out


def metric_sums(out: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Additive statistics of one batch, so that evaluation aggregates exactly over batches and
    devices; `finalize_metrics` turns their sum into the metrics."""
    w_BxN, targets_BxN = out["weights_BxN"], out["targets_BxN"]
    gen_logits_BxNxV = out["gen_logits_BxNxV"]
    sums = {
        "mlm_weight": jnp.sum(w_BxN),
        "mlm_loss": jnp.sum(w_BxN * mlm_token_losses(gen_logits_BxNxV, targets_BxN)),
        "mlm_correct": jnp.sum(w_BxN * (jnp.argmax(gen_logits_BxNxV, -1) == targets_BxN)),
    }
    if "disc_logits_BxL" not in out:
        return sums
    m_BxL = out["input_mask_BxL"].astype(jnp.float32)
    labels_BxL, logits_BxL = out["labels_BxL"], out["disc_logits_BxL"]
    preds_BxL = (logits_BxL > 0).astype(jnp.int32)
    bins_BxL = auc_bins(logits_BxL)
    pos_BxL = m_BxL * labels_BxL
    neg_BxL = m_BxL * (1 - labels_BxL)
    sums.update(
        sampled_correct=jnp.sum(w_BxN * (out["samples_BxN"] == targets_BxN)),
        disc_weight=jnp.sum(m_BxL),
        disc_loss=jnp.sum(m_BxL * disc_token_losses(logits_BxL, labels_BxL)),
        disc_correct=jnp.sum(m_BxL * (preds_BxL == labels_BxL)),
        disc_true_pos=jnp.sum(m_BxL * preds_BxL * labels_BxL),
        disc_pred_pos=jnp.sum(m_BxL * preds_BxL),
        disc_label_pos=jnp.sum(pos_BxL),
        auc_pos_hist=jnp.zeros(AUC_BINS).at[bins_BxL.ravel()].add(pos_BxL.ravel()),
        auc_neg_hist=jnp.zeros(AUC_BINS).at[bins_BxL.ravel()].add(neg_BxL.ravel()),
    )
    return sums


def auc_bins(logits: jax.Array) -> jax.Array:
    """The histogram bin of each discriminator logit (uniform in logit space, edges clipped)."""
    scaled = (logits.astype(jnp.float32) + AUC_LOGIT_RANGE) * (AUC_BINS / (2 * AUC_LOGIT_RANGE))
    return jnp.clip(jnp.floor(scaled).astype(jnp.int32), 0, AUC_BINS - 1)


def histogram_auc(pos_hist: jax.Array, neg_hist: jax.Array) -> jax.Array:
    """ROC AUC from score histograms (ties within a bin count one half)."""
    pos_above = jnp.cumsum(pos_hist[::-1])[::-1] - pos_hist  # positives in higher bins
    pairs = jnp.sum(neg_hist * (pos_above + 0.5 * pos_hist))
    total = jnp.sum(pos_hist) * jnp.sum(neg_hist)
    return jnp.where(total > 0, pairs / jnp.maximum(total, 1.0), 0.5)


def finalize_metrics(sums: dict[str, jax.Array]) -> dict[str, float]:
    """The original's eight eval metrics (spec §2.7) from summed statistics."""

    def ratio(num: str, den: str) -> float:
        return float(sums[num] / jnp.maximum(sums[den], 1e-6))

    metrics = {
        "masked_lm_accuracy": ratio("mlm_correct", "mlm_weight"),
        "masked_lm_loss": ratio("mlm_loss", "mlm_weight"),
    }
    if "disc_loss" in sums:
        metrics.update(
            sampled_masked_lm_accuracy=ratio("sampled_correct", "mlm_weight"),
            disc_loss=ratio("disc_loss", "disc_weight"),
            disc_auc=float(histogram_auc(sums["auc_pos_hist"], sums["auc_neg_hist"])),
            disc_accuracy=ratio("disc_correct", "disc_weight"),
            disc_precision=ratio("disc_true_pos", "disc_pred_pos"),
            disc_recall=ratio("disc_true_pos", "disc_label_pos"),
        )
    return metrics
