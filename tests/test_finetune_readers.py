"""Readers parse each task's exact layout (fixtures written here) and reject malformed rows."""

import json
import os

import pytest

from electra_jax.errors import UserError
from electra_jax.finetune.readers import read_glue_tsv, read_split, read_squad_json
from electra_jax.finetune.tasks import TASKS

# One train row per task in the original's layout (columns per RECIPE.md), its expected
# (text_a, text_b, label string), and one test row (GLUE test files: header + index column).
LAYOUTS = {
    "cola": ("gj04\t1\t\tThe book was read.", ("The book was read.", None, "1"),
             "id\tsentence", "0\tThe book read."),
    "sst2": ("a gripping film\t1", ("a gripping film", None, "1"),
             "index\tsentence", "0\ta dull film"),
    "mrpc": ("1\t702876\t702977\tHe said hi.\tHe greeted.", ("He said hi.", "He greeted.", "1"),
             "index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1\t2\tA b.\tC d."),
    "qqp": ("7\t15\t16\tHow old?\tWhat age?\t1", ("How old?", "What age?", "1"),
            "id\tquestion1\tquestion2", "0\tWhy?\tHow?"),
    "rte": ("0\tA man sleeps.\tA person rests.\tentailment",
            ("A man sleeps.", "A person rests.", "entailment"),
            "index\tsentence1\tsentence2", "0\tX y.\tZ w."),
    "qnli": ("0\tWho won?\tThe Broncos won.\tnot_entailment",
             ("Who won?", "The Broncos won.", "not_entailment"),
             "index\tquestion\tsentence", "0\tWho?\tNobody."),
    "wnli": ("0\tI put it down.\tIt is down.\t1", ("I put it down.", "It is down.", "1"),
             "index\tsentence1\tsentence2", "0\tA.\tB."),
    "stsb": ("main-captions\tMSRvid\t2012test\t0001\tA plane takes off.\tA plane departs.\t5.000",
             ("A plane takes off.", "A plane departs.", 5.0),
             "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2",
             "0\tmain\tf\t2012\t1\ts\ts\tA dog runs.\tA cat runs."),
    "mnli": ("0\t1\t2\t3\t4\t5\t6\tfiction\tThe cat sat.\tA cat sits.\tneutral\tneutral",
             ("The cat sat.", "A cat sits.", "neutral"),
             "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2",
             "0\t1\t2\tfic\tx\tx\tx\tx\tPremise here.\tHypothesis here."),
}  # fmt: skip


def write_task(root, name, train_rows, dev_stem="dev"):
    spec = TASKS[name]
    row, _, test_header, test_row = LAYOUTS[name]
    directory = root / spec.dir_name
    directory.mkdir(parents=True, exist_ok=True)
    header = ["header\tline"] if spec.header else []
    for stem in ("train", *(s for _, s in spec.dev_sets)):
        (directory / f"{stem}.tsv").write_text("\n".join(header + train_rows) + "\n")
    for _, stem, _ in spec.test_sets:
        (directory / f"{stem}.tsv").write_text(f"{test_header}\n{test_row}\n")
    return directory


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_glue_layout_parses(tmp_path, name):
    spec = TASKS[name]
    row, (text_a, text_b, label), _, test_row = LAYOUTS[name]
    write_task(tmp_path, name, [row, row])
    for _, stem in spec.dev_sets:
        result = read_split(str(tmp_path), spec, stem)
        assert len(result.examples) == 2 and result.skipped == 0
        example = result.examples[0]
        assert (example.text_a, example.text_b) == (text_a, text_b)
        expected = label if spec.kind == "regression" else spec.labels.index(label)
        assert example.label == expected
    for _, stem, _ in spec.test_sets:
        test = read_split(str(tmp_path), spec, stem, is_test=True).examples
        assert len(test) == 1 and test[0].label is None and test[0].guid == "0"
        assert test[0].text_a and (test[0].text_b is None) == (text_b is None)


def test_mnli_reads_matched_and_mismatched_dev(tmp_path):
    row = LAYOUTS["mnli"][0]
    directory = write_task(tmp_path, "mnli", [row])
    assert {p.name for p in directory.iterdir()} >= {"dev_matched.tsv", "dev_mismatched.tsv"}
    assert [s for _, s in TASKS["mnli"].dev_sets] == ["dev_matched", "dev_mismatched"]


@pytest.mark.parametrize(
    "name,bad_row,problem",
    [
        ("rte", "0\tonly one sentence", "column(s)"),
        ("rte", "0\tA.\tB.\tmaybe", "label 'maybe'"),
        ("stsb", "a\tb\tc\td\tA.\tB.\tfive", "not a number"),
        ("cola", "gj04\t1\t\t", "empty text"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, name, bad_row, problem):
    good = LAYOUTS[name][0]
    write_task(tmp_path, name, [good, bad_row, good])
    spec = TASKS[name]
    path = os.path.join(tmp_path, spec.dir_name, "train.tsv")
    line = 3 if spec.header else 2
    with pytest.raises(UserError) as error:
        read_glue_tsv(path, spec)
    message = str(error.value)
    assert message.startswith(f"{path}:{line}:") and problem in message
    assert "skip_malformed" in message and "\n" not in message
    skipped = read_glue_tsv(path, spec, skip_malformed=True)
    assert skipped.skipped == 1 and len(skipped.examples) == 2


def test_missing_file_says_where_files_go(tmp_path):
    with pytest.raises(UserError, match="rte/"):
        read_split(str(tmp_path), TASKS["rte"], "train")


SQUAD = {
    "version": "v2.0",
    "data": [{"title": "T", "paragraphs": [{
        "context": "Super Bowl 50 was won by the Denver Broncos in 2016.",
        "qas": [
            {"id": "q1", "question": "Who won?", "is_impossible": False,
             "answers": [{"text": "Denver Broncos", "answer_start": 29}]},
            {"id": "q2", "question": "Who lost badly?", "is_impossible": True, "answers": []},
        ],
    }]}],
}  # fmt: skip


def test_squad_json_parses(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(SQUAD))
    examples = read_squad_json(str(path)).examples
    assert [e.qid for e in examples] == ["q1", "q2"]
    assert examples[0].answers == (("Denver Broncos", 29),) and not examples[0].is_impossible
    assert examples[1].is_impossible and examples[1].answers == ()


def test_squad_malformed_answer_names_file_and_json_path(tmp_path):
    bad = json.loads(json.dumps(SQUAD))
    bad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError) as error:
        read_squad_json(str(path))
    assert str(error.value).startswith(f"{path}: data[0].paragraphs[0].qas[0]:")
    assert read_squad_json(str(path), skip_malformed=True).skipped == 1


def test_cli_bad_row_exits_2_with_one_line(tmp_path, capsys, monkeypatch, builtin_data_dir):
    from electra_jax.finetune.__main__ import main

    write_task(tmp_path, "rte", [LAYOUTS["rte"][0], "0\tbroken"])
    argv = ["--config=configs/finetune.py:task=rte,size=tiny",
            f"--workdir={tmp_path / 'run'}", f"--config.data_dir={tmp_path}",
            f"--config.vocab_dir={builtin_data_dir}"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "rte/train.tsv:3:" in err and "Traceback" not in err
