"""Pre-training data: corpora -> tokenized ArrayRecord shards -> grain batches.

Modules, one job each:
  sources            corpus specs (files/globs, `tfds:NAME`, `builtin:pydocs`) -> raw text blobs
  pydocs             the built-in offline corpus from the standard library's docstrings
  decode             bytes -> sentences per document, counting replaced bytes and dropped lines
  tokenizer_protocol the special tokens and the `Tokenizer` protocol every tokenizer follows
  tokenizer          WordPiece tokenizer and `load_tokenizer` (WordPiece or SentencePiece)
  wordpiece_fast_path  the per-word memo in front of the Rust WordPiece tokenizer
  sentencepiece_tokenizer  a SentencePiece model behind the `Tokenizer` protocol
  vocab_training     WordPiece / SentencePiece vocabulary training with fixed special ids
  example_builder    sentences -> [CLS] A [SEP] B [SEP] examples (the original's rules)
  packing            sequence packing: several examples per row (`prepare --pack`)
  dataset_format     the stored record, ArrayRecord files, and meta.json (read once, passed on)
  shard_workers      corpus chunks -> shards in a process pool (deterministic, resumable)
  dataset            prepare_dataset / ensure_builtin_dataset: shards -> train/eval + meta.json
  show               printing examples (decoded with segment markers, or JSON lines)
  loader             grain loaders for training (shuffled, per host, checkpointable) and eval

Heavy imports (grain, jax, tensorflow_datasets, array_record) stay inside the functions that
need them.
"""
