"""fastmd.aio.rest.RestClient against the simulator's REST server: every endpoint (spot and USD-M
futures) with values checked against the simulated market, Binance's error codes as RestError,
weight accounting and the local budget, Retry-After blocking after 429/418, the circuit breaker,
the response-size cap and timeouts. Loopback only; the market moves only when told to (rate=0),
on a wall clock the tests set; no step waits more than about a second."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from fastmd import CircuitBreakerPolicy, CircuitState, RestError, RestTimeoutError
from fastmd.aio.rest import RestClient, RestTimeouts, SymbolDirectory
from fastmd.core.streams import Venue
from fastmd.sim import Exchange, SimLimits

ADDRESS = "127.0.0.1"


class Clock:
    """A settable clock (seconds)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def minute_start_clock() -> Clock:
    """A wall clock frozen one second into a minute: the simulator's fixed one-minute weight
    window cannot roll over during a test, and the market's times move only with advance()."""
    return Clock((time.time() // 60) * 60 + 1.0)


def breaker_state(rest: RestClient) -> CircuitState:
    return rest.breaker.state


@dataclass
class Sim:
    ex: Exchange
    rest: RestClient
    wall: Clock

    def book(self, symbol: str = "BTCUSDT") -> Any:
        return self.ex.market.books[symbol]

    def price(self, units: int, symbol: str = "BTCUSDT") -> float:
        return float(self.book(symbol).price(units))

    def qty(self, units: int, symbol: str = "BTCUSDT") -> float:
        return float(self.book(symbol).qty(units))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def start_sim(
    session: aiohttp.ClientSession, venue: Venue = "binance-spot", **rest_options: Any
) -> tuple[Exchange, RestClient, Clock]:
    wall = minute_start_clock()
    limits = rest_options.pop("limits", None)
    ex = Exchange(venue, ["BTCUSDT", "ETHUSDT"], seed=5, rate=0, clock=wall, limits=limits)
    await ex.start()
    ex.advance(300)  # some order flow and trades in the current minute
    return ex, RestClient(session, ex.rest_url, venue, **rest_options), wall


@pytest.fixture
async def spot(session: aiohttp.ClientSession) -> AsyncIterator[Sim]:
    ex, rest, wall = await start_sim(session)
    try:
        yield Sim(ex, rest, wall)
    finally:
        await ex.stop()


@pytest.fixture
async def futures(session: aiohttp.ClientSession) -> AsyncIterator[Sim]:
    ex, rest, wall = await start_sim(session, "binance-usdm")
    try:
        yield Sim(ex, rest, wall)
    finally:
        await ex.stop()


# -- spot endpoints ---------------------------------------------------------------------------


async def test_ping_time_and_exchange_info(spot: Sim) -> None:
    await spot.rest.ping()  # {} decodes; returns None
    assert (await spot.rest.time()).server_time == int(spot.wall() * 1000)
    info = await spot.rest.exchange_info()
    assert [s.symbol for s in info.symbols] == ["BTCUSDT", "ETHUSDT"]
    weight = [r for r in info.rate_limits if r.rate_limit_type == "REQUEST_WEIGHT"]
    assert [(r.interval, r.interval_num, r.limit) for r in weight] == [("MINUTE", 1, 6000)]
    btc = info.symbol("btcusdt")
    assert btc is not None
    assert (btc.base_asset, btc.quote_asset) == ("BTC", "USDT")
    price_filter = btc.filter("PRICE_FILTER")
    assert price_filter is not None
    assert price_filter.tick_size == spot.book().price(1)
    only = await spot.rest.exchange_info(["ethusdt"])
    assert [s.symbol for s in only.symbols] == ["ETHUSDT"]


async def test_depth_is_the_simulators_book(spot: Sim) -> None:
    spot.ex.advance(57)
    book = spot.book()
    depth = await spot.rest.depth("btcusdt", 20)
    assert depth.last_update_id == book.update_id
    assert depth.bids == [(spot.price(p), spot.qty(q)) for p, q in book.levels("b", 20)]
    assert depth.asks == [(spot.price(p), spot.qty(q)) for p, q in book.levels("a", 20)]
    assert depth.bids[0][0] < depth.asks[0][0]
    assert depth.event_time is None  # spot snapshots carry no times
    spot.ex.advance(40)
    assert (await spot.rest.depth("BTCUSDT", 5)).last_update_id == book.update_id


async def test_recent_trades(spot: Sim) -> None:
    tape = list(spot.book().trades)
    assert len(tape) > 10
    trades = await spot.rest.recent_trades("btcusdt", limit=10)
    assert [t.id for t in trades] == [t.trade_id for t in tape[-10:]]
    assert [(t.price, t.quantity, t.time, t.is_buyer_maker) for t in trades] == [
        (spot.price(t.price), spot.qty(t.quantity), t.time, t.is_buyer_maker) for t in tape[-10:]
    ]


async def test_historical_trades_from_an_id(spot: Sim) -> None:
    spot.ex.advance(200)
    tape = list(spot.book().trades)
    assert len(tape) > 30
    from_id = tape[-30].trade_id
    weight = spot.rest.weights.used(time.monotonic())
    page = await spot.rest.historical_trades("btcusdt", from_id=from_id, limit=10)
    assert spot.rest.weights.used(time.monotonic()) - weight == 25  # spot's weight
    assert [t.id for t in page] == list(range(from_id, from_id + 10))
    assert [(t.price, t.quantity, t.time, t.is_buyer_maker) for t in page] == [
        (spot.price(t.price), spot.qty(t.quantity), t.time, t.is_buyer_maker) for t in tape[-30:-20]
    ]
    newest = await spot.rest.historical_trades("BTCUSDT", limit=5)
    assert [t.id for t in newest] == [t.trade_id for t in tape[-5:]]


async def test_agg_trades_newest_from_id_and_time_range(spot: Sim) -> None:
    spot.ex.advance(100)
    spot.wall.advance(30)  # later trades get later times
    spot.ex.advance(300)
    tape = list(spot.book().agg_trades)
    assert len(tape) > 12
    newest = await spot.rest.agg_trades("btcusdt", limit=5)
    assert [a.agg_trade_id for a in newest] == [a.agg_id for a in tape[-5:]]
    assert newest[-1].price == spot.price(tape[-1].price)
    assert newest[-1].first_trade_id == tape[-1].first_id

    from_id = tape[-12].agg_id
    page = await spot.rest.agg_trades("btcusdt", from_id=from_id, limit=4)
    assert [a.agg_trade_id for a in page] == [a.agg_id for a in tape[-12:-8]]

    start, end = tape[0].time, tape[0].time + 10_000
    expected = [a.agg_id for a in tape if start <= a.time <= end]
    assert 0 < len(expected) < len(tape)  # the range cuts the tape
    ranged = await spot.rest.agg_trades("btcusdt", start_time=start, end_time=end, limit=1000)
    assert [a.agg_trade_id for a in ranged] == expected


async def test_klines_with_start_and_end(spot: Sim) -> None:
    for _ in range(2):  # three minutes with trades
        spot.wall.advance(60)
        spot.ex.advance(300)
    bars = list(spot.book().ensure_bars("1m"))[-10:]  # the past's minutes, then the live ones
    assert [b.open_time for b in bars] == list(range(bars[0].open_time, bars[-1].open_time + 1,
                                                     60_000))  # fmt: skip
    klines = await spot.rest.klines("btcusdt", "1m", limit=10)
    assert [k.open_time for k in klines] == [b.open_time for b in bars]
    assert [(k.open, k.high, k.low, k.close, k.trade_count, k.close_time) for k in klines] == [
        (spot.price(b.open), spot.price(b.high), spot.price(b.low), spot.price(b.close), b.count,
         b.close_time)
        for b in bars
    ]  # fmt: skip
    assert klines[-1].close == spot.price(spot.book().last_price)
    middle = bars[-2].open_time
    one = await spot.rest.klines("btcusdt", "1m", start_time=middle, end_time=middle)
    assert [k.open_time for k in one] == [middle]
    tail = await spot.rest.klines("btcusdt", "1m", start_time=middle)
    assert [k.open_time for k in tail] == [b.open_time for b in bars[-2:]]
    head = await spot.rest.klines("btcusdt", "1m", end_time=middle)
    assert len(head) == 500  # the newest 500 up to end_time
    assert [k.open_time for k in head[-9:]] == [b.open_time for b in bars[:-1]]
    assert len(await spot.rest.klines("btcusdt", "1m", limit=1)) == 1


async def test_tickers_and_average_price(spot: Sim) -> None:
    book = spot.book()
    last = spot.price(book.last_price)
    bid, bid_qty, ask, ask_qty = book.top()
    full = await spot.rest.ticker_24h("btcusdt")
    assert (full.symbol, full.last_price) == ("BTCUSDT", last)
    assert (full.bid_price, full.bid_qty, full.ask_price, full.ask_qty) == (
        spot.price(bid), spot.qty(bid_qty), spot.price(ask), spot.qty(ask_qty)
    )  # fmt: skip
    trades = list(book.trades)
    assert full.last_id == trades[-1].trade_id
    assert full.first_id < trades[0].trade_id  # the day reaches back past the tape of trades
    assert full.count == full.last_id - full.first_id + 1
    assert full.close_time == int(spot.wall() * 1000)
    assert full.price_change is not None
    assert full.weighted_avg_price is not None

    mini = await spot.rest.ticker_24h("btcusdt", mini=True)
    assert (mini.last_price, mini.count, mini.volume) == (last, full.count, full.volume)
    assert mini.price_change is None
    assert mini.bid_price is None

    price = await spot.rest.ticker_price("btcusdt")
    assert (price.symbol, price.price) == ("BTCUSDT", last)
    top = await spot.rest.book_ticker("btcusdt")
    assert (top.bid_price, top.bid_qty, top.ask_price, top.ask_qty) == (
        full.bid_price, full.bid_qty, full.ask_price, full.ask_qty
    )  # fmt: skip
    avg = await spot.rest.avg_price("btcusdt")
    assert avg.mins == 5
    assert avg.price == float(spot.ex.market.avg_price(book, spot.ex.market.now_ms()))
    assert avg.close_time == trades[-1].time


# -- futures endpoints ------------------------------------------------------------------------


async def test_futures_depth_and_klines(futures: Sim) -> None:
    book = futures.book()
    depth = await futures.rest.depth("btcusdt", 100)
    assert depth.last_update_id == book.update_id
    assert depth.bids[:5] == [(futures.price(p), futures.qty(q)) for p, q in book.levels("b", 5)]
    assert len(depth.bids) == len(depth.asks) == 100
    assert depth.event_time == depth.transaction_time == int(futures.wall() * 1000)
    klines = await futures.rest.klines("BTCUSDT", "1m", limit=3)
    bars = list(book.ensure_bars("1m"))
    assert [(k.open_time, k.close, k.trade_count) for k in klines] == [
        (b.open_time, futures.price(b.close), b.count) for b in bars[-3:]
    ]


async def test_futures_agg_trades_ticker_and_premium_index(futures: Sim) -> None:
    book = futures.book()
    tape = list(book.agg_trades)
    aggs = await futures.rest.agg_trades("btcusdt", limit=3)
    assert [(a.agg_trade_id, a.price) for a in aggs] == [
        (a.agg_id, futures.price(a.price)) for a in tape[-3:]
    ]
    from_id = tape[-6].agg_id
    page = await futures.rest.agg_trades("btcusdt", from_id=from_id, limit=2)
    assert [a.agg_trade_id for a in page] == [from_id, tape[-5].agg_id]

    last = futures.price(book.last_price)
    ticker = await futures.rest.ticker_24h("btcusdt")
    assert (ticker.symbol, ticker.last_price) == ("BTCUSDT", last)
    assert ticker.price_change is not None
    assert ticker.weighted_avg_price is not None
    assert ticker.last_id == book.trades[-1].trade_id
    assert ticker.count == ticker.last_id - ticker.first_id + 1 > len(book.trades)

    premium = await futures.rest.premium_index("btcusdt")
    mid = futures.price((book.best_bid() + book.best_ask()) // 2)
    assert (premium.symbol, premium.mark_price, premium.index_price) == ("BTCUSDT", mid, last)
    assert premium.time == int(futures.wall() * 1000)
    assert premium.next_funding_time > premium.time


# -- errors -----------------------------------------------------------------------------------


async def test_binance_error_codes_become_rest_errors(spot: Sim) -> None:
    cases: list[tuple[Any, int]] = [
        (spot.rest.depth("NOSUCHUSDT"), -1121),
        (spot.rest.ticker_price("NOSUCHUSDT"), -1121),
        (spot.rest.klines("btcusdt", "7m"), -1120),
        (spot.rest.recent_trades("btcusdt", limit=5000), -1130),
        (spot.rest.klines("btcusdt", "1m", limit=0), -1130),
    ]
    for call, code in cases:
        with pytest.raises(RestError) as caught:
            await call
        assert (caught.value.status, caught.value.code) == (400, code)
        assert caught.value.retry_after is None
    with pytest.raises(RestError, match="Invalid symbol"):
        await spot.rest.avg_price("NOSUCHUSDT")
    assert breaker_state(spot.rest) is CircuitState.CLOSED  # refusals are not outages


async def test_futures_depth_limit_error(futures: Sim) -> None:
    with pytest.raises(RestError) as caught:
        await futures.rest.depth("btcusdt", 7)
    assert (caught.value.status, caught.value.code) == (400, -4021)
    assert "7 is not valid depth limit" in str(caught.value)


# -- weights ----------------------------------------------------------------------------------


async def test_used_weight_is_the_exchanges(spot: Sim) -> None:
    rest = spot.rest
    await rest.ping()  # 1
    await rest.depth("btcusdt", 100)  # 5
    await rest.depth("btcusdt", 500)  # 25
    await rest.klines("btcusdt", "1m")  # 2
    await rest.recent_trades("btcusdt")  # 25
    await rest.ticker_24h("btcusdt")  # 2
    await rest.exchange_info()  # 20
    assert rest.used_weight == spot.ex.rest.used_weight(ADDRESS) == 80
    assert rest.weights.used(time.monotonic()) == 80
    assert rest.requests == 7


async def test_weight_spent_by_others_is_counted(spot: Sim, session: aiohttp.ClientSession) -> None:
    for _ in range(3):  # the application spends weight from the same address
        async with session.get(spot.ex.rest_url + "/api/v3/exchangeInfo") as response:
            assert response.status == 200
    await spot.rest.ping()
    assert spot.rest.used_weight == spot.ex.rest.used_weight(ADDRESS) == 61
    assert spot.rest.weights.used(time.monotonic()) == 61


async def test_budget_makes_requests_wait_instead_of_a_429(session: aiohttp.ClientSession) -> None:
    limits = SimLimits.for_venue("binance-spot").with_(rest_weight_per_minute=100)
    ex, rest, _ = await start_sim(session, weight_limit=100, limits=limits)
    try:
        assert rest.weights.budget == 90  # 90% of the limit
        for _ in range(18):  # 18 x 5 = 90: the whole budget, no error
            await rest.depth("btcusdt", 100)
        assert rest.used_weight == ex.rest.used_weight(ADDRESS) == 90
        sent = ex.rest.requests
        with pytest.raises(RestError) as refused:  # a wait past max_wait fails at once...
            await rest.depth("btcusdt", 100)
        assert refused.value.retry_after is not None
        assert refused.value.retry_after > 55
        assert ex.rest.requests == sent
        rest.max_wait = 120.0  # ...and within max_wait, the request waits
        pending = asyncio.ensure_future(rest.depth("btcusdt", 100))
        await asyncio.sleep(0.3)
        assert not pending.done()  # waiting for the window, not sent
        assert ex.rest.requests == sent
        assert rest.weights.delay(time.monotonic(), 5) > 55
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert ex.rest.used_weight(ADDRESS) == 90  # never past the exchange's limit
    finally:
        await ex.stop()


async def test_request_waits_until_old_weight_leaves_the_window(spot: Sim) -> None:
    rest = RestClient(spot.rest._session, spot.ex.rest_url, "binance-spot", weight_limit=100)
    rest.weights.record(time.monotonic() - 59.7, 90)  # the budget, spent 59.7 s ago
    started = time.monotonic()
    await rest.depth("btcusdt", 100)  # raises nothing: waits about 0.3 s
    waited = time.monotonic() - started
    assert 0.25 <= waited < 1.0
    assert rest.weights.used(time.monotonic()) == 5


# -- 429, 418, breaker, size, timeout ---------------------------------------------------------


@pytest.mark.parametrize(("status", "retry_after"), [(429, 0.3), (418, 0.4)])
async def test_rate_limit_answers_block_for_retry_after(
    spot: Sim, status: int, retry_after: float
) -> None:
    spot.ex.faults.rest_error(status, count=1, retry_after=retry_after)
    with pytest.raises(RestError) as caught:
        await spot.rest.ticker_price("btcusdt")
    error = caught.value
    assert (error.status, error.code, error.retry_after) == (status, -1003, retry_after)
    started = time.monotonic()
    price = await spot.rest.ticker_price("btcusdt")  # waits out Retry-After, then succeeds
    waited = time.monotonic() - started
    assert retry_after - 0.05 <= waited < 1.0
    assert price.price == spot.price(spot.book().last_price)


async def test_breaker_opens_on_5xx_fails_fast_and_recovers(spot: Sim) -> None:
    clock = Clock(1000.0)
    rest = RestClient(
        spot.rest._session, spot.ex.rest_url, "binance-spot", clock=clock,
        circuit_breaker=CircuitBreakerPolicy(failure_threshold=3, cooldown=30.0),
    )  # fmt: skip
    fault = spot.ex.faults.rest_error(500)
    for _ in range(3):
        with pytest.raises(RestError) as caught:
            await rest.ping()
        assert (caught.value.status, caught.value.code) == (500, -1000)
    assert breaker_state(rest) is CircuitState.OPEN
    sent = spot.ex.rest.requests
    with pytest.raises(RestError, match="circuit open") as caught:
        await rest.ping()
    assert caught.value.status is None
    assert spot.ex.rest.requests == sent  # failed fast: nothing sent

    clock.advance(30.0)  # cooldown over: one trial, still failing, opens again
    with pytest.raises(RestError) as caught:
        await rest.ping()
    assert caught.value.status == 500
    with pytest.raises(RestError, match="circuit open"):
        await rest.ping()

    fault.clear()
    clock.advance(30.0)
    await rest.ping()
    assert breaker_state(rest) is CircuitState.CLOSED
    assert (await rest.depth("btcusdt", 5)).last_update_id == spot.book().update_id


async def test_half_open_lets_exactly_one_trial_through(spot: Sim) -> None:
    clock = Clock(1000.0)
    rest = RestClient(
        spot.rest._session, spot.ex.rest_url, "binance-spot", clock=clock,
        circuit_breaker=CircuitBreakerPolicy(failure_threshold=1, cooldown=30.0),
    )  # fmt: skip
    fault = spot.ex.faults.rest_error(500)
    with pytest.raises(RestError):
        await rest.ping()
    clock.advance(30.0)
    sent = spot.ex.rest.requests
    results = await asyncio.gather(*(rest.ping() for _ in range(5)), return_exceptions=True)
    assert spot.ex.rest.requests == sent + 1  # one trial; the others failed fast
    assert sum("its trial request is out" in str(r) for r in results) == 4, results
    fault.clear()


async def test_refusals_reset_the_breaker_count_and_bodies_over_the_cap_do_not_count(
    spot: Sim,
) -> None:
    rest = RestClient(
        spot.rest._session, spot.ex.rest_url, "binance-spot", max_response_size=1000,
        circuit_breaker=CircuitBreakerPolicy(failure_threshold=2, cooldown=30.0),
    )  # fmt: skip
    fault = spot.ex.faults.rest_error(500, count=1)
    with pytest.raises(RestError):
        await rest.ping()
    assert rest.breaker.failures == 1
    with pytest.raises(RestError):
        await rest.depth("NOPE", 5)  # -1121: the server answered, so it is up
    assert rest.breaker.failures == 0
    for _ in range(3):
        with pytest.raises(RestError, match="over 1000 bytes"):
            await rest.depth("btcusdt", 100)  # a healthy server, a body over our cap
    assert breaker_state(rest) is CircuitState.CLOSED
    fault.clear()


async def test_a_closed_session_is_a_rest_error(spot: Sim) -> None:
    session = aiohttp.ClientSession()
    rest = RestClient(session, spot.ex.rest_url, "binance-spot")
    await session.close()
    with pytest.raises(RestError, match="Session is closed"):
        await rest.ping()


async def test_futures_has_no_mini_ticker(futures: Sim) -> None:
    with pytest.raises(ValueError, match="MINI"):
        await futures.rest.ticker_24h("btcusdt", mini=True)


async def test_oversized_response_is_refused(spot: Sim) -> None:
    rest = RestClient(spot.rest._session, spot.ex.rest_url, "binance-spot", max_response_size=1000)
    with pytest.raises(RestError, match="over 1000 bytes") as caught:
        await rest.depth("btcusdt", 100)
    assert caught.value.status == 200
    await rest.ping()  # small answers still pass
    assert (await rest.ticker_price("btcusdt")).symbol == "BTCUSDT"


async def test_timeout(spot: Sim) -> None:
    rest = RestClient(
        spot.rest._session, spot.ex.rest_url, "binance-spot", timeouts=RestTimeouts(total=0.3)
    )
    spot.ex.faults.rest_timeout()
    started = time.monotonic()
    with pytest.raises(RestTimeoutError, match="no complete answer") as caught:
        await rest.ping()
    assert isinstance(caught.value, TimeoutError)
    assert 0.25 <= time.monotonic() - started < 1.5
    assert caught.value.status is None
    assert rest.breaker.failures == 1
    spot.ex.faults.clear()
    await rest.ping()


async def test_symbol_directory_keeps_the_rest_error_details() -> None:
    """A failed exchangeInfo fetch is the RestError it was (status, code, Retry-After), not a
    plain FastmdError."""
    async with Exchange(symbols=["BTCUSDT"], seed=1, rate=0) as ex, aiohttp.ClientSession() as s:
        rest = RestClient(s, ex.rest_url, "binance-spot")
        directory = SymbolDirectory(rest)
        ex.faults.rest_error(429, count=1, retry_after=1)
        with pytest.raises(RestError) as caught:
            await directory.symbols()
        assert caught.value.status == 429
        assert caught.value.retry_after == 1
        assert "exchangeInfo" in str(caught.value)
        assert isinstance(caught.value.__cause__, RestError)


async def test_a_symbol_fetch_whose_waiters_were_cancelled_leaves_no_unretrieved_error() -> None:
    """The shared exchangeInfo fetch outlives a cancelled waiter; when it then fails, asyncio
    must not be left holding an exception nobody retrieved."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        async with Exchange(symbols=["BTCUSDT"], seed=1, rate=0) as ex:
            session = aiohttp.ClientSession()
            directory = SymbolDirectory(RestClient(session, ex.rest_url, "binance-spot"))
            ex.faults.rest_delay(0.3)
            waiter = asyncio.ensure_future(directory.symbols())
            await asyncio.sleep(0.05)
            waiter.cancel()
            await session.close()  # the fetch in flight now fails
            await asyncio.sleep(0.5)
            del waiter, directory  # the fetch's last references: its error is judged now
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []
