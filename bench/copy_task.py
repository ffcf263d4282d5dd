"""Diagnostic: can a tiny encoder learn to copy? Ours vs Hugging Face's, same shapes and data.

Each row is [CLS] a a [SEP] with `a` 31 random tokens (vocabulary 512), 15% of positions
masked. Every masked token can be read off its twin 31 positions away, so a model that
learns positional attention drives the masked-LM loss far below ln(502) = 6.22. Used to tell
an attention bug from the slow start of small post-LN BERT models (both sides plateau alike).

    python bench/copy_task.py --side=ours --steps=500
    python bench/copy_task.py --side=hf --steps=500
"""

from __future__ import annotations

import time

from electra_jax.cli import ArgumentParser
from electra_jax.model.config import PRESETS
from electra_jax.model.electra import ElectraModel, init_params
from electra_jax.train.objective import ObjectiveConfig, pretrain_forward

VOCAB, HALF, BATCH, MASK_ID = 512, 31, 32, 4


def run_ours(steps: int, lr: float, dropout: float) -> list[float]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    cfg = PRESETS["tiny"].replace(vocab_size=VOCAB, electra_objective=False,
                                  hidden_dropout=dropout, attention_dropout=dropout)  # fmt: skip
    model = ElectraModel(cfg)
    params = nn.unbox(init_params(model, jax.random.key(0)))
    objective = ObjectiveConfig(cls_id=2, sep_id=3, mask_id=MASK_ID, electra_objective=False)
    tx = optax.adamw(lr)
    opt = tx.init(params)

    def batch(rng: jax.Array) -> dict:
        a = jax.random.randint(rng, (BATCH, HALF), 10, VOCAB)
        ids = jnp.concatenate([jnp.full((BATCH, 1), 2), a, a, jnp.full((BATCH, 1), 3)], 1)
        return {"input_ids": ids, "input_mask": jnp.ones_like(ids),
                "segment_ids": jnp.zeros_like(ids)}  # fmt: skip

    @jax.jit
    def step(params, opt, rng):
        data_rng, mask_rng = jax.random.split(rng)
        loss_fn = lambda p: pretrain_forward(p, batch(data_rng), mask_rng, model=model,
                                             cfg=objective)[0]  # fmt: skip
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    losses = []
    for i in range(steps):
        params, opt, loss = step(params, opt, jax.random.key(i + 1))
        losses.append(float(loss))
    return losses


def run_hf(steps: int, lr: float, dropout: float) -> list[float]:
    import torch
    from transformers import ElectraConfig, ElectraForMaskedLM

    torch.manual_seed(0)
    cfg = ElectraConfig(vocab_size=VOCAB, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=256,
                        max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)  # fmt: skip
    model = ElectraForMaskedLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        a = torch.randint(10, VOCAB, (BATCH, HALF))
        ids = torch.cat([torch.full((BATCH, 1), 2), a, a, torch.full((BATCH, 1), 3)], 1)
        selected = torch.rand(ids.shape) < 0.15
        selected[:, 0] = selected[:, -1] = False
        inputs = torch.where(selected, torch.full_like(ids, MASK_ID), ids)
        labels = torch.where(selected, ids, torch.full_like(ids, -100))
        loss = model(input_ids=inputs, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main() -> None:
    parser = ArgumentParser(prog="python bench/copy_task.py", description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["ours", "hf"], default="ours")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.0)
    args = parser.parse_args()
    start = time.time()
    losses = (run_ours if args.side == "ours" else run_hf)(args.steps, args.lr, args.dropout)
    for end in range(100, len(losses) + 1, 100):
        window = losses[end - 50 : end]
        print(f"{args.side} step {end}: mean loss of the last 50 steps {sum(window) / 50:.3f}")
    print(f"{args.side}: {args.steps} steps in {time.time() - start:.0f}s (ln(502) = 6.22)")


if __name__ == "__main__":
    main()
