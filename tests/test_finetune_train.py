"""End to end: fine-tune the tiny model on a built-in task (seeds under vmap), results.json,
submission files; a SQuAD 2.0 smoke run through the span head and answer decoding."""

import json
import os

import numpy as np
import pytest

from configs.finetune import get_config
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.finetune.trainer import run


@pytest.fixture(scope="module")
def builtin_tasks_dir(builtin_data_dir):
    cache = os.path.dirname(builtin_data_dir)  # reuses the session's built-in corpus text
    return ensure_builtin_tasks(train=2000, dev=400, test=50, cache_dir=cache)


def tiny(task, builtin_data_dir, data_dir, **overrides):
    config = get_config(f"task={task},size=tiny")
    config.vocab_dir = builtin_data_dir
    config.data_dir = data_dir
    config.max_seq_len = 32
    config.log_every = 1000
    for key, value in overrides.items():
        config[key] = value
    return config


def test_tiny_model_learns_builtin_task_with_two_vmapped_seeds(
    tmp_path, builtin_data_dir, builtin_tasks_dir
):
    config = tiny("builtin_replaced", builtin_data_dir, builtin_tasks_dir, seeds=2,
                  num_epochs=2.0)  # fmt: skip
    results = run(config, str(tmp_path))
    assert results["seeds"] == [0, 1] and results["seeds_per_group"] == 2
    per_seed = results["dev"]["dev"]["per_seed"]
    assert [m["seed"] for m in per_seed] == [0, 1]
    # Different heads, order and dropout: the seeds' models differ. (Their dev accuracies on 200
    # rows can tie by chance: both seeds scored 77.5 once the initialiser was fixed.)
    assert per_seed[0]["train_loss"] != per_seed[1]["train_loss"]
    assert results["score"] == pytest.approx(np.median([m["accuracy"] for m in per_seed]))
    assert results["score"] >= 70.0, results  # chance is 50; measured 76 (74, 78.5)
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["score"] == results["score"]
    lines = (tmp_path / "predictions" / "builtin_replaced.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 51
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}
    assert os.path.exists(tmp_path / "metrics.jsonl")


SQUAD = {
    "version": "v2.0",
    "data": [{"title": "T", "paragraphs": [{
        "context": "Super Bowl 50 was won by the Denver Broncos in 2016 at Levi's Stadium.",
        "qas": [
            {"id": "q1", "question": "Who won Super Bowl 50?",
             "answers": [{"text": "Denver Broncos", "answer_start": 29}]},
            {"id": "q2", "question": "Where was it played?",
             "answers": [{"text": "Levi's Stadium", "answer_start": 55}]},
            {"id": "q3", "question": "Who sang the anthem?", "is_impossible": True,
             "answers": []},
        ],
    }]}],
}  # fmt: skip


def test_squad20_smoke_run_writes_predictions(tmp_path, builtin_data_dir):
    data = tmp_path / "data" / "squad20"
    data.mkdir(parents=True)
    for stem in ("train", "dev"):
        (data / f"{stem}.json").write_text(json.dumps(SQUAD))
    config = tiny("squad20", builtin_data_dir, str(tmp_path / "data"), max_seq_len=32,
                  batch_size=4, num_epochs=2.0)  # fmt: skip
    config.squad.doc_stride = 8
    config.squad.n_best = 4
    results = run(config, str(tmp_path / "run"))
    median = results["dev"]["dev"]["median"]
    assert {"exact", "f1", "HasAns_exact", "NoAns_exact", "best_f1"} <= set(median)
    predictions = json.loads(
        (tmp_path / "run" / "predictions" / "dev_predictions.json").read_text()
    )
    assert set(predictions) == {"q1", "q2", "q3"}
    nulls = tmp_path / "run" / "predictions" / "dev_predictions_null_odds.json"
    assert set(json.loads(nulls.read_text())) == {"q1", "q2", "q3"}
