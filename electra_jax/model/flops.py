"""Two FLOP counts (docs/spec.md §6), named apart:

- the MFU count, `train_flops_per_token`: 6 x matmul parameters + the attention products, what
  the step's matmuls compute (both towers and the discriminator head at every position, the
  generator head at the N masked positions; lookups not counted); the trainer's MFU uses it.
- the paper count, `paper_train_flops`: the original's `flops_computation.py`, behind the paper's
  train-FLOPs figures (Table 1 / 8): every forward operation (2mn per matmul, constants per
  element for dropout, LayerNorm, GELU and softmax), dense one-hot embedding lookups, the MLM head
  on a fixed 15.625% of positions, backward = forward. `python -m electra_jax.model.flops` prints
  it for the paper's models beside the paper's figures.
"""

import dataclasses

import jax

from electra_jax.model.config import PRESETS, EncoderConfig, ModelConfig

# Dense bf16 peak FLOP/s per device (no sparsity): the first name found in device_kind wins.
PEAK_FLOPS_BY_DEVICE: dict[str, float] = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "V100": 125e12,
    "TPU v6": 918e12, "TPU v5p": 459e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v4": 275e12, "TPU v3": 123e12,
}  # fmt: skip

# flops_computation.py's forward FLOPs per activation element.
DROPOUT_FLOPS, LAYER_NORM_FLOPS, ACTIVATION_FLOPS, SOFTMAX_FLOPS = 4, 5, 8, 5
PAPER_OUTPUT_FRAC = 0.15625  # its share of positions through the MLM softmax, whatever mask_prob


def tower_matmul_params(tower: EncoderConfig, embedding_width: int) -> int:
    H, F = tower.hidden_size, tower.intermediate_size
    project = embedding_width * H if embedding_width != H else 0
    return tower.num_layers * (4 * H * H + 2 * H * F) + project


def train_flops_per_token(config: ModelConfig, seq_len: int, num_predictions: int) -> float:
    """The MFU count: forward + backward FLOPs per input token (6 per matmul weight, 12*L*H per
    layer for the two attention products)."""
    disc, gen = config.discriminator, config.generator
    towers = 2 if config.two_tower_generator else 1  # Electric: two towers, head everywhere
    head_frac = 1.0 if config.two_tower_generator else num_predictions / seq_len
    E_gen = config.generator_embedding_width
    gen_head = towers * gen.hidden_size * E_gen + E_gen * config.vocab_size
    params = towers * tower_matmul_params(gen, E_gen) + gen_head * head_frac
    attention = towers * 12 * seq_len * gen.num_layers * gen.hidden_size
    if config.electra_objective:
        params += tower_matmul_params(disc, config.embedding_size)
        params += disc.hidden_size * (disc.hidden_size + 1)
        attention += 12 * seq_len * disc.num_layers * disc.hidden_size
    return 6 * params + attention


@dataclasses.dataclass(frozen=True)
class PaperTower:
    """flops_computation.py's `TransformerHparams`: forward FLOPs of one tower over a sequence."""

    h: int  # hidden
    l: int  # noqa: E741 (layers: the original's name)
    s: int  # sequence length
    v: int  # vocabulary
    e: int  # embedding width
    i: int  # FFN width
    heads: int

    def block(self) -> float:
        """One layer. kqv = h; its attention-output LayerNorm counts 5, not 5h (as written)."""
        h, s, i, heads = self.h, self.s, self.i, self.heads
        attention = 6 * h * h + 3 * h + 2 * h * s + (SOFTMAX_FLOPS + DROPOUT_FLOPS + 1) * s * heads
        attention += 2 * h * s + 2 * h * h + h + DROPOUT_FLOPS * h + h + LAYER_NORM_FLOPS
        ffn = 2 * h * i + ACTIVATION_FLOPS * i + i + 2 * h * i + h + DROPOUT_FLOPS * h + h
        return (attention + ffn + LAYER_NORM_FLOPS * h) * s

    def embeddings(self) -> float:
        """Dense lookups (one-hot x table), position and type, LayerNorm, dropout, projection."""
        e = self.e
        flops = (
            2 * e * self.v + 2 * e * (self.s + 2) + 2 * e + (LAYER_NORM_FLOPS + DROPOUT_FLOPS) * e
        )
        if e != self.h:
            flops += 2 * self.h * e + self.h
        return flops * self.s

    def mlm_head(self, output_frac: float) -> float:
        """Dense h -> e + GELU + LayerNorm, the tied softmax, on `output_frac` of positions."""
        e, v = self.e, self.v
        per_position = 2 * e * v + 2 * self.h * e + e + (ACTIVATION_FLOPS + LAYER_NORM_FLOPS) * e
        return output_frac * (per_position + SOFTMAX_FLOPS * v + 2 * v) * self.s

    def rtd_head(self) -> float:
        """Dense h -> h + GELU, dense h -> 1, at every position."""
        return (2 * self.h * self.h + self.h + ACTIVATION_FLOPS * self.h + 2 * self.h) * self.s

    def train_flops(self, batch: int, steps: float, head: float) -> float:
        """2 x (forward of layers, embeddings and `head`) per example: backward = forward."""
        return 2 * batch * steps * (self.l * self.block() + self.embeddings() + head)


