"""Fine-tuning on GLUE, SQuAD and the built-in offline tasks with the paper's recipe:
`python -m electra_jax.finetune --config=configs/finetune.py:task=rte,size=small ...`."""
