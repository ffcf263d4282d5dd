"""What misled a new user in the first hour (issue 20), pre-training side: a warm-up longer than
the run, a schedule changed on resume, held-out numbers missing from the console, prepared
data's vocabulary size ignored, a finished run compiled and exported again."""

import os
import re

import pytest

from electra_jax.data.dataset import prepare_dataset
from electra_jax.detect import build_parser as build_detect_parser
from electra_jax.detect import main as detect_main
from electra_jax.errors import UserError
from electra_jax.files.run_files import read_metrics
from electra_jax.prepare import build_parser as build_prepare_parser
from electra_jax.train.trainer import train, validate_config

SHORT = dict(num_train_steps=4, log_every=2, eval_every=4, checkpoint_every=2, eval_batches=1,
             warmup_steps=2, export=True, **{"model.num_layers": 1})  # fmt: skip


def test_warmup_longer_than_the_run_is_warned(tiny_config, capsys):
    validate_config(tiny_config(num_train_steps=40, warmup_steps=60))
    err = capsys.readouterr().err
    assert "warmup_steps=60 >= num_train_steps=40" in err and "never reaches its peak" in err
    validate_config(tiny_config(num_train_steps=400, warmup_steps=60))
    assert capsys.readouterr().err == ""


def test_schedule_change_on_resume_is_refused_unless_allowed(tiny_config, tmp_path, capsys):
    train(tiny_config(**SHORT), str(tmp_path))
    out = capsys.readouterr().out
    assert "eval: step 4 masked_lm_accuracy=" in out and "disc_auc=" in out  # on the console
    with open(tmp_path / "config.json", "rb") as f:
        saved_config = f.read()
    longer = tiny_config(**{**SHORT, "num_train_steps": 6})
    with pytest.raises(UserError, match="num_train_steps=4 \\(this run: 6\\)") as info:
        train(longer, str(tmp_path))
    assert "allow_schedule_change=True" in str(info.value)
    with open(tmp_path / "config.json", "rb") as f:
        assert f.read() == saved_config  # nothing rewritten
    allowed = tiny_config(**{**SHORT, "num_train_steps": 6, "allow_schedule_change": True})
    train(allowed, str(tmp_path))
    out = capsys.readouterr().out
    assert "resume: from step 4" in out and "config changed since: " in out
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [2, 4, 6]


def test_finished_run_says_so_without_compiling_or_exporting_again(tiny_config, tmp_path, capsys):
    config = tiny_config(**SHORT)
    train(config, str(tmp_path))
    export_files = sorted(os.listdir(tmp_path / "export"))
    stamp = os.stat(tmp_path / "export").st_mtime_ns
    capsys.readouterr()
    last = train(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "finished at step 4 already" in out and "compile:" not in out
    assert os.stat(tmp_path / "export").st_mtime_ns == stamp
    assert sorted(os.listdir(tmp_path / "export")) == export_files
    assert last["step"] == 4 and "eval/disc_auc" in last
    # detect, like finetune's init_from, takes the run's workdir for its export/
    detect_main([f"--checkpoint={tmp_path}", "--text=the function returns a list", "--json"])
    assert '"replaced_prob"' in capsys.readouterr().out


def test_prepared_vocabulary_size_is_used_when_the_config_keeps_the_preset(
    tiny_config, tmp_path, capsys
):
    from data_fixtures import write_corpus, write_vocab

    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    corpus = write_corpus(str(tmp_path / "corpus"), n_files=1, docs_per_file=20)[0]
    data = str(tmp_path / "data")
    prepare_dataset(corpus, data, vocab=vocab, max_seq_len=32, progress=False)
    with open(vocab) as f:
        size = sum(1 for _ in f)
    run = {**SHORT, "export": False, "data.dir": data, "max_seq_len": 32, "batch_size": 8}
    config = tiny_config(**run)
    train(config, str(tmp_path / "run"))
    assert (
        f"vocab_size={size} from the data's meta.json (the preset's: 8192)"
        in capsys.readouterr().out
    )
    assert config.model.vocab_size == 8192  # the caller's config is left as given
    with pytest.raises(UserError, match="vocab_size"):  # a size the user set is kept: an error
        train(tiny_config(**{**run, "model.vocab_size": 1000}), str(tmp_path / "run2"))


def test_glue_data_dir_may_be_the_task_folder_or_the_root(tmp_path):
    """README's `--config.data_dir=glue_data/rte` (the task folder) and the sweeps' root."""
    from test_finetune_readers import LAYOUTS, write_task

    from electra_jax.finetune.readers import read_split
    from electra_jax.finetune.tasks import TASKS

    folder = write_task(tmp_path / "glue_data", "rte", [LAYOUTS["rte"][0]])
    for data_dir in (tmp_path / "glue_data", folder):
        examples = read_split(str(data_dir), TASKS["rte"], "train").examples
        assert len(examples) == 1, data_dir


def test_cached_builtin_corpus_is_not_announced_as_being_prepared(
    tiny_config, builtin_data_dir, monkeypatch, capsys
):
    from electra_jax.train.trainer import resolve_data_dir

    monkeypatch.setenv("ELECTRA_JAX_CACHE", os.path.dirname(builtin_data_dir))  # already built
    assert resolve_data_dir(tiny_config(**{"data.dir": ""})) == builtin_data_dir
    assert "preparing" not in capsys.readouterr().out


def help_blocks(parser) -> dict[str, str]:
    """{first option string: its --help text, flags and description} of an argparse parser."""
    blocks: dict[str, str] = {}
    for block in re.split(r"\n(?=  -)", parser.format_help().split("options:", 1)[1]):
        if block.strip():
            blocks[block.split()[0].rstrip(",")] = " ".join(block.split())
    return blocks


def test_prepare_help_gives_every_flags_default(monkeypatch):
    """Issue 20: `prepare --help` showed no defaults. Every flag that is not required says its
    default, and the value shown is the parser's real one."""
    monkeypatch.setenv("COLUMNS", "100")
    parser = build_prepare_parser()
    blocks = help_blocks(parser)
    required_group = {a for g in parser._mutually_exclusive_groups if g.required
                      for a in g._group_actions}  # fmt: skip
    checked = 0
    for action in parser._actions:
        if action.dest == "help" or action.required or action in required_group:
            continue
        text = blocks[action.option_strings[0]]
        assert "default" in text, f"prepare --help: {action.option_strings[0]} gives no default"
        if action.default not in (None, False, True):
            assert f"(default: {action.default})" in text, text
        checked += 1
    assert checked >= 15
    assert "(default: 128)" in blocks["--max-seq-len"] and "(default: 16.0)" in blocks["--shard-mb"]
    assert "(default: 0.5)" in help_blocks(build_detect_parser())["--threshold"]
