"""Built-in offline tasks, made deterministically from pre-training's default corpus
(`builtin:pydocs`): train, dev and test from disjoint documents, each sentence once. GLUE layout:
label 1 for an original sentence, 0 for one with a window of words permuted
(`builtin_acceptability`) or half its words replaced (`builtin_replaced`: visible in the bag of
tokens, so learnt even from random init in CPU seconds); `builtin_continuity` (RTE layout): 1 if
B follows A, 0 for another document's B. `builtin_code` (CoNLL layout, tagging): spans of code
words (CODE: `_`, `=`, `a.b`, `f(`) and numbers (NUM). `builtin_phrase` (SQuAD 1.1 layout): the
question is two words of a two-sentence context, the answer those words and the next two."""

import contextlib
import itertools
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable

from electra_jax.data.dataset import default_cache_dir
from electra_jax.data.pydocs import iter_pydocs_documents, pydocs_cache_key, pydocs_text
from electra_jax.finetune.tasks import BUILTIN_TASKS, TASKS

FORMAT_VERSION = 2
MIN_WORDS, MAX_WORDS = 6, 40
WINDOW = 4  # builtin_acceptability: words permuted together


def split_documents(cache_dir: str | None) -> dict[str, list[list[str]]]:
    """The corpus's documents as sentence lists: every 10th document dev, the next test."""
    splits: dict[str, list[list[str]]] = {"train": [], "dev": [], "test": []}
    for i, document in enumerate(iter_pydocs_documents(pydocs_text(cache_dir))):
        sentences = [" ".join(s.replace("\t", " ").split()) for s in document.split("\n")]
        sentences = [s for s in sentences if MIN_WORDS <= len(s.split()) <= MAX_WORDS]
        splits["dev" if i % 10 == 0 else "test" if i % 10 == 1 else "train"].append(sentences)
    return splits


def shuffle_locally(sentence: str, rng: random.Random, window: int = WINDOW) -> str:
    """Permutes `window` consecutive words (a different order is guaranteed)."""
    words = sentence.split()
    start = rng.randrange(0, len(words) - window + 1)
    span = words[start : start + window]
    permuted = span[:]
    while permuted == span and len(set(span)) > 1:
        rng.shuffle(permuted)
    return " ".join(words[:start] + permuted + words[start + window :])


