"""Selective updates through the client: ``only_changes`` and ``throttle`` against the simulator
and the recorded Binance session; held-back events are counted, never gaps."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from client_helpers import client_for, until
from testdata import RECORDING

import fastmd
from fastmd.sim import Exchange

SYMBOLS = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]


def quiet(report: fastmd.ErrorReport) -> None:
    pass


def recorded_changes() -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Counted from the frames alone: per stream, all events, and the events whose compared
    fields differ from the previous one (bookTicker: bid and ask price; kline: close price and
    closed flag, the closing update and a new candle always counting)."""
    total: Counter[str] = Counter()
    book_changes: Counter[str] = Counter()
    kline_changes: Counter[str] = Counter()
    last: dict[str, Any] = {}
    for line in (RECORDING / "stream.jsonl").read_text().splitlines():
        frame = json.loads(line)["msg"]
        stream, data = frame["stream"], frame["data"]
        total[stream] += 1
        previous = last.get(stream)
        if stream.endswith("@bookTicker"):
            key = (data["b"], data["a"])
            if previous is None or key != previous:
                book_changes[stream] += 1
            last[stream] = key
        elif "@kline_" in stream:
            k = data["k"]
            key = (k["t"], k["c"], k["x"])
            if previous is None or k["x"] or key != previous:
                kline_changes[stream] += 1
            last[stream] = key
    return total, book_changes, kline_changes


async def test_only_changes_on_the_recorded_session_calls_back_once_per_change() -> None:
    total, book_changes, kline_changes = recorded_changes()
    tickers = [f"{s.lower()}@bookTicker" for s in SYMBOLS]
    klines = [f"{s.lower()}@kline_1m" for s in SYMBOLS]
    assert sum(book_changes.values()) < sum(total[s] for s in tickers)  # something to skip
    async with (
        Exchange(replay=RECORDING, replay_speed=None, replay_autostart=False) as ex,
        fastmd.Client(
            ws_url=ex.ws_url, rest_url=ex.rest_url, price_type=str, error_reporter=quiet
        ) as client,
    ):
        every: Counter[str] = Counter()
        changed: Counter[str] = Counter()
        streams = [*tickers, *klines]
        subs = []
        for stream in streams:
            # one subscription sees everything, a second one only the changes
            subs.append(client.subscribe(stream, lambda e, s=stream: every.update([s])))
            subs.append(
                client.subscribe(stream, lambda e, s=stream: changed.update([s]), only_changes=True)
            )
        for sub in subs:
            await sub.wait_active(5)
        ex.start_replay()
        await ex.wait_replayed()
        await until(lambda: sum(every.values()) == sum(total[s] for s in streams))
        for stream in tickers:
            assert changed[stream] == book_changes[stream], stream
        for stream in klines:
            assert changed[stream] == kline_changes[stream], stream
        metrics = client.metrics()
        assert metrics.unchanged_skipped == sum(every.values()) - sum(changed.values())
        assert metrics.gaps == 0
        skipped = sum(sub.skipped for sub in subs)
        assert skipped == metrics.unchanged_skipped
        health = client.health()  # per stream: what that stream's callbacks were not given
        for stream in streams:
            assert health.streams[stream].skipped == every[stream] - changed[stream], stream
            assert health.streams[stream].conflated == 0


@pytest.fixture
async def ex() -> AsyncIterator[Exchange]:
    async with Exchange(symbols=["BTCUSDT", "ETHUSDT"], seed=8, rate=0) as exchange:
        yield exchange


async def test_throttle_delivers_at_most_once_per_interval_and_the_newest_last(
    ex: Exchange,
) -> None:
    async with client_for(ex) as client:
        seen: list[tuple[float, int]] = []
        every: list[int] = []
        interval = 0.2
        client.subscribe("btcusdt@bookTicker", lambda e: every.append(e.update_id))
        sub = client.subscribe(
            "btcusdt@bookTicker",
            lambda e: seen.append((time.monotonic(), e.update_id)),
            throttle=interval,
        )
        await sub.wait_active(5)
        for _ in range(6):  # bursts of quotes, faster than the interval
            ex.advance(40)
            await asyncio.sleep(0.05)
        await until(lambda: bool(every) and bool(seen) and seen[-1][1] == every[-1])
        times = [at for at, _ in seen]
        assert all(b - a >= interval * 0.9 for a, b in itertools.pairwise(times))
        assert len(seen) < len(every)
        ids = [u for _, u in seen]
        assert ids == sorted(ids)
        metrics = client.metrics()
        assert metrics.throttle_conflated == sub.conflated == len(every) - len(seen)
        assert metrics.gaps == 0
        stream = client.health().streams["btcusdt@bookTicker"]
        assert (stream.conflated, stream.skipped) == (len(every) - len(seen), 0)


