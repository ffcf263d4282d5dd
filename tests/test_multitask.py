"""Multi-task fine-tuning (the original's `task_names`): `task=a+b` trains one encoder with a head
per task on mixed batches, each row's loss from its own task's head; results per task."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.finetune import get_config
from electra_jax.errors import UserError
from electra_jax.files.model_io import read_model_meta
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.finetune.multitask import get_tasks, merge_train, multitask_loss
from electra_jax.finetune.tasks import TASKS
from electra_jax.finetune.trainer import run


@pytest.fixture(scope="module")
def tasks_dir(builtin_data_dir):
    cache = os.path.dirname(builtin_data_dir)  # the same files as tests/test_finetune_train.py
    return ensure_builtin_tasks(train=2000, dev=400, test=50, cache_dir=cache)


def test_loss_takes_each_row_from_its_own_tasks_head():
    # Row 0 is task 0 (classification, label 1), row 1 task 1 (regression, label 2.5 of 5).
    specs = [TASKS["rte"], TASKS["stsb"]]
    outputs = {"rte": {"logits": jnp.array([[0.0, 2.0], [9.0, -9.0]])},
               "stsb": {"predictions": jnp.array([7.0, 0.3])}}  # fmt: skip
    batch = {"labels": jnp.array([1.0, 2.5]), "task_id": jnp.array([0, 1])}
    by_hand = math.log(1 + math.exp(-2.0)) + (0.3 - 0.5) ** 2  # -log softmax; (pred - y/5)^2
    assert float(multitask_loss(outputs, batch, specs, "sum")) == pytest.approx(by_hand, rel=1e-6)
    assert float(multitask_loss(outputs, batch, specs, "mean")) == pytest.approx(by_hand / 2)


def test_tasks_parse_and_the_unsupported_mixes_are_refused():
    assert [s.name for s in get_tasks("rte+sts")] == ["rte", "stsb"]  # the original's names too
    with pytest.raises(UserError, match="multi-task runs take classification and regression"):
        get_tasks("rte+squad20")
    with pytest.raises(UserError, match="names a task twice"):
        get_tasks("rte+rte")
    config = get_config("task=rte+mrpc,size=small")  # the original's multi-task defaults
    assert config.task == "rte+mrpc" and config.num_epochs == 3.0 and config.max_seq_len == 128
    ids = lambda n, v: np.full((n, 4), v, np.int32)
    first = {"input_ids": ids(2, 0), "segment_ids": ids(2, 0), "input_mask": ids(2, 1),
             "labels": np.array([1, 0])}  # fmt: skip
    second = {"input_ids": ids(1, 1), "segment_ids": ids(1, 0), "input_mask": ids(1, 1),
              "labels": np.array([3.5], np.float32)}  # fmt: skip
    merged = merge_train([first, second])
    assert merged["task_id"].tolist() == [0, 0, 1] and merged["labels"].tolist() == [1, 0, 3.5]


def test_two_builtin_tasks_in_one_run(tmp_path, builtin_data_dir, tasks_dir):
    config = get_config("task=builtin_replaced+builtin_continuity,size=tiny")
    overrides = dict(vocab_dir=builtin_data_dir, data_dir=tasks_dir, max_seq_len=32,
                     batch_size=16, max_train_examples=400, num_epochs=1.0, log_every=1000,
                     eval_batch_size=200, seeds=2)  # fmt: skip
    for key, value in overrides.items():
        config[key] = value
    results = run(config, str(tmp_path))
    assert results["task"] == "builtin_replaced+builtin_continuity"
    assert results["num_train_examples"] == 800 and results["num_train_steps"] == 50
    tasks = results["tasks"]
    assert list(tasks) == ["builtin_replaced", "builtin_continuity"]
    for name, summary in tasks.items():
        per_seed = summary["dev"]["dev"]["per_seed"]
        assert [m["seed"] for m in per_seed] == [0, 1], name
        assert summary["score"] == pytest.approx(np.median([m["accuracy"] for m in per_seed]))
    assert results["score"] == pytest.approx(np.mean([t["score"] for t in tasks.values()]))
    # builtin_replaced is learnable at this size (chance 50; test_finetune_train measured 76
    # with one task and 2 epochs): its head learned while sharing the encoder.
    assert tasks["builtin_replaced"]["score"] >= 60.0, tasks
    written = sorted(os.path.basename(p) for p in results["predictions"])
    assert written == ["builtin_continuity.tsv", "builtin_replaced.tsv"]
    meta = read_model_meta(str(tmp_path / "export"))
    assert [t["part"] for t in meta["head"]["tasks"]] == [
        "head_builtin_replaced", "head_builtin_continuity"]  # fmt: skip
    assert {"head_builtin_replaced", "head_builtin_continuity", "discriminator"} <= set(
        meta["parts"])  # fmt: skip
    assert jax.device_count() >= 1
