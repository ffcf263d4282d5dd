"""The ELECTRA model (docs/spec.md §1): shared embeddings, the two towers and their heads.

Top-level parameter groups (every checkpoint and conversion relies on them): `embeddings` (word,
position and type tables and the embedding LayerNorm; in the default `tied` mode shared by both
towers, the generator's softmax tied to `embeddings/word_embeddings`), `discriminator`
(`embeddings_project`, `layer_i`), `discriminator_head`, `generator`, `generator_head` (dense E,
LayerNorm, `output_bias`), `generator_embeddings` (`untied` only: V x generator width, no
projection, as the original's `untied_generator_embeddings`) and `gdes` (the discriminator's
word-table delta, `gdes` only). The BERT baseline and a tied generator (`untied_generator=False`)
have no generator tower: their masked-LM head sits on `discriminator`. A two-tower generator
(Electric, spec §9) has `generator_ltr` and `generator_rtl` instead of `generator` (and, `untied`,
`generator_rtl_embeddings` beside `generator_embeddings`, which the softmax is tied to). Methods
that touch only a subset of the tree (a converted discriminator, say) work with that subset.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax.model.config import ModelConfig
from electra_jax.model.layers import (
    Dtype,
    Embeddings,
    Encoder,
    causal_attention_mask,
    dense,
    gelu_exact,
    layer_norm,
    packed_attention_mask,
    packed_positions,
    partitioned,
)


class DiscriminatorHead(nn.Module):
    """Dense H->H + GELU, then dense H->1 with TF's default glorot-uniform kernel (spec §1)."""

    config: ModelConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxLxH: jax.Array) -> jax.Array:
        args = (self.config, self.dtype, self.param_dtype)
        hidden = dense(self.config.hidden_size, *args, axes=("hidden", "hidden_out"), name="dense")
        glorot = nn.initializers.glorot_uniform()
        out = dense(1, *args, axes=("hidden", None), name="dense_prediction", kernel_init=glorot)
        return out(gelu_exact(hidden(h_BxLxH)))[..., 0].astype(jnp.float32)


class GeneratorHead(nn.Module):
    """Dense to E + GELU + LayerNorm; logits = h . word_table^T + output_bias (spec §1)."""

    config: ModelConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxNxG: jax.Array, embeddings: Embeddings) -> jax.Array:
        cfg = self.config
        args = (cfg, self.dtype, self.param_dtype)
        E = cfg.generator_embedding_width  # the width of the table the logits are tied to
        h_BxNxE = dense(E, *args, axes=("hidden", "embed"), name="dense")(h_BxNxG)
        h_BxNxE = layer_norm(*args, name="LayerNorm")(gelu_exact(h_BxNxE))
        bias_init = partitioned(nn.initializers.zeros, "vocab")
        output_bias_V = self.param("output_bias", bias_init, (cfg.vocab_size,), self.param_dtype)
        logits_BxNxV = embeddings.attend(h_BxNxE) + output_bias_V.astype(self.dtype)
        return logits_BxNxV.astype(jnp.float32)


class GdesDelta(nn.Module):
    """DeBERTa-v3 GDES (spec §7): the discriminator's word-table offset, initialised to zero."""

    config: ModelConfig
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self) -> jax.Array:
        init = partitioned(nn.initializers.zeros, "vocab", "embed")
        shape = (self.config.vocab_size, self.config.embedding_size)
        return self.param("word_embeddings_delta", init, shape, self.param_dtype)


def tower_inputs(
    mask_BxL: jax.Array, packing_ids_BxL: jax.Array | None
) -> tuple[jax.Array, jax.Array | None]:
    """(attention mask, position ids): the input mask and default positions, or for packed rows
    per-example attention and positions restarting at each example."""
    if packing_ids_BxL is None:
        return mask_BxL, None
    return packed_attention_mask(packing_ids_BxL), packed_positions(packing_ids_BxL)


