"""fastmd.Client under faults, against the simulator: reconnects restore exactly the current
subscriptions (batched and paced), every loss is a Gap with exact ids and the right reason,
duplicates are dropped, and serverShutdown, force_reconnect() and rotation hand over
make-before-break with no gap and no duplicate delivered. Loopback only; short timers."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from client_helpers import Tape, client_for, client_tasks, reports_of, server_subs, until

import fastmd
from fastmd import Gap, GapReason, Status
from fastmd.sim import Exchange

SKIP, RECONNECT = GapReason.SERVER_SKIP, GapReason.RECONNECT


async def more(tape: Tape, what: str) -> None:
    count = len(tape.events)
    await until(lambda: len(tape.events) > count, what=what)


def contiguous(ids: list[int]) -> bool:
    return bool(ids) and ids == list(range(ids[0], ids[0] + len(ids)))


@pytest.fixture
async def ex() -> AsyncIterator[Exchange]:
    async with Exchange(symbols=["BTCUSDT", "ETHUSDT"], seed=1, rate=0) as exchange:
        yield exchange


# -- reconnects restore exactly the current subscriptions ------------------------------------------


DROPS = [
    pytest.param("close", 1000, id="close-1000"),
    pytest.param("close", 1001, id="close-1001"),
    pytest.param("close", 1008, id="close-1008"),
    pytest.param("fin", 1000, id="fin"),
    pytest.param("rst", 1000, id="rst"),
]


@pytest.mark.parametrize(("mode", "code"), DROPS)
async def test_reconnect_restores_the_subscriptions_and_reports_the_loss(
    ex: Exchange, mode: Any, code: int
) -> None:
    async with client_for(ex) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        trades, other = Tape(), Tape()
        streams = {"btcusdt@trade", "ethusdt@trade", "btcusdt@bookTicker"}
        await client.subscribe("btcusdt@trade", trades).wait_active(timeout=5)
        await client.subscribe(["ethusdt@trade", "btcusdt@bookTicker"], other).wait_active(5)
        await ex.flood("BTCUSDT", 5)
        await until(lambda: len(trades.events) == 5)
        first_id = ex.connections[0].id

        assert ex.faults.drop_connections(mode=mode, code=code) == 1
        await ex.flood("BTCUSDT", 4)  # nobody subscribed: lost
        await until(
            lambda: bool(ex.connections) and ex.connections[0].id != first_id, what="reconnect"
        )
        await until(lambda: server_subs(ex) == streams, what="the subscriptions restored")
        await until(lambda: client.status is Status.CONNECTED)
        assert len(ex.connections) == 1
        texts = [kind for _, kind in ex.connections[0].incoming if kind == "text"]
        assert len(texts) == 1  # one batched SUBSCRIBE restores all three

        await ex.flood("BTCUSDT", 5)
        await until(lambda: len(trades.events) == 10, what="trades after the reconnect")
        ids = trades.ids()
        assert contiguous(ids[:5])
        assert contiguous(ids[5:])
        assert gaps == [Gap("btcusdt@trade", ids[4] + 1, ids[4] + 5, RECONNECT)]
        assert ids[5] == ids[4] + 5
        metrics = client.metrics()
        assert metrics.reconnects == 1
        assert metrics.gaps == 1
        assert "disconnected" in reports_of(client).codes()


async def test_a_reconnect_with_nothing_lost_reports_no_gap(ex: Exchange) -> None:
    async with client_for(ex) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 3)
        await until(lambda: len(tape.events) == 3)
        ex.faults.drop_connections(mode="rst")
        await until(lambda: client.metrics().reconnects == 1)
        await until(lambda: server_subs(ex) == {"btcusdt@trade"})
        await ex.flood("BTCUSDT", 3)
        await until(lambda: len(tape.events) == 6)
        assert contiguous(tape.ids())
        # The next loss, with the connection up, is the server's.
        ex.faults.skip("btcusdt@trade", 2)
        await ex.flood("BTCUSDT", 3)
        await until(lambda: len(gaps) == 1)
        assert gaps[0].reason is SKIP


async def test_streams_unsubscribed_during_an_outage_are_not_restored(ex: Exchange) -> None:
    async with client_for(ex, fallback=False) as client:  # no REST polling meanwhile
        keep, drop = Tape(), Tape()
        await client.subscribe("btcusdt@trade", keep).wait_active(timeout=5)
        gone = client.subscribe(["ethusdt@trade", "btcusdt@aggTrade"], drop)
        await gone.wait_active(timeout=5)
        refused = ex.faults.refuse_upgrades(503)
        ex.faults.drop_connections(mode="close", code=1001)
        await until(lambda: client.status is Status.RECONNECTING, what="RECONNECTING")
        await until(lambda: "handshake_rejected" in reports_of(client).codes())
        gone.unsubscribe()
        late = Tape()
        client.subscribe("ethusdt@bookTicker", late)  # subscribed while down
        refused.clear()
        await until(lambda: bool(ex.connections), what="the reconnect")
        await until(lambda: server_subs(ex) == {"btcusdt@trade", "ethusdt@bookTicker"})
        await asyncio.sleep(0.2)
        assert server_subs(ex) == {"btcusdt@trade", "ethusdt@bookTicker"}
        await ex.flood("ETHUSDT", 3)
        await ex.flood("BTCUSDT", 3)
        await until(lambda: len(keep.events) == 3)
        assert drop.events == []


async def test_a_large_restore_is_batched_and_paced() -> None:
    names = [f"x{i:04d}usdt@trade" for i in range(900)]
    async with (
        Exchange(symbols=["BTCUSDT"], seed=5, rate=0) as ex,
        client_for(ex, validate_symbols=False) as client,
    ):
        await client.subscribe(names, Tape()).wait_active(timeout=10)
        old = ex.connections[0].id
        assert ex.faults.drop_connections(mode="close", code=1001) == 1
        await until(lambda: [c.id for c in ex.connections] not in ([], [old]), what="reconnect")
        await until(lambda: server_subs(ex) == set(names), timeout=10, what="the restore")
        (conn,) = ex.connections
        sent = [t for t, kind in conn.incoming if kind in ("text", "ping", "pong")]
        for start in sent:  # the venue's 5 a second; fastmd's 4 with 0.1 s receive jitter
            assert sum(1 for t in sent if start <= t < start + 1.0) <= 5
            assert sum(1 for t in sent if start <= t < start + 0.9) <= 4
        texts = [kind for _, kind in conn.incoming if kind == "text"]
        assert len(texts) == math.ceil(900 / 200)
        assert client.metrics().reconnects == 1


# -- gaps per stream kind --------------------------------------------------------------------------


async def test_trade_gap_is_exact(ex: Exchange) -> None:
    async with client_for(ex) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 5)
        ex.faults.skip("btcusdt@trade", 3)
        await ex.flood("BTCUSDT", 10)
        await until(lambda: len(tape.events) == 12)
        ids = tape.ids()
        assert ids == sorted(set(ids))
        (gap,) = gaps
        assert (gap.stream, gap.reason) == ("btcusdt@trade", SKIP)
        assert gap.received - gap.expected == 3
        assert (gap.expected, gap.received) == (ids[4] + 1, ids[5])
        assert gap.missing == 3
        assert client.metrics().gaps == 1
        assert "gap" in reports_of(client).codes()


async def move_until(ex: Exchange, predicate: Callable[[], bool], what: str) -> None:
    """Apply order flow (a few events every 30 ms) until ``predicate`` holds."""
    deadline = time.monotonic() + 8.0
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        ex.advance(5)
        await asyncio.sleep(0.03)


def breaks(pairs_ok: list[bool]) -> list[int]:
    """Indexes i where event i does not follow event i - 1."""
    return [i + 1 for i, ok in enumerate(pairs_ok) if not ok]


async def test_agg_trade_gap_is_exact() -> None:
    async with Exchange(symbols=["BTCUSDT"], seed=6, rate=0) as ex, client_for(ex) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        # backfill=False: the loss is reported, not recovered from REST
        await client.subscribe("btcusdt@aggTrade", tape, backfill=False).wait_active(timeout=5)
        await move_until(ex, lambda: len(tape.events) >= 5, "aggTrades")
        ex.faults.skip("btcusdt@aggTrade", 2)
        await move_until(ex, lambda: bool(gaps), "the aggTrade gap")
        await move_until(ex, lambda: tape.events[-1].agg_trade_id > gaps[0].received, "more")
        ids = [e.agg_trade_id for e in tape.events]
        assert ids == sorted(set(ids))
        (k,) = breaks([b == a + 1 for a, b in itertools.pairwise(ids)])
        (gap,) = gaps
        assert (gap.stream, gap.reason) == ("btcusdt@aggTrade", SKIP)
        assert (gap.expected, gap.received) == (ids[k - 1] + 1, ids[k])
        assert gap.received - gap.expected == 2
        assert gap.missing == 2


async def test_spot_depth_gap_is_exact() -> None:
    async with Exchange(symbols=["BTCUSDT"], seed=7, rate=0) as ex, client_for(ex) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@depth@100ms", tape).wait_active(timeout=5)
        await move_until(ex, lambda: len(tape.events) >= 3, "depth diffs")
        ex.faults.skip("btcusdt@depth@100ms", 1)
        await move_until(ex, lambda: bool(gaps), "the depth gap")
        count = len(tape.events)
        await move_until(ex, lambda: len(tape.events) > count, "one more diff")
        events = tape.events
        assert all(type(e) is fastmd.DepthUpdate for e in events)
        chained = [
            b.first_update_id == a.final_update_id + 1 for a, b in itertools.pairwise(events)
        ]
        (k,) = breaks(chained)
        (gap,) = gaps
        assert (gap.stream, gap.reason) == ("btcusdt@depth@100ms", SKIP)
        assert gap.expected == events[k - 1].final_update_id + 1
        assert gap.received == events[k].first_update_id
        assert gap.received > gap.expected


async def test_futures_depth_gap_uses_pu() -> None:
    async with (
        Exchange("binance-usdm", symbols=["BTCUSDT"], seed=8, rate=0) as ex,
        client_for(ex) as client,
    ):
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@depth@100ms", tape).wait_active(timeout=5)
        (conn,) = ex.connections
        assert conn.route == "public"  # depth is served on /public
        assert conn.path.startswith("/public/")
        await move_until(ex, lambda: len(tape.events) >= 3, "depth diffs")
        ex.faults.skip("btcusdt@depth@100ms", 1)
        await move_until(ex, lambda: bool(gaps), "the depth gap")
        count = len(tape.events)
        await move_until(ex, lambda: len(tape.events) > count, "one more diff")
        events = tape.events
        chained = [
            b.prev_final_update_id == a.final_update_id for a, b in itertools.pairwise(events)
        ]
        (k,) = breaks(chained)
        (gap,) = gaps
        assert (gap.stream, gap.reason) == ("btcusdt@depth@100ms", SKIP)
        assert gap.expected == events[k - 1].final_update_id
        assert gap.received == events[k].prev_final_update_id
        assert gap.received > gap.expected


class FakeClock:
    """The exchange's wall clock, moved by the test (klines follow it)."""

    def __init__(self) -> None:
        self.now = float(int(time.time())) + 0.5

    def __call__(self) -> float:
        return self.now


