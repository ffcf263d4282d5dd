"""The bad-input catalogue: every command, every kind of bad input, one line on stderr.

Each `Case` runs one command's `main(argv)` in this process (no subprocess, no compile: every
case fails while its inputs are checked) and must give a non-zero exit status, exactly one
stderr line that starts with `error: ` and contains the case's `problem` and `fix` excerpts, no
`Traceback` in stdout or stderr, and leave every path in `unchanged` byte-identical (an existing
dataset, workdir, model or output directory is never damaged by a failing command).

The table doubles as documentation: `python tests/test_bad_input_catalogue.py [OUT.md]` writes
it as Markdown (command | bad input | message excerpt) to OUT.md (default
/tmp/catalogue_table.md) for the README.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable

import pytest

# Entry points: command -> module whose main(argv) runs it (argv without the program name).
MODULES = {
    "prepare": "electra_jax.prepare",
    "pretrain": "electra_jax.pretrain",
    "finetune": "electra_jax.finetune.__main__",
    "convert": "electra_jax.convert.__main__",
    "detect": "electra_jax.detect",
    "launch/report.py": "launch.report",
    "launch/tpu_vm.py": "launch.tpu_vm",
    "launch/gpu.py": "launch.gpu",
    "launch/slurm.py": "launch.slurm",
    "launch/sweep.py": "launch.sweep",
    "launch/ablation.py": "launch.ablation",
}
BINARY = bytes(range(256)) * 8  # NUL and invalid UTF-8 bytes: not text, not JSON
PRETRAIN = "--config=configs/pretrain.py:tiny"
RTE = "--config=configs/finetune.py:task=rte,size=tiny"
SQUAD = "--config=configs/finetune.py:task=squad11,size=tiny"
RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
RTE_ROW = "0\tA man sleeps.\tA person rests.\tentailment\n"


# ----------------------------------------------------------------------------- fixtures


class Shared:
    """Artifacts built once per session, on first use (~1 s together, no compile): a
    162-token vocabulary, a prepared dataset (seq len 32), an exported 1-layer `tiny` model
    with random parameters, and its Hugging Face twin. Cases copy what they edit."""

    def __init__(self, root: str):
        self.root = root

    @functools.cached_property
    def vocab(self) -> str:
        from data_fixtures import write_vocab

        return write_vocab(os.path.join(self.root, "vocab.txt"))

    @functools.cached_property
    def corpus(self) -> str:
        from data_fixtures import write_corpus

        return write_corpus(os.path.join(self.root, "corpus"), n_files=1, docs_per_file=10)[0]

    @functools.cached_property
    def dataset(self) -> str:
        from electra_jax.data.dataset import prepare_dataset

        path = os.path.join(self.root, "data")
        prepare_dataset(self.corpus, path, vocab=self.vocab, max_seq_len=32, progress=False)
        return path

    @functools.cached_property
    def tokenizer(self):
        from electra_jax.data.tokenizer import WordPieceTokenizer

        return WordPieceTokenizer(self.vocab)

    @functools.cached_property
    def model_parts(self):
        """(ModelConfig, random numpy params) of `tiny` with 1 layer and this vocabulary."""
        import numpy as np

        from electra_jax.model.config import preset
        from electra_jax.model.shapes import expected_shapes, unflatten

        config = preset("tiny", vocab_size=self.tokenizer.vocab_size, num_layers=1)
        rng = np.random.default_rng(0)
        flat = {
            k: rng.normal(0, 0.02, s).astype(np.float32) for k, s in expected_shapes(config).items()
        }
        return config, unflatten(flat)

    @functools.cached_property
    def model(self) -> str:
        from electra_jax.files.model_io import save_model

        config, params = self.model_parts
        return save_model(os.path.join(self.root, "model"), params, config, self.tokenizer)

    @functools.cached_property
    def hf(self) -> str:
        from electra_jax.convert import hf as convert_hf

        config, params = self.model_parts
        disc_sd, _, disc_cfg, _ = convert_hf.params_to_hf(params, config, self.tokenizer.pad_id)
        path = os.path.join(self.root, "hf")
        return convert_hf.write_hf_dir(path, disc_sd, disc_cfg, self.tokenizer)


class Env:
    """What a case builds its argv from: files under the test's tmp_path and copies of the
    shared artifacts. Every helper returns a path."""

    def __init__(self, tmp: str, shared: Shared):
        self.tmp, self.shared = tmp, shared

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def file(self, name: str, content: str | bytes = "") -> str:
        path = self.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        return path

    def dir(self, name: str, files: dict[str, str | bytes] | None = None) -> str:
        os.makedirs(self.path(name), exist_ok=True)
        for file_name, content in (files or {}).items():
            self.file(os.path.join(name, file_name), content)
        return self.path(name)

    def copy(self, source: str, name: str) -> str:
        shutil.copytree(source, self.path(name))
        return self.path(name)

    def bigger_vocab(self, name: str = "big_vocab.txt") -> str:
        """The shared vocabulary plus 20 tokens: more tokens than the model's vocab_size."""
        with open(self.shared.vocab) as f:
            tokens = f.read().split()
        return self.file(name, "\n".join(tokens + [f"extra{i}" for i in range(20)]) + "\n")

    def model(self, name: str = "model", **model_fields) -> str:
        """A copy of the shared export; `model_fields` edit its model.json (params unchanged)."""
        path = self.copy(self.shared.model, name)
        meta_path = os.path.join(path, "model.json")
        with open(meta_path) as f:
            meta = json.load(f)
        meta["model"].update(model_fields)
        with open(meta_path, "w") as f:
            json.dump(meta, f)
        return path

    def hf(self, name: str = "hf", **config_fields) -> str:
        """A copy of the shared HF directory; `config_fields` edit its config.json."""
        path = self.copy(self.shared.hf, name)
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        config.update(config_fields)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        return path

    def pretrain_workdir(self) -> str:
        """An earlier run's workdir: config.json, metrics.jsonl, a checkpoint file."""
        return self.dir("run", {
            "config.json": json.dumps({"size": "tiny", "num_train_steps": 20}),
            "metrics.jsonl": json.dumps({"step": 10, "loss": 3.0}) + "\n",
            "checkpoints/10/state": b"\x00weights",
        })  # fmt: skip

    def finetune_workdir(self) -> str:
        """An earlier fine-tuning run's workdir: config.json and results.json."""
        files = {"config.json": json.dumps({"task": "rte"}), "results.json": '{"score": 61.0}'}
        return self.dir("ft", files)

    def vocab_dir(self) -> str:
        """A directory with vocab.txt: the tokeniser of a randomly initialised fine-tuning run."""
        os.makedirs(self.path("vocab"), exist_ok=True)
        shutil.copy(self.shared.vocab, self.path("vocab/vocab.txt"))
        return self.path("vocab")

    def glue(self, train: str | bytes, task_dir: str = "rte") -> str:
        """A data_dir with TASK/train.tsv (given) and TASK/dev.tsv (one good row)."""
        self.file(f"glue/{task_dir}/dev.tsv", RTE_HEADER + RTE_ROW)
        self.file(f"glue/{task_dir}/train.tsv", train)
        return self.path("glue")

    def squad(self, qa: dict) -> str:
        """A data_dir with squad11/train.json holding one question `qa`."""
        context = "Super Bowl 50 was won by the Denver Broncos."
        data = {"version": "1.1", "data": [{"title": "T", "paragraphs": [
            {"context": context, "qas": [qa]}]}]}  # fmt: skip
        self.file("squad/squad11/train.json", json.dumps(data))
        self.file("squad/squad11/dev.json", json.dumps(data))
        return self.path("squad")

    def runs(self, results: str | bytes | None = None, metrics: str | bytes | None = None) -> str:
        """A report --runs root: a fine-tuning workdir (results.json) and/or a pre-training one."""
        os.makedirs(self.path("runs"), exist_ok=True)
        if results is not None:
            self.file("runs/small/rte/results.json", results)
        if metrics is not None:
            self.file("runs/pretrain/config.json", json.dumps({"size": "tiny"}))
            self.file("runs/pretrain/metrics.jsonl", metrics)
        return self.path("runs")

    def report_out(self) -> str:
        """An earlier report's --out directory."""
        return self.dir("report", {"report.md": "# old report\n", "report.json": "{}"})

    def sweep_config(self, body: str | bytes = "", name: str = "finetune.py") -> str:
        """A sweep config file (a real configs/ file's shape: get_config + the given body)."""
        if isinstance(body, bytes):
            return self.file(f"cfg/{name}", body)
        head = (
            "import ml_collections\n\n"
            "def get_config(arg='x'):\n"
            "    c = ml_collections.ConfigDict()\n"
            "    c.learning_rate, c.seed, c.seeds = 1e-3, 0, 1\n"
            "    return c\n\n"
        )
        return self.file(f"cfg/{name}", head + body)

    def sweep_root(self) -> str:
        """A sweep --workdir with one finished run and its summary."""
        return self.dir("sweep", {"seed=0/results.json": json.dumps({"score": 60.0}),
                                  "summary.md": "# Sweep\n"})  # fmt: skip


