"""fastmd.Client against the simulator: subscriptions and callbacks, event streams and their
overflow policies, sharding, batched and paced control frames (checked on the server side), acks,
refusals and timeouts, status and metrics, and API misuse. Faults and handovers are in
test_client_faults.py. Everything runs on loopback; no step sleeps more than about a second."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from client_helpers import (
    Tape,
    client_for,
    client_tasks,
    reports_of,
    server_subs,
    text_frames,
    until,
)

import fastmd
from fastmd import Gap, GapReason, Heartbeat, Status
from fastmd.sim import Exchange, SimLimits

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT"]


@pytest.fixture
async def ex() -> AsyncIterator[Exchange]:
    """A quiet market (rate 0): tests publish with ``ex.flood`` and ``ex.advance``."""
    async with Exchange(symbols=SYMBOLS[:2], seed=1, rate=0) as exchange:
        yield exchange


def assert_paced(times: list[float]) -> None:
    """Frames as the server logged them: never past the venue's 5 in any second (one more is a
    1008), and fastmd's 4 a second. The client spaces bursts exactly 1 s apart on its own clock;
    the server logs a frame when its loop gets to it (later under load), so the 4 are checked
    over 0.75 s."""
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0) <= 5
        assert sum(1 for t in times if start <= t < start + 0.75) <= 4


def state(sub: fastmd.Subscription) -> str:
    return sub.state  # read again: mypy would keep the narrowing of an earlier assert


def status_of(client: fastmd.Client) -> Status:
    return client.status


def contiguous(ids: list[int]) -> bool:
    return bool(ids) and ids == list(range(ids[0], ids[0] + len(ids)))


# -- subscribe, callbacks, unsubscribe -------------------------------------------------------------


async def test_subscribe_delivers_events_once_acknowledged(ex: Exchange) -> None:
    async with client_for(ex) as client:
        tape = Tape()
        sub = client.subscribe("btcusdt@trade", tape)
        assert sub.state == "pending"  # returns at once, before the server said anything
        assert sub.streams == ("btcusdt@trade",)
        await sub.wait_active(timeout=5)
        assert state(sub) == "active"
        assert "active" in repr(sub)
        assert [conn.subscriptions for conn in ex.connections] == [{"btcusdt@trade"}]
        assert ex.connections[0].combined  # one combined socket per shard
        await ex.flood("BTCUSDT", 30)
        await until(lambda: len(tape.events) == 30, what="30 trades")
        assert all(type(e) is fastmd.Trade and e.symbol == "BTCUSDT" for e in tape.events)
        assert contiguous(tape.ids())
        assert client.metrics().streams == 1


async def test_several_streams_in_one_subscription(ex: Exchange) -> None:
    async with client_for(ex) as client:
        tape = Tape()
        sub = client.subscribe(["btcusdt@trade", "ethusdt@trade", "btcusdt@trade"], tape)
        assert sub.streams == ("btcusdt@trade", "ethusdt@trade")  # duplicates folded
        await sub.wait_active(timeout=5)
        assert server_subs(ex) == {"btcusdt@trade", "ethusdt@trade"}
        await ex.flood("BTCUSDT", 5)
        await ex.flood("ETHUSDT", 7)
        await until(lambda: len(tape.events) == 12)
        assert sorted(e.symbol for e in tape.events) == ["BTCUSDT"] * 5 + ["ETHUSDT"] * 7


async def test_many_callbacks_per_stream_and_the_last_one_unsubscribes(ex: Exchange) -> None:
    async with client_for(ex) as client:
        first, second, other = Tape(), Tape(), Tape()
        sub1 = client.subscribe("btcusdt@trade", first)
        sub2 = client.subscribe("btcusdt@trade", second)
        keep = client.subscribe("ethusdt@trade", other)  # keeps the connection open
        for sub in (sub1, sub2, keep):
            await sub.wait_active(timeout=5)
        frames = text_frames(ex)
        await ex.flood("BTCUSDT", 10)
        await until(lambda: len(first.events) == 10 and len(second.events) == 10)
        assert first.ids() == second.ids()
        assert first.events[0] is second.events[0]  # one decode, every callback

        sub1.unsubscribe()
        assert sub1.state == "closed"
        sub1.unsubscribe()  # idempotent
        await asyncio.sleep(0.1)
        assert server_subs(ex) == {"btcusdt@trade", "ethusdt@trade"}  # still wanted by sub2
        assert text_frames(ex) == frames  # so no UNSUBSCRIBE was sent
        await ex.flood("BTCUSDT", 10)
        await until(lambda: len(second.events) == 20)
        assert len(first.events) == 10

        sub2.unsubscribe()
        await until(lambda: server_subs(ex) == {"ethusdt@trade"}, what="UNSUBSCRIBE btcusdt")
        assert text_frames(ex) == frames + 1
        await ex.flood("BTCUSDT", 10)
        await ex.flood("ETHUSDT", 3)
        await until(lambda: len(other.events) == 3)
        assert len(second.events) == 20
        assert client.metrics().streams == 1
        with pytest.raises(fastmd.InvalidState):
            await sub2.wait_active(timeout=1)


async def test_subscribing_an_active_stream_again_is_active_at_once(ex: Exchange) -> None:
    async with client_for(ex) as client:
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        frames = text_frames(ex)
        again = client.subscribe("btcusdt@trade", Tape())
        assert again.state == "active"
        await again.wait_active(timeout=0.1)
        await asyncio.sleep(0.05)
        assert text_frames(ex) == frames


async def test_last_unsubscribe_keeps_the_shard_idle_then_closes_it(ex: Exchange) -> None:
    async with client_for(ex, idle_timeout=0.3) as client:
        sub = client.subscribe("btcusdt@trade", Tape())
        await sub.wait_active(timeout=5)
        (conn,) = ex.connections
        sub.unsubscribe()
        await until(lambda: server_subs(ex) == set(), what="the UNSUBSCRIBE")
        assert [c.id for c in ex.connections] == [conn.id]  # kept open, idle
        again = client.subscribe("btcusdt@trade", Tape())  # reuses it: no new connection
        await again.wait_active(timeout=5)
        assert [c.id for c in ex.connections] == [conn.id]
        again.unsubscribe()
        await until(lambda: not ex.connections, what="the idle connection to close")
        assert client.connections == []
        third = client.subscribe("btcusdt@trade", Tape())  # and a new one opens on demand
        await third.wait_active(timeout=5)
        assert server_subs(ex) == {"btcusdt@trade"}


async def test_an_idle_connection_is_kept_by_default(ex: Exchange) -> None:
    async with client_for(ex) as client:
        assert client.idle_timeout == 60.0
        sub = client.subscribe("btcusdt@trade", Tape())
        await sub.wait_active(timeout=5)
        sub.unsubscribe()
        await until(lambda: server_subs(ex) == set())
        await asyncio.sleep(0.3)
        assert len(ex.connections) == 1


async def test_a_raising_callback_is_reported_and_the_others_still_run(ex: Exchange) -> None:
    async with client_for(ex) as client:
        calls = 0

        def broken(event: Any) -> None:
            nonlocal calls
            calls += 1
            raise ValueError("boom")

        before, after = Tape(), Tape()
        client.subscribe("btcusdt@trade", before)
        client.subscribe("btcusdt@trade", broken)
        sub = client.subscribe("btcusdt@trade", after)
        await sub.wait_active(timeout=5)
        await ex.flood("BTCUSDT", 20)
        await until(lambda: len(after.events) == 20)
        assert contiguous(before.ids())
        assert before.ids() == after.ids()
        assert calls == 20
        assert client.metrics().callback_errors == 20
        reports = [r for r in reports_of(client) if r.code == "callback_error"]
        assert len(reports) == 20
        assert isinstance(reports[0].error, fastmd.CallbackError)
        assert isinstance(reports[0].error.__cause__, ValueError)
        assert reports[0].context["stream"] == "btcusdt@trade"


async def test_slow_callbacks_are_measured(ex: Exchange) -> None:
    async with client_for(ex, slow_callback=0.001) as client:
        tape = Tape()

        def slow(event: Any) -> None:
            tape(event)
            time.sleep(0.005)  # blocks the loop, as a slow callback does

        await client.subscribe("btcusdt@trade", slow).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 48)  # only one message in 16 is timed
        await until(lambda: len(tape.events) == 48)
        metrics = client.metrics()
        assert 1 <= metrics.slow_callbacks <= 3
        assert metrics.callback_time_max >= 0.005
        assert metrics.callback_time_mean >= 0.005
        assert "slow_callback" in reports_of(client).codes()


async def test_fast_callbacks_are_not_slow(ex: Exchange) -> None:
    async with client_for(ex) as client:
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 64)
        await until(lambda: len(tape.events) == 64)
        metrics = client.metrics()
        assert metrics.slow_callbacks == 0
        assert 0 < metrics.callback_time_mean < 0.01
        assert metrics.callback_time_max >= metrics.callback_time_mean


# -- client.stream() ------------------------------------------------------------------------------


async def next_event(events: fastmd.EventStream, timeout: float = 2.0) -> Any:
    return await asyncio.wait_for(anext(events), timeout)


async def test_stream_iterates_events_of_several_streams_and_close_ends_it(ex: Exchange) -> None:
    async with client_for(ex) as client:
        events = client.stream(["btcusdt@trade", "ethusdt@trade"], maxsize=100)
        await until(lambda: server_subs(ex) == {"btcusdt@trade", "ethusdt@trade"})
        await ex.flood("BTCUSDT", 3)
        await ex.flood("ETHUSDT", 2)
        got = [await next_event(events) for _ in range(5)]
        assert sorted(e.symbol for e in got) == ["BTCUSDT"] * 3 + ["ETHUSDT"] * 2
        assert len(events) == 0
        events.close()
        with pytest.raises(StopAsyncIteration):
            await next_event(events)
        await until(lambda: not server_subs(ex), what="the stream's UNSUBSCRIBE")
        assert client.metrics().overflow_dropped == 0


async def test_stream_rejects_bad_arguments(ex: Exchange) -> None:
    async with client_for(ex) as client:
        with pytest.raises(ValueError, match="maxsize"):
            client.stream("btcusdt@trade", maxsize=0)
        with pytest.raises(ValueError, match="overflow"):
            client.stream("btcusdt@trade", overflow="block")  # type: ignore[arg-type]
        assert client.metrics().streams == 0


def covered(gaps: list[Gap]) -> list[int]:
    """The positions a consumer's overflow gaps say it lost, in order."""
    return [p for g in gaps for p in range(g.expected, g.received)]


