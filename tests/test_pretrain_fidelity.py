"""Pre-training defaults pinned to the original (issue 19 items 4-8, issue 20's uniform_generator),
each switch to its alternative. Expected values come from hand arithmetic or from the original's
formulas written out here, never from the code under test.
"""

import json
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_fixtures import COMMON, GEN, padded_batch, randomize

from configs.pretrain import get_config
from electra_jax.config_fields import build
from electra_jax.convert.hf import hf_to_params, params_to_hf
from electra_jax.errors import UserError
from electra_jax.model.config import PRESETS, ModelConfig, preset
from electra_jax.model.electra import ElectraModel
from electra_jax.model.flops import paper_train_flops
from electra_jax.model.layers import Encoder
from electra_jax.model.shapes import expected_shapes
from electra_jax.train.objective import (
    MaskedBatch,
    ObjectiveConfig,
    pretrain_forward,
    replace_tokens,
)
from launch import ablation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLS, SEP, MASK = 2, 3, 4

# ---------------------------------------------------------------- item 5: duplicate positions


def hand_batch() -> tuple[dict, MaskedBatch, jnp.ndarray]:
    """Two rows, four slots each. Row 0: position 1 drawn twice (samples 20, 25), position 3
    once (30), slot 3 unused. Row 1: position 2 drawn three times (9, 11, 13; original 11) and
    position 4 once (7, the original)."""
    ids = jnp.array([[CLS, 10, 11, 12, 13, SEP, 0, 0], [CLS, 5, 11, 6, 7, 8, SEP, 0]], jnp.int32)
    mask = (jnp.arange(8)[None, :] < jnp.array([[6], [7]])).astype(jnp.int32)
    positions = jnp.array([[1, 3, 1, 0], [2, 4, 2, 2]], jnp.int32)
    weights = jnp.array([[1, 1, 1, 0], [1, 1, 1, 1]], jnp.float32)
    samples = jnp.array([[20, 30, 25, 99], [9, 7, 11, 13]], jnp.int32)
    batch = {"input_ids": ids, "input_mask": mask}
    masked = MaskedBatch(positions, weights, jnp.zeros_like(positions), ids)
    return batch, masked, samples


def test_position_drawn_twice_gets_the_floor_of_the_mean_by_default():
    batch, masked, samples = hand_batch()
    fake, labels = replace_tokens(batch, masked, samples)
    # Row 0: pos 1: floor((20 + 25) / 2) = 22; pos 3: 30; the unused slot (99 at 0) is dropped.
    # Row 1: pos 2: floor((9 + 11 + 13) / 3) = 11 = the original: label 0 although two of the
    # three samples differ from it; pos 4: 7 = the original: label 0.
    np.testing.assert_array_equal(fake[0], [CLS, 22, 11, 30, 13, SEP, 0, 0])
    np.testing.assert_array_equal(labels[0], [0, 1, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(fake[1], [CLS, 5, 11, 6, 7, 8, SEP, 0])
    np.testing.assert_array_equal(labels[1], [0] * 8)

    # Row 1 redrawn: position 4 twice with 7 and 8 (original 7): floor(15 / 2) = 7, label 0;
    # a used slot at position 0 is not written (scatter_update ignores index 0); 3 gets 9.
    positions = jnp.array([[1, 3, 1, 0], [4, 4, 0, 3]], jnp.int32)
    samples = jnp.array([[20, 30, 25, 99], [7, 8, 50, 9]], jnp.int32)
    masked = MaskedBatch(positions, masked.weights_BxN, masked.targets_BxN, masked.masked_ids_BxL)
    fake, labels = replace_tokens(batch, masked, samples)
    np.testing.assert_array_equal(fake[1], [CLS, 5, 11, 9, 7, 8, SEP, 0])
    np.testing.assert_array_equal(labels[1], [0, 0, 0, 1, 0, 0, 0, 0])


def test_first_switch_writes_the_first_slots_sample():
    batch, masked, samples = hand_batch()
    fake, labels = replace_tokens(batch, masked, samples, duplicates="first")
    np.testing.assert_array_equal(fake[0], [CLS, 20, 11, 30, 13, SEP, 0, 0])
    np.testing.assert_array_equal(fake[1], [CLS, 5, 9, 6, 7, 8, SEP, 0])  # pos 2: first is 9
    np.testing.assert_array_equal(labels[1], [0, 0, 1, 0, 0, 0, 0, 0])


class RecordingStub:
    """Stands in for ElectraModel: random generator logits, zero discriminator logits; keeps the
    positions the generator was asked about."""

    def __init__(self, vocab_size: int):
        self.config = ModelConfig(vocab_size=vocab_size)
        self.positions = None

    def apply(self, variables, *args, method=None, rngs=None):
        if method.__name__ == "generator_logits":
            self.positions = np.asarray(args[3])
            shape = (*args[3].shape, self.config.vocab_size)
            return jax.random.normal(jax.random.key(7), shape) * 3.0
        return jnp.zeros(args[0].shape, jnp.float32)


@pytest.mark.parametrize("mode", ["floor_mean", "first"])
def test_pretrain_forward_writes_duplicates_as_configured(mode):
    """Full rows whose tokens are mostly literal [MASK]s (not candidates): 9 used slots over 8
    candidates make duplicates common. At every position the discriminator's input is checked
    against numpy arithmetic on the slots' samples."""
    B, L, V = 16, 64, 50
    rng = np.random.default_rng(0)
    ids = np.full((B, L), MASK, np.int32)
    ids[:, 1:9] = rng.integers(5, V, (B, 8))
    ids[:, 0], ids[:, -1] = CLS, SEP
    mask = np.ones((B, L), np.int32)
    batch = {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids)}
    cfg = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, duplicate_positions=mode)
    stub = RecordingStub(V)
    device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    _, out = pretrain_forward(None, device_batch, jax.random.key(3), model=stub, cfg=cfg)
    samples, used = np.asarray(out["samples_BxN"]), np.asarray(out["weights_BxN"]) > 0
    expected, duplicates = ids.copy(), 0
    for b in range(B):
        for p in set(stub.positions[b][used[b]]):
            slot_samples = samples[b][used[b] & (stub.positions[b] == p)]
            duplicates += len(slot_samples) > 1
            expected[b, p] = slot_samples.sum() // len(slot_samples)
            if mode == "first":
                expected[b, p] = slot_samples[0]
    assert duplicates > 10, "fixture should draw positions twice"
    np.testing.assert_array_equal(out["fake_ids_BxL"], expected)
    np.testing.assert_array_equal(out["labels_BxL"], (expected != ids) & (mask > 0))


