"""Layers only point down: no two parts of the package import each other (type-only imports
included), and the API sees the service only through api.NodeView."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import oneservice
from oneservice.api import NodeView
from oneservice.service import Service

PACKAGE = Path(oneservice.__file__).parent


def _part(module: str) -> str:
    """oneservice.node.core -> oneservice.node: the unit whose imports we compare."""
    return ".".join(module.split(".")[:2])


def _imports() -> dict[str, set[str]]:
    """Part -> the other parts it imports (the package itself, home of __version__, aside)."""
    graph: dict[str, set[str]] = {}
    for file in PACKAGE.rglob("*.py"):
        parts = ["oneservice", *file.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
            package = parts
        else:
            package = parts[:-1]
        module = ".".join(parts)
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("oneservice."):
                target = node.module
            else:
                continue
            if target != "oneservice" and _part(target) != _part(module):
                graph.setdefault(_part(module), set()).add(_part(target))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for after in sorted(graph.get(node, ())):
            if state.get(after) == "open":
                return [*trail, node, after]
            if after not in state and (found := visit(after, [*trail, node])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_no_part_of_the_package_imports_one_that_imports_it() -> None:
    assert _cycle(_imports()) is None


def test_the_api_does_not_import_the_service() -> None:
    assert "oneservice.service" not in _imports()["oneservice.api"]


def test_the_service_provides_everything_the_api_may_use() -> None:
    wanted = {name for name in vars(NodeView) if not name.startswith("_")}
    wanted |= set(inspect.get_annotations(NodeView))
    init = ast.parse(inspect.getsource(Service.__init__).lstrip())
    assigned = {node.attr for node in ast.walk(init)
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id == "self"}  # fmt: skip
    missing = {name for name in wanted if not hasattr(Service, name) and name not in assigned}
    assert not missing
