"""Atomic writes, the one way every command writes a file or a directory: build it under a
temporary sibling name, then rename, so an interrupted write never damages what was there.
"""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from electra_jax.errors import UserError


@contextlib.contextmanager
def atomic_directory(directory: str, overwrite: bool = False) -> Iterator[str]:
    """Yields a temporary directory that replaces `directory` when the block succeeds."""
    directory = os.path.abspath(directory)
    if os.path.exists(directory) and not overwrite:
        raise UserError(f"{directory} already exists; choose a new output path or remove it")
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


def make_workdir(path: str) -> str:
    """Creates a run directory (parents too); a file already at `path` is a one-line UserError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--workdir={path} is a file, not a directory; pass a directory path")
    os.makedirs(path, exist_ok=True)
    return path


def write_atomic(path: str, data: bytes | str) -> str:
    """Writes `path` via a temporary sibling and a rename, so no reader sees a partial file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def write_json(path: str, value: Any) -> None:
    """Writes `value` as indented, key-sorted JSON, atomically."""
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True))
