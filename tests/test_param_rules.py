"""Weight decay and layer-wise learning rates on the real parameter trees of every preset,
against the original's rules restated here from docs/spec.md: §3 (no decay for a name matching
LayerNorm, layer_norm or bias) and §5.2 (lr x d^(n + 2 - depth); the `layerwise_fix` switch)."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.finetune import get_config as finetune_config
from configs.pretrain import get_config as pretrain_config
from electra_jax.finetune.heads import FinetuneModel, layerwise_multipliers
from electra_jax.finetune.trainer import make_tx
from electra_jax.model.config import PRESETS, ModelConfig
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train.optimizer import decay_mask
from electra_jax.train.program import build_program

SIZES = ("tiny", "small", "small++", "base", "large")
DECAY = {"tiny": 0.8, "small": 0.8, "small++": 0.8, "base": 0.8, "large": 0.9}  # spec §5.1
SPECIAL_IDS = {"cls_id": 2, "sep_id": 3, "mask_id": 4}

# docs/spec.md §3: the original's `_do_use_weight_decay`, a regex search on the variable name.
ORIGINAL_NO_DECAY = re.compile(r"LayerNorm|layer_norm|bias")


def names(tree) -> dict[str, object]:
    """Leaves by their path, written as the original's variable names (`a/b/kernel`)."""
    return {"/".join(k.key for k in path): x for path, x in jax.tree.leaves_with_path(tree)}


def pretrain_tree(cfg: ModelConfig) -> dict:
    model = ElectraModel(cfg)
    return jax.eval_shape(lambda r: nn.unbox(init_params(model, r)), jax.random.key(0))


def finetune_tree(cfg: ModelConfig, kind: str = "classification", squad_v2: bool = False):
    model = FinetuneModel(cfg, kind, num_labels=3, answerable_classifier=squad_v2, beam_size=4)
    ids = jnp.ones((2, 16), jnp.int32)
    batch = {"input_ids": ids, "segment_ids": ids, "input_mask": ids, "answer_mask": ids}
    init = lambda r: nn.unbox(model.init({"params": r}, batch, deterministic=True)["params"])
    return jax.eval_shape(init, jax.random.key(0))


def trees_of(size: str) -> dict[str, dict]:
    cfg = PRESETS[size]
    trees = {
        "electra": pretrain_tree(cfg),
        "bert": pretrain_tree(cfg.replace(electra_objective=False)),
        "finetune": finetune_tree(cfg),
    }
    if size == "tiny":  # the other towers' and heads' layouts, on the smallest shapes
        trees["untied"] = pretrain_tree(cfg.replace(embedding_sharing="untied"))
        trees["gdes"] = pretrain_tree(cfg.replace(embedding_sharing="gdes"))
        trees["squad20"] = finetune_tree(cfg, "span", squad_v2=True)
    return trees


@pytest.mark.parametrize("size", SIZES)
def test_decay_mask_is_the_originals_on_every_preset_tree(size):
    for tree_name, tree in trees_of(size).items():
        mask = names(decay_mask(tree))
        assert mask.keys() == names(tree).keys()
        for name, decays in mask.items():
            where = f"{size} {tree_name}: {name}"
            assert decays is (ORIGINAL_NO_DECAY.search(name) is None), where
            # The same rule seen from what each leaf is: matrices and tables decay; biases
            # (output_bias too) and LayerNorm scales and offsets do not.
            leaf = name.rsplit("/", 1)[-1]
            if leaf in ("kernel", "word_embeddings_delta") or leaf.endswith("_embeddings"):
                assert decays, where
            else:
                assert leaf in ("bias", "scale", "output_bias") and not decays, where
        assert any(mask.values()) and not all(mask.values())
        if "generator_head/output_bias" in mask or tree_name in ("electra", "bert"):
            assert not mask["generator_head/output_bias"], f"{size} {tree_name}"


def original_depth(name: str, n: int, fixed: bool) -> int:
    """The original's `_get_layer_lrs` keys, matched as substrings of the variable name: the
    embeddings and `embeddings_project` at 0, layer i at i + 1, the task head at n + 2 (at
    n + 1 with the fix of google-research/electra issue #51). The GDES delta is ours: depth 0.
    Every variable must match exactly one key (the original raises on none)."""
    keys = {"electra/embeddings/": 0, "/embeddings_project/": 0, "electra/gdes/": 0}
    keys |= {f"electra/discriminator/layer_{i}/": i + 1 for i in range(n)}
    keys["head/"] = n + 1 if fixed else n + 2  # the task-specific variables
    found = [depth for key, depth in keys.items() if key in name and
             (key != "head/" or name.startswith(key))]  # fmt: skip
    assert len(found) == 1, (name, found)
    return found[0]


