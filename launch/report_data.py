"""What launch/report.py reports, read and aggregated: the paper's rows, our fine-tuning and
pre-training workdirs found under --runs, and their medians over seeds as plain JSON-able data.

Run files are read through `electra_jax.files.run_files` (the trainers' own readers); this module
only checks that a results.json holds what the report needs. No jax: the report runs anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from importlib import resources
from typing import Any

from etils import epath

from electra_jax.cli import note, warn
from electra_jax.errors import UserError
from electra_jax.files.run_files import (
    CONFIG_FILE,
    METRICS_FILE,
    RESULTS_FILE,
    read_metrics,
    read_results,
    read_run_config,
)
from electra_jax.finetune.metrics import GLUE_SCORE_TASKS
from electra_jax.finetune.tasks import TASKS
from electra_jax.storage import absolute, check_location, list_files
from launch.common import read_run_file

LOOKS_FOR = (
    f"{RESULTS_FILE} (fine-tuning workdirs) or {METRICS_FILE} + {CONFIG_FILE} "
    "(pre-training workdirs)"
)
SKIP_DIRS = ("checkpoints", "tensorboard", "export")  # big, never hold a workdir of their own
SQUAD_TASKS = ("squad11", "squad20")
# The paper's headline metric per task (first = the one tables show); results.json stores
# each x100 (finetune/metrics.py glue_metrics, squad_scores).
HEADLINE = {"cola": ("mcc",), "stsb": ("spearman",), "squad11": ("f1", "exact"),
            "squad20": ("f1", "exact")}  # fmt: skip
CURVE_KEYS = ("loss", "mlm_loss", "disc_loss", "eval/disc_auc")
DEFAULT_PAPER_ROWS = (
    "released:Small", "released:Base", "table1:ELECTRA-Small", "table1:ELECTRA-Base",
    "table4:ELECTRA-Base",
)  # fmt: skip
# --paper-row section -> (key in paper_results.json, how the row is labelled)
SECTIONS = {
    "released": ("released_models_dev", "released, reference README"),
    "table1": ("table1_glue_dev", "paper Table 1"),
    "table2": ("table2_glue_dev_large", "paper Table 2"),
    "table4": ("table4_squad_dev_em_f1", "paper Table 4"),
    "table5": ("table5_ablation_glue_dev_base", "paper Table 5, Base ablation"),
    "repro": ("independent_reproduction_small_owt_dev", "electra_pytorch reproduction, mean of 10"),
}


# ----------------------------------------------------------------------------- paper rows


@dataclasses.dataclass(frozen=True)
class PaperRow:
    """One published row: per-task GLUE scores, GLUE score, SQuAD EM / F1 (None: not given)."""

    section: str
    name: str
    label: str
    glue_tasks: dict[str, float]
    glue: float | None
    glue_computed: bool  # GLUE is our mean of the row's 8 tasks (the source gives none)
    squad: dict[str, dict[str, float | None]]


def load_paper_results() -> dict[str, Any]:
    """The repo copy of the published numbers (package data beside this module)."""
    path = resources.files("launch").joinpath("reference", "paper_results.json")
    return json.loads(path.read_text(encoding="utf-8"))


def paper_row(section: str, name: str, values: dict[str, Any]) -> PaperRow:
    """A PaperRow from one entry of a paper_results.json section."""
    tasks = {t: float(values[t]) for t in GLUE_SCORE_TASKS if t in values}
    glue = values.get("glue")
    computed = glue is None and len(tasks) == len(GLUE_SCORE_TASKS)
    if computed:
        glue = statistics.fmean(tasks.values())
    squad: dict[str, dict[str, float | None]] = {}
    for task in SQUAD_TASKS:
        if isinstance(values.get(task), list):  # Table 4: [EM, F1]
            squad[task] = {"em": float(values[task][0]), "f1": float(values[task][1])}
        elif f"{task}_em" in values:  # released models: EM only
            squad[task] = {"em": float(values[f"{task}_em"]), "f1": None}
    display = f"ELECTRA-{name}" if section == "released" else name
    label = f"{display} ({SECTIONS[section][1]})"
    return PaperRow(section, name, label, tasks, glue, computed, squad)


def all_paper_rows(paper: dict[str, Any]) -> list[PaperRow]:
    """Every row of every section, in file order."""
    rows = []
    for section, (key, _) in SECTIONS.items():
        entries = paper.get(key, {})
        if section == "repro":
            entries = {"Small-OWT": entries.get("scores", {})}
        for name, values in entries.items():
            if name.startswith("_"):
                continue
            rows.append(paper_row(section, name, values if isinstance(values, dict) else
                                  {"glue": values}))  # fmt: skip
    return rows


def select_paper_rows(paper: dict[str, Any], specs: list[str]) -> list[PaperRow]:
    """Rows named by --paper-row: SECTION:NAME, or NAME alone (every section that has it)."""
    rows, chosen = all_paper_rows(paper), []
    for spec in specs:
        if spec == "none":
            continue
        section, _, name = spec.rpartition(":")
        hits = [
            r for r in rows
            if (not section or r.section == section)
            and name in (r.name, f"ELECTRA-{r.name}" if r.section == "released" else r.name)
        ]  # fmt: skip
        if not hits:
            known = ", ".join(f"{r.section}:{r.name}" for r in rows)
            raise UserError(f"--paper-row={spec!r} matches no row of paper_results.json; "
                            f"known rows: {known}")  # fmt: skip
        chosen.extend(r for r in hits if r not in chosen)
    return chosen


# ----------------------------------------------------------------------------- discovery


@dataclasses.dataclass(frozen=True)
class FinetuneRun:
    """One results.json: its task, model and the headline metric values per seed."""

    path: str
    task: str
    size: str
    init_from: str
    dev_set: str  # the headline dev set (MNLI: dev_matched)
    per_seed: list[dict[str, float]]  # {metric: value} for the headline metrics, plus "seed"
    dev_medians: dict[str, float]  # every dev set's median of the primary metric


@dataclasses.dataclass(frozen=True)
class PretrainRun:
    """One pre-training workdir: its config and logged records."""

    path: str
    label: str
    size: str
    records: list[dict[str, Any]]


def check_root(runs: str) -> str:
    """--runs must be an existing directory (local or gs://)."""
    check_location(runs, "--runs")
    if not epath.Path(runs).exists():
        raise UserError(f"--runs={runs} does not exist; point it at a directory of workdirs")
    if not epath.Path(runs).is_dir():
        raise UserError(f"--runs={runs} is not a directory; point it at a directory of workdirs")
    return absolute(runs)


def discover(root: str) -> tuple[list[FinetuneRun], list[PretrainRun]]:
    """Fine-tuning and pre-training workdirs anywhere under `root` (local or a bucket; folders
    in SKIP_DIRS and hidden ones are not searched, symlinks not followed)."""
    folders: dict[tuple[str, ...], set[str]] = {}
    for name in list_files(root):
        *parts, file = name.split("/")
        if not any(part in SKIP_DIRS or part.startswith(".") for part in parts):
            folders.setdefault(tuple(parts), set()).add(file)
    finetune, pretrain = [], []
    for parts in sorted(folders):  # parents before children, like a sorted top-down walk
        directory, files = "/".join((root.rstrip("/"), *parts)), folders[parts]
        if RESULTS_FILE in files:
            finetune.append(read_finetune(directory))
        elif METRICS_FILE in files and CONFIG_FILE in files:
            run = read_pretrain(directory, root)
            if run is not None:
                pretrain.append(run)
    return finetune, pretrain


def warn_torn(path: str, count: int) -> None:
    warn(f"{path}: skipped {count} line(s) that are not JSON")


def require(value: Any, key: str, kind: type, path: str, where: str = "") -> Any:
    """value[key] of the given type, or a UserError naming the file and the key."""
    if not isinstance(value, dict) or key not in value:
        raise UserError(f"{path} lacks required key {where + key!r}; is it an electra_jax "
                        "fine-tuning results.json?")  # fmt: skip
    if not isinstance(value[key], kind):
        expected = getattr(kind, "__name__", "number")
        raise UserError(f"{path}: key {where + key!r} should be a {expected}, "
                        f"got {type(value[key]).__name__}; fix or remove the file")  # fmt: skip
    return value[key]


def headline_metrics(task: str) -> tuple[str, ...]:
    """The metric(s) reported for `task`; the first is its headline score."""
    return HEADLINE.get(task, ("accuracy",) if task in TASKS else ("score",))


def headline_set(dev: dict[str, Any]) -> str:
    """The dev set the paper reports: `dev`, MNLI's `dev_matched`, else the first by name."""
    return next((s for s in ("dev", "dev_matched") if s in dev), min(dev))


def read_finetune(directory: str) -> FinetuneRun:
    """A fine-tuning workdir's results.json, checked to hold what the report needs."""
    path = os.path.join(directory, RESULTS_FILE)
    results = read_run_file(read_results, directory)
    task = require(results, "task", str, path)
    dev = require(results, "dev", dict, path)
    if not dev:
        raise UserError(f"{path}: key 'dev' is empty (no dev-set scores); rerun with dev data")
    metrics = headline_metrics(task)
    per_set = {}
    for name in sorted(dev):
        entries = require(dev[name], "per_seed", list, path, f"dev.{name}.")
        if not entries:
            raise UserError(f"{path}: key 'dev.{name}.per_seed' is empty")
        per_set[name] = [seed_metrics(e, metrics, path, f"dev.{name}.per_seed[{i}].")
                         for i, e in enumerate(entries)]  # fmt: skip
    chosen = headline_set(dev)
    medians = {n: statistics.median(e[metrics[0]] for e in v) for n, v in per_set.items()}
    size, init_from = results.get("size") or "?", results.get("init_from") or ""
    return FinetuneRun(path, task, str(size), str(init_from), chosen, per_set[chosen], medians)


def seed_metrics(entry: Any, metrics: tuple[str, ...], path: str, where: str) -> dict:
    """One per-seed entry's headline metrics (and seed), checked to be numbers."""
    out = {m: float(require(entry, m, int | float, path, where)) for m in metrics}
    if isinstance(entry.get("seed"), int):
        out["seed"] = entry["seed"]
    return out


def read_pretrain(directory: str, root: str) -> PretrainRun | None:
    """A pre-training workdir, or None for a fine-tuning workdir without results.json yet."""
    config = read_run_file(read_run_config, directory)
    label = os.path.relpath(directory, root)
    label = os.path.basename(root) if label == "." else label
    if isinstance(config, dict) and "task" in config:
        note(f"{label}: fine-tuning workdir without {RESULTS_FILE} (still running?); skipped")
        return None
    size = config.get("size", "?") if isinstance(config, dict) else "?"
    records = read_run_file(read_metrics, directory, warn_torn)
    return PretrainRun(directory, label, str(size), records)


# ----------------------------------------------------------------------------- grouping


def model_key(run: FinetuneRun, root: str, group_by: str) -> str:
    """The row a run belongs to: its pre-trained model (size, init_from) or its directory."""
    if group_by == "init_from":
        return f"ours: {run.size}, {run.init_from or 'random init'}"
    parts = os.path.relpath(os.path.dirname(run.path), root).split(os.sep)
    cut = parts.index(run.task) if run.task in parts else len(parts) - 1
    return "ours: " + ("/".join(parts[:cut]) or os.path.basename(root))


def summarize(values: list[float]) -> dict[str, Any]:
    """Median and spread over seeds."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n_seeds": len(values), "per_seed": values}  # fmt: skip


def task_summary(model: str, task: str, runs: list[FinetuneRun]) -> dict[str, Any]:
    """One (model, task): the seeds of all its runs pooled, median and spread per metric."""
    metrics = headline_metrics(task)
    entries = [e for r in runs for e in r.per_seed]
    seeds = [e["seed"] for e in entries if "seed" in e]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated and len(runs) > 1:
        warn(f"{model}, {task}: seed(s) {repeated} appear in several runs ({len(runs)} pooled)")
    per_metric = {m: summarize([e[m] for e in entries]) for m in metrics}
    dev_sets = sorted({n for r in runs for n in r.dev_medians})
    return {
        "metric": metrics[0], "dev_set": runs[0].dev_set, **per_metric[metrics[0]],
        "metrics": per_metric, "seeds": seeds, "runs": sorted(r.path for r in runs),
        "dev_set_medians": {n: statistics.median(r.dev_medians[n] for r in runs
                                                 if n in r.dev_medians) for n in dev_sets},
    }  # fmt: skip


def glue_summary(tasks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The GLUE score over the 8 tasks, or over those present (complete=False); None if none."""
    present = [t for t in GLUE_SCORE_TASKS if t in tasks]
    if not present:
        return None
    return {"score": statistics.fmean(tasks[t]["median"] for t in present),
            "complete": len(present) == len(GLUE_SCORE_TASKS), "tasks_present": present,
            "missing": [t for t in GLUE_SCORE_TASKS if t not in tasks]}  # fmt: skip


def group_models(runs: list[FinetuneRun], root: str, group_by: str) -> list[dict[str, Any]]:
    """Our rows: per model, per task summaries and the GLUE score."""
    grouped: dict[str, dict[str, list[FinetuneRun]]] = {}
    for run in runs:
        grouped.setdefault(model_key(run, root, group_by), {}).setdefault(run.task, []).append(run)
    models = []
    for label in sorted(grouped):
        by_task = grouped[label]
        tasks = {t: task_summary(label, t, by_task[t]) for t in sorted(by_task, key=task_order)}
        first = by_task[next(iter(tasks))][0]
        models.append({"model": label, "size": first.size, "init_from": first.init_from,
                       "tasks": tasks, "glue": glue_summary(tasks)})  # fmt: skip
    return models


def task_order(task: str) -> tuple[int, str]:
    """GLUE tasks in the paper's column order, then SQuAD, then the rest by name."""
    order = (*GLUE_SCORE_TASKS, *SQUAD_TASKS)
    return (order.index(task) if task in order else len(order), task)


def pretrain_summary(run: PretrainRun) -> dict[str, Any]:
    """A pre-training run's last logged value of each curve key."""
    last: dict[str, Any] = {}
    for key in CURVE_KEYS:
        points = curve(run.records, key)
        last[key] = {"step": points[-1][0], "value": points[-1][1]} if points else None
    last_step = run.records[-1]["step"] if run.records else None
    return {"run": run.label, "path": run.path, "size": run.size, "records": len(run.records),
            "last_step": last_step, "last": last}  # fmt: skip


def curve(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every record that logged a finite `key`."""
    return [(r["step"], float(r[key])) for r in records
            if isinstance(r.get(key), int | float) and math.isfinite(r[key])]  # fmt: skip


# ----------------------------------------------------------------------------- the report


def paper_row_json(row: PaperRow) -> dict[str, Any]:
    return {"label": row.label, "section": row.section, "name": row.name,
            "source_key": SECTIONS[row.section][0], "glue_tasks": row.glue_tasks,
            "glue": row.glue, "glue_computed": row.glue_computed, "squad": row.squad}  # fmt: skip


def build_report(root: str, finetune: list[FinetuneRun], pretrain: list[PretrainRun],
                 paper_rows: list[PaperRow], group_by: str) -> dict[str, Any]:  # fmt: skip
    """Every number of the report as plain JSON-able data."""
    return {
        "root": root, "group_by": group_by, "num_finetune_runs": len(finetune),
        "glue_tasks": list(GLUE_SCORE_TASKS),
        "paper_rows": [paper_row_json(p) for p in paper_rows],
        "models": group_models(finetune, root, group_by),
        "pretraining": [pretrain_summary(r) for r in pretrain],
        "outputs": {"curves_png": None},
    }  # fmt: skip
