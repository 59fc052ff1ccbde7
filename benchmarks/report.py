"""Turn one pytest-benchmark JSON run into the ratio tables of docs/benchmarks.md.

Usage::

    python -m pytest benchmarks --benchmark-only --benchmark-disable-gc \\
        --benchmark-json=run.json -q
    python -m benchmarks.report run.json

Ratios use each benchmark's ``min`` and compare benchmarks of the same run only.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

LOOP_NOTE = "100 decodes per benchmark call"
GOAL = 1.15
"""fastmd_combined (trade) must cost at most this many times msgspec_bare_typed."""

COLUMNS = (
    "fastmd_combined",
    "fastmd_raw_stream",
    "msgspec_bare_typed",
    "msgspec_raw_two_pass",
    "json_loads",
    "orjson_loads",
)


def load(path: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{group: {test name: benchmark}}`` of a pytest-benchmark JSON file."""
    with Path(path).open() as f:
        run = json.load(f)
    groups: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for bench in run["benchmarks"]:
        name = bench["name"].removeprefix("test_").split("[")[0]
        if bench.get("param") and bench["param"] != bench["group"]:
            name = f"{name}[{bench['param']}]"
        groups[bench["group"]][name] = bench
    return groups


def ns(bench: dict[str, Any]) -> float:
    """The ``min`` of a benchmark in ns per frame (loop benchmarks decode several per call)."""
    frames = bench.get("extra_info", {}).get("frames_per_call", 1)
    return float(bench["stats"]["min"]) * 1e9 / frames


def event_table(groups: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    head = "| event | frame B | " + " | ".join(f"{c} ns" for c in COLUMNS)
    head += " | fastmd / bare typed | fastmd / two-pass | json / fastmd | orjson / fastmd |"
    lines = [head, "|---" + "|---:" * (len(COLUMNS) + 5) + "|"]
    for group, benches in groups.items():
        if not all(c in benches for c in COLUMNS):
            continue
        t = {c: ns(benches[c]) for c in COLUMNS}
        fast = t["fastmd_combined"]
        frame = benches["fastmd_combined"]["extra_info"].get("frame_bytes", "")
        cells = " | ".join(f"{t[c]:,.0f}" for c in COLUMNS)
        lines.append(
            f"| {group} | {frame} | {cells} | {fast / t['msgspec_bare_typed']:.2f}x"
            f" | {fast / t['msgspec_raw_two_pass']:.2f}x | {t['json_loads'] / fast:.1f}x"
            f" | {t['orjson_loads'] / fast:.2f}x |"
        )
    return lines


def other_table(groups: dict[str, dict[str, dict[str, Any]]], group: str, base: str) -> list[str]:
    benches = groups.get(group, {})
    if base not in benches:
        return []
    lines = [f"| {group} | min ns (per frame) | x {base} |", "|---|---:|---:|"]
    for name, bench in sorted(benches.items(), key=lambda item: ns(item[1])):
        lines.append(f"| {name} | {ns(bench):,.0f} | {ns(bench) / ns(benches[base]):.2f}x |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    groups = load(args[0])
    print("\n".join(event_table(groups)))
    for group, base in (
        ("trade", "msgspec_bare_typed"),
        ("trade-breakdown", "msgspec_bare_typed_reference"),
        ("trade-loop-x100", "trade_loop[msgspec_bare_typed]"),
        ("trade-number-types", "msgspec_bare_typed_number_type[float]"),
        ("recording-265", "recording_fastmd"),
    ):
        print()
        print("\n".join(other_table(groups, group, base)))
    trade = groups.get("trade", {})
    if "fastmd_combined" in trade and "msgspec_bare_typed" in trade:
        ratio = ns(trade["fastmd_combined"]) / ns(trade["msgspec_bare_typed"])
        verdict = "met" if ratio <= GOAL else "NOT met"
        print(f"\ngoal: combined trade decode <= {GOAL}x bare typed payload decode: {ratio:.2f}x")
        loop = groups.get("trade-loop-x100", {})
        fast, bare = "trade_loop[fastmd_combined]", "trade_loop[msgspec_bare_typed]"
        if fast in loop and bare in loop:
            print(f"in a loop of {LOOP_NOTE}: {ns(loop[fast]) / ns(loop[bare]):.2f}x")
        print(f"goal {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
