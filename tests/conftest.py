"""Shared test fixtures.

Everything the tests read lives inside the repository (``tests/data``, see its README), so the
suite passes in a fresh clone with nothing beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import SAMPLES


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Binance sample payloads (``tests/data/samples/binance``)."""
    assert SAMPLES.is_dir(), f"sample data not found at {SAMPLES}"
    return SAMPLES
