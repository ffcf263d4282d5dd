"""Featurization as the original's (GLUE, the longer segment truncated first; SQuAD doc-stride
windows, docs/spec.md §5.5; tagging, each word's label on its first word piece) and SQuAD answer
decoding (starts where they have maximal context)."""

import dataclasses
import itertools
import unicodedata

import numpy as np

from electra_jax.data.tokenizer import Tokenizer
from electra_jax.finetune.metrics import bioes_tags, span_labels
from electra_jax.finetune.readers import Example, SquadExample, TaggingExample, split_words


def double_unordered(examples: list[Example]) -> list[Example]:
    """Adds (B, A) after each (A, B): `double_unordered` for MRPC and STS-B (docs/spec.md §5.4)."""
    swap = lambda e: Example(e.guid + "-swap", e.text_b, e.text_a, e.label)
    return [x for e in examples for x in ([e] if e.text_b is None else [e, swap(e)])]


def truncate_pair(ids_a: list[int], ids_b: list[int], max_tokens: int) -> None:
    """Pops tokens from the end of the longer segment until both fit (the original's rule)."""
    while len(ids_a) + len(ids_b) > max_tokens:
        (ids_a if len(ids_a) > len(ids_b) else ids_b).pop()


def pad_rows(rows: list[tuple[list[int], list[int]]], max_seq_len: int, pad_id: int) -> dict:
    N, L = len(rows), max_seq_len
    arrays = {"input_ids": np.full((N, L), pad_id, np.int32)}
    arrays["input_mask"], arrays["segment_ids"] = np.zeros((2, N, L), np.int32)
    for i, (ids, segments) in enumerate(rows):
        arrays["input_ids"][i, : len(ids)] = ids
        arrays["input_mask"][i, : len(ids)] = 1
        arrays["segment_ids"][i, : len(ids)] = segments
    return arrays


def encode_examples(
    examples: list[Example], tokenizer: Tokenizer, max_seq_len: int, regression: bool = False
) -> dict[str, np.ndarray]:
    """Examples -> padded arrays; labels of test examples (None) become 0."""
    encoded_a = tokenizer.encode_batch([e.text_a for e in examples])
    pairs = [i for i, e in enumerate(examples) if e.text_b is not None]
    encoded_b = dict(zip(pairs, tokenizer.encode_batch([examples[i].text_b for i in pairs]),
                         strict=True))  # fmt: skip
    rows = []
    for i, a in enumerate(encoded_a):
        ids_a, ids_b = list(a), list(encoded_b.get(i, []))
        truncate_pair(ids_a, ids_b, max_seq_len - (3 if i in encoded_b else 2))
        second = [*ids_b, tokenizer.sep_id] if i in encoded_b else []
        rows.append(([tokenizer.cls_id, *ids_a, tokenizer.sep_id, *second],
                     [0] * (len(ids_a) + 2) + [1] * len(second)))  # fmt: skip
    arrays = pad_rows(rows, max_seq_len, tokenizer.pad_id)
    labels = [0 if e.label is None else e.label for e in examples]
    arrays["labels"] = np.array(labels, np.float32 if regression else np.int32)
    return arrays