GRID = "def sweep(arg='x'):\n    return [{'seed': 0}, {'seed': 1}]\n"
STRING_SEED = "def sweep():\n    return [{'seed': 'a'}]\n"  # seed is an int field
BLANK_LINES = "\n  \n\n"
NO_SPECIALS = "a\nb\n"


# ----------------------------------------------------------------------------- the catalogue


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: the command, what is wrong (for the table), the argv (built from an Env),
    the excerpts the one stderr line must contain, and the paths that must stay unchanged."""

    id: str
    command: str
    bad_input: str
    argv: Callable[[Env], list[str]]
    problem: str  # names the problem: the flag, field, file or value
    fix: str  # names the fix
    unchanged: Callable[[Env], list[str]] = lambda e: []
    exit_code: int = 2


def _pretrain(e: Env, *flags: str) -> list[str]:
    return [PRETRAIN, f"--workdir={e.pretrain_workdir()}", *flags]


def _rte(e: Env, train: str | bytes, *flags: str) -> list[str]:
    return [RTE, f"--workdir={e.finetune_workdir()}", f"--config.vocab_dir={e.vocab_dir()}",
            f"--config.data_dir={e.glue(train)}", *flags]  # fmt: skip


def _squad(e: Env, data_dir: str) -> list[str]:
    return [SQUAD, f"--workdir={e.finetune_workdir()}", f"--config.vocab_dir={e.vocab_dir()}",
            f"--config.data_dir={data_dir}"]  # fmt: skip


def _rte_ok(e: Env, *flags: str) -> list[str]:
    return _rte(e, RTE_HEADER + RTE_ROW, *flags)


def _runs_bad(e: Env, **kwargs) -> list[str]:
    return [f"--runs={e.runs(**kwargs)}", f"--out={e.report_out()}"]


RUN = lambda e: [e.path("run")]  # noqa: E731
FT = lambda e: [e.path("ft")]  # noqa: E731
REPORT = lambda e: [e.path("runs"), e.path("report")]  # noqa: E731
TPU = ["t1", "--zone=us-central2-b"]
JOB = ["pretrain", "--config=configs/pretrain.py:small", "--workdir=runs/small"]

CASES = [
    # ---- prepare
    Case("prepare-missing-output", "prepare", "missing required flag --output",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.shared.vocab}"],
         "required: --output", "--help"),
    Case("prepare-unknown-flag", "prepare", "unknown flag (--max-seq-length)",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.shared.vocab}",
                    f"--output={e.path('out')}", "--max-seq-length=64"],
         "unrecognized arguments: --max-seq-length=64", "--help"),
    Case("prepare-wrong-type", "prepare", "wrongly typed value (--max-seq-len=long)",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.shared.vocab}",
                    f"--output={e.path('out')}", "--max-seq-len=long"],
         "--max-seq-len: invalid int value: 'long'", "--help"),
    Case("prepare-missing-corpus", "prepare", "corpus file does not exist",
         lambda e: [f"--corpus={e.path('missing.txt')}", f"--vocab={e.shared.vocab}",
                    f"--output={e.path('out')}"],
         "missing.txt", "pass existing text files"),
    Case("prepare-empty-corpus", "prepare", "empty corpus file (--quiet)",
         lambda e: [f"--corpus={e.file('empty.txt', BLANK_LINES)}", f"--vocab={e.shared.vocab}",
                    f"--output={e.path('out')}", "--quiet"],
         "gave no examples", "pass non-empty UTF-8 text"),
    Case("prepare-binary-corpus", "prepare", "binary corpus file (a .gz) (--quiet)",
         lambda e: [f"--corpus={e.file('wiki.txt.gz', gzip_bytes(e.shared.corpus))}",
                    f"--vocab={e.shared.vocab}", f"--output={e.path('out')}", "--quiet"],
         "wiki.txt.gz looks binary", "decompress .gz"),
    Case("prepare-missing-vocab", "prepare", "vocabulary file does not exist",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.path('vocab.txt')}",
                    f"--output={e.path('out')}"],
         "vocab.txt does not exist", "pass a BERT vocab.txt"),
    Case("prepare-empty-vocab", "prepare", "empty vocabulary file",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.file('vocab.txt')}",
                    f"--output={e.path('out')}"],
         "vocab.txt is empty", "one token per line"),
    Case("prepare-binary-vocab", "prepare", "binary vocabulary file",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.file('vocab.txt', BINARY)}",
                    f"--output={e.path('out')}"],
         "vocab.txt is not UTF-8 text", "expected a BERT vocab.txt"),
    Case("prepare-vocab-lacks-specials", "prepare", "vocabulary without [MASK]",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.file('vocab.txt', NO_SPECIALS)}",
                    f"--output={e.path('out')}"],
         "lacks required special token(s)", "add them"),
    Case("prepare-into-other-dataset", "prepare", "--output holds a different prepared dataset",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.shared.vocab}",
                    f"--output={e.copy(e.shared.dataset, 'data')}", "--max-seq-len=64"],
         "already holds a different dataset", "pass another --output",
         unchanged=lambda e: [e.path("data")]),
    Case("prepare-into-other-dir", "prepare", "--output is a non-empty directory",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.shared.vocab}",
                    f"--output={e.dir('notes', {'keep.txt': 'precious'})}"],
         "exists and is not a prepared dataset", "pass a new path",
         unchanged=lambda e: [e.path("notes")]),
    Case("prepare-output-is-file", "prepare", "--output is an existing file",
         lambda e: [f"--corpus={e.shared.corpus}", f"--vocab={e.shared.vocab}",
                    f"--output={e.file('out.txt', 'precious')}"],
         "out.txt is a file", "pass a directory path", unchanged=lambda e: [e.path("out.txt")]),
    # ---- pretrain (each in an earlier run's workdir, which must stay as it was)
    Case("pretrain-missing-config", "pretrain", "missing required flag --config",
         lambda e: [f"--workdir={e.pretrain_workdir()}"],
         "missing --config", "usage:", unchanged=RUN),
    Case("pretrain-missing-workdir", "pretrain", "missing required flag --workdir",
         lambda e: [PRETRAIN], "missing --workdir", "usage:"),
    Case("pretrain-missing-config-file", "pretrain", "config file does not exist",
         lambda e: ["--config=configs/nope.py:tiny", f"--workdir={e.pretrain_workdir()}"],
         "configs/nope.py does not exist", "pass e.g. configs/pretrain.py:ARG", unchanged=RUN),
    Case("pretrain-unknown-size", "pretrain", "unknown config argument (pretrain.py:huge)",
         lambda e: ["--config=configs/pretrain.py:huge", f"--workdir={e.pretrain_workdir()}"],
         "unknown size 'huge'", "expected one of", unchanged=RUN),
    Case("pretrain-unknown-field", "pretrain", "unknown config field (--config.nope=1)",
         lambda e: _pretrain(e, "--config.nope=1"),
         "unknown config field 'nope'", "see configs/pretrain.py", unchanged=RUN),
    Case("pretrain-unknown-nested-field", "pretrain", "misspelt nested field (model.hiden_size)",
         lambda e: _pretrain(e, "--config.model.hiden_size=64"),
         "unknown config field 'hiden_size'", "did you mean 'hidden_size'?", unchanged=RUN),
    Case("pretrain-wrong-type", "pretrain", "wrongly typed override (--config.batch_size=abc)",
         lambda e: _pretrain(e, "--config.batch_size=abc"),
         "--config.batch_size=abc: invalid literal for int()", "usage:", unchanged=RUN),
    Case("pretrain-bad-value", "pretrain", "invalid value (--config.on_nonfinite=maybe)",
         lambda e: _pretrain(e, "--config.on_nonfinite=maybe"),
         "on_nonfinite='maybe'", "expected stop or skip", unchanged=RUN),
    Case("pretrain-cudnn-on-cpu", "pretrain", "cuDNN attention without a GPU",
         lambda e: _pretrain(e, "--config.model.attention_impl=cudnn"),
         "attention_impl='cudnn' needs a GPU", "attention_impl=fused (or auto)", unchanged=RUN),
    Case("pretrain-workdir-is-file", "pretrain", "--workdir is an existing file",
         lambda e: [PRETRAIN, f"--workdir={e.file('run.txt', 'precious')}"],
         "run.txt is a file", "pass a directory path", unchanged=lambda e: [e.path("run.txt")]),
    Case("pretrain-builtin-pack-with-data-dir", "pretrain", "data.builtin_pack with a data.dir",
         lambda e: _pretrain(e, f"--config.data.dir={e.shared.dataset}",
                             "--config.data.builtin_pack=True"),
         "builtin_pack packs the built-in corpus only",
         "prepare that data with electra_jax.prepare --pack",
         unchanged=RUN),
    Case("pretrain-missing-data", "pretrain", "data.dir does not exist",
         lambda e: _pretrain(e, f"--config.data.dir={e.path('nodata')}"),
         "nodata/meta.json not found", "create one with python -m electra_jax.prepare",
         unchanged=RUN),
    Case("pretrain-empty-meta", "pretrain", "empty meta.json in data.dir",
         lambda e: _pretrain(e, f"--config.data.dir={e.dir('d', {'meta.json': ''})}"),
         "meta.json is unreadable or corrupt", "re-run electra_jax.prepare", unchanged=RUN),
    Case("pretrain-binary-meta", "pretrain", "binary meta.json in data.dir",
         lambda e: _pretrain(e, f"--config.data.dir={e.dir('d', {'meta.json': BINARY})}"),
         "meta.json is unreadable or corrupt", "re-run electra_jax.prepare", unchanged=RUN),
    # A config that keeps the preset's vocab_size takes the data's (issue 20); one set by hand
    # that differs is the error.
    Case("pretrain-vocab-mismatch", "pretrain", "data vocabulary != model.vocab_size set",
         lambda e: _pretrain(e, f"--config.data.dir={e.shared.dataset}",
                             "--config.model.vocab_size=1000"),
         "vocab_size is 162 but the model config expects 1000", "set the model's vocab_size=162",
         unchanged=lambda e: [e.path("run"), e.shared.dataset]),
    Case("pretrain-seq-len-mismatch", "pretrain", "data max_seq_len != config max_seq_len",
         lambda e: _pretrain(e, f"--config.data.dir={e.shared.dataset}",
                             "--config.model.vocab_size=162"),
         "max_seq_len is 32 but the config expects 128", "set max_seq_len=32", unchanged=RUN),
    Case("pretrain-init-from-missing", "pretrain", "init_from does not exist",
         lambda e: _pretrain(e, f"--config.data.dir={e.shared.dataset}", "--config.max_seq_len=32",
                             "--config.model.vocab_size=162", f"--config.init_from={e.path('m')}"),
         "does not exist", "pass an exported model directory", unchanged=RUN),
    Case("pretrain-init-from-other-size", "pretrain", "init_from a checkpoint of another size",
         lambda e: _pretrain(e, f"--config.data.dir={e.shared.dataset}", "--config.max_seq_len=32",
                             "--config.model.vocab_size=162",
                             f"--config.init_from={e.shared.model}"),
         "is another model size: num_layers=1 (run: 2)", "pick the matching --config size",
         unchanged=lambda e: [e.path("run"), e.shared.model]),
    # ---- finetune (each in an earlier run's workdir, which must stay as it was)
    Case("finetune-missing-workdir", "finetune", "missing required flag --workdir",
         lambda e: [RTE], "missing --workdir", "usage:"),
    Case("finetune-unknown-task", "finetune", "unknown task (task=rtx)",
         lambda e: ["--config=configs/finetune.py:task=rtx", f"--workdir={e.finetune_workdir()}"],
         "unknown task 'rtx'", "expected one of", unchanged=FT),
    Case("finetune-unknown-field", "finetune", "unknown config field (learning_rte)",
         lambda e: _rte_ok(e, "--config.learning_rte=1e-4"),
         "unknown config field 'learning_rte'", "did you mean 'learning_rate'?", unchanged=FT),
    Case("finetune-wrong-type", "finetune", "wrongly typed override (--config.seeds=three)",
         lambda e: _rte_ok(e, "--config.seeds=three"),
         "--config.seeds=three", "usage:", unchanged=FT),
    Case("finetune-workdir-is-file", "finetune", "--workdir is an existing file",
         lambda e: [RTE, f"--workdir={e.file('ft.txt', 'precious')}"],
         "ft.txt is a file", "pass a directory path", unchanged=lambda e: [e.path("ft.txt")]),
    Case("finetune-missing-vocab", "finetune", "vocab_dir without vocab.txt",
         lambda e: [RTE, f"--workdir={e.finetune_workdir()}",
                    f"--config.vocab_dir={e.dir('novocab')}"],
         "novocab/vocab.txt does not exist", "pass a BERT vocab.txt", unchanged=FT),
    Case("finetune-missing-data", "finetune", "data_dir without the task's files",
         lambda e: [RTE, f"--workdir={e.finetune_workdir()}", f"--config.vocab_dir={e.vocab_dir()}",
                    f"--config.data_dir={e.dir('nodata')}"],
         "rte/train.tsv does not exist", "put the rte files under --config.data_dir",
         unchanged=FT),
    Case("finetune-glue-columns", "finetune", "GLUE TSV row with the wrong column count",
         lambda e: _rte(e, RTE_HEADER + RTE_ROW + "0\tonly one\n"),
         "train.tsv:3: 2 tab-separated column(s), the rte layout needs at least 4",
         "--config.skip_malformed=True", unchanged=lambda e: [e.path("ft"), e.path("glue")]),
    Case("finetune-glue-empty", "finetune", "empty GLUE TSV file",
         lambda e: _rte(e, ""), "train.tsv has no usable rows", "check that it is the rte layout",
         unchanged=FT),
    Case("finetune-glue-binary", "finetune", "binary GLUE TSV file",
         lambda e: _rte(e, BINARY), "train.tsv: not UTF-8 text", "re-save it as UTF-8",
         unchanged=FT),
    Case("finetune-squad-missing-fields", "finetune", "SQuAD JSON question without 'question'",
         lambda e: _squad(e, e.squad({"id": "q1", "answers": []})),
         "data[0].paragraphs[0].qas[0]: a question needs 'id' and 'question'",
         "--config.skip_malformed=True", unchanged=FT),
    Case("finetune-squad-not-squad", "finetune", "SQuAD JSON without a 'data' list",
         lambda e: _squad(e, e.dir("sq", {"squad11/train.json": "{}"})),
         "train.json: expected a SQuAD v1.1 / v2.0 JSON object", "with a 'data' list",
         unchanged=FT),
    Case("finetune-init-from-missing", "finetune", "init_from does not exist",
         lambda e: _rte_ok(e, f"--config.init_from={e.path('nomodel')}"),
         "nomodel does not exist", "pass an exported model directory", unchanged=FT),
    Case("finetune-init-from-vocab-mismatch", "finetune",
         "init_from whose vocab.txt has more tokens than its vocab_size",
         lambda e: _rte_ok(e, f"--config.init_from={vocab_swapped_model(e)}"),
         "its vocabulary has 182 tokens but the model's vocab_size is 162",
         "put the model's own vocabulary there", unchanged=lambda e: [e.path("ft"), e.path("m")]),
    Case("finetune-init-from-shape-mismatch", "finetune",
         "init_from whose model.json disagrees with its parameters",
         lambda e: _rte_ok(e, f"--config.init_from={e.model('m', hidden_size=128)}"),
         "has shape (64,), config implies (128,)", "re-export or re-convert it",
         unchanged=lambda e: [e.path("ft"), e.path("m")]),
    # ---- convert
    Case("convert-missing-input", "convert", "missing required flag --input",
         lambda e: ["--from=hf", f"--output={e.path('out')}"], "required: --input", "--help"),
    Case("convert-missing-direction", "convert", "neither --from nor --to",
         lambda e: [f"--input={e.shared.hf}", f"--output={e.path('out')}"],
         "one of the arguments --from --to is required", "--help"),
    Case("convert-bad-choice", "convert", "unknown format (--from=onnx)",
         lambda e: ["--from=onnx", f"--input={e.shared.hf}", f"--output={e.path('out')}"],
         "invalid choice: 'onnx'", "--help"),
    Case("convert-missing-input-dir", "convert", "--input does not exist",
         lambda e: ["--from=hf", f"--input={e.path('nohf')}", f"--output={e.path('out')}"],
         "nohf does not exist", "pass a Hugging Face model directory"),
    Case("convert-tf-missing-checkpoint", "convert", "--from=tf checkpoint does not exist",
         lambda e: ["--from=tf", f"--input={e.path('model.ckpt-1')}", f"--output={e.path('out')}"],
         "model.ckpt-1 not found", "pass the prefix, e.g. model.ckpt-1000000"),
    Case("convert-generator-is-discriminator", "convert",
         "--generator is a discriminator checkpoint",
         lambda e: ["--from=hf", f"--input={e.shared.hf}", f"--generator={e.shared.hf}",
                    f"--output={e.path('out')}"],
         "has no generator_predictions head", "pass the ElectraForMaskedLM"),
    Case("convert-output-exists", "convert", "--output is an existing directory",
         lambda e: ["--from=hf", f"--input={e.shared.hf}",
                    f"--output={e.dir('out', {'keep.txt': 'precious'})}"],
         "already exists", "choose a new output or remove it",
         unchanged=lambda e: [e.path("out"), e.shared.hf]),
    Case("convert-to-hf-output-exists", "convert", "--to=hf onto an existing directory",
         lambda e: ["--to=hf", f"--input={e.shared.model}",
                    f"--output={e.dir('out', {'config.json': '{}'})}"],
         "already exists", "choose a new output or remove it",
         unchanged=lambda e: [e.path("out"), e.shared.model]),
    Case("convert-empty-config", "convert", "empty HF config.json",
         lambda e: ["--from=hf", f"--input={empty_file_in(e.hf('h'), 'config.json')}",
                    f"--output={e.path('out')}"],
         "config.json is not valid JSON", "save_pretrained"),
    Case("convert-binary-weights", "convert", "binary (corrupt) model.safetensors",
         lambda e: ["--from=hf", f"--input={binary_file_in(e.hf('h'), 'model.safetensors')}",
                    f"--output={e.path('out')}"],
         "cannot read weights", "re-save the checkpoint"),
    Case("convert-wrong-type", "convert", "wrongly typed HF config field (hidden_size)",
         lambda e: ["--from=hf", f"--input={e.hf('h', hidden_size='64')}",
                    f"--output={e.path('out')}"],
         "hidden_size='64' should be a positive integer", "fix config.json"),
    Case("convert-unsupported-field", "convert", "unsupported HF config value (hidden_act)",
         lambda e: ["--from=hf", f"--input={e.hf('h', hidden_act='relu')}",
                    f"--output={e.path('out')}"],
         "hidden_act='relu'", "only 'gelu'"),
    Case("convert-vocab-mismatch", "convert", "--vocab with more tokens than the checkpoint",
         lambda e: ["--from=hf", f"--input={e.shared.hf}", f"--vocab={e.bigger_vocab()}",
                    f"--output={e.path('out')}"],
         "vocabulary has 182 tokens but the model only vocab_size=162",
         "pass the model's own vocab.txt"),
    Case("convert-empty-vocab", "convert", "empty --vocab file",
         lambda e: ["--from=hf", f"--input={e.shared.hf}", f"--vocab={e.file('v.txt')}",
                    f"--output={e.path('out')}"],
         "v.txt is empty", "one token per line"),
    Case("convert-to-hf-not-a-model", "convert", "--to=hf from a directory without model.json",
         lambda e: ["--to=hf", f"--input={e.shared.hf}", f"--output={e.path('out')}"],
         "has no model.json", "export one with"),
    Case("convert-to-hf-shape-mismatch", "convert", "--to=hf, model.json disagrees with params",
         lambda e: ["--to=hf", f"--input={e.model('m', hidden_size=128)}",
                    f"--output={e.path('out')}"],
         "has shape (64,), config implies (128,)", "re-export or re-convert it"),
    # ---- detect
    Case("detect-missing-checkpoint", "detect", "missing required flag --checkpoint",
         lambda e: ["--text=the dog sat"], "required: --checkpoint", "--help"),
    Case("detect-missing-text", "detect", "neither --text nor --input-ids",
         lambda e: [f"--checkpoint={e.shared.model}"],
         "one of the arguments --text --input-ids is required", "--help"),
    Case("detect-wrong-type-ids", "detect", "wrongly typed --input-ids=2,two,3",
         lambda e: [f"--checkpoint={e.shared.model}", "--input-ids=2,two,3"],
         "--input-ids must be comma-separated integers", "--help"),
    Case("detect-wrong-type-threshold", "detect", "wrongly typed --threshold=high",
         lambda e: [f"--checkpoint={e.shared.model}", "--text=hi", "--threshold=high"],
         "invalid float value: 'high'", "--help"),
    Case("detect-missing-checkpoint-dir", "detect", "--checkpoint does not exist",
         lambda e: [f"--checkpoint={e.path('nomodel')}", "--text=hi"],
         "nomodel does not exist", "pass an exported model directory"),
    Case("detect-not-a-model", "detect", "--checkpoint without model.json",
         lambda e: [f"--checkpoint={e.dir('d')}", "--text=hi"],
         "has no model.json", "export one with"),
    Case("detect-empty-model-json", "detect", "empty model.json",
         lambda e: [f"--checkpoint={empty_file_in(e.model('m'), 'model.json')}", "--text=hi"],
         "model.json is not valid JSON", "re-export the model"),
    Case("detect-binary-model-json", "detect", "binary model.json",
         lambda e: [f"--checkpoint={binary_file_in(e.model('m'), 'model.json')}", "--text=hi"],
         "model.json is not valid JSON", "re-export the model"),
    Case("detect-unknown-model-field", "detect", "unknown field in model.json",
         lambda e: [f"--checkpoint={e.model('m', hiden_size=64)}", "--text=hi"],
         "unknown model config field(s) ['hiden_size']", "re-export it"),
    Case("detect-id-outside-vocab", "detect", "--input-ids outside the vocabulary",
         lambda e: [f"--checkpoint={e.shared.model}", "--input-ids=2,99999,3"],
         "input id 99999 is outside the vocabulary [0, 162)", "pass ids below 162"),
    Case("detect-vocab-mismatch", "detect", "checkpoint vocab.txt has more tokens than vocab_size",
         lambda e: [f"--checkpoint={vocab_swapped_model(e)}", "--text=hi"],
         "its vocabulary has 182 tokens but the model's vocab_size is 162",
         "put the model's own vocabulary there", unchanged=lambda e: [e.path("m")]),
    Case("detect-shape-mismatch", "detect", "model.json disagrees with the parameters",
         lambda e: [f"--checkpoint={e.model('m', hidden_size=128)}", "--text=hi"],
         "has shape (64,), config implies (128,)", "re-export or re-convert it"),
    # ---- report (an earlier report in --out must stay as it was)
    Case("report-missing-runs", "launch/report.py", "missing required flag --runs",
         lambda e: [f"--out={e.report_out()}"], "required: --runs", "--help",
         unchanged=lambda e: [e.path("report")]),
    Case("report-runs-missing", "launch/report.py", "--runs does not exist",
         lambda e: [f"--runs={e.path('nope')}"], "nope does not exist",
         "point it at a directory of workdirs"),
    Case("report-runs-is-file", "launch/report.py", "--runs is a file",
         lambda e: [f"--runs={e.file('runs.txt', 'x')}"], "runs.txt is not a directory",
         "point it at a directory of workdirs"),
    Case("report-no-results", "launch/report.py", "--runs holds no workdirs",
         lambda e: _runs_bad(e), "no results under", "looked for results.json", unchanged=REPORT),
    Case("report-bad-choice", "launch/report.py", "unknown --group-by value",
         lambda e: [f"--runs={e.runs(results='{}')}", "--group-by=size"],
         "invalid choice: 'size'", "--help"),
    Case("report-unknown-paper-row", "launch/report.py", "unknown --paper-row",
         lambda e: [*_runs_bad(e, results=results_json()), "--paper-row=table9:X"],
         "--paper-row='table9:X' matches no row", "known rows:", unchanged=REPORT),
    Case("report-empty-results", "launch/report.py", "empty results.json",
         lambda e: _runs_bad(e, results=""), "results.json is not valid JSON", "fix or remove it",
         unchanged=REPORT),
    Case("report-binary-results", "launch/report.py", "binary results.json",
         lambda e: _runs_bad(e, results=BINARY), "results.json is not UTF-8 text",
         "fix or remove it", unchanged=REPORT),
    Case("report-missing-field", "launch/report.py", "results.json without 'task'",
         lambda e: _runs_bad(e, results=json.dumps({"dev": {}})),
         "lacks required key 'task'", "is it an electra_jax fine-tuning results.json",
         unchanged=REPORT),
    Case("report-wrong-type", "launch/report.py", "results.json 'dev' of the wrong type",
         lambda e: _runs_bad(e, results=json.dumps({"task": "rte", "dev": []})),
         "key 'dev' should be a dict, got list", "fix or remove the file", unchanged=REPORT),
    Case("report-binary-metrics", "launch/report.py", "binary metrics.jsonl",
         lambda e: _runs_bad(e, metrics=BINARY), "metrics.jsonl is not UTF-8 text",
         "fix or remove it", unchanged=REPORT),
    Case("report-out-is-file", "launch/report.py", "--out is an existing file",
         lambda e: [f"--runs={e.runs(results=results_json())}", f"--out={e.file('o.md', 'x')}"],
         "exists and is not a directory", "choose another path",
         unchanged=lambda e: [e.path("o.md"), e.path("runs")]),
    # ---- launchers
    Case("tpu-missing-zone", "launch/tpu_vm.py", "missing required flag --zone",
         lambda e: ["create", "t1", "--accelerator-type=v4-8"], "required: --zone", "--help"),
    Case("tpu-unknown-subcommand", "launch/tpu_vm.py", "unknown subcommand",
         lambda e: ["frobnicate", *TPU], "invalid choice: 'frobnicate'", "--help"),
    Case("tpu-unknown-accelerator", "launch/tpu_vm.py", "unknown accelerator type",
         lambda e: ["create", *TPU, "--accelerator-type=v9-8", "--dry-run"],
         "no default --version for accelerator type 'v9-8'", "pass --version="),
    Case("tpu-job-missing-config", "launch/tpu_vm.py", "job without its --config",
         lambda e: ["--dry-run", "run", *TPU, "pretrain", "--workdir=x"],
         "pretrain needs --config", "--config=configs/pretrain.py:ARG"),
    Case("tpu-unknown-job", "launch/tpu_vm.py", "unknown job",
         lambda e: ["--dry-run", "run", *TPU, "train", "--workdir=x"],
         "invalid choice: 'train'", "--help"),
    Case("tpu-bad-env", "launch/tpu_vm.py", "malformed --env",
         lambda e: ["--dry-run", "run", *TPU, "--env=XLA_FLAGS", *JOB],
         "bad --env 'XLA_FLAGS'", "expected KEY=VALUE"),
    Case("gpu-unknown-subcommand", "launch/gpu.py", "unknown subcommand",
         lambda e: ["launch"], "invalid choice: 'launch'", "--help"),
    Case("gpu-bad-cuda", "launch/gpu.py", "unknown --cuda value",
         lambda e: ["setup", "--cuda=cuda11", "--dry-run"], "invalid choice: 'cuda11'", "--help"),
    Case("gpu-wrong-type", "launch/gpu.py", "wrongly typed --lines=many",
         lambda e: ["logs", "--lines=many"], "invalid int value: 'many'", "--help"),
    Case("gpu-stop-missing-session", "launch/gpu.py", "missing required flag --session",
         lambda e: ["stop"], "required: --session", "--help"),
    Case("gpu-job-missing-workdir", "launch/gpu.py", "job without its --workdir",
         lambda e: ["run", "--dry-run", "finetune", "--config=configs/finetune.py:task=rte"],
         "finetune needs --workdir", "--workdir=DIR"),
    Case("slurm-missing-job", "launch/slurm.py", "missing job",
         lambda e: ["--dry-run"], "required: job", "--help"),
    Case("slurm-wrong-type", "launch/slurm.py", "wrongly typed --nodes=two",
         lambda e: ["--nodes=two", "--dry-run", *JOB], "invalid int value: 'two'", "--help"),
    Case("slurm-bad-nodes", "launch/slurm.py", "--nodes=0",
         lambda e: ["--nodes=0", "--dry-run", *JOB], "--nodes=0", "pass --nodes=1 or more"),
    Case("slurm-time-whitespace", "launch/slurm.py", "--time with whitespace",
         lambda e: ["--time=1 day", "--dry-run", *JOB], "--time='1 day' contains whitespace",
         "pass it without spaces"),
    Case("slurm-bad-sbatch-arg", "launch/slurm.py", "--sbatch-arg that is not an option",
         lambda e: ["--sbatch-arg=qos=high", "--dry-run", *JOB], "--sbatch-arg='qos=high'",
         "expected an sbatch option like --qos=high"),
    Case("slurm-script-is-dir", "launch/slurm.py", "--script is an existing directory",
         lambda e: [f"--chdir={e.tmp}", f"--script={e.dir('scripts', {'a.sbatch': 'x'})}", *JOB],
         "scripts", "--script", unchanged=lambda e: [e.path("scripts")]),
    Case("sweep-missing-config", "launch/sweep.py", "missing required flag --config",
         lambda e: [f"--workdir={e.path('sweep')}"], "required: --config", "--help"),
    Case("sweep-missing-config-file", "launch/sweep.py", "config file does not exist",
         lambda e: [f"--config={e.path('nope.py')}:a", f"--workdir={e.sweep_root()}"],
         "nope.py does not exist", "pass e.g. --config=configs/finetune.py",
         unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-empty-config-file", "launch/sweep.py", "empty config file",
         lambda e: [f"--config={e.file('cfg/finetune.py')}", f"--workdir={e.sweep_root()}"],
         "defines no sweep()", "add `def sweep(arg)`", unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-binary-config-file", "launch/sweep.py", "binary config file",
         lambda e: [f"--config={e.sweep_config(BINARY)}", f"--workdir={e.sweep_root()}"],
         "finetune.py: SyntaxError", "fix the config file", unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-unknown-field", "launch/sweep.py", "unknown config field (--config.nope=1)",
         lambda e: [f"--config={e.sweep_config(GRID)}", f"--workdir={e.sweep_root()}",
                    "--config.nope=1", "--summarize"],
         "sets 'nope', which is not a field", "fix the name",
         unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-wrong-type-override", "launch/sweep.py",
         "wrongly typed override (--config.seeds=three)",
         lambda e: [f"--config={e.sweep_config(GRID)}", f"--workdir={e.sweep_root()}",
                    "--config.seeds=three", "--dry-run"],
         "--config.seeds=three", "pass an int", unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-wrong-type-point", "launch/sweep.py", "sweep() value of the wrong type",
         lambda e: [f"--config={e.sweep_config(STRING_SEED)}",
                    f"--workdir={e.sweep_root()}", "--dry-run"],
         "sweep()[0] sets seed='a'", "pass an int", unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-wrong-type-flag", "launch/sweep.py", "wrongly typed --parallel=two",
         lambda e: [f"--config={e.sweep_config(GRID)}", f"--workdir={e.sweep_root()}",
                    "--parallel=two"],
         "invalid int value: 'two'", "--help", unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-unknown-flag", "launch/sweep.py", "unknown flag",
         lambda e: [f"--config={e.sweep_config(GRID)}", f"--workdir={e.sweep_root()}", "--seeds=3"],
         "unknown flag '--seeds=3'", "runs take only --config.FIELD=VALUE",
         unchanged=lambda e: [e.path("sweep")]),
    Case("sweep-tpu-without-zone", "launch/sweep.py", "--tpu without --zone",
         lambda e: [f"--config={e.sweep_config(GRID)}", f"--workdir={e.sweep_root()}", "--tpu=t1"],
         "--tpu needs --zone", "--zone=us-central2-b", unchanged=lambda e: [e.path("sweep")]),
    Case("ablation-missing-workdir", "launch/ablation.py", "missing required flag --workdir",
         lambda e: ["--dry-run"], "required: --workdir", "--help"),
    Case("ablation-wrong-type", "launch/ablation.py", "wrongly typed --seeds=three",
         lambda e: [f"--workdir={e.path('abl')}", "--seeds=three", "--dry-run"],
         "invalid int value: 'three'", "--help"),
    Case("ablation-unknown-task", "launch/ablation.py", "unknown --tasks entry",
         lambda e: [f"--workdir={e.path('abl')}", "--tasks=rte", "--dry-run"],
         "--tasks has ['rte']", "expected some of"),
]  # fmt: skip


def gzip_bytes(path: str) -> bytes:
    import gzip

    with open(path, "rb") as f:
        return gzip.compress(f.read(), mtime=0)


def empty_file_in(directory: str, name: str) -> str:
    open(os.path.join(directory, name), "w").close()
    return directory


def binary_file_in(directory: str, name: str) -> str:
    with open(os.path.join(directory, name), "wb") as f:
        f.write(BINARY)
    return directory


def vocab_swapped_model(e: Env) -> str:
    """A copy of the exported model whose vocab.txt has 20 more tokens than its vocab_size."""
    path = e.model("m")
    shutil.copy(e.bigger_vocab(), os.path.join(path, "vocab.txt"))
    return path


def results_json() -> str:
    return json.dumps({"task": "rte", "size": "small", "dev": {"dev": {"per_seed": [
        {"seed": 0, "accuracy": 60.0, "score": 60.0}]}}})  # fmt: skip


# ----------------------------------------------------------------------------- the test


def snapshot(paths: list[str]) -> dict[str, str]:
    """{path: sha256 of its bytes | 'dir' | 'absent'} for every path and everything under it."""
    state: dict[str, str] = {}
    for root in paths:
        if not os.path.exists(root):
            state[root] = "absent"
        elif os.path.isfile(root):
            with open(root, "rb") as f:
                state[root] = hashlib.sha256(f.read()).hexdigest()
        else:
            for directory, _, files in os.walk(root):
                state[directory] = "dir"
                for name in files:
                    state.update(snapshot([os.path.join(directory, name)]))
    return state


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Shared:
    return Shared(str(tmp_path_factory.mktemp("catalogue")))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, shared: Shared, tmp_path, capfd):
    env = Env(str(tmp_path), shared)
    argv = case.argv(env)
    protected = case.unchanged(env)
    before = snapshot(protected)
    main = importlib.import_module(MODULES[case.command]).main
    capfd.readouterr()  # only this command's output
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capfd.readouterr()
    assert exit_info.value.code == case.exit_code, err
    assert "Traceback" not in out + err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.problem in lines[0], (case.problem, lines[0])
    assert case.fix in lines[0], (case.fix, lines[0])
    assert snapshot(protected) == before, f"{case.id} changed {protected}"


# ----------------------------------------------------------------------------- the table

assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
assert set(MODULES) == {c.command for c in CASES}, "every command needs cases"


def markdown_table(cases: list[Case] = CASES) -> str:
    """command | bad input | message excerpt, one row per case, in catalogue order."""
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| command | bad input | message excerpt |", "|---|---|---|"]
    for c in cases:
        lines.append(f"| `{c.command}` | {cell(c.bad_input)} | `{cell(c.problem)}` ... "
                     f"`{cell(c.fix)}` |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "/tmp/catalogue_table.md"
    with open(target, "w") as f:
        f.write(markdown_table())
    print(f"wrote {len(CASES)} cases to {target}")
