"""Config pieces shared by the pre-training and fine-tuning configs."""

from __future__ import annotations

import ml_collections

from electra_jax.config_fields import section
from electra_jax.train.optimizer import OptimizerConfig

# Set per run, not per optimiser: the run's learning rate, step count and warm-up; the rest of
# OptimizerConfig's fields (Adam b1/b2/eps, clip_norm, bias_correction, schedule, weight_decay)
# are the `optimizer` section, with the original's defaults.
RUN_LEVEL_FIELDS = ("learning_rate", "num_train_steps", "warmup_steps")


def optimizer_config(**overrides: float) -> ml_collections.ConfigDict:
    """The `optimizer` section: OptimizerConfig's switches with the original's defaults."""
    return section(
        OptimizerConfig,
        exclude=(*RUN_LEVEL_FIELDS, "end_learning_rate", "power", "no_decay_pattern"),
        **overrides,
    )
