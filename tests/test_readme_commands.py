"""Every command in README.md's code blocks runs (issue 20: README's GLUE command failed as
written). Each command is classified by exactly one rule in RULES:

- RUN: run as written in a scratch folder that stands in for the clone (fixtures for its inputs:
  text files, a vocabulary, GLUE TSVs, HF model folders), with the substitutions and appended
  flags the rule names to make it tiny; one tiny pre-training workdir (`runs/tiny`) serves the
  commands after it (convert, detect, fine-tuning, report), as in the README's order.
- DRY_RUN: launchers, run with `--dry-run`; they must exit 0 and write nothing.
- PARSE: flags and config overrides parsed by the entry point's own parser, not run; the rule
  says why it cannot run offline (data to download, hours of training).
- SKIP: not run; the rule says why.

A command that no rule (or more than one) matches fails the test, as does a rule that matches no
command: a new README command must be added here with its class. Commands run in-process through
each entry point's `main(argv)` (the same argv `python -m ...` would get)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import shlex
import time

import pytest
from data_fixtures import write_corpus, write_vocab
from test_finetune_readers import LAYOUTS, write_task

from electra_jax import prepare, pretrain
from electra_jax.cli import config_parser, parse_config_args
from electra_jax.convert import __main__ as convert_main
from launch import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN, DRY_RUN, PARSE, SKIP = "run", "dry-run", "parse", "skip"

# Appended to the tiny pre-training commands: 4 steps on the test session's prepared built-in
# corpus (seq len 64), one device, no held-out evaluation (one compile less; test_first_hour
# checks the eval line).
TINY_PRETRAIN = (
    "--config.num_train_steps=4", "--config.warmup_steps=2", "--config.batch_size=8",
    "--config.max_seq_len=64", "--config.data.dir={builtin}", "--config.eval_batches=0",
    "--config.log_every=2", "--config.checkpoint_every=4", "--config.mesh.num_devices=1",
)  # fmt: skip
TINY_FINETUNE = ("--config.seeds=1", "--config.num_epochs=1")


@dataclasses.dataclass(frozen=True)
class Rule:
    """Commands whose normalised text (shell words joined by one space) fullmatch `pattern`."""

    pattern: str
    kind: str
    why: str = ""  # PARSE / SKIP: why it cannot run offline; RUN: why the substitutions
    replace: tuple[tuple[str, str], ...] = ()  # RUN: (old, new) in each word
    append: tuple[str, ...] = ()  # RUN: words appended ({builtin}: the prepared corpus)


RULES = [
    # --- Quickstart
    Rule(r"bash launch/quickstart\.sh", SKIP,
         "installs a venv from PyPI and trains for ~5 min; its two steps are the `pretrain ... "
         "tiny` and `detect` commands, which run here"),
    Rule(r"source \.venv/bin/activate && python -m pytest -q", SKIP, "the test suite itself"),
    # --- Pre-training
    Rule(r"python -m electra_jax\.pretrain --config=configs/pretrain\.py:tiny --workdir=runs/tiny",
         RUN, "4 steps", append=TINY_PRETRAIN),
    Rule(r"python -m electra_jax\.pretrain --config=configs/pretrain\.py:small "
         r"--workdir=runs/small --config\.data\.dir=data/owt-128", PARSE,
         "ELECTRA-Small on prepared OpenWebText: hours on a GPU"),
    # --- Data
    Rule(r"python -m electra_jax\.prepare --corpus=text/\*\.txt --vocab=vocab\.txt "
         r"--output=data/mine-128", RUN, "a small text/ corpus and vocab.txt are written first"),
    Rule(r"python -m electra_jax\.prepare --corpus=builtin:pydocs --train-vocab=wordpiece "
         r"--vocab-size=8192 --output=data/pydocs --show=3", RUN,
         "the built-in corpus's text from the test session's cache (6 s to rebuild)",
         append=("--cache-dir={cache}",)),
    Rule(r"python -m electra_jax\.prepare --corpus=tfds:\S+ .*", PARSE,
         "downloads a TFDS corpus (and needs tensorflow-datasets)"),
    Rule(r"python -m electra_jax\.prepare --corpus=openwebtext/\*\.txt .*", PARSE,
         "needs OpenWebText's text files (tens of GB)"),
    # --- Fine-tuning
    Rule(r"python -m electra_jax\.finetune --config=configs/finetune\.py:task=rte,size=small "
         r"--workdir=runs/rte --config\.init_from=runs/small/export "
         r"--config\.data_dir=glue_data/rte --config\.seeds=10", RUN,
         "a 4-row glue_data/rte, the tiny export for the small one, one seed",
         replace=(("size=small", "size=tiny"), ("runs/small/export", "runs/tiny/export")),
         append=TINY_FINETUNE),
    Rule(r"python -m electra_jax\.finetune --config=configs/finetune\.py:task=builtin_replaced,"
         r"size=tiny --workdir=runs/ft_tiny --config\.seeds=3", RUN,
         "32 training examples, one seed, the built-in vocabulary already prepared",
         append=(*TINY_FINETUNE, "--config.builtin.train=32", "--config.builtin.dev=32",
                 "--config.builtin.test=32", "--config.vocab_dir={builtin}")),
    Rule(r"python -m electra_jax\.convert --to=hf --input=runs/rte/export --output=hf/rte", RUN,
         "the tiny GLUE run's export above"),
    Rule(r"python -m electra_jax\.finetune --config=configs/finetune\.py:task=rte\+mrpc,size=small "
         r"--workdir=runs/rte_mrpc --config\.init_from=runs/small/export "
         r"--config\.data_dir=glue_data", PARSE,
         "a third fine-tuning compile (one head per task) past this file's time budget; "
         "tests/test_multitask.py trains two tasks in one run (built-in ones)"),
    # --- Convert and detect
    Rule(r"python -m electra_jax\.convert --from=hf --input=electra-small-discriminator "
         r"--generator=electra-small-generator --output=models/small", RUN,
         "random HF models saved under those names stand in for the downloaded ones"),
    Rule(r"python -m electra_jax\.convert --to=hf --input=runs/tiny/export --output=hf/tiny-disc "
         r"--generator-output=hf/tiny-gen", RUN),
    Rule(r"python -m electra_jax\.detect --checkpoint=runs/tiny/export .*", RUN),
    # --- Before you launch
    Rule(r"python -m electra_jax\.compile_check --config=configs/pretrain\.py:base "
         r"--topology=v5litepod-8", SKIP,
         "compiles base for a TPU slice: minutes on 2 cores; tests/test_compile_check.py runs "
         "the same command on tiny for v4:2x2x1"),
    # --- Buckets: every path in gs://
    Rule(r"python (-m electra_jax\.\w+|launch/report\.py) .*gs://.*", PARSE,
         "needs a GCS bucket and credentials; tests/test_gcs_cycle.py runs this cycle with every "
         "path in a local GCS emulator's bucket"),
    # --- Launchers: every TPU VM / GPU / SLURM / ablation command prints what it would run
    # (local_pod: N real processes compiling each; tests/test_multihost.py runs them)
    Rule(r"python launch/(tpu_vm|gpu|slurm|ablation|local_pod)\.py (?!.* \.\.\.).*", DRY_RUN),
    Rule(r"python launch/(slurm|local_pod)\.py --dry-run .* \.\.\.", SKIP,
         "`...` stands for the job of the lines above, which dry-run"),
    # --- Sweeps
    Rule(r"python launch/sweep\.py (?!.*--summarize).*", DRY_RUN),
    Rule(r"python launch/sweep\.py .*--summarize", SKIP,
         "tabulates the finished runs of the sweep above (hours of fine-tuning); "
         "tests/test_launch.py runs --summarize on finished and unfinished runs"),
    # --- Report (after the runs above: runs/ holds tiny, rte and ft_tiny)
    Rule(r"python launch/report\.py --runs=runs( .*)?", RUN),
]  # fmt: skip


@dataclasses.dataclass
class Command:
    words: list[str]
    section: str
    loop: tuple[str, list[str]] | None = None  # `for VAR in VALUES; do` around it

    @property
    def text(self) -> str:
        return " ".join(self.words)


def readme_commands(text: str) -> list[Command]:
    """The commands of the ```bash blocks: continuations joined, comments dropped, one Command
    per line, `for VAR in ...; do` ... `done` loops kept as the loop of the lines inside."""
    commands, section = [], ""
    for part in re.split(r"(^```bash\n.*?^```)", text, flags=re.S | re.M):
        if not part.startswith("```bash"):
            prose = re.sub(r"^```.*?^```", "", part, flags=re.S | re.M)  # not an excerpt's
            headings = re.findall(r"^#+ (.*)$", prose, re.M)
            section = headings[-1] if headings else section
            continue
        loop = None
        for line in re.sub(r"\\\n", " ", part[len("```bash\n") : -3]).splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if match := re.fullmatch(r"for (\w+) in (.*); do", " ".join(words)):
                loop = (match.group(1), match.group(2).split())
            elif words == ["done"]:
                loop = None
            else:
                commands.append(Command(words, section, loop))
    return commands


