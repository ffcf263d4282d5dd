"""Random, offline Hugging Face ELECTRA models and inputs shared by the conversion tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()

WORDS = "the a chef cooked ate meal dog cat sat on mat quickly ran home ##s ##ed and to of in"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS.split()]
VOCAB_SIZE = 40  # larger than the word list: ids past it are valid model inputs
COMMON = dict(
    vocab_size=VOCAB_SIZE,
    embedding_size=24,  # E != H for both towers: both have embeddings_project
    max_position_embeddings=32,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    hidden_act="gelu",
    pad_token_id=0,
)
# Non-default heads (4, not 64 // 64) and FFN (96, not 4 x 64) exercise explicit config fields;
# the generator is 1/2 the width and 2/3 the depth, with the original's derived heads and FFN.
DISC = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96)
GEN = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=1, intermediate_size=128)


def randomize(model: torch.nn.Module, std: float = 0.2) -> None:
    """Every parameter random (LayerNorm scales around 1), so no mapping hides behind zeros."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            offset = 1.0 if name.endswith("LayerNorm.weight") else 0.0
            param.copy_(torch.randn_like(param) * std + offset)


def random_hf_models(
    seed: int = 0, same_embeddings: bool = True
) -> tuple[ElectraForPreTraining, ElectraForMaskedLM]:
    """A random discriminator and generator in eval mode (float32, eager attention)."""
    torch.manual_seed(seed)
    disc = ElectraForPreTraining(ElectraConfig(**COMMON, **DISC)).eval()
    gen = ElectraForMaskedLM(ElectraConfig(**COMMON, **GEN)).eval()
    randomize(disc)
    randomize(gen)
    if same_embeddings:  # the released checkpoints share one embedding block
        disc_embeddings = dict(disc.electra.embeddings.named_parameters())
        with torch.no_grad():
            for name, param in gen.electra.embeddings.named_parameters():
                param.copy_(disc_embeddings[name])
    return disc, gen


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, token types (0 then 1 inside each row) and a right-padded attention mask, [3, 12]."""
    generator = torch.Generator().manual_seed(seed)
    B, L, lengths = 3, 12, (12, 9, 5)
    ids = torch.randint(1, VOCAB_SIZE, (B, L), generator=generator)
    mask = torch.zeros(B, L, dtype=torch.long)
    segments = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        segments[b, n // 2 : n] = 1
        ids[b, n:] = 0
    return ids, segments, mask


def write_vocab(directory: str, lowercase: bool = True) -> None:
    """vocab.txt + tokenizer_config.json as an HF ELECTRA directory carries them."""
    with open(os.path.join(directory, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": lowercase, "tokenizer_class": "ElectraTokenizer"}, f)


def save_hf(model: torch.nn.Module, directory: str, vocab: bool = True) -> str:
    """save_pretrained (safetensors) plus the vocabulary files."""
    model.save_pretrained(directory)
    if vocab:
        write_vocab(directory)
    return directory


def numpy_batch(*tensors: torch.Tensor) -> list[np.ndarray]:
    return [t.numpy() for t in tensors]


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository root, capturing text output."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, exactly one stderr line starting with `error:`, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