def paper_tower(config: ModelConfig, tower: EncoderConfig, seq_len: int, width: int) -> PaperTower:
    return PaperTower(
        h=tower.hidden_size, l=tower.num_layers, s=seq_len, v=config.vocab_size, e=width,
        i=tower.intermediate_size, heads=tower.num_heads,
    )  # fmt: skip


def paper_train_flops(
    config: ModelConfig, seq_len: int, batch_size: int, steps: float,
    output_frac: float = PAPER_OUTPUT_FRAC,
) -> float:  # fmt: skip
    """The paper count of a whole pre-training run: generator (a BERT baseline's one tower) with
    its MLM head, plus the discriminator with its replaced-token head
    (flops_computation.py's `get_electra_train_flops` / `get_train_flops`)."""
    gen = paper_tower(config, config.generator, seq_len, config.generator_embedding_width)
    total = gen.train_flops(batch_size, steps, gen.mlm_head(output_frac))
    if config.electra_objective:
        disc = paper_tower(config, config.discriminator, seq_len, config.embedding_size)
        total += disc.train_flops(batch_size, steps, disc.rtd_head())
    return total


# The paper's train-FLOPs figures (Table 1; Table 8 for Large) and the runs behind them:
# (name, preset, BERT baseline, sequence length, batch, steps, mask_prob, figure).
PAPER_FIGURES = (
    ("ELECTRA-Small", "small", False, 128, 128, 1_000_000, 0.15, 1.4e18),
    ("BERT-Small", "small", True, 128, 128, 1_450_000, 0.15, 1.4e18),
    ("ELECTRA-Base", "base", False, 512, 256, 766_000, 0.15, 6.4e19),
    ("ELECTRA-Large-400K", "large", False, 512, 2048, 400_000, 0.25, 7.1e20),
    ("ELECTRA-Large-1.75M", "large", False, 512, 2048, 1_750_000, 0.25, 3.1e21),
    ("BERT-Large (464K)", "large", True, 512, 2048, 464_000, 0.25, 7.1e20),
)


def paper_figures_table() -> str:
    """The paper count and the MFU count of each run in PAPER_FIGURES beside the paper's figure."""
    header = f"{'run':<20} {'paper':>7} {'paper count':>11} {'ratio':>5} {'6N+attention':>12}"
    lines = [header]
    for name, size, bert, L, B, steps, mask_prob, figure in PAPER_FIGURES:
        config = PRESETS[size].replace(electra_objective=not bert)
        paper = paper_train_flops(config, L, B, steps)
        n = int((mask_prob + 0.005) * L)  # the MFU count's masked positions (spec §2.1)
        mfu = train_flops_per_token(config, L, n) * L * B * steps
        lines.append(f"{name:<20} {figure:7.2g} {paper:11.3g} {paper / figure:5.2f} {mfu:12.3g}")
    return "\n".join(lines)


def device_peak_flops(
    device: jax.Device | None = None, override: float | None = None
) -> float | None:
    """The dense bf16 peak of `device` (None when unknown, e.g. CPU) unless overridden."""
    if override:
        return float(override)
    kind = getattr(device or jax.devices()[0], "device_kind", "").lower()
    return next((peak for name, peak in PEAK_FLOPS_BY_DEVICE.items() if name.lower() in kind), None)


if __name__ == "__main__":
    print(paper_figures_table())
