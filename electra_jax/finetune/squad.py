"""SQuAD featurisation (doc-stride windows, answer-span mapping) and answer decoding.

Follows the original (BERT's run_squad, ELECTRA's qa_tasks): the context is split on
whitespace into words, each word into sub-words; a window is [CLS] question [SEP] context-part
[SEP] with the question cut to `max_query_len` tokens and windows `doc_stride` tokens apart. A
training answer is mapped to sub-word positions (tightened to the answer's own tokenisation);
a window that does not contain it, or an impossible question, points at [CLS] (position 0) and
is a "no answer" window for the answerability classifier. Decoding takes the top-k starts and
the top-k ends per start over every window (n-best 20, answers at most 30 tokens, only from a
window where the start token has its maximal context), then maps the sub-word span back to the
original characters.
"""

from __future__ import annotations

import dataclasses
import unicodedata

import numpy as np

from electra_jax.data.tokenizer import Tokenizer
from electra_jax.finetune.readers import SquadExample


@dataclasses.dataclass
class WindowMeta:
    """What decoding needs about one window: its example and the token -> word map."""

    example_index: int
    token_to_word: dict[int, int]
    token_is_max_context: dict[int, bool]


def split_words(context: str) -> tuple[list[str], list[int]]:
    """Whitespace words and, for each character, the index of the word it belongs to."""
    words: list[str] = []
    char_to_word: list[int] = []
    previous_space = True
    for ch in context:
        if ch.isspace() or ord(ch) in (0x202F,):
            previous_space = True
        else:
            if previous_space:
                words.append(ch)
            else:
                words[-1] += ch
            previous_space = False
        char_to_word.append(max(len(words) - 1, 0))
    return words, char_to_word


def _improve_span(
    doc_ids: list[int], start: int, end: int, tokenizer: Tokenizer, answer: str
) -> tuple[int, int]:
    """The tightest sub-span whose tokens equal the answer's own tokenisation."""
    answer_ids = tokenizer.encode(answer)
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if doc_ids[new_start : new_end + 1] == answer_ids:
                return new_start, new_end
    return start, end


def _max_context(spans: list[tuple[int, int]], span_index: int, position: int) -> bool:
    """Whether `position` has more context in this window than in any other (the original's)."""
    best_score, best_index = None, None
    for index, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return best_index == span_index


def featurize(
    examples: list[SquadExample],
    tokenizer: Tokenizer,
    max_seq_len: int,
    doc_stride: int = 128,
    max_query_len: int = 64,
    is_training: bool = False,
) -> tuple[dict[str, np.ndarray], list[WindowMeta]]:
    """Examples -> window arrays (inputs, answer mask, targets) and per-window metadata."""
    rows: list[dict] = []
    metas: list[WindowMeta] = []
    questions = tokenizer.encode_batch([e.question for e in examples])
    for example_index, example in enumerate(examples):
        query = questions[example_index][:max_query_len]
        words, char_to_word = split_words(example.context)
        word_ids = tokenizer.encode_batch(words) if words else []
        token_to_word_all, word_to_token, doc_ids = [], [], []
        for w, ids in enumerate(word_ids):
            word_to_token.append(len(doc_ids))
            token_to_word_all.extend([w] * len(ids))
            doc_ids.extend(ids)
        answer_start = answer_end = None
        if is_training and example.answers and not example.is_impossible:
            text, char_start = example.answers[0]
            first_word = char_to_word[char_start]
            last_word = char_to_word[char_start + len(text) - 1]
            answer_start = word_to_token[first_word]
            next_word = last_word + 1
            answer_end = (word_to_token[next_word] if next_word < len(words) else len(doc_ids)) - 1
            answer_start, answer_end = _improve_span(doc_ids, answer_start, answer_end,
                                                     tokenizer, text)  # fmt: skip
        room = max_seq_len - len(query) - 3
        spans: list[tuple[int, int]] = []
        offset = 0
        while offset < len(doc_ids) or not spans:
            length = min(len(doc_ids) - offset, room)
            spans.append((offset, length))
            if offset + length >= len(doc_ids):
                break
            offset += min(length, doc_stride)
        for span_index, (span_start, length) in enumerate(spans):
            ids = [tokenizer.cls_id, *query, tokenizer.sep_id]
            context_offset = len(ids)
            ids += doc_ids[span_start : span_start + length] + [tokenizer.sep_id]
            segments = [0] * context_offset + [1] * (length + 1)
            token_to_word = {context_offset + i: token_to_word_all[span_start + i]
                             for i in range(length)}  # fmt: skip
            is_max = {context_offset + i: _max_context(spans, span_index, span_start + i)
                      for i in range(length)}  # fmt: skip
            start = end = 0
            if (
                answer_start is not None
                and span_start <= answer_start
                and (answer_end < span_start + length)
            ):
                start = answer_start - span_start + context_offset
                end = answer_end - span_start + context_offset
            rows.append({"ids": ids, "segments": segments, "start": start, "end": end,
                         "impossible": int(start == 0)})  # fmt: skip
            metas.append(WindowMeta(example_index, token_to_word, is_max))
    N, L = len(rows), max_seq_len
    arrays = {
        "input_ids": np.full((N, L), tokenizer.pad_id, np.int32),
        "input_mask": np.zeros((N, L), np.int32),
        "segment_ids": np.zeros((N, L), np.int32),
        "start_positions": np.array([r["start"] for r in rows], np.int32),
        "end_positions": np.array([r["end"] for r in rows], np.int32),
        "is_impossible": np.array([r["impossible"] for r in rows], np.int32),
    }
    for i, row in enumerate(rows):
        n = len(row["ids"])
        arrays["input_ids"][i, :n] = row["ids"]
        arrays["input_mask"][i, :n] = 1
        arrays["segment_ids"][i, :n] = row["segments"]
    mask = arrays["input_mask"] * arrays["segment_ids"]
    mask[:, 0] = 1
    arrays["answer_mask"] = mask
    return arrays, metas


