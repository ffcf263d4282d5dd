"""Architecture configuration (docs/spec.md §1): one frozen dataclass, the paper's presets and
the derived towers. Defaults are the original's."""

import dataclasses
from typing import Any, Literal, get_args

SharingMode = Literal["tied", "untied", "gdes"]
AttentionImpl = Literal["auto", "exact", "fused", "cudnn"]
ProjectInit = Literal["glorot_uniform", "truncated_normal"]


def default_num_heads(hidden_size: int) -> int:
    """The original's head count: one head per 64 hidden units, at least one."""
    return max(1, hidden_size // 64)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shape of one transformer tower (generator or discriminator)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Generator + discriminator: the original's `BertConfig` plus the pre-training switches that
    change parameter shapes."""

    vocab_size: int = 30522
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 12
    num_heads: int | None = None  # None: max(1, hidden // 64)
    intermediate_size: int | None = None  # None: 4 * hidden
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    # Generator width and depth, as fractions of the discriminator's.
    generator_hidden_size: float = 0.25
    generator_layers: float = 1.0
    # False: plain BERT masked-LM baseline (one full-size tower, no discriminator loss).
    electra_objective: bool = True
    # "tied" (the original): both towers share the word/position/type tables and the embedding
    # LayerNorm. "untied": the generator has its own. "gdes": DeBERTa-v3 gradient-disentangled
    # sharing (disc table = sg(gen table) + delta).
    embedding_sharing: SharingMode = "tied"
    # "untied" only: the width of the generator's own tables. None (the original's): the
    # generator's hidden width, no `embeddings_project`; E reads HF generators that keep an E -> G
    # projection (`convert --untied`).
    generator_embedding_size: int | None = None
    # "auto": exact attention when attention dropout is active, else jax.nn.dot_product_attention.
    # "exact": always the explicit softmax. "fused": always dot_product_attention, XLA's (no
    # attention-probability dropout: a speed switch, not faithful). "cudnn": the same through
    # cuDNN flash attention (a GPU and bfloat16/float16 compute only).
    attention_impl: AttentionImpl = "auto"
    # The E -> H `embeddings_project` kernel: "glorot_uniform" (the original's tf.layers.dense
    # default) or "truncated_normal" (stddev initializer_range, like every other kernel).
    embeddings_project_init: ProjectInit = "glorot_uniform"
    # The original's `untied_generator`: False makes the generator the discriminator network (one
    # tower, every weight shared, its own masked-LM head; the paper's "tie all weights" ablation).
    untied_generator: bool = True
    # The original's `two_tower_generator` (Electric's cloze generator, spec §9): two generator-size
    # towers, left-to-right and right-to-left, read the unmasked input; position t's cloze logits
    # come from the first at t-1 and the second at t+1, so no position sees its own token.
    two_tower_generator: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.resolved_num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_heads={self.resolved_num_heads}; pick num_heads that divides it"
            )
        literals = {
            "embedding_sharing": SharingMode, "attention_impl": AttentionImpl,
            "embeddings_project_init": ProjectInit,
        }  # fmt: skip
        for field, mode in literals.items():
            allowed, value = get_args(mode), getattr(self, field)
            if value not in allowed:
                expected = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
                raise ValueError(f"{field}={value!r}; expected {expected}")

        if self.generator_embedding_size is not None and self.embedding_sharing != "untied":
            raise ValueError(
                f"generator_embedding_size={self.generator_embedding_size} applies to "
                "embedding_sharing='untied' only; leave it None"
            )
        if not self.untied_generator and self.embedding_sharing != "tied":
            raise ValueError(
                f"untied_generator=False (the generator is the discriminator) shares every table; "
                f"embedding_sharing={self.embedding_sharing!r} needs its own: set it to 'tied'"
            )
        if self.two_tower_generator and not (self.untied_generator and self.electra_objective):
            raise ValueError(
                "two_tower_generator=True needs a separate generator (untied_generator=True, "
                "electra_objective=True), as in the original"
            )

    @property
    def generator_embedding_width(self) -> int:
        """Width of the tables the generator reads (and its softmax is tied to)."""
        if self.embedding_sharing != "untied":
            return self.embedding_size
        return self.generator_embedding_size or self.generator.hidden_size

    @property
    def generator_is_discriminator(self) -> bool:
        """The masked-LM runs on the discriminator tower: the BERT baseline, or the original's
        `untied_generator=False`."""
        return not (self.electra_objective and self.untied_generator)

    @property
    def generator_towers(self) -> tuple[str, ...]:
        """The parameter groups of the masked-LM's tower(s), its head (`generator_head`) aside."""
        if self.generator_is_discriminator:
            return ("discriminator",)
        return ("generator_ltr", "generator_rtl") if self.two_tower_generator else ("generator",)

    @property
    def resolved_num_heads(self) -> int:
        return self.num_heads or default_num_heads(self.hidden_size)

    @property
    def discriminator(self) -> EncoderConfig:
        """The discriminator tower (also the single tower of the BERT baseline)."""
        ffn = self.intermediate_size or 4 * self.hidden_size
        return EncoderConfig(self.num_layers, self.hidden_size, self.resolved_num_heads, ffn)

    @property
    def generator(self) -> EncoderConfig:
        """The generator tower (each of the two with `two_tower_generator`); the BERT baseline's
        and a tied generator's (`untied_generator=False`) is the discriminator tower."""
        if self.generator_is_discriminator:
            return self.discriminator
        hidden = max(1, round(self.hidden_size * self.generator_hidden_size))
        layers = max(1, round(self.num_layers * self.generator_layers))
        return EncoderConfig(layers, hidden, default_num_heads(hidden), 4 * hidden)

    def replace(self, **overrides: Any) -> "ModelConfig":
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"unknown model config field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


PRESETS: dict[str, ModelConfig] = {
    # CPU tests and the quickstart: E != H, two layers, a small vocabulary.
    "tiny": ModelConfig(
        vocab_size=8192,
        embedding_size=32,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=128,
        generator_hidden_size=0.5,
    ),
    "small": ModelConfig(embedding_size=128, hidden_size=256, num_layers=12),
    "small++": ModelConfig(
        embedding_size=128, hidden_size=256, num_layers=12, generator_hidden_size=1.0
    ),
    "base": ModelConfig(
        embedding_size=768, hidden_size=768, num_layers=12, generator_hidden_size=1.0 / 3.0
    ),
    "large": ModelConfig(embedding_size=1024, hidden_size=1024, num_layers=24),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """Returns the named preset with field overrides applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown model size {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
