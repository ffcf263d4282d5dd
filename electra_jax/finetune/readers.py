"""Readers: GLUE TSV files (the original's layout), SQuAD JSON files, and TFDS as a fallback.

A malformed row stops the run with one line naming the file, the line and the fix; with
`skip_malformed` such rows are skipped and counted instead (`ReadResult.skipped`). Files are
read as the original does: UTF-8, split on tabs, no quoting.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from electra_jax.errors import UserError
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


@dataclasses.dataclass
class ReadResult:
    examples: list
    skipped: int = 0


class MalformedRow(UserError):
    """A data row that does not fit the task's layout."""


# --------------------------------------------------------------------------- GLUE TSV


def _parse_glue_row(fields: list[str], spec: TaskSpec, is_test: bool, guid: str) -> Example:
    """One split row -> Example; raises MalformedRow (without location) on a bad row."""
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
    label: int | float | None = None
    if not is_test:
        raw = fields[spec.label_column].strip()
        if spec.kind == "regression":
            try:
                label = float(raw)
            except ValueError:
                raise MalformedRow(f"label {raw!r} is not a number") from None
        elif raw in spec.labels:
            label = spec.labels.index(raw)
        else:
            raise MalformedRow(f"label {raw!r} is not one of {list(spec.labels)}")
    if is_test:
        guid = fields[0].strip()
    return Example(guid, texts[0], texts[1] if len(texts) > 1 else None, label)


def read_glue_tsv(
    path: str, spec: TaskSpec, is_test: bool = False, skip_malformed: bool = False
) -> ReadResult:
    """Reads one GLUE-layout TSV file. Test files always have a header and an index column."""
    if not os.path.isfile(path):
        raise UserError(
            f"{path} does not exist; put the {spec.name} files under --config.data_dir "
            f"as {spec.dir_name}/{{train,dev,test}}.tsv (the original's layout)"
        )
    result = ReadResult([])
    split = os.path.splitext(os.path.basename(path))[0]
    with open(path, encoding="utf-8", errors="strict", newline="") as f:
        try:
            lines = f.read().split("\n")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason}); re-save it as UTF-8") from e
    skip_header = is_test or spec.header
    for line_no, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if (skip_header and line_no == 1) or not line.strip():
            continue
        try:
            result.examples.append(
                _parse_glue_row(line.split("\t"), spec, is_test, f"{split}-{line_no}")
            )
        except MalformedRow as e:
            if not skip_malformed:
                raise MalformedRow(f"{path}:{line_no}: {e}; {SKIP_HINT}") from None
            result.skipped += 1
    if not result.examples:
        raise UserError(f"{path} has no usable rows; check that it is the {spec.name} layout")
    return result


# --------------------------------------------------------------------------- SQuAD JSON


def _squad_error(path: str, where: str, problem: str) -> MalformedRow:
    return MalformedRow(f"{path}: {where}: {problem}; {SKIP_HINT}")


def parse_squad(
    data: Any, path: str, is_test: bool = False, skip_malformed: bool = False
) -> ReadResult:
    """SQuAD v1.1 / v2.0 JSON (already decoded) -> SquadExamples; problems name the JSON path."""
    result = ReadResult([])
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError(f"{path}: expected a SQuAD v1.1 / v2.0 JSON object with a 'data' list")
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", []) or []):
            context = paragraph.get("context")
            for q, qa in enumerate(paragraph.get("qas", []) or []):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                try:
                    result.examples.append(_parse_squad_qa(qa, context, is_test))
                except MalformedRow as e:
                    if not skip_malformed:
                        raise _squad_error(path, where, str(e)) from None
                    result.skipped += 1
    if not result.examples:
        raise UserError(f"{path} has no usable questions; expected SQuAD v1.1 / v2.0 JSON")
    return result


def _parse_squad_qa(qa: Any, context: Any, is_test: bool) -> SquadExample:
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
        if context[start : start + len(text)] != text:
            raise MalformedRow(f"answer {text!r} is not at character {start} of the context")
        answers.append((text, start))
    if not is_test and not impossible and not answers:
        raise MalformedRow("an answerable question has no answers")
    return SquadExample(str(qa["id"]), qa["question"], context, tuple(answers), impossible)


def read_squad_json(path: str, is_test: bool = False, skip_malformed: bool = False) -> ReadResult:
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist; put SQuAD JSON files under --config.data_dir")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); expected SQuAD v1.1 / v2.0 JSON") from e
    return parse_squad(data, path, is_test, skip_malformed)


# --------------------------------------------------------------------------- dispatch


def split_path(data_dir: str, spec: TaskSpec, stem: str) -> str:
    extension = "json" if spec.kind == "span" else "tsv"
    return os.path.join(data_dir, spec.dir_name, f"{stem}.{extension}")


def read_split(
    data_dir: str, spec: TaskSpec, stem: str, is_test: bool = False, skip_malformed: bool = False
) -> ReadResult:
    """Reads `data_dir/<task dir>/<stem>.{tsv,json}`, or TFDS when `data_dir` is empty."""
    if not data_dir:
        return read_tfds(spec, stem)
    path = split_path(data_dir, spec, stem)
    if spec.kind == "span":
        return read_squad_json(path, is_test, skip_malformed)
    return read_glue_tsv(path, spec, is_test, skip_malformed)


# --------------------------------------------------------------------------- TFDS fallback

# TFDS feature names of each GLUE task's text fields.
_TFDS_TEXT = {
    "cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"), "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}  # fmt: skip


def _tfds_split(stem: str) -> str:
    return {"dev": "validation"}.get(stem, stem.replace("dev_", "validation_"))


def read_tfds(spec: TaskSpec, stem: str) -> ReadResult:
    """GLUE / SQuAD from TensorFlow Datasets (needs tensorflow-datasets and its prepared data)."""
    if not spec.tfds_name:
        raise UserError(f"task {spec.name} has no TFDS source; pass --config.data_dir")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise UserError(
            f"no --config.data_dir given and tensorflow-datasets is not installed; pass "
            f"--config.data_dir with {spec.dir_name}/ files or `pip install tensorflow-datasets`"
        ) from e
    split = _tfds_split(stem)
    try:
        dataset, info = tfds.load(spec.tfds_name, split=split, with_info=True)
    except Exception as e:  # tfds raises many types (not prepared, no network)
        raise UserError(f"cannot load TFDS {spec.tfds_name}:{split} ({type(e).__name__})") from e
    rows = tfds.as_numpy(dataset)
    decode = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v  # noqa: E731
    if spec.kind == "span":
        examples = []
        for row in rows:
            texts = [decode(t) for t in row["answers"]["text"]]
            starts = [int(s) for s in row["answers"]["answer_start"]]
            examples.append(
                SquadExample(decode(row["id"]), decode(row["question"]), decode(row["context"]),
                             tuple(zip(texts, starts, strict=True)), not texts)
            )  # fmt: skip
        return ReadResult(examples)
    names = getattr(info.features["label"], "names", None)
    examples = []
    for row in rows:
        texts = [decode(row[k]) for k in _TFDS_TEXT[spec.name]]
        label: int | float | None = None
        raw = row["label"]
        if spec.kind == "regression":
            label = None if stem.startswith("test") else float(raw)
        elif int(raw) >= 0:
            name = names[int(raw)] if names else str(int(raw))
            label = spec.labels.index(name) if name in spec.labels else int(raw)
        examples.append(
            Example(str(int(row["idx"])), texts[0], texts[1] if len(texts) > 1 else None, label)
        )
    return ReadResult(examples)
