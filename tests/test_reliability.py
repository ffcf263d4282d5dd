"""Reliability: kills at random moments, corrupt checkpoints and failed saves never lose work."""

import glob
import os
import re
import resource
import signal
import subprocess
import time

import orbax.checkpoint as ocp
import pytest

from electra_jax.train.checkpoints import UNREADABLE_SUFFIX
from electra_jax.train.trainer import train
from launch.kill_campaign import (
    REPO,
    campaign,
    one_cpu_device_env,
    pretrain_command,
    summary_line,
)


@pytest.mark.parametrize(
    "kills", [3, pytest.param(20, marks=pytest.mark.slow)], ids=["3-kills", "20-kills"]
)
def test_kill_campaign_resumes_bit_exact(builtin_data_dir, tmp_path, kills):
    """SIGKILLs (about half during an async save) then a SIGTERM: after every resume the final
    parameters equal an uninterrupted run's bit for bit, metrics.jsonl has each step once, and
    no resume picked a checkpoint it could not read."""
    result = campaign(str(tmp_path), builtin_data_dir, kills=kills, seed=kills, num_steps=40)
    assert result.kills == kills, summary_line(result)
    assert result.sigterms == 1, summary_line(result)
    assert result.identical_params, summary_line(result)
    assert result.metrics_continuous, summary_line(result)
    assert result.unreadable_choices == 0, summary_line(result)


def corrupt_by_truncation(step_dir: str) -> None:
    """Cuts every array data file of the step in half (a disk that lost the tail of a write)."""
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    assert files
    for path in files:
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


def corrupt_by_garbling(step_dir: str) -> None:
    """Overwrites the step's state metadata with bytes that are not JSON."""
    path = os.path.join(step_dir, "state", "_METADATA")
    with open(path, "wb") as f:
        f.write(os.urandom(64))


def test_corrupt_latest_checkpoint_falls_back_with_one_line(tiny_config, tmp_path, capfd):
    """A truncated, then a garbled, latest checkpoint: resume says so in one line, moves it
    aside, restarts from the previous good step and finishes (one config: one compile)."""
    config = tiny_config(num_train_steps=6, log_every=2, eval_every=100, checkpoint_every=2,
                         export=False, eval_batches=0, **{"model.num_layers": 1})  # fmt: skip
    ckpt = tmp_path / "checkpoints"
    train(config, str(tmp_path))
    for corrupt in (corrupt_by_truncation, corrupt_by_garbling):
        capfd.readouterr()
        corrupt(str(ckpt / "6"))
        train(config, str(tmp_path))
        out, err = capfd.readouterr()
        warnings = [line for line in err.splitlines() if "unreadable" in line]
        assert len(warnings) == 1, err
        assert "checkpoint step 6" in warnings[0] and "falling back" in warnings[0]
        assert "resume: from step 4" in out, out
        assert os.path.isdir(ckpt / "6")  # the run went on and saved step 6 again
    assert len(glob.glob(str(ckpt / f"6{UNREADABLE_SUFFIX}*"))) == 2  # kept for inspection


def test_failed_save_stops_with_one_line_and_keeps_earlier_checkpoints(builtin_data_dir, tmp_path):
    """A write error during an async save (a per-file size limit set on the running process,
    which fails writes with EFBIG like a full disk fails them with ENOSPC) stops the run with a
    one-line error; the committed checkpoints stay readable (the kill campaign shows that the
    same command resumes from them)."""
    workdir = str(tmp_path)
    command = pretrain_command(workdir, builtin_data_dir, num_steps=12)
    env = one_cpu_device_env()

    # Ignored signals stay ignored across exec: writes past the limit then fail with EFBIG
    # instead of killing the process with SIGXFSZ.
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        signal.signal(signal.SIGXFSZ, previous)
    first = os.path.join(workdir, "checkpoints", "2")
    start = time.time()
    while not os.path.isdir(first):
        assert proc.poll() is None and time.time() - start < 300, proc.communicate()
        time.sleep(0.005)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (100_000, 100_000))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, out + err
    # Orbax / tensorstore print their own errors from writer threads (possibly in the middle of
    # our line's row): ours is the one `error: saving checkpoint ...` message.
    ours = re.findall(r"error: saving checkpoint step \d+ [^\n]*", err)
    assert len(ours) == 1, err
    assert "File too large" in ours[0] and "are intact" in ours[0] and "rerun" in ours[0]
    kept = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    assert kept and kept[-1] < 12, kept
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    restored = manager.restore(kept[-1], args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    assert int(restored.state["step"]) == kept[-1]  # the newest committed step still reads
    manager.close()
