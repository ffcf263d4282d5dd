"""Warm restarts (issue 18): a second launch of the same config loads every program from JAX's
persistent compilation cache instead of compiling it, says so, and trains bit-identically."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
from gcs_emulator import running_emulator

from configs.finetune import get_config as finetune_config
from configs.pretrain import get_config as pretrain_config
from electra_jax.files.model_io import export_dir, load_model
from electra_jax.files.run_files import read_metrics
from electra_jax.train.compile_cache import WORKDIR_CACHE, resolve_cache_dir

SHORT = [
    "--config=configs/pretrain.py:tiny", "--config.max_seq_len=64", "--config.batch_size=8",
    "--config.num_train_steps=2", "--config.warmup_steps=1", "--config.log_every=1",
    "--config.eval_every=2", "--config.checkpoint_every=2", "--config.eval_batches=0",
    "--config.model.num_layers=1", "--config.mesh.num_devices=1",
]  # fmt: skip
# Runs the pre-training command and then prints what the whole process compiled; the count of
# cache entries written (below) checks the same thing without the listeners.
LAUNCH = (
    "import sys\n"
    "from electra_jax.train.compile_cache import CompileWatch\n"
    "from electra_jax.pretrain import main\n"
    "watch = CompileWatch()\n"
    "main(sys.argv[1:])\n"
    "print(f'process: {watch.compiled} compiled, {watch.loaded} loaded')\n"
)


def launch(workdir: str, cache: str, data_dir: str) -> str:
    env = dict(os.environ)
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(name, None)  # the suite's own cache settings: this test checks the defaults
    args = [*SHORT, f"--config.data.dir={data_dir}", f"--config.compile_cache_dir={cache}"]
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH, *args, f"--workdir={workdir}"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def process_counts(out: str) -> tuple[int, int]:
    """(programs compiled, programs loaded from the cache) from LAUNCH's last line."""
    compiled, _, loaded, _ = out.split("process: ")[1].splitlines()[0].split()
    return int(compiled), int(loaded)


def entries(cache: str) -> list[str]:
    return sorted(name for name in os.listdir(cache) if name.endswith("-cache"))


def test_second_launch_compiles_nothing_and_trains_identically(tmp_path, builtin_data_dir):
    cache, first, second = (str(tmp_path / name) for name in ("xla", "run1", "run2"))
    out1 = launch(first, cache, builtin_data_dir)
    written = entries(cache)
    assert any(name.startswith("jit_train_step-") for name in written), written
    assert "compile: train step cached" not in out1 and "(XLA " in out1
    assert f"cache {cache}" in out1
    compiled1, loaded1 = process_counts(out1)
    assert compiled1 == len(written)  # every program compiled once, each written to the cache

    out2 = launch(second, cache, builtin_data_dir)
    assert "compile: train step cached (" in out2, out2
    assert process_counts(out2) == (0, compiled1 + loaded1)  # the same programs, all loaded
    assert entries(cache) == written  # nothing new compiled, so nothing new written
    assert "start-up: imports " in out2 and " s to the first step" in out2

    params1, params2 = (load_model(export_dir(w))[1] for w in (first, second))
    leaves1, leaves2 = jax.tree.leaves(params1), jax.tree.leaves(params2)
    assert len(leaves1) == len(leaves2) > 0
    for a, b in zip(leaves1, leaves2, strict=True):
        np.testing.assert_array_equal(a, b)  # bit-identical, not merely close
    losses = [[m["loss"] for m in read_metrics(w)] for w in (first, second)]
    assert losses[0] == losses[1] and len(losses[0]) == 2


# In one process: a program compiled with the cache on gs:// (written there), then, with JAX's
# in-memory caches cleared, the same program again (read back from the bucket).
REMOTE = (
    "import jax, jax.numpy as jnp\n"
    "from electra_jax.train.compile_cache import CompileWatch, enable_compile_cache\n"
    "enable_compile_cache('gs://bucket/run/xla_cache', 'unused')\n"
    "for _ in range(2):\n"
    "    watch = CompileWatch()\n"
    "    jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()\n"
    "    print(watch.compiled, watch.loaded)\n"
    "    jax.clear_caches()\n"
)


def test_cache_on_a_bucket(tmp_path):
    """A gs:// cache directory works (etils.epath / gcsfs), against the GCS emulator."""
    with running_emulator(tmp_path) as emulator:
        env = {**os.environ, **emulator.env(), "JAX_PLATFORMS": "cpu"}
        env.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)
        proc = subprocess.run(
            [sys.executable, "-c", REMOTE], capture_output=True, text=True, env=env, timeout=120
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = (tuple(map(int, line.split())) for line in proc.stdout.split("\n")[:2])
    assert first[0] > 0 and first[1] == 0 and second == (0, first[0]), proc.stdout
    written = list(Path(tmp_path, "bucket", "run", "xla_cache").glob("jit_*-cache"))
    assert len(written) == first[0]  # the entries are objects in the bucket


def test_cache_directory_setting(tmp_path):
    workdir = str(tmp_path / "run")
    assert resolve_cache_dir("", workdir) is None  # off
    assert resolve_cache_dir("gs://bucket/xla", workdir) == "gs://bucket/xla"  # JAX reads it
    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert resolve_cache_dir("auto", workdir) == os.path.join(workdir, WORKDIR_CACHE)
        relative = os.path.abspath(os.path.join("runs", "x", WORKDIR_CACHE))
        assert resolve_cache_dir("auto", "./runs/x") == relative  # one spelling: one cache key
        jax.config.update("jax_compilation_cache_dir", "/elsewhere")  # $JAX_COMPILATION_CACHE_DIR
        assert resolve_cache_dir("auto", workdir) == "/elsewhere"
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_config_fields_default_to_auto():
    assert pretrain_config("tiny").compile_cache_dir == "auto"
    assert finetune_config().compile_cache_dir == "auto"
