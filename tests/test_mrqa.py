"""MRQA (newsqa, naturalqs, triviaqa, searchqa): the jsonl reader (header line, `qid`, detected
answers for training, `answers` strings for evaluation, the original's answer check), the MRQA
official evaluation (hand-computed EM / F1; unanswered questions skipped, unlike SQuAD v1.1's
script) through the trainer's scoring, the original's per-task settings, and a tiny fine-tune of
the built-in QA task end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from configs.finetune import get_config
from electra_jax.data.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer
from electra_jax.errors import UserError
from electra_jax.finetune import metrics
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.finetune.features import featurize_squad
from electra_jax.finetune.readers import read_mrqa_jsonl, read_split, split_path, split_words
from electra_jax.finetune.scoring import EvalSet, score_seed
from electra_jax.finetune.tasks import TASKS, get_task
from electra_jax.finetune.trainer import run

CONTEXT = "Super Bowl 50 was won by the Denver Broncos in 2016 at Levi's Stadium."


def mrqa_lines(detected: str = "denver Broncos", start: int = 29) -> list[dict]:
    """An MRQA file: the header line, then one context with two questions."""
    qas = [
        {"qid": "q1", "question": "Who won Super Bowl 50?",
         "answers": ["Denver Broncos", "Broncos"],
         "detected_answers": [{"text": detected, "char_spans": [[start, start + 13]]}]},
        {"qid": "q2", "question": "Where was it played?", "answers": ["Levi's Stadium"],
         "detected_answers": [{"text": "Levi's Stadium", "char_spans": [[55, 68]]}]},
    ]  # fmt: skip
    return [{"header": {"dataset": "NewsQA", "split": "train"}}, {"context": CONTEXT, "qas": qas}]


def write_jsonl(path, lines) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_reader_takes_detected_answers_to_train_and_answer_strings_to_score(tmp_path):
    path = write_jsonl(tmp_path / "newsqa" / "train.jsonl", mrqa_lines())
    assert split_path(str(tmp_path), get_task("newsqa"), "train") == path
    train = read_split(str(tmp_path), get_task("newsqa"), "train").examples
    # The detected text differs in case from the context: the original's check lower-cases.
    assert [(e.qid, e.answers, e.is_impossible) for e in train] == [
        ("q1", (("denver Broncos", 29),), False), ("q2", (("Levi's Stadium", 55),), False)
    ]  # fmt: skip
    assert train[0].context == CONTEXT and train[0].question == "Who won Super Bowl 50?"
    dev = read_mrqa_jsonl(path, is_training=False).examples
    assert [e.answers for e in dev] == [(("Denver Broncos", -1), ("Broncos", -1)),
                                        (("Levi's Stadium", -1),)]  # fmt: skip


def test_reader_refuses_an_answer_the_original_would_drop(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", mrqa_lines(detected="Denver Nuggets"))
    with pytest.raises(UserError, match=r"train.jsonl:2: qas\[0\]: answer 'Denver Nuggets'"):
        read_mrqa_jsonl(path, is_training=True)
    result = read_mrqa_jsonl(path, is_training=True, skip_malformed=True)
    assert [e.qid for e in result.examples] == ["q2"] and result.skipped == 1
    path = write_jsonl(tmp_path / "bad.jsonl", [{"context": CONTEXT, "qas": [{"qid": "x"}]}])
    with pytest.raises(UserError, match="'qid' and 'question'"):
        read_mrqa_jsonl(path)
    (tmp_path / "broken.jsonl").write_text('{"header": {}}\n{"context": \n')
    with pytest.raises(UserError, match=r"broken.jsonl:2: not valid JSON"):
        read_mrqa_jsonl(str(tmp_path / "broken.jsonl"))


def test_context_words_split_at_the_originals_whitespace_only():
    # qa_tasks.is_whitespace: space, tab, CR, LF and U+202F; a no-break space (U+00A0) or an
    # ideographic space (U+3000) stays inside its word, as there.
    words, char_to_word = split_words("a\xa0b  c\u3000d\u202fe")
    assert words == ["a\xa0b", "c\u3000d", "e"]
    assert char_to_word == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]


def test_mrqa_evaluation_by_hand():
    golds = {"q1": ["Denver Broncos", "Broncos"], "q2": ["Levi's Stadium"], "q3": ["2016"]}
    predictions = {"q1": "the Broncos", "q2": "Stadium in Santa Clara"}  # q3 unanswered
    # q1: "broncos" == "broncos" (article dropped): EM 1, F1 1. q2: [stadium, in, santa, clara]
    # vs [levis, stadium]: 1 common, P 1/4, R 1/2, F1 1/3. The MRQA script skips q3 (2 scored);
    # SQuAD v1.1's counts it as 0 (3 scored).
    mrqa = metrics.squad_scores(predictions, golds, v2=False, mrqa=True)
    assert mrqa["exact_match"] == mrqa["exact"] == pytest.approx(50.0)
    assert mrqa["f1"] == pytest.approx(100.0 * (1 + 1 / 3) / 2)
    v1 = metrics.squad_scores(predictions, golds, v2=False)
    assert v1["exact_match"] == pytest.approx(100.0 / 3)
    assert v1["f1"] == pytest.approx(100.0 * (1 + 1 / 3) / 3)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("mrqa_vocab") / "vocab.txt"
    words = "super bowl 50 was won by the denver broncos in 2016 at levi ' s stadium . who where"
    path.write_text("\n".join([*SPECIAL_TOKENS, *words.split()]) + "\n", encoding="utf-8")
    return WordPieceTokenizer(str(path))


def test_trainer_scores_mrqa_dev_sets_with_the_mrqa_script(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "dev.jsonl", mrqa_lines())
    examples = read_mrqa_jsonl(path).examples
    arrays, windows = featurize_squad(examples, tokenizer, 64)
    # One window per question; point its beam at words 6-8 ("the Denver Broncos") for q1 and
    # 11-13 ("at Levi's Stadium.") for q2.
    spans = []
    for meta, (first, last) in zip(windows, [(6, 8), (11, 13)], strict=True):
        at = {w: [p for p, word in meta.token_to_word.items() if word == w] for w in (first, last)}
        spans.append((min(at[first]), max(at[last])))
    out = {
        "start_top_index": np.array([[s] for s, _ in spans]),
        "start_top_log_probs": np.zeros((2, 1), np.float32),
        "end_top_index": np.array([[[e]] for _, e in spans]),
        "end_top_log_probs": np.zeros((2, 1, 1), np.float32),
        "answerable_logit": np.zeros(2, np.float32),
    }
    eval_set = EvalSet("dev", arrays, windows, examples, "dev_predictions.json")
    config = get_config("task=newsqa,size=small")
    scores, (answers, _) = score_seed(config, TASKS["newsqa"], eval_set, out, tokenizer)
    assert answers == {"q1": "the Denver Broncos", "q2": "at Levi's Stadium."}
    # q1: EM 1, F1 1; q2: "at levis stadium" vs "levis stadium": EM 0, P 2/3, R 1, F1 0.8.
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["score"] == scores["f1"] == pytest.approx(90.0)


def test_the_originals_mrqa_settings():
    for task in ("newsqa", "triviaqa", "searchqa"):
        config = get_config(f"task={task},size=small")
        assert (config.max_seq_len, config.num_epochs) == (512, 2.0)
        assert not TASKS[task].squad_v2 and TASKS[task].file_ext == "jsonl"
    # The original's config keys its QA settings on "qa" in the task name: not in naturalqs.
    config = get_config("task=naturalqs,size=small")
    assert (config.max_seq_len, config.num_epochs) == (128, 3.0)


def test_tiny_fine_tune_on_builtin_qa_task(tmp_path, builtin_data_dir):
    cache = os.path.dirname(builtin_data_dir)  # small: eval time is most of the test's
    data_dir = ensure_builtin_tasks(train=300, dev=60, test=10, cache_dir=cache)
    config = get_config("task=builtin_phrase,size=tiny")
    config.update(vocab_dir=builtin_data_dir, data_dir=data_dir, max_seq_len=64, batch_size=16,
                  max_train_examples=96, num_epochs=1.0, log_every=1000)  # fmt: skip
    config.squad.update(doc_stride=32, n_best=4)
    results = run(config, str(tmp_path))
    median = results["dev"]["dev"]["median"]
    assert 0.0 <= median["exact_match"] <= median["f1"] <= 100.0
    predictions = json.loads((tmp_path / "predictions" / "dev_predictions.json").read_text())
    assert len(predictions) == 60 and all(isinstance(v, str) for v in predictions.values())
