"""Time to the first step, by phase: where a launch or restart spends its time before training
(printed once, at the first step; bench/time_to_first_step.py reads that line)."""

import os
import time
from typing import Any

import jax

from electra_jax.train.compile_cache import CompileWatch

PREFIX = "start-up:"


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): interpreter start-up,
    imports and flag parsing before the trainer's first line."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)


class StartupClock:
    """Marks the end of each start-up phase; `first_step` closes the last one and reports."""

    def __init__(self) -> None:
        age = process_age()
        self.phases: dict[str, float] = {} if age is None else {"imports": age}
        self.last = time.perf_counter()
        self.reported = False
        self.compiles = CompileWatch()  # the XLA share of the total

    def mark(self, phase: str) -> None:
        """Ends `phase` now: the seconds since the previous mark go to it."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    def first_step(self, outputs: Any) -> str | None:
        """Waits for the first step's `outputs`, then returns the report line (once; None after)."""
        if self.reported:
            return None
        jax.block_until_ready(outputs)
        self.mark("first step")
        self.reported = True
        shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.phases.items())
        total, xla = sum(self.phases.values()), self.compiles.xla_seconds
        return f"{PREFIX} {shown}; {total:.1f} s to the first step ({xla:.1f} s of it in XLA)"
