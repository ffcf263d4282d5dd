"""Tagging (chunk, ner, builtin_code): the original's span extraction and span F1
(`tagging_utils.get_span_labels`, `tagging_metrics.EntityLevelF1Scorer`; expected values worked
by hand from their definitions), BIOES labels, word-piece alignment and truncation
(`tagging_tasks.py`'s featurize), the CoNLL reader, the loss, and a tiny fine-tune end to end."""

from __future__ import annotations

import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from configs.finetune import get_config
from electra_jax.data.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer
from electra_jax.errors import UserError
from electra_jax.finetune.builtin_tasks import code_tags, ensure_builtin_tasks
from electra_jax.finetune.features import encode_tagging
from electra_jax.finetune.heads import task_loss
from electra_jax.finetune.metrics import bioes_tags, span_f1, span_labels, tagging_scores
from electra_jax.finetune.readers import TaggingExample, read_conll, with_tagging_labels
from electra_jax.finetune.tasks import TASKS, get_task
from electra_jax.finetune.trainer import run


def test_span_labels_follow_the_originals_rules():
    # Walked through get_span_labels by hand: O closes (0, 1, NP); B-VP opens at 3 and nothing
    # closes it until S-X (I- and E- never close), the type being the last tag's (I-NP: NP);
    # S-X is one word; an I- tag after O opens a span.
    tags = ["B-NP", "I-NP", "O", "B-VP", "I-PP", "E-NP", "I-NP", "S-X", "O", "I-ADJP"]
    assert span_labels(tags) == [(0, 1, "NP"), (3, 6, "NP"), (7, 7, "X"), (9, 9, "ADJP")]
    assert span_labels(["B-NP", "B-NP", "I-NP"]) == [(0, 0, "NP"), (1, 2, "NP")]
    assert span_labels(["O", "O"]) == [] and span_labels([]) == []


def test_bioes_labels_as_get_tags():
    spans = [(0, 1, "NP"), (3, 3, "VP"), (5, 8, "PP")]
    assert bioes_tags(spans, 9) == [
        "B-NP", "E-NP", "O", "S-VP", "O", "B-PP", "I-PP", "I-PP", "E-PP",
    ]  # fmt: skip
    # IOB2 in, BIOES out, the same spans back.
    iob = ["B-NP", "I-NP", "B-NP", "O", "B-VP"]
    assert bioes_tags(span_labels(iob), 5) == ["B-NP", "E-NP", "S-NP", "O", "S-VP"]


