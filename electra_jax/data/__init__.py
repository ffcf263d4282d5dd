"""Pre-training data: corpora -> tokenized ArrayRecord shards -> grain batches.

Modules, one job each:
  sources              corpus specs -> byte blobs -> documents of sentences (repairs counted)
  pydocs               the built-in offline corpus from the standard library's docstrings
  tokenizer            the `Tokenizer` protocol, WordPiece, SentencePiece, `load_tokenizer`
  wordpiece_fast_path  the per-word memo in front of the Rust WordPiece tokenizer
  vocab_training       WordPiece / SentencePiece training with fixed special ids
  example_builder      sentences -> [CLS] A [SEP] B [SEP] examples (the original's rules); packing
  dataset_format       the stored record, ArrayRecord files and meta.json (read once, passed on)
  shard_workers        corpus chunks -> shards in a process pool (deterministic, resumable)
  dataset              prepare_dataset / ensure_builtin_dataset: shards -> train/eval + meta.json
  loader               grain loaders for training (shuffled, per host, checkpointable) and eval
Heavy imports (grain, jax, array_record, tensorflow_datasets) stay inside the functions using them.
"""
