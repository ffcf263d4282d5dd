"""Readers of GLUE TSV (docs/spec.md §5.6; UTF-8, split on tabs, no quoting), SQuAD JSON, MRQA
JSON lines, CoNLL tagging text and TFDS. A malformed row stops the run naming file, row and fix;
`skip_malformed` skips and counts it."""

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from etils import epath

from electra_jax.data import tfds_reader
from electra_jax.errors import UserError
from electra_jax.finetune.metrics import bioes_tags, span_labels
from electra_jax.finetune.tasks import TaskSpec

SKIP_HINT = (
    "fix or remove the row, or pass --config.skip_malformed=True to skip and count such rows"
)


@dataclasses.dataclass(frozen=True)
class Example:
    """One GLUE-style example; `label` is a class id, a float (STS-B) or None (test)."""

    guid: str
    text_a: str
    text_b: str | None = None
    label: int | float | None = None


@dataclasses.dataclass(frozen=True)
class SquadExample:
    """One SQuAD question; `answers` are (text, character start) pairs, empty if impossible."""

    qid: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...] = ()
    is_impossible: bool = False


@dataclasses.dataclass(frozen=True)
class TaggingExample:
    """One CoNLL sentence: its words and their tags as written (B-NP, I-PER, O, ...)."""

    guid: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


@dataclasses.dataclass
class ReadResult:
    examples: list
    skipped: int = 0


class MalformedRow(UserError):
    """A data row that does not fit the task's layout."""


def _parse_all(path: str, rows: list, parse: Callable, skip: bool, nothing: str) -> ReadResult:
    """Parses each (location, row): a MalformedRow stops the run naming it, or `skip` counts it."""
    result = ReadResult([])
    for where, row in rows:
        try:
            result.examples.append(parse(row))
        except MalformedRow as e:
            if not skip:
                raise MalformedRow(f"{where}: {e}; {SKIP_HINT}") from None
            result.skipped += 1
    if not result.examples:
        raise UserError(f"{path} has no usable {nothing}")
    return result


def _read_text(path: str, missing_hint: str) -> str:
    if not epath.Path(path).is_file():  # local or a bucket
        raise UserError(f"{path} does not exist; {missing_hint}")
    try:
        return epath.Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason}); re-save it as UTF-8") from e


def _parse_glue_row(fields: list[str], spec: TaskSpec, is_test: bool, guid: str) -> Example:
    columns = spec.test_text_columns if is_test else spec.text_columns
    needed = list(columns) + ([] if is_test or spec.label_column is None else [spec.label_column])
    width = max(c + 1 if c >= 0 else -c for c in needed)
    if len(fields) < width:
        raise MalformedRow(
            f"{len(fields)} tab-separated column(s), the {spec.name} layout needs at least {width}"
        )
    texts = [fields[c].strip() for c in columns]
    if any(not t for t in texts):
        raise MalformedRow(f"empty text in column(s) {list(columns)}")
    if is_test:
        return Example(fields[0].strip(), *texts)
    raw = fields[spec.label_column].strip()
    if spec.kind == "regression":
        try:
            return Example(guid, *texts, label=float(raw))
        except ValueError:
            raise MalformedRow(f"label {raw!r} is not a number") from None
    if raw not in spec.labels:
        raise MalformedRow(f"label {raw!r} is not one of {list(spec.labels)}")
    return Example(guid, *texts, label=spec.labels.index(raw))


def read_glue_tsv(
    path: str, spec: TaskSpec, is_test: bool = False, skip_malformed: bool = False
) -> ReadResult:
    """Reads one GLUE-layout TSV file. Test files always have a header and an index column."""
    where = f"{spec.dir_name}/{{train,dev,test}}.tsv (the original's layout)"
    text = _read_text(path, f"put the {spec.name} files under --config.data_dir as {where}")
    split = os.path.splitext(os.path.basename(path))[0]
    first = 2 if is_test or spec.header else 1
    lines = enumerate((line.rstrip("\r") for line in text.split("\n")), start=1)
    rows = [(f"{path}:{n}", (n, line)) for n, line in lines if n >= first and line.strip()]
    parse = lambda row: _parse_glue_row(row[1].split("\t"), spec, is_test, f"{split}-{row[0]}")
    return _parse_all(path, rows, parse, skip_malformed,
                      f"rows; check that it is the {spec.name} layout")  # fmt: skip


