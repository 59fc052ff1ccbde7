"""Binance event times: milliseconds by default, microseconds with ``timeUnit=MICROSECOND`` and
in every event decoded from SBE frames. One rule tells them apart: no millisecond epoch time of
this era is anywhere near :data:`MICROSECOND_TIMES`."""

from __future__ import annotations

from typing import Final

__all__ = ["MICROSECOND_TIMES", "epoch_seconds"]

MICROSECOND_TIMES: Final = 10**14
"""Event times above this are microseconds (year 5138 in milliseconds, 1973 in microseconds)."""


def epoch_seconds(stamp: int) -> float:
    """An event time (milliseconds or microseconds, told apart by size) as epoch seconds."""
    if stamp > MICROSECOND_TIMES:
        return stamp / 1_000_000
    return stamp / 1000