async def test_stream_drop_oldest(ex: Exchange) -> None:
    async with client_for(ex) as client:
        client_gaps: list[Gap] = []
        client.on_gap(client_gaps.append)
        events = client.stream("btcusdt@trade", maxsize=5, overflow="drop_oldest")
        gaps: list[Gap] = []
        events.on_gap(gaps.append)
        await until(lambda: server_subs(ex) == {"btcusdt@trade"})
        await ex.flood("BTCUSDT", 20)
        await until(lambda: covered(gaps) == list(range(1, 16)), what="15 positions lost")
        assert len(events) == 5
        got = [(await next_event(events)).trade_id for _ in range(5)]
        assert contiguous(got)
        assert all(g.reason is GapReason.OVERFLOW and g.stream == "btcusdt@trade" for g in gaps)
        # One gap per burst (a loop turn's drops), not one per event.
        assert len(gaps) < 15
        assert list(events.gaps) == gaps
        assert events.dropped == 15
        metrics = client.metrics()
        assert metrics.overflow_dropped == 15
        # The consumer's loss, not the stream's: the client's gap listeners hear nothing.
        assert client_gaps == []
        assert metrics.gaps == 0
        # Keeps going afterwards.
        await ex.flood("BTCUSDT", 2)
        assert (await next_event(events)).trade_id == got[-1] + 1
        events.close()