def _parse_squad_qa(qa: Any, context: Any, is_test: bool, check_spans: bool) -> SquadExample:
    if not isinstance(context, str) or not context.strip():
        raise MalformedRow("the paragraph has no 'context' text")
    if not isinstance(qa, dict) or not qa.get("id") or not isinstance(qa.get("question"), str):
        raise MalformedRow("a question needs 'id' and 'question'")
    impossible = bool(qa.get("is_impossible", False))
    answers = []
    for answer in qa.get("answers", []) or []:
        text, start = answer.get("text"), answer.get("answer_start")
        if not isinstance(text, str) or not isinstance(start, int):
            raise MalformedRow("an answer needs 'text' and an integer 'answer_start'")
        if check_spans and context[start : start + len(text)] != text:
            raise MalformedRow(f"answer {text!r} is not at character {start} of the context")
        answers.append((text, start))
    if not is_test and not impossible and not answers:
        raise MalformedRow("an answerable question has no answers")
    return SquadExample(str(qa["id"]), qa["question"], context, tuple(answers), impossible)


def read_squad_json(
    path: str, is_test: bool = False, skip_malformed: bool = False,
    missing_hint: str = "put SQuAD JSON files under --config.data_dir", check_spans: bool = True,
) -> ReadResult:  # fmt: skip
    """SQuAD v1.1 / v2.0 JSON -> SquadExamples; a problem names its JSON path. `check_spans`:
    each answer must sit at its `answer_start` (training needs the span; evaluation, like the
    original's, reads only the answer texts)."""
    try:
        data = json.loads(_read_text(path, missing_hint))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e}); expected SQuAD v1.1 / v2.0 JSON") from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError(f"{path}: expected a SQuAD v1.1 / v2.0 JSON object with a 'data' list")
    rows = [
        (f"{path}: data[{a}].paragraphs[{p}].qas[{q}]", (qa, paragraph.get("context")))
        for a, article in enumerate(data["data"])
        for p, paragraph in enumerate(article.get("paragraphs", []) or [])
        for q, qa in enumerate(paragraph.get("qas", []) or [])
    ]
    parse = lambda row: _parse_squad_qa(*row, is_test, check_spans)
    return _parse_all(path, rows, parse, skip_malformed,
                      "questions; expected SQuAD v1.1 / v2.0 JSON")  # fmt: skip


QA_WHITESPACE = frozenset(" \t\r\n\u202f")  # the original's `is_whitespace` (qa_tasks.py)


def split_words(context: str) -> tuple[list[str], list[int]]:
    """Words split at the original's whitespace (space, tab, CR, LF, U+202F: not every Unicode
    space; the tokenizer splits the others later, within a word) and, for each character, the
    index of the word it belongs to."""
    words, char_to_word, previous_space = [], [], True
    for ch in context:
        space = ch in QA_WHITESPACE
        if not space and previous_space:
            words.append(ch)
        elif not space:
            words[-1] += ch
        previous_space = space
        char_to_word.append(max(len(words) - 1, 0))
    return words, char_to_word


def _parse_mrqa_qa(qa: Any, context: Any, is_training: bool) -> SquadExample:
    """One MRQA question: for training its first detected answer (text, first character) as the
    original's `_add_examples` takes it; for evaluation its `answers` strings (character -1)."""
    if not isinstance(context, str) or not context.strip():
        raise MalformedRow("the paragraph has no 'context' text")
    if not isinstance(qa, dict) or not qa.get("qid") or not isinstance(qa.get("question"), str):
        raise MalformedRow("a question needs 'qid' and 'question'")
    if not is_training:
        answers = qa.get("answers")
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, str) for a in answers)
        ):
            raise MalformedRow("a question needs an 'answers' list of strings")
        return SquadExample(
            str(qa["qid"]), qa["question"], context, tuple((a, -1) for a in answers)
        )
    try:
        detected = qa["detected_answers"][0]
        text, start = detected["text"], detected["char_spans"][0][0]
    except (KeyError, IndexError, TypeError):
        raise MalformedRow("a training question needs detected_answers[0] with 'text' and "
                           "'char_spans'") from None  # fmt: skip
    if not isinstance(text, str) or not text or not isinstance(start, int):
        raise MalformedRow("detected_answers[0] needs a 'text' string and integer char_spans")
    words, char_to_word = split_words(context)
    if start < 0 or start + len(text) > len(context):
        raise MalformedRow(f"answer {text!r} at character {start} ends outside the context")
    found = " ".join(words[char_to_word[start] : char_to_word[start + len(text) - 1] + 1])
    if " ".join(text.split()).lower() not in found.lower():  # the original's check
        raise MalformedRow(f"answer {text!r} is not in the context's words at character {start}")
    return SquadExample(str(qa["qid"]), qa["question"], context, ((text, start),))


