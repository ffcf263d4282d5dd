"""Fine-tuning as a long job: a run stopped by SIGTERM after k steps (the notice is raised
in-process at a chosen step) saves its seed group, and a rerun of the same command resumes and
ends with the uninterrupted run's parameters, results and predictions, bit for bit. Slow twin:
the same on a two-host local pod, SIGTERM to every host."""

import json
import os
import signal
import sys
import time

import jax
import numpy as np
import pytest

from configs.finetune import get_config
from electra_jax.errors import UserError
from electra_jax.files.model_io import load_model
from electra_jax.finetune import trainer
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.train.checkpoints import PreemptionFlag
from launch.local_pod import Pod, pod_job_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tasks_dir(builtin_data_dir):
    cache = os.path.dirname(builtin_data_dir)  # the same files as tests/test_finetune_train.py
    return ensure_builtin_tasks(train=2000, dev=400, test=50, cache_dir=cache)


def config_for(builtin_data_dir, tasks_dir):
    config = get_config("task=builtin_replaced,size=tiny")
    overrides = dict(vocab_dir=builtin_data_dir, data_dir=tasks_dir, max_seq_len=32,
                     batch_size=8, max_train_examples=48, num_epochs=1.0, seeds=2,
                     seeds_per_group=1, log_every=1, checkpoint_every=4,
                     eval_batch_size=200)  # fmt: skip
    for key, value in overrides.items():
        config[key] = value
    return config


def sigterm_at(monkeypatch, global_step: int) -> None:
    """SIGTERM's flag goes up as the run's `global_step`-th training step is logged."""
    flags = []
    real_init = PreemptionFlag.__init__

    def init(self):
        real_init(self)
        flags.append(self)

    monkeypatch.setattr(PreemptionFlag, "__init__", init)
    real_write = trainer.MetricsLogger.write

    def write(self, step, values):
        real_write(self, step, values)
        if step == global_step:
            flags[-1].requested = True

    monkeypatch.setattr(trainer.MetricsLogger, "write", write)


def without_seconds(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in ("seconds", "export", "predictions")}


def flat(tree) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree.leaves_with_path(tree)}


def test_sigterm_then_rerun_equals_an_uninterrupted_run(
    tmp_path, builtin_data_dir, tasks_dir, monkeypatch
):
    config = config_for(builtin_data_dir, tasks_dir)
    straight = trainer.run(config, str(tmp_path / "straight"))
    assert straight["num_train_steps"] == 6 and straight["seeds"] == [0, 1]

    # Stopped in the second group (seed 1) at its step 3: group 1 finished, group 2 saved at 3.
    with monkeypatch.context() as m:
        sigterm_at(m, 6 + 3)
        stopped = trainer.run(config, str(tmp_path / "resumed"))
    assert "preempted" in stopped and "step 3 of seeds [1]" in stopped["preempted"]
    assert not (tmp_path / "resumed" / "results.json").exists()
    assert (tmp_path / "resumed" / "groups" / "seeds_0-0.json").exists()
    # Another config would not train on from there: one line, nothing touched.
    saved = (tmp_path / "resumed" / "config.json").read_text()
    config.learning_rate = 5e-4
    with pytest.raises(UserError, match=r"another config \(learning_rate=0.001 \(this run: 0.0005"):
        trainer.run(config, str(tmp_path / "resumed"))
    assert (tmp_path / "resumed" / "config.json").read_text() == saved
    config.learning_rate = 1e-3

    resumed = trainer.run(config, str(tmp_path / "resumed"))
    assert without_seconds(resumed) == without_seconds(straight)
    run, expected_run = tmp_path / "resumed", tmp_path / "straight"
    predictions = "predictions/builtin_replaced.tsv"
    assert (run / predictions).read_text() == (expected_run / predictions).read_text()
    _, params, _ = load_model(str(run / "export"))
    _, expected, _ = load_model(str(expected_run / "export"))
    got, want = flat(params), flat(expected)
    assert got.keys() == want.keys() and "['head']['output']['kernel']" in got
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13)), steps  # no duplicates, no gaps
    # Finished groups' checkpoints and the other seed's export are gone.
    assert not any((run / "checkpoints").iterdir())
    assert not (run / "seed_exports").exists()
    # A finished run reruns without training and reports the same.
    again = trainer.run(config, str(run))
    assert without_seconds(again) == without_seconds(straight)


def finetune_pod(workdir, builtin_data_dir: str, tasks_dir: str) -> Pod:
    """Two hosts of two CPU devices fine-tuning two seeds in two groups of 100 steps, a checkpoint
    every 2 (host 0 saves; both read)."""
    fields = {"vocab_dir": builtin_data_dir, "data_dir": tasks_dir, "max_seq_len": 32,
              "batch_size": 8, "max_train_examples": 800, "seeds": 2, "seeds_per_group": 1,
              "num_epochs": 1.0, "checkpoint_every": 2, "log_every": 10}  # fmt: skip
    args = ["--config=configs/finetune.py:task=builtin_replaced,size=tiny", f"--workdir={workdir}",
            *[f"--config.{k}={v}" for k, v in fields.items()]]  # fmt: skip
    command = [sys.executable, "-m", "electra_jax.finetune", *pod_job_args("finetune", args)]
    return Pod(command, hosts=2, devices=2, cwd=REPO)


@pytest.mark.slow
def test_pod_sigterm_to_every_host_then_rerun_equals_the_straight_pod(
    tmp_path, builtin_data_dir, tasks_dir
):
    straight = finetune_pod(tmp_path / "straight", builtin_data_dir, tasks_dir)
    assert straight.wait() == 0, straight.lines[-20:]
    workdir = tmp_path / "resumed"
    pod = finetune_pod(workdir, builtin_data_dir, tasks_dir)
    deadline = time.monotonic() + 600
    while not (workdir / "checkpoints" / "seeds_1-1" / "2").is_dir():  # host 0 saved in group 2
        assert time.monotonic() < deadline and pod.procs[0].poll() is None, pod.lines[-20:]
        time.sleep(0.05)
    pod.signal_all(signal.SIGTERM)
    assert pod.wait() == 0, pod.lines[-20:]
    assert any("preempted: saved step" in line for host, line in pod.lines if host == 0)
    assert not (workdir / "results.json").exists()
    rerun = finetune_pod(workdir, builtin_data_dir, tasks_dir)
    assert rerun.wait() == 0, rerun.lines[-20:]
    assert any("resume: seeds [1] from step" in line for host, line in rerun.lines if host == 1)
    read = lambda run: without_seconds(json.loads((run / "results.json").read_text()))
    assert read(workdir) == read(tmp_path / "straight")
    got, want = (
        flat(load_model(str(run / "export"))[1]) for run in (workdir, tmp_path / "straight")
    )
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
