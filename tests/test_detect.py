"""`detect`: replaced-token probabilities from an exported model, checked against transformers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hf_fixtures import (  # noqa: E402
    VOCAB,
    VOCAB_SIZE,
    assert_one_line_error,
    random_hf_models,
    run_module,
    write_vocab,
)

from electra_jax.convert.hf import hf_to_params  # noqa: E402
from electra_jax.data.tokenizer import WordPieceTokenizer  # noqa: E402
from electra_jax.detect import detect, format_result  # noqa: E402
from electra_jax.detect import main as detect_main  # noqa: E402
from electra_jax.files.model_io import save_model  # noqa: E402

MASK_ID = VOCAB.index("[MASK]")
# [CLS] the chef [MASK] a meal <id past the vocab.txt words> [SEP]
IDS = [VOCAB.index("[CLS]"), 5, 7, MASK_ID, 6, 10, 30, VOCAB.index("[SEP]")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint dir, HF discriminator, HF generator, generator-only checkpoint dir)."""
    root = tmp_path_factory.mktemp("detect")
    disc, gen = random_hf_models(seed=6)
    write_vocab(str(root))
    tokenizer = WordPieceTokenizer(str(root / "vocab.txt"))
    config, params = hf_to_params(
        disc.state_dict(), gen.state_dict(), disc.config.to_dict(), gen.config.to_dict()
    )
    checkpoint = save_model(str(root / "model"), params, config, tokenizer)
    gen_params = {k: params[k] for k in ("embeddings", "generator", "generator_head")}
    gen_only = save_model(str(root / "gen_only"), gen_params, config, tokenizer)
    no_heads = {k: params[k] for k in ("embeddings", "discriminator")}
    save_model(str(root / "no_heads"), no_heads, config, tokenizer)
    return checkpoint, disc, gen, gen_only, config, params, tokenizer


@pytest.fixture(scope="module")
def bert_export(exported, tmp_path_factory):
    """A `bert` baseline export (one tower + masked-LM head, no discriminator) whose tower is
    the HF generator's: its masked-LM must then give `gen`'s logits."""
    _, _, gen, _, config, params, tokenizer = exported
    hf = gen.config
    bert = config.replace(
        electra_objective=False, hidden_size=hf.hidden_size, num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads, intermediate_size=hf.intermediate_size,
    )  # fmt: skip
    tower = {"embeddings": params["embeddings"], "discriminator": params["generator"]}
    bert_params = tower | {"generator_head": params["generator_head"]}
    root = tmp_path_factory.mktemp("bert")
    return save_model(str(root / "bert"), bert_params, bert, tokenizer), gen