async def test_stream_keep_latest(ex: Exchange) -> None:
    async with client_for(ex) as client:
        events = client.stream(
            ["btcusdt@trade", "ethusdt@trade"], maxsize=1, overflow="keep_latest"
        )
        gaps: list[Gap] = []
        events.on_gap(gaps.append)
        await until(lambda: server_subs(ex) == {"btcusdt@trade", "ethusdt@trade"})
        await ex.flood("BTCUSDT", 10)
        await ex.flood("ETHUSDT", 4)
        await until(lambda: events.dropped == 12 and bool(gaps), what="12 conflated")
        await asyncio.sleep(0.05)  # the burst's gap is reported at the end of its loop turn
        latest = {e.symbol: e for e in [await next_event(events), await next_event(events)]}
        assert len(events) == 0
        btc = ex.market.books["BTCUSDT"].next_trade_id - 1
        eth = ex.market.books["ETHUSDT"].next_trade_id - 1
        assert (latest["BTCUSDT"].trade_id, latest["ETHUSDT"].trade_id) == (btc, eth)
        assert all(g.reason is GapReason.OVERFLOW for g in gaps)
        by_stream = {s: [p for g in gaps if g.stream == s for p in range(g.expected, g.received)]
                     for s in ("btcusdt@trade", "ethusdt@trade")}  # fmt: skip
        assert by_stream == {"btcusdt@trade": list(range(1, 10)), "ethusdt@trade": [1, 2, 3]}
        assert client.metrics().overflow_dropped == 12
        events.close()


