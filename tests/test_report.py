"""`report`: fake workdirs in, Markdown / JSON / PNG out, paper numbers beside our medians."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

from launch.report import load_paper_results, main

GLUE = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
HEADLINE = {"cola": "mcc", "stsb": "spearman"}  # accuracy otherwise
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seed_scores(task: str, base: float, seeds: list[int]) -> list[dict]:
    """results.json per-seed entries as the trainer writes them (x100, `score` = headline)."""
    entries = []
    for seed in seeds:
        value = base + 1.7 * ((seed * 7) % 5) - 0.3 * seed
        if task.startswith("squad"):
            entries.append({"seed": seed, "exact": value - 6.0, "f1": value, "score": value})
        else:
            entry = {"seed": seed, HEADLINE.get(task, "accuracy"): value, "score": value}
            if task == "stsb":
                entry["pearson"] = value + 0.5
            entries.append(entry)
    return entries


def write_results(workdir, task: str, per_seed: list[dict], init_from: str, size: str) -> None:
    """A fine-tuning workdir's results.json (MNLI with matched and mismatched dev sets)."""
    sets = ("dev_matched", "dev_mismatched") if task == "mnli" else ("dev",)
    dev = {}
    for i, name in enumerate(sets):
        shifted = [{k: (v - i if k != "seed" else v) for k, v in e.items()} for e in per_seed]
        dev[name] = {"per_seed": shifted, "median": {}}
    results = {"task": task, "size": size, "init_from": init_from, "dev": dev,
               "score": statistics.median(e["score"] for e in per_seed)}  # fmt: skip
    os.makedirs(workdir, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(results))


