"""Where problems go: one :class:`Reporter` per client owns the error reporter, the ``on_error``
listeners, the error counts and the wrapping of a user callback that raised; the default error
reporter, :class:`LoggingReporter`, logs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from fastmd.core.lifecycle import ErrorReport, ErrorReporter, Severity
from fastmd.errors import CallbackError

__all__ = ["LoggingReporter"]

logger = logging.getLogger(__name__)


class LoggingReporter:
    """The default error reporter: one log line per report, at most one per code per second.

    Reports of a user's code that raised (``callback_error``) and of fastmd's own failures
    (``internal_error``) are logged with their exception, so the traceback is printed. The
    library installs no handler: in an application that configured no logging, Python's
    last-resort handler prints warnings and errors to stderr (as asyncio's are); an application
    that configured logging gets them through its handlers.

    Args:
        interval: minimum seconds between two lines of the same code (the rest are counted and
            mentioned in the next line).
        clock: monotonic clock.
    """

    _LEVELS: Final = {
        Severity.WARNING: logging.WARNING,
        Severity.ERROR: logging.ERROR,
        Severity.CRITICAL: logging.CRITICAL,
    }
    _WITH_TRACEBACK: Final = frozenset({"callback_error", "internal_error"})

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, report: ErrorReport) -> None:
        now = self._clock()
        last = self._last.get(report.code)
        if last is not None and now - last < self._interval:
            self._suppressed[report.code] = self._suppressed.get(report.code, 0) + 1
            return
        self._last[report.code] = now
        suppressed = self._suppressed.pop(report.code, 0)
        logger.log(
            self._LEVELS[report.severity],
            "%s: %s%s",
            report.code,
            report.message[:256],
            f" (+{suppressed} similar)" if suppressed else "",
            exc_info=report.error if report.code in self._WITH_TRACEBACK else None,
            extra={"fastmd_context": dict(report.context)},
        )


class Reporter:
    """The client's reports: given to the error reporter, then to every ``on_error`` listener.

    Args:
        sink: the user's ``error_reporter`` (a :class:`LoggingReporter` when ``None``).
    """

    def __init__(self, sink: ErrorReporter | None = None) -> None:
        self.sink: ErrorReporter = sink if sink is not None else LoggingReporter()
        self._listeners: list[Callable[[ErrorReport], object]] = []
        self.errors = 0
        """Reports made by the client's own parts (connections count theirs)."""
        self.callback_errors = 0
        """User callbacks and listeners that raised."""

    def on_error(self, callback: Callable[[ErrorReport], object]) -> Callable[[], None]:
        """Call ``callback(report)`` for every report; returns a remover."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    def report(
        self,
        severity: Severity,
        code: str,
        message: str,
        error: BaseException | None,
        **context: Any,
    ) -> None:
        """Count and emit a report of the client's own."""
        self.errors += 1
        self.emit(ErrorReport(severity, code, message, error, context))

    def emit(self, report: ErrorReport) -> None:
        """Give ``report`` to the error reporter and the listeners (connections call this with
        reports they counted themselves)."""
        try:
            self.sink(report)
        except Exception:
            logger.exception("the error reporter raised while reporting %s", report.code)
        for listener in tuple(self._listeners):
            try:
                listener(report)
            except Exception as exc:
                # Not reported through report(): a listener that always raises would recurse.
                self.callback_errors += 1
                logger.error("an error listener raised on %s", report.code, exc_info=exc)

    def callback_failed(self, what: str, exc: Exception, **context: Any) -> None:
        """A user callback raised: count it and report a :class:`fastmd.CallbackError` whose
        cause is ``exc``. ``what`` names the callback (``"callback of btcusdt@trade"``)."""
        self.callback_errors += 1
        error = CallbackError(f"{what} raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self.report(Severity.ERROR, "callback_error", str(error), error, **context)
