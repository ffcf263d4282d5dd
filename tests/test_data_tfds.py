"""TFDS through the real `tensorflow_datasets` library, offline, without TensorFlow.

The fixture prepares small datasets in a temporary TFDS_DATA_DIR as ArrayRecord with TFDS's own
builders: `glue/rte` and `squad/v1.1` / `squad/v2.0` run their real example generators on local
TSV / JSON files (only the download step is replaced), and `tiny_corpus` is a text builder
defined here. Reading then goes through `tfds.data_source`, as a user's run does.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from data_fixtures import WORDS, write_vocab
from test_data_prepare import prepare, shard_bytes

from configs.finetune import get_config
from electra_jax.data import tfds_reader
from electra_jax.data.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer
from electra_jax.errors import UserError
from electra_jax.finetune.readers import read_split, tfds_has_split
from electra_jax.finetune.tasks import TASKS
from electra_jax.finetune.trainer import load_task_data

tfds = tfds_reader.import_tfds("tests")  # a runtime requirement; registers GLUE (text group)

RTE_ROWS = {  # (sentence1, sentence2, label): the GLUE RTE TSV layout
    "train": [
        ("A cat sat.", "An animal sat.", "entailment"),
        ("It rains.", "It is dry.", "not_entailment"),
    ],
    "dev": [("Bob ran home.", "Bob moved.", "entailment")],
    "test": [("The sun set.", "It is noon.", None)],
}
CONTEXT = "The cat sat on the mat. Dogs bark at night."


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


class TinyCorpus(tfds.core.GeneratorBasedBuilder):
    """A text corpus shaped like TFDS's wikipedia / c4 (a `text` feature per document)."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # defined in a test module, not a package: no checksums file to look for

    def _info(self):
        features = tfds.features.FeaturesDict({"text": tfds.features.Text(), "title": np.str_})
        # Unshuffled: records in generation order, comparable with one file per document.
        return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        docs = make_documents()
        return {
            "train": self._generate_examples(docs),
            "validation": self._generate_examples(docs[:4]),
        }

    def _generate_examples(self, docs):
        for i, doc in enumerate(docs):
            yield i, {"text": doc, "title": f"t{i}"}


