"""Bad input stops `electra_jax.prepare` with exit code 2 and one line naming the file and fix."""

from __future__ import annotations

import json

import pytest
from data_fixtures import run_prepare, write_corpus, write_vocab

from electra_jax.data.dataset import prepare_dataset
from electra_jax.data.loader import check_meta, make_train_loader, read_meta
from electra_jax.errors import UserError


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    stderr = result.stderr.strip()
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: ")
    for needle in needles:
        assert needle in stderr, (needle, stderr)


@pytest.fixture
def files(tmp_path):
    write_corpus(str(tmp_path / "corpus"), n_files=1, docs_per_file=10)
    (tmp_path / "empty.txt").write_text("\n  \n\n")
    return {
        "corpus": str(tmp_path / "corpus" / "part-0.txt"),
        "empty": str(tmp_path / "empty.txt"),
        "vocab": write_vocab(str(tmp_path / "vocab.txt")),
        "no_mask": write_vocab(str(tmp_path / "no_mask.txt"), drop="[MASK]"),
        "out": str(tmp_path / "out"),
        "tmp": str(tmp_path),
    }


@pytest.mark.parametrize(
    "case",
    ["glob_matches_nothing", "missing_file", "empty_corpus", "vocab_lacks_mask", "no_vocab_size"],
)
def test_cli_bad_input(files, case):
    out = f"--output={files['out']}"
    vocab = f"--vocab={files['vocab']}"
    if case == "glob_matches_nothing":
        pattern = f"{files['tmp']}/nothing/*.txt"
        assert_one_line_error(run_prepare(f"--corpus={pattern}", vocab, out), pattern, "glob")
    elif case == "missing_file":
        path = f"{files['tmp']}/missing.txt"
        assert_one_line_error(run_prepare(f"--corpus={path}", vocab, out), path, "pass existing")
    elif case == "empty_corpus":
        result = run_prepare(f"--corpus={files['empty']}", vocab, out, "--quiet")
        assert_one_line_error(result, files["empty"], "gave no examples", "non-empty")
    elif case == "vocab_lacks_mask":
        result = run_prepare(f"--corpus={files['corpus']}", f"--vocab={files['no_mask']}", out)
        assert_one_line_error(result, files["no_mask"], "[MASK]", "add them")
    else:
        result = run_prepare(f"--corpus={files['corpus']}", "--train-vocab=wordpiece", out)
        assert_one_line_error(result, "--vocab-size")


def test_meta_disagreeing_with_the_model_config(files):
    meta = prepare_dataset(
        files["corpus"], files["out"], vocab=files["vocab"], max_seq_len=32, progress=False
    )
    check_meta(meta, files["out"], vocab_size=meta["vocab_size"], max_seq_len=32)
    with pytest.raises(UserError, match=r"meta.json: vocab_size is \d+ but the model config"):
        check_meta(meta, files["out"], vocab_size=30522, max_seq_len=32)
    with pytest.raises(UserError, match="max_seq_len is 32 but .* --max-seq-len=128"):
        check_meta(meta, files["out"], vocab_size=meta["vocab_size"], max_seq_len=128)
    with pytest.raises(UserError, match="fewer than one global batch"):
        make_train_loader(files["out"], global_batch_size=4096, seed=0, process_count=1,
                          process_index=0)  # fmt: skip
    with pytest.raises(UserError, match="multiple of the 3 processes"):
        make_train_loader(files["out"], global_batch_size=8, seed=0, process_count=3,
                          process_index=0)  # fmt: skip


def test_missing_or_corrupt_meta(files, tmp_path):
    with pytest.raises(UserError, match="not a prepared dataset; create one with"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match="meta.json is unreadable or corrupt"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(UserError, match="lacks required fields"):
        read_meta(str(tmp_path))
