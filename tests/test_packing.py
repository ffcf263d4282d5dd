"""Sequence packing: the packer, the record format, and a packed row computing exactly what
its examples compute one by one."""

from __future__ import annotations

import json
import random

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from data_fixtures import write_corpus, write_vocab

from electra_jax.data import dataset, dataset_format
from electra_jax.data.example_builder import MIN_EXAMPLE_TOKENS, make_example, pack_examples
from electra_jax.data.loader import make_eval_batches
from electra_jax.model.config import preset
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.model.layers import packed_attention_mask, packed_positions
from electra_jax.prepare import show_lines
from electra_jax.train.trainer import train


def random_examples(n: int, max_seq_len: int, seed: int = 0):
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        total = rng.choice([max_seq_len, rng.randint(MIN_EXAMPLE_TOKENS, max_seq_len)])
        first = rng.randint(1, max(1, total - 3))
        second = max(0, total - first - 3)
        ids = [rng.randint(5, 99) for _ in range(first + second)]
        examples.append(
            make_example(ids[:first], ids[first:], cls_id=2, sep_id=3, max_seq_len=max_seq_len)
        )
    return examples


def test_every_example_lands_in_one_row_in_order_and_rows_fit():
    L = 32
    examples = random_examples(300, L)
    rows = list(pack_examples(examples, L, open_rows=4))
    packed = [e for row in rows for e in row.examples]
    assert sorted(map(id, packed)) == sorted(map(id, examples))  # each exactly once
    position = {id(e): i for i, e in enumerate(examples)}
    for row in rows:
        assert 0 < row.num_tokens <= L
        order = [position[id(e)] for e in row.examples]
        assert order == sorted(order)  # builder order within a row
        if any(e.num_tokens == L for e in row.examples):
            assert len(row.examples) == 1
    padding = 1 - sum(e.num_tokens for e in examples) / (len(rows) * L)
    unpacked_padding = 1 - sum(e.num_tokens for e in examples) / (len(examples) * L)
    assert padding < unpacked_padding / 3


