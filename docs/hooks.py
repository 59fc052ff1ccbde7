"""mkdocs hooks of fastmd's documentation site (``hooks:`` in mkdocs.yml).

- ``docs/reference/cli.md`` gets the help of every ``fastmd`` command, as the installed command
  prints it (``python -m fastmd COMMAND --help``), in place of its marker line: the CLI reference
  is generated from the argparse parser itself and cannot drift from it. The commands are read
  from ``fastmd --help``'s usage line, so a new subcommand appears without editing the page.
- At startup, ``benchmarks/plots.py`` runs on the committed results into a temporary directory:
  the build fails if the script no longer runs on them, or no longer makes every image that
  ``docs/images/`` holds (the committed images are what the pages embed).

This module imports nothing from mkdocs, so tests/test_docs_site.py can import it without the
``docs`` extra installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI_PAGE = "reference/cli.md"
CLI_MARKER = "<!-- fastmd-cli-help -->"
HELP_COLUMNS = "100"
_COMMANDS = re.compile(r"\{([a-z][a-z0-9_,-]*)\} \.\.\.")


def fastmd_help(*command: str) -> str:
    """``fastmd [COMMAND] --help`` as printed by the installed package, wrapped at 100 columns
    whatever the terminal; raises ``RuntimeError`` with its stderr if the command fails."""
    env = {**os.environ, "COLUMNS": HELP_COLUMNS}
    done = subprocess.run(
        [sys.executable, "-m", "fastmd", *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"fastmd {' '.join(command)} --help failed: {done.stderr.strip()}")
    return done.stdout


def subcommands(top_help: str) -> list[str]:
    """The subcommands named in the ``{a,b,c} ...`` group of ``fastmd --help``'s usage line
    (option choices, ``--loop {asyncio,uvloop}``, have no ``...`` after them)."""
    usage = top_help.split("\n\n", 1)[0]
    match = _COMMANDS.search(usage)
    if match is None:
        raise RuntimeError(f"no {{COMMAND,...}} group in fastmd's usage: {usage!r}")
    return match.group(1).split(",")


def cli_reference() -> str:
    """The Markdown of the CLI reference: ``fastmd --help``, then each command's help."""
    top = fastmd_help()
    parts = ["## `fastmd`", "", "```text", top.rstrip(), "```"]
    for command in subcommands(top):
        parts += ["", f"## `fastmd {command}`", "", "```text", fastmd_help(command).rstrip(), "```"]
    return "\n".join(parts) + "\n"


def on_startup(**_: Any) -> None:
    """Run the plot script on the committed results (a temporary output directory); fail the
    build if it breaks or if it no longer makes an image the pages embed."""
    committed = {p.name for p in (ROOT / "docs" / "images").glob("*.png")}
    with tempfile.TemporaryDirectory(prefix="fastmd-plots-") as out:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.plots", "--out", out],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"benchmarks/plots.py failed: {done.stderr.strip()}")
        made = {p.name for p in Path(out).glob("*.png")}
    if committed - made:
        raise RuntimeError(f"benchmarks/plots.py no longer makes {sorted(committed - made)}")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Put the generated CLI reference in place of the marker on its page."""
    if page.file.src_uri != CLI_PAGE:
        return markdown
    if CLI_MARKER not in markdown:
        raise RuntimeError(f"{CLI_PAGE} lost its marker line {CLI_MARKER}")
    return markdown.replace(CLI_MARKER, cli_reference())
