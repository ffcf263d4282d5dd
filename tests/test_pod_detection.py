"""Pod detection with its inputs faked (environment, TPU VM metadata): the arguments
`jax.distributed.initialize` gets; one-line errors for an unreachable coordinator and missing
process counts; launch/local_pod.py's commands, layout check, output prefixes and stop-all.
Expected coordinator addresses are computed by hand from jax's rules (cloud_tpu_cluster.py,
slurm_cluster.py in jax 0.10.2)."""

import os
import socket
import subprocess
import sys
import time

import jax
import pytest

from electra_jax.errors import UserError
from electra_jax.train import distributed
from electra_jax.train.distributed import Cluster, detect, first_slurm_host
from launch import local_pod

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def never_on_tpu() -> bool:
    return False


def no_metadata(key: str) -> str:
    raise AssertionError(f"metadata read off a TPU VM: {key}")


def args_of(env: dict, metadata=no_metadata, on_tpu_vm=never_on_tpu) -> tuple | None:
    cluster = detect(env, metadata, on_tpu_vm)
    return None if cluster is None else (cluster.coordinator_address, cluster.num_processes,
                                         cluster.process_id, cluster.source)  # fmt: skip


# ----------------------------------------------------------------------------- detection


def test_explicit_coordinator_variables():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
           "JAX_PROCESS_ID": "3"}  # fmt: skip
    assert args_of(env) == ("10.0.0.1:1234", 4, 3, "coordinator variables")
    assert args_of({**env, "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}) is None  # one host
    # Explicit variables win over SLURM's.
    slurm = {"SLURM_JOB_ID": "1", "SLURM_NTASKS": "8", "SLURM_PROCID": "5",
             "SLURM_STEP_NODELIST": "n1"}  # fmt: skip
    assert args_of({**slurm, **env})[:3] == ("10.0.0.1:1234", 4, 3)


def test_coordinator_address_takes_count_and_index_from_srun():
    """launch/slurm.py's script exports JAX_COORDINATOR_ADDRESS; srun gives count and index."""
    env = {"JAX_COORDINATOR_ADDRESS": "gpu007:61497", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"}
    assert args_of(env)[:3] == ("gpu007:61497", 2, 1)


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=I"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
         "process index 2 is outside [0, 2)"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
         "JAX_NUM_PROCESSES='two' is not an integer"),
        ({"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
         "has no port; expected HOST:PORT"),
        ({"TPU_WORKER_HOSTNAMES": "a,b"}, "TPU_WORKER_ID=None is not an integer"),
    ],
)  # fmt: skip
def test_incomplete_variables_are_one_line_errors(env, needle):
    with pytest.raises(UserError, match=None) as e:
        detect(env, no_metadata, never_on_tpu)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_slurm_step():
    env = {"SLURM_JOB_ID": "12345", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
           "SLURM_LOCALID": "0", "SLURM_STEP_NODELIST": "gpu[007-008]"}  # fmt: skip
    # jax's port rule: 12345 % 4096 + 61440 = 57 + 61440.
    assert args_of(env) == ("gpu007:61497", 2, 1, "SLURM")
    assert args_of({**env, "JAX_COORDINATOR_PORT": "5000"})[0] == "gpu007:5000"
    assert args_of({**env, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    batch_script = {k: v for k, v in env.items() if k != "SLURM_STEP_NODELIST"}
    assert args_of(batch_script) is None  # outside srun: one process (jax's rule too)


@pytest.mark.parametrize(
    "nodelist, first",
    [("node001", "node001"), ("a,b", "a"), ("n[003-005,9],x", "n003"), ("n[7]", "n7"),
     ("gpu-a[10,12]", "gpu-a10")],
)  # fmt: skip
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first


def test_tpu_worker_variables_and_multislice():
    env = {"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3", "TPU_WORKER_ID": "2"}
    assert args_of(env) == ("t-0:8482", 4, 2, "TPU worker variables")
    assert args_of({"TPU_WORKER_HOSTNAMES": "t-0", "TPU_WORKER_ID": "0"}) is None  # one host
    # Two slices of 4 hosts: worker 2 of slice 1 is process 2 + 1 * 4; the megascale
    # coordinator's host with jax's TPU port.
    multislice = {**env, "MEGASCALE_NUM_SLICES": "2", "MEGASCALE_SLICE_ID": "1",
                  "MEGASCALE_COORDINATOR_ADDRESS": "c0:9999"}  # fmt: skip
    assert args_of(multislice)[:3] == ("c0:8482", 8, 6)


def fake_metadata(values: dict):
    read = []

    def metadata(key: str) -> str | None:
        read.append(key)
        return values.get(key)

    return metadata, read


def test_tpu_vm_metadata_as_jax_reads_it():
    # The old endpoint format (name:id:ip) yields the IPs; the first worker coordinates.
    metadata, read = fake_metadata({
        "worker-network-endpoints": "w0:0:10.0.0.2,w1:1:10.0.0.3,w2:2:10.0.0.4,w3:3:10.0.0.5",
        "agent-worker-number": "1",
    })  # fmt: skip
    assert args_of({}, metadata, lambda: True) == ("10.0.0.2:8482", 4, 1, "TPU VM metadata")
    assert "worker-network-endpoints" in read
    metadata, _ = fake_metadata(
        {
            "worker-network-endpoints": "h0,h1",
            "agent-worker-number": "0",
            "tpu-env": "MEGASCALE_NUM_SLICES: '2'\nMEGASCALE_SLICE_ID: '1'",
        }
    )
    assert args_of({}, metadata, lambda: True)[:3] == ("h0:8482", 4, 2)
    single, _ = fake_metadata({"worker-network-endpoints": "h0", "agent-worker-number": "0"})
    assert args_of({}, single, lambda: True) is None  # a one-host TPU VM
    assert args_of({"TPU_SKIP_MDS_QUERY": "1"}, no_metadata, lambda: True) is None
    assert args_of({}) is None  # off a TPU VM metadata is never read (no_metadata would raise)


def test_initialize_passes_the_detected_arguments(monkeypatch):
    """initialize_if_multi_host waits for the coordinator, then calls jax.distributed.initialize
    with the detected arguments and the timeouts from the environment."""
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    with socket.socket() as server:  # a coordinator that answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        env = {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2",
               "JAX_PROCESS_ID": "1", "ELECTRA_JAX_INIT_TIMEOUT": "7",
               "ELECTRA_JAX_HEARTBEAT_TIMEOUT": "9"}  # fmt: skip
        cluster = distributed.initialize_if_multi_host(env)
    assert cluster == Cluster(address, 2, 1, "coordinator variables")
    assert calls == [((address, 2, 1), {"initialization_timeout": 7,
                                        "heartbeat_timeout_seconds": 9})]  # fmt: skip
    assert distributed.initialize_if_multi_host({}) is None and len(calls) == 1
    with pytest.raises(UserError, match="ELECTRA_JAX_INIT_TIMEOUT='soon'"):
        distributed.initialize_if_multi_host({**env, "ELECTRA_JAX_INIT_TIMEOUT": "soon"})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("job", ["pretrain", "finetune"])
def test_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path, job):
    port = closed_port()
    env = {
        **os.environ,
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
        "ELECTRA_JAX_INIT_TIMEOUT": "2",
    }
    config = "configs/pretrain.py:tiny" if job == "pretrain" else \
        "configs/finetune.py:task=builtin_replaced,size=tiny"  # fmt: skip
    workdir = tmp_path / "run"
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", f"electra_jax.{job}", f"--config={config}",
         f"--workdir={workdir}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: cannot reach the coordinator 127.0.0.1:{port} within 2s"
    ), errors
    assert time.monotonic() - start < 60
    assert not workdir.exists()  # nothing written


