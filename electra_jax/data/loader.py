"""grain loaders over prepared shards: shuffled, split by host, checkpointable; and eval batches.

Training pipeline (grain `MapDataset`, all index arithmetic, no example read twice):

    ArrayRecord shards -> shuffle(seed) -> repeat() [reshuffled every epoch]
      -> [process_index::process_count]   (global stream split by host)
      -> batch(global_batch_size // process_count, drop_remainder) -> decode records
      -> to_iter_dataset(ReadOptions)     (threads prefetch batches)
      -> mp_prefetch(worker_count)        (optional worker processes)

Host p takes global positions p, p + P, ... of the shuffled infinite stream, so in every epoch
the hosts together read each example exactly once. Records of a whole batch are decoded with
one `np.frombuffer` (records.decode_records). The iterator's state is its position (a few
integers): `it.get_state()` / `it.set_state(state)`, or orbax with
`grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`, restore the identical batches.
"""

from __future__ import annotations

import functools

import numpy as np

from electra_jax.data import records
from electra_jax.data.meta import check_meta, read_meta, split_paths
from electra_jax.errors import UserError

__all__ = ["read_meta", "check_meta", "make_train_loader", "make_eval_batches", "host_position"]

DEFAULT_READ_THREADS = 4
DEFAULT_PREFETCH_BATCHES = 8


def host_position(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(process_index, process_count), defaulting to JAX's view of this host."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise UserError(f"process_index={process_index} is outside [0, {process_count})")
    return process_index, process_count


def _per_host_batch(global_batch_size: int, process_count: int) -> int:
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise UserError(
            f"global batch size {global_batch_size} must be a positive multiple of the "
            f"{process_count} processes; change the config's batch size"
        )
    return global_batch_size // process_count


def _source(data_dir: str, split: str):
    """(grain ArrayRecordDataSource over a split, meta, batch decode function)."""
    import grain

    meta = read_meta(data_dir)
    paths = split_paths(meta, data_dir, split)
    if not paths:
        raise UserError(
            f"{data_dir}/meta.json has no {split} shards; re-run electra_jax.prepare with more "
            f"text or a held-out split (--eval-fraction/--eval-examples)"
        )
    decode = functools.partial(
        records.decode_records,
        max_seq_len=meta["max_seq_len"],
        id_dtype=meta["record"]["dtypes"][0],
    )
    return grain.sources.ArrayRecordDataSource(paths), meta, decode


def make_train_loader(
    data_dir: str,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    worker_count: int = 0,
    read_threads: int = DEFAULT_READ_THREADS,
    prefetch_batches: int = DEFAULT_PREFETCH_BATCHES,
):
    """An endless, seeded, per-host iterator of training batches (a grain `DatasetIterator`).

    Each element is {input_ids, input_mask, segment_ids}: int32 numpy arrays of shape
    [global_batch_size // process_count, max_seq_len]. `worker_count` > 0 adds grain worker
    processes (`mp_prefetch`); the batches are the same either way.
    """
    import grain

    index, count = host_position(process_index, process_count)
    batch_size = _per_host_batch(global_batch_size, count)
    source, _, decode = _source(data_dir, "train")
    if len(source) < global_batch_size:
        raise UserError(
            f"{data_dir} has {len(source)} train examples, fewer than one global batch of "
            f"{global_batch_size}; use a smaller batch size or a larger corpus"
        )
    dataset = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
    dataset = dataset[index::count].batch(batch_size, drop_remainder=True, batch_fn=decode)
    options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    iter_dataset = dataset.to_iter_dataset(options)
    if worker_count > 0:
        iter_dataset = iter_dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=worker_count)
        )
    return iter(iter_dataset)


def make_eval_batches(
    data_dir: str,
    *,
    global_batch_size: int,
    num_batches: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """The held-out split as a fixed list of per-host batches, in stored order.

    `num_batches=None` gives as many full batches as the split holds (at least one). A split
    smaller than `num_batches` global batches wraps around, so every host gets the same number
    of batches.
    """
    import grain

    index, count = host_position(process_index, process_count)
    batch_size = _per_host_batch(global_batch_size, count)
    source, _, decode = _source(data_dir, "eval")
    if num_batches is None:
        num_batches = max(1, len(source) // global_batch_size)
    dataset = grain.MapDataset.source(source).repeat()[index::count]
    dataset = dataset.batch(batch_size, drop_remainder=True, batch_fn=decode)
    return [dataset[i] for i in range(num_batches)]
