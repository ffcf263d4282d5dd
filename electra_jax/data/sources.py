"""Corpus reading: `--corpus` specs -> byte blobs on document boundaries -> documents of sentences.
Specs: files, directories or globs (docs/spec.md §4; `one_doc_per_file`: one document per file),
`tfds:NAME[@SPLIT]` (a record's `text` is a document: data/tfds_reader.py) and `builtin:pydocs`.
Workers decode the chunks: bad UTF-8 bytes become U+FFFD, lines over `max_line_chars` are
dropped, both counted."""

import dataclasses
import functools
import glob
import io
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TypeVar

from etils import epath

from electra_jax.data import pydocs, tfds_reader
from electra_jax.errors import UserError
from electra_jax.storage import is_remote, list_files

T = TypeVar("T")
BUILTIN_PYDOCS = "builtin:pydocs"
DEFAULT_MAX_LINE_CHARS = 100_000
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass(frozen=True)
class Blob:
    """Raw text ending on a document boundary; blank lines inside end documents if set."""

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
        if self.kind == "files":
            return sum(_size_and_mtime(p)[0] for p in self.paths)
        return len(_builtin_bytes(self.cache_dir)) if self.kind == "builtin" else None

    def fingerprint(self) -> dict:
        """Identifies the content in a run manifest (restart and overwrite checks)."""
        if self.kind == "files":
            files = [[p, *_size_and_mtime(p)] for p in self.paths]
            return {"spec": self.spec, "files": files}
        if self.kind == "builtin":
            return {"spec": self.spec, "python": pydocs.pydocs_cache_key()}
        return {"spec": self.spec}

    def blobs(self, target_bytes: int) -> Iterator[Blob]:
        """Yields the source's text as blobs of about `target_bytes` (or one per document)."""
        if self.kind == "tfds":
            yield from _tfds_blobs(self.spec)
        for path in self.paths:
            with epath.Path(path).open("rb") as f:  # local or a bucket
                if b"\0" in f.read(8192):  # git's test for binary (a .gz, UTF-16): would be garbage
                    raise UserError(
                        f"--corpus: {path} looks binary (NUL bytes in its first 8 KB); pass UTF-8 "
                        "text files (decompress .gz / .bz2 files first)"
                    )
                f.seek(0)
                if self.one_doc_per_file:
                    yield Blob(f.read(), blank_line_ends_document=False)
                else:
                    yield from split_at_blank_lines(f, target_bytes)
        if self.kind == "builtin":
            text = io.BytesIO(_builtin_bytes(self.cache_dir))
            yield from split_at_blank_lines(text, target_bytes)


def grouped(
    items: Iterable[T], target: int, size: Callable[[T], int],
    can_end: Callable[[T], bool] = lambda item: True,
) -> Iterator[list[T]]:  # fmt: skip
    """Groups items in order until a group's total `size` reaches `target` at a `can_end` item."""
    group, total = [], 0
    for item in items:
        group.append(item)
        total += size(item)
        if total >= target and can_end(item):
            yield group
            group, total = [], 0
    if group:
        yield group


def split_at_blank_lines(f: BinaryIO, target_bytes: int) -> Iterator[Blob]:
    """Cuts a stream into blobs of at least `target_bytes` that end just after a blank line."""
    for lines in grouped(f, target_bytes, len, lambda line: not line.strip()):
        yield Blob(b"".join(lines), blank_line_ends_document=True)


@functools.cache
def _builtin_bytes(cache_dir: str | None) -> bytes:
    return pydocs.pydocs_text(cache_dir).encode("utf-8")


def _size_and_mtime(path: str) -> tuple[int, int]:
    """(bytes, modification time in ns; a bucket object's in whole seconds)."""
    if is_remote(path):
        stat = epath.Path(path).stat()
        return stat.length, stat.mtime * 10**9
    return os.path.getsize(path), os.stat(path).st_mtime_ns


