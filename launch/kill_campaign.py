"""Kill campaign: SIGKILL a tiny pre-training run at random moments, resume, compare bit for bit.

`python launch/kill_campaign.py --kills=20 --workdir=/tmp/kills` runs the tiny config once
straight through, then again while killing it `--kills` times (about half of the kills land
while an async checkpoint is being written, the rest at a random moment of the loop), with a
SIGTERM (preemption notice) at the end, resuming each time with the same command. It checks
that the final parameters equal the straight run's bit for bit, that `metrics.jsonl` has every
logged step once with the straight run's values, and that no resume ever met a checkpoint it
chose but could not read. The test suite runs 3 kills by default and 20 with `-m slow`.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from electra_jax.cli import ArgumentParser
from electra_jax.data.dataset import ensure_builtin_dataset
from electra_jax.errors import UserError, exit_on_user_error
from electra_jax.files.model_io import load_model
from electra_jax.files.run_files import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNREADABLE = "is unreadable"  # the warning RunCheckpoints prints when it falls back


@dataclasses.dataclass
class CampaignResult:
    """What happened: kills by kind, resumes, and the checks that passed."""

    kills_during_save: int = 0
    kills_at_random: int = 0
    sigterms: int = 0
    launches: int = 0
    identical_params: bool = False
    metrics_continuous: bool = False
    unreadable_choices: int = 0
    seconds: float = 0.0

    @property
    def kills(self) -> int:
        return self.kills_during_save + self.kills_at_random


def pretrain_command(workdir: str, data_dir: str, num_steps: int) -> list[str]:
    """A tiny run that checkpoints every 2 steps (so kills often land mid-save)."""
    overrides = {
        "data.dir": data_dir, "max_seq_len": 64, "batch_size": 16, "eval_batches": 1,
        "num_train_steps": num_steps, "warmup_steps": 5, "checkpoint_every": 2,
        "log_every": 2, "eval_every": num_steps, "model.num_layers": 1, "keep_checkpoints": 2,
    }  # fmt: skip
    return tiny_pretrain_cli(workdir, overrides)


def tiny_pretrain_cli(workdir: str, overrides: dict[str, object]) -> list[str]:
    """`python -m electra_jax.pretrain` on the tiny preset with `--config.KEY=VALUE` overrides."""
    command = [sys.executable, "-m", "electra_jax.pretrain", "--config=configs/pretrain.py:tiny"]
    return command + [f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()]


def one_cpu_device_env() -> dict[str, str]:
    """This process's environment for a child on one CPU device at XLA's default flags, like a
    laptop (the test suite's XLA_FLAGS fake 8 devices)."""
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")


class Run:
    """One pre-training process whose output goes to a log file (no pipe to fill up)."""

    def __init__(self, command: list[str], log_path: str):
        self.log_path = log_path
        self.offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        with open(log_path, "a") as log:
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=one_cpu_device_env(), stdout=log, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        """What this launch printed (the log is shared by all launches of a run)."""
        with open(self.log_path) as f:
            f.seek(self.offset)
            return f.read()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)


def saving_now(checkpoint_dir: str) -> bool:
    """True while Orbax is writing a step (its temporary directory exists)."""
    return bool(glob.glob(os.path.join(checkpoint_dir, "*.orbax-checkpoint-tmp*")))


def in_loop(run: Run) -> bool:
    return "compile: train step" in run.output()


def wait_until(condition, run: Run, timeout: float, poll: float = 0.002) -> bool:
    """Polls `condition` until it holds (True), the process exits or the timeout (False)."""
    start = time.time()
    while time.time() - start < timeout:
        if run.proc.poll() is not None:
            return False
        if condition():
            return True
        time.sleep(poll)
    return False


def exported_params(workdir: str) -> list[np.ndarray]:
    import jax

    return jax.tree.leaves(load_model(os.path.join(workdir, "export"))[1])


def run_to_completion(command: list[str], log_path: str, timeout: float) -> str:
    run = Run(command, log_path)
    code = run.wait(timeout)
    if code != 0:
        raise RuntimeError(f"pre-training exited {code}; log: {log_path}")
    return run.output()


