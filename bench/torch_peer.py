"""The PyTorch peer: the same ELECTRA pre-training step on Hugging Face's ELECTRA models.

    python bench/torch_peer.py [--config=configs/pretrain.py:small] [--config.FIELD=VALUE ...]
        [--steps=20 --warmup=3 --repeats=3 --window=1] [--compile]

What a user of `transformers` would write for RECIPE.md's objective, on one device, for the
config's model, `batch_size` x `max_seq_len`, `objective.mask_prob` and `dtype` (default
`configs/pretrain.py:tiny`):
  * generator `ElectraForMaskedLM` and discriminator `ElectraForPreTraining` built from the
    same shapes as our model (default attention implementation, dropout 0.1 everywhere);
    `generator.electra.embeddings = discriminator.electra.embeddings` (word, position, type
    tables and the embedding LayerNorm) and the generator's LM head tied to the shared table;
  * masking on the device as the original: N = int((p + 0.005) L) positions per row drawn with
    replacement over non-special tokens, max(1, min(N, round(p * real))) of them used, 85%
    become [MASK], the rest keep their token;
  * `ElectraForMaskedLM.forward` has no "positions" argument, so the generator's LM head runs
    over the full sequence and the logits are gathered at the masked positions for the loss
    and the sampling (ours computes the head at the N positions only);
  * Gumbel-max sampling in float32 under `no_grad`, samples written into the input, labels
    where they differ, discriminator loss over real tokens; loss = MLM + 50 x disc;
  * gradient clipping at global norm 1.0 and `torch.optim.AdamW(lr=5e-4, weight_decay=0.01)`;
  * autocast to the config's dtype unless float32; eager, or the loss under torch.compile.
Timing, summaries and FLOP counting are shared with bench/pretrain_step.py (benchlib).
"""

from __future__ import annotations

import contextlib
import json
import time
import types
from collections.abc import Callable

import ml_collections
import torch
from torch.nn import functional
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from bench import benchlib
from bench.benchlib import StepRunner
from electra_jax.convert.names import hf_config_fields
from electra_jax.errors import exit_on_user_error
from electra_jax.model.config import EncoderConfig, ModelConfig
from electra_jax.model.flops import device_peak_flops, train_flops_per_token
from electra_jax.train.objective import max_predictions_per_seq

DISC_WEIGHT = 50.0
LEARNING_RATE, WEIGHT_DECAY, CLIP_NORM = 5e-4, 0.01, 1.0
AutocastFactory = Callable[[], contextlib.AbstractContextManager]


def torch_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def hf_config(cfg: ModelConfig, tower: EncoderConfig) -> ElectraConfig:
    """An HF ElectraConfig with one tower's shape and the shared embedding settings."""
    return ElectraConfig(**hf_config_fields(cfg, tower), pad_token_id=benchlib.PAD_ID)


def build_models(
    cfg: ModelConfig, device: torch.device
) -> tuple[ElectraForMaskedLM, ElectraForPreTraining]:
    """Generator and discriminator sharing the embedding block, LM head tied to its table."""
    generator = ElectraForMaskedLM(hf_config(cfg, cfg.generator))
    discriminator = ElectraForPreTraining(hf_config(cfg, cfg.discriminator))
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight
    return generator.to(device).train(), discriminator.to(device).train()