def test_duplicate_positions_is_validated_and_defaults_to_the_original():
    assert get_config("small").objective.duplicate_positions == "floor_mean"
    with pytest.raises(UserError, match="duplicate_positions='last'; expected 'floor_mean' or"):
        build(ObjectiveConfig, {"duplicate_positions": "last"}, "objective", cls_id=2, sep_id=3,
              mask_id=4)  # fmt: skip


# ---------------------------------------------------------------- item 4: embeddings_project init


@pytest.mark.parametrize("init", ["glorot_uniform", "truncated_normal"])
def test_embeddings_project_kernel_init(init):
    """tf.layers.dense's default kernel: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); the switch:
    truncated normal 0.02 (|x| <= 0.04)."""
    E, H = 64, 192  # a = sqrt(6 / 256) = 0.153
    cfg = ModelConfig(embedding_size=E, hidden_size=H, num_layers=0, embeddings_project_init=init)
    encoder = Encoder(cfg, cfg.discriminator)
    emb = jnp.zeros((1, 2, E))
    params = encoder.init(jax.random.key(0), emb, jnp.ones((1, 2)), True)["params"]
    kernel = np.asarray(nn.unbox(params)["embeddings_project"]["kernel"])
    assert kernel.shape == (E, H)
    if init == "glorot_uniform":
        a = np.sqrt(6 / (E + H))
        assert np.abs(kernel).max() <= a and np.abs(kernel).max() > 0.98 * a
        assert abs(kernel.std() / (a / np.sqrt(3)) - 1) < 0.03
    else:
        assert np.abs(kernel).max() <= 0.04 and abs(kernel.std() / 0.0176 - 1) < 0.03
    assert get_config("small").model.embeddings_project_init == "glorot_uniform"


# ---------------------------------------------------------------- item 6: BERT baseline steps


def test_bert_modifier_uses_paper_table_6_steps():
    table_6 = {
        "small": (1_450_000, 1_000_000),
        "base": (1_000_000, 766_000),
        "large": (464_000, 400_000),
    }  # fmt: skip  BERT / ELECTRA
    for size, (bert_steps, electra_steps) in table_6.items():
        assert get_config(f"{size},bert").num_train_steps == bert_steps
        assert get_config(size).num_train_steps == electra_steps
    assert get_config("small,bert,runlocal").num_train_steps == 20


