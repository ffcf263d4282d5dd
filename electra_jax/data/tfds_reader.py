"""TensorFlow Datasets records, for `--corpus=tfds:NAME[@SPLIT]` and fine-tuning without a data_dir.

Reads through `tfds.data_source` (ArrayRecord files, no TensorFlow) when the prepared data is
ArrayRecord, and prepares missing data as ArrayRecord; data prepared as TFRecord (the default of
`tfds build` / `tfds.load`) is read by `tfds.load`, which needs TensorFlow. `tensorflow_datasets`
is imported here only, and only when a TFDS source is used (it is heavy)."""

import importlib
import importlib.util
import os
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from electra_jax.errors import UserError

_VERSION = re.compile(r"^(\d+(\.\d+){0,2}|\d+\.\d+\.\*|\d+\.\*\.\*)$")
EXAMPLE_NAMES = "wikipedia/20230601.en, c4/en, glue/rte, squad/v2.0"


def parse_spec(spec: str) -> tuple[str, str]:
    """`tfds:NAME[@SPLIT]` -> (NAME, SPLIT or "train"). NAME may carry TFDS's `:VERSION`
    (`glue/rte:2.0.0`); the old `tfds:NAME:SPLIT` still works when SPLIT is no version."""
    body = spec[len("tfds:") :] if spec.startswith("tfds:") else spec
    name, at, split = body.partition("@")
    if not at and ":" in name and not _VERSION.match(name.rpartition(":")[2]):
        name, _, split = name.rpartition(":")  # backward compatible tfds:NAME:SPLIT
    if not name or (at and not split):
        raise UserError(f"--corpus={spec}: write tfds:NAME[@SPLIT], e.g. tfds:c4/en@validation")
    return name, split or "train"


def import_tfds(what: str) -> ModuleType:
    """The `tensorflow_datasets` module, or a one-line error naming the install."""
    try:
        tfds = importlib.import_module("tensorflow_datasets")
    except ImportError as e:
        raise UserError(f"{what} needs TensorFlow Datasets: pip install tensorflow-datasets") from e
    # TFDS imports its dataset modules lazily: `tfds.builder("glue/rte")` (or c4, wikipedia)
    # finds no such dataset until the `text` group is imported, which needs no TensorFlow.
    importlib.import_module("tensorflow_datasets.text")
    return tfds


def _data_dir() -> str | None:
    """TFDS_DATA_DIR read now (tfds reads it once, at import), else TFDS's default."""
    return os.environ.get("TFDS_DATA_DIR") or None


def prepared_builder(name: str, what: str) -> Any:
    """The dataset's builder with its data on disk; data not yet there is prepared as ArrayRecord
    (this downloads: TFDS's own sources, or its manual_dir for datasets that need one)."""
    tfds = import_tfds(what)
    try:
        builder = tfds.builder(name, data_dir=_data_dir())
        if not builder.is_prepared():
            builder = tfds.builder(name, data_dir=_data_dir(), file_format="array_record")
            builder.download_and_prepare()
    except Exception as e:  # TFDS raises many types: unknown name, no network, manual data
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise UserError(
            f"{what}: TFDS could not prepare {name!r} ({type(e).__name__}: {first}); check the "
            f"name against the TFDS catalog (e.g. {EXAMPLE_NAMES}) and that it can download"
        ) from e
    return builder


def split_names(name: str, what: str) -> tuple[str, ...]:
    """The splits the prepared dataset has (SQuAD: train and validation, no test)."""
    return tuple(prepared_builder(name, what).info.splits.keys())


def iter_records(name: str, split: str, what: str) -> Iterator[dict[str, Any]]:
    """The split's records as dicts of numpy values / bytes, in the dataset's order."""
    builder = prepared_builder(name, what)
    splits = tuple(builder.info.splits.keys())
    if re.split(r"[\[+]", split)[0] not in splits:
        raise UserError(f"{what}: TFDS {name} has no split {split!r}; it has {', '.join(splits)}")
    if builder.info.file_format is not None and builder.info.file_format.value == "array_record":
        source = builder.as_data_source(split=split)
        for i in range(len(source)):
            yield source[i]
        return
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError(
            f"{what}: TFDS {name} is prepared as {builder.info.file_format.value}, which only "
            "TensorFlow reads: pip install tensorflow (or rebuild it with "
            f"`tfds build {name} --file_format=array_record`)"
        )
    tfds = import_tfds(what)
    yield from tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))


def text(value: Any) -> str:
    """A TFDS text value (bytes from both readers) as str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
