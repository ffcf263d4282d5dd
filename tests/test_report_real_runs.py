"""`launch/report.py` over real runs (a tiny pre-training run and a fine-tuning run from its
export): the report's rows carry the numbers the runs wrote. And the repo's copy of the paper's
numbers against values typed from the paper here."""

from __future__ import annotations

import json
import os
import statistics
from importlib import resources

import pytest

from configs.finetune import get_config as finetune_config
from electra_jax.files.run_files import read_metrics, read_results, read_run_config
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.finetune.trainer import run as finetune
from electra_jax.train.trainer import train
from launch.report import main as report_main
from launch.report_data import load_paper_results, select_paper_rows

TASK = "builtin_replaced"
SEEDS = 3
PRETRAIN = {  # a few steps of a one-layer tiny model on one device, with one eval
    "num_train_steps": 4, "log_every": 2, "eval_every": 4, "checkpoint_every": 4,
    "warmup_steps": 1, "eval_batches": 1, "model.num_layers": 1, "mesh.num_devices": 1,
}  # fmt: skip


def row_of(markdown: str, section: str, first_cell: str) -> list[str]:
    """The cells of the row starting with `first_cell` in the Markdown section `section`."""
    body = markdown.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in {section}:\n{body}")


def test_report_rows_carry_the_real_runs_numbers(tiny_config, builtin_data_dir, tmp_path, capsys):
    root = tmp_path / "runs"
    pretrain_dir = root / "tiny-pretrain"
    train(tiny_config(**PRETRAIN), str(pretrain_dir))
    assert os.path.isfile(pretrain_dir / "export" / "model.json")

    tasks_dir = ensure_builtin_tasks(train=2000, dev=400, test=50,
                                     cache_dir=os.path.dirname(builtin_data_dir))  # fmt: skip
    # One epoch of the 2000 rows (125 steps): enough for the seeds to differ (measured dev
    # accuracies 79.0 / 72.0 / 78.5), so that median, min and max are three numbers.
    config = finetune_config(f"task={TASK},size=tiny")
    config.update(init_from=str(pretrain_dir), data_dir=tasks_dir, max_seq_len=32, batch_size=16,
                  num_epochs=1.0, seeds=SEEDS, log_every=1000, eval_batch_size=200,
                  write_predictions=False)  # fmt: skip
    finetune_dir = root / "finetune" / TASK
    finetune(config, str(finetune_dir))

    out = tmp_path / "report"
    capsys.readouterr()
    report_main([f"--runs={root}", f"--out={out}"])
    markdown = capsys.readouterr().out
    assert (out / "report.md").read_text() == markdown
    report = json.loads((out / "report.json").read_text())

    # Fine-tuning: the per-seed dev accuracies and their median, from results.json.
    results = read_results(str(finetune_dir))
    dev = results["dev"]["dev"]
    accuracies = [entry["accuracy"] for entry in dev["per_seed"]]
    assert len(accuracies) == SEEDS and results["seeds"] == [0, 1, 2]
    assert report["num_finetune_runs"] == 1
    (model,) = report["models"]
    assert model["model"] == f"ours: tiny, {pretrain_dir}"
    assert (model["size"], model["init_from"], model["glue"]) == ("tiny", str(pretrain_dir), None)
    summary = model["tasks"][TASK]
    assert summary["metric"] == "accuracy" and summary["dev_set"] == "dev"
    assert summary["per_seed"] == accuracies and summary["seeds"] == results["seeds"]
    assert summary["median"] == results["score"] == dev["median"]["accuracy"]
    assert summary["median"] == statistics.median(accuracies)
    assert (summary["min"], summary["max"]) == (min(accuracies), max(accuracies))
    assert summary["n_seeds"] == SEEDS
    assert summary["runs"] == [str(finetune_dir / "results.json")]
    assert row_of(markdown, "Other tasks", model["model"])[1:] == [
        TASK, "accuracy", f"{results['score']:.1f}", f"{min(accuracies):.1f}",
        f"{max(accuracies):.1f}", str(SEEDS),
    ]  # fmt: skip

    # Pre-training: the last logged value of each curve, from metrics.jsonl.
    records = read_metrics(str(pretrain_dir))
    assert [r["step"] for r in records] == [2, 4]
    assert read_run_config(str(pretrain_dir))["size"] == "tiny"
    (pretraining,) = report["pretraining"]
    assert pretraining["run"] == "tiny-pretrain" and pretraining["size"] == "tiny"
    assert pretraining["records"] == len(records) and pretraining["last_step"] == 4
    for key in ("loss", "mlm_loss", "disc_loss", "eval/disc_auc"):
        last = next(r for r in reversed(records) if key in r)
        assert pretraining["last"][key] == {"step": last["step"], "value": last[key]}, key
    cells = row_of(markdown, "Pre-training", "tiny-pretrain")
    assert cells[1:4] == ["tiny", str(len(records)), "4"]
    assert cells[4:8] == [f"{records[-1][k]:.3f}"
                          for k in ("loss", "mlm_loss", "disc_loss", "eval/disc_auc")]  # fmt: skip
    assert (out / "pretraining_curves.png").read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- the paper's numbers

# Typed from Clark et al., ICLR 2020: Table 1 (GLUE dev score), Table 2 (Large, GLUE dev per task
# and score), Table 4 (SQuAD dev EM / F1).
TABLE1 = {"ELECTRA-Small": 79.9, "BERT-Small": 75.1, "ELECTRA-Base": 85.1, "BERT-Base": 82.2}
TABLE2 = {  # CoLA SST MRPC STS QQP MNLI QNLI RTE, GLUE
    "ELECTRA-400K": (69.3, 96.0, 90.6, 92.1, 92.4, 90.5, 94.5, 86.8, 89.0),
    "ELECTRA-1.75M": (69.1, 96.9, 90.8, 92.6, 92.4, 90.9, 95.0, 88.0, 89.5),
}
TABLE4 = {"ELECTRA-Base": {"squad11": (84.5, 90.8), "squad20": (80.5, 83.3)}}
TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")


def test_paper_results_json_matches_numbers_typed_from_the_paper():
    path = resources.files("launch").joinpath("reference", "paper_results.json")
    paper = json.loads(path.read_text(encoding="utf-8"))
    assert load_paper_results() == paper  # what the report reads
    assert paper["tasks"] == list(TASKS)
    for name, glue in TABLE1.items():
        assert paper["table1_glue_dev"][name]["glue"] == glue, name
    large = paper["table2_glue_dev_large"]
    for name, (*scores, glue) in TABLE2.items():
        assert [large[name][t] for t in TASKS] == scores and large[name]["glue"] == glue, name
        assert statistics.fmean(scores) == pytest.approx(glue, abs=0.05)  # GLUE: their mean
    for name, tasks in TABLE4.items():
        for task, em_f1 in tasks.items():
            assert tuple(paper["table4_squad_dev_em_f1"][name][task]) == em_f1, (name, task)
    # The report's rows read them from the right places.
    rows = select_paper_rows(paper, ["table1:ELECTRA-Small", "table1:BERT-Small",
                                     "table2:ELECTRA-400K", "table2:ELECTRA-1.75M"])  # fmt: skip
    assert [row.glue for row in rows] == [79.9, 75.1, 89.0, 89.5]
    assert rows[2].glue_tasks == dict(zip(TASKS, TABLE2["ELECTRA-400K"][:8], strict=True))
