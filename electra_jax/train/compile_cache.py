"""Warm restarts: JAX's persistent compilation cache, and what a block of code compiled.

A restart of the same config (same programs, devices, jax and XLA flags) loads the executables
the first launch wrote instead of compiling them again. The default directory is the run's
own `<workdir>/xla_cache`: every restart of a run shares it, and with a gs:// workdir it
outlives a preempted TPU VM and is shared by all hosts of a slice (JAX writes entries from
process 0 only, so a per-host local cache would stay empty on the other hosts).
"""

import dataclasses
import os
import time
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache

AUTO = "auto"
WORKDIR_CACHE = "xla_cache"  # under the workdir, for `auto`
# JAX's monitoring events (jax/_src/compiler.py, jax/_src/dispatch.py in jax 0.10.2): every
# program's compile-or-load is timed as BACKEND_COMPILE; a load from the cache is also a HIT.
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"
_counts = {BACKEND_COMPILE: 0, CACHE_HIT: 0}
_backend_seconds = [0.0]  # summed BACKEND_COMPILE durations: XLA's compile or cache load
_listening = False


def resolve_cache_dir(setting: str, workdir: str) -> str | None:
    """The cache directory for `compile_cache_dir=setting`: None for '' (off); for 'auto' the
    directory JAX already has ($JAX_COMPILATION_CACHE_DIR), else `<workdir>/xla_cache`. A local
    path is made absolute: JAX's cache keys contain the directory (XLA's GPU autotuning cache
    lives under it), so `runs/x` and `./runs/x` must name it the same way."""
    if not setting:
        return None
    if setting == AUTO:
        preset = jax.config.jax_compilation_cache_dir
        if preset:
            return preset
        setting = os.path.join(workdir, WORKDIR_CACHE)
    return setting if "://" in setting else os.path.abspath(setting)


def enable_compile_cache(setting: str, workdir: str) -> str | None:
    """Points JAX's persistent cache at `resolve_cache_dir(...)` (or turns it off); returns the
    directory. Every program is cached, however fast it compiled: JAX looks each one up anyway,
    so a hit is never slower than the miss and compile it replaces (unless
    $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise)."""
    _listen()
    path = resolve_cache_dir(setting, workdir)
    state = (path is not None, path or jax.config.jax_compilation_cache_dir)
    if state != (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir):
        jax.config.update("jax_enable_compilation_cache", state[0])
        jax.config.update("jax_compilation_cache_dir", state[1])
        compilation_cache.reset_cache()  # JAX opens its cache once per process: reopen it here
    if path and "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def _count(event: str, duration: float = 0.0, **_: Any) -> None:
    if event in _counts:
        _counts[event] += 1
        _backend_seconds[0] += duration


def _listen() -> None:
    """Counts the two events, once per process (a listener cannot be scoped to a block)."""
    global _listening
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_count)
        jax.monitoring.register_event_listener(_count)
        _listening = True


@dataclasses.dataclass
class CompileWatch:
    """Programs XLA compiled and programs loaded from the cache since this watch was made."""

    start: float = dataclasses.field(default_factory=time.perf_counter)
    base: dict[str, int] = dataclasses.field(default_factory=lambda: dict(_counts))
    base_seconds: float = dataclasses.field(default_factory=lambda: _backend_seconds[0])

    def __post_init__(self) -> None:
        _listen()

    @property
    def loaded(self) -> int:
        return _counts[CACHE_HIT] - self.base[CACHE_HIT]

    @property
    def xla_seconds(self) -> float:
        """Seconds in XLA: compiling, or loading from the cache (each program's compile-or-load)."""
        return _backend_seconds[0] - self.base_seconds

    @property
    def compiled(self) -> int:
        return _counts[BACKEND_COMPILE] - self.base[BACKEND_COMPILE] - self.loaded

    def summary(self) -> str:
        """'cached (9.9 s: loaded 0.4 s, tracing 9.5 s)' when every program came from the cache,
        else '76.7 s (XLA 70.1 s, tracing 6.6 s)'; tracing: JAX's tracing and lowering."""
        wall, xla = time.perf_counter() - self.start, self.xla_seconds
        if self.loaded and not self.compiled:
            return f"cached ({wall:.1f} s: loaded {xla:.1f} s, tracing {wall - xla:.1f} s)"
        return f"{wall:.1f} s (XLA {xla:.1f} s, tracing {wall - xla:.1f} s)"

    def counts(self) -> str:
        return f"{self.compiled} program(s) compiled, {self.loaded} loaded from the cache"
