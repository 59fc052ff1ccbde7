"""The circuit breaker: stop hammering an endpoint that keeps failing.

Rules (the transitions are in ``_TRANSITIONS``):

1. CLOSED counts consecutive failures; at the threshold it opens.
2. OPEN allows no attempt until the cooldown has passed, then lets exactly one trial through
   (HALF_OPEN).
3. The trial's success closes the circuit and clears the count; its failure opens it again for a
   full cooldown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["CircuitBreakerPolicy", "CircuitState"]


class CircuitState(IntEnum):
    """State of a :class:`CircuitBreaker`."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(frozen=True, kw_only=True)
class CircuitBreakerPolicy:
    """When the circuit opens and for how long.

    Attributes:
        failure_threshold: consecutive failures that open the circuit.
        cooldown: seconds the circuit stays open before one trial attempt.
    """

    failure_threshold: int = 5
    cooldown: float = 300.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.cooldown < 0:
            raise ValueError("CircuitBreakerPolicy needs failure_threshold >= 1, cooldown >= 0")


# (state, event) -> new state; "failure" at CLOSED depends on the count and is decided in code.
_TRANSITIONS: dict[tuple[CircuitState, str], CircuitState] = {
    (CircuitState.CLOSED, "success"): CircuitState.CLOSED,
    (CircuitState.OPEN, "cooldown_over"): CircuitState.HALF_OPEN,
    (CircuitState.HALF_OPEN, "success"): CircuitState.CLOSED,
    (CircuitState.HALF_OPEN, "failure"): CircuitState.OPEN,
    (CircuitState.OPEN, "failure"): CircuitState.OPEN,
    (CircuitState.OPEN, "success"): CircuitState.CLOSED,
}


class CircuitBreaker:
    """A circuit breaker driven by an injected ``clock`` (seconds, monotonic).

    Args:
        policy: thresholds.
        clock: a monotonic clock.
        threshold: overrides ``policy.failure_threshold`` (the connection uses the smaller of the
            breaker threshold and the backoff's ``max_attempts``).
    """

    def __init__(
        self,
        policy: CircuitBreakerPolicy,
        clock: Callable[[], float],
        *,
        threshold: int | None = None,
    ) -> None:
        self.policy = policy
        self.threshold = threshold or policy.failure_threshold
        self._clock = clock
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.opened_at: float | None = None
        self.times_opened = 0

    def time_until_allowed(self) -> float:
        """Seconds until an attempt may be made (0: now). Moves OPEN to HALF_OPEN when due."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        assert self.opened_at is not None
        remaining = self.opened_at + self.policy.cooldown - self._clock()
        if remaining <= 0:
            self.state = _TRANSITIONS[(self.state, "cooldown_over")]
            return 0.0
        return remaining

    def record_failure(self) -> bool:
        """Count a failed attempt. Returns True if this failure opened the circuit."""
        self.failures += 1
        if self.state is CircuitState.CLOSED:
            if self.failures < self.threshold:
                return False
            new = CircuitState.OPEN
        else:
            new = _TRANSITIONS[(self.state, "failure")]
        opened = new is CircuitState.OPEN and self.state is not CircuitState.OPEN
        self.state = new
        if new is CircuitState.OPEN:
            self.opened_at = self._clock()
        if opened:
            self.times_opened += 1
        return opened

    def record_success(self) -> bool:
        """Count a successful attempt. Returns True if this success closed an open circuit."""
        was = self.state
        self.state = _TRANSITIONS[(was, "success")]
        self.failures = 0
        self.opened_at = None
        return was is not CircuitState.CLOSED