def rules_for(command: Command) -> list[Rule]:
    return [rule for rule in RULES if re.fullmatch(rule.pattern, command.text)]


def read_readme() -> str:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_every_readme_command_is_classified():
    """Each README command matches exactly one rule; each rule matches some command."""
    commands = readme_commands(read_readme())
    assert len(commands) > 20
    problems = []
    for command in commands:
        matched = rules_for(command)
        if len(matched) != 1:
            what = "no rule" if not matched else f"{len(matched)} rules"
            problems.append(f"[{command.section}] `{command.text}` matches {what}")
    for rule in RULES:
        if not any(re.fullmatch(rule.pattern, c.text) for c in commands):
            problems.append(f"rule {rule.pattern!r} matches no README command (remove it)")
    for rule in RULES:
        if rule.kind in (PARSE, SKIP) and not rule.why:
            problems.append(f"rule {rule.pattern!r} ({rule.kind}) needs its reason")
    assert not problems, "classify README commands in tests/test_readme_commands.py:\n" + (
        "\n".join(problems)
    )


# ------------------------------------------------------------------------------- running them


def entry_point(words: list[str]) -> tuple[str, list[str]]:
    """(module with main(argv), argv) of `python -m MODULE ...` or `python DIR/FILE.py ...`."""
    if words[:2] == ["python", "-m"]:
        module, argv = words[2], words[3:]
        spec = importlib.util.find_spec(module)
        return (f"{module}.__main__" if spec.submodule_search_locations else module), argv
    if words[0] == "python" and words[1].endswith(".py"):
        return words[1][: -len(".py")].replace("/", "."), words[2:]
    raise AssertionError(f"`{' '.join(words)}` is not a Python entry point; classify it as SKIP")


