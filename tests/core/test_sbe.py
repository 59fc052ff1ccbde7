"""The SBE decoder (fastmd.core.sbe, ``Decoder(encoding="sbe")``) on hand-built frames.

Frames are written here with ``struct.pack`` from the schema's layout (binance-protocol.md §8,
``stream_1_0.xml``), independently of the decoder. Every test runs on both implementations: the C
extension (``compiled``) and the pure-Python fallback (``python``); when CI is set, a missing C
extension fails the run instead of skipping.
"""

from __future__ import annotations

import os
import struct
from decimal import Decimal
from typing import Any

import msgspec
import pytest

import fastmd
from fastmd import DecodeError, DecodeErrorCategory as Cat
from fastmd.core.sbe import SbeDecoder, compiled_available

SYMBOL = b"BTCUSDT"
T0 = 1_700_000_000_123_456  # microseconds


def header(template: int, block_length: int, schema: int = 1, version: int = 0) -> bytes:
    return struct.pack("<HHHH", block_length, template, schema, version)


def symbol(raw: bytes = SYMBOL) -> bytes:
    return bytes([len(raw)]) + raw


def trades_frame(
    trades: list[tuple[int, int, int, int]],
    *,
    price_exp: int = -2,
    qty_exp: int = -8,
    root_pad: bytes = b"",
    entry_pad: bytes = b"",
    raw_symbol: bytes = SYMBOL,
    event_time: int = T0,
    transact_time: int = T0 - 7,
    **head: int,
) -> bytes:
    root = struct.pack("<qqbb", event_time, transact_time, price_exp, qty_exp) + root_pad
    group = struct.pack("<HI", 25 + len(entry_pad), len(trades))
    entries = b"".join(struct.pack("<qqqB", *t) + entry_pad for t in trades)
    return header(10000, len(root), **head) + root + group + entries + symbol(raw_symbol)


def best_bid_ask_frame(
    bid: int = 6543210,
    bid_qty: int = 150000000,
    ask: int = 6543211,
    ask_qty: int = 2,
    *,
    update_id: int = 99,
    price_exp: int = -2,
    qty_exp: int = -8,
    root_pad: bytes = b"",
    raw_symbol: bytes = SYMBOL,
    **head: int,
) -> bytes:
    root = struct.pack("<qqbbqqqq", T0, update_id, price_exp, qty_exp, bid, bid_qty, ask, ask_qty)
    root += root_pad
    return header(10001, len(root), **head) + root + symbol(raw_symbol)


def levels(entries: list[tuple[int, int]], pad: bytes = b"") -> bytes:
    body = b"".join(struct.pack("<qq", p, q) + pad for p, q in entries)
    return struct.pack("<HH", 16 + len(pad), len(entries)) + body


def depth_frame(
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    *,
    first_id: int = 100,
    last_id: int = 105,
    price_exp: int = -2,
    qty_exp: int = -8,
    root_pad: bytes = b"",
    entry_pad: bytes = b"",
    raw_symbol: bytes = SYMBOL,
    **head: int,
) -> bytes:
    root = struct.pack("<qqqbb", T0, first_id, last_id, price_exp, qty_exp) + root_pad
    sides = levels(bids, entry_pad) + levels(asks, entry_pad)
    return header(10003, len(root), **head) + root + sides + symbol(raw_symbol)


def snapshot_frame(
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    *,
    update_id: int = 105,
    price_exp: int = -2,
    qty_exp: int = -8,
    root_pad: bytes = b"",
    entry_pad: bytes = b"",
    raw_symbol: bytes = SYMBOL,
    **head: int,
) -> bytes:
    root = struct.pack("<qqbb", T0, update_id, price_exp, qty_exp) + root_pad
    sides = levels(bids, entry_pad) + levels(asks, entry_pad)
    return header(10002, len(root), **head) + root + sides + symbol(raw_symbol)


IMPLEMENTATIONS = [
    pytest.param(True, id="compiled"),
    pytest.param(False, id="python"),
]


def make(compiled: bool, price_type: Any = float, **options: Any) -> SbeDecoder:
    if compiled and not compiled_available():
        if os.environ.get("CI"):
            pytest.fail("the C extension fastmd._sbe is not built (pip install -e .)")
        pytest.skip("the C extension fastmd._sbe is not built")
    return SbeDecoder(price_type=price_type, compiled=compiled, **options)


@pytest.fixture(params=IMPLEMENTATIONS)
def compiled(request: pytest.FixtureRequest) -> bool:
    flag: bool = request.param
    return flag


