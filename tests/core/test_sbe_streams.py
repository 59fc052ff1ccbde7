"""SBE stream names (fastmd.core.sbe_streams): parsing, refusals, and agreement with the names the
SBE decoder gives the messages it decodes (fastmd.core.sbe.STREAM_SUFFIXES)."""

from __future__ import annotations

import pytest

from fastmd import StreamNameError
from fastmd.core import events as ev
from fastmd.core.codec import event_class
from fastmd.core.sbe import STREAM_SUFFIXES
from fastmd.core.sbe_streams import SBE_STREAM_TYPES, in_microseconds, parse_sbe_stream
from fastmd.core.streams import StreamKind

EXPECTED = {
    "btcusdt@trade": (StreamKind.TRADE, None, ev.Trade),
    "btcusdt@bestBidAsk": (StreamKind.BOOK_TICKER, None, ev.BookTicker),
    "btcusdt@depth": (StreamKind.DEPTH, None, ev.DepthUpdate),
    "btcusdt@depth20": (StreamKind.PARTIAL_DEPTH, 20, ev.PartialDepth),
}


def test_the_names_parsed_are_the_names_the_decoder_gives() -> None:
    assert {"@" + tail for tail in SBE_STREAM_TYPES} == set(STREAM_SUFFIXES.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse(name: str) -> None:
    kind, levels, cls = EXPECTED[name]
    stream = parse_sbe_stream(name)
    assert (stream.kind, stream.symbol, stream.levels) == (kind, "btcusdt", levels)
    assert event_class(stream) is cls


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("btcusdt@aggTrade", "<symbol>@bestBidAsk"),
        ("btcusdt@bookTicker", "<symbol>@bestBidAsk"),
        ("btcusdt@depth@100ms", "<symbol>@depth20"),
        ("btcusdt@depth5", "<symbol>@depth20"),
        ("btcusdt", "<symbol>@trade"),
        ("@trade", "no symbol"),
        ("BTCUSDT@trade", "lowercase"),
        ("btc/usdt@trade", "btc/usdt"),
    ],
)
def test_refused(name: str, says: str) -> None:
    with pytest.raises(StreamNameError, match=says):
        parse_sbe_stream(name)


def test_not_a_str() -> None:
    with pytest.raises(StreamNameError, match="not int"):
        parse_sbe_stream(42)  # type: ignore[arg-type]


def test_in_microseconds() -> None:
    trade = ev.Trade(
        event_time=1_700_000_000_123,
        symbol="BTCUSDT",
        trade_id=7,
        price=1.5,
        quantity=2.0,
        trade_time=1_700_000_000_120,
        is_buyer_maker=False,
    )
    moved = in_microseconds(trade)
    assert (moved.event_time, moved.trade_time) == (1_700_000_000_123_000, 1_700_000_000_120_000)
    assert (moved.trade_id, moved.price, moved.symbol) == (7, 1.5, "BTCUSDT")

    depth = ev.DepthUpdate(
        event_time=5, symbol="BTCUSDT", first_update_id=1, final_update_id=2, bids=[], asks=[]
    )
    assert in_microseconds(depth).event_time == 5000
    assert in_microseconds(depth).transaction_time is None  # None stays None

    no_time = ev.PartialDepth(last_update_id=3, bids=[], asks=[])
    assert in_microseconds(no_time) is no_time  # no time: returned as it is