def _normalised_chars(text: str) -> tuple[str, list[int]]:
    """Lower-cased, accent-stripped, space-free characters and each one's index in `text`."""
    chars, index = [], []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        for c in unicodedata.normalize("NFD", ch.lower()):
            if unicodedata.category(c) != "Mn":
                chars.append(c)
                index.append(i)
    return "".join(chars), index


def final_text(predicted: str, original: str) -> str:
    """Cuts the original words' text down to the predicted sub-word text (BERT's
    `get_final_text` idea): the words may carry punctuation that the sub-words do not."""
    pred, _ = _normalised_chars(predicted)
    orig, index = _normalised_chars(original)
    at = orig.find(pred) if pred else -1
    if at < 0:
        return original
    return original[index[at] : index[at + len(pred) - 1] + 1]


def decode_answers(
    examples: list[SquadExample],
    metas: list[WindowMeta],
    outputs: dict[str, np.ndarray],
    tokenizer: Tokenizer,
    input_ids: np.ndarray,
    max_answer_len: int = 30,
    n_best: int = 20,
) -> tuple[dict[str, str], dict[str, float], dict[str, list[dict]]]:
    """Best answer text per question, its no-answer score (the lowest answerable logit over
    windows, or -inf without a classifier), and the n-best lists."""
    candidates: list[list[tuple[float, int, int, int]]] = [[] for _ in examples]
    null_scores = [float("inf")] * len(examples)
    K = outputs["start_top_index"].shape[-1]
    for w, meta in enumerate(metas):
        e = meta.example_index
        if "answerable_logit" in outputs:
            null_scores[e] = min(null_scores[e], float(outputs["answerable_logit"][w]))
        for i in range(K):
            start = int(outputs["start_top_index"][w, i])
            for j in range(K):
                end = int(outputs["end_top_index"][w, i, j])
                if start not in meta.token_to_word or end not in meta.token_to_word:
                    continue
                if not meta.token_is_max_context.get(start, False) or end < start:
                    continue
                if end - start + 1 > max_answer_len:
                    continue
                score = float(outputs["start_top_log_probs"][w, i]) + float(
                    outputs["end_top_log_probs"][w, i, j]
                )
                candidates[e].append((score, w, start, end))
    predictions, nbest = {}, {}
    for e, example in enumerate(examples):
        words, _ = split_words(example.context)
        ranked = sorted(set(candidates[e]), reverse=True)[:n_best]
        entries = []
        for score, w, start, end in ranked:
            first, last = metas[w].token_to_word[start], metas[w].token_to_word[end]
            predicted = tokenizer.decode([int(t) for t in input_ids[w, start : end + 1]])
            text = final_text(predicted.replace(" ##", "").replace("##", ""),
                              " ".join(words[first : last + 1]))  # fmt: skip
            entries.append({"text": text, "score": score})
        predictions[example.qid] = entries[0]["text"] if entries else ""
        nbest[example.qid] = entries
    nulls = {ex.qid: (s if s != float("inf") else float("-inf")) for ex, s in
             zip(examples, null_scores, strict=True)}  # fmt: skip
    return predictions, nulls, nbest
