"""Built-in offline tasks, generated deterministically from the built-in corpus (`builtin:pydocs`).

Written in the GLUE TSV layout, so they go through the same readers, featurisation, training,
metrics and submission files as GLUE itself:

- `builtin_acceptability` (SST layout `sentence\tlabel`): label 1 for an original sentence,
  0 for one whose words were locally shuffled (a window of `window` consecutive words permuted).
  Each sentence appears once, as either kind, so memorising sentences does not help.
- `builtin_replaced` (SST layout): label 1 for an original sentence, 0 for one where half
  of the words (at least two) were replaced by words drawn uniformly from the split's word
  types: replaced-token detection at the sentence level. Unlike the two order tasks it is
  visible in the bag of tokens, so even the randomly initialised tiny model learns it in CPU
  seconds (the tests use it); the order tasks need more data, steps or pre-training.
- `builtin_continuity` (RTE layout `index\tsentence1\tsentence2\tlabel`): label 1 when B is the
  sentence that follows A in its document, 0 when B comes from another document.

Train, dev and test come from disjoint documents (every 10th document dev, the next test), so
dev accuracy measures generalisation. The corpus is the one pre-training uses by default: a
model pre-trained on it has seen these sentences (without labels), which is the point of the
pre-trained vs random-init comparison.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile

from electra_jax.finetune.tasks import BUILTIN_TASKS

FORMAT_VERSION = 1
MIN_WORDS, MAX_WORDS = 6, 40


def _documents(cache_dir: str | None) -> list[list[str]]:
    from electra_jax.data.pydocs import iter_pydocs_documents, pydocs_text

    documents = []
    for document in iter_pydocs_documents(pydocs_text(cache_dir)):
        sentences = [" ".join(s.replace("\t", " ").split()) for s in document.split("\n")]
        documents.append([s for s in sentences if MIN_WORDS <= len(s.split()) <= MAX_WORDS])
    return documents


def _split_documents(documents: list[list[str]]) -> dict[str, list[list[str]]]:
    splits: dict[str, list[list[str]]] = {"train": [], "dev": [], "test": []}
    for i, document in enumerate(documents):
        splits["dev" if i % 10 == 0 else "test" if i % 10 == 1 else "train"].append(document)
    return splits


def shuffle_locally(sentence: str, rng: random.Random, window: int = 4) -> str:
    """Permutes `window` consecutive words (a different order is guaranteed)."""
    words = sentence.split()
    start = rng.randrange(0, len(words) - window + 1)
    span = words[start : start + window]
    permuted = span[:]
    while permuted == span and len(set(span)) > 1:
        rng.shuffle(permuted)
    return " ".join(words[:start] + permuted + words[start + window :])


def acceptability_rows(
    documents: list[list[str]], count: int, rng: random.Random, window: int = 4
) -> list[tuple[str, str]]:
    sentences = [s for d in documents for s in d if len(set(s.split())) > window]
    rng.shuffle(sentences)
    rows = []
    for i, sentence in enumerate(sentences[:count]):
        rows.append((shuffle_locally(sentence, rng, window), "0") if i % 2 else (sentence, "1"))
    return rows


def replace_words(sentence: str, rng: random.Random, word_types: list[str]) -> str:
    """Replaces half of the words (at least two) with random word types."""
    words = sentence.split()
    for i in rng.sample(range(len(words)), max(2, len(words) // 2)):
        words[i] = rng.choice(word_types)
    return " ".join(words)


def replaced_rows(
    documents: list[list[str]], count: int, rng: random.Random
) -> list[tuple[str, str]]:
    sentences = [s for d in documents for s in d]
    word_types = sorted({w for s in sentences for w in s.split()})
    rng.shuffle(sentences)
    rows = []
    for i, sentence in enumerate(sentences[:count]):
        rows.append((replace_words(sentence, rng, word_types), "0") if i % 2 else (sentence, "1"))
    return rows


def continuity_rows(
    documents: list[list[str]], count: int, rng: random.Random
) -> list[tuple[str, str, str]]:
    documents = [d for d in documents if len(d) >= 2]
    pairs = [(d, j) for d in documents for j in range(len(d) - 1)]
    rng.shuffle(pairs)
    rows = []
    for i, (document, j) in enumerate(pairs[:count]):
        if i % 2 == 0:
            rows.append((document[j], document[j + 1], "1"))
        else:
            other = document
            while other is document:
                other = rng.choice(documents)
            rows.append((document[j], rng.choice(other), "0"))
    return rows


def _write_tsv(path: str, header: list[str], rows: list[tuple[str, ...]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def write_builtin_task(
    task: str, directory: str, sizes: dict[str, int], seed: int = 0,
    cache_dir: str | None = None,
) -> None:  # fmt: skip
    """Writes DIR/{train,dev,test}.tsv for one built-in task (test files without labels)."""
    documents = _split_documents(_documents(cache_dir))
    os.makedirs(directory, exist_ok=True)
    for split_index, split in enumerate(("train", "dev", "test")):
        rng = random.Random(seed * 1000 + split_index)
        path = os.path.join(directory, f"{split}.tsv")
        if task in ("builtin_acceptability", "builtin_replaced"):
            make_rows = acceptability_rows if task == "builtin_acceptability" else replaced_rows
            rows = make_rows(documents[split], sizes[split], rng)
            if split == "test":
                _write_tsv(
                    path, ["index", "sentence"], [(str(i), r[0]) for i, r in enumerate(rows)]
                )
            else:
                _write_tsv(path, ["sentence", "label"], rows)
        elif task == "builtin_continuity":
            rows = continuity_rows(documents[split], sizes[split], rng)
            if split == "test":
                _write_tsv(path, ["index", "sentence1", "sentence2"],
                           [(str(i), a, b) for i, (a, b, _) in enumerate(rows)])  # fmt: skip
            else:
                _write_tsv(path, ["index", "sentence1", "sentence2", "label"],
                           [(str(i), *r) for i, r in enumerate(rows)])  # fmt: skip
        else:
            raise ValueError(f"unknown built-in task {task!r}; expected one of {BUILTIN_TASKS}")


def ensure_builtin_tasks(
    train: int = 4000, dev: int = 1000, test: int = 1000, seed: int = 0,
    cache_dir: str | None = None,
) -> str:  # fmt: skip
    """A data_dir holding every built-in task (generated once, cached); returns its path."""
    from electra_jax.data.dataset import default_cache_dir
    from electra_jax.data.pydocs import pydocs_cache_key

    cache_dir = cache_dir or default_cache_dir()
    name = f"finetune-builtin-v{FORMAT_VERSION}-{pydocs_cache_key()}-{train}-{dev}-{test}-s{seed}"
    data_dir = os.path.join(cache_dir, name)
    if os.path.isdir(data_dir):
        return data_dir
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=name + ".tmp-", dir=cache_dir)
    try:
        sizes = {"train": train, "dev": dev, "test": test}
        for task in BUILTIN_TASKS:
            write_builtin_task(task, os.path.join(tmp, task), sizes, seed, cache_dir)
        with contextlib.suppress(OSError):  # another process finished first: keep theirs
            os.rename(tmp, data_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return data_dir
