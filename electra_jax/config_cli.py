"""`--config=configs/x.py:arg --config.a.b=v --workdir=DIR` parsing with one-line errors.

ml_collections' config flags on absl (the big_vision convention); every parse problem
(missing flag, unknown field, wrong type, bad config argument) prints one line and exits 2.
"""

from __future__ import annotations

import sys

import ml_collections
from absl import flags
from ml_collections import config_flags


def parse_config_flags(argv: list[str], job: str) -> tuple[ml_collections.ConfigDict, str]:
    """Parses argv for `job`; returns (config, workdir) or exits 2 with one line."""
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, f"{job} config file and argument, e.g. configs/{job}.py:tiny",
        flag_values=flag_values, lock_config=True,
    )  # fmt: skip
    flags.DEFINE_string(
        "workdir", None, "run directory (checkpoints, metrics)", flag_values=flag_values
    )
    usage = f"python -m electra_jax.{job} --config=configs/{job}.py:ARG --workdir=DIR"
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(f"usage: {usage} [--config.FIELD=VALUE ...]")
        print(flag_values.main_module_help() or "")
        sys.exit(0)
    try:
        flag_values(argv)
        config = flag_values.config
    except Exception as e:  # absl / ml_collections raise many types for bad flags
        fail(first_line(e), usage)
    if config is None:
        fail("missing --config", usage)
    if not flag_values.workdir:
        fail("missing --workdir", usage)
    return config, flag_values.workdir


def first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text}: {str(cause).strip()}"
    return " ".join(text.split())


def fail(message: str, usage: str) -> None:
    print(f"error: {message} (usage: {usage})", file=sys.stderr)
    sys.exit(2)