def expected_multiplier(name: str, n: int, d: float, fixed: bool) -> float:
    head_depth = n + 1 if fixed else n + 2
    return d ** (head_depth - original_depth(name, n, fixed))


@pytest.mark.parametrize("fixed", [False, True], ids=["original", "layerwise_fix"])
@pytest.mark.parametrize("size", SIZES)
def test_layerwise_rates_follow_the_depth_rule_on_every_preset_finetune_tree(size, fixed):
    cfg, d = PRESETS[size], DECAY[size]
    n = cfg.num_layers
    trees = {"classification": finetune_tree(cfg)}
    if size == "tiny":
        trees["squad20"] = finetune_tree(cfg, "span", squad_v2=True)
        trees["gdes"] = finetune_tree(cfg.replace(embedding_sharing="gdes"))
    for tree_name, tree in trees.items():
        got = names(layerwise_multipliers(tree, n, d, fixed))
        assert got.keys() == names(tree).keys()
        for name, multiplier in got.items():
            want = expected_multiplier(name, n, d, fixed)
            assert multiplier == pytest.approx(want, rel=1e-12), f"{size} {tree_name}: {name}"
        exponents = {round(float(np.log(m) / np.log(d))) for m in got.values()}
        top = got[f"electra/discriminator/layer_{n - 1}/output/kernel"]
        if fixed:  # the top layer gets d, the embeddings d^(n + 1)
            assert top == pytest.approx(d) and exponents == set(range(n + 2))
        else:  # the off-by-one: the top layer gets d^2 and nothing gets d^1
            assert top == pytest.approx(d**2) and exponents == {0, *range(2, n + 3)}
        assert got["electra/embeddings/word_embeddings"] == pytest.approx(d ** max(exponents))


def test_pretraining_optimizer_decays_exactly_the_masked_leaves():
    """The trainer's own optimiser (train/program.py) on the tiny tree: with zero gradients an
    update is -lr x 0.01 x theta on the leaves that decay, and exactly 0 on the others."""
    config = pretrain_config("tiny")
    config.warmup_steps, config.learning_rate = 0, 1.0
    program = build_program(config, SPECIAL_IDS)
    params = jax.tree.map(lambda x: jnp.ones(x.shape, x.dtype), pretrain_tree(program.model_cfg))
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(program.tx.update)(zeros, program.tx.init(params), params)
    decayed = 0
    for name, update in names(updates).items():
        if ORIGINAL_NO_DECAY.search(name):
            np.testing.assert_array_equal(update, 0.0, err_msg=name)
        else:
            np.testing.assert_allclose(update, -0.01, rtol=1e-6, err_msg=name)
            decayed += 1
    assert decayed > 10


@pytest.mark.parametrize("fixed", [False, True], ids=["original", "layerwise_fix"])
def test_finetune_optimizer_scales_each_update_by_its_layer_rate(fixed):
    """The fine-tuning trainer's optimiser (`make_tx`) on the tiny FinetuneModel tree: with the
    same gradient everywhere, each update over the head's is the leaf's layer-wise rate."""
    config = finetune_config("task=builtin_replaced,size=tiny")
    config.layerwise_fix, config.warmup_proportion = fixed, 0.0
    cfg = PRESETS["tiny"]
    n, d = cfg.num_layers, config.layerwise_lr_decay
    params = jax.tree.map(lambda x: jnp.ones(x.shape, x.dtype), finetune_tree(cfg))
    tx, _ = make_tx(config, num_steps=100, num_layers=n)
    updates, _ = jax.jit(tx.update)(params, tx.init(params), params)  # gradient 1 everywhere
    updates = names(updates)
    head = np.asarray(updates["head/output/kernel"]).ravel()[0]
    assert head < 0
    for name, update in updates.items():
        want = expected_multiplier(name, n, d, fixed)
        np.testing.assert_allclose(np.asarray(update) / head, want, rtol=1e-5, err_msg=name)
