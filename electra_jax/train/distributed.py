"""Multi-host runs: which hosts make this run (explicit coordinator variables, SLURM, a Cloud TPU
slice), joining them with `jax.distributed.initialize`, reading sharded values on every host, and
leaving in one line when another host is lost.

Detection reads its inputs through arguments (the environment, a metadata reader), so tests fake
them. The TPU rules follow jax's own (jax/_src/clusters/cloud_tpu_cluster.py): a GCE TPU VM
lists its workers in instance metadata (`worker-network-endpoints`, `agent-worker-number`), GKE
in TPU_WORKER_HOSTNAMES / TPU_WORKER_ID; multislice adds MEGASCALE_* (environment or `tpu-env`).
"""

import atexit
import contextlib
import dataclasses
import importlib
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from electra_jax.errors import UserError

EXIT_HOST_LOST = 4
TPU_COORDINATOR_PORT = 8482  # jax's default for TPU slices
INIT_TIMEOUT_VAR, DEFAULT_INIT_TIMEOUT_S = "ELECTRA_JAX_INIT_TIMEOUT", 300
HEARTBEAT_VAR, DEFAULT_HEARTBEAT_S = "ELECTRA_JAX_HEARTBEAT_TIMEOUT", 100
# Messages of a failed cross-host collective or a lost coordination service (gloo, gRPC).
_HOST_LOSS = re.compile(
    r"gloo|connection (closed|reset|refused)|heartbeat|coordination|barrier|UNAVAILABLE|"
    r"DEADLINE_EXCEEDED|socket closed|broken pipe",
    re.IGNORECASE,
)  # fmt: skip

Env = Mapping[str, str]
Metadata = Callable[[str], str | None]


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The arguments `jax.distributed.initialize` gets, and where they came from."""

    coordinator_address: str
    num_processes: int
    process_id: int
    source: str


# ----------------------------------------------------------------------------- detection


def _int(env: Env, name: str, source: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise UserError(
            f"{source}: {name}={env.get(name)!r} is not an integer; export {name} on every host"
        ) from None


def _checked(cluster: Cluster) -> Cluster | None:
    """None for a one-process 'cluster'; a one-line error for an impossible process index."""
    if cluster.num_processes < 1 or not 0 <= cluster.process_id < cluster.num_processes:
        raise UserError(
            f"{cluster.source}: process index {cluster.process_id} is outside [0, "
            f"{cluster.num_processes}); give each host a distinct index from 0 to "
            f"{cluster.num_processes - 1}"
        )
    if not re.fullmatch(r".+:\d+", cluster.coordinator_address):
        raise UserError(
            f"{cluster.source}: coordinator address {cluster.coordinator_address!r} has no port; "
            "expected HOST:PORT, e.g. JAX_COORDINATOR_ADDRESS=10.0.0.1:1234"
        )
    return cluster if cluster.num_processes > 1 else None


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'n[003-005,9],x' -> 'n003', 'a,b' -> 'a'."""
    match = re.match(r"([^,\[]+)(?:\[([^,\-\]]+))?", nodelist)
    if not match:
        raise UserError(f"SLURM node list {nodelist!r} names no host")
    return match.group(1) + (match.group(2) or "")


def from_coordinator_variables(env: Env) -> Cluster | None:
    """JAX_COORDINATOR_ADDRESS with JAX_NUM_PROCESSES / JAX_PROCESS_ID (or SLURM's task count and
    index inside srun, as launch/slurm.py's script sets them)."""
    address = env.get("JAX_COORDINATOR_ADDRESS")
    if not address:
        return None
    source = f"JAX_COORDINATOR_ADDRESS={address}"
    if "JAX_NUM_PROCESSES" in env or "JAX_PROCESS_ID" in env:
        count, index = _int(env, "JAX_NUM_PROCESSES", source), _int(env, "JAX_PROCESS_ID", source)
    elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        count, index = _int(env, "SLURM_NTASKS", source), _int(env, "SLURM_PROCID", source)
    else:
        raise UserError(
            f"{source} is set but not the process count and index: export JAX_NUM_PROCESSES=N "
            "and JAX_PROCESS_ID=I (0..N-1, distinct) on every host, or unset "
            "JAX_COORDINATOR_ADDRESS for a one-host run"
        )
    return _checked(Cluster(address, count, index, "coordinator variables"))


