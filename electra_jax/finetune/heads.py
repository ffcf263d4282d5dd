"""The fine-tuning model: task heads on the discriminator encoder and their losses (docs/spec.md
§5.3-5.5; where we still differ, §8 items 1, 2 and 4), and layer-wise LR decay (§5.2)."""

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from electra_jax.model.config import ModelConfig
from electra_jax.model.electra import ElectraModel
from electra_jax.model.layers import Dtype, dense, gelu_exact, layer_norm
from electra_jax.train.optimizer import path_name

NEG = 1000.0  # the original's additive mask for positions outside the context


class ClassificationHead(nn.Module):
    config: ModelConfig
    num_outputs: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxLxH: jax.Array, deterministic: bool) -> jax.Array:
        cls_BxH = nn.Dropout(0.1)(h_BxLxH[:, 0], deterministic=deterministic)
        args = (self.config, self.dtype, self.param_dtype)
        logits_BxK = dense(self.num_outputs, *args, axes=("hidden", None), name="output")(cls_BxH)
        return logits_BxK.astype(jnp.float32)


class SpanHead(nn.Module):
    """The original's joint start/end head (+ answerability classifier for SQuAD 2.0)."""

    config: ModelConfig
    squad_v2: bool
    beam_size: int = 20
    hidden: int = 512
    answerable_uses_start_logits: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, h_BxLxH: jax.Array, answer_mask_BxL: jax.Array, start_positions_B: jax.Array | None
    ) -> dict[str, jax.Array]:
        args = (self.config, self.dtype, self.param_dtype)
        B, L, H = h_BxLxH.shape
        penalty_BxL = NEG * (1.0 - answer_mask_BxL.astype(jnp.float32))
        start_logits_BxL = dense(1, *args, axes=("hidden", None), name="start")(h_BxLxH)[..., 0]
        start_logits_BxL = start_logits_BxL.astype(jnp.float32) - penalty_BxL
        start_log_probs_BxL = jax.nn.log_softmax(start_logits_BxL)
        end_dense = dense(self.hidden, *args, axes=("hidden", "mlp"), name="end_dense")
        end_norm = layer_norm(*args, name="end_LayerNorm")
        end_out = dense(1, *args, axes=("mlp", None), name="end")

        def end_log_probs(start_h_BxKxH: jax.Array) -> jax.Array:
            K = start_h_BxKxH.shape[1]
            h_BxKxLxH = jnp.broadcast_to(h_BxLxH[:, None], (B, K, L, H))
            s_BxKxLxH = jnp.broadcast_to(start_h_BxKxH[:, :, None], h_BxKxLxH.shape)
            x_BxKxLxF = end_norm(gelu_exact(end_dense(jnp.concatenate([h_BxKxLxH, s_BxKxLxH], -1))))
            logits_BxKxL = end_out(x_BxKxLxF)[..., 0].astype(jnp.float32) - penalty_BxL[:, None]
            return jax.nn.log_softmax(logits_BxKxL)

        out: dict[str, jax.Array] = {"start_log_probs": start_log_probs_BxL}
        if start_positions_B is not None:  # training: condition the end on the gold start
            onehot_BxL = jax.nn.one_hot(start_positions_B, L, dtype=h_BxLxH.dtype)
            start_h_Bx1xH = jnp.einsum("bl,blh->bh", onehot_BxL, h_BxLxH)[:, None]
            out["end_log_probs"] = end_log_probs(start_h_Bx1xH)[:, 0]
        else:  # inference: the top-k starts, each with its own end distribution
            top_log_probs_BxK, top_index_BxK = jax.lax.top_k(start_log_probs_BxL, self.beam_size)
            start_h_BxKxH = jnp.take_along_axis(h_BxLxH, top_index_BxK[..., None], axis=1)
            end_BxKxL = end_log_probs(start_h_BxKxH)
            end_top_BxKxK, end_index_BxKxK = jax.lax.top_k(end_BxKxL, self.beam_size)
            out.update(start_top_log_probs=top_log_probs_BxK, start_top_index=top_index_BxK,
                       end_top_log_probs=end_top_BxKxK, end_top_index=end_index_BxKxK)  # fmt: skip
        if self.squad_v2:
            repr_BxF = h_BxLxH[:, 0]
            if self.answerable_uses_start_logits:
                start_p_BxL = jnp.exp(start_log_probs_BxL).astype(h_BxLxH.dtype)
                pooled_BxH = jnp.einsum("bl,blh->bh", start_p_BxL, h_BxLxH)
                repr_BxF = jnp.concatenate([repr_BxF, pooled_BxH], -1)
                hidden = dense(self.hidden, *args, axes=(None, "mlp"), name="answerable_dense")
                repr_BxF = gelu_exact(hidden(repr_BxF))
            logit_Bx1 = dense(1, *args, axes=(None, None), name="answerable")(repr_BxF)
            out["answerable_logit"] = logit_Bx1[:, 0].astype(jnp.float32)
        return out