async def test_kline_gap_is_by_time() -> None:
    clock = FakeClock()
    async with (
        Exchange(symbols=["BTCUSDT"], seed=9, rate=0, clock=clock) as ex,
        client_for(ex) as client,
    ):
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@kline_1s", tape, backfill=False).wait_active(timeout=5)
        await until(lambda: len(tape.events) == 1, what="the first candle")
        for _ in range(2):
            clock.now += 1.0
            await more(tape, "a candle")
        assert gaps == []
        ex.faults.skip("btcusdt@kline_1s", 2)
        last = tape.events[-1].kline.start_time
        for _ in range(3):  # two pushes skipped, the third delivered
            clock.now += 1.0
            await asyncio.sleep(0.05)
        await until(lambda: len(gaps) == 1, what="the kline gap")
        (gap,) = gaps
        assert (gap.stream, gap.reason) == ("btcusdt@kline_1s", SKIP)
        assert (gap.expected, gap.received) == (last + 1000, last + 3000)
        assert gap.missing == 2  # candles
        assert tape.events[-1].kline.start_time == last + 3000


async def test_kline_rollover_delivers_every_update() -> None:
    clock = FakeClock()
    async with (
        Exchange(symbols=["BTCUSDT"], seed=10, rate=0, clock=clock) as ex,
        client_for(ex) as client,
    ):
        tape = Tape()
        await client.subscribe("btcusdt@kline_1s", tape).wait_active(timeout=5)
        await until(lambda: len(tape.events) == 1)
        for _ in range(3):
            ex.advance(50)  # trades, so each candle has a bar and a closing update
            clock.now += 1.0
            await more(tape, "a candle")
            await asyncio.sleep(0.05)
        opened = [e.kline.start_time for e in tape.events if not e.kline.is_closed]
        assert len(opened) == 4  # the open update of each of the four candles
        assert client.metrics().duplicates_dropped == 0


