r"""Cloud TPU VM launcher: create a TPU VM (one host or a pod slice), copy the code and install a
pinned venv on every worker, run a job on every worker in a detached tmux session, watch it, stop
it, delete the VM. Every subcommand takes --dry-run (print the exact gcloud commands, one per
line) and otherwise runs them, stopping with one line at the first failure.

  python launch/tpu_vm.py create my-tpu --zone=us-central2-b --accelerator-type=v4-8
  python launch/tpu_vm.py setup  my-tpu --zone=us-central2-b
  python launch/tpu_vm.py run    my-tpu --zone=us-central2-b pretrain \
      --config=configs/pretrain.py:small --workdir=runs/small --config.data.dir=gs://B/owt-128
  python launch/tpu_vm.py status my-tpu --zone=us-central2-b
  python launch/tpu_vm.py logs   my-tpu --zone=us-central2-b --lines=50
  python launch/tpu_vm.py stop   my-tpu --zone=us-central2-b --session=pretrain
  python launch/tpu_vm.py delete my-tpu --zone=us-central2-b

`create` (given the config the slice is for) and `run` (a pretrain or finetune job) first
compile the job's train step for the slice on this machine (`python -m
electra_jax.compile_check`) and stop when it does not fit in HBM; `--skip-compile-check` skips
that, `--dry-run` prints it too:

  python launch/tpu_vm.py create my-tpu --zone=us-central2-b --accelerator-type=v4-8 \
      --config=configs/pretrain.py:base
  python launch/tpu_vm.py run my-tpu --zone=us-central2-b --accelerator-type=v4-8 pretrain \
      --config=configs/pretrain.py:base --workdir=runs/base --config.data.dir=gs://B/owt-512

Launcher flags go before the job name; everything after it is the job's own flags. Remote
commands address all workers (`--worker=all`): a pod slice runs one process per host, and each
host writes its own log, ~/electra_jax/logs/<session>-<hostname>.log.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile

from electra_jax.cli import CONFIG_PREFIX, ArgumentParser, note, split_overrides
from electra_jax.errors import UserError, exit_on_user_error
from launch import common
from launch.common import Command

CODE_DIR = "electra_jax"  # on each worker, relative to the home directory
TARBALL = "electra_jax-code.tgz"
VENV_PYTHON = ".venv/bin/python"
# "./x" excludes only the top-level x (GNU tar matches after any "/"): electra_jax/data stays.
TAR_EXCLUDES = ("./.venv", "./.git", "./runs", "./logs", "__pycache__", ".ruff_cache", "*.pyc")
# Default runtime image per TPU generation (Cloud TPU docs); --version overrides.
RUNTIME_VERSIONS = {
    "v2": "tpu-ubuntu2204-base",
    "v3": "tpu-ubuntu2204-base",
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}


@dataclasses.dataclass(frozen=True)
class Target:
    """Which TPU VM: name, zone, optional project, and the code directory on its workers."""

    name: str
    zone: str
    project: str = ""
    code_dir: str = CODE_DIR


def gcloud(verb: str, target: Target, *flags: str, positionals: list[str] | None = None) -> Command:
    """`gcloud compute tpus tpu-vm <verb> NAME --zone=Z [--project=P] flags...` (scp's
    positionals are SRC NAME:DEST instead of NAME)."""
    positionals = [target.name] if positionals is None else positionals
    command = ["gcloud", "compute", "tpus", "tpu-vm", verb, *positionals, f"--zone={target.zone}"]
    if target.project:
        command.append(f"--project={target.project}")
    return command + list(flags)


def ssh_all(target: Target, script: str, worker: str = "all") -> Command:
    """Runs `script` in the code directory on every worker (or one: --worker=N)."""
    remote = f'cd "$HOME"/{shlex.quote(target.code_dir)} && {{ {script}; }}'
    return gcloud("ssh", target, f"--worker={worker}", f"--command={remote}")


# ----------------------------------------------------------------------------- subcommands


def runtime_version(accelerator_type: str) -> str:
    """The default software image for an accelerator type like v4-8 or v5litepod-16."""
    generation = accelerator_type.split("-", 1)[0]
    if generation not in RUNTIME_VERSIONS:
        raise UserError(
            f"no default --version for accelerator type {accelerator_type!r}; pass "
            f"--version=<runtime image> (known generations: {', '.join(RUNTIME_VERSIONS)})"
        )
    return RUNTIME_VERSIONS[generation]


def create_commands(target: Target, accelerator_type: str, version: str, spot: bool) -> list:
    """The TPU VM creation command."""
    extra = [f"--accelerator-type={accelerator_type}", f"--version={version}"]
    return [gcloud("create", target, *extra, *(["--spot"] if spot else []))]


def remote_setup_script(python: str) -> str:
    """On a worker (in the code dir): tmux and `python` if missing, then the pinned venv."""
    py = shlex.quote(python)
    install_python = (
        f"echo {shlex.quote(f'error: {python} not found on this worker')} >&2 && exit 1"
    )
    if python.startswith("python3."):  # Ubuntu 22.04 images ship 3.10; the project needs 3.11+
        install_python = (
            "sudo add-apt-repository -y ppa:deadsnakes/ppa && sudo apt-get update -q && "
            f"sudo apt-get install -y -q {py} {shlex.quote(python + '-venv')}"
        )
    steps: list[Command | str] = [
        "(command -v tmux >/dev/null || "
        "(sudo apt-get update -q && sudo apt-get install -y -q tmux))",
        f"(command -v {py} >/dev/null || ({install_python}))",
        *common.venv_commands(python, ".venv", "tpu"),
        [VENV_PYTHON, "-c", "import jax; print(jax.process_index(), jax.device_count())"],
    ]
    return common.and_chain(steps)


def setup_commands(target: Target, python: str, git: str, ref: str) -> list[Command]:
    """Copy the code to every worker (tarball over scp, or git clone) and build the venv there."""
    code = shlex.quote(target.code_dir)
    if git:
        fetch = (
            f'cd "$HOME" && (test -d {code}/.git || git clone -q {shlex.quote(git)} {code})'
            f" && git -C {code} fetch -q origin {shlex.quote(ref)}"
            f" && git -C {code} checkout -q --detach FETCH_HEAD"
        )
        ssh = gcloud("ssh", target, "--worker=all", f"--command={fetch} && cd {code} && "
                     f"{remote_setup_script(python)}")  # fmt: skip
        return [ssh]
    tarball = os.path.join(tempfile.gettempdir(), f"{target.name}-{TARBALL}")
    tar = ["tar", "-czf", tarball, *[f"--exclude={e}" for e in TAR_EXCLUDES], "-C",
           common.REPO_ROOT, "."]  # fmt: skip
    scp = gcloud("scp", target, "--worker=all", positionals=[tarball, f"{target.name}:{TARBALL}"])
    unpack = (
        f'cd "$HOME" && mkdir -p {code} && tar -xzf {TARBALL} -C {code} && rm -f {TARBALL}'
        f" && cd {code} && {remote_setup_script(python)}"
    )
    return [tar, scp, gcloud("ssh", target, "--worker=all", f"--command={unpack}")]


def worker_log(session: str) -> str:
    """Each worker's log (a shell word, expanded on the worker): logs/<session>-<hostname>.log;
    with no session, a glob over every session's log of that worker."""
    return f"logs/{session or '*'}-$(hostname).log"