def read_mrqa_jsonl(
    path: str, is_training: bool = False, skip_malformed: bool = False, missing_hint: str = ""
) -> ReadResult:
    """MRQA 2019 JSON lines (a `header` line, then one context and its `qas` per line) ->
    SquadExamples keyed by `qid`; no question is unanswerable (the original's MRQA tasks)."""
    rows = []
    for n, line in enumerate(_read_text(path, missing_hint).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            paragraph = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e}); expected MRQA JSON lines") from e
        if not isinstance(paragraph, dict):
            raise UserError(f"{path}:{n}: expected a JSON object (MRQA's context and qas)")
        if "header" in paragraph:  # the original skips such lines
            continue
        qas = paragraph.get("qas") if isinstance(paragraph.get("qas"), list) else [None]
        rows += [
            (f"{path}:{n}: qas[{q}]", (qa, paragraph.get("context"))) for q, qa in enumerate(qas)
        ]
    parse = lambda row: _parse_mrqa_qa(*row, is_training)
    return _parse_all(path, rows, parse, skip_malformed, "questions; expected MRQA JSON lines")


def _parse_conll_sentence(lines: list[tuple[int, list[str]]], guid: str) -> TaggingExample:
    for n, fields in lines:
        tag = fields[-1]
        if len(fields) < 2:
            raise MalformedRow(f"line {n} has one field; expected `word ... tag` (CoNLL)")
        if tag != "O" and len(tag.split("-")) != 2:
            raise MalformedRow(f"line {n}: tag {tag!r} is not O or <B|I|E|S>-<type> (B-NP)")
    return TaggingExample(guid, tuple(f[0] for _, f in lines), tuple(f[-1] for _, f in lines))


def read_conll(path: str, skip_malformed: bool = False, missing_hint: str = "") -> ReadResult:
    """CoNLL text as the original's tagging reader: whitespace-split lines, first field the word
    and last the tag, a blank line between sentences, `-DOCSTART-` lines skipped. (The original
    drops a last sentence with no blank line after it; it is kept here. CoNLL files end with one,
    so they read the same.)"""
    split = os.path.splitext(os.path.basename(path))[0]
    sentences: list[list[tuple[int, list[str]]]] = [[]]
    for n, line in enumerate(_read_text(path, missing_hint).split("\n"), start=1):
        fields = line.split()
        if not fields and sentences[-1]:  # a blank line ends the sentence
            sentences.append([])
        elif fields and fields[0] != "-DOCSTART-":
            sentences[-1].append((n, fields))
    rows = [(f"{path}:{s[0][0]}", s) for s in sentences if s]
    parse = lambda row: _parse_conll_sentence(row, f"{split}-{row[0][0]}")
    return _parse_all(path, rows, parse, skip_malformed, "sentences; expected CoNLL `word ... tag`")


def with_tagging_labels(spec: TaskSpec, data_dir: str, skip_malformed: bool = False) -> TaskSpec:
    """The tagging task with its labels: the BIOES tags of its train / dev / test files (those
    present), sorted, as the original's label mapping (it converts tags to BIOES first)."""
    if spec.kind != "tagging":
        return spec
    tags = set()
    for stem in ("train", "dev", "test"):
        path = split_path(data_dir, spec, stem)
        if stem != "train" and not epath.Path(path).is_file():
            continue
        for example in read_split(data_dir, spec, stem, skip_malformed=skip_malformed).examples:
            tags.update(bioes_tags(span_labels(list(example.tags)), len(example.tags)))
    return dataclasses.replace(spec, labels=tuple(sorted(tags)))