def category_of(decoder: SbeDecoder, frame: bytes) -> Cat:
    with pytest.raises(DecodeError) as info:
        decoder.decode(frame)
    return info.value.category


# -- every template ---------------------------------------------------------------------------


def test_trades_frame_gives_one_trade_per_entry(compiled: bool) -> None:
    frame = trades_frame([(5, 6543210, 150000000, 1), (6, 6543299, 2, 0)])
    messages = make(compiled).decode(frame)
    assert [m.stream for m in messages] == ["btcusdt@trade", "btcusdt@trade"]
    first, second = (m.event for m in messages)
    assert isinstance(first, fastmd.Trade)
    assert first == fastmd.Trade(
        event_time=T0,
        symbol="BTCUSDT",
        trade_id=5,
        price=65432.10,
        quantity=1.5,
        trade_time=T0 - 7,
        is_buyer_maker=True,
    )
    assert (second.trade_id, second.price, second.quantity) == (6, 65432.99, 2e-08)
    assert second.is_buyer_maker is False


def test_empty_trades_group_gives_no_message(compiled: bool) -> None:
    assert make(compiled).decode(trades_frame([])) == []


def test_best_bid_ask(compiled: bool) -> None:
    frame = best_bid_ask_frame()
    assert len(frame) == 66  # binance-protocol.md §8: a BTCUSDT bestBidAsk is 66 bytes
    (message,) = make(compiled).decode(frame)
    assert message.stream == "btcusdt@bestBidAsk"
    assert message.event == fastmd.BookTicker(
        update_id=99,
        symbol="BTCUSDT",
        bid_price=65432.10,
        bid_quantity=1.5,
        ask_price=65432.11,
        ask_quantity=2e-08,
        event_time=T0,
    )


def test_depth_diff(compiled: bool) -> None:
    frame = depth_frame([(100, 5), (99, 0)], [(101, 7)])
    (message,) = make(compiled).decode(frame)
    assert message.stream == "btcusdt@depth"
    assert message.event == fastmd.DepthUpdate(
        event_time=T0,
        symbol="BTCUSDT",
        first_update_id=100,
        final_update_id=105,
        bids=[(1.0, 5e-08), (0.99, 0.0)],
        asks=[(1.01, 7e-08)],
    )


def test_depth_snapshot(compiled: bool) -> None:
    bids = [(1000 - i, i + 1) for i in range(20)]
    asks = [(1001 + i, i + 1) for i in range(20)]
    frame = snapshot_frame(bids, asks)
    assert len(frame) == 682  # binance-protocol.md §8: depth20 with 20 levels a side
    (message,) = make(compiled).decode(frame)
    event = message.event
    assert message.stream == "btcusdt@depth20"
    assert isinstance(event, fastmd.PartialDepth)
    assert event.symbol == "BTCUSDT"
    assert (event.last_update_id, event.event_time) == (105, T0)
    assert event.bids[0] == (10.0, 1e-08)
    assert event.asks[19] == (10.2, 2e-07)
    assert len(event.bids) == len(event.asks) == 20


def test_exact_number_types(compiled: bool) -> None:
    frame = best_bid_ask_frame(1000000, 0, 123, 5, price_exp=-8, qty_exp=2)
    (as_str,) = make(compiled, str).decode(frame)
    assert (as_str.event.bid_price, as_str.event.bid_quantity) == ("0.01000000", "0")
    assert (as_str.event.ask_price, as_str.event.ask_quantity) == ("0.00000123", "500")
    (as_decimal,) = make(compiled, Decimal).decode(frame)
    assert as_decimal.event.bid_price == Decimal("0.01000000")
    assert str(as_decimal.event.bid_price) == "0.01000000"
    assert as_decimal.event.ask_quantity == Decimal(500)
    negative = depth_frame([(-5, 1)], [], price_exp=-3, qty_exp=0)
    (message,) = make(compiled, str).decode(negative)
    assert message.event.bids == [("-0.005", "1")]


def test_messages_encode_to_the_combined_envelope(compiled: bool) -> None:
    (message,) = make(compiled).decode(best_bid_ask_frame())
    encoded = msgspec.json.decode(msgspec.json.encode(message))
    assert encoded["stream"] == "btcusdt@bestBidAsk"
    assert encoded["data"]["b"] == 65432.1


# -- forward compatibility -------------------------------------------------------------------


