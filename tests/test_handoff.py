"""Pre-training -> fine-tuning hand-off: `init_from` of a real pre-training export (ELECTRA and
the BERT baseline) puts every encoder weight into the fine-tuning model, and fine-tuning from it
is not fine-tuning from random init."""

import inspect
import os

import jax
import numpy as np
import pytest
from data_fixtures import set_fields

import electra_jax.finetune.trainer as finetune_trainer
from configs.finetune import get_config as finetune_config
from configs.pretrain import get_config as pretrain_config
from electra_jax.files.model_io import load_model
from electra_jax.finetune.builtin_tasks import ensure_builtin_tasks
from electra_jax.train.trainer import train

SEEDS = 2  # every seed of a vmapped group gets the same encoder
PRETRAIN = {  # a few steps of a one-layer tiny model, on one device
    "num_train_steps": 2, "log_every": 2, "eval_every": 2, "checkpoint_every": 2,
    "warmup_steps": 1, "eval_batches": 0, "model.num_layers": 1, "mesh.num_devices": 1,
}  # fmt: skip


@pytest.fixture(scope="module", params=["electra", "bert"])
def pretrained(request, tiny_config, builtin_data_dir, tmp_path_factory):
    """(kind, pre-training workdir) after a real `train` run that exported its model."""
    if request.param == "electra":
        config = tiny_config(**PRETRAIN)
    else:  # configs/pretrain.py:tiny,bert with the tiny_config fixture's test settings
        config = set_fields(pretrain_config("tiny,bert"), {
            "max_seq_len": 64, "batch_size": 16, "data.dir": builtin_data_dir, **PRETRAIN,
        })  # fmt: skip
        assert not config.model.electra_objective
    workdir = tmp_path_factory.mktemp(f"pretrain-{request.param}")
    train(config, str(workdir))
    return request.param, workdir


@pytest.fixture(scope="module")
def tasks_dir(builtin_data_dir):
    # The same built-in task files as tests/test_finetune_train.py (made once per cache).
    cache = os.path.dirname(builtin_data_dir)
    return ensure_builtin_tasks(train=2000, dev=400, test=50, cache_dir=cache)


def tiny_finetune(init_from: str, data_dir: str):
    config = finetune_config("task=builtin_replaced,size=tiny")
    return set_fields(config, {
        "init_from": init_from, "data_dir": data_dir, "max_seq_len": 32, "batch_size": 16,
        "max_train_examples": 64, "num_epochs": 1.0, "seeds": SEEDS, "log_every": 1000,
        "eval_batch_size": 200, "write_predictions": False,
    })  # fmt: skip


def capture_training(monkeypatch) -> list[tuple[dict, dict]]:
    """Records (parameters at the first step, parameters after the last) of every seed group
    that `run` trains, as host copies (the train step donates its inputs)."""
    real = finetune_trainer.train_group
    signature = inspect.signature(real)
    groups: list[tuple[dict, dict]] = []

    def recording(*args, **kwargs):
        start = jax.device_get(signature.bind(*args, **kwargs).arguments["params_S"])
        params_S, losses = real(*args, **kwargs)
        groups.append((start, jax.device_get(params_S)))
        return params_S, losses

    monkeypatch.setattr(finetune_trainer, "train_group", recording)
    return groups


def flat(tree: dict) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree.leaves_with_path(tree)}


def test_init_from_real_export_loads_every_encoder_weight_and_changes_finetuning(
    pretrained, tasks_dir, tmp_path, monkeypatch
):
    kind, workdir = pretrained
    export = os.path.join(workdir, "export")
    export_cfg, exported, _ = load_model(export)
    assert export_cfg.num_layers == 1 and export_cfg.electra_objective == (kind == "electra")
    # The BERT baseline has one tower, exported as `discriminator` (its MLM head sits on it).
    assert "generator" not in exported if kind == "bert" else "generator" in exported
    # init_from takes a pre-training workdir (its export/) or the export itself.
    init_from = str(workdir) if kind == "electra" else export

    groups = capture_training(monkeypatch)
    results = finetune_trainer.run(tiny_finetune(init_from, tasks_dir), str(tmp_path / "init"))
    assert results["init_from"] == init_from and len(groups) == 1
    start, end = groups[0]

    # Every encoder leaf of the fine-tuning model is the export's, for every seed; no leaf of
    # the encoder is left out (or added) and the pre-training heads are not carried over.
    encoder = flat(start["electra"])
    wanted = flat({group: exported[group] for group in ("embeddings", "discriminator")})
    assert sorted(encoder) == sorted(wanted)
    for name, value in wanted.items():
        assert encoder[name].shape == (SEEDS, *value.shape), name
        for s in range(SEEDS):
            np.testing.assert_array_equal(encoder[name][s], value, err_msg=f"seed {s} {name}")

    # The same run from random init (same architecture, tokenizer, seeds and data: only the
    # pre-trained parameters withheld) starts from the same heads but another encoder, and
    # fine-tunes to other parameters and losses.
    real_load = finetune_trainer.load_encoder

    def without_weights(config):
        model_cfg, _, tokenizer = real_load(config)
        return model_cfg, None, tokenizer

    monkeypatch.setattr(finetune_trainer, "load_encoder", without_weights)
    random = finetune_trainer.run(tiny_finetune(init_from, tasks_dir), str(tmp_path / "random"))
    random_start, random_end = groups[1]
    for name, value in flat(start["head"]).items():
        np.testing.assert_array_equal(flat(random_start["head"])[name], value, err_msg=name)
    random_encoder = flat(random_start["electra"])
    assert sorted(random_encoder) == sorted(encoder)
    word = "['embeddings']['word_embeddings']"
    assert not np.allclose(random_encoder[word][0], wanted[word])
    pretrained_loss = [m["train_loss"] for m in results["dev"]["dev"]["per_seed"]]
    random_loss = [m["train_loss"] for m in random["dev"]["dev"]["per_seed"]]
    assert all(a != b for a, b in zip(pretrained_loss, random_loss, strict=True)), (
        pretrained_loss, random_loss)  # fmt: skip
    for name, value in flat(end).items():
        if name.startswith("['electra']"):
            assert not np.array_equal(flat(random_end)[name], value), name
