"""Run metrics: `metrics.jsonl` (one object per logged step), TensorBoard, console progress."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

METRICS_FILE = "metrics.jsonl"


def truncate_after(path: str, step: int) -> None:
    """Drops records with step > `step` (a resumed run re-logs them): no duplicates, no gaps."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn final line from a kill
        if record.get("step", 0) <= step:
            kept.append(json.dumps(record) + "\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricsLogger:
    """Writes each record to metrics.jsonl (flushed), TensorBoard, and a one-line progress."""

    def __init__(self, workdir: str, total_steps: int, is_primary: bool = True):
        self.is_primary = is_primary
        self.total_steps = total_steps
        self.path = os.path.join(workdir, METRICS_FILE)
        self._file = open(self.path, "a") if is_primary else None  # noqa: SIM115
        self._tb = None
        if is_primary:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.is_primary:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self._tb.add_scalar(key, value, step)
        self._tb.flush()

    def progress(self, step: int, values: dict[str, Any], steps_per_sec: float) -> None:
        if not self.is_primary:
            return
        eta = (self.total_steps - step) / steps_per_sec if steps_per_sec > 0 else 0.0
        shown = " ".join(
            f"{k}={values[k]:.4g}"
            for k in ("loss", "mlm_loss", "disc_loss", "learning_rate", "tokens_per_sec", "mfu")
            if isinstance(values.get(k), int | float)
        )
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] step {step}/{self.total_steps} {shown} eta {format_duration(eta)}")
        sys.stdout.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
        if self._tb:
            self._tb.close()


def _plain(value: Any) -> Any:
    try:
        return float(value) if not isinstance(value, int | str | bool) else value
    except (TypeError, ValueError):
        return str(value)
