"""The asyncio layer's architecture (docs/architecture.md), checked on the source: which module
may import which, nobody imports the client façade back, and no module touches another
object's private members."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastmd

PACKAGE = Path(fastmd.__file__).resolve().parent

# What each module of fastmd/aio may import from fastmd/aio (it may always import fastmd.core and
# fastmd.errors). The table is the one in docs/architecture.md; it has no cycle.
AIO_IMPORTS: dict[str, set[str]] = {
    "tasks": set(),
    "metrics": set(),
    "subscriptions": {"tasks"},
    "rest": set(),
    "reporting": set(),
    "clock": {"reporting", "rest", "tasks"},
    "connection": {"reporting"},
    "gaps": {"reporting"},
    "status": {"metrics", "reporting"},
    "routes": {"reporting", "subscriptions", "pool"},  # the last two for type hints only
    "router": {"routes"},
    "sbe_router": {"routes"},
    "pool": {"connection", "reporting", "router", "routes", "sbe_router", "tasks"},
    "recovery": {"reporting", "rest", "routes", "tasks"},
    "book": {"reporting", "rest", "subscriptions", "tasks"},
    "market": {"metrics", "rest", "subscriptions"},
    "health": {"clock", "pool", "recovery", "reporting", "rest", "routes", "tasks"},
    "record": set(),
    "client": {
        "book",
        "connection",
        "gaps",
        "health",
        "market",
        "metrics",
        "pool",
        "recovery",
        "reporting",
        "rest",
        "routes",
        "status",
        "subscriptions",
        "tasks",
    },
}
TYPE_HINT_ONLY = {("routes", "pool"), ("routes", "subscriptions")}

# Private members are touched only through self or cls, in every package.
CHECKED = ("aio", "cli", "core", "sim")


def _sources(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (PACKAGE / package).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[str, list[str], ast.AST]]:
    """``(module, names, node)`` of every import, absolute names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names], node))
    return found


def _type_checking_imports(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            inside |= {id(child) for child in ast.walk(node)}
    return inside


def _reach_ins(tree: ast.AST) -> list[str]:
    """``x._member`` where ``x`` is not ``self`` or ``cls``, and private names imported from
    another module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastmd"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
    return found


def test_the_table_lists_every_aio_module() -> None:
    modules = {path.stem for path in (PACKAGE / "aio").glob("*.py")} - {"__init__"}
    assert modules == set(AIO_IMPORTS)


@pytest.mark.parametrize("module", sorted(AIO_IMPORTS))
def test_aio_imports_follow_the_table(module: str) -> None:
    tree = ast.parse((PACKAGE / "aio" / f"{module}.py").read_text())
    hinted = _type_checking_imports(tree)
    for name, _, node in _imports(tree):
        if name.startswith("fastmd.") and name.split(".")[1] in ("sim", "cli"):
            pytest.fail(f"fastmd.aio.{module} imports {name}: the library never needs them")
        if not name.startswith("fastmd.aio."):
            continue
        target = name.split(".")[2]
        assert target in AIO_IMPORTS[module], f"fastmd.aio.{module} imports {name}"
        if (module, target) in TYPE_HINT_ONLY:
            assert id(node) in hinted, f"fastmd.aio.{module} imports {name} outside TYPE_CHECKING"


def test_the_table_has_no_cycle() -> None:
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for target in AIO_IMPORTS[module]:
            if (module, target) not in TYPE_HINT_ONLY:
                visit(target, (*path, module))
        done.add(module)

    for module in AIO_IMPORTS:
        visit(module, ())


def test_nothing_imports_the_client_facade() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in (PACKAGE / "__init__.py", PACKAGE / "aio" / "client.py"):
            continue  # the public namespace re-exports Client; the façade is itself
        tree = ast.parse(path.read_text())
        for name, names, _ in _imports(tree):
            if name == "fastmd.aio.client" or (name == "fastmd.aio" and "client" in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_core_imports_nothing_above_it() -> None:
    for path in _sources("core"):
        for name, _, _ in _imports(ast.parse(path.read_text())):
            assert not name.startswith(("fastmd.aio", "fastmd.sim", "fastmd.cli")), (path, name)


@pytest.mark.parametrize("path", _sources(*CHECKED), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_reach_ins(path: Path) -> None:
    assert _reach_ins(ast.parse(path.read_text())) == []


def test_the_reach_in_check_sees_them() -> None:
    sample = ast.parse(
        "from fastmd.aio.client import _Route\n"
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = 1\n"
        "        other._theirs = 2\n"
        "        return self.conn._socket, other.__class__\n"
    )
    assert _reach_ins(sample) == [
        "1: from fastmd.aio.client import _Route",
        "5: other._theirs",
        "6: self.conn._socket",
    ]
