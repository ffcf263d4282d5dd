"""Pre-training data: corpora -> tokenized ArrayRecord shards -> grain batches (ARCHITECTURE.md).
Heavy imports (grain, jax, array_record, tensorflow_datasets) stay in the functions using them."""
