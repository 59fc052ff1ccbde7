"""Helpers shared by the Client test files: fast timers, a recording error reporter, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
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


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def client_for(ex: Exchange, **options: Any) -> fastmd.Client:
    options.setdefault("backoff", FAST)
    options.setdefault("circuit_breaker", PATIENT)
    options.setdefault("error_reporter", Reports())
    return fastmd.Client(ex.venue, ws_url=ex.ws_url, rest_url=ex.rest_url, **options)


def reports_of(client: fastmd.Client) -> Reports:
    reporter = client._reporter
    assert isinstance(reporter, Reports)
    return reporter


def server_subs(ex: Exchange) -> set[str]:
    return {stream for conn in ex.connections for stream in conn.subscriptions}


def text_frames(ex: Exchange) -> int:
    return sum(1 for conn in ex.connections for _, kind in conn.incoming if kind == "text")
