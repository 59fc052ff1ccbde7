"""Shared test helpers.

The shared data (protocol docs, Binance samples, recordings) lives beside the repository: the repo
is ``<root>/main`` locally and a fresh clone in CI, with ``shared/`` next to it in both cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
"""``shared/`` next to the repository checkout."""


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data directory (``<repo>/../shared``)."""
    assert SHARED.is_dir(), f"shared data not found at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    """Binance sample payloads (``shared/samples/binance``)."""
    return shared_dir / "samples" / "binance"