def test_padded_root_blocks_and_entries_are_skipped(compiled: bool) -> None:
    decoder = make(compiled)
    pad = b"\xee" * 9
    plain = decoder.decode(trades_frame([(5, 1, 2, 1), (6, 3, 4, 0)]))
    padded = decoder.decode(trades_frame([(5, 1, 2, 1), (6, 3, 4, 0)], root_pad=pad, entry_pad=pad))
    assert [m.event for m in padded] == [m.event for m in plain]
    sides = ([(1, 2), (3, 4)], [(5, 6)])
    for build in (depth_frame, snapshot_frame):
        (plain_depth,) = decoder.decode(build(*sides))
        (padded_depth,) = decoder.decode(build(*sides, root_pad=pad, entry_pad=pad))
        assert padded_depth.event == plain_depth.event
    (padded_bba,) = decoder.decode(best_bid_ask_frame(root_pad=pad))
    assert padded_bba.event == decoder.decode(best_bid_ask_frame())[0].event


def test_bytes_after_the_symbol_are_ignored(compiled: bool) -> None:
    (message,) = make(compiled).decode(best_bid_ask_frame() + b"\x03new")
    assert message.event.update_id == 99


# -- bad frames --------------------------------------------------------------------------------

GOOD_FRAMES = [
    trades_frame([(5, 1, 2, 1), (6, 3, 4, 0)]),
    best_bid_ask_frame(),
    depth_frame([(1, 2)], [(3, 4), (5, 6)]),
    snapshot_frame([(1, 2), (7, 8)], [(3, 4)]),
]


@pytest.mark.parametrize("frame", GOOD_FRAMES, ids=["trades", "bba", "depth", "depth20"])
def test_truncated_at_every_offset(compiled: bool, frame: bytes) -> None:
    decoder = make(compiled)
    for cut in range(len(frame)):
        assert category_of(decoder, frame[:cut]) is Cat.TRUNCATED, cut
    assert decoder.error_counts == {Cat.TRUNCATED: len(frame)}


def test_huge_counts_are_truncated_not_allocated(compiled: bool) -> None:
    decoder = make(compiled)
    huge = bytearray(trades_frame([(5, 1, 2, 1)]))
    struct.pack_into("<HI", huge, 26, 25, 0xFFFFFFFF)
    assert category_of(decoder, bytes(huge)) is Cat.TRUNCATED
    struct.pack_into("<HI", huge, 26, 0xFFFF, 0xFFFFFFFF)
    assert category_of(decoder, bytes(huge)) is Cat.TRUNCATED
    depth = bytearray(depth_frame([(1, 2)], []))
    struct.pack_into("<HH", depth, 34, 16, 0xFFFF)
    assert category_of(decoder, bytes(depth)) is Cat.TRUNCATED
    long_symbol = best_bid_ask_frame()[:-8] + b"\xff" + SYMBOL
    assert category_of(decoder, long_symbol) is Cat.TRUNCATED


def test_header_checks(compiled: bool) -> None:
    decoder = make(compiled)
    assert category_of(decoder, best_bid_ask_frame(schema=2)) is Cat.SCHEMA_MISMATCH
    assert category_of(decoder, best_bid_ask_frame(version=1)) is Cat.UNKNOWN_VERSION
    unknown = header(10004, 18) + bytes(18) + symbol()
    assert category_of(decoder, unknown) is Cat.UNKNOWN_TEMPLATE
    short_root = header(10001, 49) + best_bid_ask_frame()[8:]
    assert category_of(decoder, short_root) is Cat.BLOCK_TOO_SHORT
    short_entries = bytearray(trades_frame([(5, 1, 2, 1)]))
    struct.pack_into("<H", short_entries, 26, 24)
    assert category_of(decoder, bytes(short_entries)) is Cat.BLOCK_TOO_SHORT
    assert decoder.error_counts == {
        Cat.SCHEMA_MISMATCH: 1,
        Cat.UNKNOWN_VERSION: 1,
        Cat.UNKNOWN_TEMPLATE: 1,
        Cat.BLOCK_TOO_SHORT: 2,
    }


def test_bad_symbols(compiled: bool) -> None:
    decoder = make(compiled)
    assert category_of(decoder, best_bid_ask_frame(raw_symbol=b"BTC\xffUSDT")) is Cat.INVALID_UTF8
    assert category_of(decoder, best_bid_ask_frame(raw_symbol=b"")) is Cat.UNROUTABLE
    assert category_of(decoder, best_bid_ask_frame(raw_symbol=b"BTC@USDT")) is Cat.UNROUTABLE
    (message,) = decoder.decode(best_bid_ask_frame(raw_symbol="ÄBC".encode()))
    assert (message.stream, message.event.symbol) == ("äbc@bestBidAsk", "ÄBC")


