"""Report: our fine-tuning medians beside the paper's GLUE / SQuAD numbers, pre-training curves.

    python launch/report.py --runs=runs [--out=runs/report] [--paper-row=table2:ELECTRA-400K]

Walks --runs for fine-tuning workdirs (`results.json`) and pre-training workdirs
(`metrics.jsonl` + `config.json`). Prints a Markdown report and writes `report.md`,
`report.json` (the same numbers) and `pretraining_curves.png` to --out. Scores are x100 as in
the paper: CoLA MCC, STS-B Spearman, accuracy otherwise (MNLI matched), SQuAD EM / F1. Ours
are medians over every seed found for a (model, task): several run directories of one task
(one per seed, say) are pooled. GLUE score = mean of the 8 tasks without WNLI; a model missing
some shows the mean over those present, marked "(k/8)", and names the missing ones.
Paper numbers come from launch/reference/paper_results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
from importlib import resources
from typing import Any

from electra_jax.cli import ArgumentParser, note, warn
from electra_jax.errors import UserError, exit_on_user_error
from electra_jax.files.storage import write_json
from electra_jax.finetune.metrics import GLUE_SCORE_TASKS
from electra_jax.finetune.tasks import TASKS

RESULTS_FILE = "results.json"  # fine-tuning workdir (finetune/trainer.py)
METRICS_FILE = "metrics.jsonl"  # pre-training workdir (metrics_log.py), with CONFIG_FILE
CONFIG_FILE = "config.json"
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
    """--runs must be an existing directory."""
    if not os.path.exists(runs):
        raise UserError(f"--runs={runs} does not exist; point it at a directory of workdirs")
    if not os.path.isdir(runs):
        raise UserError(f"--runs={runs} is not a directory; point it at a directory of workdirs")
    return os.path.abspath(runs)


def discover(root: str) -> tuple[list[FinetuneRun], list[PretrainRun]]:
    """Fine-tuning and pre-training workdirs anywhere under `root` (symlinks not followed)."""
    finetune, pretrain = [], []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS and not d.startswith("."))
        if RESULTS_FILE in files:
            finetune.append(read_results(os.path.join(directory, RESULTS_FILE)))
        elif METRICS_FILE in files and CONFIG_FILE in files:
            run = read_pretrain(directory, root)
            if run is not None:
                pretrain.append(run)
    return finetune, pretrain


def read_json_file(path: str) -> Any:
    """Parsed JSON, or a UserError naming the file and where it breaks."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); fix or remove it") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}); fix or remove it") from e
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from e


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


def read_results(path: str) -> FinetuneRun:
    """A validated fine-tuning results.json."""
    results = read_json_file(path)
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
    config = read_json_file(os.path.join(directory, CONFIG_FILE))
    label = os.path.relpath(directory, root)
    label = os.path.basename(root) if label == "." else label
    if isinstance(config, dict) and "task" in config:
        note(f"{label}: fine-tuning workdir without {RESULTS_FILE} (still running?); skipped")
        return None
    size = config.get("size", "?") if isinstance(config, dict) else "?"
    return PretrainRun(
        directory, label, str(size), read_metrics(os.path.join(directory, METRICS_FILE))
    )


def read_metrics(path: str) -> list[dict[str, Any]]:
    """metrics.jsonl records with a step, sorted; unreadable lines (a torn write) are skipped."""
    records, bad = [], 0
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}); fix or remove it") from e
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    if bad:
        warn(f"{path}: skipped {bad} line(s) that are not JSON")
    return sorted(records, key=lambda r: r["step"])


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


# ----------------------------------------------------------------------------- Markdown


