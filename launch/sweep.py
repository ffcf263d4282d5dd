r"""Hyper-parameter sweeps: expand a config's `sweep()` into runs, skip the finished ones, run
the rest here (up to --parallel at once) or dispatch them to a TPU VM or SLURM; --summarize
tabulates a metric over the runs.

  python launch/sweep.py --config=configs/finetune.py:task=rte,size=small --workdir=runs/rte \
      --parallel=2 --config.init_from=models/small --config.data_dir=finetuning_data
  python launch/sweep.py --config=configs/finetune.py:task=rte,size=small --workdir=runs/rte \
      --summarize                                # runs/rte/summary.md + summary.csv

A config module may define `sweep()` or `sweep(arg)` (arg: the part of --config after ':'),
returning a list of override dicts such as {"learning_rate": 1e-4, "seed": 1}; nested fields
are dotted ({"objective.mask_prob": 0.25}). Each run gets the directory WORKDIR/<name>, its
name the sorted overrides (`learning_rate=0.0001,seed=1`), and the command
`python -m electra_jax.<job> --config=CONFIG --workdir=WORKDIR/<name> [extra] --config.k=v...`,
the job (pretrain or finetune) following the config file's name (or --job). Extra
`--config.FIELD=VALUE` flags go to every run.

A run is finished when its directory has results.json (fine-tuning: written last, after every
seed is evaluated), or for pre-training when its config.json's num_train_steps equals the step
of the last record of its metrics.jsonl. Finished runs are skipped; an unfinished pre-training
run restarted in the same directory resumes from its newest checkpoint.

--local (the default) runs each remaining run as a subprocess, its output appended to
WORKDIR/<name>/log.txt, then writes the summary. --tpu=NAME --zone=Z runs them one after
another in one tmux session on every worker of that TPU VM (see tpu_vm.py). --slurm submits
one sbatch job per run (see slurm.py), its log in WORKDIR/<name>/slurm-<jobid>.out, each asking
for GPUs and time by the config's size (tiny: 1 GPU for 1 h; larger: 8 GPUs for 24 h) unless
--gpus-per-node / --time say otherwise.
--summarize only writes WORKDIR/summary.md and summary.csv: one row per run with its overrides
and --metric (default: `score` of results.json, or the last `eval/disc_auc` of metrics.jsonl;
a dotted path reaches inside results.json, e.g. dev.rte.median.accuracy), sorted by the
metric, best first, unfinished runs last. A --workdir holding none of the sweep's run
directories (another folder, or a sweep not started) is an error, and nothing is written.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import inspect
import math
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
from typing import Any

import ml_collections

from electra_jax.cli import ArgumentParser, load_config, note, parse_value
from electra_jax.errors import UserError, exit_on_user_error
from launch import common, slurm, tpu_vm
from launch.common import Command
from launch.sweep_summary import check_sweep_root, is_finished, join, write_summary

SWEEP_JOBS = ("pretrain", "finetune")
DEFAULT_METRIC = {"finetune": "score", "pretrain": "eval/disc_auc"}
FIELD = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
Scalar = bool | int | float | str


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of the sweep: its overrides, directory name and work directory."""

    name: str
    overrides: dict[str, Scalar]
    workdir: str


# ----------------------------------------------------------------------------- the config


def split_config_spec(spec: str) -> tuple[str, str | None]:
    """`configs/x.py:arg` -> (path, arg); arg is None when there is no ':'."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def job_for(path: str, job: str) -> str:
    """The electra_jax module a config file belongs to: --job, else the file's name."""
    if job:
        return job
    stem = os.path.splitext(os.path.basename(path))[0]
    for name in SWEEP_JOBS:
        if name in stem:
            return name
    raise UserError(
        f"cannot tell the job from config file {path}; name it after the job "
        f"(configs/pretrain.py, configs/finetune.py) or pass --job=pretrain|finetune"
    )


def run_config_file(path: str) -> dict[str, Any]:
    """The config file's globals, for its sweep(); the config itself comes from
    `electra_jax.cli.load_config`, as the runs load it."""
    if not os.path.isfile(path):
        raise UserError(
            f"config file {path} does not exist; pass e.g. "
            "--config=configs/finetune.py:task=rte,size=small"
        )
    try:
        return runpy.run_path(path)
    except Exception as e:
        raise UserError(f"cannot load {path}: {type(e).__name__}: {e}; fix the config file or "
                        "pass another --config") from None  # fmt: skip