def from_slurm(env: Env) -> Cluster | None:
    """A task of an `srun` step with several tasks (jax's rule: the step's node list is set)."""
    if not all(k in env for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID")):
        return None
    nodelist = env.get("SLURM_STEP_NODELIST")
    if not nodelist:  # the batch script itself, outside srun: one process
        return None
    source = f"SLURM job {env['SLURM_JOB_ID']}"
    job_id = _int(env, "SLURM_JOB_ID", source)
    port = env.get("JAX_COORDINATOR_PORT") or str(job_id % 4096 + 61440)  # jax's rule
    address = f"{first_slurm_host(nodelist)}:{port}"
    count, index = _int(env, "SLURM_NTASKS", source), _int(env, "SLURM_PROCID", source)
    return _checked(Cluster(address, count, index, "SLURM"))


def _tpu_cluster(env: Env, workers: list[str], worker_id: int, tpu_env: Metadata, source: str):
    """A slice's (or several slices') cluster: worker 0 of slice 0 coordinates."""
    slices = int(tpu_env("MEGASCALE_NUM_SLICES") or 1)
    slice_id = int(tpu_env("MEGASCALE_SLICE_ID") or 0)
    host = (tpu_env("MEGASCALE_COORDINATOR_ADDRESS") or workers[0]).split(":")[0]
    port = env.get("JAX_COORDINATOR_PORT") or TPU_COORDINATOR_PORT
    count, index = len(workers) * slices, worker_id + slice_id * len(workers)
    return _checked(Cluster(f"{host}:{port}", count, index, source))


def from_tpu_variables(env: Env) -> Cluster | None:
    """GKE TPU slices: TPU_PROCESS_ADDRESSES or TPU_WORKER_HOSTNAMES, and TPU_WORKER_ID."""
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    workers = [h for h in hosts.split(",") if h]
    if len(workers) < 2 and not env.get("MEGASCALE_NUM_SLICES"):
        return None
    source = "TPU worker variables"
    return _tpu_cluster(env, workers, _int(env, "TPU_WORKER_ID", source), env.get, source)


def from_tpu_metadata(env: Env, metadata: Metadata) -> Cluster | None:
    """A GCE TPU VM slice: the worker list and this worker's number from instance metadata."""
    endpoints, number = metadata("worker-network-endpoints"), metadata("agent-worker-number")
    if not endpoints or number is None:
        return None
    # Either plain host names or name:id:ip triples (jax reads both).
    workers = [w.split(":")[2] if w.count(":") == 2 else w for w in endpoints.split(",") if w]

    def tpu_env(key: str) -> str | None:  # the environment first, then metadata's `tpu-env`
        if key in env:
            return env[key]
        lines = (metadata("tpu-env") or "").splitlines()
        found = [v.strip().strip("'") for k, _, v in (ln.partition(":") for ln in lines)
                 if k.strip() == key]  # fmt: skip
        return found[-1] if found else None

    return _tpu_cluster(env, workers, int(number), tpu_env, "TPU VM metadata")


def gce_metadata(key: str, timeout_s: float = 10.0) -> str | None:
    """An instance attribute from the GCE metadata server (None when the VM has no such key)."""
    host = os.environ.get("GCE_METADATA_IP", "metadata.google.internal")
    url = f"http://{host}/computeMetadata/v1/instance/attributes/{key}"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read().decode()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise UserError(f"TPU VM metadata {url}: HTTP {e.code}; {_SET_BY_HAND}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot read TPU VM metadata {url} ({e}); {_SET_BY_HAND}") from None


_SET_BY_HAND = "set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host"


def on_cloud_tpu_vm() -> bool:
    """jax's own verdict, made when it was imported (libtpu present and TPU chips found)."""
    module = importlib.import_module("jax._src.cloud_tpu_init")
    return bool(getattr(module, "running_in_cloud_tpu_vm", False))


def detect(
    env: Env = os.environ,
    metadata: Metadata = gce_metadata,
    on_tpu_vm: Callable[[], bool] = on_cloud_tpu_vm,
) -> Cluster | None:
    """This process's place among several hosts, or None for a one-host run. Explicit variables
    win over SLURM, SLURM over TPU variables, those over TPU VM metadata (read only on a TPU VM)."""
    cluster = from_coordinator_variables(env) or from_slurm(env) or from_tpu_variables(env)
    if cluster is None and on_tpu_vm() and "TPU_SKIP_MDS_QUERY" not in env:
        cluster = from_tpu_metadata(env, metadata)
    return cluster


# ----------------------------------------------------------------------------- joining


def _seconds(env: Env, name: str, default: int) -> int:
    value = env.get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{name}={value!r}; expected a whole number of seconds, at least 1")
    return int(value)


def wait_for_coordinator(address: str, timeout_s: float, poll_s: float = 0.5) -> None:
    """Returns once a TCP connection to `address` succeeds; a UserError naming it after
    `timeout_s` (jax itself would abort the process with a C++ stack trace)."""
    host, port = address.rsplit(":", 1)
    deadline, problem = time.monotonic() + timeout_s, "no answer"
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=poll_s * 4):
                return
        except OSError as e:
            problem = e.strerror or type(e).__name__
        if time.monotonic() >= deadline:
            raise UserError(
                f"cannot reach the coordinator {address} within {timeout_s:.0f}s ({problem}); "
                "start process 0 there, or fix the address and port (JAX_COORDINATOR_ADDRESS, "
                f"firewall); {INIT_TIMEOUT_VAR} sets the wait"
            )
        time.sleep(poll_s)