def split_path(data_dir: str, spec: TaskSpec, stem: str) -> str:
    """`data_dir/<task folder>/<stem>.<ext>`, the folder ours or the original's (`squad20/` or
    `squad/`: the first that has the file); `data_dir` may also be the task folder itself."""
    name = f"{stem}.{spec.file_ext}"
    nested = [os.path.join(data_dir, folder, name) for folder in spec.dir_names]
    if found := next((path for path in nested if epath.Path(path).exists()), None):
        return found
    is_task_folder = os.path.basename(os.path.normpath(data_dir)) in spec.dir_names
    return os.path.join(data_dir, name) if is_task_folder else nested[0]


def read_split(
    data_dir: str, spec: TaskSpec, stem: str, is_test: bool = False, skip_malformed: bool = False
) -> ReadResult:
    """Reads `data_dir/<task dir>/<stem>.{tsv,json,jsonl,txt}`, or TFDS when `data_dir` is empty."""
    if not data_dir:
        return read_tfds(spec, stem)
    path = split_path(data_dir, spec, stem)
    folders = " or ".join(f"{folder}/" for folder in spec.dir_names)
    hint = f"put the {spec.name} files under --config.data_dir as {folders}{{train,dev}}"
    if spec.kind == "tagging":
        return read_conll(path, skip_malformed, hint + ".txt (CoNLL: word ... tag)")
    if spec.metric == "mrqa":
        return read_mrqa_jsonl(path, stem == "train", skip_malformed, hint + ".jsonl (MRQA)")
    if spec.kind == "span":
        folders = " or ".join(f"{folder}/" for folder in spec.dir_names)
        hint = f"put SQuAD JSON files under --config.data_dir as {folders}{{train,dev}}.json"
        return read_squad_json(path, is_test, skip_malformed, hint, check_spans=stem == "train")
    return read_glue_tsv(path, spec, is_test, skip_malformed)


def tfds_split(stem: str) -> str:
    """Our split stem as TFDS names it: `dev` -> `validation`, `dev_mismatched` likewise."""
    return {"dev": "validation"}.get(stem, stem.replace("dev_", "validation_"))


def tfds_has_split(spec: TaskSpec, stem: str) -> bool:
    """Whether the task's TFDS dataset has the split (TFDS's SQuAD has no `test`)."""
    return tfds_split(stem) in tfds_reader.split_names(spec.tfds_name, f"task {spec.name}")


def read_tfds(spec: TaskSpec, stem: str) -> ReadResult:
    """GLUE / SQuAD from TensorFlow Datasets (data/tfds_reader.py: ArrayRecord, no TensorFlow)."""
    if not spec.tfds_name:
        raise UserError(f"task {spec.name} has no TFDS source; pass --config.data_dir")
    what = f"task {spec.name} (no --config.data_dir: TFDS {spec.tfds_name})"
    rows = tfds_reader.iter_records(spec.tfds_name, tfds_split(stem), what)
    decode = tfds_reader.text
    examples: list = []
    if spec.kind == "span":
        for row in rows:
            texts = [decode(t) for t in row["answers"]["text"]]
            answers = tuple(zip(texts, map(int, row["answers"]["answer_start"]), strict=True))
            examples.append(SquadExample(decode(row["id"]), decode(row["question"]),
                                         decode(row["context"]), answers,
                                         bool(row.get("is_impossible", not texts))))  # fmt: skip
        return ReadResult(examples)
    label_feature = tfds_reader.prepared_builder(spec.tfds_name, what).info.features["label"]
    names = getattr(label_feature, "names", None)
    for row in rows:
        raw, label = row["label"], None
        if spec.kind == "regression":
            label = None if stem.startswith("test") else float(raw)
        elif int(raw) >= 0:
            name = names[int(raw)] if names else str(int(raw))
            label = spec.labels.index(name) if name in spec.labels else int(raw)
        texts = [decode(row[k]) for k in spec.tfds_text]
        examples.append(Example(str(int(row["idx"])), *texts, label=label))
    return ReadResult(examples)
