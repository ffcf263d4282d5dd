"""A fine-tuned model's export (encoder + task head, as the fine-tuner writes it) converts with
`convert --to=hf` to what transformers' Auto classes load with our logits: GLUE classification
and regression (AutoModelForSequenceClassification), tagging (AutoModelForTokenClassification);
a QA head, which HF has no model for, is refused in one line. Offline, tiny random models."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_fixtures import padded_batch, random_hf_models  # noqa: E402

from configs.finetune import get_config  # noqa: E402
from electra_jax.convert.__main__ import main as convert_main  # noqa: E402
from electra_jax.convert.hf import hf_to_params  # noqa: E402
from electra_jax.finetune.checkpoints import SEED_EXPORTS_DIR, export_seed  # noqa: E402
from electra_jax.finetune.heads import finetune_model  # noqa: E402
from electra_jax.finetune.multitask import MultiTaskModel  # noqa: E402
from electra_jax.finetune.tasks import TASKS  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    """A random HF discriminator as our (config, encoder parameters): random LayerNorm scales and
    biases, so the head mapping's shift is exercised."""
    disc, _ = random_hf_models(seed=3)
    state = {k: v.detach().numpy() for k, v in disc.state_dict().items()}
    config, params = hf_to_params(state, None, disc.config.to_dict(), None)
    return config, {k: v for k, v in params.items() if k != "discriminator_head"}


def inputs() -> tuple[dict, tuple]:
    ids, segments, mask = padded_batch(seed=1)
    ours = {"input_ids": jnp.asarray(ids.numpy()), "segment_ids": jnp.asarray(segments.numpy()),
            "input_mask": jnp.asarray(mask.numpy())}  # fmt: skip
    return ours, (ids, segments, mask)


def fine_tuned(model, encoder_params: dict, batch: dict, seed: int) -> dict:
    """Fresh heads (random biases too) on the given encoder."""
    params = model.init(jax.random.key(seed), batch)["params"]
    params = {**params, "electra": encoder_params}
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.3 * rng.standard_normal(x.shape).astype(np.float32)
        if "head" in jax.tree_util.keystr(path) else x, params)  # fmt: skip


def export_and_convert(tmp_path, params, config, head: dict, *extra: str) -> str:
    export_seed(str(tmp_path), 0, params, config, None, head)
    out = str(tmp_path / "hf")
    convert_main(["--to=hf", "--input", str(tmp_path / SEED_EXPORTS_DIR / "0"), "--output", out,
                  *extra])  # fmt: skip
    return out


def hf_logits(auto_class, directory: str, torch_inputs: tuple) -> np.ndarray:
    model = getattr(transformers, auto_class).from_pretrained(directory).eval()
    ids, segments, mask = torch_inputs
    with torch.no_grad():
        return model(input_ids=ids, token_type_ids=segments, attention_mask=mask).logits.numpy()


def test_glue_head_loads_as_sequence_classification_with_our_logits(tmp_path, encoder):
    config, encoder_params = encoder
    spec, ft = TASKS["mnli"], get_config("task=mnli,size=tiny")
    model = finetune_model(config, spec.kind, len(spec.labels), ft)
    batch, torch_inputs = inputs()
    params = fine_tuned(model, encoder_params, batch, seed=5)
    ours = np.asarray(model.apply({"params": params}, batch, deterministic=True)["logits"])
    head = {"tasks": [{"name": "mnli", "kind": spec.kind, "labels": list(spec.labels),
                       "part": "head"}]}  # fmt: skip
    out = export_and_convert(tmp_path, params, config, head)
    with open(os.path.join(out, "config.json")) as f:
        hf_config = json.load(f)
    assert hf_config["architectures"] == ["ElectraForSequenceClassification"]
    assert hf_config["id2label"] == {"0": "contradiction", "1": "entailment", "2": "neutral"}
    got = hf_logits("AutoModelForSequenceClassification", out, torch_inputs)
    np.testing.assert_allclose(got, ours, atol=2e-5, rtol=1e-5)
    assert np.ptp(ours) > 0.5  # logits that differ: a real comparison


def test_tagging_head_loads_as_token_classification(tmp_path, encoder):
    config, encoder_params = encoder
    labels = ["B-NP", "I-NP", "O"]
    model = finetune_model(config, "tagging", len(labels), get_config("task=chunk,size=tiny"))
    batch, torch_inputs = inputs()
    positions = jnp.array([[1, 2, 4, 7], [1, 3, 5, 6], [1, 2, 3, 4]])
    batch = {**batch, "labeled_positions": positions}
    params = fine_tuned(model, encoder_params, batch, seed=6)
    ours = np.asarray(model.apply({"params": params}, batch, deterministic=True)["logits"])
    head = {"tasks": [{"name": "chunk", "kind": "tagging", "labels": labels, "part": "head"}]}
    out = export_and_convert(tmp_path, params, config, head)
    got = hf_logits("AutoModelForTokenClassification", out, torch_inputs)  # every position
    at_words = np.take_along_axis(got, np.asarray(positions)[..., None], axis=1)
    np.testing.assert_allclose(at_words, ours, atol=1e-5, rtol=1e-5)


def test_multitask_export_picks_a_task_and_qa_is_refused(tmp_path, encoder, capsys):
    config, encoder_params = encoder
    specs = (TASKS["rte"], TASKS["stsb"])
    model = MultiTaskModel(config, specs)
    batch, torch_inputs = inputs()
    params = fine_tuned(model, encoder_params, batch, seed=7)
    ours = model.apply({"params": params}, batch, deterministic=True)
    head = {"tasks": [{"name": s.name, "kind": s.kind, "labels": list(s.labels),
                       "part": f"head_{s.name}"} for s in specs]}  # fmt: skip
    assert_refused(capsys, tmp_path / "a", params, config, head, "holds heads for tasks rte, "
                   "stsb; pick one with --task=NAME")  # fmt: skip
    out = export_and_convert(tmp_path / "b", params, config, head, "--task=stsb")  # regression
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["problem_type"] == "regression"
    got = hf_logits("AutoModelForSequenceClassification", out, torch_inputs)
    want = np.asarray(ours["stsb"]["predictions"])[:, None]
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)

    qa = {"tasks": [{"name": "squad20", "kind": "span", "labels": [], "part": "head_rte"}]}
    refusal = "has no Hugging Face model: ElectraForQuestionAnswering is one dense"
    assert_refused(capsys, tmp_path / "c", params, config, qa, refusal)


def assert_refused(capsys, workdir, params, config, head: dict, message: str) -> None:
    """One `error:` line naming the problem, exit 2, no HF directory written."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        export_and_convert(workdir, params, config, head)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not (workdir / "hf").exists()