def check_port_free(address: str) -> None:
    """Process 0 serves the coordinator: its port must be free on this host."""
    port = int(address.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            raise UserError(
                f"process 0 cannot serve the coordinator on port {port} ({e.strerror}); "
                "another run uses it: pick another port in JAX_COORDINATOR_ADDRESS"
            ) from None


def initialize_if_multi_host(env: Env = os.environ) -> Cluster | None:
    """Joins the other hosts (`jax.distributed.initialize`) when this process is one of several;
    call it before anything starts JAX's backend. Returns the cluster, or None on one host."""
    if jax.distributed.is_initialized():
        return None
    cluster = detect(env)
    if cluster is None:
        return None
    init_timeout = _seconds(env, INIT_TIMEOUT_VAR, DEFAULT_INIT_TIMEOUT_S)
    if cluster.process_id == 0:
        check_port_free(cluster.coordinator_address)
    else:
        wait_for_coordinator(cluster.coordinator_address, init_timeout)
    heartbeat_s = _seconds(env, HEARTBEAT_VAR, DEFAULT_HEARTBEAT_S)
    jax.distributed.initialize(
        cluster.coordinator_address, cluster.num_processes, cluster.process_id,
        initialization_timeout=init_timeout, heartbeat_timeout_seconds=heartbeat_s,
    )  # fmt: skip
    client = importlib.import_module("jax._src.distributed").global_state.client
    if client is not None:  # None only where initialize is faked (tests)
        # jax beats every half timeout, so its abort may come half a timeout after a death.
        stale_s = max(3.0, heartbeat_s / 4)
        HostWatchdog(client, cluster.process_id, cluster.num_processes, stale_s).start()
    print(
        f"distributed: process {cluster.process_id} of {cluster.num_processes} "
        f"(coordinator {cluster.coordinator_address}, from {cluster.source}); "
        f"{jax.local_device_count()} of {jax.device_count()} devices here",
        flush=True,
    )
    return cluster


# ----------------------------------------------------------------------------- values, failures


def fetch_to_host(tree: Any) -> Any:
    """`tree` as numpy arrays on every host. Arrays sharded across processes (FSDP parameters)
    are first replicated by one jitted identity; `jax.device_get` alone fails on them."""
    leaves, treedef = jax.tree.flatten(tree)
    spread = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array)
              and not x.is_fully_addressable]  # fmt: skip
    if spread:
        replicated = NamedSharding(leaves[spread[0]].sharding.mesh, PartitionSpec())
        gathered = jax.jit(lambda xs: xs, out_shardings=replicated)([leaves[i] for i in spread])
        for i, x in zip(spread, gathered, strict=True):
            leaves[i] = x
    return jax.tree.unflatten(treedef, [np.asarray(jax.device_get(x)) for x in leaves])


