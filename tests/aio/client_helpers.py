"""Helpers shared by the Client test files: fast timers, a recording error reporter, polling,
and the check that a closed client left no task running."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fastmd
from fastmd import Backoff, CircuitBreakerPolicy, ErrorReport
from fastmd.sim import Exchange

FAST = Backoff(initial_delay=0.02, max_delay=0.1, factor=2.0, jitter=0.0, max_attempts=None)
PATIENT = CircuitBreakerPolicy(failure_threshold=1000, cooldown=0.1)
SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT"]


class Reports:
    """An error reporter that keeps every report."""

    def __init__(self) -> None:
        self.reports: list[ErrorReport] = []

    def __call__(self, report: ErrorReport) -> None:
        self.reports.append(report)

    def __iter__(self) -> Iterator[ErrorReport]:
        return iter(self.reports)

    def codes(self) -> list[str]:
        return [report.code for report in self.reports]


class Tape:
    """A callback that records events."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def ids(self) -> list[int]:
        return [event.trade_id for event in self.events]


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def quiet(report: ErrorReport) -> None:
    """An error reporter that drops every report (for tests that assert on other evidence)."""


_REPORTS: weakref.WeakKeyDictionary[fastmd.Client, Reports] = weakref.WeakKeyDictionary()


def client_for(ex: Exchange, **options: Any) -> fastmd.Client:
    options.setdefault("backoff", FAST)
    options.setdefault("circuit_breaker", PATIENT)
    reports = options.setdefault("error_reporter", Reports())
    client = fastmd.Client(ex.venue, ws_url=ex.ws_url, rest_url=ex.rest_url, **options)
    if isinstance(reports, Reports):
        _REPORTS[client] = reports
    return client


def reports_of(client: fastmd.Client) -> Reports:
    """The :class:`Reports` that :func:`client_for` gave ``client``."""
    return _REPORTS[client]


_PACKAGE = Path(fastmd.__file__).resolve().parent
_SIMULATOR = _PACKAGE / "sim"


def client_tasks() -> list[asyncio.Task[Any]]:
    """Live tasks running fastmd's own code (client, connections, books, backfill, fallback,
    market data), the simulator's excluded: after ``close()`` there must be none."""
    out = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if code is None:
            continue
        path = Path(code.co_filename).resolve()
        if path.is_relative_to(_PACKAGE) and not path.is_relative_to(_SIMULATOR):
            out.append(task)
    return out


def server_subs(ex: Exchange) -> set[str]:
    return {stream for conn in ex.connections for stream in conn.subscriptions}


def text_frames(ex: Exchange) -> int:
    return sum(1 for conn in ex.connections for _, kind in conn.incoming if kind == "text")
