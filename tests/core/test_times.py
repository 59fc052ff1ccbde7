"""fastmd.core.times: event times in milliseconds or microseconds, told apart by size."""

from __future__ import annotations

import pytest

from fastmd.core.times import MICROSECOND_TIMES, epoch_seconds


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        (1_700_000_000_123, 1_700_000_000.123),  # milliseconds (the default)
        (1_700_000_000_123_456, 1_700_000_000.123456),  # timeUnit=MICROSECOND, SBE
        (MICROSECOND_TIMES, MICROSECOND_TIMES / 1000),  # the boundary itself is milliseconds
    ],
)
def test_epoch_seconds(stamp: int, seconds: float) -> None:
    assert epoch_seconds(stamp) == pytest.approx(seconds, abs=1e-6)


def test_milliseconds_and_microseconds_of_one_instant_agree() -> None:
    assert epoch_seconds(1_700_000_000_123) == pytest.approx(epoch_seconds(1_700_000_000_123_000))