# ---------------------------------------------------------------- item 7: the paper's FLOPs count


def hand_tower_forward(h, l, s, v, e, i, heads, output_frac, discriminator):  # noqa: E741
    """flops_computation.py's TransformerHparams forward FLOPs per example, term by term as the
    original names them (dropout 4, LayerNorm 5, GELU 8, softmax 5 per element)."""
    block = dict(
        kqv=3 * 2 * h * h, kqv_bias=3 * h, attention_scores=2 * h * s,
        attn_softmax=5 * s * heads, attention_dropout=4 * s * heads, attention_scale=s * heads,
        attention_weighted_avg_values=2 * h * s, attn_output=2 * h * h, attn_output_bias=h,
        attn_output_dropout=4 * h, attn_output_residual=h, attn_output_layer_norm=5,
        intermediate=2 * h * i, intermediate_act=8 * i, intermediate_bias=i, output=2 * h * i,
        output_bias=h, output_dropout=4 * h, output_residual=h, output_layer_norm=5 * h,
    )  # fmt: skip
    embedding = dict(
        main_multiply=2 * e * v,
        tok_type_and_position=2 * e * (s + 2),
        add_tok_type_and_position=2 * e,
        emb_layer_norm=5 * e,
        emb_dropout=4 * e,
    )
    if e != h:
        embedding.update(hidden_kernel=2 * h * e, hidden_bias=h)
    if discriminator:
        head = dict(hidden=2 * h * h, hidden_bias=h, hidden_act=8 * h, logits=2 * h)
        head_total = sum(head.values()) * s
    else:
        head = dict(main_multiply=2 * e * v, hidden_kernel=2 * h * e, hidden_bias=e,
                    hidden_activation=8 * e, hidden_layernorm=5 * e, output_softmax=5 * v,
                    output_target_word=2 * v)  # fmt: skip
        head_total = output_frac * sum(head.values()) * s
    return l * sum(block.values()) * s + sum(embedding.values()) * s + head_total


def hand_train(batch, steps, *towers):
    return sum(2 * batch * steps * hand_tower_forward(*t) for t in towers)


FRAC = 0.15625
V = 30522
# (preset, BERT?, seq, batch, steps, towers as (h, l, s, v, e, i, heads, output_frac, disc)).
HAND = {
    "small": ("small", False, 128, 128, 1e6, [(256, 12, 128, V, 128, 1024, 4, FRAC, True),
                                              (64, 12, 128, V, 128, 256, 1, FRAC, False)]),
    "bert-small": ("small", True, 128, 128, 1.45e6, [(256, 12, 128, V, 128, 1024, 4, FRAC, False)]),
    "base": ("base", False, 512, 256, 766e3, [(768, 12, 512, V, 768, 3072, 12, FRAC, True),
                                              (256, 12, 512, V, 768, 1024, 4, FRAC, False)]),
    "large": ("large", False, 512, 2048, 400e3, [(1024, 24, 512, V, 1024, 4096, 16, FRAC, True),
                                                 (256, 24, 512, V, 1024, 1024, 4, FRAC, False)]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HAND))
def test_paper_flops_count_matches_the_original_formula(name):
    size, bert, L, B, steps, towers = HAND[name]
    config = PRESETS[size].replace(electra_objective=not bert)
    assert paper_train_flops(config, L, B, steps) == pytest.approx(hand_train(B, steps, *towers))


def test_paper_flops_count_reproduces_the_originals_and_the_papers_figures():
    with open(os.path.join(REPO, "launch", "reference", "paper_results.json")) as f:
        cost = json.load(f)["pretraining_cost"]  # what the original script printed
    small = paper_train_flops(PRESETS["small"], 128, 128, 1_000_000)
    base = paper_train_flops(PRESETS["base"], 512, 256, 766_000)
    assert float(f"{small:.3g}") == cost["electra_small_1M_steps"]["flops_reference_script"]
    assert float(f"{base:.3g}") == cost["electra_base"]["flops_reference_script"]
    large = lambda steps: paper_train_flops(PRESETS["large"], 512, 2048, steps)  # noqa: E731
    assert (float(f"{large(400_000):.2g}"), float(f"{large(1_750_000):.2g}")) == (7.1e20, 3.1e21)


