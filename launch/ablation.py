"""The paper's Table 5 in miniature, offline: ELECTRA vs the BERT masked-LM baseline.

    python launch/ablation.py --workdir=runs/ablation [--electra-steps=1000] [--seeds=3]

Pre-trains `tiny` with the ELECTRA objective for `--electra-steps` and the BERT baseline
(`tiny,bert`: one full-size tower, masked LM only) for as many steps as cost the same training
FLOPs by the paper's count (`electra_jax.model.flops.paper_train_flops`, the original's
flops_computation.py), both on the built-in corpus; fine-tunes each, and a random
initialisation, on the built-in tasks with `--seeds` seeds; writes `WORKDIR/ablation.md` with
the median and min-max dev accuracy per task. Finished jobs are skipped on a rerun. `--dry-run`
prints the commands.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

import numpy as np

from configs.pretrain import get_config
from electra_jax.cli import ArgumentParser
from electra_jax.errors import UserError, exit_on_user_error
from electra_jax.files.model_io import MODEL_JSON
from electra_jax.files.run_files import RESULTS_FILE, read_results
from electra_jax.model.config import ModelConfig
from electra_jax.model.flops import paper_train_flops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TASKS = ("builtin_replaced", "builtin_acceptability", "builtin_continuity")


def pretrain_flops_per_step(arg: str, steps: int) -> float:
    """Training FLOPs of `steps` steps of `configs/pretrain.py:<arg>`, by the paper's count
    (`paper_train_flops`: the original's flops_computation.py, which set the paper's BERT
    baselines' steps)."""
    config = get_config(arg)
    model = ModelConfig.from_dict(config.model.to_dict())
    return paper_train_flops(model, config.max_seq_len, config.batch_size, steps)


def equal_compute_steps(electra_steps: int) -> int:
    """BERT-baseline steps that cost what `electra_steps` ELECTRA steps cost."""
    ratio = pretrain_flops_per_step("tiny", 1) / pretrain_flops_per_step("tiny,bert", 1)
    return max(1, round(electra_steps * ratio))


def pretrain_job(root: str, name: str, arg: str, steps: int) -> tuple[str, list[str]]:
    workdir = os.path.join(root, name)
    return workdir, [
        sys.executable, "-m", "electra_jax.pretrain", f"--config=configs/pretrain.py:{arg}",
        f"--workdir={workdir}", f"--config.num_train_steps={steps}",
        f"--config.warmup_steps={max(1, steps // 10)}", f"--config.eval_every={steps}",
        f"--config.checkpoint_every={steps}",
    ]  # fmt: skip


def finetune_job(root: str, init: str, init_dir: str, task: str, seeds: int) -> tuple[str, list]:
    workdir = os.path.join(root, f"ft-{init}", task)
    command = [sys.executable, "-m", "electra_jax.finetune",
               f"--config=configs/finetune.py:task={task},size=tiny", f"--workdir={workdir}",
               f"--config.seeds={seeds}"]  # fmt: skip
    if init_dir:
        command.append(f"--config.init_from={init_dir}")
    return workdir, command


def finished(workdir: str, marker: str) -> bool:
    return os.path.exists(os.path.join(workdir, marker))


def run(command: list[str], workdir: str, dry_run: bool) -> None:
    print(" ".join(shlex.quote(c) for c in command), flush=True)
    if dry_run:
        return
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "log.txt"), "a") as log:
        code = subprocess.call(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise UserError(f"job failed (exit {code}); see {workdir}/log.txt")


def seed_scores(workdir: str) -> list[float]:
    """The per-seed dev scores in a fine-tuning workdir's results.json."""
    results = read_results(workdir)
    first = next(iter(results["dev"].values()))
    return [float(s["score"]) for s in first["per_seed"]]


def table(root: str, inits: list[str], tasks: tuple[str, ...]) -> str:
    """Markdown: one row per pre-training, median [min-max] dev accuracy per task."""
    lines = ["| pre-training | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for init in inits:
        cells = []
        for task in tasks:
            workdir = os.path.join(root, f"ft-{init}", task)
            if not finished(workdir, RESULTS_FILE):
                cells.append("missing")
                continue
            s = seed_scores(workdir)
            cells.append(f"{np.median(s):.1f} [{min(s):.1f}-{max(s):.1f}], n={len(s)}")
        lines.append(f"| {init} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> ArgumentParser:
    """The ablation's flags, each described in --help."""
    parser = ArgumentParser(
        prog="python launch/ablation.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--workdir", required=True,
        help="root of every job: electra/, bert/, ft-<init>/<task>/ and ablation.md",
    )  # fmt: skip
    parser.add_argument(
        "--electra-steps", type=int, default=1000,
        help="ELECTRA pre-training steps; the BERT baseline gets as many as cost the same "
        "FLOPs (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, default=3, help="fine-tuning seeds per task and init (default: 3)"
    )
    parser.add_argument(
        "--tasks", default=",".join(TASKS),
        help="comma-separated built-in tasks to fine-tune on (default: all: "
        + ", ".join(TASKS) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="print the jobs still to run; run nothing"
    )
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """Pre-trains both models, fine-tunes them and a random init, writes WORKDIR/ablation.md."""
    args = build_parser().parse_args(argv)
    if args.electra_steps < 1 or args.seeds < 1:
        raise UserError("--electra-steps and --seeds must be at least 1")
    tasks = tuple(t for t in args.tasks.split(",") if t)
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise UserError(f"--tasks has {sorted(unknown)}; expected some of {','.join(TASKS)}")
    root = os.path.abspath(args.workdir)
    bert_steps = equal_compute_steps(args.electra_steps)
    print(f"equal compute (paper FLOPs count): ELECTRA {args.electra_steps} steps = "
          f"BERT {bert_steps} steps")  # fmt: skip
    inits = {"random": ""}
    pretrainings = (("electra", "tiny", args.electra_steps), ("bert", "tiny,bert", bert_steps))
    for name, arg, steps in pretrainings:
        workdir, command = pretrain_job(root, name, arg, steps)
        if not finished(workdir, os.path.join("export", MODEL_JSON)):
            run(command, workdir, args.dry_run)
        inits[name] = os.path.join(workdir, "export")
    for init, init_dir in inits.items():
        for task in tasks:
            workdir, command = finetune_job(root, init, init_dir, task, args.seeds)
            if not finished(workdir, RESULTS_FILE):
                run(command, workdir, args.dry_run)
    if args.dry_run:
        return
    text = table(root, list(inits), tasks)
    with open(os.path.join(root, "ablation.md.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(root, "ablation.md.tmp"), os.path.join(root, "ablation.md"))
    print(text)


if __name__ == "__main__":
    main()
