r"""Rehearse a pod on one machine before paying for a slice: N processes act as N hosts of one
JAX run (a coordinator on a free localhost port, gloo collectives between CPU processes, D fake
CPU devices each), with each host's output lines prefixed `[host i]`.

  python launch/local_pod.py --hosts=4 --devices-per-host=2 pretrain \
      --config=configs/pretrain.py:tiny --workdir=runs/pod --config.mesh.fsdp=4
  python launch/local_pod.py --hosts=2 --devices-per-host=2 finetune \
      --config=configs/finetune.py:task=builtin_replaced,size=tiny --workdir=runs/pod-ft
  python launch/local_pod.py --dry-run --hosts=2 --devices-per-host=4 pretrain \
      --config=configs/pretrain.py:tiny --workdir=runs/pod      # print the commands only

When one host exits with an error, the others get SIGTERM (SIGKILL after --grace-seconds) and
the launcher exits with the failing host's status; SIGTERM or Ctrl-C to the launcher is passed
to every host (pre-training saves a checkpoint and exits 0). Rerunning the same command resumes.
A --devices-per-host that the config's mesh (mesh.data x mesh.fsdp) cannot use, or a batch that
the hosts cannot split, stops in one line before anything starts. Pre-training runs with JAX's
persistent compilation cache off unless --config.compile_cache_dir is given (see pod_job_args).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from electra_jax import cli
from electra_jax.cli import ArgumentParser
from electra_jax.errors import UserError, exit_on_user_error
from launch import common
from launch.common import Command

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
CACHE_FLAG = "--config.compile_cache_dir"


def free_port() -> int:
    """A localhost TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_env(host: int, hosts: int, devices_per_host: int, port: int) -> dict[str, str]:
    """The variables that make a process host `host` of `hosts` (read by electra_jax's detection,
    train/distributed.py), on CPU with gloo collectives and `devices_per_host` fake devices."""
    return {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(hosts),
        "JAX_PROCESS_ID": str(host),
        "JAX_PLATFORMS": "cpu",
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
        "PYTHONUNBUFFERED": "1",
    }


def xla_flags(current: str, devices_per_host: int) -> str:
    """`current` XLA_FLAGS with the fake-device count replaced by `devices_per_host`."""
    kept = [f for f in current.split() if not f.startswith(DEVICE_COUNT_FLAG)]
    return " ".join([f"{DEVICE_COUNT_FLAG}={devices_per_host}", *kept])


def full_env(base: Mapping[str, str], host: int, hosts: int, devices: int, port: int) -> dict:
    """`base` (the launcher's environment) with one host's variables; SLURM and TPU variables
    are dropped so that detection sees only this rehearsal."""
    env = {k: v for k, v in base.items() if not k.startswith(("SLURM_", "TPU_", "MEGASCALE_"))}
    env.update(host_env(host, hosts, devices, port))
    env["XLA_FLAGS"] = xla_flags(base.get("XLA_FLAGS", ""), devices)
    return env


def pod_job_args(job: str, job_args: Sequence[str]) -> list[str]:
    """The job's flags, plus `--config.compile_cache_dir=` (off) for pre-training unless given:
    with JAX's persistent cache on CPU only process 0 finds its executables there (jax 0.10.2),
    so it would wait in the first collective while the others compile, and gloo gives up on a
    collective's set-up after 30 s."""
    if job == "pretrain" and not any(a.startswith(CACHE_FLAG) for a in job_args):
        return [*job_args, f"{CACHE_FLAG}="]
    return list(job_args)


def config_spec(job_args: Sequence[str]) -> str:
    """The job's --config value (`--config=X` or `--config X`)."""
    for i, arg in enumerate(job_args):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(job_args):
            return job_args[i + 1]
    return ""


def check_layout(job: str, job_args: Sequence[str], hosts: int, devices_per_host: int) -> None:
    """A pre-training config's mesh must use hosts x devices-per-host devices, and its batch must
    split over the hosts; else one line naming the flags to change, before anything starts."""
    if hosts < 1 or devices_per_host < 1:
        raise UserError(
            f"--hosts={hosts} and --devices-per-host={devices_per_host}; pass 1 or more"
        )
    spec = config_spec(job_args)
    if job != "pretrain" or not spec:
        return
    overrides, _ = cli.split_overrides(job_args)
    config = cli.load_config(spec, overrides)
    n = hosts * devices_per_host
    data, fsdp, used = config.mesh.data, config.mesh.fsdp, config.mesh.num_devices
    layout = f"--hosts={hosts} x --devices-per-host={devices_per_host} = {n} devices"
    if used > 0 and used != n:
        raise UserError(f"{layout}, but mesh.num_devices={used} ({spec}); on a pod every device "
                        "takes part: drop --config.mesh.num_devices or match it")  # fmt: skip
    fixed = (data if data > 0 else 1) * (fsdp if fsdp > 0 else 1)  # -1 takes the rest
    fits = lambda d: hosts * d == fixed if data > 0 and fsdp > 0 else hosts * d % fixed == 0
    if not fits(devices_per_host):
        good = [d for d in range(1, fixed + 1) if fits(d)]
        hint = f"pass --devices-per-host={good[0]}" if good else "change --hosts"
        raise UserError(
            f"{layout}, which the mesh data={data} x fsdp={fsdp} ({spec}) cannot use; {hint}, "
            "or set --config.mesh.data / --config.mesh.fsdp (-1: the remaining devices)"
        )
    if config.batch_size % hosts:
        raise UserError(f"batch_size={config.batch_size} does not split over --hosts={hosts}; "
                        f"set --config.batch_size to a multiple of {hosts}")  # fmt: skip