class FinetuneModel(nn.Module):
    """The discriminator encoder (`electra`) with one task head (`head`)."""

    config: ModelConfig
    kind: str  # classification | regression | span
    num_labels: int = 2
    squad_v2: bool = False
    beam_size: int = 20
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, batch: dict[str, jax.Array], deterministic: bool = True) -> dict:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h_BxLxH = ElectraModel(self.config, **kw, name="electra").discriminator_hidden(
            batch["input_ids"], batch["segment_ids"], batch["input_mask"], deterministic
        )
        if self.kind == "span":
            head = SpanHead(self.config, self.squad_v2, self.beam_size, **kw, name="head")
            starts_B = None if deterministic else batch["start_positions"]
            return head(h_BxLxH, batch["answer_mask"], starts_B)
        regression = self.kind == "regression"
        outputs = 1 if regression else self.num_labels
        head = ClassificationHead(self.config, outputs, **kw, name="head")
        logits_BxK = head(h_BxLxH, deterministic)
        return {"predictions": logits_BxK[:, 0]} if regression else {"logits": logits_BxK}


def task_loss(
    outputs: dict[str, jax.Array], batch: dict[str, jax.Array], kind: str, squad_v2: bool = False,
    answerable_weight: float = 0.5,
) -> jax.Array:  # fmt: skip
    """Mean loss over the batch; `weights` (0 for padding rows) when present."""
    nll = lambda log_probs_BxK, y_B: -jnp.take_along_axis(log_probs_BxK, y_B[:, None], -1)[:, 0]
    if kind == "classification":
        per_example_B = nll(jax.nn.log_softmax(outputs["logits"]), batch["labels"])
    elif kind == "regression":
        per_example_B = jnp.square(outputs["predictions"] - batch["labels"] / 5.0)
    else:
        start_B = nll(outputs["start_log_probs"], batch["start_positions"])
        per_example_B = (start_B + nll(outputs["end_log_probs"], batch["end_positions"])) / 2.0
        if squad_v2:
            per_example_B += answerable_weight * optax.sigmoid_binary_cross_entropy(
                outputs["answerable_logit"], batch["is_impossible"].astype(jnp.float32)
            )
    weights_B = batch.get("weights", jnp.ones_like(per_example_B))
    return jnp.sum(per_example_B * weights_B) / jnp.maximum(jnp.sum(weights_B), 1.0)


# docs/spec.md §5.2 (`fixed=True`: §7's fix, n + 1); the GDES delta at the embeddings' depth 0.
_LAYER = re.compile(r"(?:^|/)layer_(\d+)(?:/|$)")
_EMBEDDING = re.compile(r"(?:^|/)(embeddings|embeddings_project|gdes)(?:/|$)")


def layerwise_multipliers(params: Any, num_layers: int, decay: float, fixed: bool = False) -> Any:
    """A tree of LR multipliers shaped like `params` (1.0 everywhere when decay == 1)."""
    top = num_layers + (1 if fixed else 2)

    def multiplier(path: tuple, _: Any) -> float:
        name = path_name(path)  # e.g. electra/discriminator/layer_3/...: depth 4
        layer = _LAYER.search(name)
        if layer and "discriminator" in name:
            return float(decay ** (top - int(layer.group(1)) - 1))
        return float(decay**top) if _EMBEDDING.search(name) else 1.0  # else: the task head

    return jax.tree_util.tree_map_with_path(multiplier, params)
