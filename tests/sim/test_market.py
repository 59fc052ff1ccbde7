"""Invariants of the synthetic market, checked over more than 100,000 events (sans-I/O)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import msgspec
import pytest

import fastmd
from fastmd.sim.market import Market, bucket_end, bucket_start


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _levels(levels: list[tuple[str, str]]) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(q) for p, q in levels}


def _apply(book: dict[Decimal, Decimal], levels: list[tuple[str, str]]) -> None:
    for price, quantity in levels:
        if Decimal(quantity) == 0:
            book.pop(Decimal(price), None)
        else:
            book[Decimal(price)] = Decimal(quantity)


def _market_levels(market: Market, symbol: str) -> tuple[dict[Decimal, Decimal], ...]:
    raw = msgspec.json.decode(market.depth(market.books[symbol], 10_000))
    return _levels(raw["bids"]), _levels(raw["asks"])


@pytest.mark.parametrize("venue", ["binance-spot", "binance-usdm"])
def test_streams_stay_consistent_over_100k_events(venue: fastmd.Venue) -> None:
    clock = FakeClock()
    symbols = ["BTCUSDT", "ETHUSDT"]
    market = Market(venue, symbols, seed=7, clock=clock)
    spot = venue == "binance-spot"
    streams = [
        f"{s.lower()}@{kind}"
        for s in symbols
        for kind in (["trade"] if spot else []) + ["aggTrade", "bookTicker", "depth@100ms"]
    ]
    market.set_active(streams)
    decoder = fastmd.Decoder(venue, price_type=str)
    decoder.register(streams)

    # Local books start from the REST snapshot, as a client would.
    snapshots = {s: msgspec.json.decode(market.depth(market.books[s], 5000)) for s in symbols}
    local = {s: (_levels(snapshots[s]["bids"]), _levels(snapshots[s]["asks"])) for s in symbols}
    book_id = {s: snapshots[s]["lastUpdateId"] for s in symbols}
    last_trade: dict[str, int] = {}
    last_agg: dict[str, int] = {}
    trades_by_symbol: dict[str, list[fastmd.Trade[str]]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    diffs_checked = tickers_checked = 0

    events = 0
    while events < 100_000:
        clock.now += 0.003
        for stream, payload in market.step():
            event = decoder.decode(payload, stream=stream).event
            events += 1
            counts[type(event).__name__] += 1
            symbol = event.symbol
            if isinstance(event, fastmd.Trade):
                if symbol in last_trade:
                    assert event.trade_id == last_trade[symbol] + 1
                last_trade[symbol] = event.trade_id
                trades_by_symbol[symbol].append(event)
            elif isinstance(event, fastmd.AggTrade):
                if symbol in last_agg:
                    assert event.agg_trade_id == last_agg[symbol] + 1
                last_agg[symbol] = event.agg_trade_id
                assert event.first_trade_id <= event.last_trade_id
                if spot:  # the aggTrade's f..l are exactly the trades just sent
                    covered = [
                        t for t in trades_by_symbol[symbol][-50:]
                        if event.first_trade_id <= t.trade_id <= event.last_trade_id
                    ]  # fmt: skip
                    assert [t.trade_id for t in covered] == list(
                        range(event.first_trade_id, event.last_trade_id + 1)
                    )
                    total = sum(Decimal(t.quantity) for t in covered)
                    assert total == Decimal(event.quantity)
                    assert {t.price for t in covered} == {event.price}
            elif isinstance(event, fastmd.BookTicker):
                # The quote is the book's top at its update id, which is the current one.
                book = market.books[symbol]
                assert event.update_id == book.update_id
                bid, bid_qty, ask, ask_qty = book.top()
                assert (event.bid_price, event.bid_quantity) == (book.price(bid), book.qty(bid_qty))
                assert (event.ask_price, event.ask_quantity) == (book.price(ask), book.qty(ask_qty))
                assert Decimal(event.bid_price) < Decimal(event.ask_price)
                tickers_checked += 1
        for stream, payload in market.tick():
            event = decoder.decode(payload, stream=stream).event
            events += 1
            assert isinstance(event, fastmd.DepthUpdate)
            symbol = event.symbol
            if event.final_update_id <= book_id[symbol]:
                continue
            if spot:
                assert event.first_update_id == book_id[symbol] + 1
            else:
                assert event.prev_final_update_id == book_id[symbol]
            bids, asks = local[symbol]
            _apply(bids, event.bids)
            _apply(asks, event.asks)
            book_id[symbol] = event.final_update_id
            # Snapshot + every diff since == the simulator's own book, level for level.
            assert event.final_update_id == market.books[symbol].update_id
            assert (bids, asks) == _market_levels(market, symbol)
            diffs_checked += 1
    assert diffs_checked > 1000
    assert tickers_checked > 1000
    assert counts["AggTrade"] > 1000
    if spot:
        assert counts["Trade"] > counts["AggTrade"]


def test_same_seed_same_market() -> None:
    def run(seed: int) -> list[tuple[str, bytes]]:
        clock = FakeClock()
        market = Market("binance-spot", ["BTCUSDT"], seed=seed, clock=clock)
        market.set_active(["btcusdt@trade", "btcusdt@depth", "btcusdt@bookTicker"])
        out = []
        for _ in range(2000):
            clock.now += 0.01
            out += market.step() + market.tick()
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_timed_streams_agree_with_trades_and_book() -> None:
    clock = FakeClock()
    market = Market("binance-spot", ["BTCUSDT"], seed=11, clock=clock)
    streams = [
        "btcusdt@trade", "btcusdt@kline_1m", "btcusdt@depth5", "btcusdt@depth20@100ms",
        "btcusdt@ticker", "btcusdt@miniTicker", "btcusdt@ticker_1h", "btcusdt@avgPrice",
        "btcusdt@referencePrice", "!miniTicker@arr", "btcusdt@kline_1s@+08:00",
    ]  # fmt: skip
    market.set_active(streams)
    book = market.books["BTCUSDT"]
    book.ensure_history()
    past = [  # the tape of the last minutes before the start (it rolls out of the deque later)
        (t.trade_id, t.time, Decimal(book.price(t.price)), Decimal(book.qty(t.quantity)))
        for t in book.trades
    ]  # fmt: skip
    decoder = fastmd.Decoder(price_type=Decimal)
    trades: list[fastmd.Trade[Decimal]] = []
    seen: dict[str, int] = defaultdict(int)
    closed_bars: list[fastmd.KlineData[Decimal]] = []
    for _ in range(30_000):
        clock.now += 0.01
        for stream, payload in market.step():
            trades.append(decoder.decode(payload, stream=stream).event)
            seen[stream] += 1
        for stream, payload in market.tick():
            event = decoder.decode(payload, stream=stream).event
            seen[stream] += 1
            book = market.books["BTCUSDT"]
            if stream == "btcusdt@depth5":
                assert event.last_update_id == book.update_id
                assert event.symbol == "BTCUSDT"
                assert [(str(p), str(q)) for p, q in event.bids] == [
                    (book.price(p), book.qty(q)) for p, q in book.levels("b", 5)
                ]
                assert len(event.asks) == 5
            elif stream == "btcusdt@kline_1m" and event.kline.is_closed:
                closed_bars.append(event.kline)
            elif stream == "btcusdt@ticker" and trades:
                assert event.last_price == trades[-1].price
                assert event.last_trade_id == trades[-1].trade_id
                # The day's window reaches into the past before the start, id by id.
                assert event.first_trade_id < trades[0].trade_id
                assert event.trade_count == event.last_trade_id - event.first_trade_id + 1
                assert event.best_bid_price < event.best_ask_price
    assert all(seen[s] > 0 for s in streams), seen
    assert len(closed_bars) >= 4
    # The first bar holds trades of the past's tape too: check every bar against tape and live.
    tape = past + [(t.trade_id, t.trade_time, t.price, t.quantity) for t in trades]
    assert [t[0] for t in tape] == list(range(tape[0][0], tape[0][0] + len(tape)))
    for bar in closed_bars:
        inside = [t for t in tape if bar.start_time <= t[1] <= bar.close_time]
        assert bar.close_time == bar.start_time + 60_000 - 1
        assert bar.trade_count == len(inside)
        assert bar.volume == sum(t[3] for t in inside)
        assert (bar.open, bar.close) == (inside[0][2], inside[-1][2])
        assert (bar.high, bar.low) == (max(t[2] for t in inside), min(t[2] for t in inside))
        assert (bar.first_trade_id, bar.last_trade_id) == (inside[0][0], inside[-1][0])


def test_flood_trades_have_contiguous_ids() -> None:
    market = Market("binance-spot", ["BTCUSDT"], seed=1, clock=FakeClock())
    decoder = fastmd.Decoder()
    first = market.flood_trades("btcusdt", 1000)
    second = market.flood_trades("BTCUSDT", 10)
    ids = [decoder.decode(p, stream="btcusdt@trade").event.trade_id for p in first + second]
    assert ids == list(range(ids[0], ids[0] + 1010))


def test_unknown_symbol_streams_stay_silent() -> None:
    clock = FakeClock()
    market = Market("binance-spot", ["BTCUSDT"], seed=1, clock=clock)
    market.set_active(["xrpxrp@trade", "xrpxrp@kline_1m", "xrpxrp@depth", "xrpxrp@ticker"])
    for _ in range(2000):
        clock.now += 0.01
        assert market.step() == []
        assert market.tick() == []


@pytest.mark.parametrize(
    ("time_ms", "interval", "offset", "start"),
    [
        (1_700_000_123_456, "1m", 0, 1_700_000_100_000),
        (1_700_000_123_456, "1s", 0, 1_700_000_123_000),
        (1_700_000_123_456, "1d", 0, 1_699_920_000_000),
        # UTC+8 days start at 16:00 UTC
        (1_700_000_123_456, "1d", 8 * 3_600_000, 1_699_977_600_000),
        # weeks start on Monday 00:00 UTC (2023-11-13)
        (1_700_000_123_456, "1w", 0, 1_699_833_600_000),
        (1_700_000_123_456, "1M", 0, 1_698_796_800_000),
    ],
)
def test_bucket_alignment(time_ms: int, interval: str, offset: int, start: int) -> None:
    assert bucket_start(time_ms, interval, offset) == start
    end = bucket_end(start, interval, offset)
    assert end > time_ms
    assert bucket_start(end + 1, interval, offset) == end + 1
