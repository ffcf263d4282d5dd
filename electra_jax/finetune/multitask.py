"""Multi-task fine-tuning, the original's `task_names` (`--config=...:task=rte+mrpc`): one shared
encoder, a head per task (`head_<task>`), the training rows of every task shuffled together into
mixed batches, and each row's loss from its own task's head: the original's
`reduce_sum(stack(task losses) * one_hot(task_id))` (run_finetuning.py)."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from electra_jax.errors import UserError
from electra_jax.finetune.heads import ClassificationHead, encode, task_loss
from electra_jax.finetune.tasks import TaskSpec, get_task
from electra_jax.model.config import ModelConfig
from electra_jax.model.layers import Dtype

SEPARATOR = "+"
MULTI_TASK_KINDS = ("classification", "regression")  # heads on [CLS]: one row layout for all


def get_tasks(task: str) -> list[TaskSpec]:
    """The tasks of `config.task` ("rte" or "rte+mrpc"), each checked; several must all be GLUE
    style (classification / regression: SQuAD, MRQA and tagging rows have other inputs)."""
    names = task.split(SEPARATOR)
    specs = [get_task(name) for name in names]
    if len({s.name for s in specs}) != len(specs):
        raise UserError(f"config.task={task!r} names a task twice; list each task once")
    if len(specs) > 1 and (odd := [s.name for s in specs if s.kind not in MULTI_TASK_KINDS]):
        raise UserError(
            f"config.task={task!r}: multi-task runs take classification and regression tasks "
            f"only ({', '.join(odd)} need other inputs); fine-tune {', '.join(odd)} on its own"
        )
    return specs


def head_name(spec: TaskSpec) -> str:
    return f"head_{spec.name}"


class MultiTaskModel(nn.Module):
    """The discriminator encoder (`electra`) with one [CLS] head per task (`head_<task>`)."""

    config: ModelConfig
    specs: tuple[TaskSpec, ...]
    head_init: str = "glorot_uniform"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, batch: dict[str, jax.Array], deterministic: bool = True) -> dict:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h_BxLxH = encode(self.config, batch, deterministic, **kw)
        out = {}
        for spec in self.specs:
            regression = spec.kind == "regression"
            outputs = 1 if regression else len(spec.labels)
            head = ClassificationHead(self.config, outputs, self.head_init, **kw,
                                      name=head_name(spec))  # fmt: skip
            logits_BxK = head(h_BxLxH, deterministic)
            out[spec.name] = {"predictions": logits_BxK[:, 0]} if regression else {
                "logits": logits_BxK}  # fmt: skip
        return out


def multitask_loss(
    outputs: dict, batch: dict[str, jax.Array], specs: Sequence[TaskSpec], reduction: str
) -> jax.Array:
    """Each row's loss from its task's head (rows of other tasks weigh 0 there), summed; "mean"
    divides by the rows in the batch."""
    total = jnp.zeros((), jnp.float32)
    for t, spec in enumerate(specs):
        mine_B = batch["task_id"] == t
        # Other tasks' labels are replaced (a 2.5 similarity is no class id: its gather is NaN,
        # and NaN x weight 0 is NaN).
        labels = jnp.where(mine_B, batch["labels"], 0.0)
        labels = labels if spec.kind == "regression" else labels.astype(jnp.int32)
        weights_B = mine_B.astype(jnp.float32)
        total += task_loss(outputs[spec.name], {"labels": labels, "weights": weights_B},
                           spec.kind, reduction="sum")  # fmt: skip
    return total if reduction == "sum" else total / batch["task_id"].shape[0]


def merge_train(trains: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The tasks' training rows as one set (the trainer's per-seed permutation mixes them):
    labels as float32 (class ids are exact there), `task_id` the task's index."""
    keys = ("input_ids", "segment_ids", "input_mask")
    merged = {k: np.concatenate([t[k] for t in trains]) for k in keys}
    merged["labels"] = np.concatenate([t["labels"].astype(np.float32) for t in trains])
    merged["task_id"] = np.concatenate(
        [np.full(len(t["input_ids"]), i, np.int32) for i, t in enumerate(trains)]
    )
    return merged


def task_outputs(outputs: dict[str, Any], spec: TaskSpec, multi: bool) -> dict[str, Any]:
    """One task's outputs of a (multi-task or single-task) model's predictions."""
    return outputs[spec.name] if multi else outputs
