"""Pre-training command-line errors: one line naming the problem and the fix, exit 2."""

import os
import subprocess
import sys

import pytest

from electra_jax.errors import UserError
from electra_jax.train.trainer import train

CFG = "--config=configs/pretrain.py:tiny"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARSE = (
    "import sys; from electra_jax.pretrain import parse_args; "
    "c, w = parse_args(sys.argv[1:]); print(c.batch_size, c.mesh.fsdp, w)"
)


def parse(*argv: str) -> subprocess.CompletedProcess:
    """absl flags are process-global: parse in a fresh (jax-free, ~1 s) interpreter."""
    cmd = [sys.executable, "-c", PARSE, *argv]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--workdir=/tmp/x"], "missing --config"),
        ([CFG], "missing --workdir"),
        ([CFG, "--workdir=/tmp/x", "--config.nope=1"], "unknown config field 'nope'"),
        ([CFG, "--workdir=/tmp/x", "--config.batch_size=abc"], "--config.batch_size=abc"),
        (["--config=configs/pretrain.py:huge", "--workdir=/tmp/x"], "unknown size 'huge'"),
        (["--config=configs/nope.py:tiny", "--workdir=/tmp/x"], "configs/nope.py does not exist"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, expected):
    result = parse(*argv)
    assert result.returncode == 2
    err = result.stderr
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err


def test_good_flags_apply_overrides():
    result = parse(CFG, "--workdir=/tmp/w", "--config.batch_size=8", "--config.mesh.fsdp=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["8", "2", "/tmp/w"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"data.dir": "/nonexistent"}, "meta.json"),
        ({"max_seq_len": 128}, "max_seq_len"),  # the fixture's shards are length 64
        ({"model.vocab_size": 1000}, "vocab_size"),
        ({"log_every": 3, "steps_per_call": 2}, "multiple of steps_per_call"),
        ({"mesh.data": 3, "mesh.fsdp": 1}, "mesh data=3"),
    ],
)
def test_bad_config_stops_before_training(tiny_config, tmp_path, overrides, expected):
    config = tiny_config(**overrides)
    with pytest.raises(UserError, match=expected):
        train(config, str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()
