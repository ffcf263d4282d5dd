r"""SLURM launcher: write an sbatch script for a (multi-node) GPU job and submit it with sbatch.
--dry-run prints the script and the commands instead.

  python launch/slurm.py --nodes=2 --gpus-per-node=8 --time=48:00:00 --partition=gpu \
      pretrain --config=configs/pretrain.py:base --workdir=/shared/runs/base \
      --config.data.dir=/shared/data/owt-512

One task per node (`srun --ntasks-per-node=1`) drives all of that node's GPUs. The script
exports what jax.distributed needs: JAX_COORDINATOR_ADDRESS (the first node of the allocation,
from `scontrol show hostnames`, and a port derived from the job id so that concurrent jobs do
not collide), which makes electra_jax's entry points call jax.distributed.initialize(); the
process count and index then come from SLURM (SLURM_NTASKS, SLURM_PROCID) inside srun. It also
exports JAX_LOCAL_DEVICE_IDS=0..G-1: jax's SLURM detection otherwise gives each process only
the GPU numbered SLURM_LOCALID (the one-process-per-GPU layout), i.e. one GPU per node here.
The repository (and its .venv, built with `python launch/gpu.py setup`) must be on a
filesystem every node sees; the job runs in it, so relative paths resolve there.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
from typing import Any

from electra_jax.cli import ArgumentParser
from electra_jax.errors import UserError, exit_on_user_error
from launch import common
from launch.common import Command

# What one job asks for: the defaults, and smaller requests for config sizes that need less
# (tiny trains in minutes on one GPU, or a CPU with --gpus-per-node=0).
DEFAULT_REQUEST = (8, "24:00:00")  # (GPUs per node, --time)
SIZE_REQUESTS = {"tiny": (1, "01:00:00")}


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """Resources and placement of one sbatch job."""

    nodes: int = 1
    gpus_per_node: int = 8
    time: str = "24:00:00"
    partition: str = ""
    account: str = ""
    cpus_per_task: int = 0  # 0: the cluster's default
    extra: tuple[str, ...] = ()  # more #SBATCH options, e.g. --qos=high
    python: str = ".venv/bin/python"
    chdir: str = common.REPO_ROOT
    port: int = 0  # 0: derived from the job id
    env: tuple[tuple[str, str], ...] = ()


def request_for(size: Any) -> tuple[int, str]:
    """(GPUs per node, time limit) one run of a config size asks for when --gpus-per-node and
    --time are not given (sweep.py --slurm)."""
    return SIZE_REQUESTS.get(str(size), DEFAULT_REQUEST)


def add_options(parser: argparse.ArgumentParser, sized: bool = False) -> None:
    """The resource flags (shared with sweep.py --slurm, where `sized`: --gpus-per-node and
    --time default to None, filled in per the config's size by `request_for`)."""
    g = parser.add_argument_group("SLURM")
    by_size = ", ".join(f"{s}: {r[0]}" for s, r in SIZE_REQUESTS.items())
    g.add_argument("--nodes", type=int, default=1, help="nodes (one task each)")
    g.add_argument(
        "--gpus-per-node", type=int, default=None if sized else DEFAULT_REQUEST[0],
        help="GPUs per node (0: CPU only); default "
        + (f"per config size ({by_size}, else {DEFAULT_REQUEST[0]})" if sized else "%(default)s"),
    )  # fmt: skip
    by_size = ", ".join(f"{s}: {r[1]}" for s, r in SIZE_REQUESTS.items())
    g.add_argument(
        "--time", default=None if sized else DEFAULT_REQUEST[1],
        help="wall-clock limit, e.g. 48:00:00; default "
        + (f"per config size ({by_size}, else {DEFAULT_REQUEST[1]})" if sized else "%(default)s"),
    )  # fmt: skip
    g.add_argument("--partition", default="", help="SLURM partition")
    g.add_argument("--account", default="", help="SLURM account")
    g.add_argument("--cpus-per-task", type=int, default=0, help="CPUs per task (0: default)")
    g.add_argument(
        "--sbatch-arg", action="append", default=[], metavar="OPTION",
        help="another #SBATCH option, e.g. --sbatch-arg=--qos=high (repeatable)",
    )  # fmt: skip
    g.add_argument(
        "--python", default=".venv/bin/python",
        help="interpreter that runs the job (sweep.py --local: default the current one)",
    )  # fmt: skip
    g.add_argument("--chdir", default=common.REPO_ROOT, help="job directory (shared FS)")
    g.add_argument("--port", type=int, default=0, help="coordinator port (0: from job id)")
    common.add_env(g)


def options_from(args: argparse.Namespace) -> SlurmOptions:
    """SlurmOptions from parsed flags, validated (values must fit on one #SBATCH line)."""
    if args.nodes < 1:
        raise UserError(f"--nodes={args.nodes}; pass --nodes=1 or more")
    if args.gpus_per_node < 0:
        raise UserError(f"--gpus-per-node={args.gpus_per_node}; pass 0 or more")
    words = [("--time", args.time), ("--partition", args.partition),
             ("--account", args.account), ("--chdir", args.chdir)]  # fmt: skip
    for flag, value in words + [("--sbatch-arg", v) for v in args.sbatch_arg]:
        check_one_word(flag, value)
    for value in args.sbatch_arg:
        if not value.startswith("--"):
            raise UserError(f"--sbatch-arg={value!r}; expected an sbatch option like --qos=high")
    return SlurmOptions(
        nodes=args.nodes, gpus_per_node=args.gpus_per_node, time=args.time,
        partition=args.partition, account=args.account, cpus_per_task=args.cpus_per_task,
        extra=tuple(args.sbatch_arg), python=args.python, chdir=args.chdir, port=args.port,
        env=tuple(common.parse_env(args.env).items()),
    )  # fmt: skip


def check_one_word(flag: str, value: str) -> None:
    """#SBATCH lines are not shell: a value with whitespace would be cut there."""
    if re.search(r"\s", value):
        raise UserError(f"{flag}={value!r} contains whitespace, which an #SBATCH line cannot "
                        "hold; pass it without spaces")  # fmt: skip


def sbatch_script(opts: SlurmOptions, job_name: str, output: str, job: Command) -> str:
    """The sbatch script: resources, coordinator environment, `srun <job>` on every node."""
    directives = [
        f"--job-name={job_name}", f"--nodes={opts.nodes}", "--ntasks-per-node=1",
        *([f"--gpus-per-node={opts.gpus_per_node}"] if opts.gpus_per_node else []),
        *([f"--cpus-per-task={opts.cpus_per_task}"] if opts.cpus_per_task else []),
        f"--time={opts.time}", f"--output={output}", f"--chdir={opts.chdir}",
        *([f"--partition={opts.partition}"] if opts.partition else []),
        *([f"--account={opts.account}"] if opts.account else []),
        *opts.extra,
    ]  # fmt: skip
    port = str(opts.port) if opts.port else "$((SLURM_JOB_ID % 4096 + 61440))"
    lines = [
        "#!/bin/bash",
        "# Written by launch/slurm.py.",
        *[f"#SBATCH {d}" for d in directives],
        "set -euo pipefail",
        f"cd {shlex.quote(opts.chdir)}",
        "export PYTHONUNBUFFERED=1",
        *[f"export {k}={shlex.quote(v)}" for k, v in opts.env],
        "# jax.distributed: process 0 on the first node coordinates; the process count and",
        "# index come from SLURM (SLURM_NTASKS, SLURM_PROCID) inside srun.",
        'COORDINATOR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f'export JAX_COORDINATOR_ADDRESS="$COORDINATOR:{port}"',
    ]
    if opts.gpus_per_node:
        ids = ",".join(str(i) for i in range(opts.gpus_per_node))
        lines += [
            "# One process per node drives all its GPUs (jax's SLURM detection would otherwise",
            "# give each process only GPU $SLURM_LOCALID).",
            f"export JAX_LOCAL_DEVICE_IDS={ids}",
        ]
    lines += [
        'echo "job $SLURM_JOB_ID: $SLURM_JOB_NUM_NODES node(s), coordinator '
        '$JAX_COORDINATOR_ADDRESS"',
        f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 {common.format_command(job)}",
    ]
    return "\n".join(lines) + "\n"


def output_dir(opts: SlurmOptions, output: str) -> str:
    """The directory of the --output file (SLURM does not create it; the job would fail)."""
    return os.path.dirname(os.path.join(opts.chdir, output)) or opts.chdir


def submit(script: str, script_path: str, out_dir: str, dry_run: bool) -> None:
    """Prints the script and commands (dry run), or writes the script and runs sbatch."""
    commands = [["mkdir", "-p", out_dir], ["sbatch", script_path]]
    if dry_run:
        print(f"# {script_path}")
        print(script)
        common.execute(commands, dry_run=True)
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(script_path)), exist_ok=True)
        with open(script_path, "w") as f:
            f.write(script)
    except OSError as e:
        raise UserError(
            f"cannot write the sbatch script {script_path} ({e.strerror}); pass a writable "
            "--script file path"
        ) from None
    common.execute(commands, dry_run=False)


def build_parser() -> ArgumentParser:
    """`[SLURM flags] [--job-name] [--output] [--script] [--dry-run] JOB ARGS...`."""
    parser = ArgumentParser(
        prog="python launch/slurm.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser)
    parser.add_argument("--job-name", default="", help="SLURM job name (default: the job)")
    parser.add_argument("--output", default="logs/%x-%j.out", help="log file (in --chdir)")
    parser.add_argument("--script", default="", help="where to write the script "
                        "(default: logs/<job-name>.sbatch in --chdir)")  # fmt: skip
    common.add_dry_run(parser)
    common.add_job_arguments(parser)
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Writes and submits (or prints, with --dry-run) the sbatch script for the job."""
    args = build_parser().parse_args(argv)
    common.check_job_args(args.job, args.job_args)
    opts = options_from(args)
    check_one_word("--output", args.output)
    name = common.safe_name(args.job_name or args.job)
    job = common.job_argv(opts.python, args.job, args.job_args)
    script_path = args.script or os.path.join(opts.chdir, "logs", f"{name}.sbatch")
    script = sbatch_script(opts, name, args.output, job)
    submit(script, script_path, output_dir(opts, args.output), args.dry_run)


if __name__ == "__main__":
    main()