def fmt(value: float | None, missing: str = "-") -> str:
    """Paper style: one decimal; `missing` where there is no number."""
    return missing if value is None else f"{value:.1f}"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def seeds_cell(tasks: list[dict[str, Any]]) -> str:
    """Seeds per task: `3`, or `3-10` when tasks differ."""
    counts = [t["n_seeds"] for t in tasks]
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def glue_section(models: list[dict[str, Any]], paper_rows: list[PaperRow]) -> list[str]:
    """The GLUE dev table: paper rows, then ours; notes for partial or computed scores."""
    ours = [m for m in models if m["glue"] is not None]
    if not ours:
        return ["## GLUE dev", "", f"No GLUE results ({', '.join(GLUE_SCORE_TASKS)}) found."]
    rows, notes = [], []
    for p in (p for p in paper_rows if p.glue is not None or p.glue_tasks):
        cells = [fmt(p.glue_tasks.get(t)) for t in GLUE_SCORE_TASKS]
        seeds = ">=10" if p.section == "released" else "-"
        rows.append([p.label, *cells, fmt(p.glue) + (" (mean)" if p.glue_computed else ""),
                     seeds])  # fmt: skip
        if p.glue_computed and not any("(mean)" in n for n in notes):
            notes.append("(mean): the source gives per-task scores only; GLUE computed here as "
                         "their mean over the 8 tasks.")  # fmt: skip
    for m in ours:
        tasks, glue = m["tasks"], m["glue"]
        cells = [fmt(tasks[t]["median"]) if t in tasks else "missing" for t in GLUE_SCORE_TASKS]
        score = fmt(glue["score"])
        if not glue["complete"]:
            score += f" ({len(glue['tasks_present'])}/{len(GLUE_SCORE_TASKS)})"
            notes.append(f"{m['model']}: GLUE over {len(glue['tasks_present'])} of "
                         f"{len(GLUE_SCORE_TASKS)} tasks only; missing: "
                         f"{', '.join(glue['missing'])}.")  # fmt: skip
        present = [tasks[t] for t in glue["tasks_present"]]
        rows.append([m["model"], *cells, score, seeds_cell(present)])
    lines = ["## GLUE dev", ""]
    lines += md_table(["model", *GLUE_SCORE_TASKS, "GLUE", "seeds"], rows)
    lines += ["", "CoLA MCC, STS-B Spearman, accuracy otherwise (MNLI matched); x100. Ours: "
              "median over seeds. GLUE: mean of the 8 tasks (WNLI excluded)."]  # fmt: skip
    return lines + [f"- {n}" for n in notes]


def squad_section(models: list[dict[str, Any]], paper_rows: list[PaperRow]) -> list[str]:
    """The SQuAD dev table (EM / F1 per version)."""
    ours = [m for m in models if any(t in m["tasks"] for t in SQUAD_TASKS)]
    if not ours:
        return []
    header = ["model", *(f"{t} {s}" for t in SQUAD_TASKS for s in ("EM", "F1")), "seeds"]
    rows = []
    for p in (p for p in paper_rows if p.squad):
        cells = [fmt(p.squad.get(t, {}).get(s)) for t in SQUAD_TASKS for s in ("em", "f1")]
        rows.append([p.label, *cells, ">=10" if p.section == "released" else "-"])
    for m in ours:
        tasks = m["tasks"]
        cells = [fmt(tasks[t]["metrics"][k]["median"]) if t in tasks else "missing"
                 for t in SQUAD_TASKS for k in ("exact", "f1")]  # fmt: skip
        rows.append([m["model"], *cells, seeds_cell([tasks[t] for t in SQUAD_TASKS
                                                     if t in tasks])])  # fmt: skip
    lines = ["## SQuAD dev", ""] + md_table(header, rows)
    return lines + ["", "Exact match / F1 x100 (official evaluation); ours: median over seeds. "
                    "The released-model README gives EM only."]  # fmt: skip


def other_section(models: list[dict[str, Any]]) -> list[str]:
    """Built-in offline tasks (the ablation's) and anything else: median and spread."""
    rows = []
    for m in models:
        for task, s in m["tasks"].items():
            if task not in GLUE_SCORE_TASKS and task not in SQUAD_TASKS:
                rows.append([m["model"], task, s["metric"], fmt(s["median"]), fmt(s["min"]),
                             fmt(s["max"]), str(s["n_seeds"])])  # fmt: skip
    if not rows:
        return []
    header = ["model", "task", "metric", "median", "min", "max", "seeds"]
    return ["## Other tasks (built-in offline tasks, WNLI)", "", *md_table(header, rows)]


def pretrain_section(runs: list[dict[str, Any]], curves_file: str | None) -> list[str]:
    """Pre-training runs: last logged losses and AUC, and the curves image."""
    if not runs:
        return ["## Pre-training", "", f"No pre-training workdirs ({METRICS_FILE} + "
                f"{CONFIG_FILE}) found."]  # fmt: skip
    rows = []
    for r in runs:
        last = r["last"]
        cells = [f"{last[k]['value']:.3f}" if last[k] else "-" for k in CURVE_KEYS]
        rows.append([r["run"], r["size"], str(r["records"]), str(r["last_step"]), *cells])
    header = ["run", "size", "records", "last step", *CURVE_KEYS]
    lines = ["## Pre-training", "", *md_table(header, rows), "", "Last logged value of each."]
    return lines + (["", f"![pre-training curves]({curves_file})"] if curves_file else [])