async def test_stream_keep_latest_keeps_everything_below_maxsize(ex: Exchange) -> None:
    async with client_for(ex) as client:
        gaps: list[Gap] = []
        client.on_gap(gaps.append)
        events = client.stream("btcusdt@trade", maxsize=100, overflow="keep_latest")
        await until(lambda: server_subs(ex) == {"btcusdt@trade"})
        await ex.flood("BTCUSDT", 10)
        await asyncio.sleep(0.1)
        assert len(events) == 10
        assert gaps == []
        events.close()


async def test_stream_disconnect_raises_and_unsubscribes(ex: Exchange) -> None:
    async with client_for(ex) as client:
        events = client.stream("btcusdt@trade", maxsize=5, overflow="disconnect")
        gaps: list[Gap] = []
        events.on_gap(gaps.append)
        await until(lambda: server_subs(ex) == {"btcusdt@trade"})
        await ex.flood("BTCUSDT", 20)
        await until(lambda: len(gaps) == 1, what="the overflow gap")
        (gap,) = gaps
        assert (gap.stream, gap.reason) == ("btcusdt@trade", GapReason.OVERFLOW)
        assert (gap.expected, gap.received) == (6, 7)  # the 6th event did not fit
        got = [(await next_event(events)).trade_id for _ in range(5)]
        assert contiguous(got)  # what was queued is still handed out
        with pytest.raises(fastmd.StreamOverflow):
            await next_event(events)
        await until(lambda: not server_subs(ex), what="the stream's UNSUBSCRIBE")
        assert client.metrics().streams == 0
        assert client.metrics().overflow_dropped == 1


async def test_an_overflowing_aggtrade_stream_is_never_backfilled(ex: Exchange) -> None:
    """Queue positions are not aggTrade ids: an overflow must not send REST requests nor give
    old trades to the stream's other subscribers."""
    async with client_for(ex) as client:
        others: list[Any] = []
        client.subscribe("btcusdt@aggTrade", others.append)
        events = client.stream("btcusdt@aggTrade", maxsize=3)
        await until(lambda: server_subs(ex) == {"btcusdt@aggTrade"})
        requests = ex.rest.requests
        ex.advance(400)  # order flow: its aggTrades arrive in a few socket reads
        await until(lambda: len(others) > 3 and events.dropped == len(others) - 3)
        await asyncio.sleep(0.3)
        delivered = len(others)
        assert events.dropped == delivered - 3
        ids = [e.agg_trade_id for e in others]
        assert contiguous(ids)  # nothing delivered twice, nothing old
        assert client.metrics().backfilled == 0
        assert covered(list(events.gaps)) == list(range(1, delivered - 2))
        assert ex.rest.requests == requests  # no REST request for a consumer's loss
        events.close()


# -- sharding, batching, pacing -----------------------------------------------------------------