def replace_words(sentence: str, rng: random.Random, word_types: list[str]) -> str:
    words = sentence.split()
    for i in rng.sample(range(len(words)), max(2, len(words) // 2)):
        words[i] = rng.choice(word_types)
    return " ".join(words)


def alternate_rows(
    sentences: list[str], count: int, rng: random.Random, corrupt: Callable[[str], str]
) -> list[tuple[str, str]]:
    """Shuffled sentences, every second one corrupted (label 0), the others kept (label 1)."""
    rng.shuffle(sentences)
    return [(corrupt(s), "0") if i % 2 else (s, "1") for i, s in enumerate(sentences[:count])]


def continuity_rows(
    documents: list[list[str]], count: int, rng: random.Random
) -> list[tuple[str, str, str]]:
    """Sentence pairs: A and its next sentence (label 1), or a sentence of another document (0)."""
    documents = [d for d in documents if len(d) >= 2]
    pairs = [(d, j) for d in documents for j in range(len(d) - 1)]
    rng.shuffle(pairs)
    rows = []
    for i, (document, j) in enumerate(pairs[:count]):
        other = document
        while i % 2 and other is document:
            other = rng.choice(documents)
        b, label = (rng.choice(other), "0") if i % 2 else (document[j + 1], "1")
        rows.append((document[j], b, label))
    return rows


def split_lines(
    task: str, split: str, documents: list[list[str]], count: int, rng: random.Random
) -> list[tuple[str, ...]]:
    """One split file's header and rows, in the GLUE layout (test files: an index, no labels)."""
    sentences, header = [s for d in documents for s in d], ("sentence", "label")
    if task == "builtin_acceptability":
        kept = [s for s in sentences if len(set(s.split())) > WINDOW]
        rows: list = alternate_rows(kept, count, rng, lambda s: shuffle_locally(s, rng))
    elif task == "builtin_replaced":
        word_types = sorted({w for s in sentences for w in s.split()})
        rows = alternate_rows(sentences, count, rng, lambda s: replace_words(s, rng, word_types))
    else:  # builtin_continuity, the RTE layout
        header, rows = ("sentence1", "sentence2", "label"), continuity_rows(documents, count, rng)
    if split == "test":
        header, rows = header[:-1], [row[:-1] for row in rows]
    if split == "test" or task == "builtin_continuity":  # the RTE layout has an index
        header, rows = ("index", *header), [(str(i), *row) for i, row in enumerate(rows)]
    return [header, *rows]


CODE = re.compile(r"[_=]|\w\.\w|\w\(")  # builtin_code's CODE words; NUM: digits, no letters
NUM = re.compile(r"^[^A-Za-z]*\d[^A-Za-z]*$")


def code_tags(words: list[str]) -> list[str]:
    """IOB2 tags: a run of CODE (or NUM) words is one span, O elsewhere."""
    kinds = ["CODE" if CODE.search(w) else "NUM" if NUM.match(w) else "O" for w in words]
    return [k if k == "O" else f"{'I' if i and kinds[i - 1] == k else 'B'}-{k}"
            for i, k in enumerate(kinds)]  # fmt: skip


def conll_text(documents: list[list[str]], count: int, rng: random.Random) -> str:
    """`count` shuffled sentences as CoNLL-2000 lines (word, a `-` POS column, tag)."""
    sentences = [s.split() for d in documents for s in d]
    rng.shuffle(sentences)
    blocks = ["".join(f"{w} - {t}\n" for w, t in zip(words, code_tags(words), strict=True))
              for words in sentences[:count]]  # fmt: skip
    return "\n".join(blocks) + "\n"


def phrase_json(documents: list[list[str]], count: int, rng: random.Random, split: str) -> str:
    """SQuAD 1.1 JSON: per two-sentence context, one question (a word pair seen once in it)."""
    contexts = [d[i] + " " + d[i + 1] for d in documents for i in range(0, len(d) - 1, 2)]
    rng.shuffle(contexts)
    paragraphs = []
    for context in contexts:
        words = context.split()
        pairs = list(zip(words[:-1], words[1:], strict=True))
        candidates = [i for i in range(len(words) - 3) if pairs.count(pairs[i]) == 1]
        if not candidates:
            continue
        i = rng.choice(candidates)
        answer, start = " ".join(words[i : i + 4]), len(" ".join(words[:i] + [""]))
        qa = {"id": f"{split}-{len(paragraphs)}", "question": " ".join(words[i : i + 2]),
              "answers": [{"text": answer, "answer_start": start}]}  # fmt: skip
        paragraphs.append({"context": context, "qas": [qa]})
        if len(paragraphs) == count:
            break
    return json.dumps({"version": "1.1", "data": [{"title": split, "paragraphs": paragraphs}]})


def split_file(task: str, split: str, documents: list[list[str]], count: int,
               rng: random.Random) -> str | None:  # fmt: skip
    """One split file's text (None: the task has no such split)."""
    spec = TASKS[task]
    if spec.kind == "tagging":
        return conll_text(documents, count, rng) if split != "test" else None
    if spec.kind == "span":
        return phrase_json(documents, count, rng, split) if split != "test" else None
    lines = split_lines(task, split, documents, count, rng)
    return "".join("\t".join(fields) + "\n" for fields in lines)


def ensure_builtin_tasks(
    train: int = 4000, dev: int = 1000, test: int = 1000, seed: int = 0,
    cache_dir: str | None = None,
) -> str:  # fmt: skip
    """A data_dir with `<task>/{train,dev,test}.<ext>` of every built-in task (made once, cached;
    the tagging and QA tasks have no test split)."""
    cache_dir = cache_dir or default_cache_dir()
    name = f"finetune-builtin-v{FORMAT_VERSION}-{pydocs_cache_key()}-{train}-{dev}-{test}-s{seed}"
    data_dir = os.path.join(cache_dir, name)
    if os.path.isdir(data_dir):
        return data_dir
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=name + ".tmp-", dir=cache_dir)
    try:
        documents, sizes = split_documents(cache_dir), {"train": train, "dev": dev, "test": test}
        for task, (split_index, split) in itertools.product(BUILTIN_TASKS, enumerate(sizes)):
            rng = random.Random(seed * 1000 + split_index)
            text = split_file(task, split, documents[split], sizes[split], rng)
            os.makedirs(os.path.join(tmp, task), exist_ok=True)
            if text is not None:
                path = os.path.join(tmp, task, f"{split}.{TASKS[task].file_ext}")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
        with contextlib.suppress(OSError):  # another process finished first: keep theirs
            os.rename(tmp, data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return data_dir
