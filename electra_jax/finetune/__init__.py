"""Fine-tuning on GLUE, SQuAD and the built-in offline tasks with the paper's recipe.

Modules: `tasks` (layouts), `readers` (TSV / JSON / TFDS), `features` and `squad`
(featurisation, answer decoding), `heads` (task heads and losses), `layerwise` (layer-wise LR
decay), `metrics`, `builtin_tasks`, `outputs` (submission files), `trainer` (`run`). Entry
point: `python -m electra_jax.finetune --config=configs/finetune.py:task=rte,size=small ...`.
"""