async def test_streams_are_sharded_over_connections() -> None:
    async with (
        Exchange(symbols=SYMBOLS, seed=2, rate=0) as ex,
        client_for(ex, max_streams_per_connection=3) as client,
    ):
        tapes = {symbol: Tape() for symbol in SYMBOLS}
        subs = [client.subscribe(f"{s.lower()}@trade", tapes[s]) for s in SYMBOLS]
        for sub in subs:
            await sub.wait_active(timeout=5)
        assert len(ex.connections) == 3
        assert len(client.connections) == 3
        assert sorted(len(conn.subscriptions) for conn in ex.connections) == [2, 3, 3]
        assert server_subs(ex) == {f"{s.lower()}@trade" for s in SYMBOLS}
        for symbol in SYMBOLS:
            await ex.flood(symbol, 10)
        await until(lambda: all(len(t.events) == 10 for t in tapes.values()))
        for symbol, tape in tapes.items():
            assert {e.symbol for e in tape.events} == {symbol}
            assert contiguous(tape.ids())
        assert len(client.metrics().connections) == 3
        assert client.metrics().messages >= 80


@pytest.mark.parametrize(
    ("venue", "streams", "frames"), [("binance-spot", 1024, 4), ("binance-usdm", 200, 8)]
)
async def test_connection_limits_default_to_the_venues(
    venue: str, streams: int, frames: int
) -> None:
    client = fastmd.Client(venue=venue)  # type: ignore[arg-type]
    assert client.max_streams_per_connection == streams
    assert client.max_outgoing_per_second == frames  # below Binance's 5 and 10
    tuned = fastmd.Client(venue=venue, max_streams_per_connection=7, max_outgoing_per_second=2)  # type: ignore[arg-type]
    assert (tuned.max_streams_per_connection, tuned.max_outgoing_per_second) == (7, 2)


async def test_2000_streams_are_batched_and_paced_without_a_1008() -> None:
    # 1,000 streams a shard: five SUBSCRIBEs each, ten in all (ceil(2000 / 200)). With six a
    # shard the 1008 risk of test_a_delayed_first_burst_does_not_trip_the_venue_limit applies.
    names = [f"x{i:04d}usdt@trade" for i in range(2000)]
    async with (
        Exchange(symbols=SYMBOLS[:1], seed=3, rate=0) as ex,
        client_for(ex, validate_symbols=False, max_streams_per_connection=1000) as client,
    ):
        sub = client.subscribe(names, Tape())
        await sub.wait_active(timeout=15)
        assert server_subs(ex) == set(names)
        conns = ex.connections
        assert sorted(len(conn.subscriptions) for conn in conns) == [1000, 1000]
        subscribes = 0
        for conn in conns:
            assert_paced([t for t, kind in conn.incoming if kind in ("text", "ping", "pong")])
            subscribes += sum(1 for _, kind in conn.incoming if kind == "text")
        assert subscribes == math.ceil(2000 / 200)
        metrics = client.metrics()
        assert metrics.reconnects == 0
        assert metrics.streams == 2000
        assert "disconnected" not in reports_of(client).codes()


async def test_streams_subscribed_one_call_each_are_batched() -> None:
    names = [f"x{i:04d}usdt@trade" for i in range(30)]
    async with (
        Exchange(symbols=SYMBOLS[:1], seed=13, rate=0) as ex,
        client_for(ex, validate_symbols=False) as client,
    ):
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        subs = [client.subscribe(name, Tape()) for name in names]  # one burst, no await between
        await asyncio.sleep(1.2)
        (conn,) = client.connections
        assert conn.stats.sent <= 2  # the first stream, then one batch of 30
        assert client.metrics().reconnects == 0  # (30 frames also risk a 1008, see below)
        assert all(sub.state == "active" for sub in subs)


async def test_a_delayed_first_burst_does_not_trip_the_venue_limit() -> None:
    names = [f"x{i:04d}usdt@trade" for i in range(1024)]  # one shard, six SUBSCRIBE frames
    async with Exchange(symbols=SYMBOLS[:1], seed=14, rate=0) as ex:
        client = client_for(ex, validate_symbols=False)
        delayed = False

        def delay_first_burst(status: Status, metrics: fastmd.Metrics) -> None:
            # Runs right after the first four SUBSCRIBEs were written, before the server reads
            # them: they reach it 0.3 s late, as after a retransmission.
            nonlocal delayed
            if status is Status.CONNECTED and not delayed:
                delayed = True
                time.sleep(0.3)

        client.on_status(delay_first_burst)
        async with client:
            client.subscribe(names, Tape())
            reports = reports_of(client)
            for _ in range(100):  # 2 s: the last two frames leave 1 s after the first four
                if "disconnected" in reports.codes():
                    break
                await asyncio.sleep(0.02)
            assert delayed
            assert "disconnected" not in reports.codes()
            assert client.metrics().reconnects == 0


