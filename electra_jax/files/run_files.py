"""The files of a run directory: `config.json`, `metrics.jsonl` (one object per logged step,
with TensorBoard and console progress beside it) and fine-tuning's `results.json`.

These are the only readers of those files: the trainers, sweeps, the report and the kill
campaign all go through them. Paths may be local or remote (`etils.epath`).
"""

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from etils import epath

from electra_jax.cli import flat_fields
from electra_jax.errors import UserError
from electra_jax.storage import LocalMirror, write_atomic, write_json

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
# The console line shows these metrics (every one goes to metrics.jsonl and TensorBoard).
PROGRESS_KEYS = ("loss", "mlm_loss", "disc_loss", "learning_rate", "tokens_per_sec", "mfu")
# A remote workdir's TensorBoard events are uploaded at most this often (and at close).
TENSORBOARD_UPLOAD_S = 60.0


def read_json(path: str) -> Any | None:
    """The JSON value in `path`, None when the file does not exist; a bad file is a UserError."""
    file = epath.Path(path)
    if not file.exists():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}); fix or remove it") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); fix or remove it") from None


def read_run_config(workdir: str) -> dict | None:
    """The config a run saved (`config.json`), None before its first start."""
    return read_json(os.path.join(workdir, CONFIG_FILE))


def config_change(
    workdir: str, config: dict, fields: tuple[str, ...] | None = None, limit: int = 6
) -> str:
    """The fields (of `fields`, default all) in which `config` differs from the run's saved
    config.json, as "a.b=saved (this run: new), ..." ("" when the same or nothing is saved)."""
    saved = read_run_config(workdir)
    if not saved:
        return ""
    old, new = flat_fields(saved), flat_fields(config)
    differ = sorted(k for k in fields or old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = [f"{k}={old.get(k, 'absent')} (this run: {new.get(k, 'absent')})" for k in differ]
    return ", ".join(shown[:limit] + ([f"... {len(shown) - limit} more"] if differ[limit:] else []))


def read_results(workdir: str) -> dict | None:
    """A fine-tuning run's `results.json`, None while it is unfinished."""
    return read_json(os.path.join(workdir, RESULTS_FILE))


def write_results(workdir: str, results: dict) -> None:
    """Writes a fine-tuning run's `results.json` (atomically: readers never see half of it)."""
    write_json(os.path.join(workdir, RESULTS_FILE), results)


def read_metrics(
    workdir: str, on_torn: Callable[[str, int], None] | None = None
) -> list[dict[str, Any]]:
    """`metrics.jsonl` records that carry a step, by step; torn lines (a kill mid-write) are
    skipped, and `on_torn(path, count)` hears how many when there are any. Empty when the file
    does not exist."""
    file = epath.Path(workdir) / METRICS_FILE
    if not file.exists():
        return []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{file} is not UTF-8 text ({e.reason}); fix or remove it") from None
    records, torn = [], 0
    for line in filter(str.strip, lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    if torn and on_torn is not None:
        on_torn(str(file), torn)
    return sorted(records, key=lambda r: r["step"])


def truncate_metrics_after(workdir: str, step: int) -> None:
    """Drops records with step > `step` (a resumed run re-logs them): no duplicates, no gaps."""
    path = os.path.join(workdir, METRICS_FILE)
    if not epath.Path(path).exists():
        return
    kept = [json.dumps(r) + "\n" for r in read_metrics(workdir) if r["step"] <= step]
    write_atomic(path, "".join(kept))


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def tensorboard_writer() -> type:
    """tensorboardX's SummaryWriter, imported without torch: tensorboardX imports torch when it
    is installed (2-3 s of every start-up, for tensor types this code never logs)."""
    block = "torch" not in sys.modules
    if block:
        sys.modules["torch"] = None  # `import torch` raises ImportError meanwhile
    try:
        from tensorboardX import SummaryWriter
    finally:
        if block:
            del sys.modules["torch"]
    return SummaryWriter


class MetricsLogger:
    """Writes each record to metrics.jsonl (flushed), TensorBoard, and a one-line progress.

    Both writers append to local files; for a remote workdir these live in a LocalMirror:
    metrics.jsonl is uploaded after every record (a bucket object cannot be appended to, so the
    whole file is rewritten: readers such as sweeps always see every logged step), TensorBoard
    events at most every TENSORBOARD_UPLOAD_S seconds and at close."""

    def __init__(self, workdir: str, total_steps: int, is_primary: bool = True):
        self.is_primary = is_primary
        self.total_steps = total_steps
        self.path = os.path.join(workdir, METRICS_FILE)
        self._file = self._tb = self._metrics_mirror = self._tb_mirror = None
        if is_primary:
            SummaryWriter = tensorboard_writer()
            self._metrics_mirror = LocalMirror(workdir)
            self._file = open(self._metrics_mirror.pull(METRICS_FILE), "a")  # noqa: SIM115
            tensorboard = os.path.join(workdir, "tensorboard")
            self._tb_mirror = LocalMirror(tensorboard, TENSORBOARD_UPLOAD_S)
            self._tb = SummaryWriter(self._tb_mirror.local)

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.is_primary:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._metrics_mirror.push(METRICS_FILE, force=True)
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self._tb.add_scalar(key, value, step)
        self._tb.flush()
        self._tb_mirror.push()

    def progress(
        self,
        step: int,
        values: dict[str, Any],
        steps_per_sec: float,
        keys: tuple[str, ...] = PROGRESS_KEYS,
    ) -> None:
        """One console line: step/total, the `keys` present in `values`, and the ETA."""
        if not self.is_primary:
            return
        eta = (self.total_steps - step) / steps_per_sec if steps_per_sec > 0 else 0.0
        shown = " ".join(
            f"{k}={values[k]:.4g}" for k in keys if isinstance(values.get(k), int | float)
        )
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] step {step}/{self.total_steps} {shown} eta {format_duration(eta)}")
        sys.stdout.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._metrics_mirror.push(METRICS_FILE, force=True)
            self._metrics_mirror.close()
        if self._tb:
            self._tb.close()
            self._tb_mirror.push(force=True)
            self._tb_mirror.close()


def _plain(value: Any) -> Any:
    try:
        return float(value) if not isinstance(value, int | str | bool) else value
    except (TypeError, ValueError):
        return str(value)
