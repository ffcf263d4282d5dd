r"""Single-node GPU launcher, run on the GPU machine itself: build a venv with jax[cuda12] at
requirements.txt's jax version, run a job detached in tmux with a log file, watch it, stop it.
Every subcommand takes --dry-run (print the exact commands, one per line).

  python launch/gpu.py setup                       # .venv with jax[cuda12]==<pinned> + requirements
  python launch/gpu.py run pretrain --config=configs/pretrain.py:small --workdir=runs/small \
      --config.data.dir=data/owt-128
  python launch/gpu.py status
  python launch/gpu.py logs --session=pretrain --follow
  python launch/gpu.py stop --session=pretrain

Commands run in the repository root; the job's output goes to logs/<session>.log. Launcher
flags go before the job name; everything after it is the job's own flags. Environment
variables the job needs (CUDA_VISIBLE_DEVICES, XLA_FLAGS) go in --env: a tmux server that was
already running does not see the launching shell's environment.
"""

from __future__ import annotations

import argparse

from electra_jax.cli import ArgumentParser
from electra_jax.errors import exit_on_user_error
from launch import common
from launch.common import Command

CUDA_EXTRAS = ("cuda12", "cuda13")  # jax's pip extras: the CUDA major version of the wheels


def session_log(session: str) -> str:
    """The job's log, relative to the repository root (a glob over all logs with no session)."""
    return f"logs/{session or '*'}.log"


def setup_commands(python: str, venv: str, cuda: str) -> list[Command]:
    """The venv with jax[<cuda>] at the pinned version, then a check that jax sees the GPUs."""
    check = "import jax; print(jax.devices())"
    return [*common.venv_commands(python, venv, cuda), [f"{venv}/bin/python", "-c", check]]


def commands_for(args) -> list[Command]:
    """The (local) commands of the parsed subcommand, run in the repository root."""
    session = getattr(args, "session", "") or getattr(args, "job", "")
    session = common.safe_name(session) if session else ""
    if args.command == "setup":
        return setup_commands(args.python, args.venv, args.cuda)
    if args.command == "run":
        common.check_job_args(args.job, args.job_args)
        job = common.job_argv(f"{args.venv}/bin/python", args.job, args.job_args)
        env = common.parse_env(args.env)
        return [["bash", "-c", common.start_detached(session, [job], session_log(session), env)]]
    if args.command == "status":
        return [["bash", "-c", common.status_script(session, session_log(session))]]
    if args.command == "logs":
        return [["bash", "-c", common.logs_script(session_log(session), args.lines, args.follow)]]
    return [["bash", "-c", common.stop_script(session)]]


def build_parser() -> ArgumentParser:
    """The `setup|run|status|logs|stop` command line."""
    parser = ArgumentParser(
        prog="python launch/gpu.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_dry_run(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "setup": "create the venv with the pinned jax[cuda]", "run": "run a job in tmux",
        "status": "is the job running", "logs": "tail the job's log", "stop": "kill its session",
    }  # fmt: skip
    for name, help_text in helps.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        common.add_dry_run(p)
        if name in ("setup", "run"):
            p.add_argument("--venv", default=".venv", help="virtual environment directory")
        if name == "setup":
            p.add_argument("--python", default="python3.11", help="interpreter for the venv")
            p.add_argument("--cuda", default="cuda12", choices=CUDA_EXTRAS, help="jax extra")
        elif name == "run":
            p.add_argument("--session", default="", help="tmux session name (default: the job)")
            common.add_env(p)
            common.add_job_arguments(p)
        elif name == "stop":
            p.add_argument("--session", required=True, help="tmux session (`run`'s job name)")
        else:
            p.add_argument("--session", default="", help="tmux session (default: all / newest)")
        if name == "logs":
            p.add_argument("--lines", type=int, default=50, help="lines of the log to show")
            p.add_argument("--follow", action="store_true", help="keep printing (tail -F)")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Parses the command line and prints (--dry-run) or runs the subcommand's commands."""
    args = build_parser().parse_args(argv)
    common.execute(commands_for(args), common.is_dry_run(args), cwd=common.REPO_ROOT)


if __name__ == "__main__":
    main()