def call_with_arg(function: Any, arg: str | None, what: str) -> Any:
    """Calls sweep() with the config argument when given and accepted."""
    takes_arg = bool(inspect.signature(function).parameters)
    try:
        return function(arg) if (takes_arg and arg is not None) else function()
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{what} failed: {e}") from None


def sweep_overrides(sweep: Any, path: str, arg: str | None) -> list[dict[str, Scalar]]:
    """The config's sweep(): a non-empty list of {field: scalar} dicts, checked."""
    if not callable(sweep):
        raise UserError(
            f"{path} defines no sweep(); add `def sweep(arg)` returning a list of override "
            "dicts, e.g. [{'learning_rate': 1e-4}, {'learning_rate': 2e-4}]"
        )
    result = call_with_arg(sweep, arg, f"{path} sweep()")
    return check_overrides(result, path)


def check_overrides(result: Any, path: str) -> list[dict[str, Scalar]]:
    """Rejects anything but a non-empty list of dicts of dotted field names to scalars."""
    shape = "a non-empty list of dicts like [{'learning_rate': 1e-4, 'seed': 1}]"
    if not isinstance(result, list | tuple) or not result:
        raise UserError(f"{path} sweep() returned {type(result).__name__}; expected {shape}")
    for i, item in enumerate(result):
        if not isinstance(item, dict):
            raise UserError(f"{path} sweep()[{i}] is {type(item).__name__}; expected {shape}")
        for key, value in item.items():
            if not isinstance(key, str) or not FIELD.fullmatch(key):
                raise UserError(f"{path} sweep()[{i}] has key {key!r}; expected a field name")
            finite = not isinstance(value, float) or math.isfinite(value)
            if not isinstance(value, Scalar) or not finite:
                raise UserError(
                    f"{path} sweep()[{i}][{key!r}] = {value!r}; values must be finite numbers, "
                    "booleans or strings"
                )
    return [dict(item) for item in result]


def check_fields(config: Any, keys: list[str], where: str, path: str) -> None:
    """Every overridden field exists in the config (a typo fails here, not in run 7 of 10)."""
    for key in keys:
        node = config
        for part in key.split("."):
            if not hasattr(node, "keys") or part not in node:
                raise UserError(f"{where} sets {key!r}, which is not a field of {path}'s config; "
                                "fix the name or add the field to its get_config()")  # fmt: skip
            node = node[part]


def check_value(
    config: ml_collections.ConfigDict, key: str, text: str, what: str, path: str
) -> None:
    """The override parses as its field's type, by the parser the run's --config.FIELD=VALUE flag
    goes through (`electra_jax.cli.parse_value`): a typo fails here, not in every run."""
    node = config
    for part in key.split("."):
        node = node[part]
    try:
        parse_value(node, text, key)
    except UserError:
        kind = type(node).__name__
        article = "an" if kind == "int" else "a"
        raise UserError(f"{what}: {path}'s config holds {article} {kind} there ({key}={node!r}); "
                        f"pass {article} {kind}") from None  # fmt: skip


# ----------------------------------------------------------------------------- runs


