"""The storage layer: every command reads and writes files through `etils.epath` and these
functions, so any path may be local or a bucket (`gs://`, other fsspec URLs; gcsfs serves gs://).

Writes never leave a damaged file or directory behind. Locally a file or directory is built under
a temporary sibling name, then renamed. A bucket has no rename, but an object becomes visible
only once its upload completes, so a single-object write is atomic as it is; a directory is
built locally and uploaded with its commit file (the one readers look for: model.json,
meta.json) last, so a reader sees it whole or not at all.
"""

import contextlib
import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from etils import epath

from electra_jax.errors import UserError

COPY_CHUNK_BYTES = 16 << 20
# gcsfs >= 2026 by default asks the Storage Control API for each bucket's layout (zonal or
# hierarchical namespace) and, when the account may not (or on an emulator), logs a warning on
# every call; the plain JSON-API filesystem serves every bucket type. Set it to "true" to opt in.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def is_remote(path: str | os.PathLike) -> bool:
    """A URL (gs://, s3://, ...) rather than a local path."""
    return "://" in os.fspath(path)


def absolute(path: str) -> str:
    """`path` made absolute when local (a URL is already)."""
    return path if is_remote(path) else os.path.abspath(path)


def local_cache_dir() -> str:
    """Where local copies live (the built-in corpus, remote datasets): $ELECTRA_JAX_CACHE."""
    return os.environ.get("ELECTRA_JAX_CACHE", os.path.expanduser("~/.cache/electra_jax"))


def check_location(path: str, what: str = "path") -> None:
    """For a gs:// `path`: Google credentials exist and so does the bucket, else a one-line
    UserError naming the fix (before anything is written). Local paths pass."""
    if path.startswith("gs://"):
        _check_bucket(path.split("/")[2], what, path)


@functools.cache
def _check_bucket(bucket: str, what: str, path: str) -> None:
    if not os.environ.get("STORAGE_EMULATOR_HOST"):  # an emulator needs no credentials
        import google.auth
        import google.auth.exceptions

        try:
            google.auth.default()
        except google.auth.exceptions.DefaultCredentialsError:
            raise UserError(
                f"{what}={path}: no Google Cloud credentials found; run `gcloud auth "
                "application-default login` (on a VM: give it a service account with access "
                "to the bucket), or pass a local path"
            ) from None
    import fsspec

    try:  # the bucket's metadata: 404 = no such bucket
        fsspec.filesystem("gs").call("GET", "b/{}", bucket, json_out=True)
        return
    except FileNotFoundError:
        raise UserError(
            f"{what}={path}: bucket gs://{bucket} does not exist; create it with "
            f"`gcloud storage buckets create gs://{bucket}` or fix the path"
        ) from None
    except Exception as e:  # gcsfs raises many types (authentication, HTTP, network)
        if str(e).startswith("Forbidden"):  # may use objects without reading bucket metadata
            return
        cause = _first(e)
    raise UserError(f"{what}={path}: cannot reach bucket gs://{bucket} ({cause}); check the "
                    "network and the credentials' access")  # fmt: skip


