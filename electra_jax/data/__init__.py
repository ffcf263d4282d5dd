"""Pre-training data: corpora -> tokenised, packed ArrayRecord shards -> grain batches.

Modules, one job each:
  sources          corpus specs (files/globs, `tfds:NAME`, `builtin:pydocs`) -> raw text chunks
  pydocs           the built-in offline corpus from the standard library's docstrings
  decode           bytes -> sentences per document, counting replaced bytes and dropped lines
  example_builder  sentences -> [CLS] A [SEP] B [SEP] examples (the original's rules)
  records          the fixed-size binary record stored per example
  vocab_training   WordPiece / SentencePiece vocabulary training with fixed special ids
  sentencepiece_tokenizer  a SentencePiece model behind the `Tokenizer` protocol
  meta             meta.json: reading and checking against the model config
  pipeline         prepare_dataset / ensure_builtin_dataset (parallel, resumable)
  show             printing examples (decoded with segment markers, or JSON lines)
  loader           grain loaders for training (shuffled, per host, checkpointable) and eval

Heavy imports (grain, jax, tensorflow_datasets) stay inside the modules that need them.
"""
