"""The READMEs name only tools the requirements install (issue 20: notebooks/README.md told
readers to run `jupyter nbconvert`, which nothing installs, and said requirements.txt installs
nbclient, which requirements-dev.txt does)."""

from __future__ import annotations

import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READMES = ("README.md", "notebooks/README.md")


def read(path: str) -> str:
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def requirement_names(path: str) -> set[str]:
    """Package names a requirements file installs, following `-r other.txt`."""
    names: set[str] = set()
    for line in read(path).splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(os.path.join(os.path.dirname(path), line[3:].strip()))
        elif line:
            names.add(re.split(r"[\[=<>~! ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.mark.parametrize("readme", READMES)
def test_jupyter_subcommands_named_are_installed_or_installed_on_the_spot(readme):
    """Each `jupyter SUB` a README tells you to run exists in this environment (the dev
    requirements), unless the same line says to `pip install` it first."""
    bin_dir = os.path.dirname(sys.executable)
    for line in read(readme).splitlines():
        for sub in re.findall(r"\bjupyter ([a-z][\w-]*)", line):
            if "pip install" in line:
                continue
            assert os.path.exists(os.path.join(bin_dir, f"jupyter-{sub}")), (
                f"{readme} names `jupyter {sub}`, which the requirements do not install: {line}"
            )


@pytest.mark.parametrize("readme", READMES)
def test_requirement_files_install_what_the_readme_says(readme):
    """ "`requirements-X.txt` installs `a` and `b`" holds for that file."""
    text = " ".join(read(readme).split())
    claims = re.findall(r"`(requirements[\w-]*\.txt)` installs ((?:`[\w-]+`(?:, | and |,? )?)+)",
                        text)  # fmt: skip
    for path, packages in claims:
        installed = requirement_names(path)
        for package in re.findall(r"`([\w-]+)`", packages):
            assert package.lower() in installed, f"{readme}: {path} does not install {package}"


def test_notebook_readme_clear_outputs_command_clears_outputs(tmp_path):
    """The README's way to clear outputs without nbconvert works on a notebook with outputs."""
    import subprocess

    import nbformat

    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", read("notebooks/README.md"), re.S)
                if "nbformat" in b]  # fmt: skip
    nb = nbformat.read(os.path.join(REPO, "notebooks", "quickstart.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    code[0].execution_count = 3
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    script = block.replace("notebooks/*.ipynb", str(path)).replace(
        "python -c", sys.executable + " -c"
    )
    subprocess.run(["bash", "-c", script], check=True, timeout=60)
    cleared = nbformat.read(str(path), as_version=4)
    assert all(c.outputs == [] and c.execution_count is None
               for c in cleared.cells if c.cell_type == "code")  # fmt: skip
    assert [c.source for c in cleared.cells] == [c.source for c in nb.cells]
