"""Where the tests' data lives: inside the repository, so a fresh clone runs the suite as it is.

``tests/data/README.md`` names the source of every file.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SAMPLES = DATA / "samples" / "binance"
"""Binance payload examples, one per file (``tests/data/samples/binance``)."""
RECORDING = DATA / "binance-spot-2021-10-12"
"""The recorded real Binance spot session: ``meta.json``, ``stream.jsonl``, ``snapshots/``."""
SESSION = DATA / "binance-spot-2021-10-12-session"
"""The same session in the format of ``fastmd record`` (docs/recording.md), converted from it."""
