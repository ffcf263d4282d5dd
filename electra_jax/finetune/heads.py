"""The fine-tuning model: task heads on the discriminator encoder (classification, regression,
span, tagging) and their losses (docs/spec.md §5.3-5.5; this code's earlier choices are switches:
`loss_reduction`, `head_init`, `squad.end_layer_norm`), and layer-wise LR decay (§5.2)."""

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
HEAD_INITS = ("glorot_uniform", "truncated_normal")  # config.head_init
LOSS_REDUCTIONS = ("sum", "mean")  # config.loss_reduction


def head_kernel_init(head_init: str) -> nn.initializers.Initializer | None:
    """The heads' kernel initialiser: `tf.layers.dense`'s default, Glorot uniform (the original's
    heads), or None for the encoder's truncated normal (stddev `initializer_range`)."""
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init={head_init!r}; expected one of {HEAD_INITS}")
    return nn.initializers.glorot_uniform() if head_init == "glorot_uniform" else None


class ClassificationHead(nn.Module):
    config: ModelConfig
    num_outputs: int
    head_init: str = "glorot_uniform"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxLxH: jax.Array, deterministic: bool) -> jax.Array:
        cls_BxH = nn.Dropout(0.1)(h_BxLxH[:, 0], deterministic=deterministic)
        args = (self.config, self.dtype, self.param_dtype)
        kernel_init = head_kernel_init(self.head_init)
        logits_BxK = dense(self.num_outputs, *args, axes=("hidden", None), name="output",
                           kernel_init=kernel_init)(cls_BxH)  # fmt: skip
        return logits_BxK.astype(jnp.float32)


class TaggingHead(nn.Module):
    """The original's tagging head: the hidden state at each word's first piece (gathered at
    `labeled_positions`), one dense layer to the tags; no dropout of its own."""

    config: ModelConfig
    num_labels: int
    head_init: str = "glorot_uniform"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BxLxH: jax.Array, positions_BxP: jax.Array) -> jax.Array:
        words_BxPxH = jnp.take_along_axis(h_BxLxH, positions_BxP[..., None], axis=1)
        args = (self.config, self.dtype, self.param_dtype)
        layer = dense(self.num_labels, *args, axes=("hidden", None), name="output",
                      kernel_init=head_kernel_init(self.head_init))  # fmt: skip
        return layer(words_BxPxH).astype(jnp.float32)


