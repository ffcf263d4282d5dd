"""Shared launcher pieces: command lists, shell quoting, dry-run printing or checked execution,
reading run files with one-line errors, the pinned-jax venv recipe, and the detached tmux job
scripts that gpu.py and tpu_vm.py share.

Every command is a list of arguments; it is printed with `shlex.join`, so a printed line pasted
into a shell runs exactly what the launcher would run (a `--config.x=y` override with spaces or
commas survives both the printing and the remote shell).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from electra_jax.cli import ArgumentParser
from electra_jax.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(REPO_ROOT, "requirements.txt")
JOBS = ("pretrain", "finetune", "prepare", "detect", "convert")  # python -m electra_jax.<job>
NEEDS_CONFIG = ("pretrain", "finetune")
Command = list[str]

INSTALL_HINTS = {
    "gcloud": "install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install) "
    "and run `gcloud auth login`",
    "sbatch": "run this on a SLURM login node, or use --dry-run to only write the script",
    "tmux": "install tmux (e.g. `sudo apt-get install tmux`)",
}


# ----------------------------------------------------------------------------- parsing


def add_dry_run(parser: ArgumentParser, top: bool = False) -> None:
    """Adds --dry-run: print the exact commands (one per line) instead of running them. The
    top-level parser of a subcommand tool gets its own copy, so both orders work."""
    parser.add_argument(
        "--dry-run", dest="dry_run_all" if top else "dry_run", action="store_true",
        help="print the commands, one per line; run nothing",
    )  # fmt: skip


def is_dry_run(args: argparse.Namespace) -> bool:
    """--dry-run given before or after the subcommand."""
    return bool(getattr(args, "dry_run", False) or getattr(args, "dry_run_all", False))


def add_env(parser: Any) -> None:
    """Adds repeatable --env=KEY=VALUE: exported inside the job's tmux session, whose server
    may predate (and so not see) variables set in the launching shell."""
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="environment variable for the job (repeatable)",
    )  # fmt: skip


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict; a malformed item is a UserError."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UserError(f"bad --env {item!r}; expected KEY=VALUE, e.g. --env=XLA_FLAGS=...")
        env[key] = value
    return env


def add_job_arguments(parser: ArgumentParser) -> None:
    """Adds `JOB [ARGS...]`: the electra_jax module to run and its flags (passed through)."""
    parser.add_argument("job", choices=JOBS, help="python -m electra_jax.JOB")
    parser.add_argument(
        "job_args", nargs="...", help="the job's flags, e.g. --config=... --workdir=..."
    )


def check_job_args(job: str, args: Sequence[str]) -> None:
    """Fails before launching when the job's flags cannot work (wrong order, missing flags)."""
    if "--dry-run" in args:
        raise UserError("--dry-run is a launcher flag: put it before the job name")
    if job in NEEDS_CONFIG:
        has = {a.split("=", 1)[0] for a in args}
        missing = [f for f in ("--config", "--workdir") if f not in has]
        if missing:
            raise UserError(
                f"{job} needs {' and '.join(missing)}; e.g. {job} "
                f"--config=configs/{job}.py:ARG --workdir=DIR"
            )


# ----------------------------------------------------------------------------- commands


def format_command(command: Command) -> str:
    """One shell-quoted line: pasting it into bash runs exactly `command`."""
    return shlex.join(command)


def execute(commands: Sequence[Command], dry_run: bool, cwd: str | None = None) -> None:
    """Prints each command (dry run) or runs them in order, stopping at the first failure."""
    if dry_run:
        if cwd is not None:
            print(format_command(["cd", cwd]))
        for command in commands:
            print(format_command(command))
        return
    for command in commands:
        run_checked(command, cwd=cwd)


def run_checked(command: Command, cwd: str | None = None) -> None:
    """Runs one command (echoed to stdout, leaving stderr to errors); a missing program or a
    non-zero exit is a UserError."""
    print(f"+ {format_command(command)}", flush=True)
    try:
        result = subprocess.run(command, cwd=cwd)
    except FileNotFoundError:
        hint = INSTALL_HINTS.get(command[0], f"install {command[0]} or put it on PATH")
        raise UserError(f"{command[0]} not found on PATH; {hint}") from None
    if result.returncode != 0:
        line = shorten(format_command(command))
        raise UserError(f"command failed with exit status {result.returncode}: {line}")


def shorten(text: str, limit: int = 300) -> str:
    """Keeps error lines readable: a long remote script is cut, its start still names it."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def job_argv(python: str, job: str, args: Sequence[str]) -> Command:
    """`python -m electra_jax.<job> args...` as an argument list."""
    return [python, "-m", f"electra_jax.{job}", *args]


def safe_name(text: str, limit: int = 64) -> str:
    """A tmux session / SLURM job name: letters, digits, '-' and '_' only (tmux rejects '.:')."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit]
    return name or "job"


# ----------------------------------------------------------------------------- run files


