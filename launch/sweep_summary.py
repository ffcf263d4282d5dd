"""What `launch/sweep.py` knows of a sweep's runs on disk: whether each is finished, its
metric, the summary it writes (WORKDIR/summary.md and summary.csv), and whether a folder is the
sweep's root at all."""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import TYPE_CHECKING, Any

from etils import epath

from electra_jax.errors import UserError
from electra_jax.files.run_files import read_metrics, read_results, read_run_config
from launch.common import read_run_file

if TYPE_CHECKING:
    from launch.sweep import Run


def join(root: str, name: str) -> str:
    """root/name for local paths and gs:// alike."""
    return root.rstrip("/") + "/" + name


# ----------------------------------------------------------------------------- state of a run


def is_finished(job: str, workdir: str) -> bool:
    """results.json exists (fine-tuning); the last logged step is num_train_steps (pre-training)."""
    if job == "finetune":
        return read_run_file(read_results, workdir) is not None
    config = read_run_file(read_run_config, workdir)
    records = read_run_file(read_metrics, workdir)
    try:
        total = int(config["num_train_steps"])
    except (ValueError, KeyError, TypeError):
        return False
    return bool(records) and records[-1]["step"] >= total


def read_metric(job: str, workdir: str, metric: str) -> float | None:
    """The run's metric: a (dotted) key of results.json, or the last value in metrics.jsonl."""
    if job == "finetune":
        value: Any = read_run_file(read_results, workdir)
        for part in metric.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    else:
        values = [r[metric] for r in read_run_file(read_metrics, workdir) if metric in r]
        value = values[-1] if values else None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) else None


# ----------------------------------------------------------------------------- summary


def summary_rows(runs: list[Run], job: str, metric: str) -> list[dict[str, Any]]:
    """One row per run: name, overrides, metric, status; best first, unfinished last."""
    rows = []
    for order, run in enumerate(runs):
        finished = is_finished(job, run.workdir)
        value = read_metric(job, run.workdir, metric) if finished else None
        status = "finished" if finished else "unfinished"
        if finished and value is None:
            status = f"finished, no {metric}"
        rows.append({"run": run.name, **run.overrides, metric: value, "status": status,
                     "_order": order})  # fmt: skip
    return sorted(rows, key=lambda r: (r[metric] is None, -(r[metric] or 0.0), r["_order"]))


def summary_columns(runs: list[Run], metric: str) -> list[str]:
    """run, the union of override keys in first-seen order, the metric, status."""
    keys = list(dict.fromkeys(k for run in runs for k in run.overrides))
    return ["run", *keys, metric, "status"]


def render_markdown(rows: list[dict], columns: list[str], metric: str, title: str) -> str:
    """The summary table with a line of counts, the best run and the median (the paper's
    statistic over seeds)."""
    cell = lambda v: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
    done = [r[metric] for r in rows if r[metric] is not None]
    lines = [f"# Sweep: {title}", "",
             f"{len(done)} of {len(rows)} runs have `{metric}`; sorted by it, best first.", "",
             "| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if c == metric else "---" for c in columns) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    if done:
        median = float(statistics.median(done))
        lines += ["", f"best: {rows[0]['run']} ({cell(rows[0][metric])}); median over "
                      f"{len(done)} run(s): {cell(median)}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict], columns: list[str]) -> str:
    """The same rows as CSV (empty metric for unfinished runs)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_summary(runs: list[Run], job: str, metric: str, root: str, title: str) -> str:
    """Writes ROOT/summary.md and ROOT/summary.csv; returns the Markdown."""
    rows = summary_rows(runs, job, metric)
    columns = summary_columns(runs, metric)
    markdown = render_markdown(rows, columns, metric, title)
    try:
        epath.Path(root).mkdir(parents=True, exist_ok=True)
        epath.Path(join(root, "summary.md")).write_text(markdown)
        epath.Path(join(root, "summary.csv")).write_text(render_csv(rows, columns))
    except OSError as e:
        raise UserError(f"cannot write the summary under {root}: {e}") from None
    return markdown


def check_sweep_root(runs: list[Run], root: str, spec: str) -> None:
    """--summarize reads a sweep's root: a folder holding none of the sweep's run directories
    (another folder, or a sweep never started) is an error, not a table of made-up runs."""
    if any(epath.Path(run.workdir).is_dir() for run in runs):
        return
    raise UserError(
        f"--workdir={root} holds none of the {len(runs)} run directories of {spec}'s sweep "
        f"(such as {runs[0].name}); pass the sweep's own --workdir and --config, or run the "
        "sweep first; nothing written"
    )