class SpanHead(nn.Module):
    """The original's QA head (`qa_tasks.py`): joint start/end (or independent start and end
    logits without `joint_prediction`), and the answerability classifier."""

    config: ModelConfig
    beam_size: int = 20
    hidden: int = 512
    joint_prediction: bool = True
    answerable_classifier: bool = True
    answerable_uses_start_logits: bool = True
    end_layer_norm: bool = False  # True: ours, a LayerNorm after the end head's GELU layer
    head_init: str = "glorot_uniform"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _dense(self, features: int, axes: tuple, name: str) -> nn.Module:
        kernel_init = head_kernel_init(self.head_init)
        args = (self.config, self.dtype, self.param_dtype)
        return dense(features, *args, axes=axes, name=name, kernel_init=kernel_init)

    @nn.compact
    def __call__(
        self, h_BxLxH: jax.Array, answer_mask_BxL: jax.Array, start_positions_B: jax.Array | None
    ) -> dict[str, jax.Array]:
        B, L, H = h_BxLxH.shape
        penalty_BxL = NEG * (1.0 - answer_mask_BxL.astype(jnp.float32))
        logits = lambda layer, x: layer(x)[..., 0].astype(jnp.float32)
        start_logits_BxL = logits(self._dense(1, ("hidden", None), "start"), h_BxLxH) - penalty_BxL
        start_log_probs_BxL = jax.nn.log_softmax(start_logits_BxL)
        training = start_positions_B is not None
        out: dict[str, jax.Array] = {}
        if not self.joint_prediction:  # independent end logits; decoding pairs the top-k of each
            end_logits_BxL = logits(self._dense(1, ("hidden", None), "end"), h_BxLxH) - penalty_BxL
            if training:
                out.update(start_log_probs=start_log_probs_BxL,
                           end_log_probs=jax.nn.log_softmax(end_logits_BxL))  # fmt: skip
            else:
                out.update(start_logits=start_logits_BxL, end_logits=end_logits_BxL)
        else:
            end_dense = self._dense(self.hidden, ("hidden", "mlp"), "end_dense")  # qa_hidden
            args = (self.config, self.dtype, self.param_dtype)
            end_norm = layer_norm(*args, name="end_LayerNorm") if self.end_layer_norm else None
            end_out = self._dense(1, ("mlp", None), "end")

            def end_log_probs(start_h_BxKxH: jax.Array) -> jax.Array:
                """[start hidden; hidden at each position] -> dense + GELU -> dense 1."""
                K = start_h_BxKxH.shape[1]
                h_BxKxLxH = jnp.broadcast_to(h_BxLxH[:, None], (B, K, L, H))
                s_BxKxLxH = jnp.broadcast_to(start_h_BxKxH[:, :, None], h_BxKxLxH.shape)
                x = gelu_exact(end_dense(jnp.concatenate([s_BxKxLxH, h_BxKxLxH], -1)))
                x_BxKxLxF = end_norm(x) if end_norm is not None else x
                return jax.nn.log_softmax(logits(end_out, x_BxKxLxF) - penalty_BxL[:, None])

            out["start_log_probs"] = start_log_probs_BxL
            if training:  # condition the end on the gold start
                onehot_BxL = jax.nn.one_hot(start_positions_B, L, dtype=h_BxLxH.dtype)
                start_h_Bx1xH = jnp.einsum("bl,blh->bh", onehot_BxL, h_BxLxH)[:, None]
                out["end_log_probs"] = end_log_probs(start_h_Bx1xH)[:, 0]
            else:  # the top-k starts, each with its own end distribution
                top_BxK, top_index_BxK = jax.lax.top_k(start_log_probs_BxL, self.beam_size)
                start_h_BxKxH = jnp.take_along_axis(h_BxLxH, top_index_BxK[..., None], axis=1)
                end_top_BxKxK, end_index_BxKxK = jax.lax.top_k(
                    end_log_probs(start_h_BxKxH), self.beam_size
                )
                out.update(start_logits=start_logits_BxL, start_top_log_probs=top_BxK,
                           start_top_index=top_index_BxK, end_top_log_probs=end_top_BxKxK,
                           end_top_index=end_index_BxKxK)  # fmt: skip
        if self.answerable_classifier:
            repr_BxF = h_BxLxH[:, 0]
            if self.answerable_uses_start_logits:
                start_p_BxL = jnp.exp(start_log_probs_BxL).astype(h_BxLxH.dtype)
                pooled_BxH = jnp.einsum("bl,blh->bh", start_p_BxL, h_BxLxH)
                hidden = self._dense(self.hidden, (None, "mlp"), "answerable_dense")
                repr_BxF = gelu_exact(hidden(jnp.concatenate([repr_BxF, pooled_BxH], -1)))
            out["answerable_logit"] = logits(self._dense(1, (None, None), "answerable"), repr_BxF)
        return out


def encode(
    config: ModelConfig, batch: dict[str, jax.Array], deterministic: bool, **kw
) -> jax.Array:
    """The discriminator's last hidden states h_BxLxH, for a head; call it inside a compact method
    (the encoder is named `electra`, the name checkpoints, init_from and HF conversion use)."""
    return ElectraModel(config, **kw, name="electra").discriminator_hidden(
        batch["input_ids"], batch["segment_ids"], batch["input_mask"], deterministic
    )