def test_bad_values(compiled: bool) -> None:
    decoder = make(compiled)
    assert category_of(decoder, trades_frame([(5, 1, 2, 2)])) is Cat.WRONG_TYPE
    assert category_of(decoder, trades_frame([(-5, 1, 2, 0)])) is Cat.OUT_OF_RANGE
    assert category_of(decoder, trades_frame([], event_time=-1)) is Cat.OUT_OF_RANGE
    assert category_of(decoder, best_bid_ask_frame(update_id=-1)) is Cat.OUT_OF_RANGE
    assert category_of(decoder, depth_frame([], [], last_id=-2)) is Cat.OUT_OF_RANGE
    assert category_of(decoder, snapshot_frame([], [], update_id=-2)) is Cat.OUT_OF_RANGE
    with pytest.raises(DecodeError) as info:
        decoder.decode(trades_frame([(-5, 1, 2, 0)]))
    assert info.value.stream == "btcusdt@trade"


def test_oversized_frames_are_refused_before_parsing(compiled: bool) -> None:
    decoder = make(compiled, max_frame_size=65)
    assert category_of(decoder, best_bid_ask_frame()) is Cat.OVERSIZED


# -- the public Decoder ------------------------------------------------------------------------


def test_decoder_encoding_sbe() -> None:
    decoder = fastmd.Decoder("binance-spot", encoding="sbe")
    frame = trades_frame([(5, 1, 2, 1), (6, 3, 4, 0)])
    assert [m.event.trade_id for m in decoder.decode(frame)] == [5, 6]
    assert [m.event.trade_id for m in decoder.decode_sbe(frame)] == [5, 6]
    assert [m.event.trade_id for m in decoder.fast_decode_sbe(frame)] == [5, 6]
    assert [m.event.trade_id for m in decoder.decode(memoryview(frame))] == [5, 6]
    with pytest.raises(DecodeError):
        decoder.decode(frame[:-1])
    assert decoder.error_counts == {Cat.TRUNCATED: 1}
    reply = decoder.decode_json(b'{"result":null,"id":1}')
    assert isinstance(reply, fastmd.ControlReply)
    with pytest.raises(ValueError, match="stream"):
        decoder.decode(frame, stream="btcusdt@trade")


def test_decoder_encoding_validation() -> None:
    with pytest.raises(ValueError, match="spot"):
        fastmd.Decoder("binance-usdm", encoding="sbe")
    with pytest.raises(ValueError, match="encoding"):
        fastmd.Decoder("binance-spot", encoding="xml")  # type: ignore[arg-type]
    json_decoder = fastmd.Decoder("binance-spot")
    with pytest.raises(fastmd.InvalidState):
        json_decoder.decode_sbe(best_bid_ask_frame())
    assert json_decoder.encoding == "json"


def test_routes_are_bounded() -> None:
    # max_streams routes are kept for good, then a 1024-entry LRU: a peer sending endless
    # symbols cannot grow the decoder (seen here as message classes made again once evicted)
    decoder = SbeDecoder(max_streams=2, compiled=False)

    def message_class(name: bytes) -> type:
        return type(decoder.decode(best_bid_ask_frame(raw_symbol=name))[0])

    first = {name: message_class(name) for name in (b"S0", b"S1", b"S2")}
    for i in range(3, 1100):
        message_class(b"S%d" % i)
    assert message_class(b"S0") is first[b"S0"]
    assert message_class(b"S1") is first[b"S1"]
    assert message_class(b"S2") is not first[b"S2"]
    assert message_class(b"S1099") is message_class(b"S1099")


def test_implementation_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTMD_PURE_PYTHON", "1")
    assert SbeDecoder().compiled is False
    assert SbeDecoder(compiled=False).compiled is False
    monkeypatch.setenv("FASTMD_PURE_PYTHON", "0")
    assert SbeDecoder().compiled is compiled_available()
    monkeypatch.delenv("FASTMD_PURE_PYTHON")
    assert SbeDecoder().compiled is compiled_available()
    if compiled_available():
        assert SbeDecoder(compiled=True).compiled is True
    elif os.environ.get("CI"):
        pytest.fail("the C extension fastmd._sbe is not built (pip install -e .)")
    else:
        with pytest.raises(ImportError, match="pip install"):
            SbeDecoder(compiled=True)