def test_json_logits_match_transformers(exported):
    checkpoint, disc, gen, *_ = exported
    result = run_module(
        "electra_jax.detect",
        f"--checkpoint={checkpoint}",
        "--input-ids=" + ",".join(map(str, IDS)),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["input_ids"] == IDS
    assert out["tokens"][:3] == ["[CLS]", VOCAB[5], VOCAB[7]] and out["tokens"][6] == "30"
    ids_1xL = torch.tensor([IDS])
    with torch.no_grad():
        ref_L = disc(input_ids=ids_1xL).logits[0].numpy()
        gen_ref_LxV = gen(input_ids=ids_1xL).logits[0]
    logits_L = np.asarray(out["discriminator_logits"])
    err = float(np.max(np.abs(logits_L - ref_L)))
    print(f"detect --json max-abs vs transformers: {err:.3g}")
    assert err < 1e-5
    np.testing.assert_allclose(out["replaced_prob"], 1 / (1 + np.exp(-ref_L)), atol=1e-5)
    [fill] = out["generator_top5"]
    assert fill["position"] == IDS.index(MASK_ID)
    probs_V = torch.softmax(gen_ref_LxV[fill["position"]], -1)
    ref_top = torch.topk(probs_V, 5)
    assert fill["ids"] == ref_top.indices.tolist()
    np.testing.assert_allclose(fill["probs"], ref_top.values.numpy(), atol=1e-5)


def test_text_report_marks_and_legend(exported, capsys):
    checkpoint, *_ = exported
    detect_main([f"--checkpoint={checkpoint}", "--text=The chef ate a meal", "--threshold=0"])
    report = capsys.readouterr().out
    first = report.splitlines()[0]
    assert first == "*[CLS]* *the* *chef* *ate* *a* *meal* *[SEP]*"
    assert "legend:" in report and "p(replaced)" in report


def test_mask_in_text_gets_generator_fillers(exported):
    *_, config, params, tokenizer = exported
    result = detect(config, params, tokenizer, "the chef [MASK] a meal")
    assert result["input_ids"][3] == MASK_ID
    assert [fill["position"] for fill in result["generator_top5"]] == [3]
    assert len(result["generator_top5"][0]["ids"]) == 5


def test_library_detect_truncates_long_text(exported):
    *_, config, params, tokenizer = exported
    result = detect(config, params, tokenizer, " ".join(["the dog sat"] * 20), threshold=0.99)
    assert len(result["input_ids"]) == config.max_position_embeddings
    assert result["tokens"][0] == "[CLS]" and result["tokens"][-1] == "[SEP]"
    assert result["notes"] and "truncated" in result["notes"][0]
    assert result["generator_top5"] == []  # no [MASK] in the text
    assert "legend" in format_result(result, color=False)
    assert "\033[" in format_result({**result, "replaced": [True] * 32}, color=True)


def detect_in_process(capsys, *args: str):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        detect_main(list(args))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("no_heads", "neither a discriminator with its head nor a masked-LM head"),
        ("id_too_large", f"outside the vocabulary [0, {VOCAB_SIZE})"),
        ("too_many_ids", "max_position_embeddings"),
        ("bad_ids", "comma-separated integers"),
    ],
)
def test_errors_are_one_line(exported, tmp_path, capsys, case, expected):
    checkpoint, _, _, gen_only, *_ = exported
    args = {
        "missing": [f"--checkpoint={tmp_path}/nope", "--text=hi"],
        "no_heads": [f"--checkpoint={os.path.dirname(gen_only)}/no_heads", "--text=the chef"],
        "id_too_large": [f"--checkpoint={checkpoint}", f"--input-ids=2,{VOCAB_SIZE},3"],
        "too_many_ids": [f"--checkpoint={checkpoint}", "--input-ids=" + ",".join(["5"] * 33)],
        "bad_ids": [f"--checkpoint={checkpoint}", "--input-ids=2,x"],
    }[case]
    code, err = detect_in_process(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    if case in ("no_heads", "missing"):
        assert os.path.basename(args[0].split("=", 1)[1]) in lines[0]


def test_subprocess_error_has_no_traceback(exported):
    checkpoint, *_ = exported
    result = run_module("electra_jax.detect", f"--checkpoint={checkpoint}", "--input-ids=99999")
    assert_one_line_error(result, "outside the vocabulary")


def hf_probs(gen, rows_BxL: list[list[int]]) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(gen(input_ids=torch.tensor(rows_BxL)).logits, -1).numpy()


def test_bert_export_shows_its_masked_lm_top_tokens_at_each_position(bert_export, capsys):
    """Issue 20: a `bert` baseline export has no discriminator; detect says it is a masked-LM
    model and shows its top-5 at every position, each masked in turn (checked against HF)."""
    checkpoint, gen = bert_export
    detect_main([f"--checkpoint={checkpoint}", "--text=the chef ate a meal"])
    report = capsys.readouterr().out
    assert "masked-LM model (the `bert` baseline, no discriminator)" in report, report
    assert "top-5" in report and "put [MASK] in --text" in report
    detect_main([f"--checkpoint={checkpoint}", "--text=the chef ate a meal", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "masked_lm" and "replaced_prob" not in out
    ids = out["input_ids"]
    assert [fill["position"] for fill in out["masked_lm_top5"]] == list(range(1, len(ids) - 1))
    for fill in out["masked_lm_top5"]:
        row = list(ids)
        row[fill["position"]] = MASK_ID
        probs_V = hf_probs(gen, [row])[0, fill["position"]]
        np.testing.assert_allclose(fill["token_prob"], probs_V[ids[fill["position"]]], atol=1e-5)
        assert fill["ids"] == np.argsort(-probs_V, kind="stable")[:5].tolist()
        np.testing.assert_allclose(fill["probs"], np.sort(probs_V)[::-1][:5], atol=1e-5)


def test_masked_lm_model_fills_the_masks_of_the_text(bert_export, exported, capsys):
    """With [MASK] in the text, only those positions, all masked at once (as HF sees them); a
    generator-only export gets the same view."""
    checkpoint, gen = bert_export
    detect_main([f"--checkpoint={checkpoint}", "--text=the [MASK] ate a [MASK]", "--json"])
    out = json.loads(capsys.readouterr().out)
    ids = out["input_ids"]
    masks = [i for i, t in enumerate(ids) if t == MASK_ID]
    assert len(masks) == 2 and [f["position"] for f in out["masked_lm_top5"]] == masks
    probs_LxV = hf_probs(gen, [ids])[0]
    for fill in out["masked_lm_top5"]:
        assert "token_prob" not in fill
        np.testing.assert_allclose(fill["probs"], np.sort(probs_LxV[fill["position"]])[::-1][:5],
                                   atol=1e-5)  # fmt: skip
    _, _, _, gen_only, *_ = exported
    detect_main([f"--checkpoint={gen_only}", "--text=the [MASK] ate a [MASK]"])
    report = capsys.readouterr().out
    assert "masked-LM model (a generator only, no discriminator)" in report
    assert "at each [MASK]" in report
