"""The built-in offline corpus `builtin:pydocs`: English prose from the Python standard library.
Docstrings, comment blocks and the language reference topics, parsed with `ast` (nothing is
imported), one sentence per line, one document per module: a few MB of real English, fixed for a
given Python version, so a fresh machine can pre-train a tiny model with no download."""

import ast
import hashlib
import io
import multiprocessing
import os
import re
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from electra_jax.storage import write_atomic

_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test", "_bundled"}
)
_TOPICS_FILE = os.path.join("pydoc_data", "topics.py")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_WHITESPACE = re.compile(r"\s+")
_LETTERS = re.compile(r"[A-Za-z]")
_SYMBOLS = re.compile(r"[=(){}\[\]<>|\\_*`$@~^]")
_MIN_WORDS = 4
_TRIPLE_QUOTES = re.compile(r"\"\"\"|'''")


def stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def stdlib_files(root: str) -> list[str]:
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        found += [os.path.join(directory, f) for f in files if f.endswith(".py")]
    return sorted(os.path.relpath(path, root) for path in found)


def _prose(paragraph_lines: list[str]) -> str | None:
    """Joins a paragraph's lines if it reads as English prose (not code, tables or markup)."""
    if not paragraph_lines:
        return None
    first = paragraph_lines[0]
    if first[:1].isspace() or first.lstrip().startswith(("..", ">>>", "$ ", "-", "=", "+")):
        return None
    if any(line.lstrip().startswith((">>>", "...")) for line in paragraph_lines):
        return None
    text = _WHITESPACE.sub(" ", " ".join(paragraph_lines)).strip()
    if (
        len(text.split()) < _MIN_WORDS
        or len(_LETTERS.findall(text)) < 0.7 * len(text.replace(" ", ""))
        or len(_SYMBOLS.findall(text)) > 0.04 * len(text)
    ):
        return None
    return text.removesuffix("::").rstrip() + ("." if text.endswith("::") else "")


def prose_sentences(text: str) -> list[str]:
    """Splits docstring-like text into paragraphs, keeps prose ones, returns one sentence each."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        prose = _prose([line.rstrip() for line in paragraph.split("\n") if line.strip()])
        if prose:
            sentences.extend(s.strip() for s in _SENTENCE_END.split(prose) if s.strip())
    return sentences


def _comment_blocks(source: str) -> list[tuple[int, str]]:
    """Consecutive full-line comments as (first line, text); lines inside triple-quoted strings
    are skipped by a line-by-line quote state (AST string spans would triple the build time)."""
    blocks: list[tuple[int, str]] = []
    current, start_line, open_quote = [], 0, None
    for number, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        is_comment = open_quote is None and stripped.startswith("#")
        for quote in [] if is_comment else _TRIPLE_QUOTES.findall(line):
            if open_quote is None:
                open_quote = quote
            elif quote == open_quote:
                open_quote = None
        if is_comment and not stripped.startswith(("#!", "# -*-")):
            start_line = start_line if current else number
            body = stripped.lstrip("#").strip()
            if body:
                current.append(body)
                continue
        if current:
            blocks.append((start_line, "\n".join(current)))
            current = []
    return blocks + ([(start_line, "\n".join(current))] if current else [])


def _docstrings(tree: ast.Module) -> list[tuple[int, str]]:
    kinds = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    nodes = [node for node in ast.walk(tree) if isinstance(node, kinds)]
    docs = [(getattr(node, "lineno", 0), ast.get_docstring(node, clean=True)) for node in nodes]
    return [(line, doc) for line, doc in docs if doc]


def module_documents(root: str, relpath: str) -> list[str]:
    """The documents (sentences joined by newlines) contributed by one stdlib file."""
    with open(os.path.join(root, relpath), "rb") as f:
        raw = f.read()
    try:
        source = raw.decode(tokenize.detect_encoding(io.BytesIO(raw).readline)[0])
        tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, LookupError, ValueError):
        return []
    if relpath == _TOPICS_FILE:  # the language reference: one document per topic
        dicts = [node for node in ast.walk(tree) if isinstance(node, ast.Dict)]
        texts = [v.value for d in dicts for v in d.values if isinstance(v, ast.Constant)]
        documents = ["\n".join(prose_sentences(t)) for t in texts if isinstance(t, str)]
        return [d for d in documents if d]
    items = sorted(_docstrings(tree) + _comment_blocks(source), key=lambda item: item[0])
    sentences = [s for _, text in items for s in prose_sentences(text)]
    return ["\n".join(sentences)] if sentences else []


def build_pydocs_text(num_processes: int = 1) -> str:
    """The corpus: one sentence per line, blank lines between documents; `num_processes` > 1
    parses in spawned processes (the caller needs a `__main__` guard)."""
    files = stdlib_files(root := stdlib_dir())
    if num_processes > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(num_processes, mp_context=context) as pool:
            per_file = list(pool.map(module_documents, [root] * len(files), files, chunksize=16))
    else:
        per_file = [module_documents(root, relpath) for relpath in files]
    return "\n\n".join(doc for docs in per_file for doc in docs) + "\n"


def pydocs_cache_key() -> str:
    """Identifies the interpreter whose stdlib the corpus comes from (corpus is per version)."""
    ident = f"{sys.implementation.name}-{sys.version}-{stdlib_dir()}".encode()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{sys.implementation.name}{version}-{hashlib.sha256(ident).hexdigest()[:10]}"


def pydocs_text(cache_dir: str | None = None) -> str:
    """The corpus text, cached in `cache_dir` if given (building takes ~6 s on one core)."""
    if cache_dir is None:
        return build_pydocs_text()
    path = os.path.join(cache_dir, f"pydocs-{pydocs_cache_key()}.txt")
    if not os.path.isfile(path):
        os.makedirs(cache_dir, exist_ok=True)
        write_atomic(path, build_pydocs_text().encode("utf-8"))
    with open(path, encoding="utf-8") as f:
        return f.read()


def iter_pydocs_documents(text: str) -> Iterator[str]:
    return (document for document in text.split("\n\n") if document.strip())