def squad_json(v2: bool) -> dict:
    """One SQuAD paragraph: two answerable questions, and (2.0) an unanswerable one."""
    q1 = {"id": "q1", "question": "Who sat?", "answers": [{"text": "The cat", "answer_start": 0}]}
    q2 = {"id": "q2", "question": "What barks?", "answers": [{"text": "Dogs", "answer_start": 24}]}
    qas = [q1, q2]
    if v2:
        for qa in qas:
            qa["is_impossible"] = False
        qas.append({"id": "q3", "question": "Who flew?", "answers": [], "is_impossible": True,
                    "plausible_answers": [{"text": "the mat", "answer_start": 15}]})  # fmt: skip
    return {"version": "v2.0" if v2 else "1.1",
            "data": [{"title": "T", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}  # fmt: skip


def build_local(name: str, data_dir, splits: dict) -> None:
    """Prepares TFDS dataset `name` as ArrayRecord, its generator fed local files (no download)."""
    builder = tfds.builder(name, data_dir=str(data_dir), file_format="array_record")
    builder._split_generators = lambda dl_manager: [
        tfds.core.SplitGenerator(name=split, gen_kwargs=kwargs) for split, kwargs in splits.items()
    ]
    builder.download_and_prepare()


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    raw = root / "raw"
    raw.mkdir()
    rte = {}
    for stem, rows in RTE_ROWS.items():
        header = "index\tsentence1\tsentence2" + ("\tlabel" if stem != "test" else "")
        lines = [header] + [
            "\t".join([str(i), a, b] + ([c] if c else [])) for i, (a, b, c) in enumerate(rows)
        ]
        (raw / f"rte_{stem}.tsv").write_text("\n".join(lines) + "\n")
        split = {"dev": "validation"}.get(stem, stem)
        rte[split] = {"data_file": str(raw / f"rte_{stem}.tsv"), "split": stem}
    build_local("glue/rte", root, rte)
    for version, v2 in (("v1.1", False), ("v2.0", True)):
        path = raw / f"squad_{version}.json"
        path.write_text(json.dumps(squad_json(v2)))
        build_local(
            f"squad/{version}", root, {s: {"filepath": str(path)} for s in ("train", "validation")}
        )
    tfds.builder(
        "tiny_corpus", data_dir=str(root), file_format="array_record"
    ).download_and_prepare()
    return str(root)


@pytest.fixture
def tfds_env(tfds_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", tfds_dir)
    assert sys.modules.get("tensorflow") is None  # the ArrayRecord path never needs TensorFlow
    return tfds_dir


def test_corpus_records_are_documents_like_one_doc_per_file(tfds_env, tmp_path):
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    meta = prepare("tfds:tiny_corpus", vocab, tmp_path / "tfds")
    corpus_dir = tmp_path / "files"
    corpus_dir.mkdir()
    documents = make_documents()
    for i, doc in enumerate(documents):
        (corpus_dir / f"doc-{i:03d}.txt").write_text(doc, encoding="utf-8")
    prepare(str(corpus_dir / "*.txt"), vocab, tmp_path / "files_out",
                         one_doc_per_file=True)  # fmt: skip
    # The same documents, one per record or one per file: byte-identical shards.
    assert shard_bytes(tmp_path / "tfds") == shard_bytes(tmp_path / "files_out")
    assert meta["corpus"]["documents"] == len(documents)
    assert sys.modules.get("tensorflow") is None


def test_corpus_split_and_version_syntax(tfds_env, tmp_path):
    assert tfds_reader.parse_spec("tfds:glue/rte:2.0.0") == ("glue/rte:2.0.0", "train")
    assert tfds_reader.parse_spec("tfds:glue/rte:2.0.0@validation") == (
        "glue/rte:2.0.0",
        "validation",
    )
    assert tfds_reader.parse_spec("tfds:c4/en:validation") == ("c4/en", "validation")  # old form
    assert tfds_reader.parse_spec("tfds:tiny_corpus@train[:2]") == ("tiny_corpus", "train[:2]")
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    meta = prepare("tfds:tiny_corpus:1.0.0@validation", vocab, tmp_path / "v")
    assert meta["corpus"]["documents"] == 4
    with pytest.raises(UserError, match=r"write tfds:NAME\[@SPLIT\]"):
        prepare("tfds:tiny_corpus@", vocab, tmp_path / "bad")


def test_corpus_bad_name_split_and_feature_are_one_line_errors(tfds_env, tmp_path):
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    with pytest.raises(
        UserError, match=r"--corpus=tfds:no_such_set: TFDS could not prepare .*catalog"
    ) as e:
        prepare("tfds:no_such_set", vocab, tmp_path / "out")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"has no split 'test'; it has .*train.*validation"):
        prepare("tfds:tiny_corpus@test", vocab, tmp_path / "out")
    with pytest.raises(UserError, match=r"no 'text' feature .*use a text corpus"):
        prepare("tfds:glue/rte", vocab, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_tfds_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    with pytest.raises(UserError, match="pip install tensorflow-datasets"):
        prepare("tfds:wikipedia/20230601.en", vocab, tmp_path / "out")


def test_tfrecord_data_without_tensorflow_names_the_install(tfds_env, monkeypatch):
    """Data prepared as TFRecord (tfds build's default) needs TensorFlow: a one-line error."""
    splits = tfds_reader.prepared_builder("tiny_corpus", "t").info.splits
    tfrecord = tfds.core.file_adapters.FileFormat.TFRECORD
    builder = types.SimpleNamespace(info=types.SimpleNamespace(splits=splits, file_format=tfrecord))
    monkeypatch.setattr(tfds_reader, "prepared_builder", lambda name, what: builder)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setattr(tfds_reader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        UserError, match=r"prepared as tfrecord.*pip install tensorflow \(or rebuild"
    ):
        next(tfds_reader.iter_records("tiny_corpus", "train", "--corpus=tfds:tiny_corpus"))


def test_glue_rte_from_tfds(tfds_env):
    spec = TASKS["rte"]
    train = read_split("", spec, "train").examples
    assert [(e.text_a, e.text_b, spec.labels[e.label]) for e in train] == RTE_ROWS["train"]
    dev = read_split("", spec, "dev").examples
    assert [(e.text_a, e.text_b, e.label) for e in dev] == [("Bob ran home.", "Bob moved.", 0)]
    test = read_split("", spec, "test").examples
    assert [(e.text_a, e.label) for e in test] == [("The sun set.", None)]
    assert tfds_has_split(spec, "test")


@pytest.mark.parametrize("task", ["squad11", "squad20"])
def test_squad_from_tfds(tfds_env, task):
    spec = TASKS[task]
    examples = {e.qid: e for e in read_split("", spec, "dev").examples}
    assert examples["q1"].answers == (("The cat", 0),) and examples["q1"].context == CONTEXT
    assert examples["q2"].answers == (("Dogs", 24),) and not examples["q2"].is_impossible
    if task == "squad20":
        assert examples["q3"].is_impossible and examples["q3"].answers == ()
    else:
        assert "q3" not in examples
    # TFDS's SQuAD has no test split: the trainer's start-up asks before reading one.
    assert not tfds_has_split(spec, "test") and tfds_has_split(spec, "dev")


@pytest.mark.parametrize("task", ["squad20", "rte"])
def test_finetune_start_up_reads_tfds_without_a_data_dir(tfds_env, tmp_path, task):
    """The trainer's data loading with no data_dir: SQuAD gets no test set (TFDS has none)."""
    words = "the cat sat on mat . dogs bark at night who what flew a an animal it bob ran home"
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *words.split()]) + "\n")
    config = get_config(f"task={task},size=tiny")
    config.data_dir = ""
    spec = TASKS[task]
    train, evals, _ = load_task_data(config, spec, WordPieceTokenizer(str(vocab)))
    assert [e.name for e in evals] == {"squad20": ["dev"], "rte": ["dev", "test"]}[task]
    assert len(evals[0].examples) == {"squad20": 3, "rte": 1}[task]