async def test_duplicates_are_dropped_and_counted(ex: Exchange) -> None:
    async with client_for(ex) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 5)
        ex.faults.duplicate("btcusdt@trade", 5)
        await ex.flood("BTCUSDT", 10)
        await until(lambda: len(tape.events) == 15)
        await until(lambda: client.metrics().duplicates_dropped == 5)
        await asyncio.sleep(0.05)
        ids = tape.ids()
        assert len(ids) == 15
        assert ids == sorted(set(ids))
        assert contiguous(ids)
        assert gaps == []
        assert client.metrics().duplicates_dropped == 5


async def test_every_stream_kind_survives_a_reconnect_without_duplicates() -> None:
    streams = ["btcusdt@bookTicker", "btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@aggTrade"]
    async with Exchange(symbols=["BTCUSDT"], seed=11, rate=300) as ex, client_for(ex) as client:
        tapes = {name: Tape() for name in streams}
        for name in streams:
            await client.subscribe(name, tapes[name]).wait_active(timeout=5)
        await asyncio.sleep(0.3)
        ex.faults.drop_connections(mode="rst")
        await until(lambda: client.metrics().reconnects == 1)
        await until(lambda: server_subs(ex) == set(streams))
        await asyncio.sleep(0.3)
    keys: dict[str, Callable[[Any], int]] = {
        "btcusdt@bookTicker": lambda e: e.update_id,
        "btcusdt@depth@100ms": lambda e: e.final_update_id,
        "btcusdt@trade": lambda e: e.trade_id,
        "btcusdt@aggTrade": lambda e: e.agg_trade_id,
    }
    for name, tape in tapes.items():
        seen = [keys[name](e) for e in tape.events]
        assert len(seen) >= 2, name
        assert seen == sorted(set(seen)), name


