"""prepare: CLI end to end, determinism, restart, overwrite refusal, bad input, vocab training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import write_corpus, write_vocab

from electra_jax.data import dataset, shard_workers
from electra_jax.data.dataset_format import read_examples
from electra_jax.data.tokenizer import SPECIAL_TOKENS, load_tokenizer
from electra_jax.errors import UserError

SHARD_MB = 0.005  # ~5 KB of text per shard: several shards from the tiny corpus


@pytest.fixture
def corpus(tmp_path):
    write_corpus(str(tmp_path / "corpus"))
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    return str(tmp_path / "corpus" / "*.txt"), vocab


def prepare(corpus_glob, vocab, output, **kwargs):
    kwargs = {"shard_mb": SHARD_MB, "progress": False, "max_seq_len": 64, **kwargs}
    return dataset.prepare_dataset(corpus_glob, str(output), vocab=vocab, **kwargs)


def shard_bytes(directory) -> dict[str, bytes]:
    return {
        name: (Path(directory) / name).read_bytes()
        for name in sorted(os.listdir(directory))
        if name.endswith(".array_record")
    }


def test_cli_end_to_end_with_show_and_show_json(corpus, tmp_path):
    from data_fixtures import run_prepare

    corpus_glob, vocab = corpus
    out = tmp_path / "data"
    args = [f"--corpus={corpus_glob}", f"--vocab={vocab}", f"--output={out}", "--max-seq-len=64"]
    result = run_prepare(*args, "--shard-mb=0.005", "--num-processes=2", "--show=2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().split("\n")
    assert len(lines) == 2 and all(line.startswith(f"#{i} (train") for i, line in enumerate(lines))
    assert "[CLS] " in lines[0] and lines[0].endswith("[SEP]")
    assert "wrote" in result.stderr and "MB/s" in result.stderr

    meta = json.loads((out / "meta.json").read_text())
    assert meta["max_seq_len"] == 64 and meta["vocab_size"] == len(
        Path(vocab).read_text().splitlines()
    )
    assert meta["special_ids"] == {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    assert meta["tokenizer"] == {
        "kind": "wordpiece",
        "file": "vocab.txt",
        "lowercase": True,
        "strip_accents": True,
    }
    assert os.path.isfile(out / "vocab.txt") and not os.path.exists(f"{out}.partial")
    train, evals = meta["splits"]["train"], meta["splits"]["eval"]
    assert len(train["shards"]) > 1 and evals["examples"] >= 1
    assert train["shards"][0] == f"train-00000-of-{len(train['shards']):05d}.array_record"
    assert sorted(os.listdir(out)) == sorted(
        ["meta.json", "vocab.txt", *train["shards"], *evals["shards"]]
    )
    assert meta["corpus"]["documents"] == 120 and meta["corpus"]["replaced_bytes"] == 0

    # same arguments again: nothing to do; --show-json prints the features as JSON lines
    result = run_prepare(*args, "--shard-mb=0.005", "--show=3", "--show-json", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.strip().split("\n")]
    assert len(rows) == 3 and set(rows[0]) == {"input_ids", "input_mask", "segment_ids"}
    assert all(len(v) == 64 for row in rows for v in row.values())
    first = read_examples(str(out), 1)
    assert rows[0]["input_ids"] == first["input_ids"][0].tolist()
    assert rows[0]["input_ids"][0] == SPECIAL_TOKENS.index("[CLS]")


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_same_arguments_give_identical_shards_for_any_process_count(corpus, tmp_path, pack):
    corpus_glob, vocab = corpus
    meta1 = prepare(corpus_glob, vocab, tmp_path / "a", num_processes=1, pack=pack)
    meta2 = prepare(corpus_glob, vocab, tmp_path / "b", num_processes=2, pack=pack)
    prepare(corpus_glob, vocab, tmp_path / "c", num_processes=1, pack=pack)
    a, b, c = (shard_bytes(tmp_path / name) for name in "abc")
    assert len(a) > 2 and a == b == c
    assert meta1 == meta2
    other = prepare(corpus_glob, vocab, tmp_path / "d", seed=1, pack=pack)
    assert shard_bytes(tmp_path / "d") != a
    assert other["splits"]["train"]["examples"] > 0


def test_eval_split_is_the_corpus_tail(corpus, tmp_path):
    corpus_glob, vocab = corpus
    meta_all = prepare(corpus_glob, vocab, tmp_path / "all", eval_fraction=0.0)
    meta = prepare(corpus_glob, vocab, tmp_path / "split", eval_examples=7)
    n = meta_all["splits"]["train"]["examples"]
    assert meta_all["splits"]["eval"] == {"examples": 0, "tokens": 0, "shards": []}
    assert meta["splits"]["eval"]["examples"] == 7
    assert meta["splits"]["train"]["examples"] == n - 7
    everything = read_examples(str(tmp_path / "all"), n)["input_ids"]
    evals = read_examples(str(tmp_path / "split"), 7, split="eval")["input_ids"]
    train = read_examples(str(tmp_path / "split"), n - 7)["input_ids"]
    np.testing.assert_array_equal(np.concatenate([train, evals]), everything)
    total_tokens = meta["splits"]["train"]["tokens"] + meta["splits"]["eval"]["tokens"]
    assert total_tokens == meta_all["splits"]["train"]["tokens"]


def test_restart_keeps_finished_chunks(corpus, tmp_path, monkeypatch):
    corpus_glob, vocab = corpus
    clean = prepare(corpus_glob, vocab, tmp_path / "clean")
    real = shard_workers.process_chunk
    calls = []

    def interrupted(task):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(task.index)
        return real(task)

    monkeypatch.setattr(shard_workers, "process_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(corpus_glob, vocab, tmp_path / "out")
    assert os.path.isfile(tmp_path / "out.partial" / "manifest.json")
    assert not os.path.exists(tmp_path / "out")

    def counting(task):
        calls.append(task.index)
        return real(task)

    monkeypatch.setattr(shard_workers, "process_chunk", counting)
    resumed = prepare(corpus_glob, vocab, tmp_path / "out")
    n_chunks = len(clean["splits"]["train"]["shards"])
    assert calls[:3] == [0, 1, 2]  # chunks 0 and 1 finished before the interruption
    assert len(calls) - 2 == n_chunks - 2  # the two finished chunks were not rebuilt
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "clean")
    assert resumed == clean


def test_refuses_to_overwrite_a_different_dataset(corpus, tmp_path):
    corpus_glob, vocab = corpus
    meta = prepare(corpus_glob, vocab, tmp_path / "out")
    assert prepare(corpus_glob, vocab, tmp_path / "out") == meta  # same arguments: a no-op
    with pytest.raises(UserError, match=r"already holds a different dataset \(seed differs\)"):
        prepare(corpus_glob, vocab, tmp_path / "out", seed=5)
    os.makedirs(tmp_path / "other")
    open(tmp_path / "other" / "notes.txt", "w").close()
    with pytest.raises(UserError, match="not a prepared dataset"):
        prepare(corpus_glob, vocab, tmp_path / "other")


def test_bad_bytes_replaced_and_dropped_lines_counted(tmp_path):
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    corpus = tmp_path / "bad.txt"
    lines = [b"The city had a river \xff\xfe.", b"A" * 80, b"The team won.", b"   ", b""] * 6
    corpus.write_bytes(b"\n".join(lines))
    meta = prepare(str(corpus), vocab, tmp_path / "out", max_line_chars=50, eval_fraction=0)
    assert meta["corpus"]["replaced_bytes"] == 12  # 2 per bad line
    assert meta["corpus"]["dropped_overlong_lines"] == 6
    assert meta["corpus"]["documents"] == 6
    doc_mode = prepare(
        str(corpus), vocab, tmp_path / "docs", max_line_chars=50, one_doc_per_file=True
    )
    assert doc_mode["corpus"]["documents"] == 1
    assert doc_mode["corpus"]["dropped_blank_lines"] == 11  # 12 blank lines, the last is EOF


def test_vocab_training_is_deterministic_with_fixed_special_ids(tmp_path):
    from electra_jax.data.tokenizer import SentencePieceTokenizer, WordPieceTokenizer
    from electra_jax.data.vocab_training import train_sentencepiece, train_wordpiece

    paths = write_corpus(str(tmp_path / "corpus"))
    texts = [line for p in paths for line in Path(p).read_text().split("\n") if line]
    a = train_wordpiece(iter(texts), 300, str(tmp_path / "wp1"))
    b = train_wordpiece(iter(texts), 300, str(tmp_path / "wp2"))
    assert Path(a).read_text() == Path(b).read_text()
    tokens = Path(a).read_text().split("\n")
    assert tokens[:5] == list(SPECIAL_TOKENS) and len(tokens) - 1 <= 300
    wp = WordPieceTokenizer(a)
    assert (wp.pad_id, wp.unk_id, wp.cls_id, wp.sep_id, wp.mask_id) == (0, 1, 2, 3, 4)
    assert wp.unk_id not in wp.encode("The river music")

    s1 = train_sentencepiece(iter(texts), 150, str(tmp_path / "sp1"))
    s2 = train_sentencepiece(iter(texts), 150, str(tmp_path / "sp2"))
    assert Path(s1).read_bytes() == Path(s2).read_bytes()
    sp = SentencePieceTokenizer(s1)
    assert (sp.pad_id, sp.unk_id, sp.cls_id, sp.sep_id, sp.mask_id) == (0, 1, 2, 3, 4)
    assert [sp.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
    ids = sp.encode("The river music")
    assert ids and min(ids) > 4 and sp.decode(ids) == "the river music"  # case-folded
    assert load_tokenizer(str(tmp_path / "sp1"), sp.settings()).vocab_hash == sp.vocab_hash


def test_prepare_with_sentencepiece_training(tmp_path):
    write_corpus(str(tmp_path / "corpus"))
    meta = dataset.prepare_dataset(
        str(tmp_path / "corpus"), str(tmp_path / "out"), train_vocab="sentencepiece",
        vocab_size=150, max_seq_len=32, progress=False,
    )  # fmt: skip
    assert meta["tokenizer"] == {"kind": "sentencepiece", "file": "spm.model"}
    assert os.path.isfile(tmp_path / "out" / "spm.model")
    batch = read_examples(str(tmp_path / "out"), 4)
    assert batch["input_ids"].shape == (4, 32) and (batch["input_ids"][:, 0] == 2).all()
