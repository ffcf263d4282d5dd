"""Corpus sources: `--corpus` specs -> raw byte blobs that end on document boundaries.

A spec is a comma-separated list of
  * local files, directories or globs: one sentence per line, a blank line ends a document (or,
    with `one_doc_per_file`, each file is one document and blank lines are skipped: OpenWebText);
  * `tfds:NAME[:SPLIT]` (e.g. `tfds:wikipedia/20230601.en`): each record's `text` is one
    document. Needs tensorflow-datasets, imported only here and only then;
  * `builtin:pydocs`: the offline corpus built from the standard library (see `pydocs`).
Blobs are bytes, so decoding (and counting replaced bytes) happens in the worker processes; as
every blob ends on a document boundary, chunks of blobs are processed independently.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TypeVar

from electra_jax.data import pydocs
from electra_jax.errors import UserError

T = TypeVar("T")

BUILTIN_PYDOCS = "builtin:pydocs"


@dataclasses.dataclass(frozen=True)
class Blob:
    """Raw text ending on a document boundary; blank lines inside end documents too if set."""

    data: bytes
    blank_line_ends_document: bool


@dataclasses.dataclass
class Source:
    """One element of a `--corpus` spec: its blobs, size (for the ETA) and a fingerprint."""

    spec: str
    kind: str  # "files" | "tfds" | "builtin"
    paths: tuple[str, ...] = ()
    one_doc_per_file: bool = False
    cache_dir: str | None = None

    def total_bytes(self) -> int | None:
        """Raw size for progress reporting (None when unknown, as for TFDS)."""
        if self.kind == "files":
            return sum(os.path.getsize(p) for p in self.paths)
        if self.kind == "builtin":
            return len(_builtin_bytes(self.cache_dir))
        return None

    def fingerprint(self) -> dict:
        """What identifies this source's content in a run manifest (restart / overwrite checks)."""
        if self.kind == "files":
            files = [[p, os.path.getsize(p), os.stat(p).st_mtime_ns] for p in self.paths]
            return {"spec": self.spec, "files": files}
        if self.kind == "builtin":
            return {"spec": self.spec, "python": pydocs.pydocs_cache_key()}
        return {"spec": self.spec}

    def blobs(self, target_bytes: int) -> Iterator[Blob]:
        """Yields the source's text as blobs of about `target_bytes` (or one per document)."""
        if self.kind == "files":
            for path in self.paths:
                with open(path, "rb") as f:
                    check_not_binary(path, f)
                    if self.one_doc_per_file:
                        yield Blob(f.read(), blank_line_ends_document=False)
                    else:
                        for data in split_at_blank_lines(f, target_bytes):
                            yield Blob(data, blank_line_ends_document=True)
        elif self.kind == "builtin":
            stream = io.BytesIO(_builtin_bytes(self.cache_dir))
            for data in split_at_blank_lines(stream, target_bytes):
                yield Blob(data, blank_line_ends_document=True)
        else:
            yield from _tfds_blobs(self.spec)


def check_not_binary(path: str, f: BinaryIO) -> None:
    """Refuses a file with a NUL byte in its first 8 KB (git's test for binary: a .gz, UTF-16):
    bad bytes in text are repaired and counted, but a binary file would give garbage examples."""
    head = f.read(8192)
    f.seek(0)
    if b"\0" in head:
        raise UserError(
            f"--corpus: {path} looks binary (NUL bytes in its first 8 KB); pass UTF-8 text "
            "files (decompress .gz / .bz2 files first)"
        )


def grouped(
    items: Iterable[T], target: int, size: Callable[[T], int],
    can_end: Callable[[T], bool] = lambda item: True,
) -> Iterator[list[T]]:  # fmt: skip
    """Groups items in order until a group's total `size` reaches `target` at an item that
    `can_end` it (the last group may be smaller)."""
    group: list[T] = []
    total = 0
    for item in items:
        group.append(item)
        total += size(item)
        if total >= target and can_end(item):
            yield group
            group, total = [], 0
    if group:
        yield group


