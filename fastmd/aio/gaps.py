"""Reported losses: every gap that nobody could fill is counted, reported and given to the
``on_gap`` listeners."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fastmd.aio.reporting import Reporter
from fastmd.core.lifecycle import Severity
from fastmd.core.sequence import Gap

__all__: list[str] = []


class GapLog:
    """The client's gap reports.

    Args:
        reporter: each gap is also an error report (code ``gap``).
    """

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._listeners: list[Callable[[Gap], object]] = []
        self.gaps = 0
        self.overflow_dropped = 0

    def on_gap(self, callback: Callable[[Gap], object]) -> Callable[[], None]:
        """Call ``callback(gap)`` for every reported gap; returns a remover."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    def report(self, gap: Gap) -> None:
        """Count, report and hand ``gap`` to the listeners."""
        self.gaps += 1
        self._reporter.report(
            Severity.WARNING,
            "gap",
            f"{gap.stream}: expected {gap.expected}, got {gap.received} ({gap.reason.value})",
            None,
            stream=gap.stream,
        )
        for listener in tuple(self._listeners):
            try:
                listener(gap)
            except Exception as exc:
                self._reporter.callback_failed("a gap listener", exc, listener="gap")

    def overflowed(self, gap: Gap, dropped: int) -> None:
        """A consumer's queue (``client.stream()``) dropped ``dropped`` events of ``gap.stream``
        in one burst: that consumer's loss, told to it by its event stream; here it is counted
        and reported, never backfilled, never given to ``on_gap`` (the stream lost nothing)."""
        self.overflow_dropped += dropped
        self._reporter.report(
            Severity.WARNING,
            "stream_overflow",
            f"{gap.stream}: a client.stream() consumer fell behind and lost {dropped} event(s) "
            f"(positions {gap.expected}..{gap.received - 1})",
            None,
            stream=gap.stream,
        )