# ----------------------------------------------------------------------------- local_pod

POD_JOB = ["pretrain", "--config=configs/pretrain.py:tiny", "--workdir=/tmp/never-written"]


def test_local_pod_dry_run_prints_one_command_per_host(capsys, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_dump_to=x")
    local_pod.main(["--dry-run", "--hosts=4", "--devices-per-host=2", "--port=1234", *POD_JOB])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    for i, line in enumerate(lines):
        assert line.startswith("env JAX_COORDINATOR_ADDRESS=127.0.0.1:1234 JAX_NUM_PROCESSES=4 "
                               f"JAX_PROCESS_ID={i} JAX_PLATFORMS=cpu ")  # fmt: skip
        assert "JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo" in line
        assert "'XLA_FLAGS=--xla_force_host_platform_device_count=2 --xla_dump_to=x'" in line
        assert line.endswith(
            " -m electra_jax.pretrain --config=configs/pretrain.py:tiny "
            "--workdir=/tmp/never-written "
            "--config.compile_cache_dir="
        )  # cache off: see pod_job_args
    assert not os.path.exists("/tmp/never-written")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--hosts=2", "--devices-per-host=3", "--config.mesh.fsdp=4"],
         "= 6 devices, which the mesh data=-1 x fsdp=4 (configs/pretrain.py:tiny) cannot use; "
         "pass --devices-per-host=2"),
        (["--hosts=2", "--devices-per-host=2", "--config.mesh.data=2", "--config.mesh.fsdp=4"],
         "pass --devices-per-host=4"),
        (["--hosts=3", "--devices-per-host=2"], "batch_size=32 does not split over --hosts=3"),
        (["--hosts=0"], "pass 1 or more"),
    ],
)  # fmt: skip
def test_local_pod_layout_that_the_mesh_cannot_use_is_one_line(capsys, flags, needle):
    pod_flags = [f for f in flags if not f.startswith("--config.")]
    overrides = [f for f in flags if f.startswith("--config.")]
    with pytest.raises(SystemExit) as e:  # not a dry run: it must fail before starting
        local_pod.main([*pod_flags, *POD_JOB, *overrides])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and needle in err, err
    assert not os.path.exists("/tmp/never-written")