def run_commands(
    target: Target, session: str, jobs: list[Command], env: dict[str, str] | None = None
) -> list[Command]:
    """Starts `jobs` (one after another) on every worker in a detached tmux session."""
    return [ssh_all(target, common.start_detached(session, jobs, worker_log(session), env))]


# ----------------------------------------------------------------------------- compile check


def compile_check_command(
    accelerator_type: str, config_args: list[str], finetune: bool = False
) -> Command:
    """This machine's `python -m electra_jax.compile_check` for the slice: the job's --config
    (as --finetune-config for a fine-tuning job) and --config.FIELD=VALUE flags, nothing else
    (no data, no workdir)."""
    overrides, rest = split_overrides(config_args)
    flag = "--finetune-config=" if finetune else "--config="
    config = [flag + a.removeprefix("--config=") for a in rest if a.startswith("--config=")]
    return [sys.executable, "-m", "electra_jax.compile_check", *config,
            *(CONFIG_PREFIX + o for o in overrides), f"--topology={accelerator_type}"]  # fmt: skip


def describe_accelerator_type(target: Target) -> str:
    """The accelerator type of an existing TPU VM (one gcloud call), for `run`'s check."""
    command = gcloud("describe", target, "--format=value(acceleratorType)")
    print(f"+ {common.format_command(command)}", flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        result = None
    kind = result.stdout.strip().rsplit("/", 1)[-1] if result and result.returncode == 0 else ""
    if not kind:
        raise UserError(
            f"cannot read the accelerator type of TPU VM {target.name} for the compile check; "
            "pass --accelerator-type=TYPE (e.g. v4-8) or --skip-compile-check"
        )
    return kind


def check_first(args, config_args: list[str], what: str) -> list[Command]:
    """[the compile check] when there is a config to check and it is not skipped."""
    if args.skip_compile_check:
        return []
    if not any(a.startswith("--config=") for a in config_args):
        note(f"no --config given: nothing to compile-check before {what}")
        return []
    if not args.accelerator_type:
        note("the compile check needs --accelerator-type (a real run asks gcloud for it)")
        return []
    finetune = getattr(args, "job", "") == "finetune"
    return [compile_check_command(args.accelerator_type, config_args, finetune)]


# ----------------------------------------------------------------------------- entry point


def build_parser() -> ArgumentParser:
    """The `create|setup|run|status|logs|stop|delete NAME --zone=Z` command line."""
    parser = ArgumentParser(
        prog="python launch/tpu_vm.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    common.add_dry_run(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "create": "create the TPU VM", "setup": "copy the code, build the venv on all workers",
        "run": "run a job on all workers in tmux", "status": "is the job running (all workers)",
        "logs": "tail each worker's log", "stop": "kill the tmux session on all workers",
        "delete": "delete the TPU VM",
    }  # fmt: skip
    for name, help_text in helps.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("name", help="TPU VM name")
        p.add_argument("--zone", required=True, help="e.g. us-central2-b")
        p.add_argument("--project", default="", help="GCP project (default: gcloud's)")
        p.add_argument("--code-dir", default=CODE_DIR, help="code directory under ~ on workers")
        common.add_dry_run(p)
        if name == "run":
            p.add_argument("--session", default="", help="tmux session name (default: the job)")
        elif name == "stop":
            p.add_argument("--session", required=True, help="tmux session (`run`'s job name)")
        elif name in ("status", "logs"):
            p.add_argument("--session", default="", help="tmux session (default: all / newest)")
        if name in ("create", "run"):
            p.add_argument(
                "--skip-compile-check", action="store_true",
                help="do not compile the job's step for the slice here first",
            )  # fmt: skip
        if name == "run":
            p.add_argument("--accelerator-type", default="", help="for the check (default: ask)")
        if name == "create":
            p.add_argument("--accelerator-type", required=True, help="e.g. v4-8, v5litepod-16")
            p.add_argument("--config", default="", help="check this config fits (FILE:ARG)")
            p.add_argument("--version", default="", help="runtime image (default: per type)")
            p.add_argument("--spot", action="store_true", help="spot (preemptible) capacity")
        elif name == "setup":
            p.add_argument("--python", default="python3.11", help="interpreter for the venv")
            p.add_argument("--git", default="", help="clone this repository URL instead of scp")
            p.add_argument("--ref", default="main", help="with --git: branch, tag or commit")
        elif name == "logs":
            p.add_argument("--lines", type=int, default=50, help="lines of each worker's log")
            p.add_argument("--follow", action="store_true", help="keep printing (tail -F)")
            p.add_argument("--worker", default="all", help="all, or one worker index")
        elif name == "run":
            common.add_env(p)
            common.add_job_arguments(p)
    return parser


def commands_for(args, config_overrides: list[str] | None = None) -> list[Command]:
    """The commands of the parsed subcommand: gcloud's, after the local compile check for
    `create` (with --config and `config_overrides`) and `run` (a pretrain job)."""
    target = Target(args.name, args.zone, args.project, args.code_dir)
    session = getattr(args, "session", "") or getattr(args, "job", "")
    session = common.safe_name(session) if session else ""
    if args.command == "create":
        version = args.version or runtime_version(args.accelerator_type)
        config_args = [f"--config={args.config}"] if args.config else []
        check = check_first(args, config_args + list(config_overrides or []), "creating it")
        return check + create_commands(target, args.accelerator_type, version, args.spot)
    if args.command == "setup":
        return setup_commands(target, args.python, args.git, args.ref)
    if args.command == "run":
        common.check_job_args(args.job, args.job_args)
        job = common.job_argv(VENV_PYTHON, args.job, args.job_args)
        env = common.parse_env(args.env)  # bad input first: before the check's notes
        checked = args.job in ("pretrain", "finetune")
        check = check_first(args, args.job_args, "running it") if checked else []
        return check + run_commands(target, session, [job], env)
    if args.command == "status":
        return [ssh_all(target, common.status_script(session, worker_log(session)))]
    if args.command == "logs":
        script = common.logs_script(worker_log(session), args.lines, args.follow)
        return [ssh_all(target, script, worker=args.worker)]
    if args.command == "stop":
        return [ssh_all(target, common.stop_script(session))]
    return [gcloud("delete", target, "--quiet")]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Parses the command line and prints (--dry-run) or runs the subcommand's commands."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # `create --config=FILE:ARG` takes the config's --config.FIELD=VALUE overrides too.
    overrides = [a for a in unknown if args.command == "create" and a.startswith(CONFIG_PREFIX)]
    if len(overrides) != len(unknown):
        parser.error(
            f"unrecognized arguments: {' '.join(a for a in unknown if a not in overrides)}"
        )
    dry_run = common.is_dry_run(args)
    checked_jobs = ("pretrain", "finetune")
    checked_run = args.command == "run" and args.job in checked_jobs and not args.skip_compile_check
    if checked_run and not args.accelerator_type and not dry_run:
        common.check_job_args(args.job, args.job_args)  # its one-line errors come first
        args.accelerator_type = describe_accelerator_type(
            Target(args.name, args.zone, args.project)
        )
    common.execute(commands_for(args, overrides), dry_run)


if __name__ == "__main__":
    main()
