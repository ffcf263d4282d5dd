"""The replaced-token-detection objective from first principles (docs/spec.md, 2).

`pretrain_forward` runs here with a stub in place of the model: the stub records what each
tower is given and returns logits the test chose, so every expectation is computed in plain
numpy from the batch and those logits, never from an output of the code under test.

Positions may be drawn twice by default (spec 2.2); what a position drawn twice receives (the
floor of its samples' mean) is pinned in tests/test_pretrain_fidelity.py, so those positions are
left out of the exact checks here (or positions are drawn without replacement).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from electra_jax.train.objective import ObjectiveConfig, pretrain_forward, sample_tokens

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
V = 64  # the stub's vocabulary
B, L = 16, 64  # N = int(0.155 * 64) = 9 slots per row
MARGIN = 40.0  # added to the chosen token's logit: a Gumbel draw cannot overturn it (max ~17)


def make_batch(seed: int) -> dict[str, np.ndarray]:
    """Right-padded rows [CLS] A [SEP] B [SEP] of varied lengths, a few literal [MASK]s."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((B, L), np.int32)
    mask = np.zeros((B, L), np.int32)
    segs = np.zeros((B, L), np.int32)
    for b in range(B):
        n = int(rng.integers(8, L + 1))
        row = rng.integers(5, V, n)
        split = int(rng.integers(2, n - 2))
        row[0], row[split], row[n - 1] = CLS, SEP, SEP
        row[1:split][rng.random(split - 1) < 0.05] = MASK  # never a candidate
        ids[b, :n], mask[b, :n], segs[b, split + 1 : n] = row, 1, 1
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segs}


def num_slots(cfg: ObjectiveConfig) -> int:
    return int((cfg.mask_prob + 0.005) * L)  # spec 2.1


def candidates(batch: dict) -> np.ndarray:
    ids = batch["input_ids"]
    return (batch["input_mask"] > 0) & ~np.isin(ids, [CLS, SEP, MASK])


def used_slots(batch: dict, cfg: ObjectiveConfig) -> np.ndarray:
    """Spec 2.1: the first k = max(1, min(N, round(n_real * p))) slots of a row are used
    (float32 product, half to even); without replacement at most one slot per candidate."""
    N = num_slots(cfg)
    n_real = batch["input_mask"].sum(1).astype(np.float32)
    k = np.maximum(1, np.minimum(N, np.round(n_real * np.float32(cfg.mask_prob))))
    if not cfg.positions_with_replacement:
        k = np.minimum(k, candidates(batch).sum(1))
    return np.arange(N)[None, :] < k[:, None]


def sigmoid_xent(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    return np.logaddexp(0.0, x) - labels * x  # -[y log s(x) + (1 - y) log(1 - s(x))]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


@dataclasses.dataclass
class StubModel:
    """Stands in for ElectraModel in `pretrain_forward`: records each tower's inputs.

    Generator logits: standard normal noise, plus MARGIN on a token chosen per slot from the
    position it is given (the original token where `keep_original`, else another token), so
    the sample is known in advance. Discriminator logits: `disc_logits`.
    """

    batch: dict
    seed: int = 0
    equal_share: float = 0.3  # share of slots whose chosen token is the original one
    disc_logits: np.ndarray | None = None
    unused_slot_logits: float = 0.0  # added to token 5 at unused slots (must not count)

    def __post_init__(self):
        self.config = type("StubConfig", (), {"vocab_size": V, "two_tower_generator": False})()
        self.calls: dict[str, tuple] = {}
        if self.disc_logits is None:
            self.disc_logits = np.random.default_rng(self.seed + 7).normal(size=(B, L))

    def apply(self, variables, *args, method=None, rngs=None):
        name = method if isinstance(method, str) else method.__name__
        self.calls[name] = tuple(None if a is None else np.asarray(a) for a in args)
        if name == "generator_logits":
            return jnp.asarray(self.generator_logits(self.calls[name][3]))
        assert name == "discriminator_logits", name
        return jnp.asarray(self.disc_logits, jnp.float32)

    def chosen_tokens(self, positions: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 1)
        original = np.take_along_axis(self.batch["input_ids"], positions, axis=1)
        other = rng.integers(5, V, positions.shape)
        other = np.where(other == original, 5 + (other - 4) % (V - 5), other)  # != original
        return np.where(rng.random(positions.shape) < self.equal_share, original, other)

    def generator_logits(self, positions: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 2)
        logits = rng.normal(size=(*positions.shape, V))
        logits += MARGIN * np.eye(V)[self.chosen_tokens(positions)]
        return logits.astype(np.float32)


def run(cfg: ObjectiveConfig, seed: int = 0, **stub_kwargs) -> tuple[StubModel, dict, dict]:
    """pretrain_forward on `make_batch(seed)` with a stub model; returns (stub, batch, out)."""
    batch = make_batch(seed)
    stub = StubModel(batch, seed=seed, **stub_kwargs)
    if stub.unused_slot_logits:
        used = used_slots(batch, cfg)
        plain = stub.generator_logits

        def generator_logits(positions):
            logits = plain(positions)
            logits[~used, 5] += stub.unused_slot_logits
            return logits

        stub.generator_logits = generator_logits
    _, out = forward(stub, batch, cfg, seed + 100)
    return stub, batch, jax.tree.map(np.asarray, out)


def forward(stub: StubModel, batch: dict, cfg: ObjectiveConfig, key: int) -> tuple:
    """pretrain_forward eagerly (the stub records concrete arrays), batch as device arrays."""
    device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    return pretrain_forward(
        None, device_batch, jax.random.key(key), model=stub, cfg=cfg, deterministic=True
    )


def objective(**kwargs) -> ObjectiveConfig:
    return ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, **kwargs)


