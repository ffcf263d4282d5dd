"""Loaders: shapes, per-host split (every example once per epoch), reshuffling, resumable state."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import write_corpus, write_vocab

from electra_jax.data.dataset import prepare_dataset
from electra_jax.data.dataset_format import read_examples
from electra_jax.data.loader import ReadBatch, make_eval_batches, make_train_loader

MAX_LEN = 32


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    write_corpus(str(root / "corpus"), n_files=2, docs_per_file=40)
    vocab = write_vocab(str(root / "vocab.txt"))
    out = str(root / "data")
    prepare_dataset(
        str(root / "corpus"), out, vocab=vocab, max_seq_len=MAX_LEN, eval_examples=20,
        shard_mb=0.01, progress=False,
    )  # fmt: skip
    return out


def loader(data_dir, batch=8, seed=0, host=0, hosts=1, **kwargs):
    return make_train_loader(
        data_dir, global_batch_size=batch, seed=seed, process_index=host, process_count=hosts,
        **kwargs,
    )  # fmt: skip


def rows(batch) -> list[bytes]:
    """Identifies examples by content (the corpus is random text: no two examples are equal)."""
    return [batch["input_ids"][i].tobytes() for i in range(len(batch["input_ids"]))]


def test_batches_are_int32_of_the_right_shape(data_dir):
    batch = next(loader(data_dir, batch=8))
    assert set(batch) == {"input_ids", "input_mask", "segment_ids"}
    for array in batch.values():
        assert array.shape == (8, MAX_LEN) and array.dtype == np.int32
    assert (batch["input_ids"][:, 0] == 2).all()
    assert ((batch["input_ids"] != 0) == (batch["input_mask"] == 1)).all()


def test_four_hosts_together_read_every_example_of_an_epoch_once(data_dir):
    n = len(read_examples(data_dir, 10**6)["input_ids"])
    everything = sorted(rows(read_examples(data_dir, n)))
    assert len(set(everything)) == n  # content identifies examples
    hosts, per_host = 4, 2
    seen, ids = [], []
    for host in range(hosts):
        it = loader(data_dir, batch=hosts * per_host, host=host, hosts=hosts)
        read = ReadBatch(
            [], n, batch_size=per_host, process_index=host, process_count=hosts, seed=0,
            max_seq_len=MAX_LEN, id_dtype="<u2",
        )  # fmt: skip
        for i in range(-(-n // (hosts * per_host))):
            batch = next(it)
            positions = (i * hosts + host) * per_host + np.arange(per_host)
            keep = positions < n  # this epoch's share of the global stream
            seen += [row for row, k in zip(rows(batch), keep, strict=True) if k]
            ids += read.example_ids(i)[keep].tolist()
    assert sorted(seen) == everything
    assert sorted(ids) == list(range(n))


def test_epochs_are_reshuffled_and_seeds_differ(data_dir):
    n = len(read_examples(data_dir, 10**6)["input_ids"])
    read = ReadBatch(
        [], n, batch_size=n, process_index=0, process_count=1, seed=0, max_seq_len=MAX_LEN,
        id_dtype="<u2",
    )  # fmt: skip
    epoch0, epoch1 = read.example_ids(0), read.example_ids(1)
    assert sorted(epoch0) == sorted(epoch1) == list(range(n))
    assert not np.array_equal(epoch0, epoch1)
    a, b = next(loader(data_dir, seed=0)), next(loader(data_dir, seed=1))
    assert not np.array_equal(a["input_ids"], b["input_ids"])


def test_restored_state_gives_the_identical_next_ten_batches(data_dir):
    it = loader(data_dir, seed=7)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(10)]
    restored = loader(data_dir, seed=7)
    restored.set_state(state)
    for want, got in zip(expected, [next(restored) for _ in range(10)], strict=True):
        for key in want:
            np.testing.assert_array_equal(want[key], got[key])


def test_orbax_checkpoint_round_trip_restores_the_next_batch(data_dir, tmp_path):
    import grain
    import orbax.checkpoint as ocp

    it = loader(data_dir, seed=3)
    for _ in range(5):
        next(it)
    with ocp.CheckpointManager(str(tmp_path / "ckpt")) as manager:
        manager.save(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
        expected = [next(it) for _ in range(10)]
        restored = loader(data_dir, seed=3)
        manager.restore(
            5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored))
        )
    for want, got in zip(expected, [next(restored) for _ in range(10)], strict=True):
        np.testing.assert_array_equal(want["input_ids"], got["input_ids"])


def test_eval_batches_are_deterministic_and_split_by_host(data_dir):
    eval_rows = rows(read_examples(data_dir, 20, split="eval"))
    a = make_eval_batches(data_dir, global_batch_size=8, process_index=0, process_count=1)
    b = make_eval_batches(data_dir, global_batch_size=8, process_index=0, process_count=1)
    assert len(a) == 2 and all(
        np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True)
    )
    assert rows(a[0]) + rows(a[1]) == eval_rows[:16]
    hosts = [
        make_eval_batches(
            data_dir, global_batch_size=8, num_batches=3, process_index=h, process_count=2
        )  # fmt: skip
        for h in range(2)
    ]
    assert all(
        len(batches) == 3 and batches[0]["input_ids"].shape == (4, MAX_LEN) for batches in hosts
    )
    assert rows(hosts[0][0]) == eval_rows[0:4] and rows(hosts[1][0]) == eval_rows[4:8]
    assert rows(hosts[0][2]) == eval_rows[16:20]  # global batch 2: positions 16..23
    assert rows(hosts[1][2]) == eval_rows[0:4]  # positions 20..23 wrap past the 20 examples
