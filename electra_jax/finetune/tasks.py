"""The tasks: where each one's files live and which columns hold text and label (docs/spec.md
§5.6). GLUE test files carry an `index` column first and no labels, hence their own columns.
Tagging tasks (CoNLL `word ... tag` lines) take their label set from their files."""

import dataclasses
from typing import Literal

from electra_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str  # config name: cola, sst2, ..., squad20, chunk, newsqa, builtin_acceptability
    kind: Literal["classification", "regression", "span", "tagging"]
    dir_name: str  # folder under data_dir
    text_columns: tuple[int, ...] = ()
    label_column: int | None = None
    test_text_columns: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()  # label strings, in class-id order (classification; tagging:
    # filled from the data by readers.with_tagging_labels)
    header: bool = True  # train/dev files start with a header row (test files always do)
    dev_sets: tuple[tuple[str, str], ...] = (("dev", "dev"),)  # (split name, file stem)
    test_sets: tuple[tuple[str, str, str], ...] = ()  # (split name, file stem, leaderboard file)
    metric: str = "accuracy"  # metrics.glue_metrics'; "squad" / "mrqa" (span), "span_f1" (tagging)
    double_unordered: bool = False  # train on (A, B) and (B, A): MRPC, STS-B
    epochs: int = 3
    tfds_name: str = ""
    tfds_text: tuple[str, ...] = ()  # TFDS feature names of the text fields (GLUE)
    squad_v2: bool = False
    other_dir_names: tuple[str, ...] = ()  # also accepted: the original's folder (squad, squadv1)
    seq_len: str = ""  # configs/finetune.py's size-recipe length; "" = by kind

    @property
    def dir_names(self) -> tuple[str, ...]:
        return (self.dir_name, *self.other_dir_names)

    @property
    def file_ext(self) -> str:
        """GLUE TSV, SQuAD JSON, MRQA JSON lines or CoNLL text (the original's file names)."""
        span = "jsonl" if self.metric == "mrqa" else "json"
        return {"span": span, "tagging": "txt"}.get(self.kind, "tsv")


def _task(name: str, leaderboard: str, kind: str = "classification", **kw) -> TaskSpec:
    """A task with one test set (`leaderboard` its submission file); dir_name defaults to name."""
    kw.setdefault("test_sets", (("test", "test", leaderboard),))
    return TaskSpec(name, kind, kw.pop("dir_name", name), **kw)


def _mrqa(name: str, **kw) -> TaskSpec:
    """An MRQA 2019 task (`<name>/{train,dev}.jsonl`): SQuAD 1.1-like, scored by the MRQA script."""
    return _task(name, "", "span", metric="mrqa", test_sets=(), **{"epochs": 2, **kw})


def _tagging(name: str, **kw) -> TaskSpec:
    """A CoNLL-format tagging task (`<name>/{train,dev}.txt`), scored by chunk-level span F1."""
    return _task(name, "", "tagging", metric="span_f1", test_sets=(), **kw)


def _glue(name: str, leaderboard: str, tfds_text: tuple[str, ...], **kw) -> TaskSpec:
    return _task(name, leaderboard, tfds_name=f"glue/{name}", tfds_text=tfds_text, **kw)


