"""Backoff schedule bounds (property tests) and the venue rules that lengthen it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from fastmd import Backoff
from fastmd.core.backoff import DEFAULT_RETRY_AFTER, reconnect_delay

policies = st.builds(
    lambda initial, extra, factor, jitter: Backoff(
        initial_delay=initial, max_delay=initial + extra, factor=factor, jitter=jitter
    ),
    st.floats(0.001, 10),
    st.floats(0, 100),
    st.floats(1, 4),
    st.floats(0, 1),
)


@given(policies, st.integers(1, 10_000), st.floats(0, 1, exclude_max=True))
def test_delay_within_jitter_band_and_cap(backoff: Backoff, attempt: int, draw: float) -> None:
    try:
        grown = backoff.initial_delay * backoff.factor ** (attempt - 1)
    except OverflowError:
        grown = math.inf
    # (The model used to cap the exponent at 400, which is wrong for slow factors: with a
    # factor of 1.015625 the delay still grows past attempt 401.)
    ceiling = min(backoff.max_delay, grown)
    delay = backoff.delay(attempt, draw)
    assert delay <= backoff.max_delay + 1e-9
    assert ceiling * (1 - backoff.jitter) - 1e-9 <= delay <= ceiling + 1e-9


@given(policies, st.integers(1, 200))
def test_ceiling_never_decreases(backoff: Backoff, attempt: int) -> None:
    assert backoff.ceiling(attempt + 1) >= backoff.ceiling(attempt)


def test_seed_schedule_without_jitter() -> None:
    backoff = Backoff(jitter=0.0)
    delays = [backoff.delay(n, 0.7) for n in range(1, 12)]
    assert delays[:4] == pytest.approx([1.0, 1.5, 2.25, 3.375])
    assert delays[-1] == 30.0
    assert Backoff(factor=10).ceiling(10**6) == 30.0  # no overflow on endless outages


def test_full_jitter_reaches_zero() -> None:
    assert Backoff(jitter=1.0).delay(3, 0.999999) < 0.01


def test_policy_violation_lengthens_the_wait() -> None:
    backoff = Backoff(jitter=0.0)
    plain = reconnect_delay(backoff, 1, 0.5)
    assert reconnect_delay(backoff, 1, 0.5, close_code=1008) == 4 * plain
    assert reconnect_delay(backoff, 50, 0.5, close_code=1008) == 4 * backoff.max_delay
    assert reconnect_delay(backoff, 1, 0.5, close_code=1001) == plain


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limited_handshake_waits_retry_after(status: int) -> None:
    backoff = Backoff()
    assert reconnect_delay(backoff, 1, 0.1, handshake_status=status, retry_after=90) == 90
    assert reconnect_delay(backoff, 1, 0.1, handshake_status=status) == DEFAULT_RETRY_AFTER
    assert reconnect_delay(backoff, 1, 0.0, handshake_status=503, retry_after=90) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": 0},
        {"initial_delay": 5, "max_delay": 1},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"max_attempts": 0},
        {"max_delay": float("inf")},
    ],
)
def test_invalid_policies_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]
