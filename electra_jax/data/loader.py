"""grain loaders over prepared shards: shuffled, split by host, checkpointable; and eval batches.

Batch i of host p (of P, per-host batch b) holds the global stream positions
g = (i * P + p) * b + j, j < b: block p of global batch i, where
`jax.make_array_from_process_local_data` puts host p's rows on a mesh laid out in process order,
so a pod's global batch is the one-host batch. Position g is example perm_e[g mod n] of epoch
e = g // n, perm_e seeded by (seed, e): each epoch is reshuffled and the hosts together read
each example once. A
batch is one vectorized index computation, one ArrayRecord read and one `np.frombuffer` (grain's
per-example shuffle/batch would cost ~40 us per example). The iterator's state is its position:
`get_state` / `set_state` or orbax (`grain.checkpoint.CheckpointSave`) restore identical batches."""

import dataclasses
import threading

import numpy as np

from electra_jax.data import dataset_format
from electra_jax.data.dataset_format import check_meta, read_meta  # noqa: F401 (re-exported)
from electra_jax.errors import UserError

DEFAULT_READ_THREADS = 4
DEFAULT_PREFETCH_BATCHES = 8
_ENDLESS = 1 << 62  # batches; "forever" for an index-based grain dataset


@dataclasses.dataclass
class ReadBatch:
    """Batch number -> decoded batch; picklable, so grain can run it in threads or processes."""

    paths: list[str]
    n: int  # examples in the split
    _: dataclasses.KW_ONLY
    batch_size: int
    process_index: int
    process_count: int
    seed: int | None  # None: stored order, no shuffling
    max_seq_len: int
    id_dtype: str
    packed: bool = False

    def __post_init__(self) -> None:
        self._reader = None
        self._perms: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None, "_perms": {}, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _permutation(self, epoch: int) -> np.ndarray:
        with self._lock:  # reader threads share it; the last two epochs are kept
            if epoch not in self._perms:
                self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
                rng = np.random.default_rng([self.seed, epoch])
                self._perms[epoch] = rng.permutation(self.n).astype(np.int64)
            return self._perms[epoch]

    def example_ids(self, batch_index: int) -> np.ndarray:
        """The example ids (rows of the split) of this host's batch `batch_index`, in order."""
        j_B = np.arange(self.batch_size, dtype=np.int64)
        block = batch_index * self.process_count + self.process_index
        positions_B = block * self.batch_size + j_B
        epochs_B, offsets_B = np.divmod(positions_B, self.n)
        if self.seed is None:
            return offsets_B
        ids_B = np.empty_like(offsets_B)
        for epoch in np.unique(epochs_B):
            in_epoch = epochs_B == epoch
            ids_B[in_epoch] = self._permutation(int(epoch))[offsets_B[in_epoch]]
        return ids_B

    def __call__(self, batch_index: int) -> dict[str, np.ndarray]:
        import grain

        if self._reader is None:
            self._reader = grain.sources.ArrayRecordDataSource(self.paths)
        ids_B = self.example_ids(int(batch_index))
        order = np.argsort(ids_B, kind="stable")  # read in file order, then restore the shuffle
        items = self._reader.__getitems__(ids_B[order].tolist())
        restored = [items[k] for k in np.argsort(order)]
        return dataset_format.decode_records(restored, self.max_seq_len, self.id_dtype, self.packed)


def _reader(
    data_dir: str, split: str, meta: dict | None, global_batch_size: int,
    process_index: int | None, process_count: int | None, seed: int | None,
) -> ReadBatch:  # fmt: skip
    """The batch reader of a split for this host (process index and count default to JAX's)."""
    import jax

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise UserError(f"process_index={process_index} is outside [0, {process_count})")
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise UserError(
            f"global batch size {global_batch_size} must be a positive multiple of the "
            f"{process_count} processes; change the config's batch size"
        )
    meta = meta or read_meta(data_dir)
    paths = dataset_format.split_paths(meta, data_dir, split)
    n_examples = meta["splits"][split]["examples"]
    if not paths or n_examples == 0:
        raise UserError(
            f"{data_dir}/meta.json has no {split} examples; re-run electra_jax.prepare with more "
            f"text or a held-out split (--eval-fraction/--eval-examples)"
        )
    return ReadBatch(
        paths, n_examples, batch_size=global_batch_size // process_count,
        process_index=process_index, process_count=process_count,
        seed=seed, max_seq_len=meta["max_seq_len"], id_dtype=meta["record"]["dtypes"][0],
        packed=dataset_format.is_packed(meta),
    )  # fmt: skip


def make_train_loader(
    data_dir: str, *, global_batch_size: int, seed: int, process_index: int | None = None,
    process_count: int | None = None, worker_count: int = 0,
    read_threads: int = DEFAULT_READ_THREADS, prefetch_batches: int = DEFAULT_PREFETCH_BATCHES,
    meta: dict | None = None,
):  # fmt: skip
    """An endless, seeded grain iterator of this host's training batches (int32 arrays
    [global_batch_size // process_count, L]); `worker_count` > 0 adds worker processes."""
    import grain

    read = _reader(data_dir, "train", meta, global_batch_size, process_index, process_count, seed)
    if read.n < global_batch_size:
        raise UserError(
            f"{data_dir} has {read.n} train examples, fewer than one global batch of "
            f"{global_batch_size}; use a smaller batch size or a larger corpus"
        )
    options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    iter_dataset = grain.MapDataset.range(_ENDLESS).map(read).to_iter_dataset(options)
    if worker_count > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (outside absl.app too)
            flags.FLAGS.mark_as_parsed()
        options = grain.MultiprocessingOptions(num_workers=worker_count)
        iter_dataset = iter_dataset.mp_prefetch(options)
    return iter(iter_dataset)


def make_eval_batches(
    data_dir: str, *, global_batch_size: int, num_batches: int | None = None,
    process_index: int | None = None, process_count: int | None = None, meta: dict | None = None,
) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """The held-out split as this host's batches in stored order; `num_batches=None`: as many full
    global batches as it holds (at least one; a smaller split wraps around)."""
    read = _reader(data_dir, "eval", meta, global_batch_size, process_index, process_count, None)
    num_batches = max(1, read.n // global_batch_size) if num_batches is None else num_batches
    return [read(i) for i in range(num_batches)]
