r"""ELECTRA pre-training configs: `get_config("tiny" | "small" | "small++" | "base" | "large")`.

Commands (each from the repository root):

  # CPU, built-in offline corpus (prepared on the fly into ~/.cache/electra_jax), ~3 minutes on
  # 2 cores (measured 2026-11-29: 600 steps in 2m41s); the held-out masked-LM loss falls to 5.75
  # by step 600 (the tiny discriminator's held-out AUC stays near 0.54 at this budget: README).
  python -m electra_jax.pretrain --config=configs/pretrain.py:tiny --workdir=/tmp/electra_tiny

  # ELECTRA-Small as in the paper (1M steps, batch 128, seq 128, generator 1/4 width), from
  # shards made by `python -m electra_jax.prepare`. GLUE dev ~79.9 after fine-tuning (paper).
  # (A gs:// workdir keeps checkpoints on GCS, but config.json and metrics stay local: README.)
  python -m electra_jax.pretrain --config=configs/pretrain.py:small --workdir=runs/small \
      --config.data.dir=gs://B/data/owt-128

Sweep (`python launch/sweep.py`; an ablation of ours, not a table of the paper): the size's
peak learning rate x 0.5, 1, 2 crossed with mask_prob 0.15 and 0.25 (the paper uses 0.15 for
Small and Base, 0.25 for Large): six runs, in directories named like
`learning_rate=0.001,objective.mask_prob=0.15`, each finished when its metrics.jsonl reaches
num_train_steps; summary.md ranks them by the last held-out `eval/disc_auc` (or
--metric=eval/masked_lm_accuracy):

  python launch/sweep.py --config=configs/pretrain.py:tiny --workdir=runs/tiny-sweep --parallel=2

Argument modifiers after the size (comma-separated): `bert` (masked-LM baseline, no
discriminator; paper Table 6's steps: 1.45M small, 1M base, 464K large), `electric` (Electric,
the original's `electric_objective`: the two-tower left-to-right / right-to-left cloze generator,
`model.two_tower_generator=True`, and the noise-contrastive loss, `objective.electric=True`; the
original's other defaults, disc_weight 50 included; docs/spec.md §9), `tied_generator` (the
original's `untied_generator=False`: the generator is the discriminator network, every weight
shared, `model.untied_generator=False`), `runlocal` (few steps, for smoke-testing a big config
on one machine).

  python -m electra_jax.pretrain --config=configs/pretrain.py:small,electric --workdir=runs/electric

Any field can be overridden with `--config.a.b=value`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from configs.common import optimizer_config
from electra_jax.config_fields import section
from electra_jax.model.config import PRESETS
from electra_jax.train.objective import ObjectiveConfig

# RECIPE.md's optimisation table: lr, batch, seq len, mask prob, steps.
PAPER_TRAINING = {
    "tiny": dict(learning_rate=2e-3, batch_size=32, max_seq_len=128, mask_prob=0.15,
                 num_train_steps=600, warmup_steps=60),
    "small": dict(learning_rate=5e-4, batch_size=128, max_seq_len=128, mask_prob=0.15,
                  num_train_steps=1_000_000, warmup_steps=10_000),
    "small++": dict(learning_rate=5e-4, batch_size=128, max_seq_len=512, mask_prob=0.15,
                    num_train_steps=4_000_000, warmup_steps=10_000),
    "base": dict(learning_rate=2e-4, batch_size=256, max_seq_len=512, mask_prob=0.15,
                 num_train_steps=766_000, warmup_steps=10_000),
    "large": dict(learning_rate=2e-4, batch_size=2048, max_seq_len=512, mask_prob=0.25,
                  num_train_steps=400_000, warmup_steps=10_000),
}  # fmt: skip
# Paper Table 6: the BERT baselines train longer than ELECTRA (1.45M / 1M / 464K steps against
# 1M / 766K / 400K) for about equal compute; sizes the paper has no BERT for keep ELECTRA's.
BERT_TRAIN_STEPS = {"small": 1_450_000, "base": 1_000_000, "large": 464_000}


MODIFIERS = ("bert", "electric", "tied_generator", "runlocal")
LR_GRID = (0.5, 1.0, 2.0)  # sweep(): multiples of the size's paper learning rate
MASK_PROBS = (0.15, 0.25)  # sweep(): the paper's values for Small/Base and for Large


def sweep(arg: str = "tiny") -> list[dict]:
    """Override dicts for launch/sweep.py: learning rate x mask_prob (see the docstring)."""
    size = get_config(arg).size  # validates the argument
    lr = PAPER_TRAINING[size]["learning_rate"]
    return [
        {"learning_rate": float(f"{lr * m:.3g}"), "objective.mask_prob": p}
        for m in LR_GRID
        for p in MASK_PROBS
    ]


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    """The pre-training config for `size[,modifier...]`."""
    size, *modifiers = [a for a in arg.split(",") if a]
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r} in --config; expected one of {sorted(PRESETS)}")
    unknown = set(modifiers) - set(MODIFIERS)
    if unknown:
        raise ValueError(
            f"unknown config modifier(s) {sorted(unknown)}; expected {', '.join(MODIFIERS)}"
        )
    if "bert" in modifiers and {"electric", "tied_generator"} & set(modifiers):
        raise ValueError(
            "the bert modifier has no generator to change; drop electric/tied_generator"
        )
    paper = PAPER_TRAINING[size]
    c = ml_collections.ConfigDict()
    c.size = size
    # ModelConfig's fields (model/config.py), the original's defaults. Its switches include
    # embeddings_project_init ("glorot_uniform", the original's; "truncated_normal") and, with
    # embedding_sharing="untied", generator_embedding_size (None: the original's V x generator
    # width tables, no projection; E: V x E tables + projection, as HF generators converted
    # with --untied). docs/spec.md §1, §7.
    c.model = dataclasses.asdict(PRESETS[size])
    c.model.electra_objective = "bert" not in modifiers
    c.model.two_tower_generator = "electric" in modifiers
    c.model.untied_generator = "tied_generator" not in modifiers

    c.num_train_steps = paper["num_train_steps"]
    if "bert" in modifiers:
        c.num_train_steps = BERT_TRAIN_STEPS.get(size, c.num_train_steps)
    c.batch_size = paper["batch_size"]
    c.max_seq_len = paper["max_seq_len"]
    c.learning_rate = paper["learning_rate"]
    c.warmup_steps = paper["warmup_steps"]
    c.seed = 0
    # Random numbers for masking, dropout and sampling in training (evaluation always uses
    # threefry2x32): threefry2x32 (JAX's default: the same stream on every backend, generated
    # shard by shard) or rbg / unsafe_rbg (XLA's RngBitGenerator: fewer integer ops per number,
    # fastest on TPU; the stream differs between backends and XLA versions, and on a GPU mesh
    # every device generates the whole global array, so use them on one device or on TPU).
    c.rng_impl = "threefry2x32"

    # ObjectiveConfig's switches with the original's defaults (train/objective.py); the special
    # ids come from the data, `electra_objective` from the model. duplicate_positions: what a
    # position drawn twice receives, "floor_mean" (the original's scatter_update: floor of the
    # samples' mean) or "first" (the first slot's sample); docs/spec.md §2.2.
    c.objective = section(
        ObjectiveConfig,
        exclude=("max_predictions", "electra_objective"),
        mask_prob=paper["mask_prob"],
        electric="electric" in modifiers,
    )
    c.optimizer = optimizer_config(weight_decay=0.01)

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all remaining devices
    c.mesh.fsdp = 1
    c.mesh.num_devices = -1  # -1: every device; N: the first N (tests, debugging)

    c.dtype = "float32" if size == "tiny" else "bfloat16"  # compute; params stay float32
    c.remat = False
    c.grad_accum_steps = 1
    c.steps_per_call = 1  # K optimiser steps per jitted call (lax.scan)
    c.on_nonfinite = "stop"  # or "skip": drop the update, count it, go on
    c.nonfinite_test_step = -1  # test-only fault injection: NaN loss at this step

    c.log_every = 50 if size == "tiny" else 100
    c.eval_every = 200 if size == "tiny" else 10_000
    c.eval_batches = 8 if size == "tiny" else 50  # 0: no held-out evaluation
    c.checkpoint_every = 200 if size == "tiny" else 5_000
    c.keep_checkpoints = 3
    c.init_from = ""  # an exported model dir (convert / pre-training export)
    c.allow_schedule_change = False  # resume with another lr / steps / warm-up / schedule
    c.peak_flops = 0.0  # per device; 0 = look up device_kind (see electra_jax/model/flops.py)
    c.export = True  # write workdir/export/{discriminator,generator} at the end
    # XLA executables kept for restarts (electra_jax/train/compile_cache.py): "auto" =
    # $JAX_COMPILATION_CACHE_DIR if set, else <workdir>/xla_cache; a path or gs:// URL; "" = off
    c.compile_cache_dir = "auto"

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # prepared shards; empty with `tiny`: the built-in corpus, cached
    c.data.builtin_vocab_size = 8192
    c.data.builtin_pack = False  # `tiny` on the built-in corpus: pack it (as `prepare --pack`)
    c.data.worker_count = 0
    c.data.read_threads = 4

    if "runlocal" in modifiers:
        c.num_train_steps = 20
        c.warmup_steps = 5
        c.batch_size = 8
        c.log_every = c.eval_every = c.checkpoint_every = 10
        c.eval_batches = 2
    return c
