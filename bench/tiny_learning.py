"""Learning curves, ours vs the Hugging Face peer: `tiny` on the built-in corpus, same everything.

    python bench/tiny_learning.py --side=both --steps=1500 [--lr=2e-3 --batch=32 --seq=64]

Both sides train the faithful objective (temperature 1, MLM + 50 x disc) on the same batches of
`builtin:pydocs` (our grain loader, seed 0), with the same peak learning rate, linear warm-up
over the first 10% of steps, linear decay to 0, global-norm clip 1.0, weight decay 0.01, and
are evaluated on the same held-out batches every --eval-every steps (masked-LM loss and
discriminator AUC over all real tokens):
  * ours: `python -m electra_jax.pretrain --config=configs/pretrain.py:tiny` in a subprocess
    (AUC from its histogram, at most 1e-3 off);
  * hf: `ElectraForMaskedLM` + `ElectraForPreTraining` of the same shapes, the step of
    bench/torch_peer.py, `torch.optim.AdamW` (bias-corrected, eps 1e-6), AUC by scikit-learn.
It tells "our trainer does not learn" from "this model size does not learn in this budget".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time

from electra_jax.cli import ArgumentParser
from electra_jax.data.dataset import ensure_builtin_dataset
from electra_jax.data.loader import make_eval_batches, make_train_loader
from electra_jax.files.run_files import read_metrics
from electra_jax.model.config import preset
from launch.kill_campaign import tiny_pretrain_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVAL_BATCHES = 8


def data_dir(seq: int) -> str:

    return ensure_builtin_dataset(vocab_size=8192, max_seq_len=seq)


def run_ours(args: argparse.Namespace) -> list[dict]:
    """Our trainer on the tiny config; returns its eval rows from metrics.jsonl."""
    workdir = tempfile.mkdtemp(prefix="tiny-learning-")
    overrides = {
        "max_seq_len": args.seq, "batch_size": args.batch, "learning_rate": args.lr,
        "num_train_steps": args.steps, "warmup_steps": args.steps // 10,
        "eval_every": args.eval_every, "eval_batches": EVAL_BATCHES, "log_every": args.eval_every,
        "checkpoint_every": 10 * args.steps, "export": False, "data.dir": data_dir(args.seq),
    }  # fmt: skip
    command = tiny_pretrain_cli(workdir, overrides)
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return [
        {"step": r["step"], "eval_mlm": r["eval/masked_lm_loss"], "eval_auc": r["eval/disc_auc"]}
        for r in read_metrics(workdir)
        if "eval/disc_auc" in r
    ]


def run_hf(args: argparse.Namespace) -> list[dict]:
    """The HF peer on the same batches; returns its eval rows."""
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    # torch (an optional, heavy dependency: requirements-dev.txt) only when the peer runs
    from bench.torch_peer import DISC_WEIGHT, build_models, peer_outputs, unique_parameters

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    generator, discriminator = build_models(preset("tiny"), torch.device("cpu"))
    params = unique_parameters(generator, discriminator)
    decayed = [p for p in params if p.ndim > 1]  # not LayerNorm weights or biases
    plain = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": 0.01}, {"params": plain, "weight_decay": 0.0}],
        lr=args.lr, eps=1e-6,
    )  # fmt: skip
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, s / warmup) * max(0.0, 1.0 - s / args.steps)
    )
    directory = data_dir(args.seq)
    host = {"process_index": 0, "process_count": 1}
    train = make_train_loader(directory, global_batch_size=args.batch, seed=0, **host)
    held_out = make_eval_batches(
        directory, global_batch_size=args.batch, num_batches=EVAL_BATCHES, **host
    )

    def tensors(batch: dict) -> tuple:
        keys = ("input_ids", "input_mask", "segment_ids")
        return tuple(torch.from_numpy(np.asarray(batch[k])).long() for k in keys)

    def outputs(batch: dict) -> dict:
        return peer_outputs(generator, discriminator, tensors(batch), 0.15, torch.no_grad)

    def evaluate() -> dict:
        generator.eval(), discriminator.eval()
        torch.manual_seed(1234)  # the same masks and samples at every evaluation
        labels, scores, mlm = [], [], []
        with torch.no_grad():
            for batch in held_out:
                out = outputs(batch)
                real = torch.from_numpy(np.asarray(batch["input_mask"])) > 0
                labels.append(out["labels"][real].numpy())
                scores.append(out["disc_logits"][real].numpy())
                mlm.append(float(out["mlm"]))
        generator.train(), discriminator.train()
        auc = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
        return {"eval_mlm": float(np.mean(mlm)), "eval_auc": float(auc)}

    rows = []
    for step in range(1, args.steps + 1):
        out = peer_outputs(generator, discriminator, tensors(next(train)), 0.15,
                           contextlib.nullcontext)  # fmt: skip
        loss = out["mlm"] + DISC_WEIGHT * out["disc"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % args.eval_every == 0:
            rows.append({"step": step, **evaluate()})
            print(f"hf step {step}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = ArgumentParser(
        prog="python bench/tiny_learning.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--side", choices=("ours", "hf", "both"), default="both")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (hf side)")
    args = parser.parse_args()
    results = {}
    for side in ("ours", "hf") if args.side == "both" else (args.side,):
        start = time.time()
        results[side] = run_ours(args) if side == "ours" else run_hf(args)
        print(f"{side}: {time.time() - start:.0f} s", file=sys.stderr)
    print("| side | step | eval masked-LM loss | eval disc AUC |")
    print("|---|---|---|---|")
    for side, rows in results.items():
        for row in rows:
            print(f"| {side} | {row['step']} | {row['eval_mlm']:.3f} | {row['eval_auc']:.3f} |")


if __name__ == "__main__":
    main()