def _first(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def is_file(path: str) -> bool:
    """`path` is an existing file (local or remote)."""
    return epath.Path(path).is_file()


def make_dirs(path: str) -> None:
    """Creates a local directory and its parents; nothing to do on a bucket (no directories)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def make_workdir(path: str, what: str = "--workdir") -> str:
    """Creates a run directory (parents too); a file already at `path` is a one-line UserError.
    On a bucket, checks credentials and the bucket instead (creates no local `gs:` folder)."""
    check_location(path, what)
    target = epath.Path(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{what}={path} is a file, not a directory; pass a directory path")
    make_dirs(path)
    return path


def write_atomic(path: str, data: bytes | str) -> str:
    """Writes `path` so that no reader sees a partial file: a temporary sibling and a rename
    locally; one object upload on a bucket (visible only once complete)."""
    data = data.encode() if isinstance(data, str) else data
    if is_remote(path):
        epath.Path(path).write_bytes(data)
        return path
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def write_json(path: str, value: Any) -> None:
    """Writes `value` as indented, key-sorted JSON, atomically."""
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True))


def copy_file(source: str, target: str) -> None:
    """Copies one file between any two locations, streaming; atomic like `write_atomic`."""
    partial = target if is_remote(target) else f"{target}.tmp{os.getpid()}"
    with epath.Path(source).open("rb") as src, epath.Path(partial).open("wb") as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)
    if partial != target:
        os.replace(partial, target)


def list_files(directory: str) -> list[str]:
    """The files under `directory` (a folder or a bucket prefix), relative to it, sorted."""
    if not is_remote(directory):
        walk = os.walk(directory)
        return sorted(
            os.path.relpath(os.path.join(d, n), directory) for d, _, ns in walk for n in ns
        )
    import fsspec

    fs, root = fsspec.core.url_to_fs(directory)
    root = root.rstrip("/") + "/"
    fs.invalidate_cache()  # gcsfs caches listings: other processes (hosts) write here too
    return sorted(p.removeprefix(root) for p in fs.find(root) if not p.endswith("/"))


def copy_tree(source: str, target: str, last: str | None = None) -> None:
    """Copies the files under `source` to `target` (which may be a bucket), the file `last`
    (a commit marker) after all others."""
    files = sorted(list_files(source), key=lambda name: name == last)
    for name in files:
        make_dirs(os.path.dirname(os.path.join(target, name)))
        copy_file(os.path.join(source, name), os.path.join(target, name))


def remove_tree(path: str, first: str | None = None) -> None:
    """Deletes a directory (or bucket prefix), the file `first` (its commit marker) before the
    rest, so that no reader takes a half-deleted directory for a whole one."""
    target = epath.Path(path)
    if first and (marker := target / first).exists():
        marker.unlink()
    if target.exists():
        target.rmtree()


def move_tree(source: str, target: str) -> None:
    """Renames a directory; on a bucket (no rename) copies its objects, then deletes them."""
    if not is_remote(source):
        os.rename(source, target)
        return
    copy_tree(source, target)
    if list_files(target) != (files := list_files(source)) or not files:
        raise OSError(f"copying {source} to {target} is incomplete; {source} is kept")
    remove_tree(source)


@contextlib.contextmanager
def atomic_directory(
    directory: str, overwrite: bool = False, commit_file: str | None = None
) -> Iterator[str]:
    """Yields a local temporary directory that replaces `directory` when the block succeeds.
    Locally that is a rename; on a bucket, an upload with `commit_file` last (see the module
    docstring: an interrupted upload leaves no `commit_file`, so readers see no directory)."""
    directory = absolute(directory)
    check_location(directory, "output")
    if epath.Path(directory).exists() and not overwrite:
        raise UserError(f"{directory} already exists; choose a new output path or remove it")
    if is_remote(directory):
        with tempfile.TemporaryDirectory(prefix="electra_jax-upload-") as tmp:
            yield tmp
            remove_tree(directory, first=commit_file)
            copy_tree(tmp, directory, last=commit_file)
        return
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(directory) + ".tmp-", dir=parent)
    try:
        yield tmp
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def local_view(path: str) -> Iterator[str]:
    """`path` itself when local; for a URL, a local temporary copy (a file, a directory, or the
    files of a prefix such as a TF checkpoint's `model.ckpt`), for libraries that read only local
    files. The copy is deleted afterwards."""
    if not is_remote(path):
        yield path
        return
    source = epath.Path(path)
    with tempfile.TemporaryDirectory(prefix="electra_jax-download-") as tmp:
        local = os.path.join(tmp, source.name)
        if source.is_dir():
            copy_tree(path, local)
        elif source.is_file():
            copy_file(path, local)
        for sibling in source.parent.glob(source.name + ".*"):  # a prefix's files
            copy_file(str(sibling), os.path.join(tmp, sibling.name))
        yield local


class LocalMirror:
    """A local directory mirroring a remote one, for writers that append only to local files
    (metrics.jsonl, TensorBoard): `pull` fetches a file, `push` uploads, at most every
    `min_interval_s` unless forced. For a local directory: that directory, and push does nothing."""

    def __init__(self, directory: str, min_interval_s: float = 0.0):
        self.remote, self.min_interval_s = directory, min_interval_s
        self._tmp = tempfile.mkdtemp(prefix="electra_jax-mirror-") if is_remote(directory) else None
        self.local = self._tmp or directory
        self._last_push = -float("inf")

    def pull(self, name: str) -> str:
        """The local path of `name`, with the remote file's content when there is one."""
        local = os.path.join(self.local, name)
        if self._tmp and epath.Path(remote := os.path.join(self.remote, name)).exists():
            make_dirs(os.path.dirname(local))
            copy_file(remote, local)
        return local

    def push(self, name: str = "", force: bool = False) -> None:
        """Uploads `name` (a file or folder; "" = everything) when due or `force`."""
        now = time.monotonic()
        if self._tmp is None or (not force and now - self._last_push < self.min_interval_s):
            return
        self._last_push = now
        local = os.path.join(self.local, name)
        if os.path.isdir(local):
            copy_tree(local, os.path.join(self.remote, name))
        elif os.path.isfile(local):
            copy_file(local, os.path.join(self.remote, name))

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
