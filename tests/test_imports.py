"""No import cycle in ``src/``, counting imports inside functions (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tflite_reorder"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (top level, functions, TYPE_CHECKING
    blocks excepted: those never run)."""
    files = {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    compiled = {_module_name(p) for p in (SRC / PACKAGE).rglob("_*.c")}  # C extensions
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = {id(n) for node in ast.walk(tree) if _is_type_checking(node)
                for n in ast.walk(node)}
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            for t in targets:
                # a name inside a module: the module
                while t and t not in files and t not in compiled:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    # Importing a submodule first runs its subpackages' __init__, unless the importer is
    # inside that subpackage (then it already ran); the root's always ran.
    for name in list(graph):
        graph[name] |= {p for d in graph[name] for p in _subpackages(d)
                        if p != name and not name.startswith(p + ".")}
    return graph


def _subpackages(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_reads_function_level_and_relative_imports():
    graph = import_graph()
    # batch imports the API inside process_one, the CLI its commands' modules in functions
    assert f"{PACKAGE}.api" in graph[f"{PACKAGE}.batch"]
    assert f"{PACKAGE}.scheduling" in graph[f"{PACKAGE}.rewrites.measure"]


def test_no_import_cycle_in_src():
    graph = import_graph()
    # The package __init__ is the public surface: it imports the API, no module imports it.
    users = sorted(k for k, v in graph.items() if PACKAGE in v)
    assert users == [], f"modules importing the package __init__ (use its modules): {users}"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
