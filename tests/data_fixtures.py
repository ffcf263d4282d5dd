"""Tiny corpora and vocabularies written by the data tests (no downloads, deterministic)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

from electra_jax.data.tokenizer import SPECIAL_TOKENS

_WORD_TEXT = (
    "the of and to in is was for that with as on by at from his her an are were which this "
    "be or has had not it but their also its after first new two one other who been they "
    "more into when there all some time over only than most may later would three can during "
    "under between where many while these both such about year city world war team season "
    "school river music film state house church game party line family series album group "
    "north south east west small large early late high low long short old young great little"
)
WORDS = tuple(_WORD_TEXT.split())


def write_corpus(directory: str, n_files: int = 3, docs_per_file: int = 40, seed: int = 0):
    """Files of sentences (one per line), blank lines between documents; returns the paths."""
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for f in range(n_files):
        lines = []
        for _ in range(docs_per_file):
            for _ in range(rng.randint(1, 12)):
                words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
                lines.append(" ".join(words).capitalize() + ".")
            lines.append("")
        path = os.path.join(directory, f"part-{f}.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
        paths.append(path)
    return paths


def write_vocab(path: str, drop: str | None = None) -> str:
    """A WordPiece vocab covering the corpus words (optionally missing one special token)."""
    tokens = [t for t in SPECIAL_TOKENS if t != drop] + [".", ",", *sorted(set(WORDS))]
    tokens += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(tokens) + "\n")
    return path


def run_prepare(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Runs `python -m electra_jax.prepare ARGS` and returns the completed process."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "electra_jax.prepare", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=repo,
    )


def set_fields(config, overrides: dict):
    """Sets dotted `overrides` ({"model.num_layers": 1, ...}) on a ConfigDict; returns it."""
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        target = config
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config
