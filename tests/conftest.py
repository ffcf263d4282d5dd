"""Test setup: 8 fake CPU devices (sharding tests), float32 matmuls, small shared fixtures."""

import os
import tempfile

# LLVM optimisation level 0 halves XLA:CPU compile time (tiny's value_and_grad: 12 s -> 5.6 s
# on a 2-core VM); the suite is mostly compiles of tiny shapes, so it runs faster overall. The
# HLO passes (fusion, donation, layout) are unchanged, and the golden-value tolerances hold.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Persistent XLA cache: the same tiny step compiles once per machine, not once per test (and
# the resume test's subprocesses inherit it). Keys include the HLO and jax version: safe.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "electra_jax_jit_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def builtin_data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The built-in corpus at seq len 64, prepared once per test session (offline, ~15 s)."""
    from electra_jax.data.dataset import ensure_builtin_dataset

    cache = os.environ.get("ELECTRA_JAX_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    return ensure_builtin_dataset(cache_dir=cache, vocab_size=8192, max_seq_len=64)


@pytest.fixture(scope="session")
def tiny_config(builtin_data_dir: str):
    """A factory of small, fast `tiny` pre-training configs on the built-in corpus."""
    from data_fixtures import set_fields

    from configs.pretrain import get_config

    def make(**overrides):
        config = get_config("tiny")
        config.max_seq_len = 64
        config.batch_size = 16
        config.data.dir = builtin_data_dir
        config.eval_batches = 2
        return set_fields(config, overrides)

    return make
