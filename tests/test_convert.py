"""Conversion: HF <-> ours round trips, the original TF names, and the CLI's one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_fixtures import (  # noqa: E402
    assert_one_line_error,
    padded_batch,
    random_hf_models,
    run_module,
    save_hf,
)

from electra_jax.convert.__main__ import main as convert_main  # noqa: E402
from electra_jax.convert.hf import hf_to_params, params_to_hf, read_hf_weights  # noqa: E402
from electra_jax.convert.tf import tf_variables_to_params  # noqa: E402
from electra_jax.errors import UserError  # noqa: E402
from electra_jax.files.model_io import load_model  # noqa: E402
from electra_jax.model.electra import ElectraModel  # noqa: E402
from electra_jax.model.shapes import flatten  # noqa: E402


def assert_trees_equal(a: dict, b: dict) -> None:
    """Same paths, same shapes, bit-identical values."""
    flat_a, flat_b = flatten(a), flatten(b)
    assert sorted(flat_a) == sorted(flat_b)
    for path, value in flat_a.items():
        assert np.array_equal(np.asarray(value), np.asarray(flat_b[path])), path


def hf_inputs(model) -> tuple[dict, dict]:
    """(state dict, config dict) of an HF model: hf_to_params' inputs for one tower."""
    return model.state_dict(), model.config.to_dict()


@pytest.fixture(scope="module")
def hf_pair():
    return random_hf_models(seed=1)


@pytest.fixture(scope="module")
def untied_pair():
    return random_hf_models(seed=2, same_embeddings=False)


@pytest.mark.parametrize("sharing", ["tied", "untied"])
def test_ours_to_hf_to_ours_is_bit_exact(hf_pair, untied_pair, sharing):
    disc, gen = hf_pair if sharing == "tied" else untied_pair
    untied = sharing == "untied"
    (disc_sd, disc_cfg), (gen_sd, gen_cfg) = hf_inputs(disc), hf_inputs(gen)
    config, params = hf_to_params(disc_sd, gen_sd, disc_cfg, gen_cfg, untied=untied)
    assert config.embedding_sharing == sharing
    assert ("generator_embeddings" in params) == untied
    disc_sd, gen_sd, disc_cfg, gen_cfg = params_to_hf(params, config)
    back_config, back = hf_to_params(disc_sd, gen_sd, disc_cfg, gen_cfg, untied=untied)
    assert back_config == config
    assert_trees_equal(params, back)


def test_gdes_exports_the_discriminators_effective_table(hf_pair):
    disc, gen = hf_pair
    config, params = hf_to_params(
        disc.state_dict(), gen.state_dict(), disc.config.to_dict(), gen.config.to_dict()
    )
    config = config.replace(embedding_sharing="gdes")
    word_VxE = params["embeddings"]["word_embeddings"]
    params["gdes"] = {"word_embeddings_delta": np.full_like(word_VxE, 0.5)}
    disc_sd, gen_sd, _, _ = params_to_hf(params, config)
    np.testing.assert_array_equal(
        disc_sd["electra.embeddings.word_embeddings.weight"], word_VxE + 0.5
    )
    np.testing.assert_array_equal(gen_sd["electra.embeddings.word_embeddings.weight"], word_VxE)


def test_prefix_free_state_dict_converts_the_same(hf_pair):
    disc, _ = hf_pair
    state_dict, cfg = hf_inputs(disc)
    bare = {k.removeprefix("electra."): v for k, v in state_dict.items()}
    _, params = hf_to_params(state_dict, None, cfg, None)
    _, params_bare = hf_to_params(bare, None, cfg, None)
    assert_trees_equal(params, params_bare)


def test_different_generator_embeddings_warn_or_stay_untied(untied_pair, capsys):
    disc, gen = untied_pair
    (disc_sd, disc_cfg), (gen_sd, gen_cfg) = hf_inputs(disc), hf_inputs(gen)
    config, params = hf_to_params(disc_sd, gen_sd, disc_cfg, gen_cfg)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "differ" in lines[0] and "--untied" in lines[0]
    assert config.embedding_sharing == "tied" and "generator_embeddings" not in params

    config, params = hf_to_params(disc_sd, gen_sd, disc_cfg, gen_cfg, untied=True)
    assert config.embedding_sharing == "untied"
    ids, segments, mask = padded_batch(seed=3)
    with torch.no_grad():
        ref_BxLxV = gen(input_ids=ids, token_type_ids=segments, attention_mask=mask).logits
    batch = [jax.numpy.asarray(t.numpy()) for t in (ids, segments, mask)]
    model = ElectraModel(config)
    apply = jax.jit(lambda v, *a: model.apply(v, *a, method=ElectraModel.generator_logits))
    logits_BxLxV = apply({"params": params}, *batch)
    assert float(np.max(np.abs(np.asarray(logits_BxLxV) - ref_BxLxV.numpy()))) < 1e-5


