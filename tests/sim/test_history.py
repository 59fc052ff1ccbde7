"""The simulator's past: full pages of history from the first request, consistent with the live
market and with itself, the same for the same seed, in bounded memory.

Exchanges run on loopback with a frozen clock (``Exchange(clock=...)``) and are queried with a
plain ``aiohttp`` session and WebSocket; bodies are decoded with fastmd's REST models.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import msgspec
import pytest

import fastmd
from fastmd.core.streams import SPOT_KLINE_INTERVALS, USDM_KLINE_INTERVALS, Venue
from fastmd.sim import Exchange
from fastmd.sim.market import (
    _KEEP_BARS,
    _SPLIT_CACHE,
    _SUM_CACHE,
    BACKLOG,
    HISTORY_DAYS,
    Market,
    bucket_end,
    bucket_start,
)

START = 1_700_000_123.456  # mid-second, mid-minute, mid-day
DAY_MS = 86_400_000
Bar = fastmd.KlineBar[Decimal]
Trade = fastmd.RestTrade[Decimal]
Agg = fastmd.RestAggTrade[Decimal]
Ticker = fastmd.RestTicker[Decimal]


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Sim:
    ex: Exchange
    http: aiohttp.ClientSession
    clock: Clock
    prefix: str

    async def get(self, path: str, **params: Any) -> Any:
        query = {k: str(v) for k, v in params.items()}
        async with self.http.get(f"{self.ex.rest_url}{self.prefix}{path}", params=query) as reply:
            body = await reply.read()
            assert reply.status == 200, body
            return msgspec.json.decode(body)

    async def raw(self, path: str, **params: Any) -> bytes:
        query = {k: str(v) for k, v in params.items()}
        async with self.http.get(f"{self.ex.rest_url}{self.prefix}{path}", params=query) as reply:
            return await reply.read()

    async def decoded(self, kind: Any, path: str, **params: Any) -> Any:
        return msgspec.json.decode(await self.raw(path, **params), type=kind, strict=False)

    async def klines(self, interval: str, **params: Any) -> list[Bar]:
        return await self.decoded(list[Bar], "klines", symbol="BTCUSDT", interval=interval,
                                  **params)  # fmt: skip

    async def trades(self, **params: Any) -> list[Trade]:
        return await self.decoded(list[Trade], "trades", symbol="BTCUSDT", **params)

    async def aggs(self, **params: Any) -> list[Agg]:
        return await self.decoded(list[Agg], "aggTrades", symbol="BTCUSDT", **params)

    def book(self) -> Any:
        return self.ex.market.books["BTCUSDT"]

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


async def _sim(venue: Venue, seed: int = 7, start: float = START) -> AsyncIterator[Sim]:
    clock = Clock(start)
    exchange = Exchange(venue, ["BTCUSDT", "ETHUSDT"], seed=seed, rate=0, clock=clock)
    async with exchange as ex, aiohttp.ClientSession() as http:
        yield Sim(ex, http, clock, "/api/v3/" if venue == "binance-spot" else "/fapi/v1/")


@pytest.fixture(params=["binance-spot", "binance-usdm"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Sim]:
    async for s in _sim(request.param):
        yield s


@pytest.fixture
async def spot() -> AsyncIterator[Sim]:
    async for s in _sim("binance-spot"):
        yield s


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


def combined(bars: list[Bar]) -> tuple[Decimal, ...]:
    """What one bar spanning ``bars`` holds (quote volume aside)."""
    traded = [b for b in bars if b.trade_count]
    return (
        traded[0].open, max(b.high for b in traded), min(b.low for b in traded), traded[-1].close,
        sum((b.volume for b in bars), Decimal(0)), Decimal(sum(b.trade_count for b in bars)),
        sum((b.taker_buy_volume for b in bars), Decimal(0)),
    )  # fmt: skip


def held(bar: Bar) -> tuple[Decimal, ...]:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, Decimal(bar.trade_count),
            bar.taker_buy_volume)  # fmt: skip


def chunks(bars: list[Bar], size: int) -> list[list[Bar]]:
    return [bars[i : i + size] for i in range(0, len(bars), size)]


def listing_ms(start: float = START) -> int:
    now = int(start * 1000)
    return now - now % DAY_MS - HISTORY_DAYS * DAY_MS


# -- full pages from the first request ------------------------------------------------------


async def test_trades_pages_are_full_and_run_into_the_live_ids(sim: Sim) -> None:
    book = sim.book()
    trades = await sim.trades(limit=1000)
    assert len(trades) == 1000
    assert contiguous([t.id for t in trades])
    assert trades[-1].id == book.next_trade_id - 1  # the next live trade takes the next id
    assert trades[-1].time < sim.now_ms()
    assert all(t.quote_quantity == t.price * t.quantity and t.quantity > 0 for t in trades)
    assert {t.is_buyer_maker for t in trades} == {True, False}

    aggs = await sim.aggs(limit=1000)
    assert len(aggs) == 1000
    assert contiguous([a.agg_trade_id for a in aggs])
    assert aggs[-1].agg_trade_id == book.next_agg_id - 1
    assert aggs[-1].last_trade_id == trades[-1].id
    for before, after in itertools.pairwise(aggs):  # f..l ranges tile the trades
        assert after.first_trade_id == before.last_trade_id + 1
    by_id = {t.id: t for t in trades}
    for agg in aggs[-200:]:  # each aggTrade is its trades: one price, one side, one time
        covered = [by_id[i] for i in range(agg.first_trade_id, agg.last_trade_id + 1)]
        assert {(t.price, t.is_buyer_maker, t.time) for t in covered} == {
            (agg.price, agg.is_buyer_maker, agg.trade_time)
        }
        assert sum(t.quantity for t in covered) == agg.quantity

    # historicalTrades pages back through the tape by fromId.
    oldest = book.trades[0].trade_id
    assert oldest <= trades[-1].id - BACKLOG + 1
    page = await sim.decoded(list[Trade], "historicalTrades", symbol="BTCUSDT", fromId=oldest,
                             limit=1000)  # fmt: skip
    assert [t.id for t in page] == list(range(oldest, oldest + 1000))
    newest = await sim.decoded(list[Trade], "historicalTrades", symbol="BTCUSDT", limit=1000)
    assert newest == trades


@pytest.mark.parametrize("venue", ["binance-spot", "binance-usdm"])
async def test_every_interval_gives_a_full_contiguous_page(venue: Venue) -> None:
    async for sim in _sim(venue):
        now = sim.now_ms()
        last_price = Decimal(sim.book().price(sim.book().last_price))
        spot = venue == "binance-spot"
        limit = 1000 if spot else 1500
        for interval in SPOT_KLINE_INTERVALS if spot else USDM_KLINE_INTERVALS:
            bars = await sim.klines(interval, limit=limit)
            # Full pages, except where the symbol's listing (1500 days ago) comes first.
            first = bucket_start(listing_ms(), interval)
            assert bars[0].open_time == first or len(bars) == limit, interval
            assert bars[-1].open_time == bucket_start(now, interval)  # the newest is the live one
            assert bars[-1].close == last_price
            for bar in bars:
                assert bar.open_time == bucket_start(bar.open_time, interval)
                assert bar.close_time == bucket_end(bar.open_time, interval)
                assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
                assert 0 <= bar.taker_buy_volume <= bar.volume
                assert 0 <= bar.taker_buy_quote_volume <= bar.quote_volume
                assert bar.low * bar.volume <= bar.quote_volume <= bar.high * bar.volume
                assert (bar.trade_count > 0) == (bar.volume > 0)
            for before, after in itertools.pairwise(bars):
                assert after.open_time == before.close_time + 1, interval


# -- the past leads into the live market ----------------------------------------------------


async def test_live_streams_continue_the_history(sim: Sim) -> None:
    spot = sim.prefix == "/api/v3/"
    trades = await sim.trades(limit=5)
    aggs = await sim.aggs(limit=5)
    streams = ["btcusdt@aggTrade", "btcusdt@kline_1m"] + (["btcusdt@trade"] if spot else [])
    route = "" if spot else "/market"  # USD-M serves trades and klines on its /market route
    url = f"{sim.ex.ws_url}{route}/stream?streams={'/'.join(streams)}"
    got: dict[str, list[Any]] = {name: [] for name in streams}
    async with sim.http.ws_connect(url) as ws:
        for _ in range(500):  # the subscription reaches the market
            if sim.ex.market.active:
                break
            await asyncio.sleep(0.01)
        for _ in range(100):
            if got["btcusdt@aggTrade"] and got["btcusdt@kline_1m"]:
                break
            sim.clock.now += 0.05
            sim.ex.advance(20)
            try:
                while True:
                    message = await ws.receive_json(timeout=0.05)
                    got[message["stream"]].append(message["data"])
            except TimeoutError:
                pass
    first_agg = got["btcusdt@aggTrade"][0]
    assert first_agg["a"] == aggs[-1].agg_trade_id + 1
    assert first_agg["f"] == trades[-1].id + 1
    tick = Decimal(sim.book().price(1))
    assert abs(Decimal(first_agg["p"]) - trades[-1].price) <= 2 * tick  # prices lead on
    if spot:
        assert got["btcusdt@trade"][0]["t"] == trades[-1].id + 1
    # The open 1m candle holds the past's trades of this minute and the live ones after them.
    kline = got["btcusdt@kline_1m"][-1]["k"]
    minute = sim.now_ms() - sim.now_ms() % 60_000
    assert kline["t"] == minute
    before = [t for t in await sim.trades(limit=1000) if t.time >= minute]
    assert kline["f"] == before[0].id < first_agg["f"] <= kline["L"]


async def test_klines_agree_with_the_trades_they_cover(sim: Sim) -> None:
    sim.clock.now += 1.5
    sim.ex.advance(400)  # live trades after the past's tape
    trades = await sim.trades(limit=1000)
    assert trades[0].time < int(START * 1000) < trades[-1].time  # the page spans the start
    for interval, size in (("1m", 60_000), ("3m", 180_000)) + (
        (("1s", 1000),) if sim.prefix == "/api/v3/" else ()
    ):
        bars = await sim.klines(interval, startTime=trades[0].time - trades[0].time % size,
                                limit=1000)  # fmt: skip
        checked = 0
        for bar in bars[1:]:  # the first bar may hold trades older than the page
            inside = [t for t in trades if bar.open_time <= t.time <= bar.close_time]
            if not inside:
                assert (bar.trade_count, bar.volume) == (0, 0)
                assert bar.open == bar.high == bar.low == bar.close  # flat at the last close
                continue
            assert bar.trade_count == len(inside), interval
            assert (bar.open, bar.close) == (inside[0].price, inside[-1].price)
            assert bar.high == max(t.price for t in inside)
            assert bar.low == min(t.price for t in inside)
            assert bar.volume == sum(t.quantity for t in inside)
            assert bar.quote_volume == sum(t.quote_quantity for t in inside)
            assert bar.taker_buy_volume == sum(t.quantity for t in inside if not t.is_buyer_maker)
            checked += 1
        assert checked >= 2, interval


async def test_intervals_agree_with_each_other(spot: Sim) -> None:
    now = spot.now_ms()
    days_ago = now - now % DAY_MS - 20 * DAY_MS
    # An old day: 1440 minutes, 24 hours, one day; quote volumes agree within each level.
    minutes = await spot.klines("1m", startTime=days_ago, limit=1000)
    minutes += await spot.klines("1m", startTime=days_ago + 1000 * 60_000, limit=440)
    hours = await spot.klines("1h", startTime=days_ago, limit=24)
    (day,) = await spot.klines("1d", startTime=days_ago, limit=1)
    for hour, group in zip(hours, chunks(minutes, 60), strict=True):
        assert held(hour) == combined(group)
        quote = sum(b.quote_volume for b in group)
        assert abs(hour.quote_volume - quote) <= quote / 200  # one price per bar: within 0.5 %
    assert held(day) == combined(hours)
    three = await spot.klines("3m", startTime=days_ago, limit=480)
    for bar, group in zip(three, chunks(minutes, 3), strict=True):
        assert held(bar) == combined(group)
        assert bar.quote_volume == sum(b.quote_volume for b in group)  # both from minutes
    seconds = await spot.klines("1s", startTime=days_ago, limit=60)
    assert held(minutes[0]) == combined(seconds)
    # Weeks, months and 3 days are summed from days.
    for interval in ("3d", "1w", "1M"):
        old = bucket_start(days_ago - 60 * DAY_MS, interval)
        (bar,) = await spot.klines(interval, startTime=old, limit=1)
        inside = await spot.klines("1d", startTime=bar.open_time, endTime=bar.close_time)
        assert len(inside) == (bar.close_time + 1 - bar.open_time) // DAY_MS
        assert held(bar) == combined(inside), interval
        assert abs(bar.quote_volume - sum(b.quote_volume for b in inside)) < bar.quote_volume / 200
    # Across the start of the tape of trades, and into the live minutes.
    tape_start = spot.book().tape_start  # set once the past was first needed
    spot.clock.now += 61
    spot.ex.advance(300)
    hour = bucket_start(tape_start, "1h")
    (bar,) = await spot.klines("1h", startTime=hour, limit=1)
    group = await spot.klines("1m", startTime=hour, limit=60)
    assert held(bar) == combined(group)
    assert bar.quote_volume == sum(b.quote_volume for b in group)
    days = await spot.klines("1d", limit=2)
    hours = await spot.klines("1h", startTime=days[-1].open_time, limit=24)
    assert held(days[-1]) == combined(hours)


async def test_the_24h_and_window_tickers_agree_with_the_1m_klines(sim: Sim) -> None:
    sim.clock.now += 90
    sim.ex.advance(500)
    for path, params in (("ticker/24hr", {}), ("ticker", {"windowSize": "1h"})):
        if sim.prefix == "/fapi/v1/" and path == "ticker":
            continue  # futures serve no rolling-window ticker
        ticker = await sim.decoded(Ticker, path, symbol="BTCUSDT", **params)
        bars = await sim.klines("1m", startTime=ticker.open_time, limit=1000)
        if ticker.close_time - ticker.open_time > 1000 * 60_000:
            more = await sim.klines("1m", startTime=bars[-1].close_time + 1, limit=1000)
            bars += more
        assert bars[-1].open_time <= ticker.close_time <= bars[-1].close_time
        assert ticker.open_price == bars[0].open
        assert ticker.high_price == max(b.high for b in bars)
        assert ticker.low_price == min(b.low for b in bars)
        assert ticker.last_price == bars[-1].close
        assert ticker.volume == sum(b.volume for b in bars)
        assert ticker.quote_volume == sum(b.quote_volume for b in bars)
        assert ticker.count == sum(b.trade_count for b in bars)
        assert ticker.count == ticker.last_id - ticker.first_id + 1
        assert ticker.last_id == (await sim.trades(limit=1))[-1].id
        if ticker.weighted_avg_price is not None:
            assert ticker.low_price <= ticker.weighted_avg_price <= ticker.high_price


# -- determinism ----------------------------------------------------------------------------


async def _bodies(seed: int, start: float = START) -> list[bytes]:
    bodies = []
    async for sim in _sim("binance-spot", seed=seed, start=start):
        day = int(start * 1000) - 30 * DAY_MS
        for path, params in (
            ("klines", {"interval": "1m"}),
            ("klines", {"interval": "1d", "limit": 1000}),
            ("klines", {"interval": "1s", "startTime": day, "limit": 100}),
            ("klines", {"interval": "1h", "endTime": day}),
            ("trades", {"limit": 1000}),
            ("aggTrades", {"limit": 1000}),
            ("ticker/24hr", {}),
        ):
            bodies.append(await sim.raw(path, symbol="BTCUSDT", **params))
    return bodies


async def test_same_seed_same_history() -> None:
    first = await _bodies(seed=3)
    assert first == await _bodies(seed=3)
    other = await _bodies(seed=4)
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_history_does_not_depend_on_the_order_it_is_asked_in() -> None:
    def market() -> Market:
        return Market("binance-spot", ["BTCUSDT"], seed=9, clock=Clock())

    one, two = market(), market()
    a, b = one.books["BTCUSDT"], two.books["BTCUSDT"]
    old = int(START * 1000) - 100 * DAY_MS
    hourly = one.klines(a, "1h", limit=1000)
    one.klines(a, "1s", limit=1000, start_time=old)
    two.klines(b, "1s", limit=1000, start_time=old)  # the other order
    assert two.klines(b, "1h", limit=1000) == hourly
    assert one.klines(a, "1s", limit=1000, start_time=old) == two.klines(
        b, "1s", limit=1000, start_time=old
    )


def test_the_live_market_does_not_depend_on_when_the_past_is_made() -> None:
    """docs/simulator.md: the live market moves as it did before the simulator had a past.
    Making the past (its tape, pages of klines) draws nothing from the market's generator: the
    same seed gives the same live frames whether the past was asked for first or never."""
    streams = ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@bookTicker", "ethusdt@trade"]

    def live(ask_first: bool) -> list[tuple[str, bytes]]:
        clock = Clock()
        market = Market("binance-spot", ["BTCUSDT", "ETHUSDT"], seed=8, clock=clock)
        market.set_active(streams)
        if ask_first:
            state = market.rng.getstate()
            for book in market.books.values():
                market.klines(book, "1h", limit=1000)
                market.recent_trades(book, 1000)
                market.ticker_24h(book)
            assert market.rng.getstate() == state
        out = []
        for _ in range(2000):
            clock.now += 0.01
            out += market.step()
        return out

    never = live(ask_first=False)
    assert {stream for stream, _ in never} == set(streams)
    assert live(ask_first=True) == never


def test_live_trades_before_the_past_is_needed_join_it() -> None:
    """The tape is made when first needed; live trades already counted go after it."""
    clock = Clock()
    market = Market("binance-spot", ["BTCUSDT"], seed=4, clock=clock)
    book = market.books["BTCUSDT"]
    for _ in range(1000):  # 20 s of live trading
        clock.now += 0.02
        market.step()
    assert book.tape_start is None  # live only, so far
    live = list(book.trades)
    assert 0 < len(live) < 1000
    trades = msgspec.json.decode(market.recent_trades(book, 1000), type=list[Trade])
    assert contiguous([t.id for t in trades])
    assert [t.id for t in trades[-len(live) :]] == [t.trade_id for t in live]
    minute = int(START * 1000) - int(START * 1000) % 60_000  # holds past and live trades
    (bar,) = msgspec.json.decode(
        market.klines(book, "1m", limit=1, start_time=minute), type=list[Bar]
    )
    inside = [t for t in book.trades if minute <= t.time < minute + 60_000]
    assert inside[0].time < int(START * 1000) < inside[-1].time
    assert bar.trade_count == len(inside)
    assert bar.volume == Decimal(book.qty(sum(t.quantity for t in inside)))
    assert bar.quote_volume == Decimal(book.notional(1, sum(t.price * t.quantity for t in inside)))
    assert (bar.open, bar.close) == tuple(
        Decimal(book.price(t.price)) for t in (inside[0], inside[-1])
    )


def test_an_interval_without_trades_is_flat_at_the_previous_close() -> None:
    """docs/simulator.md: an interval without trades is flat at the previous close with zero
    volume, also as the first bar of a page (its previous close is outside the page)."""
    clock = Clock()
    market = Market("binance-spot", ["BTCUSDT"], seed=6, clock=clock)
    book = market.books["BTCUSDT"]
    while book.next_trade_id == book.history.end_id:  # until something trades live
        clock.now += 0.01
        market.step()
    clock.now += 10  # ten quiet seconds
    last = Decimal(book.price(book.last_price))
    bars = msgspec.json.decode(market.klines(book, "1s", limit=30), type=list[Bar])
    quiet = [bar for bar in bars if bar.trade_count == 0]
    assert len(quiet) >= 9
    assert bars[-1].trade_count == 0
    assert bars[-1].close == last
    for before, bar in itertools.pairwise(bars):
        if bar.trade_count == 0:
            assert bar.open == bar.high == bar.low == bar.close == before.close
            assert bar.volume == bar.quote_volume == bar.taker_buy_volume == 0
    first_quiet = next(i for i, bar in enumerate(bars) if i and bar.trade_count == 0)
    page = msgspec.json.decode(
        market.klines(book, "1s", limit=3, start_time=bars[first_quiet].open_time),
        type=list[Bar],
    )
    assert page == bars[first_quiet : first_quiet + 3]
    assert page[0].open == bars[first_quiet - 1].close


# -- time parameters ------------------------------------------------------------------------


async def test_time_parameters_select_as_binance_does(spot: Sim) -> None:
    listing = listing_ms()
    now = spot.now_ms()
    # Nothing before the listing: a page asked from earlier starts at it.
    early = await spot.klines("1d", startTime=listing - 50 * DAY_MS, limit=3)
    assert [b.open_time for b in early] == [listing, listing + DAY_MS, listing + 2 * DAY_MS]
    assert await spot.klines("1d", endTime=listing - 1) == []
    assert await spot.klines("1m", startTime=now + 60_000) == []
    # startTime and endTime are inclusive open times; startTime wins over the newest.
    t = now - now % 60_000 - 2 * DAY_MS + 17 * 60_000
    window = await spot.klines("1m", startTime=t, endTime=t + 9 * 60_000, limit=1000)
    assert [b.open_time for b in window] == list(range(t, t + 10 * 60_000, 60_000))
    assert (await spot.klines("1m", startTime=t + 1, limit=1))[0].open_time == t + 60_000
    until = await spot.klines("1m", endTime=t + 30_000, limit=5)
    assert [b.open_time for b in until] == list(range(t - 4 * 60_000, t + 1, 60_000))
    micros = await spot.klines("1m", startTime=t * 1000, endTime=(t + 9 * 60_000) * 1000)
    assert micros == window

    # aggTrades by time range (inclusive) and fromId, within the tape.
    aggs = await spot.aggs(limit=1000)
    t0, t1 = aggs[100].trade_time, aggs[300].trade_time
    ranged = await spot.aggs(startTime=t0, endTime=t1, limit=1000)
    assert [a.agg_trade_id for a in ranged] == [
        a.agg_trade_id for a in aggs if t0 <= a.trade_time <= t1
    ]
    assert [a.agg_trade_id for a in await spot.aggs(startTime=t0, limit=3)] == [
        a.agg_trade_id for a in aggs if a.trade_time >= t0
    ][:3]
    assert [a.agg_trade_id for a in await spot.aggs(endTime=t1, limit=3)] == [
        a.agg_trade_id for a in aggs if a.trade_time <= t1
    ][-3:]
    page = await spot.aggs(fromId=aggs[10].agg_trade_id, limit=5)
    assert page == aggs[10:15]
    # Older than the tape: trades are not served one by one (the klines still are).
    book = spot.book()
    oldest_agg = book.agg_trades[0].agg_id
    assert (await spot.aggs(fromId=1, limit=2))[0].agg_trade_id == oldest_agg
    assert await spot.aggs(startTime=listing, endTime=listing + 3_600_000) == []
    first = await spot.decoded(list[Trade], "historicalTrades", symbol="BTCUSDT", fromId=1,
                               limit=2)  # fmt: skip
    assert first[0].id == book.trades[0].trade_id
    beyond = await spot.raw("historicalTrades", symbol="BTCUSDT", fromId=book.next_trade_id)
    assert beyond == b"[]"


# -- memory ---------------------------------------------------------------------------------


def test_memory_stays_bounded_and_let_go_bars_are_rebuilt() -> None:
    clock = Clock()
    market = Market("binance-spot", ["BTCUSDT"], seed=5, clock=clock)
    book = market.books["BTCUSDT"]
    now = int(START * 1000)
    # Pages all over the past keep only bounded caches.
    for days in range(0, 400, 40):
        market.klines(book, "1m", limit=1000, start_time=now - days * DAY_MS)
        market.klines(book, "1s", limit=1000, start_time=now - days * DAY_MS)
    market.klines(book, "30m", limit=1000)
    market.ticker_24h(book, window_ms=7 * DAY_MS)
    history = book.history
    assert len(history.cache.items) <= _SPLIT_CACHE
    assert len(history._sums) <= _SUM_CACHE
    assert BACKLOG <= len(book.trades) <= 3 * BACKLOG

    # Three hours of live trading: more seconds with trades than the seconds kept.
    while clock.now < START + 3 * 3600:
        clock.now += 0.25
        market.step()
    kept = book.bars[0]
    assert _KEEP_BARS[0] <= len(kept) <= 2 * _KEEP_BARS[0]
    assert len(book.trades) <= 20_000
    assert all(len(bars) <= 2 * keep for bars, keep in zip(book.bars, _KEEP_BARS, strict=True))
    # Seconds let go are rebuilt from their minutes: still contiguous and adding up.
    let_go = kept[0].open_time - 600_000
    minute = let_go - let_go % 60_000
    seconds = msgspec.json.decode(
        market.klines(book, "1s", limit=60, start_time=minute), type=list[Bar]
    )
    (whole,) = msgspec.json.decode(
        market.klines(book, "1m", limit=1, start_time=minute), type=list[Bar]
    )
    assert [b.open_time for b in seconds] == list(range(minute, minute + 60_000, 1000))
    assert held(whole) == combined(seconds)
    assert whole.quote_volume > 0


# -- the client ------------------------------------------------------------------------------


async def test_a_client_gets_a_full_page_right_after_the_start() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=2, rate=0) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url) as client,
    ):  # fmt: skip
        klines = await client.market.klines("btcusdt", "1m", limit=500)
        assert klines.error is None
        assert len(klines.data) == 500
        trades = await client.market.recent_trades("btcusdt", limit=1000)
        assert trades.data is not None
        assert len(trades.data) == 1000
