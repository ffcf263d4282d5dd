"""GPU-only checks: cuDNN flash attention (`attention_impl="cudnn"`) computes what the exact
path computes, forward and gradients, on padded and on packed rows (whose [B, 1, L, L] mask
cuDNN takes as a bias). Exits non-zero on a mismatch.

    python bench/gpu_checks.py [--size=small] [--batch=8] [--seq=128]

The CPU test suite cannot run cuDNN; `gpu_session.sh attention` runs this before timing it.
Criterion: against a float32 exact reference, the bfloat16 cuDNN logits (and parameter
gradients of their sum, as a relative L2 error) may be off by at most twice the bfloat16 exact
path's own error plus 0.01.
"""

from __future__ import annotations

import argparse
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from electra_jax.model.config import preset
from electra_jax.model.electra import ElectraModel, init_params


def rows(vocab_size: int, batch: int, seq: int, packed: bool) -> dict[str, np.ndarray]:
    """Random rows with padding (lengths seq/2..seq); `packed` splits each into two examples."""
    rng = np.random.default_rng(0)
    lengths_B = rng.integers(seq // 2, seq + 1, batch)
    real_BxL = np.arange(seq)[None] < lengths_B[:, None]
    ids = np.where(real_BxL, rng.integers(5, vocab_size, (batch, seq)), 0).astype(np.int32)
    out = {"ids": ids, "segments": np.zeros_like(ids), "mask": real_BxL.astype(np.int32)}
    if packed:
        second_BxL = np.arange(seq)[None] >= (lengths_B // 2)[:, None]
        out["packing"] = np.where(real_BxL, 1 + second_BxL, 0).astype(np.int32)
    return out


def logits_and_gradient(size: str, impl: str, dtype, inputs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Discriminator logits [B, L] and the flattened parameter gradient of their masked sum."""
    cfg = preset(size, vocab_size=1024, attention_impl=impl)
    model = ElectraModel(cfg, dtype=dtype)
    params = nn.unbox(init_params(model, jax.random.key(0)))

    def logits(p):
        return model.apply(
            {"params": p}, inputs["ids"], inputs["segments"], inputs["mask"],
            deterministic=True, packing_ids_BxL=inputs.get("packing"),
            method=ElectraModel.discriminator_logits,
        )  # fmt: skip

    def total(p):
        return jnp.sum(logits(p) * inputs["mask"])

    out = jax.jit(lambda p: (logits(p), jax.grad(total)(p)))(params)
    flat = np.concatenate([np.ravel(np.asarray(g, np.float32)) for g in jax.tree.leaves(out[1])])
    return np.asarray(out[0], np.float32), flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args(argv)
    if jax.default_backend() != "gpu":
        print(f"gpu_checks: needs a GPU (backend is {jax.default_backend()})", file=sys.stderr)
        return 2
    failures = 0
    for packed in (False, True):
        inputs = rows(1024, args.batch, args.seq, packed)
        real_BxL = inputs["mask"] > 0
        ref_logits, ref_grad = logits_and_gradient(args.size, "exact", jnp.float32, inputs)
        errors = {}
        for impl in ("exact", "cudnn"):
            try:
                logits, grad = logits_and_gradient(args.size, impl, jnp.bfloat16, inputs)
            except Exception as e:  # an unsupported cuDNN configuration is a failure to report
                print(f"{'packed' if packed else 'padded'} rows, {impl}: FAIL ({e!r:.300})")
                failures += 1
                break
            errors[impl] = (
                np.abs(logits[real_BxL] - ref_logits[real_BxL]).max(),
                np.linalg.norm(grad - ref_grad) / np.linalg.norm(ref_grad),
            )
        if len(errors) < 2:
            continue
        for what, index in (("max |logit error|", 0), ("relative gradient error", 1)):
            exact_err, cudnn_err = errors["exact"][index], errors["cudnn"][index]
            ok = cudnn_err <= 2 * exact_err + 0.01
            failures += not ok
            print(
                f"{'packed' if packed else 'padded'} rows: {what} vs float32 exact: bf16 exact "
                f"{exact_err:.4f}, bf16 cudnn {cudnn_err:.4f}: {'ok' if ok else 'FAIL'}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