def render_markdown(report: dict[str, Any], paper_rows: list[PaperRow]) -> str:
    """The whole report as Markdown."""
    models = report["models"]
    lines = [
        "# electra_jax report", "",
        f"Runs: {report['root']} ({report['num_finetune_runs']} fine-tuning, "
        f"{len(report['pretraining'])} pre-training workdirs). Paper numbers: "
        "launch/reference/paper_results.json.", "",
    ]  # fmt: skip
    for section in (glue_section(models, paper_rows), squad_section(models, paper_rows),
                    other_section(models)):  # fmt: skip
        lines += [*section, ""] if section else []
    lines += pretrain_section(report["pretraining"], report["outputs"]["curves_png"])
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- outputs


def plot_curves(runs: list[PretrainRun], path: str) -> None:
    """loss / mlm_loss / disc_loss / eval/disc_auc vs step, one line per run, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: Agg canvas, no display, no global state

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, key in zip(axes, CURVE_KEYS, strict=True):
        for run in runs:
            points = curve(run.records, key)
            if points:
                ax.plot(*zip(*points, strict=True), label=run.label, linewidth=1.2)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    if any(ax.lines for ax in axes):
        fig.legend(
            *max(axes, key=lambda ax: len(ax.lines)).get_legend_handles_labels(),
            loc="outside lower center",
            ncols=min(len(runs), 3),
            fontsize="small",
        )
    tmp = f"{path}.tmp-{os.getpid()}"
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    """Writes text via a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def paper_row_json(row: PaperRow) -> dict[str, Any]:
    return {"label": row.label, "section": row.section, "name": row.name,
            "source_key": SECTIONS[row.section][0], "glue_tasks": row.glue_tasks,
            "glue": row.glue, "glue_computed": row.glue_computed, "squad": row.squad}  # fmt: skip


def make_out_dir(out: str) -> str:
    """--out as an existing directory (created if needed)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out={out} exists and is not a directory; choose another path")
    os.makedirs(out, exist_ok=True)
    return os.path.abspath(out)


# ----------------------------------------------------------------------------- entry point


def parse_paper_rows(value: str) -> list[str]:
    """--paper-row "a:b,c:d" -> ["a:b", "c:d"]."""
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python launch/report.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", required=True, help="directory searched for workdirs")
    parser.add_argument("--out", help="where report.md / .json / .png go (default RUNS/report)")
    parser.add_argument(
        "--paper-row", action="append", type=parse_paper_rows,
        help="paper rows to show, SECTION:NAME or NAME (sections: " + ", ".join(SECTIONS)
        + "); repeat or comma-separate; 'none' for none; default " + ",".join(DEFAULT_PAPER_ROWS),
    )  # fmt: skip
    parser.add_argument(
        "--group-by", choices=("init_from", "dir"), default="init_from",
        help="our rows: per pre-trained model (size + init_from in results.json), or per "
        "directory (a run's path under --runs up to the folder named after its task)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.paper_row = (
        [s for specs in args.paper_row for s in specs]
        if args.paper_row
        else list(DEFAULT_PAPER_ROWS)
    )
    return args


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


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = check_root(args.runs)
    paper_rows = select_paper_rows(load_paper_results(), args.paper_row)
    finetune, pretrain = discover(root)
    if not finetune and not pretrain:
        raise UserError(f"no results under {root}: looked for {LOOKS_FOR} in it and every "
                        "folder below")  # fmt: skip
    out = make_out_dir(args.out or os.path.join(root, "report"))
    report = build_report(root, finetune, pretrain, paper_rows, args.group_by)
    if pretrain:
        plot_curves(pretrain, os.path.join(out, "pretraining_curves.png"))
        report["outputs"]["curves_png"] = "pretraining_curves.png"
    markdown = render_markdown(report, paper_rows)
    write_text(os.path.join(out, "report.md"), markdown)
    write_json(os.path.join(out, "report.json"), report)
    print(markdown, end="")
    written = ["report.md", "report.json", *([report["outputs"]["curves_png"]] if pretrain else [])]
    note(f"wrote {', '.join(written)} to {out}")


if __name__ == "__main__":
    main()
