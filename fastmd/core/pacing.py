"""Outbound pacing: never send the venue more frames than it allows in any sliding second.

Binance counts every frame a client sends (text, ping, pong) and disconnects past 5 per second
on spot (10 on futures). A token bucket with a burst of 5 still trips that rule at window edges;
a sliding window of send times does not.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Pacer"]


class Pacer:
    """A sliding-window rate limiter: at most ``max_per_window`` sends in any ``window`` seconds,
    and sends spaced at least ``min_interval`` apart.

    The spacing matters as much as the count: a burst of 4 at the end of one second and 4 more
    at the start of the next stay within "4 per sliding second" as sent, but network delay can
    bunch them together on arrival, and Binance counts arrivals.

    Args:
        max_per_window: sends allowed per window (fastmd uses 4 of spot's 5 by default).
        window: window length, seconds.
        min_interval: least time between two sends; ``window / max_per_window`` by default.
    """

    def __init__(
        self, max_per_window: int, window: float = 1.0, *, min_interval: float | None = None
    ) -> None:
        if max_per_window < 1 or window <= 0:
            raise ValueError("Pacer needs max_per_window >= 1 and window > 0")
        self.max_per_window = max_per_window
        self.window = window
        self.min_interval = window / max_per_window if min_interval is None else min_interval
        self._sent: deque[float] = deque()

    def _expire(self, now: float) -> None:
        sent = self._sent
        while sent and sent[0] <= now - self.window:
            sent.popleft()

    def delay(self, now: float) -> float:
        """Seconds until a send is allowed (0: now)."""
        self._expire(now)
        sent = self._sent
        count = len(sent)
        spacing = sent[-1] + self.min_interval - now if sent else 0.0
        if count < self.max_per_window:
            return max(spacing, 0.0)
        # A slot frees when the send that is max_per_window back from the newest leaves.
        return max(sent[count - self.max_per_window] + self.window - now, spacing, 0.0)

    def record(self, now: float) -> None:
        """Count a send made at ``now``."""
        self._expire(now)
        self._sent.append(now)

    def in_window(self, now: float) -> int:
        """Sends counted in the window ending at ``now``."""
        self._expire(now)
        return len(self._sent)


class WeightWindow:
    """REST request weight spent in a sliding window, against a budget.

    Binance counts request weight per address per minute (6,000 spot, 2,400 futures); fastmd
    spends at most a share of it so the application's own requests keep room.

    Args:
        budget: weight allowed per window.
        window: window length, seconds.
    """

    def __init__(self, budget: int, window: float = 60.0) -> None:
        if budget < 1 or window <= 0:
            raise ValueError("WeightWindow needs budget >= 1 and window > 0")
        self.budget = budget
        self.window = window
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0
        self._blocked_until = 0.0

    def _expire(self, now: float) -> None:
        spent = self._spent
        while spent and spent[0][0] <= now - self.window:
            self._total -= spent.popleft()[1]

    def used(self, now: float) -> int:
        """Weight spent in the window ending at ``now``."""
        self._expire(now)
        return self._total

    def delay(self, now: float, weight: int) -> float:
        """Seconds until ``weight`` fits in the budget (0: now)."""
        self._expire(now)
        if now < self._blocked_until:
            return self._blocked_until - now
        if self._total + weight <= self.budget or not self._spent:
            return 0.0
        # Wait until enough old spending leaves the window.
        excess = self._total + weight - self.budget
        freed = 0
        for when, amount in self._spent:
            freed += amount
            if freed >= excess:
                return max(when + self.window - now, 0.0)
        return self.window

    def record(self, now: float, weight: int) -> None:
        """Count ``weight`` spent at ``now``."""
        self._expire(now)
        self._spent.append((now, weight))
        self._total += weight

    def block(self, now: float, seconds: float) -> None:
        """Spend nothing for ``seconds`` (a 429/418 with ``Retry-After``)."""
        self._blocked_until = max(self._blocked_until, now + seconds)