async def test_metrics_counters_never_go_backwards(ex: Exchange) -> None:
    async with client_for(ex) as client:
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 50)
        await until(lambda: len(tape.events) == 50)
        ex.faults.drop_connections(mode="rst")
        await until(lambda: client.metrics().reconnects == 1)
        await until(lambda: server_subs(ex) == {"btcusdt@trade"})
        before = client.metrics()
        await client.force_reconnect()
        after = client.metrics()
        assert after.handovers == 1
        assert after.messages >= before.messages >= 50
        assert after.reconnects >= before.reconnects == 1
        assert after.errors >= before.errors >= 1


async def test_duplicates_dropped_is_kept_after_unsubscribe(ex: Exchange) -> None:
    async with client_for(ex) as client:
        await client.subscribe("ethusdt@trade", Tape()).wait_active(timeout=5)
        tape = Tape()
        sub = client.subscribe("btcusdt@trade", tape)
        await sub.wait_active(timeout=5)
        ex.faults.duplicate("btcusdt@trade", 3)
        await ex.flood("BTCUSDT", 5)
        await until(lambda: client.metrics().duplicates_dropped == 3)
        sub.unsubscribe()
        assert client.metrics().duplicates_dropped == 3


# -- make-before-break -----------------------------------------------------------------------------