def interrupted_run(
    command: list[str], workdir: str, kills: int, rng: random.Random, result: CampaignResult
) -> None:
    """Kills the run `kills` times (mid-save or at random), SIGTERMs it once, then finishes it."""
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    log_path = os.path.join(workdir, "campaign.log")
    while result.kills < kills:
        run = Run(command, log_path)
        result.launches += 1
        if not wait_until(lambda r=run: in_loop(r), run, timeout=600, poll=0.05):
            run.wait(600)
            raise RuntimeError(f"the run finished before kill {result.kills + 1}; log: {log_path}")
        if rng.random() < 0.5:
            landed = wait_until(lambda: saving_now(checkpoint_dir), run, timeout=60)
            if landed:
                result.kills_during_save += 1
        else:
            time.sleep(rng.uniform(0.0, 1.5))
            landed = run.proc.poll() is None
            result.kills_at_random += landed
        run.proc.send_signal(signal.SIGKILL)
        run.wait(60)
        if not landed:
            raise RuntimeError(f"the run finished before kill {result.kills + 1}; log: {log_path}")
    # A preemption notice: the run saves, exits 0, and the next launch resumes from it.
    run = Run(command, log_path)
    result.launches += 1
    if wait_until(lambda: in_loop(run), run, timeout=600, poll=0.05):
        time.sleep(rng.uniform(0.0, 0.5))
        run.proc.send_signal(signal.SIGTERM)
        result.sigterms += 1
    if run.wait(120) != 0:
        raise RuntimeError(f"SIGTERM did not give a clean exit; log: {log_path}")
    run_to_completion(command, log_path, timeout=600)
    result.launches += 1
    result.unreadable_choices = run_output_count(log_path, UNREADABLE)


def run_output_count(log_path: str, needle: str) -> int:
    with open(log_path) as f:
        return f.read().count(needle)


def campaign(
    root: str, data_dir: str, kills: int, seed: int = 0, num_steps: int = 60
) -> CampaignResult:
    """Straight run vs killed-and-resumed run in `root`; returns what was checked."""
    start = time.time()
    rng = random.Random(seed)
    result = CampaignResult()
    straight, killed = os.path.join(root, "straight"), os.path.join(root, "killed")
    for d in (straight, killed):
        os.makedirs(d, exist_ok=True)
    run_to_completion(
        pretrain_command(straight, data_dir, num_steps), os.path.join(straight, "log"), 900
    )
    result.launches += 1
    interrupted_run(pretrain_command(killed, data_dir, num_steps), killed, kills, rng, result)

    a, b = exported_params(straight), exported_params(killed)
    result.identical_params = len(a) == len(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )
    torn: list[int] = []  # a torn line left behind by a kill fails the check too
    expected = read_metrics(straight)
    got = read_metrics(killed, on_torn=lambda path, count: torn.append(count))
    same_keys = ("step", "loss", "mlm_loss", "disc_loss", "grad_norm")
    result.metrics_continuous = not torn and [{k: r[k] for k in same_keys} for r in got] == [
        {k: r[k] for k in same_keys} for r in expected
    ]
    result.seconds = time.time() - start
    return result


def summary_line(result: CampaignResult) -> str:
    ok = result.identical_params and result.metrics_continuous and not result.unreadable_choices
    return (
        f"{'PASS' if ok else 'FAIL'}: {result.kills} SIGKILLs ({result.kills_during_save} during "
        f"an async checkpoint save, {result.kills_at_random} at random), {result.sigterms} "
        f"SIGTERM, {result.launches} launches; final parameters bit-identical: "
        f"{result.identical_params}; metrics.jsonl continuous: {result.metrics_continuous}; "
        f"unreadable checkpoints chosen: {result.unreadable_choices}; {result.seconds:.0f}s"
    )


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="python launch/kill_campaign.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--workdir", required=True, help="empty or new directory for both runs")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60, help="training steps of each run")
    parser.add_argument("--data-dir", default="", help="prepared seq-64 shards (default: builtin)")
    args = parser.parse_args(argv)
    if args.kills < 1:
        raise UserError(f"--kills={args.kills}; expected at least 1")
    if os.path.exists(args.workdir) and os.listdir(args.workdir):
        raise UserError(f"--workdir={args.workdir} is not empty; pass a new directory")
    data_dir = args.data_dir
    if not data_dir:
        data_dir = ensure_builtin_dataset(vocab_size=8192, max_seq_len=64)
    result = campaign(args.workdir, data_dir, args.kills, args.seed, args.steps)
    print(summary_line(result))
    if not summary_line(result).startswith("PASS"):
        sys.exit(1)


if __name__ == "__main__":
    main()
