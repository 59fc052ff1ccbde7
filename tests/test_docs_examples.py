"""Every ```python block of docs/*.md and of the README must run.

The blocks of one page run in order in one namespace, so a page can build on its earlier
examples; a failure's traceback names the .md file and line. Blocks that must not run are fenced
as ```text (or any other language).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown text (indented ones too, in list items), with the line
    number of each opening fence."""
    return [
        (text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group(2)))
        for m in FENCE.finditer(text)
    ]


PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


def test_docs_exist() -> None:
    for name in ("index.md", "events.md", "streams.md", "decoding.md", "benchmarks.md"):
        assert python_blocks((DOCS / name).read_text(encoding="utf-8")), name
    assert python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


def test_block_extraction() -> None:
    text = (
        "intro\n```python\nx = 1\n```\n"
        "```text\nnot run\n```\n"
        "- item\n\n  ```python\n  y = x\n  ```\n"
    )
    assert python_blocks(text) == [(2, "x = 1\n"), (10, "y = x\n")]


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_examples_run(page: Path) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for line, source in blocks:
        # Pad with newlines so that tracebacks point at the right line of the .md file.
        exec(compile("\n" * line + source, str(page), "exec"), namespace)
