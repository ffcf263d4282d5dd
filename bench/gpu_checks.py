"""GPU-only checks: cuDNN flash attention (`attention_impl="cudnn"`) computes what the exact
path computes, forward and gradients, on padded and on packed rows (whose [B, 1, L, L] mask
cuDNN takes as a bias). Exits non-zero on a mismatch.

    python bench/gpu_checks.py [--config=configs/pretrain.py:small] [--config.batch_size=8]
        [--config.FIELD=VALUE ...]

The model and the rows' shape (`batch_size` x `max_seq_len`) come from the config (default
small); its dtype and attention_impl do not: the check compares fixed ones.

The CPU test suite cannot run cuDNN; `gpu_session.sh attention` runs this before timing it.
Criterion: against a float32 exact reference, the bfloat16 cuDNN logits (and parameter
gradients of their sum, as a relative L2 error) may be off by at most twice the bfloat16 exact
path's own error plus 0.01.
"""

from __future__ import annotations

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bench import benchlib
from electra_jax.errors import exit_on_user_error
from electra_jax.model.config import ModelConfig
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


def logits_and_gradient(
    model_cfg: ModelConfig, impl: str, dtype, inputs: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Discriminator logits [B, L] and the flattened parameter gradient of their masked sum."""
    model = ElectraModel(model_cfg.replace(attention_impl=impl), dtype=dtype)
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


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = benchlib.config_parser("gpu_checks.py", __doc__, default="configs/pretrain.py:small")
    _, [(_, config)] = benchlib.parse_config_args(parser, argv)
    model_cfg = benchlib.step_configs(config)[0]
    if jax.default_backend() != "gpu":
        print(f"gpu_checks: needs a GPU (backend is {jax.default_backend()})", file=sys.stderr)
        return 2
    failures = 0
    for packed in (False, True):
        inputs = rows(model_cfg.vocab_size, config.batch_size, config.max_seq_len, packed)
        real_BxL = inputs["mask"] > 0
        ref_logits, ref_grad = logits_and_gradient(model_cfg, "exact", jnp.float32, inputs)
        errors = {}
        for impl in ("exact", "cudnn"):
            try:
                logits, grad = logits_and_gradient(model_cfg, impl, jnp.bfloat16, inputs)
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
