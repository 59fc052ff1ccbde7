"""Layering: the sans-I/O core imports no I/O library, and ``import fastmd`` stays light."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import fastmd

PACKAGE = Path(fastmd.__file__).resolve().parent
REPO = PACKAGE.parent
IO_LIBRARIES = ("asyncio", "picows", "aiohttp", "uvloop")


def _run(code: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


LOADED = (
    "import sys; print(' '.join(sorted(m for m in sys.modules "
    "if m.split('.')[0] in {libs!r} or m.startswith('fastmd'))))"
)


def test_core_imports_no_io_library() -> None:
    code = (
        "import fastmd.core.streams, fastmd.core.codec, fastmd.core.events, "
        "fastmd.core.rest_models, sys\n" + LOADED.format(libs=IO_LIBRARIES)
    )
    loaded = _run(code).split()
    assert "fastmd.core.codec" in loaded
    assert [m for m in loaded if m.split(".")[0] in IO_LIBRARIES] == []


def test_import_fastmd_is_light() -> None:
    loaded = _run("import fastmd\n" + LOADED.format(libs=IO_LIBRARIES)).split()
    assert "fastmd" in loaded
    assert [m for m in loaded if m.split(".")[0] in IO_LIBRARIES] == []
    assert "fastmd.core.codec" not in loaded


def test_decoder_attribute_loads_codec_lazily() -> None:
    code = (
        "import sys, fastmd\n"
        "assert 'fastmd.core.codec' not in sys.modules\n"
        "fastmd.Decoder\n"
        "print('fastmd.core.codec' in sys.modules)\n"
    )
    assert _run(code).strip() == "True"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def test_core_sources_import_no_io_library() -> None:
    files = sorted((PACKAGE / "core").rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] in IO_LIBRARIES
        )
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_static_check_sees_imports(tmp_path: Path) -> None:
    """The static check itself finds every import form."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import asyncio\nfrom picows import ws_connect\nimport aiohttp.web as web\n"
        "from . import sibling\nimport importlib\nimportlib.import_module('uvloop')\n"
    )
    found = _imported_modules(sample)
    assert {"asyncio", "picows", "aiohttp.web", "uvloop"} <= found


def test_the_library_configures_no_logging() -> None:
    """No handler at all, not even a NullHandler: with none, Python's last-resort handler shows
    fastmd's warnings and errors in an application that configured nothing (as asyncio's)."""
    code = (
        "import logging, fastmd, fastmd.aio.client, fastmd.sim\n"
        "names = ['fastmd', 'fastmd.aio.client', 'fastmd.aio.connection', '']\n"
        "print(sum(len(logging.getLogger(n).handlers) for n in names))\n"
    )
    assert _run(code).split() == ["0"]
