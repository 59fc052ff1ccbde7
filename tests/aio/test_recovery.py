"""Backfill and REST fallback against the simulator: lost data comes back, in order, once; and
make-before-break handovers repeat nothing, also on streams without a sequence of their own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from client_helpers import quiet, until

import fastmd
from fastmd.sim import Exchange

FAST = fastmd.Backoff(initial_delay=0.05, max_delay=0.1, jitter=0.0, max_attempts=None)
PATIENT = fastmd.CircuitBreakerPolicy(failure_threshold=100, cooldown=1.0)


def backfilling_client(ex: Exchange) -> fastmd.Client:
    """A client that reconnects fast and never falls back: gaps meet the backfill alone."""
    return fastmd.Client(
        ws_url=ex.ws_url, rest_url=ex.rest_url, backoff=FAST, fallback=False,
        circuit_breaker=PATIENT, error_reporter=quiet,
    )  # fmt: skip


def drop_while_away(ex: Exchange) -> None:
    """Reset every connection and refuse upgrades for 0.4 s: a burst of events while away."""
    ex.faults.refuse_upgrades(503, duration=0.4)
    ex.faults.drop_connections(mode="rst")


async def delivered_more(items: list[Any], count: int) -> None:
    """Wait until more than ``count`` further items arrive after now."""
    mark = len(items)
    await until(lambda: len(items) > mark + count)


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


async def test_backfill_completes_aggtrades_lost_during_a_drop() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=1, rate=800) as ex,
        backfilling_client(ex) as client,
    ):  # fmt: skip
        ids: list[int] = []
        gaps: list[fastmd.Gap] = []
        client.on_gap(gaps.append)
        sub = client.subscribe("btcusdt@aggTrade", lambda e: ids.append(e.agg_trade_id))
        await sub.wait_active(5)
        await until(lambda: len(ids) > 50)
        drop_while_away(ex)
        await until(lambda: client.metrics().backfilled > 0, timeout=5)
        await delivered_more(ids, 50)
        assert contiguous(ids)  # every id once, in order, across the drop
        assert gaps == []  # nothing lost, so nothing to report
        assert client.metrics().duplicates_dropped == 0


async def test_without_backfill_the_loss_is_reported() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=1, rate=800) as ex,
        backfilling_client(ex) as client,
    ):  # fmt: skip
        ids: list[int] = []
        gaps: list[fastmd.Gap] = []
        client.on_gap(gaps.append)
        sub = client.subscribe(
            "btcusdt@aggTrade", lambda e: ids.append(e.agg_trade_id), backfill=False
        )
        await sub.wait_active(5)
        await until(lambda: len(ids) > 20)
        drop_while_away(ex)
        await until(lambda: len(gaps) == 1, timeout=5)
        gap = gaps[0]
        assert gap.reason is fastmd.GapReason.RECONNECT
        assert gap.stream == "btcusdt@aggTrade"
        assert gap.expected - 1 in ids  # the last id before the loss was delivered
        assert ids[ids.index(gap.received) - 1] == gap.expected - 1
        assert gap.missing == gap.received - gap.expected
        assert client.metrics().backfilled == 0


async def test_what_rest_cannot_return_is_reported() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=1, rate=800) as ex,
        backfilling_client(ex) as client,
    ):  # fmt: skip
        ids: list[int] = []
        gaps: list[fastmd.Gap] = []
        client.on_gap(gaps.append)
        sub = client.subscribe("btcusdt@aggTrade", lambda e: ids.append(e.agg_trade_id))
        await sub.wait_active(5)
        await until(lambda: len(ids) > 20)
        ex.faults.rest_error(500, path="aggTrades")  # REST is down for aggTrades
        drop_while_away(ex)
        await until(lambda: len(gaps) == 1, timeout=5)
        await delivered_more(ids, 20)
        gap = gaps[0]
        assert gap.received - gap.expected > 0
        assert ids == sorted(set(ids))  # in order, no duplicates
        assert ids[ids.index(gap.received) - 1] == gap.expected - 1


async def test_backfill_asked_for_completes_trades_lost_during_a_drop() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=1, rate=800) as ex,
        backfilling_client(ex) as client,
    ):  # fmt: skip
        seen: list[tuple[int, str]] = []
        gaps: list[fastmd.Gap] = []
        client.on_gap(gaps.append)
        sub = client.subscribe(
            "btcusdt@trade", lambda e: seen.append((e.trade_id, client.event_source)),
            backfill=True,
        )  # fmt: skip
        await sub.wait_active(5)
        await until(lambda: len(seen) > 50)
        drop_while_away(ex)
        await until(lambda: client.metrics().backfilled > 0, timeout=5)
        await delivered_more(seen, 50)
        ids = [trade_id for trade_id, _ in seen]
        assert contiguous(ids)  # every trade id once, in order, across the drop
        assert gaps == []  # nothing lost, so nothing to report
        sources = [source for _, source in seen]
        recovered = sources.count("rest")
        assert recovered == client.metrics().backfilled > 0
        first = sources.index("rest")  # one run of REST trades, between live ones
        assert set(sources[first : first + recovered]) == {"rest"}
        assert set(sources[:first]) == set(sources[first + recovered :]) == {"ws"}
        assert client.metrics().duplicates_dropped == 0


async def test_trade_gaps_are_reported_unless_backfill_is_asked_for() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=1, rate=800) as ex,
        backfilling_client(ex) as client,
    ):  # fmt: skip
        ids: list[int] = []
        gaps: list[fastmd.Gap] = []
        client.on_gap(gaps.append)
        sub = client.subscribe("btcusdt@trade", lambda e: ids.append(e.trade_id))
        await sub.wait_active(5)
        await until(lambda: len(ids) > 20)
        drop_while_away(ex)
        await until(lambda: len(gaps) == 1, timeout=5)
        (gap,) = gaps
        assert (gap.stream, gap.reason) == ("btcusdt@trade", fastmd.GapReason.RECONNECT)
        assert ids[ids.index(gap.received) - 1] == gap.expected - 1
        assert client.metrics().backfilled == 0


async def test_trade_backfill_stops_when_historical_trades_wants_an_api_key() -> None:
    """Binance spot serves historicalTrades without a key; where it wants one (HTTP 401), the
    first trade gap is reported as it is, with one warning, and later ones are not fetched."""
    reports: list[fastmd.ErrorReport] = []
    async with (
        Exchange(symbols=["BTCUSDT"], seed=1, rate=800) as ex,
        fastmd.Client(
            ws_url=ex.ws_url, rest_url=ex.rest_url, backoff=FAST, fallback=False,
            circuit_breaker=PATIENT, error_reporter=reports.append,
        ) as client,
    ):  # fmt: skip
        ids: list[int] = []
        gaps: list[fastmd.Gap] = []
        client.on_gap(gaps.append)
        sub = client.subscribe("btcusdt@trade", lambda e: ids.append(e.trade_id), backfill=True)
        await sub.wait_active(5)
        await until(lambda: len(ids) > 20)
        ex.faults.rest_error(401, path="historicalTrades")
        requests = []  # REST requests the simulator answered, after each gap
        for drops in (1, 2):
            ex.faults.refuse_upgrades(503, duration=0.3)
            ex.faults.drop_connections(mode="rst")
            await until(lambda drops=drops: len(gaps) == drops, timeout=5)
            requests.append(ex.rest.requests)
            mark = len(ids)
            await until(lambda mark=mark: len(ids) > mark + 20)
        assert requests[1] == requests[0]  # the second gap asked REST nothing
        assert [g.reason for g in gaps] == [fastmd.GapReason.RECONNECT] * 2
        for gap in gaps:  # each loss reported whole, with its exact ids
            assert ids[ids.index(gap.received) - 1] == gap.expected - 1
        codes = [report.code for report in reports]
        assert codes.count("backfill_unavailable") == 1
        assert "backfill_failed" not in codes
        assert client.metrics().backfilled == 0
        assert ids == sorted(set(ids))


async def test_kline_candles_missed_during_a_drop_are_backfilled() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=2, rate=300) as ex,
        backfilling_client(ex) as client,
    ):  # fmt: skip
        starts: list[int] = []
        gaps: list[fastmd.Gap] = []
        client.on_gap(gaps.append)
        sub = client.subscribe("btcusdt@kline_1s", lambda e: starts.append(e.kline.start_time))
        await sub.wait_active(5)
        await until(lambda: len(starts) >= 2, timeout=5)
        ex.faults.refuse_upgrades(503, duration=2.2)  # two or more 1 s candles go by
        ex.faults.drop_connections(mode="rst")
        await until(lambda: client.metrics().backfilled > 0, timeout=8)
        mark = len(starts)
        await until(lambda: len(starts) > mark + 1, timeout=5)
        candles = sorted(set(starts))
        assert candles == list(range(candles[0], candles[-1] + 1000, 1000))  # none missing
        assert starts == sorted(starts)
        assert gaps == []


async def test_fallback_round_trip_keeps_order_without_duplicates() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=3, rate=600) as ex,
        fastmd.Client(
            ws_url=ex.ws_url,
            rest_url=ex.rest_url,
            backoff=FAST,
            circuit_breaker=fastmd.CircuitBreakerPolicy(failure_threshold=3, cooldown=0.8),
            error_reporter=quiet,
        ) as client,
    ):
        events: list[tuple[int, str]] = []
        statuses: list[fastmd.Status] = []
        client.on_status(lambda status, metrics: statuses.append(status))

        def on_trade(event: Any) -> None:
            assert isinstance(event, fastmd.AggTrade)  # the same type from REST and WS
            events.append((event.agg_trade_id, client.event_source))

        sub = client.subscribe("btcusdt@aggTrade", on_trade)
        await sub.wait_active(5)
        await until(lambda: len(events) > 30)
        refused = ex.faults.refuse_upgrades(503)  # the WebSocket is killed and refused
        ex.faults.drop_connections(mode="rst")
        await until(lambda: client.status is fastmd.Status.FALLBACK, timeout=5)
        await until(lambda: sum(1 for _, source in events if source == "rest") > 30, timeout=8)
        refused.clear()  # the WebSocket is back
        await until(lambda: client.status is fastmd.Status.CONNECTED, timeout=8)
        mark = len(events)
        await until(lambda: len(events) > mark + 30 and events[-1][1] == "ws", timeout=5)
        ids = [i for i, _ in events]
        assert contiguous(ids)  # no duplicate, no step back, nothing missing
        sources = [source for _, source in events]
        assert "rest" in sources
        assert sources[-1] == "ws"
        assert fastmd.Status.FALLBACK in statuses
        assert statuses[-1] is fastmd.Status.CONNECTED
        assert client.metrics().gaps == 0


async def test_fallback_serves_other_streams_in_their_own_types() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=4, rate=300) as ex,
        fastmd.Client(
            ws_url=ex.ws_url, rest_url=ex.rest_url, backoff=FAST, fallback_after=1,
            error_reporter=quiet,
        ) as client,
    ):  # fmt: skip
        seen: dict[str, list[tuple[Any, str]]] = {}
        streams = [
            "btcusdt@kline_1m", "btcusdt@bookTicker", "btcusdt@ticker", "btcusdt@miniTicker",
            "btcusdt@depth5", "btcusdt@avgPrice", "btcusdt@trade",
        ]  # fmt: skip
        for stream in streams:
            seen[stream] = []
            client.subscribe(stream, lambda e, s=stream: seen[s].append((e, client.event_source)))
        await until(lambda: client.status is fastmd.Status.CONNECTED)
        ex.faults.refuse_upgrades(503, duration=3.0)
        ex.faults.drop_connections(mode="rst")
        await until(lambda: client.status is fastmd.Status.FALLBACK, timeout=5)
        await until(lambda: all(any(src == "rest" for _, src in seen[s]) for s in streams), 6)
        types = {
            "btcusdt@kline_1m": fastmd.Kline, "btcusdt@bookTicker": fastmd.BookTicker,
            "btcusdt@ticker": fastmd.Ticker, "btcusdt@miniTicker": fastmd.MiniTicker,
            "btcusdt@depth5": fastmd.PartialDepth, "btcusdt@avgPrice": fastmd.AvgPrice,
            "btcusdt@trade": fastmd.Trade,
        }  # fmt: skip
        for stream, kind in types.items():
            rest_events = [e for e, src in seen[stream] if src == "rest"]
            assert all(isinstance(e, kind) for e in rest_events), stream
            assert all(e.symbol == "BTCUSDT" for e in rest_events), stream
        trade_ids = [e.trade_id for e, _ in seen["btcusdt@trade"]]
        assert trade_ids == sorted(set(trade_ids))


async def test_backfilled_events_say_they_came_from_rest() -> None:
    """``client.event_source`` is per delivery: the events a backfill recovers are ``"rest"``,
    the live ones around them ``"ws"``; a live-value tracker never takes a backfilled one."""
    async with (
        Exchange(symbols=["BTCUSDT"], seed=1, rate=800) as ex,
        backfilling_client(ex) as client,
    ):  # fmt: skip
        seen: list[tuple[int, str]] = []
        sub = client.subscribe(
            "btcusdt@aggTrade", lambda e: seen.append((e.agg_trade_id, client.event_source))
        )
        await sub.wait_active(5)
        await until(lambda: len(seen) > 50)
        drop_while_away(ex)
        await until(lambda: client.metrics().backfilled > 0, timeout=5)
        await delivered_more(seen, 50)
        assert contiguous([trade_id for trade_id, _ in seen])
        sources = [source for _, source in seen]
        recovered = sources.count("rest")
        assert recovered == client.metrics().backfilled
        # one run of REST events, between live ones
        first = sources.index("rest")
        assert set(sources[first : first + recovered]) == {"rest"}
        assert set(sources[:first]) == set(sources[first + recovered :]) == {"ws"}
        assert client.event_source == "ws"  # outside a delivery


# -- handovers: streams without a sequence of their own repeat nothing ---------------------

WATCHED = ("!bookTicker", "!forceOrder@arr", "btcusdt@forceOrder")


def _key(stream: str, event: Any) -> tuple[Any, ...]:
    """What tells one event of ``stream`` from another: (symbol, update id) for a book ticker;
    a liquidation has no id, so (symbol, time, quantity, price)."""
    if stream == "!bookTicker":
        return (event.symbol, event.update_id)
    order = event.order
    return (order.symbol, event.event_time, order.original_quantity, order.price)


def _wire_key(stream: str, payload: bytes) -> tuple[Any, ...]:
    data = json.loads(payload)
    if stream == "!bookTicker":
        return (data["s"], data["u"])
    order = data["o"]
    return (order["s"], data["E"], float(order["q"]), float(order["p"]))


async def _liquidate(publish: Callable[[str, bytes], None], stop: asyncio.Event) -> None:
    """Liquidations, which the simulator's market makes only now and then: here one every
    millisecond or so, each of 40 symbols in turn (BTCUSDT's on its own stream too), so that
    handovers happen in the middle of them."""
    symbols = ["BTCUSDT", *(f"LIQ{i}USDT" for i in range(39))]
    n = 0
    while not stop.is_set():
        symbol = symbols[n % len(symbols)]
        now = int(time.time() * 1000)
        payload = (
            f'{{"e":"forceOrder","E":{now},"o":{{"s":"{symbol}","S":"SELL","o":"LIMIT",'
            f'"f":"IOC","q":"{n}.25","p":"100.5","ap":"100.5","X":"FILLED","l":"{n}.25",'
            f'"z":"{n}.25","T":{now}}}}}'
        ).encode()
        publish("!forceOrder@arr", payload)
        if symbol == "BTCUSDT":
            publish("btcusdt@forceOrder", payload)
        n += 1
        await asyncio.sleep(0.001)


async def test_force_reconnects_deliver_every_book_ticker_and_liquidation_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five make-before-break handovers in a busy market, each with the server also sending
    frames twice (its own replays: overlaps on loopback are too short to be sure of a repeat
    each time): every event the server sent is delivered once, in order, none lost."""
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    async with (
        Exchange("binance-usdm", symbols=symbols, seed=5, rate=2000) as ex,
        fastmd.Client(
            "binance-usdm", ws_url=ex.ws_url, rest_url=ex.rest_url, backoff=FAST,
            error_reporter=quiet,
        ) as client,
    ):  # fmt: skip
        sent: dict[str, list[tuple[Any, ...]]] = {name: [] for name in WATCHED}
        publish = ex.ws.publish

        def recorded(stream: str, payload: bytes) -> None:  # what the server sends, in order
            if stream in sent:
                sent[stream].append(_wire_key(stream, payload))
            publish(stream, payload)

        monkeypatch.setattr(ex.ws, "publish", recorded)
        got: dict[str, list[tuple[Any, ...]]] = {name: [] for name in WATCHED}
        for name in WATCHED:
            sub = client.subscribe(name, lambda e, name=name: got[name].append(_key(name, e)))
            await sub.wait_active(5)
        stop = asyncio.Event()
        liquidations = asyncio.create_task(_liquidate(recorded, stop))
        await until(lambda: all(len(events) > 10 for events in got.values()))
        for _ in range(5):
            for name in WATCHED:
                ex.faults.duplicate(name, 2)
            await client.force_reconnect()
            await asyncio.sleep(0.1)
        # every repeat asked for is sent before the liquidations stop (a sparse stream may not
        # have published since the last round's request)
        await until(lambda: not ex.ws.faulty, 10, "the requested repeats sent")
        stop.set()
        await liquidations
        settled = {name: len(frames) for name, frames in sent.items()}
        await asyncio.sleep(0.2)  # what was sent so far arrives
        metrics = client.metrics()
        assert metrics.handovers == 5 * 2  # two connections each time: /public and /market
        assert metrics.gaps == 0
        assert metrics.duplicates_dropped >= 5 * 2 * len(WATCHED)  # every repeat dropped
    for name in WATCHED:
        delivered = got[name]
        assert len(delivered) == len(set(delivered)), f"{name}: an event delivered twice"
        # every event the server sent from the first one delivered on, in order, none missing
        first = sent[name].index(delivered[0])
        assert delivered == sent[name][first : first + len(delivered)], name
        assert first + len(delivered) >= settled[name], f"{name}: events sent, never delivered"


async def test_backfill_pages_by_id_across_pages_and_holes() -> None:
    """The id paging both trade backfills share: fromId pages of BACKFILL_PAGE, ids REST lacks
    skipped, nothing at or past the id that came instead; an in-memory REST of ids only."""
    from fastmd.aio.recovery import _by_id
    from fastmd.core.recovery import BACKFILL_PAGE
    from fastmd.core.sequence import Gap, GapReason

    have = [i for i in range(100, 100 + 3 * BACKFILL_PAGE) if i % 7]  # REST lacks multiples of 7
    asked: list[int] = []

    async def fetch(start: int) -> list[int]:
        asked.append(start)
        return [i for i in have if i >= start][:BACKFILL_PAGE]

    gap = Gap("btcusdt@trade", 105, 100 + 2 * BACKFILL_PAGE + 50, GapReason.RECONNECT)
    found = await _by_id(gap, fetch, lambda i: i, lambda i: ("event", i))
    assert found == [("event", i) for i in have if gap.expected <= i < gap.received]
    # two full pages (with the holes, 2000 items reach past the id that came instead), the
    # second from just after the first one's last id, and no third
    assert asked == [gap.expected, found[BACKFILL_PAGE - 1][1] + 1]
