"""ExampleBuilder: layout, segment ids, truncation, rule frequencies, token coverage."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from electra_jax.data.example_builder import ExampleBuilder, make_example

CLS, SEP = 2, 3


class ScriptedRandom:
    """A `random.Random` stand-in that returns scripted draws, to drive each rule branch."""

    def __init__(self, draws: list[float], randints: list[int] | None = None):
        self.draws = list(draws)
        self.randints = list(randints or [])

    def random(self) -> float:
        return self.draws.pop(0)

    def randint(self, low: int, high: int) -> int:
        value = self.randints.pop(0)
        assert low <= value <= high
        return value


def builder(max_seq_len: int, rng) -> ExampleBuilder:
    return ExampleBuilder(max_seq_len=max_seq_len, cls_id=CLS, sep_id=SEP, rng=rng)


def test_layout_two_segments():
    ex = make_example([10, 11], [12], cls_id=CLS, sep_id=SEP, max_seq_len=8)
    np.testing.assert_array_equal(ex.input_ids, [CLS, 10, 11, SEP, 12, SEP, 0, 0])
    np.testing.assert_array_equal(ex.input_mask, [1, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(ex.segment_ids, [0, 0, 0, 0, 1, 1, 0, 0])
    assert all(a.dtype == np.int32 for a in (ex.input_ids, ex.input_mask, ex.segment_ids))


def test_layout_single_segment():
    ex = make_example([10, 11, 12], [], cls_id=CLS, sep_id=SEP, max_seq_len=6)
    np.testing.assert_array_equal(ex.input_ids, [CLS, 10, 11, 12, SEP, 0])
    np.testing.assert_array_equal(ex.segment_ids, [0, 0, 0, 0, 0, 0])


def test_sentence_overflowing_a_goes_to_b_and_b_is_truncated():
    # draws: 0.5 (two segments), 0.9 (overflow stays out of A), 0.9 (no short target)
    b = builder(16, ScriptedRandom([0.5, 0.9, 0.9]))
    assert b.add_sentence(list(range(100, 105))) is None  # 5 tokens < target 16
    ex = b.add_sentence(list(range(200, 220)))  # 25 tokens >= 16 -> example
    # first-segment target (16 - 3) // 2 = 6: A = 5 tokens, B = 20 tokens cut to 16 - 5 - 3 = 8
    assert ex.input_ids.tolist() == [CLS, *range(100, 105), SEP, *range(200, 208), SEP]
    assert ex.segment_ids.tolist() == [0] * 7 + [1] * 9
    assert ex.truncated_tokens == 12


def test_overflow_goes_to_a_with_probability_half_and_a_is_truncated():
    b = builder(16, ScriptedRandom([0.5, 0.1, 0.9]))  # 0.1 < 0.5: the overflow joins A
    b.add_sentence(list(range(100, 105)))
    ex = b.add_sentence(list(range(200, 220)))
    assert ex.input_ids.tolist() == [CLS, *range(100, 105), *range(200, 209), SEP]  # A: 16 - 2
    assert ex.segment_ids.tolist() == [0] * 16
    assert ex.truncated_tokens == 11


def test_single_segment_takes_everything_into_a():
    b = builder(32, ScriptedRandom([0.05, 0.9]))  # 0.05 < 0.1: one segment, no overflow draw
    for start in (100, 110, 120):
        assert b.add_sentence(list(range(start, start + 10))) is None
    ex = b.add_sentence([130, 131])  # 32 tokens
    assert ex.input_ids.tolist()[:3] == [CLS, 100, 101]
    assert ex.segment_ids.sum() == 0
    assert ex.input_mask.sum() == 32 and ex.truncated_tokens == 2  # A cut to 30


def test_document_boundary_flushes_and_short_target_applies_to_next_example():
    b = builder(32, ScriptedRandom([0.5, 0.01, 0.5, 0.9], randints=[7]))
    b.add_sentence([100, 101, 102])
    b.add_sentence([103, 104])
    ex = b.end_document()  # boundary: example from 5 tokens (all fit A's target of 14)
    assert ex.input_ids.tolist()[:8] == [CLS, 100, 101, 102, 103, 104, SEP, 0]
    assert b.target_length == 7  # 0.01 < 0.05: the next target is randint(5, 32) = 7
    assert b.end_document() is None  # nothing pending
    assert b.add_sentence([110, 111, 112]) is None
    ex = b.add_sentence([113, 114, 115, 116])  # 7 >= 7; A's target (7 - 3) // 2 = 2
    assert ex.input_ids.tolist()[:10] == [CLS, 110, 111, 112, SEP, 113, 114, 115, 116, SEP]
    assert b.target_length == 32


def test_a_fits_sentences_after_b_started_as_in_the_original():
    # target 32 -> first target 14: [10] A, [6] A (16 >= 14 and 0.9: B), [2] fits A (12 < 14)
    b = builder(32, ScriptedRandom([0.5, 0.9, 0.9]))
    b.add_sentence(list(range(100, 110)))
    b.add_sentence(list(range(200, 206)))
    b.add_sentence([300, 301])
    ex = b.add_sentence(list(range(400, 414)))  # 32 tokens; 12 + 14 overflows, B not empty
    a = [*range(100, 110), 300, 301]
    assert ex.input_ids.tolist()[: len(a) + 2] == [CLS, *a, SEP]


def _run_long_document(n_examples: int, max_seq_len: int, seed: int):
    rng = random.Random(seed)
    b = builder(max_seq_len, random.Random(seed + 1))
    examples, targets = [], []
    token = 1000
    while len(examples) < n_examples:
        length = rng.randint(1, 4)
        ex = b.add_sentence(list(range(token, token + length)))
        token += length
        if ex is not None:
            examples.append(ex)
            targets.append(b.target_length)
    return examples, targets


def test_single_segment_and_short_target_frequencies():
    # Sentences of 1-4 tokens in one endless document. In two-segment mode B never ends empty
    # (the pending tokens reach the target, more than A's (target - 3) // 2 can hold, A's own
    # overflow sentence is followed by more), so "no B" happens exactly with P = 0.1.
    # The next target is short with P = 0.05 * 27 / 28 (randint(5, 32) can also return 32).
    # n = 20,000 examples: binomial std sqrt(p (1 - p) / n) = 0.0021 (p = 0.1) and 0.0015
    # (p = 0.048); a 4-sigma tolerance is 0.0085 and 0.006 (the run is seeded, so not flaky).
    n, max_seq_len = 20_000, 32
    examples, targets = _run_long_document(n, max_seq_len, seed=0)
    single = np.mean([ex.segment_ids.sum() == 0 for ex in examples])
    short = np.mean([t < max_seq_len for t in targets])
    p_single, p_short = 0.1, 0.05 * 27 / 28
    assert abs(single - p_single) < 4 * math.sqrt(p_single * (1 - p_single) / n)
    assert abs(short - p_short) < 4 * math.sqrt(p_short * (1 - p_short) / n)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_token_lands_in_exactly_one_example_unless_truncated(seed):
    rng = random.Random(seed)
    b = builder(64, random.Random(seed))
    source, examples = [], []
    token = 1000  # unique ids: each source token is identifiable
    for _ in range(300):  # documents
        for _ in range(rng.randint(1, 20)):
            length = rng.randint(1, 12)
            sentence = list(range(token, token + length))
            token += length
            source += sentence
            ex = b.add_sentence(sentence)
            examples += [ex] if ex is not None else []
        ex = b.end_document()
        examples += [ex] if ex is not None else []
    emitted = [
        int(t) for ex in examples for t in ex.input_ids[ex.input_mask == 1] if t not in (CLS, SEP)
    ]
    assert len(emitted) == len(set(emitted)), "a token appears in two examples"
    assert set(emitted) <= set(source)
    truncated = sum(ex.truncated_tokens for ex in examples)
    assert len(source) - len(emitted) == truncated
    assert 0 < truncated < 0.2 * len(source)
    for ex in examples:
        n = int(ex.input_mask.sum())
        assert ex.input_ids[0] == CLS and ex.input_ids[n - 1] == SEP and n <= 64
        assert ex.input_mask[:n].all() and not ex.input_ids[n:].any()


def test_same_seed_same_examples():
    a, _ = _run_long_document(500, 48, seed=3)
    b, _ = _run_long_document(500, 48, seed=3)
    c, _ = _run_long_document(500, 48, seed=4)
    stack = lambda exs: np.stack([e.input_ids for e in exs])
    assert np.array_equal(stack(a), stack(b))
    assert not np.array_equal(stack(a), stack(c))