def test_non_gelu_and_unrepresentable_generator_are_user_errors(hf_pair):
    disc, gen = hf_pair
    (disc_sd, disc_cfg), (gen_sd, gen_cfg) = hf_inputs(disc), hf_inputs(gen)
    with pytest.raises(UserError, match="hidden_act"):
        hf_to_params(disc_sd, None, {**disc_cfg, "hidden_act": "gelu_new"}, None)
    with pytest.raises(UserError, match="derived shape"):
        hf_to_params(disc_sd, gen_sd, disc_cfg, {**gen_cfg, "intermediate_size": 64})
    missing = {k: v for k, v in disc_sd.items() if "layer.1.output.dense" not in k}
    with pytest.raises(UserError, match="missing"):
        hf_to_params(missing, None, disc_cfg, None)
    with pytest.raises(UserError, match="shape"):
        hf_to_params(disc_sd, None, {**disc_cfg, "intermediate_size": 80}, None)


# --------------------------------------------------------------------------- original TF names


def hf_to_tf_names(disc_sd: dict, gen_sd: dict, untied: bool) -> dict[str, np.ndarray]:
    """Writes HF weights under the original TF1 variable names (kernels [in, out])."""
    variables: dict[str, np.ndarray] = {"global_step": np.array(1000)}

    def tower(scope: str, sd: dict) -> None:
        for key, value in sd.items():
            value = value.numpy()
            if not key.startswith("electra."):
                continue
            name = key.removeprefix("electra.")
            if name.startswith("embeddings.") and not name.startswith("embeddings_project"):
                table = name.split(".")[1]
                if table == "LayerNorm":
                    leaf = "gamma" if name.endswith("weight") else "beta"
                    variables[f"{scope}/embeddings/LayerNorm/{leaf}"] = value
                else:
                    variables[f"{scope}/embeddings/{table}"] = value
                continue
            parts = name.split(".")
            if parts[0] == "encoder":  # encoder.layer.i.rest
                parts = ["encoder", f"layer_{parts[2]}", *parts[3:]]
            leaf = parts[-1]
            if parts[-2] == "LayerNorm":
                leaf = "gamma" if leaf == "weight" else "beta"
            elif leaf == "weight":
                leaf, value = "kernel", value.T
            variables["/".join([scope, *parts[:-1], leaf])] = value

    tower("electra", disc_sd)
    gen_tower = {k: v for k, v in gen_sd.items() if untied or not k.startswith("electra.embed")}
    gen_tower.update({k: v for k, v in gen_sd.items() if k.startswith("electra.embeddings_")})
    tower("generator", gen_tower)
    d, g = "discriminator_predictions", "generator_predictions"
    variables[f"{d}/dense/kernel"] = disc_sd[f"{d}.dense.weight"].numpy().T
    variables[f"{d}/dense/bias"] = disc_sd[f"{d}.dense.bias"].numpy()
    variables[f"{d}/dense_1/kernel"] = disc_sd[f"{d}.dense_prediction.weight"].numpy().T
    variables[f"{d}/dense_1/bias"] = disc_sd[f"{d}.dense_prediction.bias"].numpy()
    variables[f"{g}/dense/kernel"] = gen_sd[f"{g}.dense.weight"].numpy().T
    variables[f"{g}/dense/bias"] = gen_sd[f"{g}.dense.bias"].numpy()
    variables[f"{g}/LayerNorm/gamma"] = gen_sd[f"{g}.LayerNorm.weight"].numpy()
    variables[f"{g}/LayerNorm/beta"] = gen_sd[f"{g}.LayerNorm.bias"].numpy()
    variables[f"{g}/output_bias"] = gen_sd["generator_lm_head.bias"].numpy()
    for name in [n for n in variables if n != "global_step"]:  # optimiser slots are skipped
        variables[name + "/adam_m"] = np.zeros_like(variables[name])
    return variables


@pytest.mark.parametrize("untied", [False, True])
def test_tf_variable_names_map_like_the_hf_model(untied):
    disc, gen = random_hf_models(seed=4, same_embeddings=not untied)
    (disc_sd, disc_cfg), (gen_sd, gen_cfg) = hf_inputs(disc), hf_inputs(gen)
    variables = hf_to_tf_names(disc_sd, gen_sd, untied)
    assert "electra/encoder/layer_0/attention/self/query/kernel" in variables
    assert "generator/embeddings_project/kernel" in variables
    assert ("generator/embeddings/word_embeddings" in variables) == untied
    config, params = tf_variables_to_params(variables, num_heads=disc_cfg["num_attention_heads"])
    expected_config, expected = hf_to_params(disc_sd, gen_sd, disc_cfg, gen_cfg, untied=untied)
    assert config.discriminator == expected_config.discriminator
    assert config.generator == expected_config.generator
    assert config.embedding_sharing == ("untied" if untied else "tied")
    assert_trees_equal(params, expected)


# --------------------------------------------------------------------------- directories and CLI


