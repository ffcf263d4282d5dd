"""Atomic writes: build a file or directory under a temporary sibling name, then rename.

An interrupted export or a failed write never damages what was already at the target path.
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


def write_json(path: str, value: Any) -> None:
    """Writes JSON to `path` via a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
