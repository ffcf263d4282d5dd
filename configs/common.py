"""Config pieces shared by the pre-training and fine-tuning configs."""

from __future__ import annotations

import ml_collections

from electra_jax.train.optimizer import OptimizerConfig


def optimizer_config() -> ml_collections.ConfigDict:
    """The optimiser's switches with the original's defaults (from `OptimizerConfig`):
    Adam b1/b2/eps, global-norm clip, no bias correction, overlapping warm-up and decay."""
    defaults = OptimizerConfig()
    c = ml_collections.ConfigDict()
    c.b1 = defaults.b1
    c.b2 = defaults.b2
    c.eps = defaults.eps
    c.clip_norm = defaults.clip_norm
    c.bias_correction = defaults.bias_correction  # the original: False
    c.schedule = defaults.schedule  # the original: "overlap"
    return c