BINARY = ("0", "1")
ENTAILMENT = ("entailment", "not_entailment")
SST_LAYOUT = dict(text_columns=(0,), label_column=1, test_text_columns=(1,), labels=BINARY)
RTE_LAYOUT = dict(text_columns=(1, 2), label_column=3, test_text_columns=(1, 2))
PAIR = ("sentence1", "sentence2")

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _glue("cola", "CoLA.tsv", ("sentence",), text_columns=(3,), label_column=1,
              test_text_columns=(1,), labels=BINARY, header=False, metric="mcc"),
        _glue("sst2", "SST-2.tsv", ("sentence",), dir_name="sst", **SST_LAYOUT),
        _glue("mrpc", "MRPC.tsv", PAIR, text_columns=(3, 4), label_column=0,
              test_text_columns=(3, 4), labels=BINARY, metric="accuracy_f1", double_unordered=True),
        _glue("stsb", "STS-B.tsv", PAIR, kind="regression", dir_name="sts", text_columns=(-3, -2),
              label_column=-1, test_text_columns=(-2, -1), metric="correlation",
              double_unordered=True, epochs=10),
        _glue("qqp", "QQP.tsv", ("question1", "question2"), text_columns=(3, 4), label_column=5,
              test_text_columns=(1, 2), labels=BINARY, metric="accuracy_f1"),
        _glue("mnli", "", ("premise", "hypothesis"), text_columns=(8, 9), label_column=-1,
              test_text_columns=(8, 9), labels=("contradiction", "entailment", "neutral"),
              dev_sets=(("dev_matched", "dev_matched"), ("dev_mismatched", "dev_mismatched")),
              test_sets=(("test_matched", "test_matched", "MNLI-m.tsv"),
                         ("test_mismatched", "test_mismatched", "MNLI-mm.tsv"))),
        _glue("qnli", "QNLI.tsv", ("question", "sentence"), **RTE_LAYOUT, labels=ENTAILMENT),
        _glue("rte", "RTE.tsv", PAIR, **RTE_LAYOUT, labels=ENTAILMENT, epochs=10),
        _glue("wnli", "WNLI.tsv", PAIR, **RTE_LAYOUT, labels=BINARY),
        _task("squad11", "squad11_predictions.json", "span", metric="squad", epochs=2,
              tfds_name="squad/v1.1", other_dir_names=("squadv1",)),
        _task("squad20", "squad20_predictions.json", "span", metric="squad", epochs=2,
              tfds_name="squad/v2.0", squad_v2=True, other_dir_names=("squad",)),
        # The original's MRQA tasks. Its config gives tasks with "qa" in the name 512 tokens and
        # 2 epochs; "naturalqs" has none, so it keeps the defaults (128 tokens, 3 epochs).
        _mrqa("newsqa"), _mrqa("triviaqa"), _mrqa("searchqa"),
        _mrqa("naturalqs", epochs=3, seq_len="max_seq_len"),
        # Tagging: the original's chunking (CoNLL-2000; 256 tokens as its config) and NER in the
        # same format (CoNLL-2003: the last column is the tag).
        _tagging("chunk"), _tagging("ner"),
        # Built-in offline tasks (builtin_tasks.py): SST layout (sentence, label) and RTE layout;
        # a tagging task (CoNLL layout) and a SQuAD 1.1-layout QA task.
        _task("builtin_acceptability", "builtin_acceptability.tsv", **SST_LAYOUT),
        _task("builtin_replaced", "builtin_replaced.tsv", **SST_LAYOUT),
        _task("builtin_continuity", "builtin_continuity.tsv", **RTE_LAYOUT, labels=BINARY),
        _tagging("builtin_code"),
        _task("builtin_phrase", "", "span", metric="squad", epochs=2, test_sets=()),
    )
}  # fmt: skip

BUILTIN_TASKS = ("builtin_acceptability", "builtin_replaced", "builtin_continuity",
                 "builtin_code", "builtin_phrase")  # fmt: skip

# The original's task names (`task_names`, also its finetuning_data/ folders) -> ours.
ORIGINAL_TASK_NAMES = {"squad": "squad20", "squadv1": "squad11", "sst": "sst2", "sts": "stsb"}


def task_name(name: str) -> str:
    """Our name for a task given by ours or by the original's name."""
    return ORIGINAL_TASK_NAMES.get(name, name) if name not in TASKS else name


def get_task(name: str) -> TaskSpec:
    if task_name(name) in TASKS:
        return TASKS[task_name(name)]
    raise UserError(f"unknown task {name!r}; expected one of {', '.join(sorted(TASKS))}")
