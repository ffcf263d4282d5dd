"""Transformer blocks (docs/spec.md §1): embeddings, attention, the post-LN layer, the tower.

Every parameter carries logical axis names (see train/sharding.py), so sharding is a config
change. Names follow the original / Hugging Face layout (`LayerNorm`, `query`, `dense`): conversion
is a rename, and the optimiser's no-decay rule (LayerNorm, bias) matches.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax.model.config import EncoderConfig, ModelConfig

Dtype = Any


def tf_truncated_normal(stddev: float) -> nn.initializers.Initializer:
    """TF's truncated normal (spec §1): jax's `stddev` is, like TF's, the untruncated one."""
    return jax.nn.initializers.truncated_normal(stddev=stddev)


def gelu_exact(x: jax.Array) -> jax.Array:
    """The original's GELU (erf form); flax's default is the tanh approximation."""
    with jax.named_scope("gelu"):  # labels its ops in profiles (bench/profile_step.py)
        return nn.gelu(x, approximate=False)


def partitioned(init: nn.initializers.Initializer, *names: str | None) -> Any:
    return nn.with_logical_partitioning(init, names)


def layer_norm(config: ModelConfig, dtype: Dtype, param_dtype: Dtype, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype,
        scale_init=partitioned(nn.initializers.ones, "norm"),
        bias_init=partitioned(nn.initializers.zeros, "norm"), name=name,
    )  # fmt: skip


def dense(
    features: int | tuple[int, ...], config: ModelConfig, dtype: Dtype, param_dtype: Dtype,
    axes: tuple[str | None, ...], name: str, axis: int | tuple[int, ...] = -1,
    kernel_init: nn.initializers.Initializer | None = None,
) -> nn.DenseGeneral:  # fmt: skip
    """A DenseGeneral with the original's initialiser and logical axes on kernel and bias."""
    num_out = 1 if isinstance(features, int) else len(features)
    kernel_init = kernel_init or tf_truncated_normal(config.initializer_range)
    return nn.DenseGeneral(
        features=features, axis=axis, dtype=dtype, param_dtype=param_dtype,
        kernel_init=partitioned(kernel_init, *axes),
        bias_init=partitioned(nn.initializers.zeros, *axes[-num_out:]), name=name,
    )  # fmt: skip


class Embeddings(nn.Module):
    """Word + position + token-type tables of width E (or `width`), summed, LayerNorm, dropout."""

    config: ModelConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    width: int | None = None  # None: config.embedding_size

    def setup(self) -> None:
        cfg, E = self.config, self.width or self.config.embedding_size
        init = tf_truncated_normal(cfg.initializer_range)
        tables = {  # name: (rows, logical axis of the rows)
            "word_embeddings": (cfg.vocab_size, "vocab"),
            "position_embeddings": (cfg.max_position_embeddings, "position"),
            "token_type_embeddings": (cfg.type_vocab_size, "token_type"),
        }
        for name, (rows, axis) in tables.items():
            table = self.param(name, partitioned(init, axis, "embed"), (rows, E), self.param_dtype)
            setattr(self, name, table)
        self.LayerNorm = layer_norm(cfg, self.dtype, self.param_dtype, "LayerNorm")
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def __call__(
        self, ids_BxL: jax.Array, segment_ids_BxL: jax.Array, deterministic: bool,
        word_delta_VxE: jax.Array | None = None, positions_BxL: jax.Array | None = None,
    ) -> jax.Array:  # fmt: skip
        """`word_delta_VxE` (GDES) is added to a stop-gradient copy of the word table, so the
        discriminator reuses the generator's table without pushing gradients into it.
        `positions_BxL` (packed rows: positions restart per example) defaults to 0..L-1."""
        word_VxE = self.word_embeddings
        if word_delta_VxE is not None:
            word_VxE = jax.lax.stop_gradient(word_VxE) + word_delta_VxE
        if positions_BxL is None:
            position_BxLxE = self.position_embeddings[None, : ids_BxL.shape[-1]]
        else:
            position_BxLxE = jnp.take(self.position_embeddings, positions_BxL, axis=0)
        x_BxLxE = (
            jnp.take(word_VxE, ids_BxL, axis=0)
            + position_BxLxE
            + jnp.take(self.token_type_embeddings, segment_ids_BxL, axis=0)
        )
        x_BxLxE = self.LayerNorm(x_BxLxE.astype(self.dtype))
        return self.dropout(x_BxLxE, deterministic=deterministic)

    def attend(self, h_BxNxE: jax.Array) -> jax.Array:
        """Logits against the word table (the generator's tied output softmax)."""
        word_VxE = jnp.asarray(self.word_embeddings, self.dtype)
        return jnp.einsum("bne,ve->bnv", h_BxNxE.astype(self.dtype), word_VxE)