def test_span_f1_by_hand():
    gold = [["B-NP", "I-NP", "O", "B-VP"], ["O", "B-PP"]]
    pred = [["B-NP", "I-NP", "O", "B-NP"], ["B-PP", "B-PP"]]
    # Sentence 1: gold {(0,1,NP), (3,3,VP)}, predicted {(0,1,NP), (3,3,NP)}: 1 right.
    # Sentence 2: gold {(1,1,PP)}, predicted {(0,0,PP), (1,1,PP)}: 1 right.
    # P = 2/4, R = 2/3, F1 = 2PR / (P + R) = 4/7.
    scores = span_f1(gold, pred)
    assert scores["precision"] == pytest.approx(50.0)
    assert scores["recall"] == pytest.approx(200.0 / 3.0)
    assert scores["f1"] == pytest.approx(400.0 / 7.0)
    assert span_f1([["B-NP"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_tagging_scores_read_ids_up_to_each_sentences_word_count():
    names = ("B-NP", "E-NP", "O", "S-VP")
    labels = np.array([[0, 1, 3, 3], [3, 2, 0, 0]])
    preds = np.array([[0, 1, 2, 3], [3, 2, 3, 3]])  # row 2's last two words are cut: not scored
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
    # Row 1 (3 words): gold {(0,1,NP), (2,2,VP)}, predicted {(0,1,NP)}; row 2: {(0,0,VP)} both.
    scores = tagging_scores(labels, preds, mask, names)
    assert scores["precision"] == pytest.approx(100.0)
    assert scores["recall"] == pytest.approx(200.0 / 3.0)
    assert scores["score"] == scores["f1"] == pytest.approx(80.0)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tagging_vocab") / "vocab.txt"
    vocab = [*SPECIAL_TOKENS, "the", "un", "##aff", "##able", "cat", "runs", "."]
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return WordPieceTokenizer(str(path))


def test_labels_sit_on_each_words_first_piece(tokenizer):
    ids = lambda *tokens: [tokenizer.encode(t)[0] for t in tokens]  # noqa: E731
    sentence = TaggingExample("s", ("The", "unaffable", "cat", "runs."),
                              ("B-NP", "I-NP", "I-NP", "B-VP"))  # fmt: skip
    labels = ("B-NP", "E-NP", "I-NP", "O", "S-VP")
    a = encode_tagging([sentence], tokenizer, 13, labels)
    # [CLS] the un ##aff ##able cat runs . [SEP]: words start at 1, 2, 5, 6.
    expected = [tokenizer.cls_id, *ids("the", "un"), *tokenizer.encode("unaffable")[1:],
                *ids("cat", "runs", "."), tokenizer.sep_id]  # fmt: skip
    assert a["input_ids"][0, :9].tolist() == expected and a["input_ids"][0, 9:].sum() == 0
    assert a["segment_ids"][0].tolist() == [1] * 9 + [0] * 4  # the original: all 1
    assert a["input_mask"][0].tolist() == [1] * 9 + [0] * 4
    assert a["labeled_positions"][0, :4].tolist() == [1, 2, 5, 6]
    # Labels by word, as BIOES: B-NP I-NP E-NP S-VP.
    assert a["labels"][0, :4].tolist() == [0, 2, 1, 4]
    assert a["labels_mask"][0].tolist() == [1.0] * 4 + [0.0] * 9


@pytest.mark.parametrize(
    ("max_seq_len", "kept_words", "length"),
    # The original keeps a word while words + 3 + pieces so far <= max_seq_len (4 words; pieces
    # so far before each: 1, 2, 5, 6): at 10 only two words fit although all 9 tokens would.
    [(10, 2, 6), (12, 3, 7), (13, 4, 9)],
)
def test_truncation_follows_the_originals_test(tokenizer, max_seq_len, kept_words, length):
    sentence = TaggingExample("s", ("the", "unaffable", "cat", "runs."), ("O",) * 4)
    a = encode_tagging([sentence], tokenizer, max_seq_len, ("O",))
    assert int(a["labels_mask"][0].sum()) == kept_words
    assert int(a["input_mask"][0].sum()) == length
    assert a["input_ids"][0, length - 1] == tokenizer.sep_id


CONLL = """-DOCSTART- -X- -X- O

Confidence NN B-NP
in IN B-PP
the DT B-NP
pound NN I-NP


Chancellor NNP O
of IN B-PP
"""  # two blank lines, and no blank line after the last sentence


def test_conll_reader_round_trip_and_label_set(tmp_path):
    folder = tmp_path / "chunk"
    folder.mkdir()
    (folder / "train.txt").write_text(CONLL)
    (folder / "dev.txt").write_text("Rates NNS B-NP\nrose VBD B-VP\n\n")
    examples = read_conll(str(folder / "train.txt")).examples
    assert [e.words for e in examples] == [("Confidence", "in", "the", "pound"),
                                           ("Chancellor", "of")]  # fmt: skip
    assert examples[0].tags == ("B-NP", "B-PP", "B-NP", "I-NP")
    spec = with_tagging_labels(get_task("chunk"), str(tmp_path))
    # BIOES tags of train and dev, sorted: the original's label mapping.
    assert spec.labels == ("B-NP", "E-NP", "O", "S-NP", "S-PP", "S-VP")
    assert TASKS["chunk"].labels == ()  # the registry is left alone


def test_conll_reader_names_a_bad_tag_and_can_skip_it(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a NN B-NP\nb NN B-I-NP\n\nc NN O\n\nd\n")
    with pytest.raises(UserError, match=r"train.txt:1: line 2: tag 'B-I-NP'"):
        read_conll(str(path))
    result = read_conll(str(path), skip_malformed=True)
    assert [e.words for e in result.examples] == [("c",)] and result.skipped == 2
    with pytest.raises(UserError, match="does not exist"):
        read_conll(str(tmp_path / "missing.txt"), missing_hint="put it there")


def test_tagging_loss_sums_each_sentences_words():
    K = 5
    batch = {"labels": jnp.array([[1, 2, 0], [3, 0, 0]]),
             "labels_mask": jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])}  # fmt: skip
    outputs = {"logits": jnp.zeros((2, 3, K))}  # uniform: each word's loss is log K
    assert float(task_loss(outputs, batch, "tagging")) == pytest.approx(3 * math.log(K))
    mean = task_loss(outputs, batch, "tagging", reduction="mean")
    assert float(mean) == pytest.approx(1.5 * math.log(K))


def test_builtin_code_tags_code_words_and_numbers():
    words = ["call", "os.path.join(a,", "b_c)", "with", "__init__", "3", "2", "times"]
    assert code_tags(words) == ["O", "B-CODE", "I-CODE", "O", "B-CODE", "B-NUM", "I-NUM", "O"]
    assert get_config("task=chunk,size=small").max_seq_len == 256  # the original's chunk
    assert get_config("task=ner,size=small").max_seq_len == 256 and TASKS["ner"].file_ext == "txt"


def test_tiny_fine_tune_on_builtin_tagging_task(tmp_path, builtin_data_dir):
    cache = os.path.dirname(builtin_data_dir)  # small: eval time is most of the test's
    data_dir = ensure_builtin_tasks(train=300, dev=60, test=10, cache_dir=cache)
    config = get_config("task=builtin_code,size=tiny")
    config.update(vocab_dir=builtin_data_dir, data_dir=data_dir, max_seq_len=64, batch_size=16,
                  max_train_examples=96, num_epochs=2.0, log_every=1000)  # fmt: skip
    results = run(config, str(tmp_path))
    assert results["num_train_steps"] == 12
    median = results["dev"]["dev"]["median"]
    assert set(median) >= {"precision", "recall", "f1", "score", "train_loss"}
    assert 0.0 <= median["f1"] <= 100.0 and np.isfinite(median["train_loss"])
