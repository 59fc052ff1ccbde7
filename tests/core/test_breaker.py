"""Circuit breaker transitions, driven by a fake clock."""

from __future__ import annotations

import pytest

from fastmd import CircuitBreakerPolicy, CircuitState
from fastmd.core.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_at_threshold_and_half_opens_after_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=3, cooldown=300), clock)
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state is CircuitState.OPEN
    assert breaker.time_until_allowed() == 300
    clock.now += 299.5
    assert breaker.time_until_allowed() == pytest.approx(0.5)
    clock.now += 0.5
    assert breaker.time_until_allowed() == 0
    assert breaker.state is CircuitState.HALF_OPEN


def test_half_open_trial_failure_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=1, cooldown=10), clock)
    assert breaker.record_failure()
    clock.now += 10
    assert breaker.time_until_allowed() == 0
    assert breaker.record_failure()  # the trial failed: open again
    assert breaker.state is CircuitState.OPEN
    assert breaker.time_until_allowed() == 10
    assert breaker.times_opened == 2


def test_half_open_success_closes_and_resets() -> None:
    clock = Clock()
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=2, cooldown=5), clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 5
    breaker.time_until_allowed()
    assert breaker.record_success() is True
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failures == 0
    assert breaker.record_failure() is False  # the count starts again


def test_success_while_closed_resets_the_count() -> None:
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=3), Clock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.record_success() is False
    assert breaker.record_failure() is False
    assert breaker.record_failure() is False


def test_threshold_override_uses_max_attempts() -> None:
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=5), Clock(), threshold=2)
    assert [breaker.record_failure() for _ in range(2)] == [False, True]


def test_invalid_policy() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreakerPolicy(failure_threshold=0)
