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


class _Transport:
    """Stands in for picows' transport: only pause/resume of reading are used."""

    class Underlying:
        def __init__(self) -> None:
            self.paused = False

        def is_closing(self) -> bool:
            return False

        def pause_reading(self) -> None:
            self.paused = True

        def resume_reading(self) -> None:
            self.paused = False

    def __init__(self) -> None:
        self.underlying_transport = self.Underlying()


async def test_a_long_read_with_fast_callbacks_is_not_falling_behind() -> None:
    """Only callback time counts toward the budget: a large read that takes long to decode
    (uvloop may hand over megabytes in one loop turn) must not make events wait."""
    from fastmd.aio.reporting import Reporter
    from fastmd.aio.routes import RouteTable
    from fastmd.core.streams import parse_stream

    table = RouteTable("binance-spot", Reporter(lambda r: None), lambda gap: None, 1.0, 0.02)
    route = table.add("btcusdt@bookTicker", parse_stream("btcusdt@bookTicker"))
    seen: list[int] = []
    route.callbacks = route.targets = (seen.append,)
    transport = _Transport()
    for i in range(4):  # one loop turn: 4 timed runs, decoding between them takes 40 ms
        table.dispatch_timed(route, i, transport)
        time.sleep(0.01)  # noqa: ASYNC251 -- the decoding that blocks this loop turn
    assert table.pauses == 0
    assert not transport.underlying_transport.paused
    assert seen == [0, 1, 2, 3]

    def slow(event: int) -> None:
        seen.append(event)
        time.sleep(0.002)  # 2 ms a run, about 32 ms of callbacks for 16 messages

    route.callbacks = route.targets = (slow,)
    table.dispatch_timed(route, 4, transport)
    assert table.pauses == 1  # callbacks fell behind: events wait, reading stops
    assert transport.underlying_transport.paused
    await asyncio.sleep(0.05)  # the backlog (empty) is worked off, reading resumes
    assert not transport.underlying_transport.paused