def write_pretrain(workdir, size: str, steps: int) -> None:
    """A pre-training workdir: config.json and metrics.jsonl (eval records every 100 steps)."""
    os.makedirs(workdir, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps({"size": size, "num_train_steps": steps}))
    lines = []
    for step in range(50, steps + 1, 50):
        record = {"step": step, "loss": 40.0 - step / 100, "mlm_loss": 6.0 - step / 1000,
                  "disc_loss": 0.6 - step / 10000}  # fmt: skip
        if step % 100 == 0:
            record["eval/disc_auc"] = 0.5 + step / 10000
        lines.append(json.dumps(record))
    (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def runs(tmp_path):
    """Two models: `full` has all 8 GLUE tasks; `part` has 5 (sst2 split over seed dirs), a
    built-in task and SQuAD 1.1; plus one pre-training run. Returns (root, expected medians)."""
    root = tmp_path / "runs"
    expected: dict[str, dict[str, list[dict]]] = {"full": {}, "part": {}}
    for i, task in enumerate(GLUE):
        scores = seed_scores(task, 60.0 + 3 * i, [0, 1, 2, 3, 4])
        expected["full"][task] = scores
        write_results(root / "base" / task, task, scores, "models/base", "base")
    for i, task in enumerate(("cola", "stsb", "mnli", "rte")):
        scores = seed_scores(task, 50.0 + 4 * i, [0, 1, 2])
        expected["part"][task] = scores
        write_results(root / "small" / task, task, scores, "runs/small/export", "small")
    expected["part"]["sst2"] = []
    for seed in (0, 1, 2, 3):  # one run dir per seed, as a sweep writes them: pooled
        scores = seed_scores("sst2", 85.0, [seed])
        expected["part"]["sst2"] += scores
        write_results(root / "small" / "sst2" / f"seed{seed}", "sst2", scores,
                      "runs/small/export", "small")  # fmt: skip
    for task, base in (("builtin_replaced", 70.0), ("squad11", 80.0)):
        expected["part"][task] = seed_scores(task, base, [0, 1, 2])
        write_results(root / "small" / task, task, expected["part"][task],
                      "runs/small/export", "small")  # fmt: skip
    write_pretrain(root / "small", "small", 400)
    return root, expected


def median(entries: list[dict], key: str) -> float:
    return statistics.median(e[key] for e in entries)


def row_of(markdown: str, label_fragment: str, table: str) -> list[str]:
    """The cells of the first row whose label contains `label_fragment`, in section `table`."""
    section = markdown.split(f"## {table}", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and label_fragment in cells[0]:
            return cells
    raise AssertionError(f"no row {label_fragment!r} in {table}:\n{section}")


def run_report(root, out, capsys, *extra: str) -> tuple[str, dict]:
    main([f"--runs={root}", f"--out={out}", *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    with open(os.path.join(out, "report.json")) as f:
        return captured.out, json.load(f)


def test_report_tables_json_and_curves(runs, tmp_path, capsys):
    root, expected = runs
    out = tmp_path / "out"
    markdown, report = run_report(root, out, capsys)
    paper = load_paper_results()
    assert (out / "report.md").read_text() == markdown

    # Paper rows: released Small per task + its 8-task mean; Table 1 GLUE only.
    released = paper["released_models_dev"]["Small"]
    row = row_of(markdown, "ELECTRA-Small (released", "GLUE dev")
    assert row[1:9] == [f"{released[t]:.1f}" for t in GLUE]
    assert row[9] == f"{statistics.fmean(released[t] for t in GLUE):.1f} (mean)"
    row = row_of(markdown, "ELECTRA-Small (paper Table 1", "GLUE dev")
    assert row[9] == f"{paper['table1_glue_dev']['ELECTRA-Small']['glue']:.1f}"
    assert row[1:9] == ["-"] * 8

    # Ours, complete: medians over seeds; GLUE = mean of the 8 medians.
    full = {t: median(expected["full"][t], HEADLINE.get(t, "accuracy")) for t in GLUE}
    row = row_of(markdown, "ours: base, models/base", "GLUE dev")
    assert row[1:9] == [f"{full[t]:.1f}" for t in GLUE]
    assert row[9] == f"{statistics.fmean(full.values()):.1f}" and row[10] == "5"

    # Ours, partial: pooled sst2 seeds, MNLI matched, missing tasks marked and named.
    part = {t: median(expected["part"][t], HEADLINE.get(t, "accuracy"))
            for t in ("cola", "sst2", "stsb", "mnli", "rte")}  # fmt: skip
    row = row_of(markdown, "ours: small, runs/small/export", "GLUE dev")
    assert row[1:9] == [f"{part[t]:.1f}" if t in part else "missing" for t in GLUE]
    assert row[9] == f"{statistics.fmean(part.values()):.1f} (5/8)" and row[10] == "3-4"
    assert "GLUE over 5 of 8 tasks only; missing: mrpc, qqp, qnli" in markdown

    # SQuAD: Table 4 EM / F1 and the released model's EM beside our medians.
    em, f1 = paper["table4_squad_dev_em_f1"]["ELECTRA-Base"]["squad11"]
    row = row_of(markdown, "ELECTRA-Base (paper Table 4", "SQuAD dev")
    assert row[1:3] == [f"{em:.1f}", f"{f1:.1f}"]
    row = row_of(markdown, "ELECTRA-Small (released", "SQuAD dev")
    assert row[1:3] == [f"{paper['released_models_dev']['Small']['squad11_em']:.1f}", "-"]
    squad = expected["part"]["squad11"]
    row = row_of(markdown, "ours: small", "SQuAD dev")
    assert row[1:5] == [f"{median(squad, 'exact'):.1f}", f"{median(squad, 'f1'):.1f}",
                        "missing", "missing"]  # fmt: skip

    # Built-in task: median and spread.
    values = [e["accuracy"] for e in expected["part"]["builtin_replaced"]]
    row = row_of(markdown, "ours: small", "Other tasks")
    assert row[1:] == ["builtin_replaced", "accuracy", f"{statistics.median(values):.1f}",
                       f"{min(values):.1f}", f"{max(values):.1f}", "3"]  # fmt: skip

    # Pre-training: table row and a real PNG.
    row = row_of(markdown, "small", "Pre-training")
    assert row[1:4] == ["small", "8", "400"] and row[7] == "0.540"
    png = (out / "pretraining_curves.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000

    # report.json: the same numbers.
    models = {m["model"]: m for m in report["models"]}
    small = models["ours: small, runs/small/export"]
    assert small["glue"]["missing"] == ["mrpc", "qqp", "qnli"] and not small["glue"]["complete"]
    assert small["glue"]["score"] == pytest.approx(statistics.fmean(part.values()))
    assert small["tasks"]["sst2"]["n_seeds"] == 4 and len(small["tasks"]["sst2"]["runs"]) == 4
    assert small["tasks"]["mnli"]["dev_set"] == "dev_matched"
    assert small["tasks"]["mnli"]["dev_set_medians"]["dev_mismatched"] == pytest.approx(
        part["mnli"] - 1
    )
    assert small["tasks"]["squad11"]["metrics"]["exact"]["median"] == median(squad, "exact")
    assert models["ours: base, models/base"]["glue"]["complete"]
    labels = [p["label"] for p in report["paper_rows"]]
    assert len(labels) == 5 and report["outputs"]["curves_png"] == "pretraining_curves.png"
    assert report["pretraining"][0]["last"]["eval/disc_auc"] == {"step": 400, "value": 0.54}


def test_group_by_dir_and_paper_row_choice(runs, tmp_path, capsys):
    root, expected = runs
    markdown, report = run_report(
        root, tmp_path / "out", capsys, "--group-by=dir",
        "--paper-row=table2:ELECTRA-400K,ELECTRA-Base",
    )  # fmt: skip
    assert sorted(m["model"] for m in report["models"]) == ["ours: base", "ours: small"]
    # NAME alone matches every section with that row: released, Table 1 and Table 4.
    assert [(p["section"], p["name"]) for p in report["paper_rows"]] == [
        ("table2", "ELECTRA-400K"), ("released", "Base"), ("table1", "ELECTRA-Base"),
        ("table4", "ELECTRA-Base"),
    ]  # fmt: skip
    large = load_paper_results()["table2_glue_dev_large"]["ELECTRA-400K"]
    row = row_of(markdown, "ELECTRA-400K", "GLUE dev")
    assert row[1:10] == [f"{large[t]:.1f}" for t in (*GLUE, "glue")]


def test_paper_reference_is_package_data():
    paper = load_paper_results()
    assert paper["tasks"] == list(GLUE)
    assert set(paper["released_models_dev"]["Small"]) >= set(GLUE)


def test_report_does_not_import_jax():
    code = "import sys, launch.report; assert 'jax' not in sys.modules, 'jax imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr


def assert_exit_2(capsys, argv: list[str], *fragments: str) -> None:
    """Exit 2, exactly one stderr line starting with `error:`, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_inputs_exit_2_with_one_line(runs, tmp_path, capsys):
    root, _ = runs
    out = f"--out={tmp_path / 'out'}"
    assert_exit_2(capsys, [out], "--runs")
    assert_exit_2(capsys, [f"--runs={tmp_path / 'nope'}"], "does not exist")
    (tmp_path / "file").write_text("x")
    assert_exit_2(capsys, [f"--runs={tmp_path / 'file'}"], "not a directory")
    os.makedirs(tmp_path / "empty" / "sub")
    assert_exit_2(capsys, [f"--runs={tmp_path / 'empty'}", out], "no results", "results.json",
                  "metrics.jsonl + config.json")  # fmt: skip
    assert_exit_2(capsys, [f"--runs={root}", out, "--paper-row=table9:X"], "table9:X", "known")

    bad = root / "small" / "rte" / "results.json"
    bad.write_text('{"task": "rte", ')
    assert_exit_2(capsys, [f"--runs={root}", out], str(bad), "not valid JSON")
    bad.write_text(json.dumps({"size": "small", "dev": {}}))
    assert_exit_2(capsys, [f"--runs={root}", out], str(bad), "'task'")
    bad.write_text(json.dumps({"task": "cola", "dev": {"dev": {"per_seed": [{"score": 1.0}]}}}))
    assert_exit_2(capsys, [f"--runs={root}", out], str(bad), "'dev.dev.per_seed[0].mcc'")
    bad.write_text(json.dumps({"task": "rte", "dev": {"dev": {"per_seed": [{"accuracy": "x"}]}}}))
    assert_exit_2(capsys, [f"--runs={root}", out], str(bad), "should be a number")
    assert not os.path.exists(tmp_path / "out")  # nothing written on bad input


def write_curves_run(workdir, records: list[dict]) -> None:
    """A pre-training workdir with exactly these metrics.jsonl records."""
    os.makedirs(workdir, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps({"size": "tiny", "num_train_steps": 1000}))
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_curves_png_one_colour_per_run_and_visible_single_points(tmp_path, capsys, monkeypatch):
    """Issue 20: every panel draws each run in that run's own colour (the one legend is shared),
    with its own values, even when an earlier run lacks a metric (the `bert` baseline logs no
    disc_loss or eval/disc_auc); a series of one or a few points carries a marker."""
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    root = tmp_path / "runs"
    steps = range(100, 2001, 100)
    runs = {  # sorted by name: bert first, so a per-panel colour cycle would shift the others
        "a-bert": [{"step": s, "loss": 9 - s / 1000, "mlm_loss": 7 - s / 1000} for s in steps],
        "b-electra": [
            {
                "step": s,
                "loss": 40 - s / 100,
                "mlm_loss": 6 - s / 1000,
                "disc_loss": 0.6 - s / 10000,
                **({"eval/disc_auc": 0.5 + s / 10000} if s % 500 == 0 else {}),
            }
            for s in steps
        ],  # fmt: skip
        "c-short": [
            {"step": s, "loss": 30 - s / 10, "mlm_loss": 5 - s / 100, "disc_loss": 0.5 - s / 1000}
            for s in (50, 100, 150)
        ]  # fmt: skip
        + [{"step": 150, "eval/disc_auc": 0.61}],
    }
    for name, records in runs.items():
        write_curves_run(root / name, records)
    saved: list[Figure] = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), real_savefig(fig, *a, **k))
    )
    run_report(root, tmp_path / "out", capsys)
    (fig,) = saved

    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(panels) == {"loss", "mlm_loss", "disc_loss", "eval/disc_auc"}
    colour: dict[str, str] = {}
    for key, ax in panels.items():
        drawn = {line.get_label(): line for line in ax.get_lines()}
        expected = {name: [(r["step"], r[key]) for r in records if key in r]
                    for name, records in runs.items()}  # fmt: skip
        assert set(drawn) == {name for name, points in expected.items() if points}, key
        for name, line in drawn.items():
            assert line.get_xydata().tolist() == [list(p) for p in expected[name]], (key, name)
            assert colour.setdefault(name, to_hex(line.get_color())) == to_hex(line.get_color()), (
                f"{name} changes colour in the {key} panel"
            )
            if len(expected[name]) < 10 or key.startswith("eval/"):
                assert line.get_marker() not in (None, "", " ", "None"), (key, name)
                assert line.get_markersize() > 0, (key, name)
    assert len(set(colour.values())) == len(runs)  # three runs, three colours
    (legend,) = fig.legends
    handles = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles,
                                               strict=True)}  # fmt: skip
    assert set(handles) == set(runs)
    for name, handle in handles.items():
        assert to_hex(handle.get_color()) == colour[name], name