def packed_attention_mask(packing_ids_BxL: jax.Array) -> jax.Array:
    """[B, L, L] keep mask of packed rows: a query attends to the keys of its own example.
    Padding queries (id 0) attend to every real key, so no softmax row is empty (unused)."""
    query_BxLx1 = packing_ids_BxL[:, :, None]
    key_Bx1xL = packing_ids_BxL[:, None, :]
    return (key_Bx1xL > 0) & ((query_BxLx1 == key_Bx1xL) | (query_BxLx1 == 0))


def causal_attention_mask(mask: jax.Array, direction: str) -> jax.Array:
    """[B, L, L] keep mask of a uni-directional tower (the original's `ltr` / `rtl`): query i sees
    keys j <= i ("ltr") or j >= i ("rtl") that `mask` ([B, L] input mask or [B, L, L]) keeps. A
    query left with no key (an "rtl" padding query) sees every key unmasked, as the original's
    additive -10000 mask makes of a row it masks whole."""
    L = mask.shape[-1]
    keep_BxLxL = (mask[:, None, :] if mask.ndim == 2 else mask).astype(bool)
    causal_LxL = jnp.tril(jnp.ones((L, L), bool))
    keep_BxLxL &= causal_LxL if direction == "ltr" else causal_LxL.T
    return keep_BxLxL | ~jnp.any(keep_BxLxL, axis=-1, keepdims=True)


