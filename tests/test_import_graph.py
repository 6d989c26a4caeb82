"""The house is one-way: imports flow runtime ← export / calibration ← API ← CLI, with no cycles.

Every import counts, the lazy ones inside functions included: a lazy import upward is still a
dependency upward (it only fails later, on a user's machine without torch). Read from the
source with ``ast`` so the check needs neither torch nor the optional backends installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder → dotted package, the pyproject package-dir mapping
FOLDERS = {"runtime": "edge_sdk.runtime", "export": "edge_sdk.export", "calibration": "edge_sdk.calibration",
           "edge_sdk": "edge_sdk"}
#: a module may import its own layer and the layers below it; export and calibration sit side by side
RANK = {"runtime": 0, "export": 1, "calibration": 1, "api": 2, "cli": 3}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts[1:] if p != "__init__"]
    return ".".join([FOLDERS[rel.parts[0]], *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))}


def layer(module: str) -> str:
    if module == "edge_sdk.__main__":  # `python -m edge_sdk` is the CLI
        return "cli"
    for prefix, name in (("edge_sdk.runtime", "runtime"), ("edge_sdk.export", "export"),
                         ("edge_sdk.calibration", "calibration"), ("edge_sdk.cli", "cli")):
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "api"


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports (``from pkg import name`` counts as ``pkg.name``
    when that is a module, else as ``pkg``)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                         for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name)
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "edge_sdk.runtime.pipeline" in graph
    assert any(layer(t) == "runtime" for t in graph["edge_sdk.runtime.pipeline"])


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_imports_only_flow_downward():
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if RANK[layer(t)] > RANK[layer(m)])
    assert upward == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_cycle_finder(graph, expected):
    assert cycles(graph) == expected