def unique_parameters(*modules: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Every parameter once (the shared embeddings appear in both models)."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for param in module.parameters():
            seen.setdefault(id(param), param)
    return list(seen.values())


def mask_inputs(
    ids: torch.Tensor, input_mask: torch.Tensor, mask_prob: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The original's dynamic masking: (masked ids, positions [B, N], weights, targets)."""
    B, L = ids.shape
    N = max_predictions_per_seq(L, mask_prob)
    special = (ids == benchlib.CLS_ID) | (ids == benchlib.SEP_ID) | (ids == benchlib.MASK_ID)
    candidates = ((input_mask > 0) & ~special).float()
    positions = torch.multinomial(candidates, N, replacement=True)
    count = torch.round(input_mask.sum(-1).float() * mask_prob).clamp(1, N)
    weights = (torch.arange(N, device=ids.device)[None, :] < count[:, None]).float()
    positions = positions * weights.long()  # unused slots point at position 0
    targets = torch.gather(ids, 1, positions)
    to_mask = (torch.rand(B, N, device=ids.device) < 0.85) & (weights > 0)
    # A position drawn twice is masked if either draw chose [MASK], as in the original.
    is_masked = torch.zeros_like(ids).scatter_reduce(1, positions, to_mask.long(), reduce="amax")
    masked_ids = torch.where(is_masked > 0, torch.full_like(ids, benchlib.MASK_ID), ids)
    return masked_ids, positions, weights, targets


def gumbel_sample(logits: torch.Tensor) -> torch.Tensor:
    """Gumbel-max sample per row, float32, no gradient."""
    with torch.no_grad():
        logits = logits.float()
        uniform = torch.rand_like(logits)
        return torch.argmax(logits - torch.log(-torch.log(uniform + 1e-9) + 1e-9), dim=-1)


def peer_outputs(
    generator: ElectraForMaskedLM,
    discriminator: ElectraForPreTraining,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    mask_prob: float,
    autocast: AutocastFactory,
) -> dict[str, torch.Tensor]:
    """One batch through the objective: MLM and disc losses, disc logits and labels [B, L]."""
    ids, input_mask, segments = batch
    masked_ids, positions, weights, targets = mask_inputs(ids, input_mask, mask_prob)
    with autocast():
        logits_BxLxV = generator(masked_ids, input_mask, segments).logits
    index = positions[..., None].expand(-1, -1, logits_BxLxV.shape[-1])
    logits_BxNxV = torch.gather(logits_BxLxV, 1, index).float()
    token_losses = functional.cross_entropy(logits_BxNxV.transpose(1, 2), targets, reduction="none")
    mlm = (weights * token_losses).sum() / (weights.sum() + 1e-6)
    samples = gumbel_sample(logits_BxNxV)
    fake_ids = ids.scatter(1, positions, torch.where(weights > 0, samples, targets))
    labels = ((fake_ids != ids) & (input_mask > 0)).float()
    with autocast():
        disc_logits = discriminator(fake_ids, input_mask, segments).logits.float()
    per_token = functional.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none")
    real = input_mask.float()
    disc = (real * per_token).sum() / (real.sum() + 1e-6)
    return {"mlm": mlm, "disc": disc, "disc_logits": disc_logits, "labels": labels}


def make_loss_fn(
    generator: ElectraForMaskedLM,
    discriminator: ElectraForPreTraining,
    mask_prob: float,
    autocast: AutocastFactory,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Total loss MLM + 50 x disc of one batch (the function torch.compile wraps)."""

    def loss_fn(ids: torch.Tensor, input_mask: torch.Tensor, segments: torch.Tensor):
        out = peer_outputs(generator, discriminator, (ids, input_mask, segments), mask_prob,
                           autocast)  # fmt: skip
        return out["mlm"] + DISC_WEIGHT * out["disc"]

    return loss_fn


def autocast_for(device: torch.device, dtype: str) -> AutocastFactory:
    """A no-op context for float32, else autocast to `dtype` on the device."""
    if dtype == "float32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=getattr(torch, dtype))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return benchlib.cpu_name()


def peak_memory_fn(device: torch.device) -> Callable[[], int | None]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return lambda: torch.cuda.max_memory_allocated(device)
    return lambda: None


def build_peer(config: ml_collections.ConfigDict, compile: bool = False) -> StepRunner:
    """The HF step for `config` on one device, eager or with the loss under torch.compile,
    ready to time."""
    torch.manual_seed(config.seed)
    device = torch_device()
    dtype, shape, cfg = config.dtype, benchlib.shape_of(config), benchlib.step_configs(config)[0]
    generator, discriminator = build_models(cfg, device)
    params = unique_parameters(generator, discriminator)
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    loss_fn = make_loss_fn(generator, discriminator, shape.mask_prob, autocast_for(device, dtype))
    if compile:
        loss_fn = torch.compile(loss_fn)
    batch = benchlib.synthetic_batch(cfg.vocab_size, shape.batch, shape.seq)
    ids, input_mask, segments = (
        torch.from_numpy(batch[k]).long().to(device)
        for k in ("input_ids", "input_mask", "segment_ids")
    )
    holder: dict[str, torch.Tensor] = {}

    def call() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(ids, input_mask, segments)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        optimizer.step()
        holder["loss"] = loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    call()  # first call: torch.compile traces and compiles here
    sync()
    first_call_s = time.perf_counter() - start
    name = device_name(device)
    num_predictions = max_predictions_per_seq(shape.seq, shape.mask_prob)
    return StepRunner(
        impl="peer compiled" if compile else "peer eager",
        shape=shape,
        dtype=dtype,
        call=call,
        sync=sync,
        last_loss=lambda: holder["loss"].float().cpu().numpy(),
        peak_memory_bytes=peak_memory_fn(device),
        # The same useful FLOPs as ours (the peer's extra full-sequence LM head not counted):
        # MFU ratios then equal tokens/s ratios.
        flops_per_token=train_flops_per_token(cfg, shape.seq, num_predictions),
        peak_flops=device_peak_flops(
            types.SimpleNamespace(device_kind=name), config.peak_flops or None
        ),
        device=name,
        info={
            "attention": generator.config._attn_implementation,
            "compile_s": first_call_s,
            "torch": torch.__version__,
        },
    )


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = benchlib.config_parser("torch_peer.py", __doc__)
    benchlib.add_timing_args(parser)
    parser.add_argument("--compile", action="store_true", help="the loss under torch.compile")
    args, [(spec, config)] = benchlib.parse_config_args(parser, argv)
    runner = build_peer(config, args.compile)
    row = benchlib.run_benchmark(runner, args.steps, args.warmup, args.repeats, args.window)
    print(json.dumps({"config": spec, "overrides": args.overrides, **row}, indent=2))


if __name__ == "__main__":
    main()
