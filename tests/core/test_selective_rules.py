"""Selective updates (fastmd.core.selective): which fields each kind compares, what is refused,
and the throttle's bounds and trailing edge under an injected clock."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from fastmd.core import events as ev
from fastmd.core.selective import (
    DEFAULT_FIELDS,
    ChangeFilter,
    Throttle,
    change_fields,
    check_throttle,
    per_symbol,
)
from fastmd.core.streams import parse_stream


def quote(u: int, bid: float, ask: float, bid_qty: float = 1.0, symbol: str = "BTCUSDT") -> object:
    return ev.BookTicker(u, symbol, bid, bid_qty, ask, 1.0)


def kline(start: int, close: float, closed: bool) -> object:
    data = ev.KlineData(
        start, start + 59_999, "BTCUSDT", "1m", 1, 2, 100.0, close, 101.0, 99.0, 1.0, 2,
        closed, 1.0, 1.0, 1.0,
    )  # fmt: skip
    return ev.Kline(start + 1, "BTCUSDT", data)


def fields(name: str, only_changes: object, venue: str = "binance-spot") -> object:
    return change_fields(parse_stream(name, venue), name, venue, only_changes)  # type: ignore[arg-type]


def test_defaults_per_kind() -> None:
    assert fields("btcusdt@bookTicker", True) == ("bid_price", "ask_price")
    assert fields("btcusdt@ticker", True) == ("last_price",)
    assert fields("btcusdt@ticker_1h", True) == ("last_price",)
    assert fields("btcusdt@miniTicker", True) == ("close",)
    assert fields("btcusdt@kline_1m", True) == ("kline.close", "kline.is_closed")
    assert fields("btcusdt@markPrice", True, "binance-usdm") == ("mark_price",)
    assert fields("btcusdt@depth20", True) == ("bids", "asks")
    assert fields("btcusdt@depth20", True, "binance-usdm") == ("bids", "asks")
    assert fields("btcusdt@bookTicker", False) is None


def test_named_fields_are_checked_against_the_event() -> None:
    assert fields("btcusdt@bookTicker", ("bid_quantity", "ask_quantity")) == (
        "bid_quantity",
        "ask_quantity",
    )
    assert fields("btcusdt@trade", ["price"]) == ("price",)  # named: allowed on any event
    assert fields("btcusdt@kline_5m", ("kline.high",)) == ("kline.high",)
    with pytest.raises(ValueError, match="no field 'bid_qty'"):
        fields("btcusdt@bookTicker", ("bid_qty",))
    with pytest.raises(ValueError, match=r"no field 'kline\.nope'"):
        fields("btcusdt@kline_5m", ("kline.nope",))
    with pytest.raises(TypeError):
        fields("btcusdt@bookTicker", "bid_price")  # a string is not a sequence of names here
    with pytest.raises(TypeError):
        fields("btcusdt@bookTicker", ())
    with pytest.raises(TypeError):
        fields("btcusdt@bookTicker", 3)


def test_refusals() -> None:
    for name in ("btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth", "btcusdt@depth@100ms"):
        with pytest.raises(ValueError, match="no default"):
            fields(name, True)
        with pytest.raises(ValueError, match="not snapshots of state"):
            check_throttle(parse_stream(name), name, 1.0)
    with pytest.raises(ValueError, match="only the symbols that changed"):
        fields("!miniTicker@arr", True)
    with pytest.raises(ValueError, match="only the symbols that changed"):
        check_throttle(parse_stream("!ticker_1h@arr"), "!ticker_1h@arr", 1.0)
    stream = parse_stream("btcusdt@bookTicker")
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive"):
            check_throttle(stream, "btcusdt@bookTicker", bad)
    for wrong in ("1", True):
        with pytest.raises(TypeError):
            check_throttle(stream, "btcusdt@bookTicker", wrong)  # type: ignore[arg-type]
    assert check_throttle(stream, "btcusdt@bookTicker", 2) == 2.0
    assert check_throttle(stream, "btcusdt@bookTicker", None) is None


def test_book_ticker_compares_prices_only() -> None:
    change = ChangeFilter(DEFAULT_FIELDS[parse_stream("x@bookTicker").kind])
    assert change.passes(quote(1, 10.0, 11.0))
    assert not change.passes(quote(2, 10.0, 11.0, bid_qty=5.0))  # a quantity moved
    assert change.passes(quote(3, 10.5, 11.0))
    assert not change.passes(quote(4, 10.5, 11.0))
    assert change.passes(quote(5, 10.5, 10.9))
    assert change.skipped == 2


def test_named_quantities() -> None:
    change = ChangeFilter(("bid_quantity", "ask_quantity"))
    assert change.passes(quote(1, 10.0, 11.0))
    assert change.passes(quote(2, 10.0, 11.0, bid_qty=5.0))
    assert not change.passes(quote(3, 12.0, 13.0, bid_qty=5.0))


def test_klines_always_deliver_the_closing_update_and_a_new_candle() -> None:
    change = ChangeFilter(("kline.close", "kline.is_closed"))
    assert change.passes(kline(0, 100.0, False))
    assert not change.passes(kline(0, 100.0, False))
    assert change.passes(kline(0, 100.5, False))
    assert change.passes(kline(0, 100.5, True))  # the close, same price: still delivered
    assert change.passes(kline(60_000, 100.5, False))  # the next candle opens at that price
    assert not change.passes(kline(60_000, 100.5, False))
    assert change.skipped == 2


def test_all_market_book_tickers_compare_per_symbol() -> None:
    stream = parse_stream("!bookTicker", "binance-usdm")
    assert per_symbol(stream)
    change = ChangeFilter(("bid_price", "ask_price"), by_symbol=True)
    assert change.passes(quote(1, 10.0, 11.0, symbol="A"))
    assert change.passes(quote(2, 20.0, 21.0, symbol="B"))
    assert not change.passes(quote(3, 10.0, 11.0, symbol="A"))
    assert change.passes(quote(4, 10.0, 12.0, symbol="A"))
    assert not change.passes(quote(5, 20.0, 21.0, symbol="B"))


def test_contract_info_named_fields_compare_per_symbol() -> None:
    """``!contractInfo`` has no default fields, but named ones are compared per symbol, as on
    ``!bookTicker`` (one contract's change must not hide another's)."""
    venue = "binance-usdm"
    stream = parse_stream("!contractInfo", venue)
    assert per_symbol(stream)
    assert fields("!contractInfo", ("status",), venue) == ("status",)

    def info(time: int, symbol: str, status: str) -> object:
        return ev.ContractInfo(time, symbol, symbol, "PERPETUAL", 4133404800000, 1, status)

    change = ChangeFilter(("status",), by_symbol=per_symbol(stream))
    assert change.passes(info(1, "BTCUSDT", "TRADING"))
    assert change.passes(info(2, "ETHUSDT", "TRADING"))  # another contract: its own last
    assert not change.passes(info(3, "BTCUSDT", "TRADING"))
    assert change.passes(info(4, "ETHUSDT", "SETTLING"))
    assert not change.passes(info(5, "ETHUSDT", "SETTLING"))
    assert change.skipped == 2


def test_throttle_leading_and_trailing_edges() -> None:
    throttle = Throttle(1.0)
    assert throttle.offer("a", 0.0)  # leading edge: at once
    assert not throttle.offer("b", 0.2)
    assert not throttle.offer("c", 0.7)  # b is replaced
    assert throttle.deadline == 1.0
    assert throttle.due(0.9) == []
    assert throttle.due(1.0) == ["c"]  # trailing edge: the newest
    assert throttle.conflated == 1
    assert not throttle.offer("d", 1.5)  # within the interval of the trailing delivery
    assert throttle.due(2.0) == ["d"]
    assert throttle.offer("e", 3.5)  # a quiet interval: at once again
    assert throttle.drop() == 0


def test_throttle_per_symbol_keeps_each_symbols_newest() -> None:
    throttle = Throttle(1.0, by_symbol=True)

    def q(symbol: str, u: int) -> object:
        return quote(u, 1.0, 2.0, symbol=symbol)

    assert throttle.offer(q("A", 1), 0.0)
    for event in (q("A", 2), q("B", 3), q("A", 4)):
        assert not throttle.offer(event, 0.5)
    assert [e.update_id for e in throttle.due(1.0)] == [3, 4]  # type: ignore[attr-defined]
    assert throttle.conflated == 1


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.01, 5.0),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60),
)
def test_throttle_bounds_and_never_holds_the_last_value(interval: float, gaps: list[float]) -> None:
    """Driven like the shell drives it: timers fire at the deadline before later arrivals."""
    throttle = Throttle(interval)
    now = 0.0
    delivered: list[tuple[float, int]] = []
    for index, gap in enumerate(gaps):
        arrival = now + gap * interval * 2
        while throttle.deadline is not None and throttle.deadline <= arrival:
            at = throttle.deadline
            delivered += [(at, e) for e in throttle.due(at)]
        now = arrival
        if throttle.offer(index, now):
            delivered.append((now, index))
    if throttle.deadline is not None:
        at = throttle.deadline
        assert at <= now + interval  # held at most one interval
        delivered += [(at, e) for e in throttle.due(at)]
    times = [at for at, _ in delivered]
    assert all(b - a >= interval - 1e-9 for a, b in itertools.pairwise(times))
    assert delivered[-1][1] == len(gaps) - 1  # the newest value always arrives
    order = [e for _, e in delivered]
    assert order == sorted(order)  # newer replaces older, never the reverse
    assert throttle.conflated == len(gaps) - len(delivered)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [("bid_price",), ("bid_price", "ask_price"), ("bid_price", "ask_price", "bid_quantity")]
    ),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)), max_size=40),
)
def test_the_gate_decides_as_the_filter(fields: tuple[str, ...], moves: list[Any]) -> None:
    """The closure the client installs (comparisons written out) passes exactly the events the
    reference filter passes."""
    from fastmd.core.selective import change_gate

    events = [quote(u, float(b), float(a), float(q)) for u, (b, a, q) in enumerate(moves)]
    passed: list[object] = []
    gate, skipped = change_gate(fields, passed.append)
    reference = ChangeFilter(fields)
    for event in events:
        gate(event)
    assert passed == [e for e in events if reference.passes(e)]
    assert skipped() == reference.skipped == len(events) - len(passed)


def test_usdm_streams_added_later() -> None:
    venue = "binance-usdm"
    assert fields("btcusdt_perpetual@continuousKline_1m", True, venue) == (
        "kline.close",
        "kline.is_closed",
    )
    assert fields("btcusdt@compositeIndex", True, venue) == ("price",)
    for name in ("btcusdt@rpiDepth@500ms", "!contractInfo"):
        with pytest.raises(ValueError, match="not snapshots of state"):
            check_throttle(parse_stream(name, venue), name, 1.0)
    with pytest.raises(ValueError, match="only the symbols that changed"):
        fields("!assetIndex@arr", True, venue)