def selection(stub: StubModel, batch: dict, cfg: ObjectiveConfig):
    """The positions the generator was asked about, the used-slot mask (checked against the
    spec's count), and per position how many used slots hold it."""
    positions = stub.calls["generator_logits"][3]
    used = used_slots(batch, cfg)
    times = np.zeros((B, L), int)
    for b, n in zip(*np.nonzero(used), strict=True):
        times[b, positions[b, n]] += 1
    return positions, used, times


@pytest.mark.parametrize(
    "replacement,mask_token_prob", [(True, 0.85), (False, 0.85), (False, 1.0), (True, 1.0)]
)
def test_generator_sees_mask_or_kept_token_exactly_at_selected_positions(
    replacement, mask_token_prob
):
    cfg = objective(positions_with_replacement=replacement, mask_token_prob=mask_token_prob)
    masked, kept, total_selected = 0, 0, 0
    for seed in range(4):
        stub, batch, out = run(cfg, seed)
        ids = batch["input_ids"]
        gen_ids, gen_segs, gen_mask = stub.calls["generator_logits"][:3]
        np.testing.assert_array_equal(gen_segs, batch["segment_ids"])
        np.testing.assert_array_equal(gen_mask, batch["input_mask"])
        positions, used, times = selection(stub, batch, cfg)
        np.testing.assert_array_equal(out["weights_BxN"], used.astype(np.float32))
        rows = np.arange(B)[:, None]
        assert candidates(batch)[rows, positions][used].all(), "a non-candidate was selected"
        np.testing.assert_array_equal(
            out["targets_BxN"][used], np.take_along_axis(ids, positions, 1)[used]
        )
        if not replacement:
            assert times.max() == 1
        selected = times > 0
        np.testing.assert_array_equal(gen_ids[~selected], ids[~selected])
        is_mask = gen_ids[selected] == MASK
        assert np.all(is_mask | (gen_ids[selected] == ids[selected]))
        masked, kept = masked + is_mask.sum(), kept + (~is_mask).sum()
        total_selected += selected.sum()
    if mask_token_prob == 1.0:
        assert kept == 0, "every selected position must become [MASK]"
    else:  # both outcomes occur (their 85 / 15 split: tests/test_objective.py)
        assert masked > 0.7 * total_selected and kept > 0.05 * total_selected


@pytest.mark.parametrize("replacement", [True, False])
def test_discriminator_sees_samples_at_selected_positions_and_original_elsewhere(replacement):
    cfg = objective(positions_with_replacement=replacement)
    checked = 0
    for seed in range(4):
        stub, batch, out = run(cfg, seed)
        ids = batch["input_ids"]
        disc_ids, disc_segs, disc_mask = stub.calls["discriminator_logits"][:3]
        np.testing.assert_array_equal(disc_segs, batch["segment_ids"])
        np.testing.assert_array_equal(disc_mask, batch["input_mask"])
        positions, used, times = selection(stub, batch, cfg)
        chosen = stub.chosen_tokens(positions)
        np.testing.assert_array_equal(out["samples_BxN"][used], chosen[used])
        expected = ids.copy()
        for b, n in zip(*np.nonzero(used), strict=True):
            expected[b, positions[b, n]] = chosen[b, n]
        once = times == 1  # a position drawn twice: tests/test_pretrain_fidelity.py
        np.testing.assert_array_equal(disc_ids[times == 0], ids[times == 0])
        np.testing.assert_array_equal(disc_ids[once], expected[once])
        np.testing.assert_array_equal(out["fake_ids_BxL"], disc_ids)
        checked += once.sum()
    assert checked > 100


