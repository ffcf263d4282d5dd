"""The `tfds:NAME[:SPLIT]` corpus source, against a stand-in `tensorflow_datasets` module.

TFDS itself is an optional dependency (not installed in CI, and real datasets download); the
stand-in serves records as `tfds.load` + `tfds.as_numpy` do, so this tests our side: one
document per record, the split, the error messages.
"""

from __future__ import annotations

import sys
import types

import pytest
from data_fixtures import WORDS, write_vocab
from test_data_prepare import prepare, shard_bytes

from electra_jax.errors import UserError


def make_documents(n_docs: int = 30) -> list[str]:
    """Wikipedia-like records: a few lines (paragraphs) of text each."""
    docs = []
    for d in range(n_docs):
        lines = [
            " ".join(WORDS[(d * 7 + s * 3 + w) % len(WORDS)] for w in range(4 + (d + s) % 9))
            for s in range(1 + d % 5)
        ]
        docs.append("\n".join(lines))
    return docs


@pytest.fixture
def fake_tfds(monkeypatch):
    """Installs a `tensorflow_datasets` stand-in; returns the list of load() calls it saw."""
    calls: list[dict] = []
    documents = make_documents()

    def load(name, split="train", shuffle_files=False):
        calls.append({"name": name, "split": split, "shuffle_files": shuffle_files})
        if name != "fake_wiki":
            raise ValueError(f"Dataset {name} not found.")
        return [{"text": doc.encode("utf-8"), "title": b"t"} for doc in documents]

    module = types.ModuleType("tensorflow_datasets")
    module.load = load
    module.as_numpy = lambda dataset: iter(dataset)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls, documents


def test_tfds_records_are_documents_like_one_doc_per_file(fake_tfds, tmp_path):
    calls, documents = fake_tfds
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    meta = prepare("tfds:fake_wiki", vocab, tmp_path / "tfds")
    assert calls == [{"name": "fake_wiki", "split": "train", "shuffle_files": False}]
    corpus_dir = tmp_path / "files"
    corpus_dir.mkdir()
    for i, doc in enumerate(documents):
        (corpus_dir / f"doc-{i:03d}.txt").write_text(doc, encoding="utf-8")
    files_meta = prepare(str(corpus_dir / "*.txt"), vocab, tmp_path / "files_out",
                         one_doc_per_file=True)  # fmt: skip
    # The same documents, one per record or one per file: byte-identical shards.
    assert shard_bytes(tmp_path / "tfds") == shard_bytes(tmp_path / "files_out")
    assert meta["splits"] == files_meta["splits"]
    assert meta["corpus"]["documents"] == len(documents)


def test_tfds_split_is_passed_through(fake_tfds, tmp_path):
    calls, _ = fake_tfds
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    prepare("tfds:fake_wiki:validation", vocab, tmp_path / "out")
    assert calls[0]["split"] == "validation"


def test_unknown_tfds_name_is_a_one_line_error(fake_tfds, tmp_path):
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    with pytest.raises(UserError, match=r"tfds:no_such_set: TFDS could not load it .*name"):
        prepare("tfds:no_such_set", vocab, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_tfds_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    with pytest.raises(UserError, match="pip install tensorflow-datasets"):
        prepare("tfds:wikipedia/20230601.en", vocab, tmp_path / "out")
