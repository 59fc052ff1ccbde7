"""A slow consumer never stalls the event loop: callbacks past the loop budget make events wait
in order and the sockets stop reading (TCP backpressure); pings, timers and close() keep working
(issue 12, item 4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from client_helpers import client_for, until

import fastmd
from fastmd.sim import Exchange


@pytest.fixture
async def ex() -> AsyncIterator[Exchange]:
    async with Exchange(symbols=["BTCUSDT"], seed=4, rate=0) as exchange:
        yield exchange


def stall_meter() -> tuple[asyncio.Task[None], list[float]]:
    """A task that wakes every 10 ms and records how late each wake-up was."""
    lateness: list[float] = []

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lateness.append(time.monotonic() - before - 0.01)

    return asyncio.ensure_future(tick()), lateness


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


async def test_a_slow_callback_under_a_flood_keeps_the_loop_turning(ex: Exchange) -> None:
    client = client_for(ex, heartbeat=fastmd.Heartbeat(interval=0.2, timeout=1.0))
    await client.start()
    ids: list[int] = []

    def slow(trade: Any) -> None:
        ids.append(trade.trade_id)
        time.sleep(0.005)  # 5 ms a trade: the flood below is 7.5 s of callbacks

    await client.subscribe("btcusdt@trade", slow).wait_active(5)
    ticker, lateness = stall_meter()
    flood = asyncio.ensure_future(ex.flood("BTCUSDT", 1500))
    await until(lambda: len(ids) >= 300, timeout=15, what="300 slow callbacks")
    worst = max(lateness)
    metrics = client.metrics()
    started = time.monotonic()
    await client.close()
    closing = time.monotonic() - started
    ticker.cancel()
    flood.cancel()
    await asyncio.gather(ticker, flood, return_exceptions=True)
    assert worst < 0.5, f"the loop stalled {worst:.2f} s"  # 8 to 48 s before
    assert closing < 1.5, closing
    assert contiguous(ids)  # waited, in order, none lost
    assert metrics.backpressure_pauses >= 1
    assert metrics.deferred_events > 0
    assert metrics.reconnects == 0  # pings were answered: the link was never judged dead
    assert metrics.gaps == 0


async def test_a_stream_nobody_reads_does_not_stall_the_loop(ex: Exchange) -> None:
    async with client_for(ex) as client:
        events = client.stream("btcusdt@trade", maxsize=100)
        await until(lambda: client.metrics().streams == 1)
        await asyncio.sleep(0.2)
        ticker, lateness = stall_meter()
        await ex.flood("BTCUSDT", 20_000)
        await until(lambda: events.dropped == 19_900, timeout=15, what="the overflow")
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        assert max(lateness) < 0.5
        assert sum(g.missing for g in events.gaps) == 19_900
        events.close()


async def test_slow_consumption_is_reported(ex: Exchange) -> None:
    reports: list[fastmd.ErrorReport] = []
    client = client_for(ex, error_reporter=reports.append, loop_budget=0.005)
    await client.start()
    seen: list[int] = []

    def slow(trade: Any) -> None:
        seen.append(trade.trade_id)
        time.sleep(0.004)

    await client.subscribe("btcusdt@trade", slow).wait_active(5)
    flood = asyncio.ensure_future(ex.flood("BTCUSDT", 600))
    await until(lambda: any(r.code == "slow_consumer" for r in reports), timeout=10)
    await until(lambda: len(seen) == 600, timeout=15, what="every trade, late but complete")
    assert contiguous(seen)
    await client.close()
    await asyncio.gather(flood, return_exceptions=True)


def test_loop_budget_must_be_positive() -> None:
    bad: Callable[[], object]
    for value in (0, -1.0, float("inf")):
        bad = lambda value=value: fastmd.Client(loop_budget=value)  # noqa: E731
        with pytest.raises(ValueError, match="loop_budget"):
            bad()