def _expand_remote(spec: str) -> list[str]:
    """A bucket's file, folder (recursively) or glob (`*` within one level, no `**`)."""
    path = epath.Path(spec)
    if path.is_file():
        return [spec]
    if path.is_dir():
        return [str(path / name) for name in list_files(spec) if not name.startswith(".")]
    parent, pattern = spec.rsplit("/", 1)
    return [str(p) for p in epath.Path(parent).glob(pattern) if p.is_file()]


def _expand_files(spec: str) -> tuple[str, ...]:
    if is_remote(spec):
        found = _expand_remote(spec)
    elif os.path.isdir(spec):
        walk = os.walk(spec)
        found = [os.path.join(d, n) for d, _, names in walk for n in names if not n.startswith(".")]
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
            tfds_reader.parse_spec(spec)  # a malformed spec fails here, before any work
            sources.append(Source(spec, "tfds"))
        else:
            files = _expand_files(spec)
            sources.append(Source(spec, "files", files, one_doc_per_file=one_doc_per_file))
    return sources


def _tfds_blobs(spec: str) -> Iterator[Blob]:
    """One blob per record: its `text` feature is a document, its lines the document's lines."""
    name, split = tfds_reader.parse_spec(spec)
    for record in tfds_reader.iter_records(name, split, f"--corpus={spec}"):
        if "text" not in record:
            have = ", ".join(sorted(record))
            raise UserError(f"--corpus={spec}: no 'text' feature (has {have}); use a text corpus")
        yield Blob(tfds_reader.text(record["text"]).encode("utf-8"), False)


def sample_sentences(sources: list[Source], max_bytes: int, max_line_chars: int) -> list[str]:
    """The sentences of the corpus's first `max_bytes` (whole 1 MB chunks): vocabulary input."""
    stats, sentences = CorpusStats(), []
    for blobs in iter_chunks(sources, 1 << 20):
        sentences += [s for b in blobs for d in blob_documents(b, stats, max_line_chars) for s in d]
        if stats.raw_bytes >= max_bytes:
            break
    return sentences


def iter_chunks(sources: list[Source], chunk_bytes: int) -> Iterator[list[Blob]]:
    """The sources' blobs in chunks of at least `chunk_bytes`: fixed by the corpus and
    `chunk_bytes`, never by the process count, so per-chunk seeds give the same examples."""
    blobs = (blob for source in sources for blob in source.blobs(chunk_bytes))
    return grouped(blobs, chunk_bytes, lambda blob: len(blob.data))


@dataclasses.dataclass
class CorpusStats:
    """Counts reported in meta.json: what the corpus held and what was repaired or dropped."""

    documents: int = 0
    lines: int = 0
    raw_bytes: int = 0
    replaced_bytes: int = 0
    dropped_blank_lines: int = 0
    dropped_overlong_lines: int = 0
    dropped_empty_lines: int = 0  # lines that tokenize to nothing (control characters etc.)


def blob_documents(
    blob: Blob, stats: CorpusStats, max_line_chars: int = DEFAULT_MAX_LINE_CHARS
) -> Iterator[list[str]]:
    """Yields each document of a blob as its list of non-empty, stripped lines (sentences)."""
    stats.raw_bytes += len(blob.data)
    try:
        text = blob.data.decode("utf-8")
    except UnicodeDecodeError:  # each invalid byte becomes U+FFFD, counted
        escaped = blob.data.decode("utf-8", "surrogateescape")
        text, replaced = _ESCAPED_BYTE.subn("\ufffd", escaped)
        stats.replaced_bytes += replaced
    lines = [line.strip() for line in text.removesuffix("\n").split("\n")] if text else []
    stats.lines += len(lines)
    if blob.blank_line_ends_document:
        groups = [list(group) for filled, group in itertools.groupby(lines, key=bool) if filled]
    else:
        stats.dropped_blank_lines += lines.count("")
        groups = [[line for line in lines if line]]
    for group in groups:
        document = [line for line in group if not max_line_chars or len(line) <= max_line_chars]
        stats.dropped_overlong_lines += len(group) - len(document)
        if document:
            stats.documents += 1
            yield document
