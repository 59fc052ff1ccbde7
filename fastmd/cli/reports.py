"""Error reports, as ``fastmd demo`` and ``fastmd watch`` read them: causes, repeats,
reachability.

Both commands give the client an error reporter of their own. What they need from the reports:
the plain cause of a failed connection ("connection refused"), whether the exchange has answered
at all (if not, they give up after ``--give-up-after`` seconds instead of retrying for ever), and
a screen that shows each distinct message once rather than once a second.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from fastmd.cli.common import wait_until_set

if TYPE_CHECKING:
    from fastmd import Client, ErrorReport, Metrics, Status

__all__ = [
    "CONNECT_CODES",
    "UNREACHABLE_CODES",
    "Reachability",
    "Repeats",
    "Verdict",
    "cause",
    "fold_key",
    "give_up_when_unreachable",
    "until_unreachable",
]

CONNECT_CODES: Final = frozenset({"connect_failed", "handshake_rejected", "tls_error"})
"""Report codes of a failed WebSocket connection attempt."""
_REST_CODES: Final = frozenset({"symbol_check_failed", "fallback_poll_failed", "backfill_failed"})
"""Report codes of a failed REST request."""
UNREACHABLE_CODES: Final = CONNECT_CODES | _REST_CODES | {"circuit_open", "fallback"}
"""What an exchange that does not answer at all produces."""
_NUMBERS: Final = re.compile(r"\d+(?:[.,]\d+)*")


def cause(error: BaseException | None) -> str | None:
    """The plain reason at the bottom of ``error``'s chain ("connection refused", "host not
    found (...)", "TLS: ..."), or ``None`` if no OS or TLS error is in it."""
    seen: set[int] = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            return f"TLS: {current.reason or current}"
        if isinstance(current, OSError) and current.errno is not None:
            if isinstance(current, socket.gaierror) or current.errno < 0:
                return f"host not found ({str(current.strerror).lower()})"
            return os.strerror(current.errno).lower()
        current = current.__cause__ or current.__context__
    return None


class Repeats:
    """Lets each distinct message through once, then at most once per ``interval`` seconds with
    the number held back in between. Messages that differ only in their numbers (attempt
    counts, seconds left, ids) count as the same message, and so do those given the same
    ``key`` (see :func:`fold_key`)."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, text: str, key: str | None = None) -> str | None:
        """``text`` (with "(+N similar)" if some were held back) or ``None``: hold it back."""
        key = _NUMBERS.sub("#", text if key is None else key)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        held = self._held.pop(key, 0)
        return f"{text} (+{held} similar)" if held else text


def fold_key(report: ErrorReport) -> str:
    """What makes a report the same as another for :class:`Repeats`: its code, if it is about
    one stream (a failing REST poll comes for every stream in fallback, once a second), else
    its text. Subscription failures are the exception: each names a stream that is missing."""
    if "stream" in report.context and report.code != "subscription_failed":
        return report.code
    return f"{report.code}: {report.message}"


class Reachability:
    """Whether the exchange has answered at all, and if not, why.

    Fed with the client's error reports and status changes (see :meth:`watch`). The exchange
    counts as reached once a WebSocket connection opened (status CONNECTED) or an event arrived
    (REST fallback polls deliver events too); until then, the last connection failure is the
    cause.

    Args:
        give_up_after: seconds after which an exchange that has not answered is given up.
    """

    def __init__(self, give_up_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.give_up_after = give_up_after
        self._clock = clock
        self.started = clock()
        self.reached = False
        self.circuit_open = False
        self.attempts = 0
        self.ws_url: str | None = None
        self.rest_url: str | None = None
        self.ws_cause: str | None = None
        self.rest_cause: str | None = None

    def watch(self, client: Client) -> None:
        """Follow ``client``: its URLs (its own defaults when none were given), every error
        report (``client.on_error``) and every status change (``client.on_status``)."""
        self.ws_url = self.ws_url or client.ws_url
        self.rest_url = client.rest_url
        client.on_error(self.report)
        client.on_status(self.on_status)

    def report(self, report: ErrorReport) -> None:
        if report.code in CONNECT_CODES:
            self.attempts = int(report.context.get("attempt", self.attempts + 1))
            self.ws_url = str(report.context.get("url", self.ws_url))
            self.ws_cause = cause(report.error) or str(report.error or report.message)
        elif report.code == "circuit_open":
            self.circuit_open = True
        elif report.code in _REST_CODES:
            # The first plain cause is the one to keep: later polls fail with "REST circuit
            # open for another 29 s", which says nothing about why.
            self.rest_cause = self.rest_cause or cause(report.error)

    def on_status(self, status: Status, metrics: Metrics) -> None:
        if status == "CONNECTED":
            self.reached = True

    def hopeless(self) -> bool:
        """Nothing answered within ``give_up_after`` seconds, or the connection's circuit opened
        first (it then makes no attempt for minutes)."""
        if self.reached:
            return False
        return self.circuit_open or self._clock() - self.started >= self.give_up_after

    def explain(self) -> str:
        """One line: what could not be reached and why."""
        if self.ws_cause is None:
            line = f"cannot reach {self.ws_url}: no answer within {self.give_up_after:g} s"
        else:
            plural = "s" if self.attempts != 1 else ""
            line = f"cannot reach {self.ws_url}: {self.ws_cause} ({self.attempts} attempt{plural})"
        if self.rest_cause is not None:
            line += f"; REST {self.rest_url}: {self.rest_cause}"
        return line


class Verdict(Protocol):
    """A command's run that can fail: :class:`fastmd.cli.state.Demo`, the monitor's state."""

    failure: str | None

    def note(self, text: str) -> None:
        """Show ``text`` as an incident."""


async def give_up_when_unreachable(
    reach: Reachability, delivered: Callable[[], bool], stop: asyncio.Event, run: Verdict
) -> None:
    """The watchdog of a command's run: once the exchange is hopeless (:func:`until_unreachable`),
    make why ``run``'s failure, note it ("giving up: ...") and set ``stop``."""
    verdict = await until_unreachable(reach, delivered, stop)
    if verdict is not None:
        run.failure = verdict
        run.note(f"giving up: {verdict}")
        stop.set()


async def until_unreachable(
    reach: Reachability, delivered: Callable[[], bool], stop: asyncio.Event
) -> str | None:
    """Return why the exchange cannot be reached once it is :meth:`~Reachability.hopeless`, or
    ``None`` as soon as it answers (``delivered()``: an event arrived) or ``stop`` is set."""
    while not stop.is_set():
        if delivered():
            reach.reached = True
        if reach.reached:
            return None
        if reach.hopeless():
            return reach.explain()
        await wait_until_set(stop, 0.1)
    return None
