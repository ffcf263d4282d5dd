"""Conversion variants the released checkpoints need: Base and Large have embedding size ==
hidden size (no discriminator `embeddings_project`, while their narrower generators keep one),
and checkpoints saved by older transformers carry an `embeddings.position_ids` buffer."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_fixtures import (  # noqa: E402
    COMMON,
    DISC,
    GEN,
    VOCAB,
    VOCAB_SIZE,
    padded_batch,
    random_hf_models,
    randomize,
    write_vocab,
)
from safetensors.torch import save_file  # noqa: E402

from electra_jax.convert.__main__ import main as convert_main  # noqa: E402
from electra_jax.convert.hf import hf_to_params, params_to_hf  # noqa: E402
from electra_jax.files.model_io import load_model  # noqa: E402
from electra_jax.model.electra import ElectraModel  # noqa: E402
from electra_jax.model.shapes import flatten  # noqa: E402

TOLERANCE = 1e-5
MAX_POSITIONS = COMMON["max_position_embeddings"]


@pytest.fixture(scope="module")
def base_like():
    """Random HF towers shaped as Base / Large are: the discriminator's embedding size equals its
    hidden size (64), the generator is narrower (32) and so projects its embeddings."""
    torch.manual_seed(11)
    common = {**COMMON, "embedding_size": DISC["hidden_size"]}
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(**common, **DISC)).eval()
    gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(**common, **GEN)).eval()
    randomize(disc)
    randomize(gen)
    disc_embeddings = dict(disc.electra.embeddings.named_parameters())
    with torch.no_grad():  # one shared embedding block, as the released pairs have
        for name, param in gen.electra.embeddings.named_parameters():
            param.copy_(disc_embeddings[name])
    return disc, gen


def hf_logits(model, seed: int = 0) -> np.ndarray:
    ids, segments, mask = padded_batch(seed)
    with torch.no_grad():
        return model(input_ids=ids, token_type_ids=segments, attention_mask=mask).logits.numpy()


def our_logits(config, params, method: str, seed: int = 0) -> np.ndarray:
    batch = [jnp.asarray(t.numpy()) for t in padded_batch(seed)]
    model = ElectraModel(config)
    apply = jax.jit(lambda variables, *args: model.apply(variables, *args, method=method))
    with jax.default_matmul_precision("float32"):
        return np.asarray(apply({"params": params}, *batch))


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


def test_equal_embedding_and_hidden_size_converts_and_exports(base_like):
    disc, gen = base_like
    assert not hasattr(disc.electra, "embeddings_project")  # HF builds none when E == H
    assert hasattr(gen.electra, "embeddings_project")
    config, params = hf_to_params(
        disc.state_dict(), gen.state_dict(), disc.config.to_dict(), gen.config.to_dict()
    )
    assert config.embedding_size == config.hidden_size == DISC["hidden_size"]
    assert config.generator.hidden_size == GEN["hidden_size"]
    assert "embeddings_project" not in params["discriminator"]
    assert params["generator"]["embeddings_project"]["kernel"].shape == (64, 32)

    for seed in (0, 1):
        disc_err = max_error(our_logits(config, params, "discriminator_logits", seed),
                             hf_logits(disc, seed))  # fmt: skip
        gen_err = max_error(our_logits(config, params, "generator_logits", seed),
                            hf_logits(gen, seed))  # fmt: skip
        assert disc_err < TOLERANCE and gen_err < TOLERANCE, (disc_err, gen_err)

    # Export: the same state dicts (every key HF saves, bit for bit) and configs.
    disc_sd, gen_sd, disc_cfg, gen_cfg = params_to_hf(params, config)
    for ours, reference in ((disc_sd, disc), (gen_sd, gen)):
        expected = {k: v.numpy() for k, v in reference.state_dict().items()}
        expected.pop("generator_lm_head.weight", None)  # tied to the word embeddings
        assert sorted(ours) == sorted(expected)
        for key, value in expected.items():
            assert ours[key].dtype == np.float32 and np.array_equal(ours[key], value), key
    assert disc_cfg["embedding_size"] == disc_cfg["hidden_size"] == 64
    assert gen_cfg["embedding_size"] == 64 and gen_cfg["hidden_size"] == 32
    for cfg, reference in ((disc_cfg, disc), (gen_cfg, gen)):
        for key in ("num_hidden_layers", "num_attention_heads", "intermediate_size"):
            assert cfg[key] == getattr(reference.config, key), key
    # ... which transformers loads into models that give the original logits.
    reloaded = transformers.ElectraForPreTraining(transformers.ElectraConfig(**disc_cfg)).eval()
    missing, unexpected = reloaded.load_state_dict(
        {k: torch.from_numpy(v) for k, v in disc_sd.items()}, strict=False
    )
    assert not unexpected and all(k.endswith("_ids") for k in missing), (missing, unexpected)
    assert max_error(hf_logits(reloaded, 2), hf_logits(disc, 2)) == 0.0


def test_discriminator_only_equal_sizes_round_trips(base_like):
    disc, _ = base_like
    config, params = hf_to_params(disc.state_dict(), None, disc.config.to_dict(), None)
    assert sorted(params) == ["discriminator", "discriminator_head", "embeddings"]
    assert "embeddings_project" not in params["discriminator"]
    err = max_error(our_logits(config, params, "discriminator_logits"), hf_logits(disc))
    assert err < TOLERANCE, err
    disc_sd, gen_sd, _, _ = params_to_hf(params, config)
    assert gen_sd is None and not any(k.startswith("electra.embeddings_project") for k in disc_sd)
    _, back = hf_to_params(disc_sd, None, disc.config.to_dict(), None)
    flat, flat_back = flatten(params), flatten(back)
    assert sorted(flat) == sorted(flat_back)
    assert all(np.array_equal(flat[k], flat_back[k]) for k in flat)


# --------------------------------------------------------------------------- legacy buffers


def with_legacy_buffers(state_dict: dict) -> dict:
    """The state dict as transformers < 4.31 saved it: position_ids [1, max positions] int64."""
    legacy = dict(state_dict)
    legacy["electra.embeddings.position_ids"] = torch.arange(MAX_POSITIONS)[None]
    return legacy


def test_legacy_position_ids_key_loads_silently_with_the_same_logits(capsys):
    disc, gen = random_hf_models(seed=4)
    reference = hf_to_params(
        disc.state_dict(), gen.state_dict(), disc.config.to_dict(), gen.config.to_dict()
    )
    capsys.readouterr()
    config, params = hf_to_params(
        with_legacy_buffers(disc.state_dict()), with_legacy_buffers(gen.state_dict()),
        disc.config.to_dict(), gen.config.to_dict(),
    )  # fmt: skip
    assert capsys.readouterr().err == ""  # a buffer, not an unknown weight: no warning
    assert config == reference[0]
    flat, flat_reference = flatten(params), flatten(reference[1])
    assert sorted(flat) == sorted(flat_reference)
    assert all(np.array_equal(flat[k], flat_reference[k]) for k in flat)
    assert max_error(our_logits(config, params, "discriminator_logits"), hf_logits(disc)) < (
        TOLERANCE
    )
    assert max_error(our_logits(config, params, "generator_logits"), hf_logits(gen)) < TOLERANCE


@pytest.mark.parametrize("weights_file", ["pytorch_model.bin", "model.safetensors"])
def test_legacy_checkpoint_directory_converts(base_like, tmp_path, capsys, weights_file):
    """An old-style HF directory (E == H, position_ids saved) through the converter CLI."""
    disc, _ = base_like
    directory = tmp_path / "legacy"
    disc.config.save_pretrained(str(directory))
    write_vocab(str(directory))
    state = with_legacy_buffers(disc.state_dict())
    if weights_file == "pytorch_model.bin":
        torch.save(state, str(directory / weights_file))
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(directory / weights_file))
    assert sorted(os.listdir(directory)) == sorted(
        ["config.json", "tokenizer_config.json", "vocab.txt", weights_file]
    )
    out = str(tmp_path / "ours")
    capsys.readouterr()
    convert_main(["--from=hf", f"--input={directory}", f"--output={out}"])
    assert "warning" not in capsys.readouterr().err
    config, params, tokenizer = load_model(out)
    assert tokenizer is not None and tokenizer.vocab_size == len(VOCAB)
    assert config.vocab_size == VOCAB_SIZE and "embeddings_project" not in params["discriminator"]
    err = max_error(our_logits(config, params, "discriminator_logits", 3), hf_logits(disc, 3))
    assert err < TOLERANCE, err