@pytest.fixture
async def busy() -> AsyncIterator[Exchange]:
    async with Exchange(symbols=["BTCUSDT"], seed=12, rate=500) as exchange:
        yield exchange


async def run_market(client: fastmd.Client, tape: Tape) -> None:
    await until(lambda: len(tape.events) >= 20, what="a running market")


def assert_seamless(tape: Tape, gaps: list[Gap], ex: Exchange) -> None:
    ids = tape.ids()
    assert gaps == []
    assert contiguous(ids), "trade ids are not exactly contiguous across the handover"
    assert len(ex.connections) == 1
    assert server_subs(ex) == {"btcusdt@trade"}


async def test_server_shutdown_is_handed_over_make_before_break(busy: Exchange) -> None:
    async with client_for(busy) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await run_market(client, tape)
        old = busy.connections[0].id
        assert busy.faults.server_shutdown(close_after=0.5) == 1
        await until(lambda: client.metrics().handovers == 1, what="the handover")
        await until(lambda: [c.id for c in busy.connections] != [old], what="the old socket gone")
        n = len(tape.events)
        await until(lambda: len(tape.events) >= n + 20, what="trades after the handover")
        assert_seamless(tape, gaps, busy)
        metrics = client.metrics()
        assert metrics.reconnects == 0
        assert metrics.status is Status.CONNECTED
        assert "server_shutdown" in reports_of(client).codes()


async def test_force_reconnect_is_make_before_break(busy: Exchange) -> None:
    async with client_for(busy) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await run_market(client, tape)
        old = busy.connections[0].id
        statuses: list[Status] = []
        client.on_status(lambda status, metrics: statuses.append(status))
        await client.force_reconnect()
        assert client.metrics().handovers == 1
        await until(lambda: [c.id for c in busy.connections] != [old], what="the old socket gone")
        n = len(tape.events)
        await until(lambda: len(tape.events) >= n + 20)
        assert_seamless(tape, gaps, busy)
        assert statuses == []  # never disconnected
        assert client.metrics().reconnects == 0


async def test_rotation_is_make_before_break(busy: Exchange) -> None:
    async with client_for(busy, rotate_after=0.4) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await until(lambda: client.metrics().handovers >= 2, timeout=5, what="two rotations")
        n = len(tape.events)
        await until(lambda: len(tape.events) >= n + 20)
        ids = tape.ids()
        assert gaps == []
        assert contiguous(ids)
        assert client.metrics().reconnects == 0
        assert len(busy.connections) <= 2  # the current one, and at most one being replaced


async def handover_in_flight(
    client: fastmd.Client, ex: Exchange
) -> tuple[asyncio.Task[None], fastmd.sim.Fault]:
    """Start force_reconnect() and hold its replacement connection at the upgrade (refused
    until the returned fault is cleared)."""
    refused = ex.faults.refuse_upgrades(503)
    handover = asyncio.create_task(client.force_reconnect())
    await until(lambda: "handshake_rejected" in reports_of(client).codes(), what="a refused try")
    assert client.metrics().handovers == 0
    return handover, refused


