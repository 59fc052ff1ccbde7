"""Running ``python`` and the ``fastmd`` command as a user runs them: a subprocess in the
repository, with the repository first on ``PYTHONPATH`` and its output captured as text."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import fastmd

REPO = Path(fastmd.__file__).resolve().parent.parent
# Python source that makes ``prometheus_client`` unimportable for the rest of the program: the
# start of a ``python -c`` script that checks what fastmd does without the prometheus extra.
WITHOUT_PROMETHEUS_CLIENT = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'prometheus_client':\n"
    "            raise ImportError('No module named ' + repr(name))\n"
    "sys.meta_path.insert(0, Block())\n"
)


def repo_env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def python(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python *argv`` run to its end in the repository; never raises on its exit code."""
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=repo_env(), cwd=REPO,
        timeout=timeout, check=False,
    )  # fmt: skip


def fastmd_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m fastmd *args`` run to its end (stdout a pipe, so views are line based)."""
    return python("-m", "fastmd", *args, timeout=timeout)


def render(view: object, width: int, height: int) -> list[str]:
    """The lines a terminal of ``width`` x ``height`` shows for the rich renderable ``view``."""
    from rich.console import Console

    console = Console(
        width=width, height=height, file=io.StringIO(), color_system=None, legacy_windows=False
    )
    console.print(view)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return str(text).rstrip("\n").split("\n")
