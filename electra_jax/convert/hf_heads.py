"""A fine-tuned export's task head (model.json `head`) as Hugging Face weights: GLUE
classification / regression -> ElectraForSequenceClassification, tagging ->
ElectraForTokenClassification; SQuAD / MRQA have no HF model of their head's shape (refused).

Our [CLS] head is the original's single dense layer; HF's is dense -> GELU -> out_proj. It holds
ours exactly: dense = identity plus a shift s that keeps every input of the GELU at or above
GELU_SAFE (the final LayerNorm bounds |h_i| by sqrt(H - 1)|gamma_i| + |beta_i|), where
GELU(z) = z in float32; out_proj = our kernel, its bias ours minus kernel . s (docs/spec.md
§5.10)."""

import math
from typing import Any

import numpy as np

from electra_jax.errors import UserError
from electra_jax.model.config import ModelConfig

GELU_SAFE = 6.0  # 1 - Phi(z) < 2^-25 from z ~ 5.4: erf rounds to 1 and GELU(z) == z in float32


def pick_task(head: dict, task: str | None, source: str) -> dict:
    """The head description of `task` (or of the only task) in model.json's `head`."""
    tasks = head["tasks"]
    names = [t["name"] for t in tasks]
    if task is None and len(tasks) > 1:
        raise UserError(f"{source} holds heads for tasks {', '.join(names)}; pick one with "
                        "--task=NAME")  # fmt: skip
    chosen = [t for t in tasks if task in (None, t["name"])]
    if not chosen:
        raise UserError(f"--task={task}: {source} has heads for {', '.join(names)} only")
    return chosen[0]


def final_layer_norm(params: dict, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) of the discriminator's last LayerNorm: the hidden states the heads see."""
    norm = params["discriminator"][f"layer_{config.discriminator.num_layers - 1}"]
    return tuple(np.asarray(norm["output_LayerNorm"][leaf]) for leaf in ("scale", "bias"))


def head_to_hf(
    params: dict, config: ModelConfig, task: dict, source: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(HF head weights, HF config fields) for one task's head in `params[task["part"]]`."""
    kind, labels = task["kind"], task["labels"]
    if kind == "span":
        raise UserError(
            f"{source}: the {task['name']} QA head (start logits, an end head conditioned on the "
            "start through a 512-wide GELU layer, an answerability classifier) has no Hugging "
            "Face model: ElectraForQuestionAnswering is one dense layer to start/end logits"
        )
    output = params[task["part"]]["output"]
    W_HxK = np.asarray(output["kernel"], np.float64)
    b_K = np.asarray(output["bias"], np.float64)
    fields: dict[str, Any] = {"num_labels": W_HxK.shape[1]}
    if labels:
        fields["id2label"] = {str(i): label for i, label in enumerate(labels)}
        fields["label2id"] = {label: i for i, label in enumerate(labels)}
    f32 = lambda x: np.ascontiguousarray(x, np.float32)
    if kind == "tagging":  # the same dense at every position (ours reads each word's first one)
        fields["architectures"] = ["ElectraForTokenClassification"]
        return {"classifier.weight": f32(W_HxK.T), "classifier.bias": f32(b_K)}, fields
    H = W_HxK.shape[0]
    scale_H, bias_H = (np.asarray(x, np.float64) for x in final_layer_norm(params, config))
    shift_H = math.sqrt(H - 1) * np.abs(scale_H) + np.abs(bias_H) + GELU_SAFE
    shift_H = shift_H.astype(np.float32).astype(np.float64)  # as the HF model will hold it
    fields["architectures"] = ["ElectraForSequenceClassification"]
    fields["problem_type"] = "regression" if kind == "regression" else "single_label_classification"
    weights = {
        "classifier.dense.weight": f32(np.eye(H)),
        "classifier.dense.bias": f32(shift_H),
        "classifier.out_proj.weight": f32(W_HxK.T),
        "classifier.out_proj.bias": f32(b_K - W_HxK.T @ shift_H),
    }
    return weights, fields