async def test_exchange_info_is_cached() -> None:
    async with Exchange(symbols=SYMBOLS, seed=15, rate=0) as ex:
        client = client_for(ex)
        async with client:
            await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
            subs = [client.subscribe(f"{s.lower()}@trade", Tape()) for s in SYMBOLS[1:]]
            for sub in subs:
                await sub.wait_active(timeout=5)
        assert ex.rest.requests == 1  # cached after the first fetch


async def test_concurrent_subscribes_share_one_exchange_info_request() -> None:
    async with Exchange(symbols=SYMBOLS, seed=16, rate=0) as ex:
        client = client_for(ex)
        async with client:
            subs = [client.subscribe(f"{s.lower()}@trade", Tape()) for s in SYMBOLS]
            for sub in subs:
                await sub.wait_active(timeout=5)
        assert ex.rest.requests == 1


# -- acks, refusals, timeouts ---------------------------------------------------------------------


async def test_a_refused_subscribe_fails_with_the_server_code() -> None:
    limits = SimLimits.for_venue("binance-spot").with_(max_streams_per_connection=2)
    async with (
        Exchange(symbols=SYMBOLS[:4], seed=4, rate=0, limits=limits) as ex,
        client_for(ex, max_streams_per_connection=5) as client,
    ):
        streams = [f"{s.lower()}@trade" for s in SYMBOLS[:4]]
        sub = client.subscribe(streams, Tape())
        with pytest.raises(fastmd.SubscriptionError) as caught:
            await sub.wait_active(timeout=5)
        assert caught.value.code == 2
        assert caught.value.stream in streams
        assert "too many streams" in str(caught.value)
        assert sub.state == "failed"
        assert sub.error is caught.value
        assert server_subs(ex) == set()
        assert client.metrics().streams == 0
        assert "subscription_failed" in reports_of(client).codes()
        # A stream that fits still works on the same client.
        ok = client.subscribe("btcusdt@trade", Tape())
        await ok.wait_active(timeout=5)
        assert server_subs(ex) == {"btcusdt@trade"}


async def test_unknown_symbols_are_rejected_via_exchange_info(ex: Exchange) -> None:
    async with client_for(ex) as client:
        sub = client.subscribe("xrpxrp@trade", Tape())
        with pytest.raises(fastmd.UnknownSymbolError) as caught:
            await sub.wait_active(timeout=5)
        assert isinstance(caught.value, fastmd.SubscriptionError)
        assert caught.value.stream == "xrpxrp@trade"
        assert sub.state == "failed"
        assert ex.connections == []  # nothing was sent to the stream server
        assert client.metrics().streams == 0


async def test_without_validation_unknown_symbols_are_acknowledged(ex: Exchange) -> None:
    async with client_for(ex, validate_symbols=False) as client:
        sub = client.subscribe("xrpxrp@trade", Tape())
        await sub.wait_active(timeout=5)
        assert server_subs(ex) == {"xrpxrp@trade"}


async def test_an_unanswered_subscribe_is_sent_again(ex: Exchange) -> None:
    async with client_for(ex, ack_timeout=0.3, ack_retries=2) as client:
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        fault = ex.faults.half_open(connection=ex.connections[0].id)
        tape = Tape()
        sub = client.subscribe("ethusdt@trade", tape)
        with pytest.raises(fastmd.FastmdTimeoutError):
            await sub.wait_active(timeout=0.4)  # the paced SUBSCRIBE left and was ignored
        assert sub.state == "pending"  # not active until acknowledged
        fault.clear()
        await sub.wait_active(timeout=3)
        texts = [kind for _, kind in ex.connections[0].incoming if kind == "text"]
        assert len(texts) == 3  # btcusdt, then ethusdt twice
        await ex.flood("ETHUSDT", 3)
        await until(lambda: len(tape.events) == 3)


