"""One-line user errors for every command: what is wrong and how to fix it, no traceback."""

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any


class UserError(Exception):
    """A problem with the user's input (flag, file, config); the message names the fix."""


def exit_on_user_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an entry point: a UserError prints one line and exits 2, Ctrl-C exits 130."""

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


def _one_line_record(record: logging.LogRecord) -> bool:
    """Drops the traceback from a library's error record and keeps its first line."""
    if record.levelno >= logging.ERROR and record.exc_info:
        record.exc_info = record.exc_text = None
        record.msg = str(record.getMessage()).splitlines()[0][:300]
        record.args = ()
    return True


def one_line_library_errors(logger_name: str = "absl") -> None:
    """Keeps a library's error records to one line (Orbax logs a failed async save's traceback)."""
    logging.getLogger(logger_name).addFilter(_one_line_record)