class FinetuneModel(nn.Module):
    """The discriminator encoder (`electra`) with one task head (`head`)."""

    config: ModelConfig
    kind: str  # classification | regression | span | tagging
    num_labels: int = 2
    beam_size: int = 20
    joint_prediction: bool = True
    answerable_classifier: bool = True
    answerable_uses_start_logits: bool = True
    end_layer_norm: bool = False
    head_init: str = "glorot_uniform"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, batch: dict[str, jax.Array], deterministic: bool = True) -> dict:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h_BxLxH = encode(self.config, batch, deterministic, **kw)
        if self.kind == "span":
            head = SpanHead(self.config, self.beam_size, joint_prediction=self.joint_prediction,
                            answerable_classifier=self.answerable_classifier,
                            answerable_uses_start_logits=self.answerable_uses_start_logits,
                            end_layer_norm=self.end_layer_norm, head_init=self.head_init, **kw,
                            name="head")  # fmt: skip
            starts_B = None if deterministic else batch["start_positions"]
            return head(h_BxLxH, batch["answer_mask"], starts_B)
        if self.kind == "tagging":
            head = TaggingHead(self.config, self.num_labels, self.head_init, **kw, name="head")
            return {"logits": head(h_BxLxH, batch["labeled_positions"])}
        regression = self.kind == "regression"
        outputs = 1 if regression else self.num_labels
        head = ClassificationHead(self.config, outputs, self.head_init, **kw, name="head")
        logits_BxK = head(h_BxLxH, deterministic)
        return {"predictions": logits_BxK[:, 0]} if regression else {"logits": logits_BxK}


def finetune_model(
    model_cfg: ModelConfig, kind: str, num_labels: int, config: Any, dtype: Dtype = jnp.float32
) -> FinetuneModel:
    """The model a fine-tuning config asks for (`config.head_init`, `config.squad.*`)."""
    s = config.squad
    return FinetuneModel(model_cfg, kind, num_labels=num_labels, beam_size=s.n_best,
                         joint_prediction=s.joint_prediction,
                         answerable_classifier=s.answerable_classifier,
                         answerable_uses_start_logits=s.answerable_uses_start_logits,
                         end_layer_norm=s.end_layer_norm, head_init=config.head_init,
                         dtype=dtype)  # fmt: skip


def task_loss(
    outputs: dict[str, jax.Array], batch: dict[str, jax.Array], kind: str,
    answerable_classifier: bool = True, answerable_weight: float = 0.5, reduction: str = "sum",
) -> jax.Array:  # fmt: skip
    """The batch loss: the original's sum of the per-example losses (`reduce_sum`), or their mean
    (`reduction="mean"`); rows with `weights` 0 (padding) count for nothing. The sum is over the
    whole (global) batch the jitted step sees; accumulate micro-batch gradients by summing."""
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction={reduction!r}; expected one of {LOSS_REDUCTIONS}")
    nll = lambda log_probs_BxK, y_B: -jnp.take_along_axis(log_probs_BxK, y_B[:, None], -1)[:, 0]
    if kind == "classification":
        per_example_B = nll(jax.nn.log_softmax(outputs["logits"]), batch["labels"])
    elif kind == "regression":
        per_example_B = jnp.square(outputs["predictions"] - batch["labels"] / 5.0)
    elif kind == "tagging":  # each sentence: the sum over its kept words
        log_probs_BxPxK = jax.nn.log_softmax(outputs["logits"])
        nll_BxP = -jnp.take_along_axis(log_probs_BxPxK, batch["labels"][..., None], -1)[..., 0]
        per_example_B = jnp.sum(nll_BxP * batch["labels_mask"], axis=-1)
    else:
        start_B = nll(outputs["start_log_probs"], batch["start_positions"])
        per_example_B = (start_B + nll(outputs["end_log_probs"], batch["end_positions"])) / 2.0
        if answerable_classifier:
            per_example_B += answerable_weight * optax.sigmoid_binary_cross_entropy(
                outputs["answerable_logit"], batch["is_impossible"].astype(jnp.float32)
            )
    weights_B = batch.get("weights", jnp.ones_like(per_example_B))
    total = jnp.sum(per_example_B * weights_B)
    return total if reduction == "sum" else total / jnp.maximum(jnp.sum(weights_B), 1.0)


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
