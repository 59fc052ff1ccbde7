"""Connection statistics kept from plain counters: rates, latency percentiles, uptime."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["ConnectionStats", "LatencyStats"]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Ping round trips in seconds over the last samples (``None`` before the first pong)."""

    last: float | None
    mean: float | None
    p99: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """A snapshot of one connection's statistics.

    Attributes:
        state: the connection state's name.
        messages: data frames received since the connection object was created.
        bytes: payload bytes of those frames.
        message_rate_1s: data frames per second over the last second.
        message_rate_10s: data frames per second over the last ten seconds.
        latency: ping round trips.
        uptime: seconds the current socket has been open (0 when not open).
        reconnects: successful connects after the first.
        errors: errors reported (failed attempts, protocol errors, listener errors).
        sent: frames sent (text, ping, pong).
    """

    state: str
    messages: int
    bytes: int
    message_rate_1s: float
    message_rate_10s: float
    latency: LatencyStats
    uptime: float
    reconnects: int
    errors: int
    sent: int


class RateMeter:
    """Rates over 1 s and 10 s from samples of a monotonically growing counter."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=11)

    def sample(self, now: float, count: int) -> None:
        """Record ``count`` at ``now`` (call about once a second)."""
        self._samples.append((now, count))

    def rate(self, now: float, count: int, span: float) -> float:
        """Events per second over about the last ``span`` seconds, ending at ``(now, count)``."""
        base: tuple[float, int] | None = None
        for when, value in self._samples:
            if now - when <= span + 1e-9:
                base = (when, value)
                break
        if base is None and self._samples:
            base = self._samples[-1]
        if base is None or now <= base[0]:
            return 0.0
        return (count - base[1]) / (now - base[0])


class LatencyTracker:
    """Keeps the last ``size`` round trips."""

    def __init__(self, size: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def snapshot(self) -> LatencyStats:
        samples = self._samples
        if not samples:
            return LatencyStats(None, None, None, 0)
        ordered = sorted(samples)
        index = min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)
        return LatencyStats(samples[-1], sum(samples) / len(samples), ordered[index], len(samples))
