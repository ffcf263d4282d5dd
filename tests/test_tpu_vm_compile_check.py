"""`launch/tpu_vm.py create` and `run` compile-check the job for the slice on this machine
before any gcloud call: printed by --dry-run, skipped by --skip-compile-check, and a misfit
stops the launch. Fakes on PATH stand in for gcloud and the check (no JAX, no network)."""

import os
import shlex
import sys
import textwrap

import pytest

from launch import tpu_vm

TPU = ["t1", "--zone=us-central2-b"]
CHECK = [sys.executable, "-m", "electra_jax.compile_check"]


def dry(argv, capsys) -> tuple[list[list[str]], str]:
    tpu_vm.main(argv)
    captured = capsys.readouterr()
    return [shlex.split(line) for line in captured.out.splitlines()], captured.err


def fake(tmp_path, name: str, body: str) -> str:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def test_create_dry_run_prints_the_check_first(capsys):
    argv = ["create", "--dry-run", *TPU, "--accelerator-type=v5litepod-16",
            "--config=configs/pretrain.py:base", "--config.remat=True"]  # fmt: skip
    (check, create), _ = dry(argv, capsys)
    assert check == [*CHECK, "--config=configs/pretrain.py:base", "--config.remat=True",
                     "--topology=v5litepod-16"]  # fmt: skip
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "t1"]
    (only,), _ = dry([*argv, "--skip-compile-check"], capsys)
    assert only == create
    (only,), err = dry(argv[:5], capsys)  # no --config: nothing to check, and it says so
    assert only == create and "nothing to compile-check" in err


def test_run_dry_run_checks_the_jobs_config_not_its_workdir(capsys):
    job = ["pretrain", "--config=configs/pretrain.py:small", "--workdir=gs://b/r",
           "--config.data.dir", "gs://b/owt 128"]  # fmt: skip
    (check, ssh), _ = dry(["run", "--dry-run", *TPU, "--accelerator-type=v4-8", *job], capsys)
    assert check == [*CHECK, "--config=configs/pretrain.py:small",
                     "--config.data.dir=gs://b/owt 128", "--topology=v4-8"]  # fmt: skip
    assert ssh[4] == "ssh" and "electra_jax.pretrain" in ssh[-1]
    (ssh_only,), err = dry(["run", "--dry-run", *TPU, *job], capsys)  # type unknown: said
    assert ssh_only == ssh and "--accelerator-type" in err


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """gcloud (describe answers v4-8; every call logged) and the check (exit status $CHECK_RC,
    its arguments logged) as fakes."""
    log = tmp_path / "calls.txt"
    fake(tmp_path, "gcloud", f"""
        echo "gcloud $*" >> {log}
        [ "$4" = describe ] && echo v4-8
        exit 0
    """)  # fmt: skip
    check = fake(tmp_path, "python", f'echo "check $*" >> {log}\nexit "${{CHECK_RC:-0}}"\n')
    monkeypatch.setattr(sys, "executable", check)
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    return log


def test_a_misfit_stops_create_before_gcloud(fakes, monkeypatch, capsys):
    monkeypatch.setenv("CHECK_RC", "1")
    with pytest.raises(SystemExit) as exc:
        tpu_vm.main(["create", *TPU, "--accelerator-type=v5litepod-8",
                     "--config=configs/pretrain.py:large"])  # fmt: skip
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "exit status 1" in err
    calls = fakes.read_text().splitlines()
    assert calls == [
        "check -m electra_jax.compile_check --config=configs/pretrain.py:large "
        "--topology=v5litepod-8"
    ]  # no gcloud call: nothing was created


def test_run_asks_gcloud_for_the_type_then_checks_then_starts(fakes, capsys):
    tpu_vm.main(["run", *TPU, "pretrain", "--config=configs/pretrain.py:base", "--workdir=w"])
    calls = fakes.read_text().splitlines()
    assert calls[0].startswith("gcloud compute tpus tpu-vm describe t1 ")
    assert calls[1] == (
        "check -m electra_jax.compile_check --config=configs/pretrain.py:base --topology=v4-8"
    )
    assert calls[2].startswith("gcloud compute tpus tpu-vm ssh t1 ") and len(calls) == 3


def test_a_finetune_job_is_checked_with_its_config_as_finetune_config(capsys):
    job = ["finetune", "--config=configs/finetune.py:task=rte,size=base", "--workdir=w",
           "--config.batch_size=16"]  # fmt: skip
    (check, _), _ = dry(["run", "--dry-run", *TPU, "--accelerator-type=v5e-8", *job], capsys)
    assert check == [*CHECK, "--finetune-config=configs/finetune.py:task=rte,size=base",
                     "--config.batch_size=16", "--topology=v5e-8"]  # fmt: skip
