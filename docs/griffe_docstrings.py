"""A griffe extension (mkdocs.yml, mkdocstrings' ``extensions``): fastmd's docstrings as the
API reference shows them.

fastmd's docstrings are Google style, and name other objects with Sphinx roles
(``:class:`fastmd.Connection```, ``:meth:`~fastmd.Client.health```), which Markdown would show
as they are written. Each role becomes inline code with Sphinx's text (``~`` keeps the last
component only); a role naming a name that has its own ``::: name`` entry in docs/reference/
(``fastmd.Client``, ``fastmd.sim.Exchange``, ...) also links to it. Other targets (a method, a
private module) stay unlinked: under ``mkdocs build --strict`` a link whose target the
reference does not render would fail the build.

Grouped parameters (``backoff, heartbeat: ...`` in an ``Args:`` section) are written out as one
item per name, so each is matched with its signature's annotation and default; reST's ``::``
before a literal block becomes ``:`` (the indented block is a Markdown code block already).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|obj|exc|const):`(~?)([^`]+)`")
REFERENCE = Path(__file__).resolve().parent / "reference"
LINKED = frozenset(
    name
    for page in REFERENCE.glob("*.md")
    for name in re.findall(r"^::: ([\w.]+)[ \t]*$", page.read_text(encoding="utf-8"), re.M)
)
"""Every name with its own ``::: name`` entry in docs/reference/: the link targets that exist."""


def convert_roles(text: str) -> str:
    """``text`` with every Sphinx role replaced by Markdown inline code (linked when the target
    is a documented top-level name)."""

    def replace(match: re.Match[str]) -> str:
        tilde, target = match.groups()
        target = target.removesuffix("()")
        shown = target.rsplit(".", 1)[-1] if tilde else target
        if target in LINKED:
            return f"[`{shown}`][{target}]"
        return f"`{shown}`"

    return ROLE.sub(replace, text)


PARAMETER_SECTION = re.compile(r"^(\s*)(?:Args|Arguments|Parameters|Params):\s*$")
GROUPED_PARAMETERS = re.compile(r"^(\s+)([A-Za-z_]\w*(?:,\s*[A-Za-z_]\w*)+):(.*)$")


def split_grouped_parameters(text: str) -> str:
    """``text`` with each ``a, b, c: description`` item of an ``Args:`` section written out as
    one item per name, each with the whole description (numpydoc's grouped parameters, which
    fastmd's Google-style docstrings use and griffe's Google parser reads as one unknown name)."""
    lines = text.splitlines()
    out: list[str] = []
    section: int | None = None  # indentation of the current Args: header
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        header = PARAMETER_SECTION.match(line)
        if header:
            section = len(header.group(1))
        elif line.strip() and section is not None and indent <= section:
            section = None
        grouped = GROUPED_PARAMETERS.match(line) if section is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        item_indent, names, first = grouped.groups()
        continuation = []
        i += 1
        while i < len(lines) and lines[i].strip():
            if len(lines[i]) - len(lines[i].lstrip()) <= len(item_indent):
                break
            continuation.append(lines[i])
            i += 1
        for name in (n.strip() for n in names.split(",")):
            out.append(f"{item_indent}{name}:{first}")
            out.extend(continuation)
    return "\n".join(out)


LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)


def literal_blocks(text: str) -> str:
    """reST's ``text::`` before an indented block becomes ``text:``; the indented block is
    already a Markdown code block."""
    return LITERAL_BLOCK.sub(":", text)


class Docstrings(griffe.Extension):
    """Rewrites every docstring once griffe has built the object tree: Sphinx roles into
    Markdown, grouped parameters into one item each."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = split_grouped_parameters(obj.docstring.value)
            obj.docstring.value = literal_blocks(convert_roles(text))