def split_at_blank_lines(f: BinaryIO, target_bytes: int) -> Iterator[bytes]:
    """Cuts a stream into pieces of at least `target_bytes` that end just after a blank line."""
    for lines in grouped(f, target_bytes, len, lambda line: not line.strip()):
        yield b"".join(lines)


_BUILTIN_CACHE: dict[str | None, bytes] = {}


def _builtin_bytes(cache_dir: str | None) -> bytes:
    if cache_dir not in _BUILTIN_CACHE:
        _BUILTIN_CACHE[cache_dir] = pydocs.pydocs_text(cache_dir).encode("utf-8")
    return _BUILTIN_CACHE[cache_dir]


def _expand_files(spec: str) -> tuple[str, ...]:
    """A file, a directory (its files, recursively) or a glob -> sorted file paths."""
    if os.path.isdir(spec):
        found = [
            os.path.join(d, name)
            for d, dirs, names in os.walk(spec)
            for name in names
            if not name.startswith(".")
        ]
    elif os.path.isfile(spec):
        found = [spec]
    else:
        found = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
    if not found:
        what = "no file matches" if glob.has_magic(spec) else "no such file or directory:"
        raise UserError(
            f"--corpus: {what} {spec!r}; pass existing text files, a directory or a quoted glob"
        )
    return tuple(sorted(found))


def parse_corpus(
    corpus: str | Iterable[str], *, one_doc_per_file: bool = False, cache_dir: str | None = None
) -> list[Source]:
    """Parses a `--corpus` value (comma-separated, or a list) into sources, checking files exist."""
    specs = corpus.split(",") if isinstance(corpus, str) else list(corpus)
    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        raise UserError("--corpus is empty; pass text files, a glob, tfds:NAME or builtin:pydocs")
    sources = []
    for spec in specs:
        if spec.startswith("builtin:"):
            if spec != BUILTIN_PYDOCS:
                raise UserError(f"--corpus: unknown built-in corpus {spec!r}; use {BUILTIN_PYDOCS}")
            sources.append(Source(spec, "builtin", cache_dir=cache_dir))
        elif spec.startswith("tfds:"):
            if not spec[len("tfds:") :]:
                raise UserError("--corpus: tfds: needs a name, e.g. tfds:wikipedia/20230601.en")
            sources.append(Source(spec, "tfds"))
        else:
            files = _expand_files(spec)
            sources.append(Source(spec, "files", files, one_doc_per_file=one_doc_per_file))
    return sources


def _tfds_blobs(spec: str) -> Iterator[Blob]:
    """Streams a TFDS text dataset, one record's `text` per blob (one document each)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise UserError(
            f"--corpus={spec} needs TensorFlow Datasets: pip install tensorflow-datasets tensorflow"
        ) from e
    name, _, split = spec[len("tfds:") :].partition(":")
    try:
        dataset = tfds.load(name, split=split or "train", shuffle_files=False)
    except Exception as e:  # TFDS raises many types for unknown names/splits
        raise UserError(f"--corpus={spec}: TFDS could not load it ({e}); check the name") from e
    for record in tfds.as_numpy(dataset):
        text = record["text"]
        yield Blob(text if isinstance(text, bytes) else str(text).encode(), False)


def iter_chunks(sources: list[Source], chunk_bytes: int) -> Iterator[list[Blob]]:
    """Groups the sources' blobs into chunks of at least `chunk_bytes` (the last may be smaller).
    Chunks depend only on the corpus and `chunk_bytes`, never on the number of processes, so the
    examples (seeded per chunk) are the same however many processes build them."""
    blobs = (blob for source in sources for blob in source.blobs(chunk_bytes))
    return grouped(blobs, chunk_bytes, lambda blob: len(blob.data))