def format_value(value: Scalar) -> str:
    """A value as an override flag takes it (and as the run name shows it): 0.0001, 1e-05."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def run_name(overrides: dict[str, Scalar]) -> str:
    """`k1=v1,k2=v2` over sorted keys, filesystem-safe (other characters become '_')."""
    text = ",".join(f"{k}={format_value(overrides[k])}" for k in sorted(overrides)) or "default"
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)
    return "_" + name[1:] if name.startswith(".") else name


def expand(points: list[dict[str, Scalar]], root: str) -> list[Run]:
    """Runs in sweep() order; two points that map to one directory are an error."""
    runs, seen = [], {}
    for overrides in points:
        name = run_name(overrides)
        if name in seen:
            raise UserError(f"sweep() gives two runs the same directory {name!r}: {seen[name]} "
                            f"and {overrides}; make the override dicts distinct")  # fmt: skip
        seen[name] = overrides
        runs.append(Run(name, overrides, join(root, name)))
    return runs


def run_args(config_spec: str, run: Run, extra: list[str]) -> list[str]:
    """The job's flags for one run: config, workdir, extra overrides, then the run's own."""
    own = [f"--config.{k}={format_value(run.overrides[k])}" for k in sorted(run.overrides)]
    return [f"--config={config_spec}", f"--workdir={run.workdir}", *extra, *own]


def parse_extra(unknown: list[str], sweep_keys: set[str]) -> list[str]:
    """Flags argparse did not know: only --config.FIELD=VALUE, and not a field the sweep sets."""
    for flag in unknown:
        key, sep, _ = flag.partition("=")
        if not key.startswith("--config.") or not sep or not FIELD.fullmatch(key[9:]):
            raise UserError(f"unknown flag {flag!r}; runs take only --config.FIELD=VALUE "
                            "overrides (see --help)")  # fmt: skip
        if key[9:] in sweep_keys:
            raise UserError(f"{key} is set by the sweep itself; drop it or change sweep()")
    return list(unknown)


# ----------------------------------------------------------------------------- dispatch


def run_local(jobs: list[tuple[Run, Command]], parallel: int, env: dict[str, str]) -> list[str]:
    """Runs the commands, at most `parallel` at once, each appending to <workdir>/log.txt;
    returns one line per failed run."""
    child_env = {**os.environ, **env}
    if parallel > 1:  # several JAX processes on one GPU: do not let each grab 75% of it
        child_env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    def one(run: Run, command: Command) -> str | None:
        os.makedirs(run.workdir, exist_ok=True)
        log = os.path.join(run.workdir, "log.txt")
        start = time.perf_counter()
        print(f"start: {run.name}", flush=True)
        with open(log, "a") as f:
            f.write(f"[sweep] {common.format_command(command)}\n")
            f.flush()
            done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=child_env)
            code = done.returncode
        print(f"done: {run.name}: exit status {code} in {time.perf_counter() - start:.0f}s",
              flush=True)  # fmt: skip
        return None if code == 0 else f"{run.name} (exit status {code}, see {log})"

    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(lambda job: one(*job), jobs))
    return [r for r in results if r is not None]


def local_lines(jobs: list[tuple[Run, Command]]) -> list[str]:
    """What --local --dry-run prints: each run as one shell line, log redirection included."""
    return [
        f"mkdir -p {shlex.quote(run.workdir)} && {common.format_command(command)} >> "
        f"{shlex.quote(os.path.join(run.workdir, 'log.txt'))} 2>&1"
        for run, command in jobs
    ]


def remote_config_spec(path: str, arg: str | None) -> str:
    """The --config value for runs on other machines: the path relative to the repository."""
    rel = os.path.relpath(os.path.abspath(path), common.REPO_ROOT)
    if rel.startswith(".."):
        note(f"{path} is outside the repository; the remote runs need it at the same path")
        rel = path
    return rel if arg is None else f"{rel}:{arg}"


def dispatch_tpu(args: argparse.Namespace, job: str, spec: str, pending: list[Run],
                 extra: list[str], env: dict[str, str]) -> None:  # fmt: skip
    """All pending runs, one after another, in one tmux session on every TPU worker."""
    if "://" not in args.workdir:
        note(f"runs write {args.workdir} on the TPU workers; finished runs are only seen (and "
             "skipped, and summarized) here when --workdir is shared storage")  # fmt: skip
    target = tpu_vm.Target(args.tpu, args.zone, args.project, args.code_dir)
    jobs = [common.job_argv(tpu_vm.VENV_PYTHON, job, run_args(spec, run, extra)) for run in pending]
    session = common.safe_name(f"sweep-{os.path.basename(args.workdir.rstrip('/'))}")
    common.execute(tpu_vm.run_commands(target, session, jobs, env), args.dry_run)


def dispatch_slurm(args: argparse.Namespace, job: str, spec: str, pending: list[Run],
                   extra: list[str], size: Any) -> None:  # fmt: skip
    """One sbatch job per pending run, its script and log in the run's directory; GPUs and time
    per run from the config's size unless --gpus-per-node / --time say otherwise."""
    args.python = args.python or ".venv/bin/python"
    gpus, time_limit = slurm.request_for(size)
    args.gpus_per_node = gpus if args.gpus_per_node is None else args.gpus_per_node
    args.time = time_limit if args.time is None else args.time
    note(f"each run asks for {args.nodes} node(s) x {args.gpus_per_node} GPU(s) for {args.time} "
         f"(config size {size or 'unknown'}; --gpus-per-node / --time override)")  # fmt: skip
    opts = slurm.options_from(args)
    for run in pending:
        command = common.job_argv(opts.python, job, run_args(spec, run, extra))
        output = os.path.join(run.workdir, "slurm-%j.out")
        slurm.check_one_word("--workdir", output)
        name = common.safe_name(f"{job}-{run.name}")
        script = slurm.sbatch_script(opts, name, output, command)
        slurm.submit(script, os.path.join(run.workdir, "job.sbatch"), run.workdir, args.dry_run)


# ----------------------------------------------------------------------------- entry point


