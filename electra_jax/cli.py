"""One command-line convention for every command: argparse, kebab-case flags, one-line errors.

Config-driven jobs (`pretrain`, `finetune`, the bench scripts) take the big_vision flags
`--config=configs/JOB.py:ARG --config.a.b=VALUE`: the config file's `get_config(ARG)` builds an
`ml_collections.ConfigDict`, each override is parsed to the type of the field it replaces, and
`--help` lists the file's arguments (its docstring) and every field with its default."""

import argparse
import ast
import difflib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import ml_collections

from electra_jax.errors import UserError

CONFIG_PREFIX = "--config."


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; a flag that takes a value shows its default, unless the
    default is empty (None, "", []) or its help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        empty = action.default in (None, "", [], argparse.SUPPRESS)
        if empty or action.nargs == 0 or not action.option_strings or "default" in help_text:
            return help_text
        return f"{help_text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line `error: <msg> (see --help)` (exit 2), `--help` with defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def note(message: str) -> None:  # on stderr: stdout stays clean for --json
    print(f"note: {message}", file=sys.stderr)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`FILE[:ARG]` -> its `get_config(ARG)` with `a.b=VALUE` overrides, locked; else UserError."""
    path, _, arg = spec.partition(":")
    module = _config_module(path)
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"--config={spec}: {e}") from e
    for override in overrides:
        field, sep, value = override.partition("=")
        if not sep:
            raise UserError(f"{CONFIG_PREFIX}{field} needs a value: {CONFIG_PREFIX}{field}=VALUE")
        apply_override(config, field, value, path)
    config.lock()
    return config


def _config_module(path: str) -> Any:
    if not os.path.isfile(path):
        raise UserError(f"config file {path} does not exist; pass e.g. configs/pretrain.py:ARG")
    spec = importlib.util.spec_from_file_location(f"_electra_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path} defines no get_config(arg)")
    return module


def apply_override(config: ml_collections.ConfigDict, field: str, value: str, path: str) -> None:
    """Sets `config.<field>` from text, parsed to the type of the value it replaces."""
    *parents, name = field.split(".")
    node = config
    for key in [*parents, name]:
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            known = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(
                f"unknown config field {key!r} in {CONFIG_PREFIX}{field}; {hint}see {path}"
            )
        if key != name:
            node = node[key]
    node[name] = parse_value(node[name], value, field)


def parse_value(current: Any, text: str, field: str) -> Any:
    """`text` as the type of `current` (bool, int, float, str, tuple/list; None: a literal)."""
    kinds = {bool: "true or false", int: "an integer", float: "a number"}
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"not a boolean: {text!r}")
            return text.lower() in ("true", "1")
        if isinstance(current, int | float):
            return type(current)(text)
        if isinstance(current, str):
            return text
        if isinstance(current, tuple | list):
            return type(current)(ast.literal_eval(text))
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    except (ValueError, SyntaxError, TypeError) as e:
        kind = kinds.get(type(current), f"a {type(current).__name__} literal")
        raise UserError(f"{CONFIG_PREFIX}{field}={text}: {e}; expected {kind}") from None


def flat_fields(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    """{"a.b": value} of a config's (or a saved config.json's) leaf fields."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        nested = isinstance(value, ml_collections.ConfigDict | dict)
        flat.update(flat_fields(value, f"{prefix}{key}.") if nested else {prefix + key: value})
    return flat


def config_parser(job: str, description: str) -> ArgumentParser:
    """A parser with `--config=configs/JOB.py:ARG` (+ `--config.FIELD=VALUE`) and `--workdir`."""
    parser = ArgumentParser(
        prog=f"python -m electra_jax.{job}", description=description, add_help=False
    )
    parser.add_argument("-h", "--help", action="store_true", help="this message and the fields")
    parser.add_argument("--config", help=f"config file and argument, e.g. configs/{job}.py:ARG")
    parser.add_argument("--workdir", help="run directory (checkpoints, metrics, outputs)")
    return parser


def parse_config_args(
    parser: ArgumentParser, argv: Sequence[str] | None, default_config: str
) -> tuple[argparse.Namespace, ml_collections.ConfigDict]:
    """(args, the loaded config) from argv (no program name); `--help` also prints the config
    file's docstring and every field with its default. Problems print one line and exit 2."""
    overrides, rest = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(rest)
    if args.help:
        print_config_help(parser, args.config or default_config)
        sys.exit(0)
    usage = f"usage: {parser.prog} --config={default_config} --workdir=DIR [--config.FIELD=V]"
    try:
        if not args.config:
            raise UserError(f"missing --config; pass e.g. --config={default_config}")
        if not args.workdir:
            raise UserError("missing --workdir; pass the run directory, e.g. --workdir=runs/x")
        config = load_config(args.config, overrides)
    except UserError as e:
        print(f"error: {e} ({usage})", file=sys.stderr)
        sys.exit(2)
    return args, config


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(["a.b=v", ...], other args); `--config.a.b v` is accepted as `--config.a.b=v`."""
    overrides, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(CONFIG_PREFIX):
            body = arg[len(CONFIG_PREFIX) :]
            if "=" not in body and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def print_config_help(parser: ArgumentParser, spec: str) -> None:
    parser.print_help()
    print(f"  --config.FIELD=VALUE  override one field of the config (below: {spec})\n")
    try:
        module = _config_module(spec.partition(":")[0])
        print((module.__doc__ or "").strip(), "\n")
        config = load_config(spec)
    except UserError as e:
        print(f"(cannot list the fields: {e})")
        return
    print(f"fields of {spec} and their defaults:")
    for field, value in flat_fields(config).items():
        print(f"  {field} = {value!r}")
