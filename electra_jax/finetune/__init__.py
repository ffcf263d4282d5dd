"""Fine-tuning on GLUE, SQuAD and the built-in tasks: `python -m electra_jax.finetune --help`."""