async def test_a_subscribe_never_answered_fails_after_its_retries(ex: Exchange) -> None:
    async with client_for(ex, ack_timeout=0.2, ack_retries=1) as client:
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        fault = ex.faults.half_open(connection=ex.connections[0].id)
        sub = client.subscribe("ethusdt@trade", Tape())
        started = time.monotonic()
        with pytest.raises(fastmd.SubscriptionError) as caught:
            await sub.wait_active(timeout=5)
        assert time.monotonic() - started >= 0.35  # two attempts of 0.2 s
        assert caught.value.code == -1
        assert sub.state == "failed"
        fault.clear()
        texts = [kind for _, kind in ex.connections[0].incoming if kind == "text"]
        assert len(texts) == 3


# -- status and metrics ---------------------------------------------------------------------------


async def test_status_transitions_with_a_metrics_snapshot_each(ex: Exchange) -> None:
    client = client_for(ex)
    seen: list[tuple[Status, fastmd.Metrics]] = []
    client.on_status(lambda status, metrics: seen.append((status, metrics)))
    async with client:
        assert client.status is Status.CONNECTING
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        assert status_of(client) is Status.CONNECTED
        ex.faults.drop_connections(mode="close", code=1001)
        await until(lambda: len(seen) >= 3, what="RECONNECTING then CONNECTED")
        await until(lambda: server_subs(ex) == {"btcusdt@trade"})
    assert status_of(client) is Status.CLOSED
    assert [status for status, _ in seen] == [
        Status.CONNECTED,
        Status.RECONNECTING,
        Status.CONNECTED,
        Status.CLOSED,
    ]
    for status, metrics in seen:
        assert isinstance(metrics, fastmd.Metrics)
        assert metrics.status is status
    assert seen[0][1].reconnects == 0
    assert seen[2][1].reconnects == 1


async def test_a_status_listener_can_be_removed_and_may_raise(ex: Exchange) -> None:
    async with client_for(ex) as client:
        seen: list[Status] = []
        remove = client.on_status(lambda status, metrics: seen.append(status))

        def broken(status: Status, metrics: fastmd.Metrics) -> None:
            raise RuntimeError("listener bug")

        client.on_status(broken)
        await client.subscribe("btcusdt@trade", Tape()).wait_active(timeout=5)
        assert seen == [Status.CONNECTED]
        remove()
        remove()  # idempotent
    assert seen == [Status.CONNECTED]


async def test_metrics_fields(ex: Exchange) -> None:
    heartbeat = Heartbeat(interval=0.2, timeout=2.0)
    async with client_for(ex, heartbeat=heartbeat) as client:
        idle = client.metrics()
        assert (idle.status, idle.streams, idle.messages, idle.connections) == (
            Status.CONNECTING, 0, 0, ())  # fmt: skip
        tape = Tape()
        await client.subscribe(["btcusdt@trade", "ethusdt@trade"], tape).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 100)
        await ex.flood("ETHUSDT", 50)
        await until(lambda: len(tape.events) == 150)
        await until(lambda: client.metrics().latency.samples >= 1, what="a ping round trip")
        metrics = client.metrics()
        assert metrics.status is Status.CONNECTED
        assert metrics.streams == 2
        assert metrics.messages >= 150  # data frames (and the control reply)
        (conn,) = metrics.connections
        assert conn.state == "OPEN"
        assert conn.messages == metrics.messages
        assert metrics.message_rate_1s == conn.message_rate_1s
        assert metrics.message_rate_10s > 0
        assert 0 < metrics.uptime < 30
        assert conn.uptime > 0
        assert metrics.latency.last is not None
        assert 0 < metrics.latency.last < 1
        assert (metrics.reconnects, metrics.handovers, metrics.gaps) == (0, 0, 0)
        assert (metrics.duplicates_dropped, metrics.decode_errors) == (0, 0)
        assert (metrics.callback_errors, metrics.slow_callbacks, metrics.overflow_dropped) == (
            0, 0, 0)  # fmt: skip
        assert metrics.errors == 0
        assert metrics.callback_time_mean > 0