def dry_run_lines(command: Command, hosts: int, devices: int, port: int) -> list[str]:
    """One shell line per host: its variables, then the job (pasting them all, each with `&`,
    runs the rehearsal by hand)."""
    lines = []
    for host in range(hosts):
        env = host_env(host, hosts, devices, port)
        env["XLA_FLAGS"] = xla_flags(os.environ.get("XLA_FLAGS", ""), devices)
        lines.append(common.format_command(["env", *[f"{k}={v}" for k, v in env.items()],
                                            *command]))  # fmt: skip
    return lines


class Pod:
    """The running hosts: their processes, output relays and the first failure."""

    def __init__(self, command: Command, hosts: int, devices: int, port: int = 0,
                 cwd: str | None = None, base_env: Mapping[str, str] | None = None):  # fmt: skip
        port = port or free_port()
        base = dict(os.environ if base_env is None else base_env)
        self.procs = [
            subprocess.Popen(command, cwd=cwd, env=full_env(base, i, hosts, devices, port),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1, start_new_session=True)
            for i in range(hosts)
        ]  # fmt: skip
        self._print_lock = threading.Lock()
        self.lines: list[tuple[int, str]] = []  # (host, line), in the order printed
        self.relays = [threading.Thread(target=self._relay, args=(i, p.stdout), daemon=True)
                       for i, p in enumerate(self.procs)]  # fmt: skip
        for relay in self.relays:
            relay.start()

    def _relay(self, host: int, stream) -> None:
        for line in stream:
            with self._print_lock:
                self.lines.append((host, line.rstrip()))
                print(f"[host {host}] {line.rstrip()}", flush=True)

    def signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    def wait(self, grace_s: float = 10.0, poll_s: float = 0.2) -> int:
        """Waits for every host; the first that fails stops the others. Returns 0, or the first
        failing host's status (128 + N for a signal N, as a shell reports it)."""
        failed: int | None = None
        deadline = None
        while any(p.poll() is None for p in self.procs):
            for host, proc in enumerate(self.procs):
                code = proc.poll()
                if failed is None and code not in (None, 0):
                    failed = code
                    status = f"signal {-code}" if code < 0 else f"status {code}"
                    print(f"[local_pod] host {host} exited with {status}; stopping the other "
                          "hosts", file=sys.stderr, flush=True)  # fmt: skip
                    self.signal_all(signal.SIGTERM)
                    deadline = time.monotonic() + grace_s
            if deadline is not None and time.monotonic() > deadline:
                self.signal_all(signal.SIGKILL)
            time.sleep(poll_s)
        for relay in self.relays:
            relay.join(timeout=5)
        if failed is None:
            failed = next((p.returncode for p in self.procs if p.returncode), 0)
        return 128 - failed if failed < 0 else failed


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python launch/local_pod.py", description=__doc__)
    parser.add_argument("--hosts", type=int, default=2, help="processes, one per fake host")
    parser.add_argument("--devices-per-host", type=int, default=4,
                        help="fake CPU devices of each host")  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help="coordinator port (0: a free one)")
    parser.add_argument("--grace-seconds", type=float, default=10.0,
                        help="after one host fails, wait this long before SIGKILL")  # fmt: skip
    parser.add_argument("--python", default=sys.executable, help="interpreter of the hosts")
    common.add_dry_run(parser)
    common.add_job_arguments(parser)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Starts the hosts (or prints their commands) and exits with the pod's status."""
    args = build_parser().parse_args(argv)
    common.check_job_args(args.job, args.job_args)
    check_layout(args.job, args.job_args, args.hosts, args.devices_per_host)
    command = common.job_argv(args.python, args.job, pod_job_args(args.job, args.job_args))
    if args.dry_run:
        port = args.port or free_port()
        print("\n".join(dry_run_lines(command, args.hosts, args.devices_per_host, port)))
        return
    pod = Pod(command, args.hosts, args.devices_per_host, args.port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pod.signal_all(signal.SIGTERM))
    sys.exit(pod.wait(args.grace_seconds))


if __name__ == "__main__":
    main()