async def test_only_changes_with_named_fields_and_throttle_together(ex: Exchange) -> None:
    async with client_for(ex) as client:
        quotes: list[Any] = []
        sub = client.subscribe(
            "ethusdt@bookTicker",
            quotes.append,
            only_changes=("bid_price",),
            throttle=0.05,
        )
        await sub.wait_active(5)
        ex.advance(200)
        await asyncio.sleep(0.3)
        bids = [q.bid_price for q in quotes]
        assert len(bids) >= 2  # the comparison below must have pairs to compare
        assert all(a != b for a, b in itertools.pairwise(bids))


async def test_refusals_change_nothing(ex: Exchange) -> None:
    async with client_for(ex) as client:
        with pytest.raises(ValueError, match="not snapshots of state"):
            client.subscribe("btcusdt@trade", print, throttle=1.0)
        with pytest.raises(ValueError, match="no default"):
            client.subscribe("btcusdt@aggTrade", print, only_changes=True)
        with pytest.raises(ValueError, match="no field 'bid'"):
            client.subscribe("btcusdt@bookTicker", print, only_changes=("bid",))
        with pytest.raises(ValueError, match="positive"):
            client.subscribe("btcusdt@bookTicker", print, throttle=0)
        with pytest.raises(TypeError, match="callable"):
            client.subscribe("btcusdt@bookTicker", None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not snapshots of state"):
            client.stream(["btcusdt@bookTicker", "btcusdt@trade"], throttle=1.0)
        await asyncio.sleep(0.1)
        assert client.metrics().streams == 0
        assert ex.connections == []


async def test_stream_and_market_data_take_the_options(ex: Exchange) -> None:
    async with client_for(ex) as client:
        events = client.stream("btcusdt@bookTicker", only_changes=True)
        prices: list[fastmd.Result[Any]] = []
        feed = client.market.subscribe_price("btcusdt", prices.append, only_changes=True)
        candles: list[fastmd.Result[Any]] = []
        kl = client.market.subscribe_klines("btcusdt", "1m", candles.append, throttle=0.1)
        await feed.wait_active(5)
        await kl.wait_active(5)
        await asyncio.sleep(0.1)
        ex.advance(300)
        first = await asyncio.wait_for(events.__anext__(), 5)
        assert isinstance(first, fastmd.BookTicker)
        await until(lambda: len(prices) > 1 and len(candles) > 0)
        values = [r.data for r in prices]
        assert all(a != b for a, b in itertools.pairwise(values))
        with pytest.raises(TypeError):
            client.market.subscribe_price("btcusdt", print, only_changes=("price",))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive"):
            client.market.subscribe_price("btcusdt", print, throttle=-1)
        events.close()


async def test_unsubscribing_a_throttled_subscription_drops_what_it_held(ex: Exchange) -> None:
    async with client_for(ex) as client:
        seen: list[Any] = []
        sub = client.subscribe("btcusdt@bookTicker", seen.append, throttle=0.5)
        await sub.wait_active(5)
        ex.advance(50)
        await until(lambda: len(seen) == 1)
        await asyncio.sleep(0.05)
        sub.unsubscribe()  # events are held for the trailing edge
        await asyncio.sleep(0.7)
        assert len(seen) == 1


async def test_a_throttled_price_feed_while_price_sees_every_trade(ex: Exchange) -> None:
    async with client_for(ex) as client:
        results: list[fastmd.Result[Any]] = []
        feed = client.market.subscribe_price("btcusdt", results.append, throttle=0.2)
        await feed.wait_active(5)
        for _ in range(5):
            await ex.flood("BTCUSDT", 50)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the trailing edge
        assert 1 < len(results) < 250  # throttled, yet more than the first
        latest = await client.market.price("btcusdt")
        assert latest.source == "ws"  # price() answers from every trade the feed saw
        assert results[-1].data == latest.data  # the newest price was not held back


async def test_a_throttled_callback_raising_at_the_trailing_edge_is_reported(
    ex: Exchange,
) -> None:
    reports: list[fastmd.ErrorReport] = []
    async with client_for(ex, error_reporter=reports.append) as client:
        calls = 0

        def bad(event: Any) -> None:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise RuntimeError("late")

        sub = client.subscribe("btcusdt@bookTicker", bad, throttle=0.1)
        await sub.wait_active(5)
        ex.advance(100)
        await until(lambda: any(r.code == "callback_error" for r in reports), timeout=3)
        failure = next(r for r in reports if r.code == "callback_error")
        assert failure.context["stream"] == "btcusdt@bookTicker"
        assert isinstance(failure.error, fastmd.CallbackError)
        assert client.metrics().callback_errors >= 1