@pytest.mark.parametrize("replacement", [True, False])
def test_labels_are_one_exactly_where_the_sample_differs_from_the_original(replacement):
    cfg = objective(positions_with_replacement=replacement)
    ones, zeros_at_selected = 0, 0
    for seed in range(4):
        stub, batch, out = run(cfg, seed, equal_share=0.4)
        ids, labels = batch["input_ids"], out["labels_BxL"]
        positions, used, times = selection(stub, batch, cfg)
        chosen = stub.chosen_tokens(positions)
        expected = np.zeros((B, L), np.int32)
        for b, n in zip(*np.nonzero(used), strict=True):
            expected[b, positions[b, n]] = chosen[b, n] != ids[b, positions[b, n]]
        once = times == 1
        np.testing.assert_array_equal(labels[times == 0], 0)  # padding included
        np.testing.assert_array_equal(labels[once], expected[once])
        # Any position, a duplicate too: 1 exactly where the written id is not the original.
        disc_ids = stub.calls["discriminator_logits"][0]
        np.testing.assert_array_equal(labels, (disc_ids != ids) & (batch["input_mask"] > 0))
        ones += expected[once].sum()
        zeros_at_selected += (expected[once] == 0).sum()
    assert ones > 50 and zeros_at_selected > 20, "fixture should give both kinds of slot"


def test_disc_loss_is_the_mean_over_real_tokens_and_ignores_padding():
    cfg = objective(positions_with_replacement=False)
    batch = make_batch(0)
    real = batch["input_mask"] > 0
    assert (~real).sum() > 100, "fixture should have padding"
    logits = np.random.default_rng(3).normal(size=(B, L)) * 2
    losses = []
    for pad_logit in (0.0, 30.0, -30.0):
        disc_logits = np.where(real, logits, pad_logit)
        stub, batch, out = run(cfg, 0, disc_logits=disc_logits)
        labels = stub_labels(stub, batch, cfg)
        expected = sigmoid_xent(disc_logits, labels)[real].mean()
        assert float(out["disc_loss"]) == pytest.approx(expected, rel=1e-5)
        losses.append(float(out["disc_loss"]))
    assert losses[0] == losses[1] == losses[2]


def stub_labels(stub: StubModel, batch: dict, cfg: ObjectiveConfig) -> np.ndarray:
    """Reference labels (no duplicates: drawn without replacement)."""
    assert not cfg.positions_with_replacement
    positions, used, _ = selection(stub, batch, cfg)
    chosen = stub.chosen_tokens(positions)
    labels = np.zeros((B, L))
    rows = np.nonzero(used)[0]
    labels[rows, positions[used]] = chosen[used] != batch["input_ids"][rows, positions[used]]
    return labels


def reference_mlm(stub: StubModel, batch: dict, cfg: ObjectiveConfig) -> float:
    """Mean of -log p(original token) over the used slots of the whole batch."""
    positions, used, _ = selection(stub, batch, cfg)
    logits = stub.generator_logits(positions)
    targets = np.take_along_axis(batch["input_ids"], positions, 1)
    nll = -np.take_along_axis(log_softmax(logits), targets[..., None], -1)[..., 0]
    return float(nll[used].mean())


@pytest.mark.parametrize("replacement", [True, False])
def test_mlm_loss_averages_over_the_selected_slots_only(replacement):
    cfg = objective(positions_with_replacement=replacement)
    stub, batch, out = run(cfg, 1, unused_slot_logits=25.0)
    _, used, _ = selection(stub, batch, cfg)
    assert (~used).sum() > 10 and len(set(used.sum(1))) > 2, "fixture: unused slots, varied k"
    expected = reference_mlm(stub, batch, cfg)
    assert float(out["mlm_loss"]) == pytest.approx(expected, rel=1e-5)
    # Not the mean of per-row means: rows with more slots weigh more.
    nll_rows = [reference_mlm_row(stub, batch, cfg, b) for b in range(B)]
    assert abs(np.mean(nll_rows) - expected) > 1e-3 * expected


def reference_mlm_row(stub: StubModel, batch: dict, cfg: ObjectiveConfig, b: int) -> float:
    positions, used, _ = selection(stub, batch, cfg)
    logits = stub.generator_logits(positions)
    targets = np.take_along_axis(batch["input_ids"], positions, 1)
    nll = -np.take_along_axis(log_softmax(logits), targets[..., None], -1)[..., 0]
    return float(nll[b][used[b]].mean())


