"""A resume never throws a run away: a checkpoint of another model stops the run with one line
and touches nothing; a transient read error is retried, then stops; another mesh restores."""

import hashlib
import json
import os
import shutil

import orbax.checkpoint as ocp
import pytest

from electra_jax.errors import UserError
from electra_jax.files.run_files import read_metrics
from electra_jax.train import checkpoints
from electra_jax.train.trainer import train

SHORT = dict(num_train_steps=4, log_every=2, eval_every=100, checkpoint_every=2, export=False,
             eval_batches=0, **{"model.num_layers": 1})  # fmt: skip


def snapshot(root) -> dict[str, str]:
    """Every file under `root` with a hash of its bytes: what a refused resume must not change."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


def test_checkpoint_of_another_model_stops_naming_the_fields_and_touches_nothing(
    tiny_config, tmp_path
):
    train(tiny_config(**SHORT), str(tmp_path))
    before = snapshot(tmp_path)
    other = tiny_config(**{**SHORT, "num_train_steps": 6, "model.hidden_size": 128})
    with pytest.raises(UserError) as info:
        train(other, str(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert "checkpoint step 4" in message and "another model" in message, message
    assert "model.hidden_size=64 (this run: 128)" in message, message
    assert "new --workdir" in message, message
    assert snapshot(tmp_path) == before  # no step moved aside, metrics and config.json kept


def test_transient_read_error_is_retried_then_stops_without_moving_anything(
    tiny_config, tmp_path, monkeypatch
):
    config = tiny_config(**SHORT)
    train(config, str(tmp_path))
    monkeypatch.setattr(checkpoints, "RETRY_DELAYS_S", (0.0, 0.0))
    real_restore = ocp.CheckpointManager.restore
    calls = []

    def flaky(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) <= failures:
            raise ConnectionError("Connection reset by peer while reading the bucket")
        return real_restore(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", flaky)
    failures = 100  # never recovers: stop, one line, nothing moved
    before = snapshot(tmp_path)
    with pytest.raises(UserError) as info:
        train(config, str(tmp_path))
    assert "\n" not in str(info.value) and "checkpoint step 4" in str(info.value)
    assert "Connection reset" in str(info.value) and "rerun" in str(info.value)
    assert calls == [4] * (len(checkpoints.RETRY_DELAYS_S) + 1)
    assert snapshot(tmp_path) == before

    calls.clear()
    failures = 1  # recovers on the second try: resumes from the newest step
    config.unlock()
    config.num_train_steps, config.allow_schedule_change = 6, True
    train(config, str(tmp_path))
    assert calls == [4, 4]
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [2, 4, 6]


def test_resume_on_another_mesh_restores_the_same_arrays(tiny_config, tmp_path, capfd):
    """Saved on a (data 2, fsdp 4) mesh, resumed from step 4 on (data 1, fsdp 8) and on one
    device: Orbax reshards, and the resumed steps match the straight run's losses."""
    full = {**SHORT, "num_train_steps": 6, "mesh.num_devices": 8, "mesh.data": 2, "mesh.fsdp": 4}
    straight = tmp_path / "straight"
    train(tiny_config(**full), str(straight))
    expected = {r["step"]: r["loss"] for r in read_metrics(str(straight))}
    for name, mesh in (
        ("fsdp8", {"mesh.num_devices": 8, "mesh.data": 1, "mesh.fsdp": 8}),
        ("one_device", {"mesh.num_devices": 1, "mesh.data": 1, "mesh.fsdp": 1}),
    ):
        resumed = tmp_path / name
        shutil.copytree(straight, resumed)
        shutil.rmtree(resumed / "checkpoints" / "6")  # as if preempted after saving step 4
        capfd.readouterr()
        train(tiny_config(**{**full, **mesh}), str(resumed))
        assert "resume: from step 4" in capfd.readouterr().out
        got = {r["step"]: r["loss"] for r in read_metrics(str(resumed))}
        assert sorted(got) == [2, 4, 6]
        assert got[6] == pytest.approx(expected[6], rel=1e-4), (name, got, expected)
        with open(resumed / "config.json") as f:
            assert json.load(f)["mesh"]["fsdp"] == mesh["mesh.fsdp"]  # the new run's config
