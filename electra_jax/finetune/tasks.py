"""The fine-tuning tasks: where each one's files live, which columns hold text and label.

GLUE layouts follow the original's `finetuning_data/<dir>/{train,dev,test}.tsv` (RECIPE.md):
columns are 0-based, negative from the end. GLUE test files carry an `index` column first and
no labels, so they have their own text columns. Built-in tasks (generated from the built-in
corpus, see `builtin_tasks.py`) reuse the SST (single sentence) and RTE (pair) layouts.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from electra_jax.errors import UserError

TaskKind = Literal["classification", "regression", "span"]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything task-specific except the data itself."""

    name: str  # config name: cola, sst2, ..., squad20, builtin_acceptability
    kind: TaskKind
    dir_name: str  # folder under data_dir
    text_columns: tuple[int, ...] = ()
    label_column: int | None = None
    test_text_columns: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()  # label strings, in class-id order (classification)
    header: bool = True  # train/dev files start with a header row (test files always do)
    # (split name, file stem) of each evaluation set; MNLI has two.
    dev_sets: tuple[tuple[str, str], ...] = (("dev", "dev"),)
    # (split name, file stem, leaderboard file) of each test set.
    test_sets: tuple[tuple[str, str, str], ...] = ()
    metric: str = "accuracy"  # see metrics.glue_metrics; "squad" for span tasks
    double_unordered: bool = False  # train on (A, B) and (B, A): MRPC, STS-B
    epochs: int = 3
    tfds_name: str = ""
    squad_v2: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.kind == "classification" else 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


def _glue(name: str, dir_name: str, leaderboard: str, **kw) -> TaskSpec:
    kw.setdefault("test_sets", (("test", "test", leaderboard),))
    kw.setdefault("tfds_name", f"glue/{name}")
    return TaskSpec(name=name, kind=kw.pop("kind", "classification"), dir_name=dir_name, **kw)


BINARY = ("0", "1")
ENTAILMENT = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        _glue("cola", "cola", "CoLA.tsv", text_columns=(3,), label_column=1,
              test_text_columns=(1,), labels=BINARY, header=False, metric="mcc"),
        _glue("sst2", "sst", "SST-2.tsv", text_columns=(0,), label_column=1,
              test_text_columns=(1,), labels=BINARY),
        _glue("mrpc", "mrpc", "MRPC.tsv", text_columns=(3, 4), label_column=0,
              test_text_columns=(3, 4), labels=BINARY, metric="accuracy_f1",
              double_unordered=True),
        _glue("stsb", "sts", "STS-B.tsv", kind="regression", text_columns=(-3, -2),
              label_column=-1, test_text_columns=(-2, -1), metric="correlation",
              double_unordered=True, epochs=10),
        _glue("qqp", "qqp", "QQP.tsv", text_columns=(3, 4), label_column=5,
              test_text_columns=(1, 2), labels=BINARY, metric="accuracy_f1"),
        _glue("mnli", "mnli", "", text_columns=(8, 9), label_column=-1,
              test_text_columns=(8, 9), labels=("contradiction", "entailment", "neutral"),
              dev_sets=(("dev_matched", "dev_matched"), ("dev_mismatched", "dev_mismatched")),
              test_sets=(("test_matched", "test_matched", "MNLI-m.tsv"),
                         ("test_mismatched", "test_mismatched", "MNLI-mm.tsv"))),
        _glue("qnli", "qnli", "QNLI.tsv", text_columns=(1, 2), label_column=3,
              test_text_columns=(1, 2), labels=ENTAILMENT),
        _glue("rte", "rte", "RTE.tsv", text_columns=(1, 2), label_column=3,
              test_text_columns=(1, 2), labels=ENTAILMENT, epochs=10),
        _glue("wnli", "wnli", "WNLI.tsv", text_columns=(1, 2), label_column=3,
              test_text_columns=(1, 2), labels=BINARY),
        TaskSpec("squad11", "span", "squad11", metric="squad", epochs=2,
                 tfds_name="squad/v1.1", test_sets=(("test", "test", "squad11_predictions.json"),)),
        TaskSpec("squad20", "span", "squad20", metric="squad", epochs=2, squad_v2=True,
                 tfds_name="squad/v2.0", test_sets=(("test", "test", "squad20_predictions.json"),)),
        # Built-in offline tasks: SST layout (sentence, label) and RTE layout (index, A, B, label).
        TaskSpec("builtin_acceptability", "classification", "builtin_acceptability",
                 text_columns=(0,), label_column=1, test_text_columns=(1,), labels=BINARY,
                 test_sets=(("test", "test", "builtin_acceptability.tsv"),)),
        TaskSpec("builtin_replaced", "classification", "builtin_replaced",
                 text_columns=(0,), label_column=1, test_text_columns=(1,), labels=BINARY,
                 test_sets=(("test", "test", "builtin_replaced.tsv"),)),
        TaskSpec("builtin_continuity", "classification", "builtin_continuity",
                 text_columns=(1, 2), label_column=3, test_text_columns=(1, 2), labels=BINARY,
                 test_sets=(("test", "test", "builtin_continuity.tsv"),)),
    )
}  # fmt: skip

BUILTIN_TASKS = ("builtin_acceptability", "builtin_replaced", "builtin_continuity")


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; expected one of {', '.join(sorted(TASKS))}")
    return TASKS[name]