def encode_tagging(
    examples: list[TaggingExample], tokenizer: Tokenizer, max_seq_len: int, labels: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Sentences -> the original's tagging features: [CLS] word pieces [SEP], every segment id 1;
    `labeled_positions` [N, L] the first piece of each kept word, `labels` its BIOES tag's id in
    `labels` (by word), `labels_mask` 1 for kept words. Words are kept while the original's test,
    words + 3 + pieces so far <= max_seq_len, holds; the rest are cut (and left out of scoring)."""
    N, L = len(examples), max_seq_len
    pieces = iter(tokenizer.encode_batch([w for e in examples for w in e.words]))
    rows, label_id = [], {tag: i for i, tag in enumerate(labels)}
    arrays = {k: np.zeros((N, L), np.int32) for k in ("labels", "labeled_positions")}
    arrays["labels_mask"] = np.zeros((N, L), np.float32)
    for i, example in enumerate(examples):
        n, ids, positions = len(example.words), [], []
        words = [[tokenizer.cls_id], *(next(pieces) for _ in example.words), [tokenizer.sep_id]]
        for k, word_ids in enumerate(words):
            if n + 2 + len(ids) + 1 > L:  # tagging_tasks.py's featurize
                ids.append(tokenizer.sep_id)
                break
            if 0 < k <= n:
                positions.append(len(ids))
            ids.extend(word_ids[: L - 1 - len(ids)])  # cuts only where the original fails
        rows.append((ids, [1] * len(ids)))
        tags = bioes_tags(span_labels(list(example.tags)), n)[:L]
        arrays["labels"][i, : len(tags)] = [label_id[t] for t in tags]
        arrays["labeled_positions"][i, : len(positions)] = positions
        arrays["labels_mask"][i, : len(positions)] = 1.0
    return {**pad_rows(rows, max_seq_len, tokenizer.pad_id), **arrays}


@dataclasses.dataclass
class WindowMeta:
    example_index: int
    token_to_word: dict[int, int]
    token_is_max_context: dict[int, bool]


def _max_context(spans: list[tuple[int, int]], span_index: int, position: int) -> bool:
    """Whether `position` has more context in this window than in any other (the original's)."""
    score = lambda s, n: (
        min(position - s, s + n - 1 - position) + 0.01 * n if s <= position < s + n else -1
    )
    scores = [score(start, length) for start, length in spans]
    return scores.index(max(scores)) == span_index


def _context_tokens(example: SquadExample, tokenizer: Tokenizer, is_training: bool) -> tuple:
    """(context sub-word ids, each one's word, the first answer's (first, last) sub-word when
    training, tightened to the answer's own tokenization as the original does, else None)."""
    words, char_to_word = split_words(example.context)
    word_to_token, token_to_word, doc_ids = [], [], []
    for w, ids in enumerate(tokenizer.encode_batch(words) if words else []):
        word_to_token.append(len(doc_ids))
        token_to_word.extend([w] * len(ids))
        doc_ids.extend(ids)
    if not is_training or not example.answers or example.is_impossible:
        return doc_ids, token_to_word, None
    text, char_start = example.answers[0]
    start = word_to_token[char_to_word[char_start]]
    next_word = char_to_word[char_start + len(text) - 1] + 1
    end = (word_to_token[next_word] if next_word < len(word_to_token) else len(doc_ids)) - 1
    answer_ids = tokenizer.encode(text)
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if doc_ids[new_start : new_end + 1] == answer_ids:
                return doc_ids, token_to_word, (new_start, new_end)
    return doc_ids, token_to_word, (start, end)


def featurize_squad(
    examples: list[SquadExample], tokenizer: Tokenizer, max_seq_len: int, doc_stride: int = 128,
    max_query_len: int = 64, is_training: bool = False, missed_answer_is_impossible: bool = False,
) -> tuple[dict[str, np.ndarray], list[WindowMeta]]:  # fmt: skip
    """Examples -> window arrays (inputs, answer mask, targets) and per-window metadata. A window
    that misses the answer points at [CLS]; its `is_impossible` is the question's (the original:
    0 for an answerable question), or 1 with `missed_answer_is_impossible`."""
    rows, targets, metas = [], [], []  # per window: (ids, segments), (start, end), WindowMeta
    impossible = []  # per window: the answerability label
    questions = tokenizer.encode_batch([e.question for e in examples])
    for example_index, example in enumerate(examples):
        query = questions[example_index][:max_query_len]
        doc_ids, token_to_word_all, answer = _context_tokens(example, tokenizer, is_training)
        room = max_seq_len - len(query) - 3  # windows start `stride` tokens apart
        stride, n = min(room, doc_stride), len(doc_ids)
        spans = [(o, min(n - o, room)) for o in range(0, max(n - room, 0) + stride, stride)]
        for span_index, (span_start, length) in enumerate(spans):
            context_offset = len(query) + 2  # after [CLS] question [SEP]
            shift = context_offset - span_start  # context token t sits at position t + shift
            ids = [tokenizer.cls_id, *query, tokenizer.sep_id,
                   *doc_ids[span_start : span_start + length], tokenizer.sep_id]  # fmt: skip
            rows.append((ids, [0] * context_offset + [1] * (length + 1)))
            at = range(context_offset, context_offset + length)
            token_to_word = {p: token_to_word_all[p - shift] for p in at}
            is_max = {p: _max_context(spans, span_index, p - shift) for p in at}
            metas.append(WindowMeta(example_index, token_to_word, is_max))
            inside = answer and span_start <= answer[0] and answer[1] < span_start + length
            targets.append((answer[0] + shift, answer[1] + shift) if inside else (0, 0))
            missed = missed_answer_is_impossible and not inside
            impossible.append(int(example.is_impossible or missed))
    arrays = pad_rows(rows, max_seq_len, tokenizer.pad_id)
    arrays["start_positions"] = np.array([s for s, _ in targets], np.int32)
    arrays["end_positions"] = np.array([e for _, e in targets], np.int32)
    arrays["is_impossible"] = np.array(impossible, np.int32)
    arrays["answer_mask"] = arrays["input_mask"] * arrays["segment_ids"]
    arrays["answer_mask"][:, 0] = 1  # context tokens and [CLS] (no answer)
    return arrays, metas


def _normalized_chars(text: str) -> tuple[str, list[int]]:
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
    """The original words' text cut to the predicted sub-word text (BERT's `get_final_text` idea:
    words carry punctuation), its end extended over combining marks (NFD accents) that follow."""
    pred, _ = _normalized_chars(predicted)
    orig, index = _normalized_chars(original)
    at = orig.find(pred) if pred else -1
    if at < 0:
        return original
    end = index[at + len(pred) - 1] + 1
    while end < len(original) and unicodedata.category(original[end]) == "Mn":
        end += 1
    return original[index[at] : end]


def _beams(outputs: dict[str, np.ndarray], n_best: int) -> tuple[np.ndarray, ...]:
    """(start index [N, K], start score, end index [N, K, K], end score): the joint head's beam,
    or (`joint_prediction=False`) the top n_best starts and ends by logit, each end with each
    start, scored by the logits themselves (the original's `_get_best_indexes`)."""
    if "start_top_index" in outputs:
        keys = ("start_top_index", "start_top_log_probs", "end_top_index", "end_top_log_probs")
        return tuple(np.asarray(outputs[k]) for k in keys)
    top = lambda logits_NxL: np.argsort(-logits_NxL, axis=-1, kind="stable")[:, :n_best]
    start_logits, end_logits = (np.asarray(outputs[k]) for k in ("start_logits", "end_logits"))
    start_NxK, end_NxK = top(start_logits), top(end_logits)
    K = start_NxK.shape[1]
    tile = lambda x_NxK: np.broadcast_to(x_NxK[:, None], (len(x_NxK), K, x_NxK.shape[1]))
    start_scores = np.take_along_axis(start_logits, start_NxK, -1)
    end_scores = np.take_along_axis(end_logits, end_NxK, -1)
    return start_NxK, start_scores, tile(end_NxK), tile(end_scores)


def _window_null_scores(outputs: dict[str, np.ndarray], num_windows: int) -> np.ndarray | None:
    """Each window's null score: the answerable logit (`answerable_classifier`), else the
    original's start + end logit at [CLS] (the joint head's end logits are 0 there); None when
    the outputs carry neither."""
    if "answerable_logit" in outputs:
        return np.asarray(outputs["answerable_logit"], np.float64)
    if "start_logits" not in outputs:
        return None
    null_N = np.asarray(outputs["start_logits"], np.float64)[:num_windows, 0]
    if "end_logits" in outputs:
        null_N = null_N + np.asarray(outputs["end_logits"], np.float64)[:num_windows, 0]
    return null_N


def decode_answers(
    examples: list[SquadExample], metas: list[WindowMeta], outputs: dict[str, np.ndarray],
    tokenizer: Tokenizer, input_ids: np.ndarray, max_answer_len: int = 30, n_best: int = 20,
) -> tuple[dict[str, str], dict[str, float], dict[str, list[dict]]]:  # fmt: skip
    """As the original's `write_predictions`: the best non-empty answer text per question, its
    null odds (the lowest answerable logit over its windows; without a classifier, the lowest
    [CLS] score minus the best answer's score; -inf without either output), and the n-best
    lists (distinct texts, best first; the original's "empty" entry when no span is valid)."""
    candidates: list[list[tuple[float, int, int, int]]] = [[] for _ in examples]
    start_index, start_score, end_index, end_score = _beams(outputs, n_best)
    window_null = _window_null_scores(outputs, len(metas))
    K, K_end = start_index.shape[-1], end_index.shape[-1]
    for w, meta in enumerate(metas):
        for i, j in itertools.product(range(K), range(K_end)):
            start, end = int(start_index[w, i]), int(end_index[w, i, j])
            if not meta.token_is_max_context.get(start) or end not in meta.token_to_word:
                continue
            if start <= end < start + max_answer_len:
                score = float(start_score[w, i]) + float(end_score[w, i, j])
                candidates[meta.example_index].append((score, w, start, end))
    windows_of: list[list[int]] = [[] for _ in examples]
    for w, meta in enumerate(metas):
        windows_of[meta.example_index].append(w)
    predictions, nulls, nbest = {}, {}, {}
    for e, example in enumerate(examples):
        words, entries = split_words(example.context)[0], []
        for score, w, start, end in sorted(candidates[e], key=lambda c: c[0], reverse=True):
            if len(entries) >= n_best:
                break
            first, last = metas[w].token_to_word[start], metas[w].token_to_word[end]
            predicted = tokenizer.decode([int(t) for t in input_ids[w, start : end + 1]])
            predicted = predicted.replace(" ##", "").replace("##", "")
            text = final_text(predicted, " ".join(words[first : last + 1]))
            if all(text != entry["text"] for entry in entries):
                entries.append({"text": text, "score": score})
        entries = entries or [{"text": "empty", "score": 0.0}]
        best = next((entry for entry in entries if entry["text"]), {"text": "", "score": 0.0})
        predictions[example.qid] = best["text"]
        if window_null is None:
            nulls[example.qid] = float("-inf")
        else:
            null = min(float(window_null[w]) for w in windows_of[e])
            nulls[example.qid] = null if "answerable_logit" in outputs else null - best["score"]
        nbest[example.qid] = entries
    return predictions, nulls, nbest
