"""The documentation site (mkdocs.yml, docs/reference/, docs/hooks.py) stays complete.

`mkdocs build --strict` (.ci/run, with the ``docs`` extra) fails on a broken link or a
reference to a missing object; these tests catch what it cannot see, without mkdocs installed:

- every public name of fastmd, fastmd.sim and the optional top-level modules (prometheus,
  replay, nats, ...) has its ``::: name`` entry in docs/reference/, so a newly exported name
  without reference fails the suite; and every entry names something that exists;
- every page under docs/ is in the nav of mkdocs.yml, and every nav entry is a page;
- the CLI reference, generated from ``fastmd COMMAND --help`` by docs/hooks.py, covers every
  subcommand the parser has.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import fastmd
import fastmd.sim

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
DIRECTIVE = re.compile(r"^::: ([\w.]+)[ \t]*$", re.MULTILINE)
NAV_PAGE = re.compile(r"^\s*-\s+(?:[^:\n]+:\s+)?([\w./-]+\.md)\s*$", re.MULTILINE)

OPTIONAL_MODULES = ("prometheus", "replay", "record", "nats")
"""Top-level modules of fastmd whose public names the reference covers once they exist (their
``__all__`` is read from the source: importing them may need an optional extra)."""


def documented() -> set[str]:
    """Every ``::: dotted.name`` of docs/reference/*.md."""
    names: set[str] = set()
    for page in REFERENCE.glob("*.md"):
        names |= set(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    return names


def static_all(path: Path) -> list[str]:
    """The literal ``__all__`` of a module's source (a list or tuple of strings)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert node.value is not None
            value = ast.literal_eval(node.value)
            assert isinstance(value, list | tuple), path
            return [str(name) for name in value]
    raise AssertionError(f"{path} has no literal __all__")


def optional_modules() -> dict[str, Path]:
    """``fastmd.<name>`` -> its source, for each optional module present in the tree."""
    found = {}
    for name in OPTIONAL_MODULES:
        for path in (ROOT / "fastmd" / f"{name}.py", ROOT / "fastmd" / name / "__init__.py"):
            if path.exists():
                found[f"fastmd.{name}"] = path
    return found


def public_names() -> list[str]:
    names = [f"fastmd.{name}" for name in fastmd.__all__]
    names += [f"fastmd.sim.{name}" for name in fastmd.sim.__all__]
    for module, path in optional_modules().items():
        names += [f"{module}.{name}" for name in static_all(path)]
    return names


def test_reference_pages_exist() -> None:
    assert (REFERENCE / "index.md").exists()
    assert len(documented()) > 100


@pytest.mark.parametrize("name", public_names())
def test_public_name_in_reference(name: str) -> None:
    assert name in documented(), (
        f"{name} is public but has no '::: {name}' entry in docs/reference/*.md: add it to the "
        "page of its topic (the site's API reference is generated from those entries)"
    )


def _resolve(dotted: str) -> object:
    """The object a reference entry names: the longest importable module prefix, then
    attributes. Optional modules are resolved from their source when their extra is missing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module_name)
        except ModuleNotFoundError:
            continue
        if found is None:
            continue
        try:
            obj: object = importlib.import_module(module_name)
        except ImportError:
            # an optional module whose extra is not installed: the name must be in its __all__
            assert found.origin is not None
            assert ".".join(parts[cut:]) in static_all(Path(found.origin)), dotted
            return dotted
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise AssertionError(f"{dotted}: no such module")


def test_reference_entries_exist() -> None:
    for name in sorted(documented()):
        assert name.startswith("fastmd"), name
        _resolve(name)  # raises AttributeError/AssertionError naming a stale entry


def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:") :]
    return NAV_PAGE.findall(nav)


def test_nav_lists_every_page() -> None:
    nav = _nav_pages()
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert len(nav) == len(set(nav)), "a page is twice in the nav"
    assert sorted(nav) == pages, (
        "docs/ pages and mkdocs.yml's nav differ: "
        f"not in nav {sorted(set(pages) - set(nav))}, missing pages {sorted(set(nav) - set(pages))}"
    )


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastmd_docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_subcommands_parsed_from_usage() -> None:
    hooks = _hooks()
    usage = (
        "usage: fastmd [-h] [--loop {asyncio,uvloop}] {demo,watch,sim} ...\n\n"
        "fastmd: Binance market data.\n"
    )
    assert hooks.subcommands(usage) == ["demo", "watch", "sim"]
    with pytest.raises(RuntimeError, match="no"):
        hooks.subcommands("usage: fastmd [-h]\n\nno commands\n")


def test_cli_reference_has_every_command() -> None:
    hooks = _hooks()
    page = hooks.cli_reference()
    commands = hooks.subcommands(hooks.fastmd_help())
    assert {"demo", "watch", "sim"} <= set(commands)
    for command in commands:
        assert f"## `fastmd {command}`" in page
        assert f"usage: fastmd {command} " in page
    assert "--give-up-after" in page  # an option's help text, from the parser itself
    cli_page = (REFERENCE / "cli.md").read_text(encoding="utf-8")
    assert hooks.CLI_MARKER in cli_page


def test_cli_help_failure_is_an_error() -> None:
    hooks = _hooks()
    with pytest.raises(RuntimeError, match="no-such-command"):
        hooks.fastmd_help("no-such-command")


def _docstrings() -> ModuleType:
    """docs/griffe_docstrings.py. It needs griffe, from the ``docs`` extra: the tox test
    environments do not install it (these tests skip there), .ci/run's last run of the suite
    does (they run there), and the site's build runs the extension itself."""
    pytest.importorskip("griffe", reason="the docs extra is not installed")
    spec = importlib.util.spec_from_file_location(
        "fastmd_docs_griffe", DOCS / "griffe_docstrings.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_become_markdown() -> None:
    docstrings = _docstrings()
    assert "fastmd.Client" in docstrings.LINKED  # read from the reference pages
    text = (
        "See :class:`fastmd.Client`, :meth:`~fastmd.Client.health`, :func:`records` and "
        ":mod:`~fastmd.cli.entry`."
    )
    assert docstrings.convert_roles(text) == (
        "See [`fastmd.Client`][fastmd.Client], `health`, `records` and `entry`."
    )
    assert docstrings.convert_roles(":class:`~fastmd.sim.Exchange`") == (
        "[`Exchange`][fastmd.sim.Exchange]"
    )


def test_grouped_parameters_are_split() -> None:
    docstrings = _docstrings()
    text = (
        "Summary.\n\nArgs:\n    venue: the venue.\n    backoff, heartbeat: per-connection\n"
        "        settings.\n    rate: events/s.\n\nReturns:\n    a, b: not parameters.\n"
    )
    assert docstrings.split_grouped_parameters(text) == (
        "Summary.\n\nArgs:\n    venue: the venue.\n    backoff: per-connection\n"
        "        settings.\n    heartbeat: per-connection\n        settings.\n"
        "    rate: events/s.\n\nReturns:\n    a, b: not parameters."
    )


def test_literal_block_markers() -> None:
    docstrings = _docstrings()
    assert docstrings.literal_blocks("Use it as a context manager::\n\n    code") == (
        "Use it as a context manager:\n\n    code"
    )
    assert docstrings.literal_blocks("a :: b") == "a :: b"
