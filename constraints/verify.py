"""Check that a tox environment holds the dependency versions it claims to test.

``python constraints/verify.py pinned constraints/minimums.txt``: every pinned package is
installed at exactly its pin. ``python constraints/verify.py newest``: no dependency that
pyproject.toml declares (runtime and extras) has a newer release on the index than installed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_IN_TEST_ENVS = frozenset({"docs"})
"""Extras no tox test environment installs (the site's tooling: .ci/run builds it with the newest
releases), so neither pinned nor checked here."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return _canonical(match.group(0))


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_requirement_name(r) for r in project["dependencies"]}
    for name, extra in project["optional-dependencies"].items():
        if name in NOT_IN_TEST_ENVS:
            continue
        names |= {_requirement_name(r) for r in extra}
    return names


def pinned(path: Path) -> list[str]:
    problems = []
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pin = line.partition("==")
            pins[_canonical(name)] = pin.strip()
    missing = declared() - set(pins)
    if missing:
        problems.append(f"declared but not pinned in {path.name}: {sorted(missing)}")
    for name, pin in sorted(pins.items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            problems.append(f"{name}: not installed (pinned {pin})")
            continue
        if installed != pin:
            problems.append(f"{name}: {installed} installed, {pin} pinned")
    return problems


def newest() -> list[str]:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--outdated", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    wanted = declared()
    return [
        f"{item['name']}: {item['version']} installed, {item['latest_version']} released"
        for item in json.loads(listing.stdout)
        if _canonical(item["name"]) in wanted
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["pinned"] and len(argv) == 2:
        problems = pinned(Path(argv[1]))
    elif argv == ["newest"]:
        problems = newest()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"verify: {problem}", file=sys.stderr)
    if not problems:
        print(f"verify: {argv[0]} versions confirmed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