async def test_a_malformed_frame_is_counted_and_the_stream_goes_on(ex: Exchange) -> None:
    async with client_for(ex) as client:
        tape = Tape()
        await client.subscribe("btcusdt@trade", tape).wait_active(timeout=5)
        await ex.flood("BTCUSDT", 3)
        assert ex.faults.malformed("not_json") == 1
        await ex.flood("BTCUSDT", 3)
        await until(lambda: len(tape.events) == 6)
        assert contiguous(tape.ids())
        metrics = client.metrics()
        assert metrics.decode_errors == 1
        assert metrics.errors >= 1
        assert any(code.startswith("decode_") for code in reports_of(client).codes())


# -- API misuse ------------------------------------------------------------------------------------


async def test_subscribe_before_start_or_after_close_is_invalid_state(ex: Exchange) -> None:
    client = client_for(ex)
    with pytest.raises(fastmd.InvalidState):
        client.subscribe("btcusdt@trade", Tape())
    with pytest.raises(fastmd.InvalidState):
        client.stream("btcusdt@trade")
    async with client:
        pass
    with pytest.raises(fastmd.InvalidState):
        client.subscribe("btcusdt@trade", Tape())
    with pytest.raises(fastmd.InvalidState):
        client.stream("btcusdt@trade")
    with pytest.raises(fastmd.InvalidState):
        await client.force_reconnect()
    with pytest.raises(fastmd.InvalidState):
        await client.start()
    assert ex.connections == []


@pytest.mark.parametrize(
    "streams",
    [
        "BTCUSDT@trade",
        "btcusdt@trades",
        "btcusdt",
        ["btcusdt@trade", "ethusdt@nope"],
        ["ethusdt@depth@250ms", "btcusdt@trade"],  # spot has no 250ms depth
        [],
    ],
)
async def test_invalid_stream_names_subscribe_nothing(
    ex: Exchange, streams: str | list[str]
) -> None:
    async with client_for(ex) as client:
        with pytest.raises(fastmd.StreamNameError):
            client.subscribe(streams, Tape())
        await asyncio.sleep(0.05)
        assert client.metrics().streams == 0
        assert client.connections == []
        assert ex.connections == []


async def test_invalid_stream_name_in_stream_subscribes_nothing(ex: Exchange) -> None:
    async with client_for(ex) as client:
        with pytest.raises(fastmd.StreamNameError):
            client.stream(["btcusdt@trade", "ethusdt@nope"])
        await asyncio.sleep(0.1)
        assert client.metrics().streams == 0
        assert ex.connections == []


async def test_futures_stream_names_are_invalid_on_spot(ex: Exchange) -> None:
    async with client_for(ex) as client:
        with pytest.raises(fastmd.StreamNameError):
            client.subscribe("btcusdt@markPrice", Tape())
    with pytest.raises(ValueError, match="venue"):
        fastmd.Client("binance-coinm")  # type: ignore[arg-type]


async def test_close_is_idempotent_and_leaves_no_task_behind(ex: Exchange) -> None:
    client = client_for(ex)
    await client.start()
    subs = [client.subscribe(s, Tape()) for s in ("btcusdt@trade", "ethusdt@trade")]
    for sub in subs:
        await sub.wait_active(timeout=5)
    pending = client.subscribe("btcusdt@aggTrade", Tape())
    assert client_tasks()
    await client.close()
    await client.close()
    assert client.status is Status.CLOSED
    assert client_tasks() == []
    assert all(sub.state == "closed" for sub in [*subs, pending])
    with pytest.raises(fastmd.InvalidState):
        await pending.wait_active(timeout=1)
    await until(lambda: not ex.connections, what="the server to see the close")


async def test_close_right_after_the_last_unsubscribe_leaves_no_task_behind(ex: Exchange) -> None:
    client = client_for(ex)
    await client.start()
    sub = client.subscribe("btcusdt@trade", Tape())
    await sub.wait_active(timeout=5)
    sub.unsubscribe()
    await client.close()
    await asyncio.sleep(0.2)
    leaked = client_tasks()
    for task in leaked:  # clean up before the assertion, so nothing outlives the test
        task.cancel()
    assert leaked == []
    assert ex.connections == []
