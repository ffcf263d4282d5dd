"""What launch/report.py writes: the Markdown report (paper rows beside ours) and the
pre-training curves PNG, from the data `report_data.build_report` gathers.
"""

from __future__ import annotations

import io
from typing import Any

from electra_jax.files.run_files import CONFIG_FILE, METRICS_FILE
from electra_jax.finetune.metrics import GLUE_SCORE_TASKS
from electra_jax.storage import write_atomic
from launch.report_data import CURVE_KEYS, SQUAD_TASKS, PaperRow, PretrainRun, curve

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


MARKER_BELOW = 10  # a series with fewer points than this gets markers (one point: visible)


def run_colours(count: int) -> list[Any]:
    """One colour per run, the same in every panel: the default cycle, or for more runs than
    it holds, evenly spaced colours of a map."""
    import matplotlib

    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key().get("color", [])
    if 0 < count <= len(cycle):
        return list(cycle[:count])
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / max(count - 1, 1)) for i in range(count)]


def curves_figure(runs: list[PretrainRun]) -> Any:
    """The curves Figure: loss / mlm_loss / disc_loss / eval/disc_auc vs step, one line per run.
    Each run keeps one colour across the panels and in the shared legend, whichever metrics
    other runs lack; eval series, and any of fewer than MARKER_BELOW points, get markers."""
    from matplotlib.figure import Figure  # no pyplot: Agg canvas, no display, no global state
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    colours = run_colours(len(runs))
    marked = [False] * len(runs)
    for ax, key in zip(axes, CURVE_KEYS, strict=True):
        for i, run in enumerate(runs):
            points = curve(run.records, key)
            if not points:
                continue
            marker = "o" if key.startswith("eval/") or len(points) < MARKER_BELOW else None
            marked[i] = marked[i] or marker is not None
            ax.plot(*zip(*points, strict=True), label=run.label, color=colours[i],
                    linewidth=1.2, marker=marker, markersize=4)  # fmt: skip
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    drawn = [i for i, run in enumerate(runs) if any(curve(run.records, k) for k in CURVE_KEYS)]
    if drawn:
        handles = [Line2D([], [], color=colours[i], linewidth=1.2, label=runs[i].label,
                          marker="o" if marked[i] else None, markersize=4)
                   for i in drawn]  # fmt: skip
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(drawn), 3),
                   fontsize="small")  # fmt: skip
    return fig


def plot_curves(runs: list[PretrainRun], path: str) -> None:
    """Writes `curves_figure(runs)` as a PNG, atomically (storage.write_atomic: local or gs://)."""
    png = io.BytesIO()
    curves_figure(runs).savefig(png, format="png", dpi=100)
    write_atomic(path, png.getvalue())


def write_text(path: str, text: str) -> None:
    """Writes text atomically (storage.write_atomic: local or gs://)."""
    write_atomic(path, text.encode("utf-8"))