def test_ablation_equalises_the_paper_count():
    tiny = (64, 2, 128, 8192, 32, 256, 2)  # h, l, s, v, e, i, heads of `tiny`'s discriminator
    electra = hand_train(32, 1, (*tiny, FRAC, True), (32, 2, 128, 8192, 32, 128, 1, FRAC, False))
    bert = hand_train(32, 1, (*tiny, FRAC, False))
    assert ablation.equal_compute_steps(1000) == round(1000 * electra / bert)


# ---------------------------------------------------------------- item 8: untied generator tables


def test_untied_generator_tables_are_generator_wide_without_projection():
    small = preset("small", vocab_size=100, num_layers=1, embedding_sharing="untied")
    shapes = expected_shapes(small)  # E = 128, generator width G = 64
    assert shapes["generator_embeddings/word_embeddings"] == (100, 64)
    assert "generator/embeddings_project/kernel" not in shapes
    assert shapes["generator_head/dense/kernel"] == (64, 64)
    assert shapes["discriminator/embeddings_project/kernel"] == (128, 256)
    projected = expected_shapes(small.replace(generator_embedding_size=128))  # the switch
    assert projected["generator_embeddings/word_embeddings"] == (100, 128)
    assert projected["generator/embeddings_project/kernel"] == (128, 64)
    with pytest.raises(ValueError, match="embedding_sharing='untied' only"):
        preset("small", generator_embedding_size=128)


def test_untied_generator_matches_an_hf_generator_with_its_own_width():
    """An HF ElectraForMaskedLM with embedding_size = its hidden size (the original's untied
    layout) converts to the default untied model, gives the same logits, and exports back."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from hf_fixtures import DISC

    torch.manual_seed(3)
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(**COMMON, **DISC))
    gen_cfg = transformers.ElectraConfig(**{**COMMON, "embedding_size": GEN["hidden_size"]}, **GEN)
    gen = transformers.ElectraForMaskedLM(gen_cfg).eval()
    randomize(disc)
    randomize(gen)
    assert not hasattr(gen.electra, "embeddings_project")
    config, params = hf_to_params(disc.state_dict(), gen.state_dict(), disc.config.to_dict(),
                                  gen_cfg.to_dict(), untied=True)  # fmt: skip
    assert config.embedding_sharing == "untied" and config.generator_embedding_size is None
    ids, segments, mask = padded_batch(seed=0)
    with torch.no_grad():
        ref = gen(input_ids=ids, attention_mask=mask, token_type_ids=segments).logits.numpy()
    batch = [jnp.asarray(t.numpy()) for t in (ids, segments, mask)]
    with jax.default_matmul_precision("float32"):
        ours = ElectraModel(config).apply({"params": params}, *batch, method="generator_logits")
    assert float(np.max(np.abs(np.asarray(ours) - ref))) < 1e-5
    _, gen_sd, _, gen_cfg_back = params_to_hf(params, config)
    assert gen_cfg_back["embedding_size"] == GEN["hidden_size"]
    tied_or_buffer = ("position_ids", "generator_lm_head.weight")
    assert set(gen_sd) == {k for k in gen.state_dict() if not k.endswith(tied_or_buffer)}


# ---------------------------------------------------------------- issue 20: uniform_generator


def test_uniform_generator_logits_are_not_constant_folded():
    """XLA folded the log-softmax (and argmax) of the all-zero [B, N, V] logits at compile time,
    9-17 s per compile at V = 30522. In the compiled program the log-softmax must run: an
    exponential over a [.., V] array, and no constant with V or more elements."""
    B, L, V = 4, 64, 4096
    stub = RecordingStub(V)
    cfg = ObjectiveConfig(cls_id=CLS, sep_id=SEP, mask_id=MASK, uniform_generator=True)
    ids = jnp.full((B, L), 9, jnp.int32).at[:, 0].set(CLS)
    batch = {"input_ids": ids, "input_mask": jnp.ones_like(ids), "segment_ids": jnp.zeros_like(ids)}
    forward = jax.jit(lambda b, r: pretrain_forward(None, b, r, model=stub, cfg=cfg))
    hlo = forward.lower(batch, jax.random.key(0)).compile().as_text()
    assert re.search(rf"f32\[[\d,]*,{V}\]\{{[\d,]*\}} exponential\(", hlo), "log-softmax folded"
    for dims in re.findall(r"\[([\d,]+)\]\{[\d,]*\} constant\(", hlo):
        assert np.prod([int(d) for d in dims.split(",")]) < V, f"constant of shape [{dims}]"
    loss, out = forward(batch, jax.random.key(0))
    assert float(out["mlm_loss"]) == pytest.approx(np.log(V), rel=1e-5)
