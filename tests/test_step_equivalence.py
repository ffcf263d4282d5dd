"""Speed switches that must not change the result (README: "the objective stays the same").

- `grad_accum_steps=4` gives the gradient of one step on the whole batch, to float tolerance.
- `steps_per_call=4` gives the parameters of four single steps, bit for bit, also when the run
  is stopped after the first call and resumed.
"""

import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from electra_jax.files.model_io import load_model
from electra_jax.model.config import preset
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train.checkpoints import RunCheckpoints
from electra_jax.train.objective import ObjectiveConfig, pretrain_forward
from electra_jax.train.step import StepConfig, create_train_state, make_train_step
from electra_jax.train.trainer import train

PAD, CLS, SEP, MASK = 0, 2, 3, 4
B, L = 8, 16
T_STAR = 77  # the generator's certain sample (see deterministic_setup)


def recording_optimizer() -> optax.GradientTransformationExtraArgs:
    """An optimiser whose state is the last gradient it was given, and which never moves the
    params: the step's accumulated gradient, read back exactly from `state.opt_state`."""

    def init(params):
        return jax.tree.map(jnp.zeros_like, params)

    def update(grads, state, params=None, apply_update=True, **extra):
        del state, params, apply_update, extra
        return jax.tree.map(jnp.zeros_like, grads), grads

    return optax.GradientTransformationExtraArgs(init, update)


@functools.cache
def deterministic_setup():
    """Model, objective and params under which a step's loss does not depend on its RNG.

    The step draws masks per micro-batch (fold_in(rng, index)), so with accumulation the masks
    of a row differ from the whole-batch step's. Rather than compare the gradient of a fixed
    masked batch (which would bypass the step's own masking), every random choice is made
    certain, so the real step, masking and sampling included, computes the same objective
    either way:
    - dropout 0 in both towers;
    - mask_prob 1 without replacement: every candidate is selected, whatever the RNG (only
      the slot order varies, and both losses sum over slots);
    - mask_token_prob 0: every selected token is kept (no uniform draw is below 0);
    - the generator's output bias is +30 on token T_STAR: its logit beats any other by more
      than any Gumbel noise can (|logits| < 1 at init, noise in [-3.1, 16.7]), so every
      sample is T_STAR and the labels are fixed (checked below).
    """
    cfg = preset("tiny", num_layers=1, hidden_dropout=0.0, attention_dropout=0.0)
    model = ElectraModel(cfg)
    objective = ObjectiveConfig(
        cls_id=CLS, sep_id=SEP, mask_id=MASK, mask_prob=1.0, mask_token_prob=0.0,
        positions_with_replacement=False,
    )  # fmt: skip
    params = nn.unbox(init_params(model, jax.random.key(0)))
    bias = params["generator_head"]["output_bias"]
    params["generator_head"]["output_bias"] = bias.at[T_STAR].add(30.0)
    return model, objective, params


def make_batch(lengths: list[int], seed: int = 0) -> dict[str, jax.Array]:
    """Rows [CLS] A [SEP] B [SEP] of the given lengths, right-padded; some tokens are T_STAR
    (a sample equal to the original: label 0)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((B, L), np.int32)
    mask = np.zeros((B, L), np.int32)
    segs = np.zeros((B, L), np.int32)
    for b, n in enumerate(lengths):
        row = rng.integers(5, 8192, n)
        row[rng.random(n) < 0.2] = T_STAR
        split = int(rng.integers(2, n - 2))
        row[0], row[split], row[n - 1] = CLS, SEP, SEP
        ids[b, :n], mask[b, :n], segs[b, split + 1 : n] = row, 1, 1
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segs}


def device_batch(lengths: list[int]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in make_batch(lengths).items()}


@functools.cache
def jitted_step(grad_accum_steps: int):
    """The real train step with `grad_accum_steps` micro-batches (one compile per value)."""
    model, objective, _ = deterministic_setup()
    step = make_train_step(
        model, objective, recording_optimizer(),
        StepConfig(seed=0, grad_accum_steps=grad_accum_steps), optax.constant_schedule(0.0),
    )  # fmt: skip
    return jax.jit(step)


def step_gradients(batch: dict, grad_accum_steps: int) -> tuple[dict, dict]:
    """(gradient, metrics) of one train step with `grad_accum_steps` micro-batches."""
    _, _, params = deterministic_setup()
    state = create_train_state(params, recording_optimizer())
    state, metrics = jitted_step(grad_accum_steps)(state, batch)
    return jax.device_get(state.opt_state), jax.device_get(metrics)


def assert_trees_close(a, b, rtol: float) -> None:
    """Leaf by leaf to `rtol`, with an absolute floor of `rtol` x the largest entry anywhere
    (some gradients are zero up to rounding, e.g. the attention key bias's)."""
    flat_a, flat_b = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    scale = max(float(np.max(np.abs(x))) for _, x in flat_a)
    for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
        np.testing.assert_allclose(
            y, x, rtol=rtol, atol=rtol * scale, err_msg=jax.tree_util.keystr(path)
        )


# The losses are means over a batch's real tokens and used slots; the test below has unequal
# micro-batches, this one equal shares. These lengths differ from row to row, yet give 24 real
# tokens and 18 candidates to every micro-batch, whether row b goes to micro-batch b % 4 (as
# step.split_micro_batches does) or to b // 2: the test does not pin the assignment.
EQUAL_SHARE_LENGTHS = [16, 8, 13, 11, 8, 16, 11, 13]


def test_deterministic_setup_makes_the_objective_independent_of_the_rng():
    """The premise of the accumulation test: two RNGs, one loss, every sample T_STAR."""
    model, objective, params = deterministic_setup()
    batch = device_batch(EQUAL_SHARE_LENGTHS)
    forward = jax.jit(lambda rng: pretrain_forward(params, batch, rng, model=model, cfg=objective))
    loss_a, out_a = forward(jax.random.key(1))
    loss_b, out_b = forward(jax.random.key(2))
    used = np.asarray(out_a["weights_BxN"]) > 0
    assert used.sum() == 4 * 18
    assert (np.asarray(out_a["samples_BxN"])[used] == T_STAR).all()
    np.testing.assert_array_equal(out_a["labels_BxL"], out_b["labels_BxL"])
    labels = np.asarray(out_a["labels_BxL"])
    assert labels.sum() > 40 and (labels[np.asarray(batch["input_ids"]) == T_STAR] == 0).all()
    assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-6)