def read_run_file(read: Callable[..., Any], workdir: str, *args: Any) -> Any:
    """`read(workdir, *args)`, one of `electra_jax.files.run_files`' readers, with its failures as
    one-line UserErrors: an unreadable file, or a remote workdir (gs://) that cannot be read."""
    try:
        return read(workdir, *args)
    except UserError:
        raise
    except OSError as e:
        raise UserError(f"cannot read {e.filename or workdir}: {e.strerror or e}") from None
    except Exception as e:
        if "://" not in workdir:
            raise
        hint = "check the path, the credentials and the network, or use a local --workdir"
        raise UserError(f"cannot read {workdir}: {e}; {hint}") from None


# ----------------------------------------------------------------------------- environment


def pinned_jax_version(requirements: str = REQUIREMENTS) -> str:
    """The `jax==X` pin of requirements.txt: accelerator wheels must match the CPU pin."""
    try:
        with open(requirements) as f:
            text = f.read()
    except OSError:
        raise UserError(f"cannot read {requirements}; run the launcher from a checkout") from None
    match = re.search(r"^jax==([^\s#;]+)", text, flags=re.MULTILINE)
    if not match:
        raise UserError(f"{requirements} pins no jax version; add a line jax==X.Y.Z")
    return match.group(1)


def venv_commands(python: str, venv: str, jax_extra: str) -> list[Command]:
    """Creates `venv` and installs jax[<extra>] at the pinned version plus requirements.txt (the
    runtime only: no torch, no test tools), then the checkout itself (`pip install -e .`)."""
    pip = f"{venv}/bin/pip"
    jax = f"jax[{jax_extra}]=={pinned_jax_version()}"
    return [
        [python, "-m", "venv", venv],
        [pip, "install", "-q", "--upgrade", "pip"],
        [pip, "install", "-q", jax, "-r", "requirements.txt"],
        [pip, "install", "-q", "--no-deps", "-e", "."],
    ]


def and_chain(commands: Sequence[Command | str]) -> str:
    """One shell line running the commands in order, stopping at the first failure."""
    return " && ".join(c if isinstance(c, str) else format_command(c) for c in commands)


# ----------------------------------------------------------------------------- tmux jobs


def start_detached(
    session: str, jobs: Sequence[Command], log: str, env: dict[str, str] | None = None
) -> str:
    """Shell that runs `jobs` one after another in a new detached tmux session, appending their
    output and exit status to `log` (a shell word: it may hold `$(hostname)`); refuses to start
    when the session already exists, so a second launch cannot fight the first for devices."""
    exports = {"PYTHONUNBUFFERED": "1", **(env or {})}
    steps = [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    for i, job in enumerate(jobs):
        label = f"job {i + 1} of {len(jobs)}"
        steps += [
            f'echo "[launch] $(date -u +%FT%TZ) {label} starts" >> {log}',
            f"{format_command(job)} >> {log} 2>&1",
            f'status=$?; echo "[launch] $(date -u +%FT%TZ) {label} exit status $status" >> {log}',
        ]
    inner = "; ".join(steps)
    return (
        f'mkdir -p logs && if tmux has-session -t {session} 2>/dev/null; then echo "error: tmux '
        f'session {session} is already running on $(hostname); stop it first" >&2; exit 1; fi'
        f' && tmux new-session -d -s {session} -c "$PWD" {shlex.quote(inner)}'
        f' && echo "$(hostname): started tmux session {session}; log: $PWD/{log}"'
    )


def status_script(session: str, log: str) -> str:
    """Shell that says whether `session` runs on this host and shows its log's last lines; with
    no session, lists this host's tmux sessions."""
    if not session:
        return 'echo "$(hostname): tmux sessions:"; tmux ls 2>/dev/null || echo "  none"'
    return (
        f'if tmux has-session -t {session} 2>/dev/null; then echo "$(hostname): {session} '
        f'running"; else echo "$(hostname): {session} not running"; fi; '
        f"tail -n 3 {log} 2>/dev/null || true"
    )


def logs_script(log_glob: str, lines: int, follow: bool) -> str:
    """Shell that prints the last `lines` lines of the newest log matching `log_glob` (a shell
    word), following it with `follow`; says so instead of waiting on stdin when none exists."""
    tail = f"tail -n {int(lines)}{' -F' if follow else ''}"
    return (
        f"f=$(ls -t {log_glob} 2>/dev/null | head -n 1); "
        f'if [ -n "$f" ]; then echo "==> $(hostname): $f"; {tail} "$f"; '
        f'else echo "$(hostname): no log matches {log_glob}"; fi'
    )


def stop_script(session: str) -> str:
    """Shell that kills the session (its jobs get SIGHUP; rerunning resumes from a checkpoint)."""
    return (
        f'if tmux kill-session -t {session} 2>/dev/null; then echo "$(hostname): stopped '
        f'{session}"; else echo "$(hostname): no tmux session {session}"; fi'
    )
