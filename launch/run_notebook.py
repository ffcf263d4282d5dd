"""Run a notebook headless and stream what its cells print to this console as they print it.

    python launch/run_notebook.py notebooks/quickstart.ipynb
    python launch/run_notebook.py notebooks/quickstart.ipynb --output=/tmp/quickstart.ipynb

`jupyter execute` (nbclient) shows no cell output at all (only what it saves); this runs the same
nbclient and echoes each cell's output the moment the kernel sends it: printed text (the
training cell's `step N/T ... eta` lines, warnings on stderr), a text line for each rich result
(`[figure: image/png]` for a plot), and a `--- cell N: <first line>` header before each code
cell. The kernel starts in the notebook's folder, as in Jupyter. A failing cell prints its
traceback, writes --output if given, and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

import nbclient
import nbformat
from nbclient.exceptions import CellExecutionError, DeadKernelError

from electra_jax.cli import ArgumentParser
from electra_jax.errors import UserError, exit_on_user_error

FIGURES = ("image/png", "image/jpeg", "image/svg+xml")


def describe(data: dict[str, Any]) -> str:
    """One console line for a rich output (display_data / execute_result)."""
    if figure := next((mime for mime in FIGURES if mime in data), None):
        return f"[figure: {figure}]"
    text = data.get("text/plain", "")
    if text and not text.startswith("<IPython.core.display."):
        return text
    return f"[{', '.join(sorted(data)) or 'empty output'}]"


class StreamingClient(nbclient.NotebookClient):
    """nbclient's executor that also writes every output to `stdout` / `stderr` as it arrives."""

    def __init__(
        self, nb: nbformat.NotebookNode, stdout: TextIO, stderr: TextIO, **kwargs: Any
    ) -> None:
        super().__init__(nb, on_cell_start=self.announce, **kwargs)
        self.console = {"stdout": stdout, "stderr": stderr}

    def announce(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        if cell.cell_type == "code" and cell.source.strip():
            self.write("stdout", f"--- cell {cell_index}: {cell.source.strip().splitlines()[0]}\n")

    def write(self, stream: str, text: str) -> None:
        console = self.console.get(stream, self.console["stdout"])
        console.write(text)
        console.flush()

    def output(
        self, outs: list, msg: dict[str, Any], display_id: str | None, cell_index: int
    ) -> nbformat.NotebookNode | None:
        """Records the output as nbclient does, then echoes it."""
        out = super().output(outs, msg, display_id, cell_index)
        content, kind = msg["content"], msg["msg_type"]
        if kind == "stream":
            self.write(content.get("name", "stdout"), content.get("text", ""))
        elif kind in ("display_data", "execute_result"):
            self.write("stdout", describe(content.get("data", {})) + "\n")
        elif kind == "error":
            self.write("stderr", "\n".join(content.get("traceback", [])) + "\n")
        return out


def run(
    path: str, stdout: TextIO, stderr: TextIO, output: str | None = None,
    timeout: int | None = None, kernel_name: str = "",
) -> nbformat.NotebookNode:  # fmt: skip
    """Executes the notebook at `path` (raises nbclient's errors), streaming its outputs."""
    if not os.path.isfile(path):
        raise UserError(f"notebook {path} does not exist; pass a .ipynb file")
    nb = nbformat.read(path, as_version=4)
    folder = os.path.dirname(os.path.abspath(path))
    kwargs = {"kernel_name": kernel_name} if kernel_name else {}
    client = StreamingClient(
        nb, stdout, stderr, timeout=timeout, resources={"metadata": {"path": folder}}, **kwargs
    )
    try:
        client.execute()
    finally:
        if output:
            nbformat.write(nb, output)
    return nb


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python launch/run_notebook.py", description=__doc__)
    parser.add_argument("notebook", help="the .ipynb file to run")
    parser.add_argument("--output", help="also save the executed notebook here (default: none)")
    parser.add_argument(
        "--timeout", type=int, default=None,
        help="seconds one cell may run (default: no limit)",
    )  # fmt: skip
    parser.add_argument("--kernel", default="", help="kernel name (default: the notebook's)")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args: argparse.Namespace = build_parser().parse_args(argv)
    try:
        run(args.notebook, sys.stdout, sys.stderr, args.output, args.timeout, args.kernel)
    except CellExecutionError as e:
        failed = f"{e.ename}: {e.evalue}".splitlines()[0]
        print(f"error: {args.notebook}: a cell failed ({failed}); its traceback is above",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
    except DeadKernelError as e:
        print(f"error: {args.notebook}: the kernel died ({e})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
