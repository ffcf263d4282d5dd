"""builtin:pydocs: a few MB of deterministic English; ensure_builtin_dataset feeds the loader."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from electra_jax.data import pydocs
from electra_jax.data.dataset import ensure_builtin_dataset
from electra_jax.data.loader import check_meta, make_train_loader


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    start = time.monotonic()
    data_dir = ensure_builtin_dataset(cache, vocab_size=4096, max_seq_len=64)
    return cache, data_dir, time.monotonic() - start


def test_ensure_builtin_dataset_is_fast_cached_and_loadable(built):
    cache, data_dir, seconds = built
    assert seconds < 60, f"ensure_builtin_dataset took {seconds:.0f} s"
    start = time.monotonic()
    assert ensure_builtin_dataset(cache, vocab_size=4096, max_seq_len=64) == data_dir
    assert time.monotonic() - start < 1  # cached
    from electra_jax.data.dataset_format import read_meta

    meta = read_meta(data_dir)
    check_meta(meta, data_dir, vocab_size=4096, max_seq_len=64)
    assert meta["source"] == "builtin:pydocs" and meta["tokenizer"]["kind"] == "wordpiece"
    assert meta["splits"]["train"]["examples"] > 5000 and meta["splits"]["eval"]["examples"] > 50
    batch = next(make_train_loader(data_dir, global_batch_size=16, seed=0, process_index=0,
                                   process_count=1))  # fmt: skip
    assert batch["input_ids"].shape == (16, 64)
    unk_fraction = np.mean(batch["input_ids"][batch["input_mask"] == 1] == 1)
    assert unk_fraction < 0.01


def test_builtin_corpus_is_a_few_mb_of_deterministic_prose(built):
    cache, _, _ = built
    text = pydocs.pydocs_text(cache)  # the cached build made by ensure_builtin_dataset
    size = len(text.encode("utf-8"))
    assert 1.5e6 < size < 10e6, size
    documents = list(pydocs.iter_pydocs_documents(text))
    assert len(documents) > 300
    lines = [line for doc in documents for line in doc.split("\n")]
    assert np.mean([len(line.split()) for line in lines]) > 8  # sentences, not code
    assert sum(">>>" in line for line in lines) < 1e-3 * len(lines)  # no doctest sessions
    # A fresh build in another interpreter (other hash seed, two processes) is byte-identical.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import hashlib, sys\n"
        "from electra_jax.data.pydocs import build_pydocs_text\n"
        "if __name__ == '__main__':\n"
        "    sys.stdout.write(hashlib.sha256(build_pydocs_text(2).encode()).hexdigest())\n"
    )
    script = os.path.join(cache, "build_pydocs.py")
    with open(script, "w") as f:
        f.write(code)
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": repo}
    result = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == hashlib.sha256(text.encode()).hexdigest()
