"""`--config=configs/x.py:arg --config.a.b=v --workdir=DIR` parsing with one-line errors.

ml_collections' config flags on absl (the big_vision convention); every parse problem
(missing flag, unknown field, wrong type, bad config argument) prints one line and exits 2.
"""

from __future__ import annotations

import os
import re
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
    config_path = config_file_argument(argv)
    if config_path is not None and not os.path.isfile(config_path):
        fail(f"config file {config_path} does not exist; pass e.g. configs/{job}.py:ARG", usage)
    saved_argv, sys.argv = sys.argv, list(argv)  # ml_collections reads overrides from sys.argv
    try:
        flag_values(argv)
        config = flag_values.config
    except Exception as e:  # absl / ml_collections raise many types for bad flags
        if is_unknown_field(e):
            overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
            field, suggestion = unknown_field(e)
            hint = f"did you mean {suggestion!r}? " if suggestion else ""
            fail(f"unknown config field {field!r} in {overrides}; {hint}see {config_path}", usage)
        fail(first_line(e), usage)
    finally:
        sys.argv = saved_argv
    if config is None:
        fail("missing --config", usage)
    if not flag_values.workdir:
        fail("missing --workdir", usage)
    return config, flag_values.workdir


def config_file_argument(argv: list[str]) -> str | None:
    """The file part of `--config=FILE:ARG` (None when the flag is absent)."""
    for i, arg in enumerate(argv):
        value = None
        if arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            return value.split(":", 1)[0]
    return None


def first_line(error: Exception) -> str:
    """One line for an absl/ml_collections error; an embedded traceback is cut to its last
    line (the exception the config file raised)."""
    text = str(error).strip() or type(error).__name__
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text}: {str(cause).strip()}"
    if "Traceback (most recent call last)" in text:
        prefix = text.split("Traceback (most recent call last)")[0].rstrip(" :")
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        text = f"{prefix}: {last}"
    return " ".join(text.split())


def is_unknown_field(error: BaseException) -> bool:
    """ml_collections signals an override of a missing field with a KeyError/AttributeError."""
    while error is not None:
        if isinstance(error, KeyError | AttributeError):
            return True
        error = error.__cause__ or error.__context__
    return False


def unknown_field(error: BaseException) -> tuple[str, str | None]:
    """(the unknown field, ml_collections' "did you mean" suggestion or None): the innermost
    KeyError holds the bare name; the outer ones add the suggestion on a second line."""
    suggestion = re.search(r'Did you mean "([^"]+)"', str(error))
    field = str(error)
    while error is not None:
        if isinstance(error, KeyError) and error.args:
            field = str(error.args[0])
        error = error.__cause__ or error.__context__
    field = field.splitlines()[0].strip().strip("\"'") if field.strip() else field
    return field, suggestion.group(1) if suggestion else None


def fail(message: str, usage: str) -> None:
    print(f"error: {message} (usage: {usage})", file=sys.stderr)
    sys.exit(2)