def call(function, argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `function(argv)`."""
    capsys.readouterr()
    try:
        function(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# PARSE: how an entry point reads its command line (flags, config file, overrides) and stops.
PARSERS = {
    "electra_jax.pretrain": pretrain.parse_args,
    "electra_jax.prepare": lambda argv: prepare.build_parser().parse_args(argv),
    "electra_jax.finetune.__main__": lambda argv: parse_config_args(
        config_parser("finetune", ""), argv, "configs/finetune.py:task=rte,size=small"
    ),
    "electra_jax.convert.__main__": convert_main.parse_args,
    "launch.report": report.parse_args,
}


def files_under(root: str) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


@pytest.fixture
def clone(tmp_path, builtin_data_dir, monkeypatch):
    """A scratch folder standing in for the clone root: configs/ (linked), a text/ corpus,
    vocab.txt, glue_data/rte, HF model folders; the cache points at the session's."""
    from hf_fixtures import random_hf_models
    from hf_fixtures import write_vocab as write_hf_vocab

    os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
    write_corpus(str(tmp_path / "text"), n_files=2, docs_per_file=10)
    write_vocab(str(tmp_path / "vocab.txt"))
    rte_row = LAYOUTS["rte"][0]
    other = rte_row.replace("entailment", "not_entailment")
    write_task(tmp_path / "glue_data", "rte", [rte_row, other, rte_row, other])
    disc, gen = random_hf_models(seed=1)
    for model, name in ((disc, "electra-small-discriminator"), (gen, "electra-small-generator")):
        model.save_pretrained(str(tmp_path / name))
        write_hf_vocab(str(tmp_path / name))
    monkeypatch.setenv("ELECTRA_JAX_CACHE", os.path.dirname(builtin_data_dir))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_commands_run(clone, builtin_data_dir, capsys):
    """Every RUN command exits 0 in README order, every DRY_RUN exits 0 and writes nothing,
    every PARSE command parses."""
    values = {"builtin": builtin_data_dir, "cache": os.path.dirname(builtin_data_dir)}
    failures, timings = [], []
    for command in readme_commands(read_readme()):
        matched = rules_for(command)
        if len(matched) != 1:  # test_every_readme_command_is_classified says which
            failures.append(f"`{command.text}` matches {len(matched)} rules, not 1")
            continue
        rule = matched[0]
        if rule.kind == SKIP:
            continue
        for value in command.loop[1] if command.loop else [None]:
            words = [w.removeprefix("[").removesuffix("]") for w in command.words]  # [--json]
            if value is not None:
                name = command.loop[0]
                words = [w.replace(f"${{{name}}}", value).replace(f"${name}", value) for w in words]
            start, before = time.perf_counter(), files_under(str(clone))
            if rule.kind == PARSE:
                module, argv = entry_point(words)
                assert module in PARSERS, f"add {module}'s parser to PARSERS"
                code, output = call(PARSERS[module], argv, capsys)
            else:
                for old, new in rule.replace:
                    words = [w.replace(old, new) for w in words]
                words += [w.format(**values) for w in rule.append]
                if rule.kind == DRY_RUN and "--dry-run" not in words:
                    words.insert(2, "--dry-run")  # launcher flags go before the job name
                module, argv = entry_point(words)
                code, output = call(importlib.import_module(module).main, argv, capsys)
                if rule.kind == DRY_RUN and files_under(str(clone)) != before:
                    new_files = sorted(files_under(str(clone)) - before)[:3]
                    failures.append(f"`{command.text}` --dry-run wrote {new_files}")
            timings.append((time.perf_counter() - start, command.text[:90]))
            if code != 0:
                tail = "\n    ".join(output.strip().splitlines()[-5:])
                failures.append(f"[{command.section}] {rule.kind} `{shlex.join(words)}` exited "
                                f"{code}:\n    {tail}")  # fmt: skip
    for seconds, text in sorted(timings, reverse=True)[:8]:
        print(f"{seconds:6.1f}s  {text}")
    assert not failures, "\n".join(failures)
    assert os.path.isfile(clone / "runs" / "report" / "report.md")
    assert os.path.isfile(clone / "hf" / "tiny-gen" / "config.json")


def inline_commands(text: str) -> list[str]:
    """`python ...` / `pytest ...` commands quoted inline in the prose (outside code blocks),
    whitespace normalised; templates with <placeholders>, `...`, `[extra]` or `a|b` left out."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found = [" ".join(m.split()) for m in re.findall(r"`((?:python|pytest) [^`]+)`", prose)]
    return [c for c in found if not re.search(r"<|\.\.\.|\[extra\]|\w\|\w", c)]


def test_inline_commands_parse_or_exist(capsys):
    """A command quoted in the prose runs as written too: an entry point's flags and overrides
    parse (the 6000-step `pretrain` in Results lacked --workdir); a script, module or test file
    it names exists."""
    commands, problems = inline_commands(read_readme()), []
    assert len(commands) >= 8
    for text in commands:
        words = shlex.split(text)
        if words[0] == "pytest" or words[:3] == ["python", "-m", "pytest"]:
            paths = [w for w in words if w.startswith("tests/")]
            problems += [f"`{text}`: {p} does not exist" for p in paths
                         if not os.path.isfile(os.path.join(REPO, p))]  # fmt: skip
            continue
        module, argv = entry_point(words)
        if module in PARSERS:
            code, output = call(PARSERS[module], argv, capsys)
            if code != 0:
                problems.append(f"`{text}` does not parse: {output.strip().splitlines()[-1]}")
        elif importlib.util.find_spec(module) is None:
            problems.append(f"`{text}`: no {module}")
    assert not problems, "\n".join(problems)
