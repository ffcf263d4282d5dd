"""Local copies of a remote dataset's shards. ArrayRecord's C++ reader (under grain) opens only
local files, so shards in a bucket are copied once into the local cache and read from there;
data larger than the local disk needs a gcsfuse mount of the bucket instead."""

import hashlib
import json
import os
import shutil

from etils import epath

from electra_jax.errors import UserError
from electra_jax.storage import copy_file, local_cache_dir

GCSFUSE_HINT = (
    "mount the bucket with gcsfuse (`gcsfuse --implicit-dirs BUCKET /mnt/BUCKET`) and pass "
    "the mount path as the data directory"
)


def free_bytes(directory: str) -> int:
    """Free space on the disk that holds `directory` (or its nearest existing parent)."""
    while not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    return shutil.disk_usage(directory).free


def cache_folder(data_dir: str, meta: dict) -> str:
    """The cache folder of one dataset: keyed by its URL and meta.json, so a re-prepared
    dataset at the same URL gets a fresh copy."""
    key = hashlib.sha256((data_dir + json.dumps(meta, sort_keys=True)).encode()).hexdigest()
    return os.path.join(local_cache_dir(), "remote-data", key[:16])


def local_shards(data_dir: str, meta: dict, paths: list[str], split: str) -> list[str]:
    """Local copies of the remote shard `paths` (copied now unless already cached whole)."""
    folder = cache_folder(data_dir, meta)
    sizes = [epath.Path(path).stat().length for path in paths]
    local = [os.path.join(folder, os.path.basename(path)) for path in paths]
    todo = [(path, target, size) for path, target, size in zip(paths, local, sizes, strict=True)
            if not (os.path.isfile(target) and os.path.getsize(target) == size)]  # fmt: skip
    if todo:
        need, free = sum(size for *_, size in todo), free_bytes(folder)
        if need > free:
            raise UserError(
                f"{data_dir}: ArrayRecord's reader cannot read a bucket, and the local copy of "
                f"its {split} shards needs {need / 1e9:.2f} GB but {folder} has "
                f"{free / 1e9:.2f} GB free; {GCSFUSE_HINT} (or set ELECTRA_JAX_CACHE to a "
                "larger disk)"
            )
        print(
            f"data: ArrayRecord's reader cannot read {data_dir} directly; copying "
            f"{len(todo)} {split} shard(s) ({need / 1e6:.1f} MB) to the local cache {folder} "
            f"(for data larger than this disk, {GCSFUSE_HINT})",
            flush=True,
        )
        os.makedirs(folder, exist_ok=True)
        for path, target, _ in todo:
            copy_file(path, target)
    return local