class ElectraModel(nn.Module):
    """Generator + discriminator with the original's embedding sharing; float32 logits whatever
    the compute `dtype`. `packing_ids_BxL` (packed datasets, `prepare --pack`) numbers each
    position's example within its row (0 = padding): attention stays within an example."""

    config: ModelConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False

    def setup(self) -> None:
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.embeddings = Embeddings(cfg, **kw)
        self.discriminator = Encoder(cfg, cfg.discriminator, remat=self.remat, **kw)
        if cfg.electra_objective:
            self.discriminator_head = DiscriminatorHead(cfg, **kw)
        for name in () if cfg.generator_is_discriminator else cfg.generator_towers:
            setattr(self, name, Encoder(cfg, cfg.generator, remat=self.remat, **kw))
        self.generator_head = GeneratorHead(cfg, **kw)
        if cfg.embedding_sharing == "untied":
            width = cfg.generator_embedding_width
            self.generator_embeddings = Embeddings(cfg, width=width, **kw)
            if cfg.two_tower_generator:  # the original's towers each have their own tables
                self.generator_rtl_embeddings = Embeddings(cfg, width=width, **kw)
        if cfg.embedding_sharing == "gdes":
            self.gdes = GdesDelta(cfg, param_dtype=self.param_dtype)

    def __call__(
        self, ids_BxL: jax.Array, segment_ids_BxL: jax.Array, mask_BxL: jax.Array
    ) -> dict[str, jax.Array]:
        """Runs every tower once (what `init` calls); returns the logits of each head."""
        inputs = (ids_BxL, segment_ids_BxL, mask_BxL)
        out = {"generator_logits": self.generator_logits(*inputs)}
        if self.config.electra_objective:
            out["discriminator_logits"] = self.discriminator_logits(*inputs)
        return out

    def discriminator_hidden(
        self, ids_BxL: jax.Array, segment_ids_BxL: jax.Array, mask_BxL: jax.Array,
        deterministic: bool = True, return_all_layers: bool = False,
        packing_ids_BxL: jax.Array | None = None,
    ) -> jax.Array | list[jax.Array]:  # fmt: skip
        """Final (or every) hidden state of the discriminator tower: the fine-tuning encoder."""
        delta = self.gdes() if self.config.embedding_sharing == "gdes" else None
        attention_mask, positions_BxL = tower_inputs(mask_BxL, packing_ids_BxL)
        emb_BxLxE = self.embeddings(
            ids_BxL, segment_ids_BxL, deterministic, word_delta_VxE=delta,
            positions_BxL=positions_BxL,
        )  # fmt: skip
        return self.discriminator(emb_BxLxE, attention_mask, deterministic, return_all_layers)

    def discriminator_logits(
        self, ids_BxL: jax.Array, segment_ids_BxL: jax.Array, mask_BxL: jax.Array,
        deterministic: bool = True, packing_ids_BxL: jax.Array | None = None,
    ) -> jax.Array:  # fmt: skip
        """One replaced-token logit per position, [B, L]."""
        h_BxLxH = self.discriminator_hidden(
            ids_BxL, segment_ids_BxL, mask_BxL, deterministic, packing_ids_BxL=packing_ids_BxL
        )
        return self.discriminator_head(h_BxLxH)

    def generator_logits(
        self, ids_BxL: jax.Array, segment_ids_BxL: jax.Array, mask_BxL: jax.Array,
        positions_BxN: jax.Array | None = None, deterministic: bool = True,
        packing_ids_BxL: jax.Array | None = None,
    ) -> jax.Array:  # fmt: skip
        """Masked-LM logits [B, N, V] at `positions_BxN` only, or [B, L, V] when None (a
        two-tower generator: its cloze logits, which never read the token at the position)."""
        cfg = self.config
        untied = cfg.embedding_sharing == "untied"
        embeddings = self.generator_embeddings if untied else self.embeddings
        attention_mask, positions_BxL = tower_inputs(mask_BxL, packing_ids_BxL)
        inputs = (ids_BxL, segment_ids_BxL, deterministic)
        if cfg.two_tower_generator:
            rtl_embeddings = self.generator_rtl_embeddings if untied else self.embeddings
            h_BxLxG = self.two_tower_hidden(
                embeddings(*inputs, positions_BxL=positions_BxL),
                rtl_embeddings(*inputs, positions_BxL=positions_BxL),
                attention_mask, deterministic,
            )  # fmt: skip
        else:
            tower = self.discriminator if cfg.generator_is_discriminator else self.generator
            emb_BxLxE = embeddings(*inputs, positions_BxL=positions_BxL)
            h_BxLxG = tower(emb_BxLxE, attention_mask, deterministic)
        if positions_BxN is not None:
            h_BxLxG = jnp.take_along_axis(h_BxLxG, positions_BxN[..., None], axis=1)
        return self.generator_head(h_BxLxG, embeddings)

    def two_tower_hidden(
        self, ltr_emb_BxLxE: jax.Array, rtl_emb_BxLxE: jax.Array, mask: jax.Array,
        deterministic: bool,
    ) -> jax.Array:  # fmt: skip
        """The original's `TwoTowerClozeTransformer` (spec §9): [B, L, 2G], position t holding the
        left-to-right tower at t-1 and the right-to-left tower at t+1, wrapping around the row
        (position 0 gets the first tower's last position, L-1 the second's first)."""
        ltr_BxLxG = self.generator_ltr(
            ltr_emb_BxLxE, causal_attention_mask(mask, "ltr"), deterministic
        )
        rtl_BxLxG = self.generator_rtl(
            rtl_emb_BxLxE, causal_attention_mask(mask, "rtl"), deterministic
        )
        return jnp.concatenate(
            [jnp.roll(ltr_BxLxG, 1, axis=1), jnp.roll(rtl_BxLxG, -1, axis=1)], -1
        )


def init_params(model: ElectraModel, rng: jax.Array, batch_size: int = 2, seq_len: int = 8) -> dict:
    """Initialises every parameter (boxed with logical axis names) on dummy inputs."""
    ids = jnp.ones((batch_size, seq_len), jnp.int32)
    init = jax.jit(lambda r: model.init(r, ids, jnp.zeros_like(ids), jnp.ones_like(ids)))
    return init(rng)["params"]


def count_params(params: dict) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(nn.unbox(params)))


def discriminator_param_count(params: dict) -> int:
    """Parameters of the discriminator alone (embeddings, tower, RTD head): the model size the
    paper reports, as the generator is thrown away after pre-training."""
    params = nn.unbox(params)
    keep = ("embeddings", "discriminator", "discriminator_head", "gdes")
    return sum(count_params(params[k]) for k in keep if k in params)