def test_packed_record_round_trip():
    L = 16
    a = make_example([10, 11], [12], cls_id=2, sep_id=3, max_seq_len=L)  # [CLS] 10 11 [SEP] 12..
    b = make_example([13], [], cls_id=2, sep_id=3, max_seq_len=L)  # [CLS] 13 [SEP]
    (row,) = pack_examples([a, b], L)
    batch = dataset_format.decode_records(
        [dataset_format.encode_row_record(*row.features(), L, "<u2")], L, "<u2", packed=True
    )
    np.testing.assert_array_equal(batch["input_ids"][0, :9], [2, 10, 11, 3, 12, 3, 2, 13, 3])
    np.testing.assert_array_equal(batch["packing_ids"][0, :10], [1] * 6 + [2] * 3 + [0])
    np.testing.assert_array_equal(batch["segment_ids"][0, :10], [0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["input_mask"][0], [1] * 9 + [0] * 7)


def test_packed_positions_and_attention_mask():
    ids = jnp.array([[1, 1, 1, 2, 2, 0, 0]])
    np.testing.assert_array_equal(packed_positions(ids)[0], [0, 1, 2, 0, 1, 0, 1])
    keep = np.asarray(packed_attention_mask(ids)[0])
    assert keep[0].tolist() == [True] * 3 + [False] * 4
    assert keep[4].tolist() == [False] * 3 + [True] * 2 + [False] * 2
    assert keep[6].tolist() == [True] * 5 + [False] * 2  # padding attends to real keys


@pytest.mark.parametrize("attention_impl", ["exact", "fused"])
def test_a_packed_row_computes_what_its_examples_compute_alone(attention_impl):
    cfg = preset("tiny", vocab_size=64).replace(attention_impl=attention_impl)
    model = ElectraModel(cfg)
    params = nn.unbox(init_params(model, jax.random.key(0)))
    L = 16
    rng = np.random.default_rng(0)
    lengths, seg_lengths = [6, 7], [4, 5]  # tokens per example, of which segment 0
    ids_BxL = np.zeros((3, L), np.int32)  # row 0: both examples packed; rows 1, 2: one each
    seg_BxL, mask_BxL, packing_BxL = (np.zeros_like(ids_BxL) for _ in range(3))
    start = 0
    for k, (n, n0) in enumerate(zip(lengths, seg_lengths, strict=True)):
        tokens = rng.integers(5, 64, n)
        for row, offset in ((0, start), (k + 1, 0)):
            ids_BxL[row, offset : offset + n] = tokens
            seg_BxL[row, offset + n0 : offset + n] = 1
            mask_BxL[row, offset : offset + n] = 1
            packing_BxL[row, offset : offset + n] = 1 + k if row == 0 else 1
        start += n

    def run(method, packing):
        return model.apply(
            {"params": params}, ids_BxL, seg_BxL, mask_BxL, deterministic=True,
            packing_ids_BxL=packing, method=method,
        )  # fmt: skip

    disc_BxL = np.asarray(run(ElectraModel.discriminator_logits, packing_BxL))
    gen_BxLxV = np.asarray(run(ElectraModel.generator_logits, packing_BxL))
    disc_alone_BxL = np.asarray(run(ElectraModel.discriminator_logits, None))
    gen_alone_BxLxV = np.asarray(run(ElectraModel.generator_logits, None))
    start = 0
    for k, n in enumerate(lengths):
        packed = slice(start, start + n)
        np.testing.assert_allclose(disc_BxL[0, packed], disc_alone_BxL[k + 1, :n], atol=1e-5)
        np.testing.assert_allclose(gen_BxLxV[0, packed], gen_alone_BxLxV[k + 1, :n], atol=1e-5)
        start += n
    # Without packing ids the row's examples see each other: the check above can fail.
    assert not np.allclose(disc_alone_BxL[0, : lengths[0]], disc_alone_BxL[1, : lengths[0]])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """The fixture corpus prepared twice at length 64: padded (the original) and packed."""
    root = tmp_path_factory.mktemp("packing")
    write_corpus(str(root / "corpus"))
    vocab = write_vocab(str(root / "vocab.txt"))
    corpus = str(root / "corpus" / "*.txt")
    kwargs = dict(vocab=vocab, max_seq_len=64, shard_mb=0.005, progress=False)
    return {
        "plain": dataset.prepare_dataset(corpus, str(root / "plain"), **kwargs),
        "packed": dataset.prepare_dataset(corpus, str(root / "packed"), pack=True, **kwargs),
        "packed_dir": str(root / "packed"),
    }


def test_prepare_pack_fills_rows_and_the_loader_returns_packing_ids(prepared):
    plain, packed, packed_dir = prepared["plain"], prepared["packed"], prepared["packed_dir"]
    assert packed["record"]["packed"] and not plain["record"]["packed"]
    assert (packed["format_version"], plain["format_version"]) == (2, 1)  # old readers refuse
    assert packed["manifest"]["pack"] is True and "pack" not in plain["manifest"]
    rows = sum(packed["splits"][s]["examples"] for s in ("train", "eval"))
    tokens = sum(packed["splits"][s]["tokens"] for s in ("train", "eval"))
    assert packed["corpus"]["builder_examples"] == plain["corpus"]["builder_examples"] > rows
    assert tokens == sum(plain["splits"][s]["tokens"] for s in ("train", "eval"))
    assert packed["corpus"]["padding_share"] < plain["corpus"]["padding_share"] / 2

    (batch,) = make_eval_batches(packed_dir, global_batch_size=4, num_batches=1)
    assert set(batch) == {"input_ids", "input_mask", "segment_ids", "packing_ids"}
    np.testing.assert_array_equal(batch["input_mask"], batch["packing_ids"] > 0)
    assert batch["packing_ids"].max() > 1  # a row holds several examples
    starts = batch["input_ids"] == plain["special_ids"]["[CLS]"]
    restarts = packed_positions(batch["packing_ids"])[batch["input_mask"] > 0] == 0
    assert np.count_nonzero(starts) == np.count_nonzero(restarts)
    lines = show_lines(packed_dir, 20)
    assert any(" examples): [CLS] " in line and " | [CLS] " in line for line in lines)


def test_pretraining_on_packed_rows_runs_and_counts_real_tokens(prepared, tiny_config, tmp_path):
    config = tiny_config(num_train_steps=4, log_every=2, eval_batches=0, export=False,
                         **{"model.num_layers": 1})  # fmt: skip
    config.mesh.num_devices = 1
    config.data.dir = prepared["packed_dir"]
    config.model.vocab_size = prepared["packed"]["vocab_size"]
    train(config, str(tmp_path))
    with open(tmp_path / "metrics.jsonl") as f:
        records_ = [json.loads(line) for line in f]
    assert [r["step"] for r in records_] == [2, 4]
    last = records_[-1]
    assert np.isfinite(last["loss"]) and np.isfinite(last["disc_loss"])
    # real / all positions: one minus the padding share of the batches read.
    assert 0.5 < last["real_tokens_per_sec"] / last["tokens_per_sec"] <= 1.0