_leaving = threading.Lock()
RERUN = "Rerun the same command on every host to resume from the last checkpoint"


def leave(message: str) -> NoReturn:
    """Prints `error: message` once (the first caller wins) and ends the process at once:
    jax's exit handler would wait for the lost host, then abort with a C++ stack trace."""
    _leaving.acquire()  # a second caller waits here until the process is gone
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_HOST_LOST)


class HostWatchdog:
    """Each host bumps its key in the coordinator's key-value store every `beat_s`; when another
    host's key stops changing for `stale_s` (killed, frozen), or the coordinator stops answering,
    this host leaves in one line, before jax's own heartbeat check would abort it (`stale_s` is a
    quarter of jax's timeout). A host that exits normally marks its key done first."""

    PREFIX = "electra_jax/alive/"

    def __init__(self, client: Any, me: int, count: int, stale_s: float, beat_s: float = 1.0):
        self.client, self.me, self.count = client, me, count
        self.stale_s, self.beat_s = stale_s, beat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="host-watchdog", daemon=True)

    def start(self) -> "HostWatchdog":
        self._thread.start()
        atexit.register(self.finish)  # runs before jax's own exit handler (registered earlier)
        return self

    def finish(self) -> None:
        """Stops beating and marks this host done (a normal exit, not a lost host)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self.client.key_value_set(f"{self.PREFIX}{self.me}", "done", allow_overwrite=True)

    def _run(self) -> None:
        seen = {peer: (None, time.monotonic()) for peer in range(self.count) if peer != self.me}
        beat = 0
        while not self._stop.wait(self.beat_s):
            beat += 1
            try:
                self.client.key_value_set(
                    f"{self.PREFIX}{self.me}", str(beat), allow_overwrite=True
                )
                values = {
                    k.rsplit("/", 1)[-1]: v for k, v in self.client.key_value_dir_get(self.PREFIX)
                }
            except Exception as e:  # the coordinator (host 0) is gone
                if not self._stop.is_set():
                    first = " ".join(str(e).split())[:160]
                    leave(
                        f"host {self.me} of {self.count} lost the coordinator, host 0 ({first}); "
                        f"stopping. {RERUN}"
                    )
                return
            now = time.monotonic()
            for peer, (last, since) in seen.items():
                value = values.get(str(peer))
                if value == "done":
                    continue
                if value != last:
                    seen[peer] = (value, now)
                elif now - since > self.stale_s and not self._stop.is_set():
                    leave(
                        f"host {self.me} of {self.count}: host {peer} stopped responding for "
                        f"{self.stale_s:.0f}s (killed or frozen); stopping. {RERUN}"
                    )


def is_host_loss(error: BaseException) -> bool:
    """A runtime error from a collective with a host that is gone, or from the coordinator."""
    return isinstance(error, jax.errors.JaxRuntimeError) and bool(_HOST_LOSS.search(str(error)))


@contextlib.contextmanager
def exit_when_a_host_is_lost() -> Iterator[None]:
    """On several hosts, a failed collective means another host died: one line, then exit
    EXIT_HOST_LOST at once (jax's exit handler would wait on the dead host, then abort)."""
    try:
        yield
    except Exception as e:
        if jax.process_count() == 1 or not is_host_loss(e):
            raise
        first = " ".join(str(e).split())[:200]
        leave(
            f"host {jax.process_index()} of {jax.process_count()} lost contact with another "
            f"host ({first}); stopping. {RERUN}"
        )
