"""Model switches that must not change the numbers (rematerialisation), and what an export
keeps of them."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from electra_jax.files.model_io import read_model_config, save_model
from electra_jax.model.config import preset
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train.objective import ObjectiveConfig, pretrain_forward


def test_remat_gives_the_same_loss_and_gradients():
    cfg = preset("tiny")
    objective = ObjectiveConfig(cls_id=2, sep_id=3, mask_id=4)
    ids = jax.random.randint(jax.random.key(1), (2, 16), 5, cfg.vocab_size).at[:, 0].set(2)
    batch = {"input_ids": ids, "input_mask": jnp.ones_like(ids), "segment_ids": jnp.zeros_like(ids)}
    params = nn.unbox(init_params(ElectraModel(cfg), jax.random.key(0)))
    results, jaxprs = [], []
    for remat in (False, True):
        model = ElectraModel(cfg, remat=remat)
        loss_fn = lambda p, m=model: pretrain_forward(
            p, batch, jax.random.key(2), model=m, cfg=objective
        )[0]
        results.append(jax.jit(jax.value_and_grad(loss_fn))(params))
        jaxprs.append(str(jax.make_jaxpr(jax.value_and_grad(loss_fn))(params)))
    (loss, grads), (loss_remat, grads_remat) = results
    # It does rematerialise: one remat per layer of each tower, forward matmuls redone.
    plain, rematted = jaxprs
    assert plain.count("remat") == 0
    assert rematted.count("remat") == cfg.discriminator.num_layers + cfg.generator.num_layers
    assert rematted.count("dot_general") > plain.count("dot_general")
    np.testing.assert_allclose(loss_remat, loss, rtol=1e-6)
    for g, g_remat in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_remat), strict=True):
        np.testing.assert_allclose(g_remat, g, rtol=1e-4, atol=1e-7)


def test_export_saves_cudnn_attention_as_auto(tmp_path):
    """cuDNN attention is this machine's run-time choice: an exported model must load anywhere."""
    cfg = preset("tiny", num_layers=1, attention_impl="cudnn")
    params = {"embeddings": {"word_embeddings": np.zeros((cfg.vocab_size, 2), np.float32)}}
    save_model(str(tmp_path / "cudnn"), params, cfg)
    assert read_model_config(str(tmp_path / "cudnn")).attention_impl == "auto"
    save_model(str(tmp_path / "fused"), params, cfg.replace(attention_impl="fused"))
    assert read_model_config(str(tmp_path / "fused")).attention_impl == "fused"


def test_initializer_is_tf_truncated_normal():
    """The original's `tf.truncated_normal_initializer(stddev=0.02)` draws N(0, 0.02) and
    re-draws values beyond 2 stddev: the samples' std is 0.02 times the std of a standard
    normal truncated at +-2 (scipy's closed form), and none exceeds 0.04 (docs/spec.md §1)."""
    from scipy.stats import truncnorm

    params = nn.unbox(init_params(ElectraModel(preset("tiny")), jax.random.key(0)))
    table = np.asarray(params["embeddings"]["word_embeddings"])  # 8192 x 32 draws
    expected_std = 0.02 * truncnorm(-2, 2).std()  # 0.01759
    assert abs(table.std() / expected_std - 1) < 0.01, (table.std(), expected_std)
    assert 0.039 < np.abs(table).max() <= 0.04