def build_parser() -> ArgumentParser:
    """The sweep's flags; unknown --config.FIELD=VALUE flags pass through to every run."""
    parser = ArgumentParser(
        prog="python launch/sweep.py", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Extra --config.FIELD=VALUE flags are passed to every run.",
    )  # fmt: skip
    parser.add_argument("--config", required=True, help="CONFIG_FILE:ARG whose sweep() to run")
    parser.add_argument("--workdir", required=True, help="root: one directory per run")
    parser.add_argument("--job", choices=SWEEP_JOBS, default="", help="default: from --config")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run here (the default)")
    where.add_argument("--tpu", default="", metavar="NAME", help="run on this TPU VM")
    where.add_argument("--slurm", action="store_true", help="submit one sbatch job per run")
    parser.add_argument("--parallel", type=int, default=1, help="local runs at once")
    parser.add_argument("--summarize", action="store_true", help="only write the summary")
    parser.add_argument("--metric", default="", help="summary metric (default: per job)")
    common.add_dry_run(parser)
    tpu = parser.add_argument_group("TPU (with --tpu)")
    tpu.add_argument("--zone", default="", help="the TPU VM's zone")
    tpu.add_argument("--project", default="", help="GCP project")
    tpu.add_argument("--code-dir", default=tpu_vm.CODE_DIR, help="code directory under ~")
    slurm.add_options(parser, sized=True)  # also --python and --env, used by local runs too
    parser.set_defaults(python="")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Expands the sweep, then summarizes, runs locally, or dispatches to TPU / SLURM."""
    args, unknown = build_parser().parse_known_args(argv)
    if args.parallel < 1:
        raise UserError(f"--parallel={args.parallel}; pass --parallel=1 or more")
    if args.tpu and not args.zone:
        raise UserError("--tpu needs --zone (the TPU VM's zone, e.g. --zone=us-central2-b)")
    path, arg = split_config_spec(args.config)
    namespace = run_config_file(path)
    job = job_for(path, args.job)
    points = sweep_overrides(namespace.get("sweep"), path, arg)
    extra = parse_extra(unknown, {k for p in points for k in p})
    size = None
    if "get_config" in namespace:
        config = load_config(args.config)
        size = config.get("size")
        for i, point in enumerate(points):
            check_fields(config, list(point), f"sweep()[{i}]", path)
            for key, value in point.items():
                text = format_value(value)
                check_value(config, key, text, f"sweep()[{i}] sets {key}={text!r}", path)
        check_fields(config, [f.partition("=")[0][9:] for f in extra], "a --config flag", path)
        for flag in extra:
            key, _, text = flag[9:].partition("=")
            check_value(config, key, text, flag, path)
    root = args.workdir if (args.tpu or "://" in args.workdir) else os.path.abspath(args.workdir)
    runs = expand(points, root)
    metric = args.metric or DEFAULT_METRIC[job]
    if args.summarize:
        check_sweep_root(runs, root, args.config)
        print(write_summary(runs, job, metric, root, args.config), end="")
        return
    pending = [run for run in runs if not is_finished(job, run.workdir)]
    for run in runs:
        if run not in pending:
            note(f"skip {run.name}: finished")
    print(f"sweep: {len(runs)} run(s), {len(runs) - len(pending)} finished, "
          f"{len(pending)} to run", file=sys.stderr)  # fmt: skip
    env = common.parse_env(args.env)
    if args.tpu:
        dispatch_tpu(args, job, remote_config_spec(path, arg), pending, extra, env)
    elif args.slurm:
        dispatch_slurm(args, job, remote_config_spec(path, arg), pending, extra, size)
    else:
        run_locally(args, job, root, runs, pending, extra, env, metric)


def run_locally(args: argparse.Namespace, job: str, root: str, runs: list[Run],
                pending: list[Run], extra: list[str], env: dict[str, str],
                metric: str) -> None:  # fmt: skip
    """Runs the pending runs here, then writes the summary; failures exit 1 with one line."""
    if "://" in args.workdir and not args.dry_run:
        raise UserError(f"--local writes logs under {args.workdir}; use a local --workdir")
    python = args.python or sys.executable
    jobs = [(run, common.job_argv(python, job, run_args(args.config, run, extra)))
            for run in pending]  # fmt: skip
    if args.dry_run:
        print("\n".join(local_lines(jobs)))
        return
    failed = run_local(jobs, args.parallel, env)
    write_summary(runs, job, metric, root, args.config)
    print(f"sweep: summary in {join(root, 'summary.md')}")
    if failed:
        print(f"error: {len(failed)} of {len(jobs)} run(s) failed: {'; '.join(failed)}",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    main()
