"""One-line user errors for every command: what is wrong and how to fix it, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any


class UserError(Exception):
    """A problem with the user's input (flag, file, config); the message names the fix."""


def exit_on_user_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an entry point: a UserError (or a config ValueError) prints one line, exits 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
