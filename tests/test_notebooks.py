"""The notebooks run headless: quickstart (pre-train, curves, detect), then inspect_checkpoint,
through launch/run_notebook.py, which streams each cell's output to the console as it comes."""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
import time

import nbformat
import pytest

from electra_jax.files.model_io import load_model
from electra_jax.model.electra import count_params, discriminator_param_count
from launch.run_notebook import StreamingClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO, "notebooks")


@pytest.fixture
def jupyter_env(tmp_path, monkeypatch) -> None:
    """A `python3` kernelspec that runs this interpreter, found before any user-level one,
    and private Jupyter/IPython folders (no user startup files, connection files in tmp)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (electra_jax tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))


class TimedConsole(io.StringIO):
    """A console that remembers when (UTC) each piece of text was written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[tuple[datetime.datetime, str]] = []

    def write(self, text: str) -> int:
        self.pieces.append((datetime.datetime.now(datetime.UTC), text))
        return super().write(text)


def execute(name: str, console: io.StringIO | None = None) -> nbformat.NotebookNode:
    """Runs notebooks/NAME as Jupyter would (kernel started in notebooks/, the environment of
    this process: XLA_FLAGS, JAX_PLATFORMS, the compile cache and the ELECTRA_JAX_* settings),
    echoing outputs to `console` as launch/run_notebook.py does; a cell error fails the test
    with the cell and its traceback."""
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    console = console if console is not None else io.StringIO()
    client = StreamingClient(nb, console, console, kernel_name="python3", timeout=300,
                             resources={"metadata": {"path": NOTEBOOKS}})  # fmt: skip
    client.execute()
    return nb


def tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def text_of(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def html_of(cell: nbformat.NotebookNode) -> list[str]:
    return [o.data["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]


def test_quickstart_then_inspect_checkpoint(builtin_data_dir, tmp_path, monkeypatch, jupyter_env):
    workdir = tmp_path / "run"
    monkeypatch.setenv("ELECTRA_JAX_WORKDIR", str(workdir))
    monkeypatch.setenv("ELECTRA_JAX_DATA_DIR", builtin_data_dir)  # seq len 64
    monkeypatch.setenv("ELECTRA_JAX_NOTEBOOK_STEPS", "20")
    monkeypatch.setenv("ELECTRA_JAX_NOTEBOOK_BATCH_SIZE", "16")
    monkeypatch.setenv("ELECTRA_JAX_NOTEBOOK_EVAL_BATCHES", "1")
    # One of the 8 fake devices: the tiny step runs ~2x faster unsharded on 2 cores.
    monkeypatch.setenv("ELECTRA_JAX_NOTEBOOK_OVERRIDES", "mesh.num_devices=1")

    console = TimedConsole()
    quickstart = execute("quickstart.ipynb", console)
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records[-1]["step"] == 20
    assert any("eval/disc_auc" in r for r in records)
    plots = [o for o in tagged(quickstart, "plot").outputs if "image/png" in o.get("data", {})]
    assert len(plots) == 1
    # Progress reached the console while the training cell ran, not when the notebook ended.
    (train_cell,) = [c for c in quickstart.cells if "train(config, WORKDIR)" in c.source]
    finished = datetime.datetime.fromisoformat(train_cell.metadata.execution["shell.execute_reply"])
    progress = [
        when for when, text in console.pieces if " step 1/20 " in text or "step 2/20" in text
    ]
    assert progress and progress[0] < finished, console.getvalue()[:2000]
    assert "--- cell " in console.getvalue() and "[figure: image/png]" in console.getvalue()
    for tag in ("detect", "detect-replaced"):  # tokens coloured by p(replaced), as HTML
        shown = html_of(tagged(quickstart, tag))
        assert shown and all('class="electra-detect"' in h for h in shown), tag
        assert "p(replaced) = " in shown[0], tag
    assert "legend:" in text_of(tagged(quickstart, "detect"))  # format_result's text report
    replaced = tagged(quickstart, "detect-replaced")
    assert "hand-picked word: 'number' -> " in text_of(replaced)
    assert "text-decoration: underline" in html_of(replaced)[-1]  # the replaced position

    inspect = execute("inspect_checkpoint.ipynb")
    config, params, tokenizer = load_model(str(workdir / "export"))
    counts = text_of(tagged(inspect, "params"))
    assert f"total parameters: {count_params(params)} " in counts
    assert f"discriminator parameters: {discriminator_param_count(params)} " in counts
    config_lines = text_of(tagged(inspect, "config")).splitlines()
    assert ["hidden_size", str(config.hidden_size)] in [line.split() for line in config_lines]
    assert f"mask_id={tokenizer.mask_id} [MASK]" in text_of(tagged(inspect, "tokenizer"))
    checkpoint = text_of(tagged(inspect, "checkpoint"))
    assert "latest checkpoint step: 20" in checkpoint
    assert "metrics logged at step 20:" in checkpoint and "eval/disc_auc" in checkpoint
    assert "p(replaced)" in text_of(tagged(inspect, "detect"))


def test_run_notebook_streams_output_while_a_cell_runs(tmp_path, jupyter_env):
    """launch/run_notebook.py prints a cell's first line before the cell ends (`jupyter execute`
    prints no cell output); a failing cell: its traceback, one error line,
    exit 1, and --output still written."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(
            'import time\nprint("first", flush=True)\ntime.sleep(3)\nprint("second")'
        ),
        nbformat.v4.new_code_cell('raise ValueError("boom")'),
    ]  # fmt: skip
    path = tmp_path / "streams.ipynb"
    nbformat.write(nb, str(path))
    command = [sys.executable, os.path.join(REPO, "launch", "run_notebook.py"), str(path),
               f"--output={tmp_path / 'ran.ipynb'}"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)  # fmt: skip
    arrived = {}
    try:
        for line in proc.stdout:
            arrived.setdefault(line.strip(), time.monotonic())
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 1, err
    finally:  # a failed wait leaves no runner (and its kernel) behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert arrived["second"] - arrived["first"] > 2.0, arrived  # streamed, not at the end
    assert "--- cell 0: import time" in arrived
    assert "ValueError" in err and err.strip().splitlines()[-1] == (
        f"error: {path}: a cell failed (ValueError: boom); its traceback is above"
    )
    ran = nbformat.read(str(tmp_path / "ran.ipynb"), as_version=4)
    assert ran.cells[0].outputs[0].text == "first\n"