def test_grad_accumulation_equals_one_step_on_the_whole_batch():
    """The real step, masking and sampling included, with 4 micro-batches and with none: the
    same losses and gradient to float tolerance. The masks would differ (each micro-batch
    draws its own), so the setup makes every random choice certain (`deterministic_setup`);
    the gradient is read back exactly through a recording optimiser."""
    batch = device_batch(EQUAL_SHARE_LENGTHS)
    grads_full, metrics_full = step_gradients(batch, 1)
    grads_accum, metrics_accum = step_gradients(batch, 4)
    for key in ("loss", "mlm_loss", "disc_loss", "grad_norm"):
        assert float(metrics_accum[key]) == pytest.approx(float(metrics_full[key]), rel=1e-5)
    assert float(metrics_full["grad_norm"]) > 1.0
    assert_trees_close(grads_full, grads_accum, rtol=1e-4)


def test_grad_accumulation_equals_one_step_when_micro_batches_hold_unequal_padding():
    """Each micro-batch divides by the whole batch's counts (objective.loss_denominators); it
    failed while the step averaged the four micro-batch means."""
    batch = device_batch([16, 16, 16, 16, 16, 6, 16, 6])  # micro-batches of 32, 22, 32, 22 tokens
    grads_full, metrics_full = step_gradients(batch, 1)
    grads_accum, metrics_accum = step_gradients(batch, 4)
    assert float(metrics_accum["loss"]) == pytest.approx(float(metrics_full["loss"]), rel=1e-5)
    assert_trees_close(grads_full, grads_accum, rtol=1e-4)


# ----------------------------------------------------------------------------- K steps per call

# One device, one layer: two compiles (K = 1 and K = 4) dominate the time; that sharding changes
# nothing is tests/test_pretrain.py's test.
RUN = dict(
    num_train_steps=8, log_every=4, eval_every=8, checkpoint_every=4, eval_batches=0,
    export=True, **{"model.num_layers": 1, "mesh.num_devices": 1},
)  # fmt: skip


def exported(workdir) -> dict:
    return load_model(os.path.join(workdir, "export"))[1]


def final_metrics(workdir) -> dict:
    """Step 8's logged metrics (each step logged once, also after a resume)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [4, 8]
    # Not vacuous: the params moved (a positive rate, a gradient) and the loss changed.
    assert records[1]["learning_rate"] > 0 and records[1]["grad_norm"] > 0
    assert records[1]["loss"] != records[0]["loss"]
    return records[-1]


def assert_trees_equal(a: dict, b: dict) -> None:
    flat_a, flat_b = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(y, x, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def single_step_run(tiny_config, tmp_path_factory) -> str:
    """8 steps, one per call: the reference."""
    workdir = str(tmp_path_factory.mktemp("single"))
    train(tiny_config(**RUN, steps_per_call=1), workdir)
    return workdir


LOSSES = ("loss", "mlm_loss", "disc_loss", "grad_norm", "learning_rate")


def test_four_steps_per_call_equal_four_single_steps_bit_for_bit(
    tiny_config, tmp_path, single_step_run
):
    config = tiny_config(**RUN, steps_per_call=4)
    train(config, str(tmp_path))
    assert_trees_equal(exported(single_step_run), exported(tmp_path))
    reference, multi = final_metrics(single_step_run), final_metrics(tmp_path)
    assert {k: multi[k] for k in LOSSES} == {k: reference[k] for k in LOSSES}


def test_four_steps_per_call_stopped_after_one_call_and_resumed_is_bit_exact(
    tiny_config, tmp_path, single_step_run, monkeypatch, capsys
):
    """Stopped as a preemption notice stops it (a save at step 4, then exit), then rerun."""
    config = tiny_config(**RUN, steps_per_call=4)
    with monkeypatch.context() as patch:
        patch.setattr(RunCheckpoints, "reached_preemption", lambda self, step: step == 4)
        train(config, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]
    assert not os.path.exists(tmp_path / "export")
    capsys.readouterr()
    train(config, str(tmp_path))
    assert "resume: from step 4" in capsys.readouterr().out
    assert_trees_equal(exported(single_step_run), exported(tmp_path))
    reference, resumed = final_metrics(single_step_run), final_metrics(tmp_path)
    assert {k: resumed[k] for k in LOSSES} == {k: reference[k] for k in LOSSES}
