"""The package's shape (ARCHITECTURE.md): layers import downwards only, no import circle, no
module over 500 lines, imports of our own modules at the top of each file, no sys.path edits."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "electra_jax"
MAX_MODULE_LINES = 500
# Each layer may import the layers listed after it (ARCHITECTURE.md), and itself.
LAYERS = {
    "entry": ("pretrain", "prepare", "detect", "convert", "finetune", "train", "files", "data",
              "model", "base"),
    "convert": ("files", "data", "model", "base"),
    "finetune": ("train", "files", "data", "model", "base"),
    "train": ("files", "data", "model", "base"),
    "files": ("data", "model", "base"),
    "data": ("base",),
    "model": ("base",),
    "base": (),
}  # fmt: skip
ENTRY_MODULES = ("pretrain", "prepare", "detect", "compile_check")
BASE_MODULES = ("cli", "errors", "config_fields", "storage")


def module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def layer_of(module: str) -> str:
    """The layer of `electra_jax.<part>...`."""
    part = module.split(".")[1] if "." in module else ""
    if part in ENTRY_MODULES or module.endswith(".__main__"):
        return "entry"
    if part in BASE_MODULES or part == "":
        return "base"
    return part


def own_imports(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    """(imported electra_jax module, the statement) for every import of our own package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("electra_jax"):
            if node.module == "electra_jax":
                found += [(f"electra_jax.{a.name}", node) for a in node.names]
            else:
                found += [(node.module, node) for _ in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node) for a in node.names if a.name.startswith("electra_jax")]
    return found


def package_modules() -> dict[str, ast.AST]:
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, modules: dict[str, ast.AST]) -> str:
    """`electra_jax.data.tokenizer.load_tokenizer` -> the module that defines it."""
    while module not in modules and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def test_layers_import_downwards_only():
    modules = package_modules()
    wrong = []
    for name, tree in modules.items():
        source = layer_of(name)
        for imported, _ in own_imports(tree):
            target = layer_of(resolve(imported, modules))
            if target != source and target not in LAYERS[source]:
                wrong.append(f"{name} ({source}) imports {imported} ({target})")
    assert not wrong, wrong


def test_no_import_circle():
    modules = package_modules()
    graph = {
        name: {resolve(m, modules) for m, _ in own_imports(tree)} - {name}
        for name, tree in modules.items()
    }
    # A package __init__ is imported before its modules; count only module -> module edges.
    visiting, done, circles = set(), set(), []

    def visit(node: str, path: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            circles.append(path[path.index(node) :] + [node])
            return
        visiting.add(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert not circles, circles


def test_modules_are_small_and_import_their_own_package_at_the_top():
    """Also the tooling (launch/, bench/): electra_jax is imported at the top of each file."""
    too_long, local = [], []
    tooling = [p for folder in ("launch", "bench") for p in (REPO / folder).rglob("*.py")]
    for path in sorted([*PACKAGE.rglob("*.py"), *tooling]):
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        tree = ast.parse(text)
        top_level = set(map(id, tree.body))
        for imported, node in own_imports(tree):
            if id(node) not in top_level:
                local.append(f"{path.relative_to(REPO)}:{node.lineno} imports {imported}")
    assert not too_long, too_long
    assert not local, local


def test_no_sys_path_edits():
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("electra_jax", "launch", "bench", "configs", "tests")
        for p in sorted((REPO / folder).rglob("*.py"))
        if p.name != "test_layout.py" and "sys.path.insert" in p.read_text()
    ]
    assert not offenders, offenders