def packed_positions(packing_ids_BxL: jax.Array) -> jax.Array:
    """Position ids that restart at 0 where each example of a packed row starts."""
    L = packing_ids_BxL.shape[-1]
    index_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), packing_ids_BxL.shape)
    previous_BxL = jnp.pad(packing_ids_BxL[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    start_BxL = jnp.where(packing_ids_BxL != previous_BxL, index_BxL, 0)
    return index_BxL - jax.lax.cummax(start_BxL, axis=1)


def cudnn_attention_problem(dtype: str, backend: str) -> str | None:
    """Why `attention_impl="cudnn"` cannot run here (None when it can): cuDNN's flash attention
    needs a CUDA GPU and half-precision inputs."""
    if backend != "gpu":
        return f"needs a GPU (this backend is {backend})"
    if dtype not in ("bfloat16", "float16"):
        return f"needs dtype bfloat16 or float16 (got {dtype})"
    return None


def use_fused_attention(config: ModelConfig, deterministic: bool) -> bool:
    """Fused attention has no probability dropout: use it only where that changes nothing."""
    if config.attention_impl in ("fused", "cudnn"):
        return True
    if config.attention_impl == "exact":
        return False
    return deterministic or config.attention_dropout == 0.0


class TowerModule(nn.Module):
    """Fields every part of a tower shares: the model, the tower's shape, the dtypes."""

    config: ModelConfig
    tower: EncoderConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def dense(self, features: int | tuple[int, ...], **kwargs: Any) -> nn.DenseGeneral:
        return dense(features, self.config, self.dtype, self.param_dtype, **kwargs)

    def layer_norm(self, name: str) -> nn.LayerNorm:
        return layer_norm(self.config, self.dtype, self.param_dtype, name)


class SelfAttention(TowerModule):
    """Multi-head self-attention. `mask` is the [B, L] input mask of right-padded rows or, for
    packed rows, the [B, L, L] keep mask of `packed_attention_mask`."""

    @nn.compact
    def __call__(self, x_BxLxH: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        cfg, tower = self.config, self.tower
        heads = (tower.num_heads, tower.head_dim)
        q_BxLxNxD, k_BxLxNxD, v_BxLxNxD = (
            self.dense(heads, axes=("hidden", "heads", "kv"), name=name)(x_BxLxH)
            for name in ("query", "key", "value")
        )
        packed = mask.ndim == 3
        keep_Bx1xQxK = (mask[:, None] if packed else mask[:, None, None, :]).astype(bool)
        if use_fused_attention(cfg, deterministic):
            lengths_B = jnp.sum(mask, axis=-1, dtype=jnp.int32)
            padding = {"mask": keep_Bx1xQxK} if packed else {"key_value_seq_lengths": lengths_B}
            implementation = "cudnn" if cfg.attention_impl == "cudnn" else None  # None: XLA's
            out_BxLxNxD = jax.nn.dot_product_attention(
                q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, **padding, implementation=implementation
            )
        else:
            out_BxLxNxD = self._exact_attention(
                q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, keep_Bx1xQxK, deterministic
            )
        axes = ("heads", "kv", "hidden")
        return self.dense(tower.hidden_size, axes=axes, axis=(-2, -1), name="output")(out_BxLxNxD)

    def _exact_attention(
        self, q_BxLxNxD: jax.Array, k_BxLxNxD: jax.Array, v_BxLxNxD: jax.Array,
        keep_Bx1xQxK: jax.Array, deterministic: bool,
    ) -> jax.Array:  # fmt: skip
        """Softmax attention with the original's attention-probability dropout; `keep_Bx1xQxK`
        broadcasts over heads (Q = 1: the same key mask for every query)."""
        D = q_BxLxNxD.shape[-1]
        scores_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", q_BxLxNxD, k_BxLxNxD) / jnp.sqrt(D)
        scores_BxNxLxL = scores_BxNxLxL.astype(jnp.float32)
        scores_BxNxLxL = jnp.where(keep_Bx1xQxK, scores_BxNxLxL, jnp.finfo(jnp.float32).min)
        probs_BxNxLxL = jax.nn.softmax(scores_BxNxLxL, axis=-1).astype(self.dtype)
        dropout = nn.Dropout(self.config.attention_dropout)
        probs_BxNxLxL = dropout(probs_BxNxLxL, deterministic=deterministic)
        return jnp.einsum("bnqk,bknd->bqnd", probs_BxNxLxL, v_BxLxNxD)


class EncoderLayer(TowerModule):
    """BERT post-LN layer: x = LN(x + Attn(x)); x = LN(x + FFN(x)), exact GELU."""

    @nn.compact
    def __call__(self, x_BxLxH: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        cfg, tower = self.config, self.tower
        F, H = tower.intermediate_size, tower.hidden_size
        attention = SelfAttention(cfg, tower, self.dtype, self.param_dtype, name="attention")
        attn_BxLxH = attention(x_BxLxH, mask, deterministic)
        attn_BxLxH = nn.Dropout(cfg.hidden_dropout)(attn_BxLxH, deterministic=deterministic)
        x_BxLxH = self.layer_norm("attention_LayerNorm")(x_BxLxH + attn_BxLxH)
        h_BxLxF = gelu_exact(self.dense(F, axes=("hidden", "mlp"), name="intermediate")(x_BxLxH))
        out_BxLxH = self.dense(H, axes=("mlp", "hidden"), name="output")(h_BxLxF)
        out_BxLxH = nn.Dropout(cfg.hidden_dropout)(out_BxLxH, deterministic=deterministic)
        return self.layer_norm("output_LayerNorm")(x_BxLxH + out_BxLxH)


class Encoder(TowerModule):
    """A tower: an E->H `embeddings_project` when its input is not H wide (Glorot-uniform kernel
    by default, spec §1), then the layers. `remat` recomputes activations in the backward pass."""

    remat: bool = False

    @nn.compact
    def __call__(
        self, emb_BxLxE: jax.Array, mask: jax.Array, deterministic: bool,
        return_all_layers: bool = False,
    ) -> jax.Array | list[jax.Array]:  # fmt: skip
        """`mask`: the [B, L] input mask, or [B, L, L] for packed rows (see SelfAttention)."""
        cfg, tower, H = self.config, self.tower, self.tower.hidden_size
        x_BxLxH = emb_BxLxE
        if emb_BxLxE.shape[-1] != H:
            glorot = cfg.embeddings_project_init == "glorot_uniform"
            init = nn.initializers.glorot_uniform() if glorot else None  # None: truncated normal
            project = self.dense(
                H, axes=("embed", "hidden"), name="embeddings_project", kernel_init=init
            )
            x_BxLxH = project(emb_BxLxE)
        layer_cls = nn.remat(EncoderLayer, static_argnums=(3,)) if self.remat else EncoderLayer
        all_layers = []
        for i in range(tower.num_layers):
            layer = layer_cls(cfg, tower, self.dtype, self.param_dtype, name=f"layer_{i}")
            x_BxLxH = layer(x_BxLxH, mask, deterministic)
            all_layers.append(x_BxLxH)
        return all_layers if return_all_layers else x_BxLxH
