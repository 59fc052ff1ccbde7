"""The simulator's REST server: every endpoint's status, shape and agreement with the market.

The server runs standalone on loopback and is queried with a plain ``aiohttp.ClientSession``
(never fastmd's client); bodies are decoded with fastmd's REST models.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

import fastmd
from fastmd.core.streams import Venue
from fastmd.sim.limits import SimLimits
from fastmd.sim.market import Market
from fastmd.sim.replay import Recording, ReplayMarket
from fastmd.sim.rest import RestServer

START = 1_700_000_000.0
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_market(venue: Venue, clock: FakeClock, steps: int = 4000, symbols: Any = None) -> Market:
    """A market with a few minutes of trading behind it (the clock moves 50 ms per event)."""
    market = Market(venue, symbols or SYMBOLS, seed=1, clock=clock)
    for _ in range(steps):
        clock.now += 0.05
        market.step()
    return market


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def decode(self, kind: Any) -> Any:
        return msgspec.json.decode(self.body, type=kind, strict=False)

    def error(self) -> tuple[int, str]:
        err = msgspec.json.decode(self.body, type=fastmd.RestErrorBody)
        return err.code, err.msg

    @property
    def weight(self) -> int:
        return int(self.headers["X-MBX-USED-WEIGHT-1M"])


@dataclass
class Harness:
    server: RestServer
    market: Any
    clock: FakeClock
    http: aiohttp.ClientSession
    prefix: str

    async def get(self, path: str, params: Any = None) -> Reply:
        url = path if path.startswith("/") else self.prefix + path
        async with self.http.get(url, params=params) as response:
            return Reply(response.status, response.headers, await response.read())

    async def weight_of(self, path: str, params: Any = None) -> int:
        """The weight one request is charged (the header grows by it)."""
        before = self.server.used_weight("127.0.0.1")
        reply = await self.get(path, params)
        assert reply.weight == self.server.used_weight("127.0.0.1")
        return reply.weight - before


async def _harness(venue: Venue, market: Any, clock: FakeClock) -> AsyncIterator[Harness]:
    server = RestServer(venue=venue, market=market, limits=SimLimits.for_venue(venue), clock=clock)
    port = await server.start("127.0.0.1", 0)
    prefix = "/api/v3/" if venue == "binance-spot" else "/fapi/v1/"
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            yield Harness(server, market, clock, http, prefix)
    finally:
        await server.stop()


@pytest.fixture
async def spot() -> AsyncIterator[Harness]:
    clock = FakeClock()
    async for harness in _harness("binance-spot", make_market("binance-spot", clock), clock):
        yield harness


@pytest.fixture
async def usdm() -> AsyncIterator[Harness]:
    clock = FakeClock()
    async for harness in _harness("binance-usdm", make_market("binance-usdm", clock), clock):
        yield harness


@pytest.fixture
async def wide() -> AsyncIterator[Harness]:
    """A spot market listing 120 symbols (multi-symbol weights)."""
    clock = FakeClock()
    market = make_market(
        "binance-spot", clock, steps=200, symbols=[f"S{i}USDT" for i in range(120)]
    )
    async for harness in _harness("binance-spot", market, clock):
        yield harness


def symbols_param(names: list[str]) -> dict[str, str]:
    return {"symbols": json.dumps(names, separators=(",", ":"))}


# -- general ---------------------------------------------------------------------------------


async def test_ping_time_and_headers(spot: Harness) -> None:
    reply = await spot.get("ping")
    assert (reply.status, reply.body) == (200, b"{}")
    assert reply.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert reply.headers["X-MBX-USED-WEIGHT-1M"] == reply.headers["X-MBX-USED-WEIGHT"] == "1"
    reply = await spot.get("time")
    assert reply.status == 200
    assert reply.decode(fastmd.ServerTime).server_time == spot.market.now_ms()
    assert reply.weight == 2
    assert spot.server.requests == 2


async def test_exchange_info_selections(spot: Harness) -> None:
    info = (await spot.get("exchangeInfo")).decode(fastmd.ExchangeInfo)
    assert [s.symbol for s in info.symbols] == SYMBOLS
    assert info.symbol("btcusdt") is not None
    weight = next(r for r in info.rate_limits if r.rate_limit_type == "REQUEST_WEIGHT")
    assert (weight.interval, weight.interval_num, weight.limit) == ("MINUTE", 1, 6000)
    one = (await spot.get("exchangeInfo", {"symbol": "ETHUSDT"})).decode(fastmd.ExchangeInfo)
    assert [s.symbol for s in one.symbols] == ["ETHUSDT"]
    both = await spot.get("exchangeInfo", symbols_param(["ETHUSDT", "BTCUSDT"]))
    assert [s.symbol for s in both.decode(fastmd.ExchangeInfo).symbols] == ["ETHUSDT", "BTCUSDT"]
    assert (await spot.get("exchangeInfo", {"symbol": "XRPUSDT"})).error() == (
        -1121,
        "Invalid symbol.",
    )
    assert await spot.weight_of("exchangeInfo") == 20


async def test_unknown_paths_and_wrong_venue_prefix(spot: Harness, usdm: Harness) -> None:
    for path in ("/fapi/v1/ping", "/api/v3/nothing", "/api/v1/ping", "/"):
        assert (await spot.get(path)).status == 404
    reply = await usdm.get("/api/v3/ping")
    assert reply.status == 404
    assert reply.error() == (-5000, "Path /api/v3/ping, Method GET is invalid")
    assert "X-MBX-USED-WEIGHT-1M" in reply.headers
    async with spot.http.post("/api/v3/ping") as response:
        assert response.status == 405


# -- depth -----------------------------------------------------------------------------------


async def test_depth_matches_the_book(spot: Harness) -> None:
    reply = await spot.get("depth", {"symbol": "BTCUSDT", "limit": "20"})
    assert reply.status == 200
    depth = reply.decode(fastmd.DepthSnapshot[Decimal])
    book = spot.market.book("BTCUSDT")
    assert depth.last_update_id == book.update_id
    assert depth.event_time is None  # spot: no E/T
    assert depth.transaction_time is None
    assert len(depth.bids) == len(depth.asks) == 20
    assert [p for p, _ in depth.bids] == sorted((p for p, _ in depth.bids), reverse=True)
    assert [p for p, _ in depth.asks] == sorted(p for p, _ in depth.asks)
    assert depth.bids[0][0] < depth.asks[0][0]
    assert depth.bids[0][0] == Decimal(book.price(book.best_bid()))
    default = (await spot.get("depth", {"symbol": "BTCUSDT"})).decode(fastmd.DepthSnapshot[float])
    assert len(default.bids) == 100
    # After more order flow the snapshot id follows the book.
    for _ in range(50):
        spot.market.step()
    again = (await spot.get("depth", {"symbol": "BTCUSDT", "limit": "5"})).decode(
        fastmd.DepthSnapshot[float]
    )
    assert again.last_update_id == book.update_id > depth.last_update_id


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(None, 5), (1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250),
     (5000, 250), (6000, 250)],
)  # fmt: skip
async def test_spot_depth_weights(spot: Harness, limit: int | None, weight: int) -> None:
    params = {"symbol": "ETHUSDT"} | ({"limit": str(limit)} if limit else {})
    assert await spot.weight_of("depth", params) == weight


async def test_spot_depth_limit_above_5000_clamps(spot: Harness) -> None:
    reply = await spot.get("depth", {"symbol": "ETHUSDT", "limit": "100000"})
    assert reply.status == 200
    depth = reply.decode(fastmd.DepthSnapshot[float])
    book = spot.market.book("ETHUSDT")
    assert len(depth.bids) == len(book.bid_prices)  # the whole (shallow) book
    assert (await spot.get("depth", {"symbol": "ETHUSDT", "limit": "0"})).error()[0] == -1130


# -- trades ----------------------------------------------------------------------------------


async def test_recent_trades_are_the_latest_and_contiguous(spot: Harness) -> None:
    reply = await spot.get("trades", {"symbol": "BTCUSDT", "limit": "30"})
    trades = reply.decode(list[fastmd.RestTrade[Decimal]])
    book = spot.market.book("BTCUSDT")
    assert len(trades) == 30
    ids = [t.id for t in trades]
    assert ids == list(range(ids[0], ids[0] + 30))
    assert ids[-1] == book.trades[-1].trade_id == book.next_trade_id - 1
    assert all(t.quote_quantity == t.price * t.quantity for t in trades)
    assert all(t.is_best_match for t in trades)
    default = (await spot.get("trades", {"symbol": "BTCUSDT"})).decode(
        list[fastmd.RestTrade[float]]
    )
    assert len(default) == 500
    assert await spot.weight_of("trades", {"symbol": "BTCUSDT"}) == 25
    assert (await spot.get("trades", {"symbol": "BTCUSDT", "limit": "1001"})).error() == (
        -1130,
        "Data sent for parameter 'limit' is not valid.",
    )


async def test_historical_trades_from_id(spot: Harness) -> None:
    book = spot.market.book("BTCUSDT")
    first = book.trades[-200].trade_id
    reply = await spot.get("historicalTrades", {"symbol": "BTCUSDT", "fromId": str(first),
                                                "limit": "50"})  # fmt: skip
    trades = reply.decode(list[fastmd.RestTrade[float]])
    assert [t.id for t in trades] == list(range(first, first + 50))
    tail = await spot.get("historicalTrades", {"symbol": "BTCUSDT", "fromId": str(first)})
    assert [t.id for t in tail.decode(list[fastmd.RestTrade[float]])] == list(
        range(first, book.next_trade_id)
    )
    latest = await spot.get("historicalTrades", {"symbol": "BTCUSDT", "limit": "3"})
    assert [t.id for t in latest.decode(list[fastmd.RestTrade[float]])][
        -1
    ] == book.next_trade_id - 1
    future = await spot.get("historicalTrades", {"symbol": "BTCUSDT",
                                                 "fromId": str(book.next_trade_id)})  # fmt: skip
    assert future.body == b"[]"
    assert await spot.weight_of("historicalTrades", {"symbol": "BTCUSDT"}) == 25
    assert (await spot.get("historicalTrades", {"symbol": "BTCUSDT", "fromId": "x"})).error()[
        0
    ] == -1100


async def test_agg_trades_selection(spot: Harness) -> None:
    book = spot.market.book("ETHUSDT")
    start_id = book.agg_trades[-100].agg_id
    reply = await spot.get("aggTrades", {"symbol": "ETHUSDT", "fromId": str(start_id),
                                         "limit": "40"})  # fmt: skip
    aggs = reply.decode(list[fastmd.RestAggTrade[Decimal]])
    assert [a.agg_trade_id for a in aggs] == list(range(start_id, start_id + 40))
    for before, after in itertools.pairwise(aggs):
        assert after.first_trade_id == before.last_trade_id + 1  # f/l ranges tile the trades
    assert b'"M":true' in reply.body
    newest = (await spot.get("aggTrades", {"symbol": "ETHUSDT"})).decode(
        list[fastmd.RestAggTrade[float]]
    )
    assert len(newest) == 500
    assert newest[-1].agg_trade_id == book.next_agg_id - 1
    # startTime/endTime are inclusive.
    t0, t1 = book.agg_trades[-60].time, book.agg_trades[-20].time
    ranged = (await spot.get("aggTrades", {"symbol": "ETHUSDT", "startTime": str(t0),
                                           "endTime": str(t1)})).decode(
        list[fastmd.RestAggTrade[float]]
    )  # fmt: skip
    expected = [a.agg_id for a in book.agg_trades if t0 <= a.time <= t1]
    assert [a.agg_trade_id for a in ranged] == expected
    assert ranged[0].trade_time == t0
    assert ranged[-1].trade_time == t1
    micros = {"symbol": "ETHUSDT", "startTime": f"{t0}000", "endTime": f"{t1}999"}
    assert (await spot.get("aggTrades", micros)).decode(list[fastmd.RestAggTrade[float]]) == ranged
    assert await spot.weight_of("aggTrades", {"symbol": "ETHUSDT"}) == 4


async def test_agg_trades_errors(spot: Harness) -> None:
    too_long = {"symbol": "ETHUSDT", "startTime": "1700000000000", "endTime": "1700003600001"}
    assert (await spot.get("aggTrades", too_long)).error() == (
        -1127,
        "More than 1 hours between startTime and endTime.",
    )
    one_hour = too_long | {"endTime": "1700003600000"}
    assert (await spot.get("aggTrades", one_hour)).status == 200
    combo = {"symbol": "ETHUSDT", "fromId": "1", "startTime": "1700000000000"}
    assert (await spot.get("aggTrades", combo)).error()[0] == -1128


# -- klines ----------------------------------------------------------------------------------


async def test_klines_match_the_trades(spot: Harness) -> None:
    book = spot.market.book("BTCUSDT")
    trades = (await spot.get("trades", {"symbol": "BTCUSDT", "limit": "1000"})).decode(
        list[fastmd.RestTrade[Decimal]]
    )
    reply = await spot.get("klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "1000"})
    bars = reply.decode(list[fastmd.KlineBar[Decimal]])
    assert bars
    assert all(b.close_time == b.open_time + 60_000 - 1 for b in bars)
    assert [b.open_time for b in bars] == sorted(b.open_time for b in bars)
    grouped: dict[int, list[Any]] = defaultdict(list)
    for t in trades:
        grouped[t.time - t.time % 60_000].append(t)
    first_full = trades[0].time - trades[0].time % 60_000 + 60_000  # earlier bars: partly seen
    checked = 0
    for bar in bars:
        if bar.open_time < first_full:
            continue
        group = grouped[bar.open_time]
        assert (bar.open, bar.close) == (group[0].price, group[-1].price)
        assert bar.high == max(t.price for t in group)
        assert bar.low == min(t.price for t in group)
        assert bar.volume == sum(t.quantity for t in group)
        assert bar.quote_volume == sum(t.quote_quantity for t in group)
        assert bar.trade_count == len(group)
        assert bar.taker_buy_volume == sum(t.quantity for t in group if not t.is_buyer_maker)
        checked += 1
    assert checked >= 1
    assert bars[-1].close == Decimal(book.price(book.last_price))
    ui = await spot.get("uiKlines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "1000"})
    assert ui.body == reply.body
    assert await spot.weight_of("klines", {"symbol": "BTCUSDT", "interval": "1m"}) == 2
    assert await spot.weight_of("uiKlines", {"symbol": "BTCUSDT", "interval": "1m"}) == 2


async def test_klines_ranges_and_limits(spot: Harness) -> None:
    base = {"symbol": "BTCUSDT", "interval": "1m"}
    bars = (await spot.get("klines", base)).decode(list[fastmd.KlineBar[float]])
    assert len(bars) >= 3
    two = (await spot.get("klines", base | {"limit": "2"})).decode(list[fastmd.KlineBar[float]])
    assert two == bars[-2:]
    start = bars[1].open_time
    since = (await spot.get("klines", base | {"startTime": str(start), "limit": "1"})).decode(
        list[fastmd.KlineBar[float]]
    )
    assert since == [bars[1]]
    until = (await spot.get("klines", base | {"endTime": str(start)})).decode(
        list[fastmd.KlineBar[float]]
    )
    assert len(until) == 500  # the newest 500 up to endTime: the past has them
    assert until[-2:] == bars[:2]
    hourly = (await spot.get("klines", base | {"interval": "1h"})).decode(
        list[fastmd.KlineBar[float]]
    )
    assert all(b.close_time - b.open_time == 3_600_000 - 1 for b in hourly)
    assert (await spot.get("klines", base | {"limit": "1000"})).status == 200
    assert (await spot.get("klines", base | {"limit": "1001"})).error() == (
        -1130,
        "Data sent for parameter 'limit' is not valid.",
    )
    assert (await spot.get("klines", base | {"interval": "2m"})).error() == (
        -1120,
        "Invalid interval.",
    )
    assert (await spot.get("klines", {"symbol": "BTCUSDT"})).error() == (
        -1102,
        "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
    )
    assert (await spot.get("klines", base | {"interval": "1s"})).status == 200


async def test_klines_time_zone(spot: Harness) -> None:
    base = {"symbol": "BTCUSDT", "interval": "1m"}
    utc = await spot.get("klines", base)
    # Whole-hour offsets leave 1m bars where they are: same answer as UTC.
    assert (await spot.get("klines", base | {"timeZone": "8"})).body == utc.body
    assert (await spot.get("klines", base | {"timeZone": "-1:00"})).body == utc.body
    assert (await spot.get("klines", base | {"timeZone": "0"})).status == 200
    assert (await spot.get("klines", base | {"timeZone": "15"})).error()[0] == -1130
    assert (await spot.get("klines", base | {"timeZone": "x"})).error()[0] == -1130


# -- tickers ---------------------------------------------------------------------------------


async def test_avg_price(spot: Harness) -> None:
    reply = await spot.get("avgPrice", {"symbol": "BTCUSDT"})
    avg = reply.decode(fastmd.RestAvgPrice[Decimal])
    assert avg.mins == 5
    book = spot.market.book("BTCUSDT")
    assert abs(avg.price - Decimal(book.price(book.last_price))) < 10
    assert avg.close_time == book.trades[-1].time
    assert await spot.weight_of("avgPrice", {"symbol": "BTCUSDT"}) == 2


async def test_ticker_24hr_shapes(spot: Harness) -> None:
    reply = await spot.get("ticker/24hr", {"symbol": "BTCUSDT"})
    ticker = reply.decode(fastmd.RestTicker[Decimal])
    book = spot.market.book("BTCUSDT")
    assert ticker.symbol == "BTCUSDT"
    assert ticker.last_price == Decimal(book.price(book.last_price))
    assert ticker.last_id == book.trades[-1].trade_id
    assert ticker.count == ticker.last_id - ticker.first_id + 1
    assert ticker.bid_price == Decimal(book.price(book.best_bid()))
    assert ticker.price_change == ticker.last_price - ticker.open_price
    mini = (await spot.get("ticker/24hr", {"symbol": "BTCUSDT", "type": "MINI"})).decode(
        fastmd.RestTicker[Decimal]
    )
    assert mini.price_change is None
    assert mini.bid_price is None
    assert mini.last_price == ticker.last_price
    every = (await spot.get("ticker/24hr")).decode(list[fastmd.RestTicker[float]])
    assert [t.symbol for t in every] == SYMBOLS
    picked = await spot.get("ticker/24hr", symbols_param(["ETHUSDT"]) | {"type": "FULL"})
    assert [t.symbol for t in picked.decode(list[fastmd.RestTicker[float]])] == ["ETHUSDT"]
    assert (await spot.get("ticker/24hr", {"type": "FOO"})).error() == (
        -1139,
        "Invalid ticker type.",
    )


async def test_ticker_24hr_weights(wide: Harness) -> None:
    names = [f"S{i}USDT" for i in range(120)]
    assert await wide.weight_of("ticker/24hr", {"symbol": "S1USDT"}) == 2
    assert await wide.weight_of("ticker/24hr") == 80
    for count, weight in ((1, 2), (20, 2), (21, 40), (100, 40), (101, 80)):
        before = wide.server.used_weight("127.0.0.1")
        reply = await wide.get("ticker/24hr", symbols_param(names[:count]))
        assert reply.status == 200
        assert len(reply.decode(list[fastmd.RestTicker[float]])) == count
        assert reply.weight - before == weight, count


async def test_ticker_price_and_book_ticker(spot: Harness) -> None:
    book = spot.market.book("ETHUSDT")
    price = (await spot.get("ticker/price", {"symbol": "ETHUSDT"})).decode(
        fastmd.TickerPrice[Decimal]
    )
    assert price.price == Decimal(book.price(book.last_price))
    prices = (await spot.get("ticker/price")).decode(list[fastmd.TickerPrice[float]])
    assert [p.symbol for p in prices] == SYMBOLS
    top = (await spot.get("ticker/bookTicker", {"symbol": "ETHUSDT"})).decode(
        fastmd.RestBookTicker[Decimal]
    )
    bid, bid_qty, ask, ask_qty = book.top()
    assert (top.bid_price, top.ask_price) == (Decimal(book.price(bid)), Decimal(book.price(ask)))
    assert (top.bid_qty, top.ask_qty) == (Decimal(book.qty(bid_qty)), Decimal(book.qty(ask_qty)))
    tops = await spot.get("ticker/bookTicker", symbols_param(["ETHUSDT", "BTCUSDT"]))
    assert [t.symbol for t in tops.decode(list[fastmd.RestBookTicker[float]])] == [
        "ETHUSDT",
        "BTCUSDT",
    ]
    for path in ("ticker/price", "ticker/bookTicker"):
        assert await spot.weight_of(path, {"symbol": "BTCUSDT"}) == 2
        assert await spot.weight_of(path) == 4
        assert await spot.weight_of(path, symbols_param(SYMBOLS)) == 4


async def test_rolling_window_ticker(spot: Harness) -> None:
    now = spot.market.now_ms()
    reply = await spot.get("ticker", {"symbol": "BTCUSDT", "windowSize": "1m"})
    ticker = reply.decode(fastmd.RestTicker[Decimal])
    assert ticker.close_time == now
    assert ticker.open_time == now - now % 60_000 - 60_000  # opens on a whole minute
    assert ticker.prev_close_price is None
    assert ticker.bid_price is None
    assert ticker.price_change is not None
    day = (await spot.get("ticker", {"symbol": "BTCUSDT"})).decode(fastmd.RestTicker[Decimal])
    assert day.count >= ticker.count
    mini = await spot.get("ticker", symbols_param(SYMBOLS) | {"windowSize": "2h", "type": "MINI"})
    items = mini.decode(list[fastmd.RestTicker[float]])
    assert [t.symbol for t in items] == SYMBOLS
    assert items[0].price_change is None
    for size in ("1m", "59m", "1h", "23h", "1d", "7d"):
        assert (await spot.get("ticker", {"symbol": "BTCUSDT", "windowSize": size})).status == 200
    for size in ("0m", "60m", "24h", "8d", "1w", "01m", "m", ""):
        reply = await spot.get("ticker", {"symbol": "BTCUSDT", "windowSize": size})
        assert reply.status == 400, size
    assert (await spot.get("ticker")).error() == (
        -1102,
        "Param 'symbol' or 'symbols' must be sent, but both were empty/null!",
    )
    assert await spot.weight_of("ticker", {"symbol": "BTCUSDT"}) == 4
    assert await spot.weight_of("ticker", symbols_param(SYMBOLS)) == 8


async def test_rolling_window_weight_cap(wide: Harness) -> None:
    names = [f"S{i}USDT" for i in range(120)]
    assert await wide.weight_of("ticker", symbols_param(names[:50])) == 200
    assert await wide.weight_of("ticker", symbols_param(names[:51])) == 200
    reply = await wide.get("ticker", symbols_param(names[:101]))
    assert reply.error()[0] == -1101


# -- parameter errors ------------------------------------------------------------------------


async def test_symbols_parameter_forms(spot: Harness) -> None:
    # URL-encoded (aiohttp quotes params) and raw brackets and quotes in the query.
    encoded = await spot.get("ticker/price", symbols_param(SYMBOLS))
    raw = await spot.get('/api/v3/ticker/price?symbols=["BTCUSDT","ETHUSDT"]')
    percent = await spot.get("/api/v3/ticker/price?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D")
    assert encoded.status == raw.status == percent.status == 200
    assert encoded.body == raw.body == percent.body


@pytest.mark.parametrize(
    "value",
    ['["BTCUSDT", "ETHUSDT"]', '["btcusdt"]', "BTCUSDT", "[BTCUSDT]", '["BTCUSDT",]', '{"a":1}'],
)
async def test_malformed_symbols(spot: Harness, value: str) -> None:
    code, msg = (await spot.get("ticker/price", {"symbols": value})).error()
    assert code == -1100
    assert msg.startswith("Illegal characters found in parameter 'symbols'; legal range is")


async def test_symbol_parameter_errors(spot: Harness) -> None:
    assert (await spot.get("depth")).error() == (
        -1102,
        "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
    )
    assert (await spot.get("depth", {"symbol": ""})).error()[0] == -1102
    assert (await spot.get("depth", {"symbol": "XRPUSDT"})).error() == (-1121, "Invalid symbol.")
    code, msg = (await spot.get("depth", {"symbol": "btcusdt"})).error()
    assert code == -1100
    assert "parameter 'symbol'" in msg
    both = {"symbol": "BTCUSDT"} | symbols_param(SYMBOLS)
    code, msg = (await spot.get("ticker/price", both)).error()
    assert code == -1128
    assert "'symbol' and 'symbols' cannot both be sent" in msg
    dup = symbols_param(["BTCUSDT", "ETHUSDT", "BTCUSDT"])
    assert (await spot.get("ticker/24hr", dup)).error() == (
        -1151,
        "Symbol is present multiple times in the list.",
    )
    assert (await spot.get("ticker/price", symbols_param(["BTCUSDT", "XRPUSDT"]))).error() == (
        -1121,
        "Invalid symbol.",
    )


async def test_numeric_duplicate_and_unknown_parameters(spot: Harness) -> None:
    code, msg = (await spot.get("depth", {"symbol": "BTCUSDT", "limit": "ten"})).error()
    assert code == -1100
    assert msg == "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
    assert (await spot.get("depth", {"symbol": "BTCUSDT", "limit": "-5"})).error()[0] == -1100
    assert (await spot.get("/api/v3/depth?symbol=BTCUSDT&symbol=ETHUSDT")).error() == (
        -1101,
        "Duplicate values for a parameter detected.",
    )
    assert (await spot.get("depth", {"symbol": "BTCUSDT", "foo": "1"})).error() == (
        -1104,
        "Not all sent parameters were read; read '1' parameter(s) but was sent '2'.",
    )
    # A rejected request still costs its weight, as on Binance.
    assert await spot.weight_of("depth", {"symbol": "BTCUSDT", "limit": "ten"}) == 5


async def test_symbol_status(spot: Harness) -> None:
    trading = await spot.get("ticker/price", {"symbolStatus": "TRADING"})
    assert len(trading.decode(list[fastmd.TickerPrice[float]])) == 2
    halted = await spot.get("ticker/price", {"symbolStatus": "HALT"})
    assert halted.body == b"[]"
    assert (await spot.get("ticker/price", {"symbolStatus": "NOPE"})).error() == (
        -1122,
        "Invalid symbolStatus.",
    )
    one = await spot.get("depth", {"symbol": "BTCUSDT", "symbolStatus": "BREAK"})
    assert one.error()[0] == -1220
    info = await spot.get("exchangeInfo", {"symbolStatus": "HALT"})
    assert info.decode(fastmd.ExchangeInfo).symbols == []


# -- futures ---------------------------------------------------------------------------------


async def test_futures_depth(usdm: Harness) -> None:
    book = usdm.market.book("BTCUSDT")
    reply = await usdm.get("depth", {"symbol": "BTCUSDT", "limit": "10"})
    depth = reply.decode(fastmd.DepthSnapshot[Decimal])
    assert depth.last_update_id == book.update_id
    assert depth.event_time == depth.transaction_time == usdm.market.now_ms()
    assert len(depth.bids) == len(depth.asks) == 10
    assert b'"E":' in reply.body
    full = (await usdm.get("depth", {"symbol": "BTCUSDT"})).decode(fastmd.DepthSnapshot[float])
    assert len(full.bids) == len(book.bid_prices)  # default 500 > the simulated depth
    assert (await usdm.get("depth", {"symbol": "BTCUSDT", "limit": "7"})).error() == (
        -4021,
        "7 is not valid depth limit",
    )


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(5, 2), (10, 2), (20, 2), (50, 2), (100, 5), (500, 10), (None, 10), (1000, 20)],
)
async def test_futures_depth_weights(usdm: Harness, limit: int | None, weight: int) -> None:
    params = {"symbol": "ETHUSDT"} | ({"limit": str(limit)} if limit else {})
    assert await usdm.weight_of("depth", params) == weight


async def test_futures_trades_and_klines(usdm: Harness) -> None:
    book = usdm.market.book("BTCUSDT")
    trades = (await usdm.get("trades", {"symbol": "BTCUSDT", "limit": "5"})).decode(
        list[fastmd.RestTrade[float]]
    )
    assert [t.id for t in trades][-1] == book.next_trade_id - 1
    aggs = await usdm.get("aggTrades", {"symbol": "BTCUSDT", "limit": "5"})
    assert len(aggs.decode(list[fastmd.RestAggTrade[float]])) == 5
    assert b'"M"' not in aggs.body
    base = {"symbol": "BTCUSDT", "interval": "1m"}
    assert (await usdm.get("klines", base | {"limit": "1500"})).status == 200
    assert (await usdm.get("klines", base | {"limit": "1501"})).error()[0] == -1130
    assert (await usdm.get("klines", base | {"interval": "1s"})).error() == (
        -1120,
        "Invalid interval.",
    )
    bars = (await usdm.get("klines", base)).decode(list[fastmd.KlineBar[float]])
    assert all(b.close_time == b.open_time + 59_999 for b in bars)
    assert await usdm.weight_of("trades", {"symbol": "BTCUSDT"}) == 5
    assert await usdm.weight_of("aggTrades", {"symbol": "BTCUSDT"}) == 20
    for limit, weight in ((99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10)):
        assert await usdm.weight_of("klines", base | {"limit": str(limit)}) == weight
    # Futures looks symbols up in any case and ignores parameters it does not read.
    assert (await usdm.get("depth", {"symbol": "btcusdt", "limit": "5", "x": "1"})).status == 200


async def test_futures_tickers_and_premium_index(usdm: Harness) -> None:
    one = (await usdm.get("ticker/24hr", {"symbol": "ETHUSDT"})).decode(fastmd.RestTicker[float])
    assert one.symbol == "ETHUSDT"
    assert len((await usdm.get("ticker/24hr")).decode(list[fastmd.RestTicker[float]])) == 2
    price = (await usdm.get("ticker/price", {"symbol": "ETHUSDT"})).decode(
        fastmd.TickerPrice[float]
    )
    assert price.symbol == "ETHUSDT"
    top = await usdm.get("ticker/bookTicker", {"symbol": "ETHUSDT"})
    assert top.decode(fastmd.RestBookTicker[float]).bid_price > 0
    premium = (await usdm.get("premiumIndex", {"symbol": "BTCUSDT"})).decode(
        fastmd.PremiumIndex[Decimal]
    )
    assert premium.symbol == "BTCUSDT"
    assert premium.time == usdm.market.now_ms()
    assert premium.next_funding_time % (8 * 3_600_000) == 0
    every = (await usdm.get("premiumIndex")).decode(list[fastmd.PremiumIndex[float]])
    assert [p.symbol for p in every] == SYMBOLS
    info = (await usdm.get("exchangeInfo")).decode(fastmd.ExchangeInfo)
    assert info.symbols[0].contract_type == "PERPETUAL"
    expected = {
        ("ticker/24hr", True): 1, ("ticker/24hr", False): 40, ("ticker/price", True): 1,
        ("ticker/price", False): 2, ("ticker/bookTicker", True): 2,
        ("ticker/bookTicker", False): 5, ("premiumIndex", True): 1, ("premiumIndex", False): 10,
    }  # fmt: skip
    for (path, with_symbol), weight in expected.items():
        params = {"symbol": "BTCUSDT"} if with_symbol else None
        assert await usdm.weight_of(path, params) == weight, path
    for path in ("ping", "time", "exchangeInfo"):
        assert await usdm.weight_of(path) == 1


# -- replay ----------------------------------------------------------------------------------


async def test_replay_market_serves_depth_and_refuses_the_rest(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text('{"venue": "binance-spot"}')
    (tmp_path / "stream.jsonl").write_text("")
    (tmp_path / "snapshots").mkdir()
    snapshot = {
        "lastUpdateId": 42,
        "bids": [["1.0", "2.0"], ["0.9", "1.0"]],
        "asks": [["1.1", "3"]],
    }
    (tmp_path / "snapshots" / "BTCUSDT.json").write_text(
        json.dumps({"ts": 1.0, "url": "x", "body": snapshot})
    )
    clock = FakeClock()
    market = ReplayMarket(Recording(tmp_path), lambda: clock() * 1000)
    async for harness in _harness("binance-spot", market, clock):
        depth = await harness.get("depth", {"symbol": "BTCUSDT", "limit": "1"})
        snap = depth.decode(fastmd.DepthSnapshot[float])
        assert (snap.last_update_id, snap.bids, snap.asks) == (42, [(1.0, 2.0)], [(1.1, 3.0)])
        info = (await harness.get("exchangeInfo")).decode(fastmd.ExchangeInfo)
        assert [s.symbol for s in info.symbols] == ["BTCUSDT"]
        for path in ("trades", "aggTrades", "avgPrice", "ticker/24hr", "ticker/price"):
            reply = await harness.get(path, {"symbol": "BTCUSDT"})
            assert reply.status == 400, path
            assert reply.error()[0] == -1000
        assert (await harness.get("depth", {"symbol": "ETHUSDT"})).error()[0] == -1121


async def test_a_failing_view_answers_500_json(
    spot: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr(spot.market, "recent_trades", broken)
    reply = await spot.get("trades", {"symbol": "BTCUSDT"})
    assert reply.status == 500
    assert reply.error() == (-1000, "An unknown error occurred while processing the request.")
    assert "boom" in caplog.text
    assert (await spot.get("ping")).status == 200
