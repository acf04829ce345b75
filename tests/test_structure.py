"""The layout of plugin/ (ARCHITECTURE.md): one home per concern, data flowing one way.

Read from the source with ``ast`` (nothing is imported): every import between plugin
modules, module-level or inside a function, is an edge of the import graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"
MAX_LINES = 400

#: The pipeline, in order: a module may import from its own layer and the ones before.
LAYERS = [
    ("base", ["plugin.errors", "plugin.atomic", "plugin.cache", "plugin.datasets",
              "plugin.sandbox"]),
    ("config", ["plugin.config"]),
    ("containers", ["plugin.containers"]),
    ("server", ["plugin.server"]),
    ("generation", ["plugin.generation"]),
    ("evaluation", ["plugin.evaluation"]),
    ("run", ["plugin.runner", "plugin.determinism"]),
    ("gate", ["plugin.gate"]),
    ("report", ["plugin.report"]),
    ("glue", ["plugin.pytest_plugin", "plugin.fixtures", "plugin.bench_state",
              "plugin.__main__", "plugin"]),
]
#: Imports inside functions, and why (never to dodge a cycle: the graph below counts them).
LAZY_IMPORTS = {
    # loaded by every pytest run of an environment where the plugin is installed:
    # Docker, httpx, evalplus and matplotlib only when a benchmark runs
    "plugin.pytest_plugin": "startup", "plugin.fixtures": "startup",
    "plugin.bench_state": "startup",
    "plugin.report.html": "matplotlib (0.5 s) only when plots are drawn",
}
#: In-container code (plugin/sandbox) imports evalplus only once its process is hardened.
IN_CONTAINER = "plugin.sandbox"


def module_name(path: Path) -> str:
    parts = path.relative_to(PLUGIN.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"))
            for p in sorted(PLUGIN.rglob("*.py"))}


def imported(tree: ast.Module, name: str) -> Iterator[tuple[ast.AST, str, list[str], bool]]:
    """(node, module imported, names, inside a function) for every import in ``tree``."""
    package = name if name in PACKAGES else name.rpartition(".")[0]
    functions = [n for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(sub) for fn in functions for sub in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, [], id(node) in nested
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield node, module, [a.name for a in node.names], id(node) in nested


MODULES = modules()
PACKAGES = {name for name in MODULES
            if (PLUGIN.parent / name.replace(".", "/") / "__init__.py").exists()}


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in MODULES.items():
        for _node, module, names, _lazy in imported(tree, name):
            if not module.startswith("plugin"):
                continue
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
            graph[name].update(targets or ([module] if module in MODULES else []))
    return graph


def layer_of(name: str) -> int:
    best = (-1, -1)
    for index, (_label, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                best = max(best, (len(prefix), index))
    assert best[1] >= 0, f"{name} belongs to no layer of the pipeline"
    return best[1]


def test_the_import_graph_has_no_cycle() -> None:
    graph = edges()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt):], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_data_flows_one_way_through_the_pipeline() -> None:
    """config -> containers -> server -> generation -> evaluation -> run -> gate -> report."""
    backwards = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
                 for a, targets in edges().items() for b in targets
                 if b != "plugin" and layer_of(b) > layer_of(a)]
    assert backwards == []


def test_only_the_containers_package_imports_docker() -> None:
    users = sorted({name for name, tree in MODULES.items()
                    for _n, module, _names, _lazy in imported(tree, name)
                    if module == "docker" or module.startswith("docker.")})
    assert users, "nothing imports docker: the check reads the wrong tree"
    assert all(name.startswith("plugin.containers.") for name in users), users


def test_no_module_uses_another_modules_private_names() -> None:
    found = []
    for name, tree in MODULES.items():
        aliases: dict[str, str] = {}
        for node, module, names, _lazy in imported(tree, name):
            if not module.startswith("plugin"):
                continue
            for alias in getattr(node, "names", ()):
                full = f"{module}.{alias.name}" if isinstance(node, ast.ImportFrom) else module
                if full in MODULES:
                    aliases[alias.asname or alias.name.split(".")[-1]] = full
            found += [f"{name} imports {module}.{n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    assert found == []


def test_plugin_modules_import_each_other_at_module_level() -> None:
    lazy = sorted({f"{name} imports {module} inside a function"
                   for name, tree in MODULES.items()
                   for _n, module, _names, inside in imported(tree, name)
                   if inside and module.startswith("plugin") and name not in LAZY_IMPORTS
                   and not name.startswith(IN_CONTAINER)})
    assert lazy == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name: str) -> None:
    path = PLUGIN.parent / (name.replace(".", "/") + (
        "/__init__.py" if name in PACKAGES else ".py"))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path}: {lines} lines"
