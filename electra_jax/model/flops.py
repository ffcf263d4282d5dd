"""Training FLOPs per token and MFU: 6 x matmul parameters + attention, over the device peak.

Counts what the step computes (docs/spec.md §8 item 7: not the original's accounting): both
towers and the discriminator head at every position, the generator head (dense + tied softmax)
only at the N masked positions. Embedding lookups are not matmuls and are not counted.
"""

import jax

from electra_jax.model.config import EncoderConfig, ModelConfig

# Dense bf16 peak FLOP/s per device (no sparsity): the first name found in device_kind wins.
PEAK_FLOPS_BY_DEVICE: dict[str, float] = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "V100": 125e12,
    "TPU v6": 918e12, "TPU v5p": 459e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v4": 275e12, "TPU v3": 123e12,
}  # fmt: skip


def tower_matmul_params(config: ModelConfig, tower: EncoderConfig) -> int:
    H, F = tower.hidden_size, tower.intermediate_size
    project = config.embedding_size * H if config.embedding_size != H else 0
    return tower.num_layers * (4 * H * H + 2 * H * F) + project


def train_flops_per_token(config: ModelConfig, seq_len: int, num_predictions: int) -> float:
    """Forward + backward FLOPs per input token (6 per matmul weight, 12*L*H per layer for
    the two attention products)."""
    disc, gen = config.discriminator, config.generator
    masked_frac = num_predictions / seq_len
    gen_head = gen.hidden_size * config.embedding_size + config.embedding_size * config.vocab_size
    params = tower_matmul_params(config, gen) + gen_head * masked_frac
    attention = 12 * seq_len * gen.num_layers * gen.hidden_size
    if config.electra_objective:
        params += tower_matmul_params(config, disc) + disc.hidden_size * (disc.hidden_size + 1)
        attention += 12 * seq_len * disc.num_layers * disc.hidden_size
    return 6 * params + attention


def device_peak_flops(
    device: jax.Device | None = None, override: float | None = None
) -> float | None:
    """The dense bf16 peak of `device` (None when unknown, e.g. CPU) unless overridden."""
    if override:
        return float(override)
    kind = getattr(device or jax.devices()[0], "device_kind", "").lower()
    return next((peak for name, peak in PEAK_FLOPS_BY_DEVICE.items() if name.lower() in kind), None)
