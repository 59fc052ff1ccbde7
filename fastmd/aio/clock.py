"""Keeping the exchange's clock offset measured: a background task asks the venue's REST server
time (``GET /api/v3/time``, ``/fapi/v1/time``) in a short burst when it starts, then again every
``interval``, and feeds :class:`fastmd.core.clock.ClockOffset` with each answer and the two
moments around it.

A failed measurement never raises into user code: it is counted, the last estimate is kept, the
measurement is retried sooner (``retry_interval``), and a run of failures is reported once
through the client's :class:`~fastmd.aio.reporting.Reporter` (code ``clock_sync_failed``), not
once per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastmd.aio.reporting import Reporter
from fastmd.aio.rest import RestClient
from fastmd.aio.tasks import Tasks
from fastmd.core.clock import ClockOffset
from fastmd.core.lifecycle import Severity
from fastmd.errors import FastmdError

__all__: list[str] = []

logger = logging.getLogger(__name__)


class ClockSync:
    """Measures the exchange's clock offset from REST server time, in the background.

    Args:
        rest: the client's REST access (its weight budget and circuit breaker apply: one
            ``time`` request weighs 1).
        reporter: where a run of failed measurements is reported.
        tasks: where the measuring task runs (cancelled with them).
        interval: seconds between two measurements once one succeeded.
        retry_interval: seconds before the next measurement after one failed.
        burst: requests per measurement (sequential); the estimator keeps the best of them.
        spacing: seconds between two requests of a burst.
        estimator: the :class:`ClockOffset` to feed (a new one by default).
        clock: our wall clock, seconds since the epoch (what event times are compared with).

    Raises:
        ValueError: a non-positive interval, ``burst < 1`` or a negative ``spacing``.
    """

    def __init__(
        self,
        rest: RestClient,
        reporter: Reporter,
        tasks: Tasks,
        *,
        interval: float = 300.0,
        retry_interval: float = 30.0,
        burst: int = 5,
        spacing: float = 0.05,
        estimator: ClockOffset | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (0 < interval < float("inf") and 0 < retry_interval < float("inf")):
            raise ValueError(
                f"ClockSync needs positive finite intervals, not interval={interval!r}, "
                f"retry_interval={retry_interval!r}"
            )
        if burst < 1 or not 0 <= spacing < float("inf"):
            raise ValueError(f"ClockSync needs burst >= 1 and spacing >= 0: {burst!r}, {spacing!r}")
        self._rest = rest
        self._reporter = reporter
        self._tasks = tasks
        self.interval = interval
        self.retry_interval = retry_interval
        self.burst = burst
        self.spacing = spacing
        self.estimator = estimator if estimator is not None else ClockOffset()
        """The offset estimator this task feeds."""
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.measurements = 0
        """Measurements (bursts) that gave at least one accepted sample."""
        self.failures = 0
        """Requests that failed (no answer, an error answer, or an answer rejected as
        nonsense)."""
        self.last_sync: float | None = None
        """Our wall-clock time of the last successful measurement."""

    # -- what the client reads ----------------------------------------------------------------

    @property
    def offset(self) -> float | None:
        """Seconds to add to our wall clock to get the exchange's (``None`` before the first
        successful measurement)."""
        return self.estimator.offset

    @property
    def uncertainty(self) -> float | None:
        """Bound on the offset's error, seconds (half the round trip of the samples used)."""
        return self.estimator.uncertainty

    @property
    def rtt(self) -> float | None:
        """Round trip of the ``time`` requests the estimate uses, seconds."""
        return self.estimator.rtt

    @property
    def running(self) -> bool:
        """Whether the measuring task runs."""
        return self._task is not None and not self._task.done()

    def lag(self, event_time_ms: int, now: float | None = None) -> float:
        """Seconds from an exchange event time (milliseconds) to ``now`` (our wall clock, read
        when ``None``), corrected by the offset."""
        return self.estimator.lag(event_time_ms, self._clock() if now is None else now)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start measuring (a burst now, then every ``interval``); idempotent. Call from the
        event loop."""
        if not self.running:
            self._task = self._tasks.spawn(self._run())

    def stop(self) -> None:
        """Stop measuring (the estimate is kept); idempotent."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        """Stop measuring and wait until the task has ended."""
        task = self._task
        self.stop()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def measure(self) -> bool:
        """Measure now (one burst); True if at least one sample was accepted. Never raises on a
        network or exchange failure: it is counted in :attr:`failures` and, the first of a run
        of failed measurements, reported."""
        accepted = 0
        error: FastmdError | None = None
        for index in range(self.burst):
            if index and self.spacing:
                await asyncio.sleep(self.spacing)
            sent = self._clock()
            try:
                answer = await self._rest.time()
            except FastmdError as exc:
                self.failures += 1
                error = exc
                continue
            received = self._clock()
            if self.estimator.add(sent, answer.server_time / 1000, received):
                accepted += 1
            else:
                self.failures += 1
        if accepted:
            self.measurements += 1
            self.last_sync = self._clock()
            if self._failing:
                self._failing = False
                logger.info("clock sync recovered: offset %+.3f s", self.estimator.offset)
            return True
        if not self._failing:
            self._failing = True
            kept = self.estimator.offset
            self._reporter.report(
                Severity.WARNING,
                "clock_sync_failed",
                f"cannot measure the exchange's clock offset ({error or 'nonsense server time'}); "
                + (
                    f"keeping {kept:+.3f} s"
                    if kept is not None
                    else "lag is measured against our uncorrected clock"
                )
                + f", retrying every {self.retry_interval:g} s",
                error,
            )
        return False

    async def _run(self) -> None:
        while True:
            synced = await self.measure()
            await asyncio.sleep(self.interval if synced else self.retry_interval)
