"""The exchange's clock seen from ours, and lag statistics: sans-I/O, fed with plain numbers.

:class:`ClockOffset` estimates how far the exchange's clock is from ours from REST server-time
samples (``GET /api/v3/time``, ``/fapi/v1/time``): each sample is the server's time and the two
moments of our wall clock around the request, and the server is assumed to have read its clock at
the round trip's midpoint. A sample's error is at most half its round trip whatever the delays'
asymmetry, so the estimate prefers the samples with the shortest round trips of a bounded window
of recent ones and takes their median: a slow or queued answer (a huge round trip) does not move
it.

:class:`LagWindow` keeps the last lag samples (exchange event time to callback, in seconds) in a
bounded ring and gives their percentiles on demand.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["ClockOffset", "LagStats", "LagWindow", "lag_stats"]


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


class ClockOffset:
    """The offset of the exchange's clock from ours, from server-time samples.

    ``offset`` is what to ADD to our wall-clock time (``time.time()``) to get the exchange's:
    an exchange clock running 2 s ahead gives ``offset == 2.0``.

    Args:
        window: how many recent accepted samples are kept (older ones are forgotten, so a
            drifting clock or a changed network path is followed).
        best: how many of the kept samples, those with the shortest round trips, the estimate
            uses (their median offset).

    Raises:
        ValueError: ``window < 1`` or ``best`` outside ``[1, window]``.
    """

    def __init__(self, window: int = 16, best: int = 5) -> None:
        if window < 1:
            raise ValueError(f"ClockOffset.window must be >= 1, not {window}")
        if not 1 <= best <= window:
            raise ValueError(f"ClockOffset.best must be within [1, window={window}], not {best}")
        self._best = best
        self._samples: deque[tuple[float, float]] = deque(maxlen=window)  # (rtt, offset)
        self._offset: float | None = None
        self._rtt: float | None = None
        self._uncertainty: float | None = None
        self.accepted = 0
        """Samples accepted since creation (or the last :meth:`reset`)."""
        self.rejected = 0
        """Samples rejected as nonsense (non-finite, negative round trip, negative time)."""

    def add(self, sent: float, server_time: float, received: float) -> bool:
        """Add one sample; returns whether it was accepted.

        Args:
            sent: our wall-clock time (seconds since the epoch) when the request left.
            server_time: the server's time in its answer, in seconds since the epoch
                (Binance's ``serverTime`` is in milliseconds: divide by 1000).
            received: our wall-clock time when the answer arrived.

        A sample with a non-finite or negative time, or an answer received before its request
        was sent (our clock stepped back), is rejected and counted in :attr:`rejected`.
        """
        if not (
            math.isfinite(sent)
            and math.isfinite(received)
            and math.isfinite(server_time)
            and server_time >= 0
            and sent >= 0
            and received >= sent
        ):
            self.rejected += 1
            return False
        rtt = received - sent
        self._samples.append((rtt, server_time - (sent + rtt / 2)))
        self.accepted += 1
        self._estimate()
        return True

    def _estimate(self) -> None:
        used = sorted(self._samples)[: self._best]
        self._offset = _median(sorted(offset for _, offset in used))
        self._rtt = _median([rtt for rtt, _ in used])
        self._uncertainty = used[-1][0] / 2

    def reset(self) -> None:
        """Forget every sample (e.g. after the system clock was set)."""
        self._samples.clear()
        self._offset = self._rtt = self._uncertainty = None
        self.accepted = self.rejected = 0

    @property
    def offset(self) -> float | None:
        """Seconds to add to our clock to get the exchange's; ``None`` before any sample."""
        return self._offset

    @property
    def rtt(self) -> float | None:
        """The median round trip, in seconds, of the samples the estimate uses."""
        return self._rtt

    @property
    def uncertainty(self) -> float | None:
        """Bound on the estimate's error in seconds: half the longest round trip among the
        samples used (each sample's error is at most half its round trip, and their median lies
        between them)."""
        return self._uncertainty

    @property
    def samples(self) -> int:
        """Samples currently kept (at most ``window``)."""
        return len(self._samples)

    def exchange_time(self, local: float) -> float:
        """Our wall-clock time ``local`` on the exchange's clock (unchanged before any sample)."""
        return local + (self._offset or 0.0)

    def lag(self, event_time_ms: int, now: float) -> float:
        """Seconds from an exchange event time (``E``/``T``, milliseconds) to our wall-clock
        time ``now``, corrected by the offset (uncorrected before any sample)."""
        return now + (self._offset or 0.0) - event_time_ms / 1000


@dataclass(frozen=True, slots=True)
class LagStats:
    """Lag percentiles in seconds over the last samples (``None`` before the first).

    Attributes:
        p50: the median.
        p99: the 99th percentile (nearest rank).
        max: the largest kept sample.
        samples: how many samples these figures are computed from.
    """

    p50: float | None
    p99: float | None
    max: float | None
    samples: int


_EMPTY = LagStats(None, None, None, 0)


def lag_stats(values: Iterable[float]) -> LagStats:
    """p50, p99 (nearest rank) and max of ``values`` (seconds)."""
    ordered = sorted(values)
    if not ordered:
        return _EMPTY
    count = len(ordered)
    return LagStats(
        p50=ordered[math.ceil(0.5 * count) - 1],
        p99=ordered[math.ceil(0.99 * count) - 1],
        max=ordered[-1],
        samples=count,
    )


class LagWindow:
    """The last ``size`` lag samples, in seconds, in a bounded ring.

    :meth:`add` is O(1) and allocates nothing beyond the ring's slot; :meth:`stats` sorts the
    ring and caches the result until the next :meth:`add`.

    Args:
        size: how many samples are kept.

    Raises:
        ValueError: ``size < 1``.
    """

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError(f"LagWindow.size must be >= 1, not {size}")
        self._samples: deque[float] = deque(maxlen=size)
        self._cached: LagStats | None = _EMPTY
        self.count = 0
        """Samples added since creation (kept or not; non-finite ones are not counted)."""

    def add(self, seconds: float) -> None:
        """Add one lag sample (non-finite values are ignored; negative ones are kept: within the
        clock offset's uncertainty an event can seem to arrive before it happened)."""
        if math.isfinite(seconds):
            self._samples.append(seconds)
            self.count += 1
            self._cached = None

    def stats(self) -> LagStats:
        """p50, p99 and max of the kept samples."""
        cached = self._cached
        if cached is None:
            cached = self._cached = lag_stats(self._samples)
        return cached

    @property
    def p50(self) -> float | None:
        """The median of the kept samples."""
        return self.stats().p50

    @property
    def p99(self) -> float | None:
        """The 99th percentile of the kept samples."""
        return self.stats().p99

    @property
    def max(self) -> float | None:
        """The largest kept sample."""
        return self.stats().max

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[float]:
        """The kept samples, oldest first."""
        return iter(self._samples)

    def clear(self) -> None:
        """Forget the kept samples (``count`` goes on)."""
        self._samples.clear()
        self._cached = _EMPTY

    @staticmethod
    def combined(windows: Iterable[LagWindow]) -> LagStats:
        """The statistics of every sample kept by ``windows`` together (e.g. overall lag from
        per-stream windows)."""
        return lag_stats(value for window in windows for value in window)