def test_local_pod_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        local_pod.main(["--help"])
    assert "--hosts=4 --devices-per-host=2 pretrain" in capsys.readouterr().out


def test_pod_prefixes_output_and_stops_every_host_when_one_fails(capfd):
    """Host 1 fails (exit 3) while hosts 0 and 2 would run for a minute: the pod stops them
    and reports 3; every host saw its own process index and device count."""
    script = (
        "import os, sys, time; i = int(os.environ['JAX_PROCESS_ID']); "
        "print('index', i, 'of', os.environ['JAX_NUM_PROCESSES'], os.environ['XLA_FLAGS'], "
        "flush=True); time.sleep(1 if i == 1 else 60); sys.exit(3)"
    )
    start = time.monotonic()
    pod = local_pod.Pod([sys.executable, "-c", script], hosts=3, devices=2)
    assert pod.wait(grace_s=5) == 3
    assert time.monotonic() - start < 30
    out, err = capfd.readouterr()
    for i in range(3):
        assert f"[host {i}] index {i} of 3 --xla_force_host_platform_device_count=2" in out
    assert "[local_pod] host 1 exited with status 3; stopping the other hosts" in err
    assert all(p.returncode == -15 for i, p in enumerate(pod.procs) if i != 1)  # SIGTERM


# ----------------------------------------------------------------------------- watchdog


class FakeKeyValueStore:
    """The coordinator's key-value store as the watchdog uses it; `fail` makes it unreachable."""

    def __init__(self, values: dict | None = None):
        self.values, self.fail = dict(values or {}), False

    def key_value_set(self, key: str, value: str, allow_overwrite: bool = False) -> None:
        if self.fail:
            raise RuntimeError("UNAVAILABLE: Socket closed")
        self.values[key] = value

    def key_value_dir_get(self, prefix: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.values.items() if k.startswith(prefix)]


def watch(monkeypatch, store: FakeKeyValueStore, seconds: float) -> list[str]:
    """Runs host 0's watchdog (of 2) for `seconds`; the messages it would leave with."""
    left = []
    dog = distributed.HostWatchdog(store, me=0, count=2, stale_s=0.3, beat_s=0.05)

    def record(message: str) -> None:
        left.append(message)
        dog._stop.set()  # as os._exit would end the process

    monkeypatch.setattr(distributed, "leave", record)
    dog._thread.start()
    time.sleep(seconds)
    dog._stop.set()
    dog._thread.join(timeout=5)
    return left


def test_watchdog_leaves_when_a_host_stops_beating(monkeypatch):
    left = watch(monkeypatch, FakeKeyValueStore({"electra_jax/alive/1": "7"}), 1.0)
    assert left == ["host 0 of 2: host 1 stopped responding for 0s (killed or frozen); stopping. "
                    f"{distributed.RERUN}"]  # fmt: skip


def test_watchdog_ignores_a_host_that_finished(monkeypatch):
    assert watch(monkeypatch, FakeKeyValueStore({"electra_jax/alive/1": "done"}), 1.0) == []


def test_watchdog_leaves_when_the_coordinator_is_gone(monkeypatch):
    store = FakeKeyValueStore()
    store.fail = True
    left = watch(monkeypatch, store, 0.5)
    assert len(left) == 1 and left[0].startswith("host 0 of 2 lost the coordinator, host 0 (")