def test_cli_hf_to_ours_to_hf_round_trip(hf_pair, tmp_path):
    disc, gen = hf_pair
    disc_dir = save_hf(disc, str(tmp_path / "hf_disc"))
    gen_dir = save_hf(gen, str(tmp_path / "hf_gen"))
    ours = str(tmp_path / "ours")
    result = run_module(
        "electra_jax.convert", "--from=hf", f"--input={disc_dir}", f"--generator={gen_dir}",
        f"--output={ours}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config, params, tokenizer = load_model(ours)
    assert tokenizer is not None and tokenizer.lowercase
    _, expected = hf_to_params(
        disc.state_dict(), gen.state_dict(), disc.config.to_dict(), gen.config.to_dict()
    )
    assert_trees_equal(params, expected)

    hf_out, hf_gen_out = str(tmp_path / "hf_out"), str(tmp_path / "hf_gen_out")
    convert_main(
        ["--to=hf", f"--input={ours}", f"--output={hf_out}", f"--generator-output={hf_gen_out}"]
    )
    assert os.path.isfile(os.path.join(hf_out, "vocab.txt"))
    for name, reference in (("hf_out", disc), ("hf_gen_out", gen)):
        reloaded_sd = read_hf_weights(str(tmp_path / name))
        for key, value in reference.state_dict().items():
            if key.endswith(("position_ids", "token_type_ids", "generator_lm_head.weight")):
                continue
            assert np.array_equal(reloaded_sd[key], value.numpy()), key
    ids, segments, mask = padded_batch(seed=5)
    inputs = dict(input_ids=ids, token_type_ids=segments, attention_mask=mask)
    reloaded_disc = transformers.ElectraForPreTraining.from_pretrained(hf_out).eval()
    reloaded_gen = transformers.ElectraForMaskedLM.from_pretrained(hf_gen_out).eval()
    with torch.no_grad():
        for reloaded, reference in ((reloaded_disc, disc), (reloaded_gen, gen)):
            torch.testing.assert_close(
                reloaded(**inputs).logits, reference(**inputs).logits, atol=1e-6, rtol=0
            )


def test_pytorch_bin_and_generator_only_dirs(hf_pair, tmp_path):
    _, gen = hf_pair
    gen_dir = str(tmp_path / "gen_bin")
    gen.config.save_pretrained(gen_dir)  # transformers 5 only writes safetensors: write the .bin
    torch.save(gen.state_dict(), os.path.join(gen_dir, "pytorch_model.bin"))
    out = str(tmp_path / "ours_gen")
    convert_main(["--from=hf", f"--input={gen_dir}", f"--output={out}"])
    config, params, tokenizer = load_model(out)
    assert sorted(params) == ["embeddings", "generator", "generator_head"]
    assert config.generator.hidden_size == gen.config.hidden_size and tokenizer is None


def convert_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """Runs the convert entry point in this process (fast); returns what a subprocess would."""
    capsys.readouterr()  # drop earlier output (e.g. save_pretrained's progress bar)
    with pytest.raises(SystemExit) as exit_info:
        convert_main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), exit_info.value.code, captured.out, captured.err)


def test_cli_bad_inputs_are_one_line_errors(hf_pair, tmp_path, capsys):
    disc, _ = hf_pair
    out = str(tmp_path / "out")
    # One real subprocess: the `python -m` entry point itself prints one line, no traceback.
    relu_dir = save_hf(disc, str(tmp_path / "relu"), vocab=False)
    cfg = json.loads((tmp_path / "relu" / "config.json").read_text())
    (tmp_path / "relu" / "config.json").write_text(json.dumps({**cfg, "hidden_act": "relu"}))
    result = run_module(
        "electra_jax.convert", "--from=hf", f"--input={relu_dir}", f"--output={out}"
    )
    assert_one_line_error(result, "hidden_act")

    result = convert_in_process(capsys, "--from=hf", f"--input={tmp_path}/nope", f"--output={out}")
    assert_one_line_error(result, "nope")

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps(disc.config.to_dict()))
    result = convert_in_process(capsys, "--from=hf", f"--input={no_weights}", f"--output={out}")
    assert_one_line_error(result, "no weights file")

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    disc_dir = save_hf(disc, str(tmp_path / "good"))
    result = convert_in_process(capsys, "--from=hf", f"--input={disc_dir}", f"--output={existing}")
    assert_one_line_error(result, "already exists")
    assert os.listdir(existing) == ["keep.txt"]
    assert (existing / "keep.txt").read_text() == "precious"

    ckpt = f"{tmp_path}/model.ckpt-1"
    result = convert_in_process(capsys, "--from=tf", f"--input={ckpt}", f"--output={out}")
    assert_one_line_error(result, "not found")
    if importlib.util.find_spec("tensorflow") is None:
        open(ckpt + ".index", "w").close()
        result = convert_in_process(capsys, "--from=tf", f"--input={ckpt}", f"--output={out}")
        assert_one_line_error(result, "pip install tensorflow")
    result = convert_in_process(capsys, "--input=x", f"--output={out}")
    assert_one_line_error(result, "--help")
    assert not os.path.exists(out)
