"""fastmd.aio.market.MarketData against the simulator: REST then cache then REST after the TTL
(on an injected clock), one HTTP call for concurrent identical requests, errors in the Result
(never raised), API misuse raised, live WebSocket values for price and ticker, and the price and
kline subscriptions delivering Results. Loopback only; the market moves when told to (rate=0)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from client_helpers import quiet, until

import fastmd
from fastmd import (
    Backoff,
    DepthSnapshot,
    FastmdTimeoutError,
    InvalidState,
    KlineBar,
    KlineData,
    RestError,
    RestTicker,
    RestTrade,
    StreamNameError,
    UnknownSymbolError,
)
from fastmd.aio.market import CacheTTLs, MarketData, Result
from fastmd.core.streams import Venue
from fastmd.sim import Exchange

FAST = Backoff(initial_delay=0.02, max_delay=0.1, factor=2.0, jitter=0.0, max_attempts=None)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    ex: Exchange
    client: fastmd.Client
    md: MarketData
    clock: Clock

    @property
    def requests(self) -> int:
        """REST requests the simulator received."""
        return self.ex.rest.requests

    def book(self, symbol: str = "BTCUSDT") -> Any:
        return self.ex.market.books[symbol]

    def last_price(self, symbol: str = "BTCUSDT") -> float:
        book = self.book(symbol)
        return float(book.price(book.last_price))


async def open_env(venue: Venue = "binance-spot", **options: Any) -> Env:
    ex = Exchange(venue, ["BTCUSDT", "ETHUSDT"], seed=11, rate=0)
    await ex.start()
    ex.advance(200)
    client = fastmd.Client(
        venue, ws_url=ex.ws_url, rest_url=ex.rest_url, error_reporter=quiet, backoff=FAST
    )
    await client.start()
    clock = Clock()
    return Env(ex, client, MarketData(client, clock=clock, **options), clock)


async def close_env(env: Env) -> None:
    env.md.close()
    await env.client.close()
    await env.ex.stop()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    opened = await open_env()
    try:
        yield opened
    finally:
        await close_env(opened)


@pytest.fixture
async def futures_env() -> AsyncIterator[Env]:
    opened = await open_env("binance-usdm")
    try:
        yield opened
    finally:
        await close_env(opened)


async def trade_until(env: Env, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Move the market until ``predicate`` holds (events reach the client a moment later)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        env.ex.advance(10)
        await asyncio.sleep(0.02)


def wall_ms() -> int:
    return int(time.time() * 1000)


# -- REST, cache, TTL -------------------------------------------------------------------------

CALLS: list[tuple[str, tuple[Any, ...], float]] = [
    ("price", ("btcusdt",), 1.0),
    ("ticker_24h", ("btcusdt",), 2.0),
    ("klines", ("btcusdt", "1m"), 5.0),
    ("order_book_snapshot", ("btcusdt",), 1.0),
    ("recent_trades", ("btcusdt",), 1.0),
]


@pytest.mark.parametrize(("method", "args", "ttl"), CALLS, ids=[c[0] for c in CALLS])
async def test_rest_then_cache_then_rest_after_the_ttl(
    env: Env, method: str, args: tuple[Any, ...], ttl: float
) -> None:
    call = getattr(env.md, method)
    sent = env.requests
    before = wall_ms()
    first = await call(*args)
    assert isinstance(first, Result)
    assert (first.source, first.error, first.ok) == ("rest", None, True)
    assert before <= first.ts <= wall_ms()
    assert env.requests == sent + 1

    second = await call(*args)
    assert (second.source, second.error) == ("cache", None)
    assert second.data is first.data
    assert second.ts == first.ts  # the answer's time: its age shows
    env.clock.advance(ttl - 0.01)
    assert (await call(*args)).source == "cache"
    assert env.requests == sent + 1

    env.clock.advance(0.01)  # the TTL is over
    third = await call(*args)
    assert (third.source, third.error) == ("rest", None)
    assert third.ts >= first.ts
    assert env.requests == sent + 2
    assert (await call(*args)).source == "cache"


async def test_values_and_types(env: Env) -> None:
    md, book = env.md, env.book()
    price = await md.price("BTCUSDT")
    assert price.data == env.last_price()

    ticker = await md.ticker_24h("btcusdt")
    assert isinstance(ticker.data, RestTicker)
    assert (ticker.data.symbol, ticker.data.last_price) == ("BTCUSDT", env.last_price())

    klines = await md.klines("btcusdt", "1m", limit=3)
    assert klines.data
    assert all(isinstance(k, KlineBar) for k in klines.data)
    assert klines.data[-1].close == env.last_price()

    depth = await md.order_book_snapshot("btcusdt", limit=5)
    assert isinstance(depth.data, DepthSnapshot)
    assert depth.data.last_update_id == book.update_id
    assert len(depth.data.bids) == len(depth.data.asks) == 5

    trades = await md.recent_trades("btcusdt", limit=7)
    assert trades.data
    assert all(isinstance(t, RestTrade) for t in trades.data)
    assert [t.id for t in trades.data] == [t.trade_id for t in list(book.trades)[-7:]]


async def test_cache_is_per_arguments(env: Env) -> None:
    md = env.md
    sent = env.requests
    assert (await md.order_book_snapshot("btcusdt", limit=5)).source == "rest"
    assert (await md.order_book_snapshot("btcusdt", limit=10)).source == "rest"
    assert (await md.order_book_snapshot("ethusdt", limit=5)).source == "rest"
    assert (await md.order_book_snapshot("BTCUSDT", limit=5)).source == "cache"  # any case
    assert (await md.klines("btcusdt", "1m", limit=5)).source == "rest"
    assert (await md.klines("btcusdt", "5m", limit=5)).source == "rest"
    assert (await md.klines("btcusdt", "1m", limit=5)).source == "cache"
    assert env.requests == sent + 5
    md.clear_cache()
    assert (await md.klines("btcusdt", "1m", limit=5)).source == "rest"


async def test_ttls_are_configurable_and_zero_disables(env: Env) -> None:
    md = MarketData(env.client, ttls=CacheTTLs(price=0, klines=30.0), clock=env.clock)
    try:
        assert (await md.price("btcusdt")).source == "rest"
        assert (await md.price("btcusdt")).source == "rest"  # not cached
        assert (await md.klines("btcusdt", "1m")).source == "rest"
        env.clock.advance(29.9)
        assert (await md.klines("btcusdt", "1m")).source == "cache"
        env.clock.advance(0.1)
        assert (await md.klines("btcusdt", "1m")).source == "rest"
    finally:
        md.close()
    with pytest.raises(ValueError, match="price"):
        CacheTTLs(price=-1)


async def test_concurrent_identical_calls_share_one_request(env: Env) -> None:
    env.ex.faults.rest_delay(0.1)  # keep the request in flight a while
    sent = env.requests
    results = await asyncio.gather(*(env.md.ticker_24h("btcusdt") for _ in range(20)))
    assert env.requests == sent + 1
    assert {r.source for r in results} == {"rest"}
    assert all(r.data is results[0].data for r in results)
    assert (await env.md.ticker_24h("btcusdt")).source == "cache"

    env.clock.advance(5)
    sent = env.requests
    mixed = await asyncio.gather(
        *(env.md.recent_trades("btcusdt", limit=5) for _ in range(5)),
        *(env.md.recent_trades("btcusdt", limit=6) for _ in range(5)),
    )
    assert env.requests == sent + 2
    assert [len(r.data or []) for r in mixed] == [5] * 5 + [6] * 5


async def test_a_caller_that_gives_up_leaves_the_request_to_the_others(env: Env) -> None:
    env.ex.faults.rest_delay(0.2)
    sent = env.requests
    impatient = asyncio.ensure_future(env.md.price("btcusdt"))
    patient = asyncio.ensure_future(env.md.price("btcusdt"))
    await asyncio.sleep(0.05)
    impatient.cancel()
    result = await patient
    assert (result.source, result.data) == ("rest", env.last_price())
    assert impatient.cancelled()
    assert env.requests == sent + 1


# -- errors -----------------------------------------------------------------------------------


async def test_errors_arrive_in_the_result(env: Env) -> None:
    md = env.md
    sent = env.requests
    unknown = await md.price("NOSUCHUSDT")
    assert (unknown.data, unknown.source, unknown.ok) == (None, "rest", False)
    assert isinstance(unknown.error, RestError)
    assert (unknown.error.status, unknown.error.code) == (400, -1121)
    assert (await md.price("NOSUCHUSDT")).error is not None  # failures are not cached
    assert env.requests == sent + 2
    for result in (
        await md.ticker_24h("nosuchusdt"),
        await md.klines("nosuchusdt", "1m"),
        await md.order_book_snapshot("nosuchusdt"),
        await md.recent_trades("nosuchusdt"),
    ):
        assert isinstance(result.error, RestError)
        assert result.error.code == -1121
    over = await md.klines("btcusdt", "1m", limit=5000)  # the exchange decides the maximum
    assert isinstance(over.error, RestError)
    assert over.error.code == -1130

    env.ex.faults.rest_error(500, count=1)
    failed = await md.order_book_snapshot("btcusdt")
    assert isinstance(failed.error, RestError)
    assert (failed.error.status, failed.data, failed.source) == (500, None, "rest")
    assert abs(failed.ts - wall_ms()) < 1000
    recovered = await md.order_book_snapshot("btcusdt")
    assert (recovered.source, recovered.error) == ("rest", None)


async def test_futures_depth_limit_error_in_the_result(futures_env: Env) -> None:
    result = await futures_env.md.order_book_snapshot("btcusdt", limit=7)
    assert isinstance(result.error, RestError)
    assert result.error.code == -4021
    ok = await futures_env.md.order_book_snapshot("btcusdt", limit=5)
    assert ok.data is not None
    assert ok.data.last_update_id == futures_env.book().update_id


async def test_request_timeout(env: Env) -> None:
    md = MarketData(env.client, request_timeout=0.2, clock=env.clock)
    try:
        env.ex.faults.rest_delay(0.5)
        started = time.monotonic()
        late = await md.price("btcusdt")
        assert time.monotonic() - started < 0.45
        assert isinstance(late.error, FastmdTimeoutError)
        assert late.source == "rest"
        await until(lambda: not md._inflight)  # the request went on and landed
        cached = await md.price("btcusdt")
        assert (cached.source, cached.data) == ("cache", env.last_price())
    finally:
        md.close()
    with pytest.raises(ValueError, match="request_timeout"):
        MarketData(env.client, request_timeout=0)


async def test_api_misuse_raises(env: Env) -> None:
    md = env.md
    for bad in ("btc-usdt", "BTC USDT", "", "btcusdt@trade"):
        with pytest.raises(StreamNameError):
            await md.price(bad)
    with pytest.raises(ValueError, match="invalid symbol"):  # StreamNameError is a ValueError
        await md.ticker_24h("btc/usdt")
    with pytest.raises(StreamNameError, match="interval"):
        await md.klines("btcusdt", "7m")
    for method in (md.order_book_snapshot, md.recent_trades):
        with pytest.raises(ValueError, match="limit"):
            await method("btcusdt", limit=0)
    with pytest.raises(ValueError, match="limit"):
        await md.klines("btcusdt", "1m", limit=-1)
    with pytest.raises(StreamNameError):
        md.subscribe_klines("btcusdt", "7m", print)
    with pytest.raises(ValueError, match="track"):
        md.track("btcusdt", price=False, ticker=False)

    idle = fastmd.Client(ws_url=env.ex.ws_url, rest_url=env.ex.rest_url)
    with pytest.raises(InvalidState):
        await MarketData(idle).price("btcusdt")  # not started
    await env.client.close()
    with pytest.raises(InvalidState):
        await md.price("btcusdt")
    with pytest.raises(InvalidState):
        md.subscribe_price("btcusdt", print)


# -- live values ------------------------------------------------------------------------------


async def test_price_is_live_while_the_trade_stream_is_tracked(env: Env) -> None:
    md, client = env.md, env.client
    seen: list[Any] = []
    client.subscribe("btcusdt@trade", seen.append)  # to compare with the client's own events
    sub = md.track("btcusdt")
    await sub.wait_active(5)
    assert (await md.price("btcusdt")).source == "rest"  # no trade seen yet
    await trade_until(env, lambda: bool(seen))
    await until(lambda: seen[-1].price == env.last_price())
    sent = env.requests
    live = await md.price("btcusdt")
    assert (live.source, live.error) == ("ws", None)
    assert live.data == seen[-1].price == env.last_price()
    assert live.ts == seen[-1].event_time
    assert env.requests == sent  # no REST

    count = len(seen)
    await trade_until(env, lambda: len(seen) > count)
    await until(lambda: seen[-1].price == env.last_price())
    assert (await md.price("btcusdt")).data == seen[-1].price
    assert (await md.price("ethusdt")).source != "ws"  # only the tracked symbol

    sub.unsubscribe()
    assert (await md.price("btcusdt")).source in ("rest", "cache")


async def test_ticker_is_live_while_the_ticker_stream_is_tracked(env: Env) -> None:
    md = env.md
    events: list[Any] = []
    env.client.subscribe("btcusdt@ticker", events.append)
    sub = md.track("btcusdt", price=False, ticker=True)
    await sub.wait_active(5)
    await until(lambda: bool(events))  # the simulator pushes tickers every second
    live = await md.ticker_24h("btcusdt")
    assert (live.source, live.error) == ("ws", None)
    assert isinstance(live.data, RestTicker)  # one type whatever the source
    event = events[-1]
    assert live.ts == event.event_time
    rest = (await MarketData(env.client).ticker_24h("btcusdt")).data  # the same stats by REST
    assert rest is not None
    fields = (
        "symbol", "open_price", "high_price", "low_price", "last_price", "volume",
        "quote_volume", "first_id", "last_id", "count", "price_change", "weighted_avg_price",
        "prev_close_price", "bid_price", "ask_price",
    )  # fmt: skip
    assert {f: getattr(live.data, f) for f in fields} == {f: getattr(rest, f) for f in fields}
    assert (live.data.close_time, live.data.last_qty) == (event.close_time, event.last_quantity)
    assert (await md.price("btcusdt")).source == "rest"  # price was not tracked


async def test_live_values_are_dropped_when_the_connection_drops(env: Env) -> None:
    md, client = env.md, env.client
    sub = md.track("btcusdt")
    await sub.wait_active(5)
    await trade_until(env, lambda: md._live["btcusdt@trade"].event is not None)
    assert (await md.price("btcusdt")).source == "ws"
    statuses: list[str] = []
    client.on_status(lambda status, metrics: statuses.append(status))
    env.ex.faults.drop_connections()
    await until(lambda: fastmd.Status.RECONNECTING in statuses)
    assert (await md.price("btcusdt")).source == "rest"
    await until(lambda: client.status is fastmd.Status.CONNECTED)
    assert (await md.price("btcusdt")).source == "cache"  # trades may have been missed
    await trade_until(env, lambda: md._live["btcusdt@trade"].event is not None)
    assert (await md.price("btcusdt")).source == "ws"


async def test_subscribe_price_delivers_results(env: Env) -> None:
    md = env.md
    got: list[Result[Any]] = []
    raw: list[Any] = []
    env.client.subscribe("btcusdt@trade", raw.append)
    sub = md.subscribe_price("btcusdt", got.append)
    await sub.wait_active(5)
    assert sub.state == "active"
    await trade_until(env, lambda: len(raw) >= 5)
    await until(lambda: len(got) == len(raw))
    assert got == [Result(e.price, "ws", None, e.event_time) for e in raw]
    live = await md.price("btcusdt")  # the subscription feeds price() too
    assert (live.source, live.data) == ("ws", got[-1].data)

    sub.unsubscribe()
    count = len(got)
    await trade_until(env, lambda: len(raw) > count + 2)
    assert len(got) == count
    assert (await md.price("btcusdt")).source in ("rest", "cache")


async def test_subscribe_price_on_futures_uses_agg_trades(futures_env: Env) -> None:
    md = futures_env.md
    got: list[Result[Any]] = []
    raw: list[Any] = []
    futures_env.client.subscribe("btcusdt@aggTrade", raw.append)
    sub = md.subscribe_price("btcusdt", got.append)
    assert sub.streams == ("btcusdt@aggTrade",)
    await sub.wait_active(5)
    await trade_until(futures_env, lambda: len(raw) >= 3)
    await until(lambda: len(got) == len(raw))
    assert got == [Result(e.price, "ws", None, e.event_time) for e in raw]
    assert (await md.price("btcusdt")).source == "ws"


async def test_subscribe_klines_delivers_results(env: Env) -> None:
    got: list[Result[Any]] = []
    raw: list[Any] = []
    env.client.subscribe("btcusdt@kline_1m", raw.append)
    sub = env.md.subscribe_klines("BTCUSDT", "1m", got.append)
    assert sub.streams == ("btcusdt@kline_1m",)
    await until(lambda: bool(got) and len(got) == len(raw))  # kline pushes run on a timer
    first = got[0]
    assert (first.source, first.error) == ("ws", None)
    assert isinstance(first.data, KlineData)
    assert first.data == raw[0].kline
    assert first.ts == raw[0].event_time
    assert (first.data.symbol, first.data.interval) == ("BTCUSDT", "1m")
    assert first.data.close == env.last_price()
    assert first.data.start_time == env.book().ensure_bars("1m")[-1].open_time


async def test_a_failed_subscription_arrives_as_an_error_result(env: Env) -> None:
    got: list[Result[Any]] = []
    sub = env.md.subscribe_price("nosuchusdt", got.append)
    await until(lambda: bool(got))
    assert sub.state == "failed"
    (result,) = got
    assert (result.data, result.source) == (None, "ws")
    assert isinstance(result.error, UnknownSymbolError)
    kline_results: list[Result[Any]] = []
    env.md.subscribe_klines("nosuchusdt", "1m", kline_results.append)
    await until(lambda: bool(kline_results))
    assert isinstance(kline_results[0].error, UnknownSymbolError)


async def test_close_unsubscribes_what_market_data_subscribed(env: Env) -> None:
    tracked = env.md.track("btcusdt", ticker=True)
    priced = env.md.subscribe_price("ethusdt", print)
    await tracked.wait_active(5)
    env.md.close()
    assert tracked.state == priced.state == "closed"
    env.md.close()  # idempotent