@pytest.mark.parametrize("weights", [None, (2.0, 3.0), (0.5, 0.0)])
def test_total_loss_is_gen_weight_times_mlm_plus_disc_weight_times_disc(weights):
    if weights is None:
        cfg = objective(positions_with_replacement=False)
        gen_w, disc_w = 1.0, 50.0  # spec 2.6: the original's weights are the defaults
        assert (cfg.gen_weight, cfg.disc_weight) == (gen_w, disc_w)
    else:
        gen_w, disc_w = weights
        cfg = objective(positions_with_replacement=False, gen_weight=gen_w, disc_weight=disc_w)
    batch = make_batch(2)
    stub = StubModel(batch, seed=2)
    loss, out = forward(stub, batch, cfg, 102)
    real = batch["input_mask"] > 0
    mlm = reference_mlm(stub, batch, cfg)
    disc = sigmoid_xent(stub.disc_logits, stub_labels(stub, batch, cfg))[real].mean()
    assert float(loss) == pytest.approx(gen_w * mlm + disc_w * disc, rel=1e-5)
    assert float(out["loss"]) == float(loss)


def chi_square_pvalue(samples: np.ndarray, probs: np.ndarray) -> float:
    counts = np.bincount(samples.ravel(), minlength=len(probs))
    expected = probs * samples.size
    assert expected.min() > 20, "every category needs a healthy expected count"
    return stats.chisquare(counts, expected).pvalue


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_gumbel_sampling_matches_softmax(temperature):
    """Two rows with different distributions, 40,000 draws each: a chi-square test against
    softmax(logits / temperature) per row (fixed keys, so the p-values are fixed too)."""
    cfg = objective(temperature=temperature)
    row_logits = np.array(
        [[2.0, 1.0, 0.0, -1.0, 0.5, -2.0, 1.5, 0.0], [-1.0, 0.0, 3.0, 0.3, -0.5, 1.0, 0.0, 2.2]],
        np.float32,
    )
    M = 40_000
    logits = np.broadcast_to(row_logits[:, None, :], (2, M, 8))
    targets = np.zeros((2, M), np.int32)
    for seed in range(2):
        samples = np.asarray(sample_tokens(jax.random.key(seed), logits, targets, cfg))
        for row in range(2):
            probs = softmax(row_logits[row] / temperature)
            p = chi_square_pvalue(samples[row], probs)
            assert p > 1e-3, (row, p, np.bincount(samples[row], minlength=8) / M, probs)


def test_disallow_correct_samples_the_other_tokens_in_proportion():
    """The target is never drawn; the others keep their softmax proportions (spec 2.4)."""
    cfg = objective(disallow_correct=True)
    row_logits = np.array([0.5, 4.0, -0.5, 1.0, 0.0, 1.5], np.float32)
    M = 60_000
    logits = np.broadcast_to(row_logits, (1, M, 6))
    targets = np.full((1, M), 1, np.int32)  # the target is by far the likeliest token
    samples = np.asarray(sample_tokens(jax.random.key(0), logits, targets, cfg))
    assert not np.any(samples == 1)
    others = np.delete(np.arange(6), 1)
    probs = softmax(row_logits[others])
    remap = np.searchsorted(others, samples)
    assert chi_square_pvalue(remap, probs) > 1e-3


@pytest.mark.parametrize("replacement", [True, False])
def test_disallow_correct_never_writes_the_original_token(replacement):
    """Through the whole forward: the generator all but certainly predicts the original token
    at every slot, yet no sample equals it and every selected position is labelled replaced."""
    base = objective(positions_with_replacement=replacement)
    cfg = dataclasses.replace(base, disallow_correct=True)
    for seed in range(3):
        _, batch, out_default = run(base, seed, equal_share=1.0)
        stub, batch, out = run(cfg, seed, equal_share=1.0)
        used = out["weights_BxN"] > 0
        # Without the switch the sample is the original token at every used slot...
        np.testing.assert_array_equal(
            out_default["samples_BxN"][used], out_default["targets_BxN"][used]
        )
        # ...with it, never.
        targets = np.take_along_axis(batch["input_ids"], stub.calls["generator_logits"][3], 1)
        assert not np.any(out["samples_BxN"][used] == targets[used])
        _, _, times = selection(stub, batch, cfg)
        assert out["labels_BxL"][times == 1].all()  # drawn twice: spec 8.5, not pinned
        np.testing.assert_array_equal(out["labels_BxL"][times == 0], 0)
