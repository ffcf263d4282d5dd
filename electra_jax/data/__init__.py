"""Pre-training data: corpora -> tokenized ArrayRecord shards -> grain batches.

`sources` and `pydocs` read corpora; `tokenizer`, `wordpiece_fast_path` and `vocab_training`
tokenize; `example_builder` makes examples; `shard_workers` and `dataset` write a dataset in
`dataset_format`; `loader` serves batches. Heavy imports (grain, jax, array_record,
tensorflow_datasets) stay inside the functions using them.
"""