async def test_a_stream_subscribed_during_a_handover_survives_it(ex: Exchange) -> None:
    async with client_for(ex) as client:
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        handover, refused = await handover_in_flight(client, ex)
        sub = client.subscribe("ethusdt@trade", Tape())
        await sub.wait_active(timeout=5)  # acknowledged on the old connection
        refused.clear()
        await asyncio.wait_for(handover, 10)
        assert client.metrics().handovers == 1
        await until(lambda: len(ex.connections) == 1)
        assert server_subs(ex) == {"btcusdt@trade", "ethusdt@trade"}


async def test_a_stream_unsubscribed_during_a_handover_stays_unsubscribed(ex: Exchange) -> None:
    async with client_for(ex) as client:
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        sub = client.subscribe("ethusdt@trade", Tape())
        await sub.wait_active(timeout=5)
        handover, refused = await handover_in_flight(client, ex)
        sub.unsubscribe()
        refused.clear()
        await asyncio.wait_for(handover, 10)
        assert client.metrics().handovers == 1
        await until(lambda: len(ex.connections) == 1)
        await asyncio.sleep(0.1)
        assert server_subs(ex) == {"btcusdt@trade"}


async def test_close_during_a_handover_leaves_nothing_open(ex: Exchange) -> None:
    client = client_for(ex)
    await client.start()
    await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
    handover, refused = await handover_in_flight(client, ex)
    await client.close()
    refused.clear()
    await asyncio.wait_for(handover, 15)
    await asyncio.sleep(0.3)
    leaked = client_tasks()
    still_open = len(ex.connections)
    for task in leaked:  # clean up first: nothing may outlive the test
        task.cancel()
    for conn in client.connections:
        await conn.close()
    assert leaked == []
    assert still_open == 0


async def test_close_during_a_shutdown_handover_leaves_no_task(ex: Exchange) -> None:
    client = client_for(ex)
    await client.start()
    await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
    refused = ex.faults.refuse_upgrades(503)
    ex.faults.server_shutdown(close_after=5.0)
    await until(lambda: "handshake_rejected" in reports_of(client).codes(), what="a refused try")
    await client.close()
    refused.clear()
    await asyncio.sleep(0.3)
    leaked = client_tasks()
    for task in leaked:
        task.cancel()
    assert leaked == []


async def test_close_ends_the_tasks_of_books_and_fallback() -> None:
    """The leak check sees every fastmd task, not only the client's: a book waiting for its
    snapshot and a fallback poller waiting on REST are both running when close() is called."""

    def running_files() -> set[str]:
        return {Path(task.get_coro().cr_code.co_filename).name for task in client_tasks()}  # type: ignore[union-attr]

    async with Exchange(symbols=["BTCUSDT", "ETHUSDT"], seed=5, rate=400) as ex:
        client = client_for(
            ex,
            circuit_breaker=fastmd.CircuitBreakerPolicy(failure_threshold=2, cooldown=30.0),
        )
        await client.start()
        trades = client.subscribe("btcusdt@aggTrade", lambda event: None)
        await trades.wait_active(5)
        ex.faults.rest_delay(30.0)  # REST answers hang: snapshots and polls wait
        opening = asyncio.ensure_future(client.order_book("ethusdt", timeout=20))
        await until(lambda: "book.py" in running_files(), what="the snapshot fetch")
        ex.faults.refuse_upgrades(503)
        ex.faults.drop_connections(mode="rst")
        await until(lambda: client.status is Status.FALLBACK, timeout=5, what="fallback")
        await until(lambda: "recovery.py" in running_files(), what="the poller")
        await client.close()
        with pytest.raises(fastmd.InvalidState):
            await opening
        leaked = client_tasks()
        for task in leaked:  # clean up before the assertion, so nothing outlives the test
            task.cancel()
        assert leaked == []
