"""Layers only point down: no two parts of the package import each other (type-only imports
included), no two modules import each other when they run, and the API sees the service only
through api.NodeView. The house's size rules hold: no module over 600 lines, no class over
400, the node core's facade under 500, no C file over 500 (shared/DESIGN.md)."""

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


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of the import statements under ``if TYPE_CHECKING:`` (never run)."""
    return {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
            and getattr(node.test, "id", "") == "TYPE_CHECKING"
            for inner in ast.walk(node)}  # fmt: skip


# Modules whose type-only imports may point back at modules that import them: the node core's
# context holds the parts, which each hold the context (node/context.py).
TYPE_ONLY_BACK_REFERENCES = {"oneservice.node.context"}


def _imports(unit=_part) -> dict[str, set[str]]:
    """Unit (a part, by default) -> the other units it imports (the package itself, home of
    __version__, aside), type-only imports included but for TYPE_ONLY_BACK_REFERENCES'."""
    graph: dict[str, set[str]] = {}
    modules = {".".join(["oneservice", *f.relative_to(PACKAGE).with_suffix("").parts])
               for f in PACKAGE.rglob("*.py")}  # fmt: skip
    for file in PACKAGE.rglob("*.py"):
        parts = ["oneservice", *file.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
            package = parts
        else:
            package = parts[:-1]
        module = ".".join(parts)
        tree = ast.parse(file.read_text())
        skipped = _type_only(tree) if module in TYPE_ONLY_BACK_REFERENCES else set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or id(node) in skipped:
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("oneservice."):
                target = node.module
            else:
                continue
            # "from . import wire" names a module; "from .wire import X" a name in one.
            named = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            for imported in named or [target]:
                if imported != "oneservice" and unit(imported) != unit(module):
                    graph.setdefault(unit(module), set()).add(unit(imported))
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


def test_no_module_imports_one_that_imports_it() -> None:
    # Within a part too: store -> controller -> mirror -> store was such a loop.
    assert _cycle(_imports(unit=lambda module: module)) is None


def test_no_module_over_600_lines_no_class_over_400_and_a_small_core() -> None:
    too_big = [f"{file.relative_to(PACKAGE.parent)}: {file.read_text().count(chr(10))} lines"
               for file in sorted(PACKAGE.rglob("*.[ch]"))
               if file.read_text().count("\n") > 500]  # the C extensions' files too
    for file in sorted(PACKAGE.rglob("*.py")):
        text = file.read_text()
        name = file.relative_to(PACKAGE.parent)
        lines = text.count("\n")
        if lines > 600 or (file.name == "core.py" and lines >= 500):
            too_big.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 400:
                too_big.append(f"{name}: class {node.name}, {node.end_lineno - node.lineno + 1}")
    assert too_big == []


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


def test_the_wiring_writes_no_other_objects_fields():
    """The service and its wiring modules tell components through their methods: no
    ``self.core.relay = ...`` or ``self.devices.configs[n] = ...`` (issue 26: one home per
    fact, kept by its own object)."""
    found = []
    for name in ("service.py", "routefeed.py", "pump.py", "whoami.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                       if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])  # fmt: skip
            for target in targets:
                while isinstance(target, ast.Subscript):
                    target = target.value
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    found.append(f"{name}:{node.lineno} {ast.unparse(target)}")
    assert not found, found


def test_a_member_node_loads_no_controller_and_no_database_module():
    """The node's start-up path imports neither the controller nor SQLite nor psycopg: only a
    controller needs them (issue 29, item 3: import only what the configuration uses)."""
    import subprocess
    import sys

    code = ("import sys, oneservice.__main__, oneservice.service, oneservice.api; "
            "print(sorted(m for m in sys.modules if m.startswith(('oneservice.controller.control"
            "ler', 'oneservice.controller.store', 'oneservice.controller.postgres', 'sqlite3', "
            "'_sqlite3', 'psycopg'))))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == "[]", result.stdout


def test_the_node_starts_without_modules_it_has_no_use_for():
    """What an idle node has no use for stays out of its memory (issue 29, item 3): pyroute2
    (5 MiB), shutil with bz2 and lzma (0.5 MiB; argparse asked it for the terminal's width),
    argparse (0.3 MiB with the gettext it loads: the command line is read with getopt),
    random with secrets and base64 (0.15 MiB: oneservice/randomness.py),
    ctypes (0.4 MiB, where the allocator extension is built), uvloop (with the ssl it
    imports, 3.3 MiB) and ssl (asyncio's, for TLS the node never opens: 1.3 MiB). Whatever
    needs TLS later (psycopg) still imports ssl."""
    import subprocess
    import sys

    unwanted = ["pyroute2", "shutil", "bz2", "lzma", "argparse", "random", "secrets", "base64",
                "uvloop", "ssl", "_ssl"]
    try:
        import oneservice._allocator  # noqa: F401
    except ImportError:
        pass
    else:
        unwanted.append("ctypes")
    code = ("import sys, oneservice.__main__ as main; main.parse_args([]); main.tune_malloc(); "
            "main.load_service(); import oneservice.api; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {unwanted!r})); "
            "import ssl; print(ssl.OPENSSL_VERSION_INFO > (1,))"
            )  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.split() == ["[]", "True"], result.stdout


def test_identities_are_checked_before_the_node_loads_the_rest():
    """Checking an identity takes scrypt's 16 MiB for a moment: done while the process is
    small (ours, and the members of hand-written networks: the network files are read
    before the rest too), the node's start-up peak stays at ~34 MiB (40 on top of the whole
    node)."""
    import subprocess
    import sys
    import tempfile

    code = ("import sys, oneservice.__main__ as main\n"
            "def loaded(home):\n"
            "    print(sorted(m for m in ('asyncio', 'msgpack', 'oneservice.service')\n"
            "                 if m in sys.modules))\n"
            "    raise main.IdentityError('stop here')\n"
            "main.load_network_files = loaded\n"
            "sys.exit(main.main(['--home', sys.argv[1]]))\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run([sys.executable, "-c", code, home], capture_output=True,
                                text=True)  # fmt: skip
    assert result.returncode == 1 and "stop here" in result.stderr, result.stderr
    assert result.stdout.strip() == "[]", "asyncio and the service were loaded first"
