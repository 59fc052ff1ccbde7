"""Outbound pacing: never send the venue more frames than it allows in any sliding second.

Binance counts every frame a client sends (text, ping, pong) and disconnects past 5 per second
on spot (10 on futures). A token bucket with a burst of 5 still trips that rule at window edges;
a sliding window of send times does not.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Pacer"]


class Pacer:
    """A sliding-window rate limiter: at most ``max_per_window`` sends in any ``window`` seconds.

    Args:
        max_per_window: sends allowed per window (fastmd uses 4 of spot's 5 by default).
        window: window length, seconds.
    """

    def __init__(self, max_per_window: int, window: float = 1.0) -> None:
        if max_per_window < 1 or window <= 0:
            raise ValueError("Pacer needs max_per_window >= 1 and window > 0")
        self.max_per_window = max_per_window
        self.window = window
        self._sent: deque[float] = deque()

    def _expire(self, now: float) -> None:
        sent = self._sent
        while sent and sent[0] <= now - self.window:
            sent.popleft()

    def delay(self, now: float) -> float:
        """Seconds until a send is allowed (0: now)."""
        self._expire(now)
        count = len(self._sent)
        if count < self.max_per_window:
            return 0.0
        # A slot frees when the send that is max_per_window back from the newest leaves.
        return max(self._sent[count - self.max_per_window] + self.window - now, 0.0)

    def record(self, now: float) -> None:
        """Count a send made at ``now``."""
        self._expire(now)
        self._sent.append(now)

    def in_window(self, now: float) -> int:
        """Sends counted in the window ending at ``now``."""
        self._expire(now)
        return len(self._sent)
