"""electra_jax: ELECTRA pre-training and fine-tuning in JAX/Flax."""
