"""Shared command-line helpers: an argparse parser whose errors are one line, like UserError's."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line `error: <msg> (see --help)` on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def warn(message: str) -> None:
    """One-line warning on stderr (conversions and commands share the format)."""
    print(f"warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """One-line informational note on stderr (keeps stdout clean for --json)."""
    print(f"note: {message}", file=sys.stderr)
