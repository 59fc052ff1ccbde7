"""The single-pass decoder: routing, learned streams, exact modes and the bad-input matrix
(reliability.md section (c))."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

import fastmd
from fastmd import DecodeError, DecodeErrorCategory as Cat, Decoder
from fastmd.core import codec

TRADE: dict[str, Any] = {
    "e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.001", "q": "100",
    "T": 1672515782136, "m": True, "M": True,
}  # fmt: skip
AGG: dict[str, Any] = {
    "e": "aggTrade", "E": 1672515782136, "s": "BNBBTC", "a": 12345, "p": "0.001", "q": "100",
    "f": 100, "l": 105, "T": 1672515782136, "m": True, "M": True,
}  # fmt: skip
DEPTH: dict[str, Any] = {
    "e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": 157, "u": 160,
    "b": [["0.0024", "10"]], "a": [["0.0026", "100"]],
}  # fmt: skip
FORCE: dict[str, Any] = {
    "e": "forceOrder", "E": 1568014460893,
    "o": {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.014", "p": "9910",
          "ap": "9910", "X": "FILLED", "l": "0.014", "z": "0.014", "T": 1568014460893},
}  # fmt: skip
STREAM = "bnbbtc@trade"


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def combined(data: Any, stream: str = STREAM) -> bytes:
    return dumps({"stream": stream, "data": data})


def trade(**changes: Any) -> dict[str, Any]:
    return {**TRADE, **changes}


def expected_trade(**changes: Any) -> fastmd.Trade[float]:
    fields = {
        "event_time": 1672515782136, "symbol": "BNBBTC", "trade_id": 12345, "price": 0.001,
        "quantity": 100.0, "trade_time": 1672515782136, "is_buyer_maker": True,
    }  # fmt: skip
    fields.update(changes)
    return fastmd.Trade(**fields)


GOOD = combined(TRADE)


# -- routing and buffers ---------------------------------------------------------------------


def test_combined_frame_buffer_types_agree() -> None:
    decoder = Decoder()
    results = [
        decoder.decode(GOOD),  # first frame of the stream: learned on the slow path
        decoder.decode(bytearray(GOOD)),
        decoder.decode(memoryview(GOOD)),
        decoder.decode(memoryview(b"xx" + GOOD + b"yy")[2:-2]),
    ]
    decoder.register([STREAM])  # now on the fast path
    results += [decoder.decode(b) for b in (GOOD, bytearray(GOOD), memoryview(GOOD))]
    for result in results:
        assert isinstance(result, fastmd.Message)
        assert result.stream == STREAM
        assert result.event == expected_trade()
        assert result == results[0]


def test_raw_frame_buffer_types_agree() -> None:
    decoder = Decoder()
    raw = dumps(TRADE)
    results = [decoder.decode(kind(raw), stream=STREAM) for kind in (bytes, bytearray, memoryview)]
    assert all(r == results[0] for r in results)
    assert results[0].event == expected_trade()


def test_raw_frame_with_stream_keeps_the_name() -> None:
    decoder = Decoder()
    message = decoder.decode(dumps(DEPTH), stream="bnbbtc@depth@100ms")
    assert message.stream == "bnbbtc@depth@100ms"
    assert message.event.first_update_id == 157
    assert message.event.bids == [(0.0024, 10.0)]


@pytest.mark.parametrize(
    ("venue", "payload", "stream"),
    [
        ("binance-spot", TRADE, "bnbbtc@trade"),
        ("binance-spot", AGG, "bnbbtc@aggTrade"),
        ("binance-spot", DEPTH, "bnbbtc@depth"),
        ("binance-spot", {**TRADE, "e": "blockTrade"}, "bnbbtc@blockTrade"),
        ("binance-usdm", FORCE, "btcusdt@forceOrder"),
        ("binance-usdm", {**AGG, "s": "BTCUSDT"}, "btcusdt@aggTrade"),
        ("binance-spot", {"e": "serverShutdown", "E": 5}, "!serverShutdown"),
        ("binance-spot", {**TRADE, "s": "币安人生USDT"}, "币安人生usdt@trade"),
    ],
)
def test_raw_frame_without_stream_derives_name(
    venue: str, payload: dict[str, Any], stream: str
) -> None:
    decoder = Decoder(venue)  # type: ignore[arg-type]
    message = decoder.decode(dumps(payload))
    assert message.stream == stream
    assert stream in decoder.streams
    assert message == decoder.decode(combined(payload, stream))


def test_combined_frame_with_data_before_stream() -> None:
    frame = b'{"data":' + dumps(TRADE) + b',"stream":"bnbbtc@trade"}'
    decoder = Decoder()
    assert decoder.decode(frame).event == expected_trade()
    decoder.register([STREAM])
    assert decoder.decode(frame).event == expected_trade()


def test_register_then_decode() -> None:
    decoder = Decoder()
    decoder.register(["bnbbtc@trade", "bnbbtc@depth@100ms", "bnbbtc@depth20"])
    assert {"bnbbtc@trade", "bnbbtc@depth@100ms", "bnbbtc@depth20"} <= decoder.streams
    assert decoder.decode(GOOD).event == expected_trade()
    depth = decoder.decode(combined(DEPTH, "bnbbtc@depth@100ms"))
    assert depth.stream == "bnbbtc@depth@100ms"
    assert depth.event.final_update_id == 160
    partial = decoder.decode(
        combined({"lastUpdateId": 7, "bids": [], "asks": [["1.5", "2"]]}, "bnbbtc@depth20")
    )
    assert partial.event.symbol == "BNBBTC"
    assert partial.event.asks == [(1.5, 2.0)]
    assert sum(decoder.error_counts.values()) == 0


def test_register_invalid_registers_nothing() -> None:
    decoder = Decoder()
    before = decoder.streams
    with pytest.raises(fastmd.StreamNameError, match="not lowercase"):
        decoder.register(["ethbtc@trade", "ETHBTC@trade"])
    assert decoder.streams == before
    with pytest.raises(fastmd.StreamNameError, match="binance-spot"):
        decoder.register(["btcusdt@markPrice"])
    assert decoder.streams == before


def test_learned_streams() -> None:
    decoder = Decoder()
    start = len(decoder.streams)
    names = []
    for i in range(50):
        symbol = f"sym{i}usdt"
        if i % 2:
            name, payload = f"{symbol}@trade", trade(s=symbol.upper(), t=i)
        else:
            name, payload = f"{symbol}@aggTrade", {**AGG, "s": symbol.upper(), "a": i}
        message = decoder.decode(combined(payload, name))
        names.append(name)
        assert message.stream == name
        assert message.event.symbol == symbol.upper()
        if i % 2:
            assert type(message.event) is fastmd.Trade
            assert message.event.trade_id == i
        else:
            assert type(message.event) is fastmd.AggTrade
            assert message.event.agg_trade_id == i
        assert name in decoder.streams
        assert len(decoder.streams) == start + i + 1
    # every learned stream decodes again, to equal messages
    for i, name in enumerate(names):
        symbol = f"sym{i}usdt"
        payload = trade(s=symbol.upper(), t=i) if i % 2 else {**AGG, "s": symbol.upper(), "a": i}
        first = decoder.decode(combined(payload, name))
        assert first == decoder.decode(combined(payload, name))
        assert first == decoder.message(name, first.event)
    assert sum(decoder.error_counts.values()) == 0


def test_max_streams_further_streams_still_decode() -> None:
    decoder = Decoder(max_streams=5)
    for round_ in range(2):
        for i in range(20):
            symbol = f"coin{i}btc"
            message = decoder.decode(
                combined(trade(s=symbol.upper(), t=i + round_), f"{symbol}@trade")
            )
            assert message.stream == f"{symbol}@trade"
            assert message.event == expected_trade(symbol=symbol.upper(), trade_id=i + round_)
            depth = decoder.decode(
                combined({"lastUpdateId": i, "bids": [["1", "2"]], "asks": []}, f"{symbol}@depth5")
            )
            assert depth.stream == f"{symbol}@depth5"
            assert depth.event.symbol == symbol.upper()
            assert depth.event.last_update_id == i
            assert depth.event.bids == [(1.0, 2.0)]
            raw = decoder.decode(dumps(trade(s=symbol.upper(), t=i)), stream=f"{symbol}@trade")
            assert raw.event == expected_trade(symbol=symbol.upper(), trade_id=i)
        assert len(decoder.streams - {"!serverShutdown"}) <= 5  # the built-in route is extra
    assert sum(decoder.error_counts.values()) == 0


def test_streams_beyond_max_streams_give_equal_messages() -> None:
    """The same frame of a stream decodes to equal messages, whether or not the stream got one of
    the max_streams fast-path routes, and Decoder.message builds an equal message."""
    decoder = Decoder(max_streams=2)
    for i in range(3):
        decoder.decode(combined(trade(s=f"FILL{i}"), f"fill{i}@trade"))
    frame = combined(trade(s="LATEBTC"), "latebtc@trade")
    first, second = decoder.decode(frame), decoder.decode(frame)
    assert first.event == second.event
    assert first == second
    assert decoder.message("latebtc@trade", first.event) == first
    depth = combined({"lastUpdateId": 1, "bids": [], "asks": []}, "latebtc@depth5")
    assert decoder.decode(depth).event == decoder.decode(depth).event


def test_partial_depth_beyond_max_streams_does_not_leak() -> None:
    """Frames of a stream without a fast-path route must not leave a decoder behind each."""
    decoder = Decoder(max_streams=2)
    decoder.decode(combined(trade(), "fill@trade"))
    frame = combined({"lastUpdateId": 1, "bids": [["1", "1"]], "asks": []}, "latebtc@depth5")
    for _ in range(20):
        decoder.decode(frame)

    def live_decoders() -> int:
        gc.collect()
        # type(), not isinstance(): isinstance() of a dead weakref.proxy raises ReferenceError
        return sum(type(o) is msgspec.json.Decoder for o in gc.get_objects())

    before = live_decoders()
    for _ in range(200):
        assert decoder.decode(frame).event.symbol == "LATEBTC"
    assert live_decoders() - before < 10


def test_message_helper_equals_decoded() -> None:
    decoder = Decoder()
    decoded = decoder.decode(GOOD)
    built = decoder.message(STREAM, expected_trade())
    assert built == decoded
    assert built.stream == STREAM
    assert isinstance(built, fastmd.Message)
    assert "bnbbtc@trade" in repr(built)
    # a stream not seen yet
    fresh = Decoder()
    built = fresh.message("ethbtc@trade", expected_trade(symbol="ETHBTC"))
    assert built == fresh.decode(combined(trade(s="ETHBTC"), "ethbtc@trade"))
    with pytest.raises(fastmd.StreamNameError):
        fresh.message("ETHBTC@trade", expected_trade())


ROUND_TRIP_FRAMES = [
    combined(TRADE),
    combined(AGG, "bnbbtc@aggTrade"),
    combined(DEPTH, "bnbbtc@depth@100ms"),
    combined({"lastUpdateId": 160, "bids": [["0.0024", "10"]], "asks": []}, "bnbbtc@depth20@100ms"),
    combined({"u": 4, "s": "BNBUSDT", "b": "1.5", "B": "2", "a": "1.6", "A": "3"},
             "bnbusdt@bookTicker"),
    combined({"e": "referencePrice", "s": "BAZUSD", "r": None, "t": 1}, "bazusd@referencePrice"),
    combined({"e": "serverShutdown", "E": 1770123456789}, "!serverShutdown"),
    combined(
        [{"e": "24hrMiniTicker", "E": 1, "s": "BNBBTC", "c": "0.0025", "o": "0.0010",
          "h": "0.0025", "l": "0.0010", "v": "10000", "q": "18"}],
        "!miniTicker@arr",
    ),
    combined(
        {"e": "kline", "E": 1, "s": "BNBBTC",
         "k": {"t": 0, "T": 59999, "s": "BNBBTC", "i": "1m", "f": -1, "L": -1, "o": "1", "c": "1",
               "h": "1", "l": "1", "v": "0", "n": 0, "x": True, "q": "0", "V": "0", "Q": "0"}},
        "bnbbtc@kline_1m@+08:00",
    ),
]  # fmt: skip


@pytest.mark.parametrize("price_type", [float, str, Decimal])
@pytest.mark.parametrize("frame", ROUND_TRIP_FRAMES, ids=lambda f: json.loads(f)["stream"])
def test_encode_round_trip(frame: bytes, price_type: Any) -> None:
    decoder = Decoder(price_type=price_type)
    message = decoder.decode(frame)
    encoded = msgspec.json.encode(message)
    envelope = json.loads(encoded)
    assert set(envelope) == {"stream", "data"}
    assert envelope["stream"] == json.loads(frame)["stream"]
    assert decoder.decode(encoded) == message
    assert sum(decoder.error_counts.values()) == 0


def test_futures_round_trip() -> None:
    decoder = Decoder("binance-usdm")
    for frame in (combined(FORCE, "btcusdt@forceOrder"), combined(FORCE, "!forceOrder@arr")):
        message = decoder.decode(frame)
        assert decoder.decode(msgspec.json.encode(message)) == message


# -- bad input -------------------------------------------------------------------------------

DEEP = b"[" * 10**5 + b"]" * 10**5


def _deep(frame: bytes) -> bytes:
    assert b'"X":0' in frame
    return frame.replace(b'"X":0', b'"X":' + DEEP)


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in TRADE.items() if k != key}


# (id, frame, category, stream the error must name or None when not asserted)
BAD_COMBINED: list[tuple[str, bytes, Cat, str | None]] = [
    ("not-json", b"hello", Cat.NOT_JSON, None),
    ("empty", b"", Cat.NOT_JSON, None),
    ("truncated", GOOD[:-5], Cat.NOT_JSON, None),
    ("trailing-garbage", GOOD + b"}garbage", Cat.NOT_JSON, None),
    ("nan", b"NaN", Cat.NOT_JSON, None),
    ("bom", b"\xef\xbb\xbf" + GOOD, Cat.NOT_JSON, None),
    ("invalid-utf8", GOOD.replace(b"BNBBTC", b"BN\xff\xfeBTC"), Cat.INVALID_UTF8, None),
    ("deep-nesting", _deep(combined(trade(X=0))), Cat.TOO_DEEP, None),
    ("t-list", combined(trade(t=[5])), Cat.WRONG_TYPE, STREAM),
    ("p-true", combined(trade(p=True)), Cat.WRONG_TYPE, STREAM),
    ("p-not-a-number", combined(trade(p="abc")), Cat.WRONG_TYPE, STREAM),
    ("m-string", combined(trade(m="yes")), Cat.WRONG_TYPE, STREAM),
    ("p-null", combined(trade(p=None)), Cat.WRONG_TYPE, STREAM),
    ("t-null", combined(trade(t=None)), Cat.WRONG_TYPE, STREAM),
    ("missing-q", combined(_without("q")), Cat.MISSING_FIELD, STREAM),
    ("missing-t", combined(_without("t")), Cat.MISSING_FIELD, STREAM),
    ("negative-id", combined(trade(t=-1)), Cat.OUT_OF_RANGE, STREAM),
    ("id-2**64", combined(trade(t=2**64)), Cat.OUT_OF_RANGE, STREAM),
    ("id-2**63", combined(trade(t=2**63)), Cat.OUT_OF_RANGE, STREAM),
    ("id-30-digits", combined(trade(t=10**30)), Cat.OUT_OF_RANGE, STREAM),
    ("negative-time", combined(trade(E=-5)), Cat.OUT_OF_RANGE, STREAM),
    ("unknown-event", combined(trade(e="zzz")), Cat.UNKNOWN_EVENT, STREAM),
    ("raw-unknown-event", dumps(trade(e="zzz")), Cat.UNKNOWN_EVENT, None),
    ("upper-stream", combined(TRADE, "BTCUSDT@trade"), Cat.UNKNOWN_STREAM, "BTCUSDT@trade"),
    ("bad-stream-type", combined(TRADE, "btcusdt@nope"), Cat.UNKNOWN_STREAM, "btcusdt@nope"),
    ("futures-stream-on-spot", combined(TRADE, "btcusdt@markPrice"), Cat.UNKNOWN_STREAM, None),
    ("retired-stream", combined([], "!ticker@arr"), Cat.UNKNOWN_STREAM, "!ticker@arr"),
    ("envelope-without-data", b'{"stream":"bnbbtc@trade"}', Cat.UNROUTABLE, STREAM),
    ("array-frame", dumps([TRADE]), Cat.UNROUTABLE, None),
    ("bare-number", b"5", Cat.UNROUTABLE, None),
    ("e-less-payload", dumps({"u": 1, "s": "BNBUSDT", "b": "1", "B": "1", "a": "1", "A": "1"}),
     Cat.UNROUTABLE, None),
    ("empty-object", b"{}", Cat.UNROUTABLE, None),
]  # fmt: skip


def _check_bad(
    decoder: Decoder,
    frame: bytes | bytearray | memoryview,
    category: Cat,
    expect_stream: str | None = None,
    **kwargs: Any,
) -> DecodeError:
    """Decode ``frame``: exactly a DecodeError of ``category`` (never a msgspec, Unicode or
    Recursion error), counted once."""
    before = sum(decoder.error_counts.values())
    # any other exception (msgspec's, UnicodeDecodeError, RecursionError...) escapes and fails
    with pytest.raises(DecodeError) as info:
        decoder.decode(frame, **kwargs)
    error = info.value
    assert type(error) is DecodeError
    assert isinstance(error, fastmd.ProtocolError)
    assert isinstance(error, fastmd.FastmdError)
    assert error.category is category, str(error)
    assert str(error)
    if expect_stream is not None:
        assert error.stream == expect_stream
    assert decoder.error_counts[category] >= 1
    assert sum(decoder.error_counts.values()) == before + 1
    return error


@pytest.mark.parametrize("registered", [False, True], ids=["slow-path", "fast-path"])
@pytest.mark.parametrize(
    ("frame", "category", "stream"),
    [case[1:] for case in BAD_COMBINED],
    ids=[case[0] for case in BAD_COMBINED],
)
def test_bad_frame(frame: bytes, category: Cat, stream: str | None, registered: bool) -> None:
    decoder = Decoder()
    if registered:
        decoder.register([STREAM])
    accepted = decoder.decode(GOOD)
    streams = decoder.streams
    _check_bad(decoder, frame, category, stream)
    assert decoder.error_counts[category] == 1
    # the decoder still works, and nothing it had is lost
    assert decoder.streams >= streams
    assert decoder.decode(GOOD) == accepted
    assert accepted.event == expected_trade()
    assert decoder.decode(combined(AGG, "bnbbtc@aggTrade")).event.agg_trade_id == 12345


def test_non_object_data() -> None:
    """reliability.md: an envelope whose data is not an object is counted and dropped."""
    decoder = Decoder()
    decoder.register([STREAM])
    error = _check_bad(decoder, b'{"stream":"bnbbtc@trade","data":5}', Cat.WRONG_TYPE)
    assert error.category in {Cat.WRONG_TYPE, Cat.UNROUTABLE}


RAW = dumps(TRADE)

BAD_RAW: list[tuple[str, bytes, Cat]] = [
    ("not-json", b"hello", Cat.NOT_JSON),
    ("truncated", RAW[:-3], Cat.NOT_JSON),
    ("trailing-garbage", RAW + b"x", Cat.NOT_JSON),
    ("invalid-utf8", RAW.replace(b"BNBBTC", b"BN\xffBTC"), Cat.INVALID_UTF8),
    ("deep-nesting", _deep(dumps(trade(X=0))), Cat.TOO_DEEP),
    ("t-list", dumps(trade(t=[5])), Cat.WRONG_TYPE),
    ("p-true", dumps(trade(p=True)), Cat.WRONG_TYPE),
    ("p-null", dumps(trade(p=None)), Cat.WRONG_TYPE),
    ("missing-q", dumps(_without("q")), Cat.MISSING_FIELD),
    ("negative-id", dumps(trade(t=-1)), Cat.OUT_OF_RANGE),
    ("id-2**64", dumps(trade(t=2**64)), Cat.OUT_OF_RANGE),
    ("unknown-event", dumps(trade(e="zzz")), Cat.UNKNOWN_EVENT),
    ("array", dumps([TRADE]), Cat.WRONG_TYPE),
]


@pytest.mark.parametrize(
    ("frame", "category"), [c[1:] for c in BAD_RAW], ids=[c[0] for c in BAD_RAW]
)
def test_bad_raw_frame_with_stream(frame: bytes, category: Cat) -> None:
    decoder = Decoder()
    accepted = decoder.decode(RAW, stream=STREAM)
    _check_bad(decoder, frame, category, STREAM, stream=STREAM)
    assert decoder.decode(RAW, stream=STREAM) == accepted


def test_raw_frame_with_invalid_stream() -> None:
    decoder = Decoder()
    for name in ("BNBBTC@trade", "bnbbtc@nope", "", "!bookTicker"):
        error = _check_bad(decoder, RAW, Cat.UNKNOWN_STREAM, name, stream=name)
        assert repr(name) in str(error)
    assert decoder.error_counts[Cat.UNKNOWN_STREAM] == 4


def test_error_counts_accumulate() -> None:
    decoder = Decoder()
    frames = [b"x", b"y", combined(trade(t=-1)), combined(trade(t=-2)), combined(trade(t=-3))]
    for frame in frames:
        with pytest.raises(DecodeError):
            decoder.decode(frame)
    assert decoder.error_counts[Cat.NOT_JSON] == 2
    assert decoder.error_counts[Cat.OUT_OF_RANGE] == 3
    assert sum(decoder.error_counts.values()) == 5


def test_binary_frame() -> None:
    decoder = Decoder()
    error = decoder.reject_binary(b"\x00\x01\x02")
    assert type(error) is DecodeError
    assert error.category is Cat.BINARY_FRAME
    assert decoder.error_counts[Cat.BINARY_FRAME] == 1
    error = decoder.reject_binary(memoryview(b"\x00" * 10))
    assert error.category is Cat.BINARY_FRAME
    assert decoder.error_counts[Cat.BINARY_FRAME] == 2
    assert sum(decoder.error_counts.values()) == 2
    assert decoder.decode(GOOD).event == expected_trade()


def _padded(size: int) -> bytes:
    base = combined(trade(X=""))
    frame = base.replace(b'"X":""', b'"X":"' + b"a" * (size - len(base)) + b'"')
    assert len(frame) == size
    return frame


def test_oversized_frame() -> None:
    decoder = Decoder(max_frame_size=1000)
    assert decoder.decode(_padded(1000)).event == expected_trade()
    _check_bad(decoder, _padded(1001), Cat.OVERSIZED)
    _check_bad(decoder, b"x" * 5000, Cat.OVERSIZED)  # rejected before parsing
    _check_bad(decoder, bytearray(_padded(1001)), Cat.OVERSIZED)
    _check_bad(decoder, memoryview(_padded(1001)), Cat.OVERSIZED)
    raw = dumps(trade(X="a" * 1000))
    _check_bad(decoder, raw, Cat.OVERSIZED, stream=STREAM)
    assert decoder.error_counts[Cat.OVERSIZED] == 5
    assert decoder.decode(_padded(1000)).event == expected_trade()


def test_decoder_arguments_validated() -> None:
    with pytest.raises(ValueError, match="binance-coinm"):
        Decoder("binance-coinm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="price_type"):
        Decoder(price_type=int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Decoder(max_frame_size=0)
    with pytest.raises(ValueError, match="positive"):
        Decoder(max_streams=0)


# -- forward compatibility -------------------------------------------------------------------


@pytest.mark.parametrize("registered", [False, True])
def test_unknown_fields_ignored(registered: bool) -> None:
    decoder = Decoder()
    if registered:
        decoder.register([STREAM])
    extra = trade(st=1, ps="BNBBTC", zz={"nested": [1, {"a": None}]}, b=12, a=13, X="new")
    message = decoder.decode(combined(extra))
    assert message.event == expected_trade()
    assert decoder.decode(dumps(extra)).event == expected_trade()
    assert decoder.decode(dumps(extra), stream=STREAM).event == expected_trade()
    envelope_extra = b'{"stream":"bnbbtc@trade","data":' + dumps(TRADE) + b',"extra":[1,2]}'
    assert decoder.decode(envelope_extra).event == expected_trade()


def test_unknown_enum_values_decode() -> None:
    decoder = Decoder("binance-usdm")
    order = {**FORCE["o"], "X": "INSURANCE_FUND", "S": "BOTH", "o": "NEW_TYPE", "f": "GTX"}
    payload = {**FORCE, "o": order}
    for message in (
        decoder.decode(combined(payload, "btcusdt@forceOrder")),
        decoder.decode(dumps(payload)),
        decoder.decode(combined(payload, "!forceOrder@arr")),
    ):
        assert message.event.order.status == "INSURANCE_FUND"
        assert message.event.order.side == "BOTH"
        assert message.event.order.order_type == "NEW_TYPE"
        assert message.event.order.time_in_force == "GTX"
        assert message.event.symbol == "BTCUSDT"
        assert message.event.order.price == 9910.0


def test_numeric_string_ids_float_mode_only() -> None:
    """Documented: float mode converts inside msgspec's lax pass, which also accepts numeric
    strings for integer fields ("t": "5"); the exact modes are strict and reject them."""
    frame = combined(trade(t="5"))
    assert Decoder().decode(frame).event.trade_id == 5
    assert Decoder().decode(dumps(trade(t="5"))).event.trade_id == 5
    for price_type in (str, Decimal):
        decoder = Decoder(price_type=price_type)
        _check_bad(decoder, frame, Cat.WRONG_TYPE, STREAM)
        _check_bad(decoder, dumps(trade(t="5")), Cat.WRONG_TYPE)
        decoder.register([STREAM])
        _check_bad(decoder, frame, Cat.WRONG_TYPE, STREAM)


def test_str_mode_rejects_json_number_prices() -> None:
    decoder = Decoder(price_type=str)
    _check_bad(decoder, combined(trade(p=0.001)), Cat.WRONG_TYPE, STREAM)


def test_agg_trade_invalidated_marker() -> None:
    decoder = Decoder()
    marker = decoder.decode(combined({**AGG, "f": -1, "l": -1, "p": "0"}, "bnbbtc@aggTrade"))
    assert marker.event.is_invalidated is True
    assert (marker.event.first_trade_id, marker.event.last_trade_id) == (-1, -1)
    assert marker.event.price == 0.0
    normal = decoder.decode(combined(AGG, "bnbbtc@aggTrade"))
    assert normal.event.is_invalidated is False
    half = decoder.decode(combined({**AGG, "f": -1, "l": 5}, "bnbbtc@aggTrade"))
    assert half.event.is_invalidated is False
    zero = decoder.decode(combined({**AGG, "f": 0, "l": 0}, "bnbbtc@aggTrade"))
    assert zero.event.is_invalidated is False
    _check_bad(decoder, combined({**AGG, "f": -2, "l": -1}, "bnbbtc@aggTrade"), Cat.OUT_OF_RANGE)
    _check_bad(decoder, combined({**AGG, "a": -1}, "bnbbtc@aggTrade"), Cat.OUT_OF_RANGE)


def test_minus_one_trade_ids_in_kline_and_ticker() -> None:
    decoder = Decoder()
    kline = ROUND_TRIP_FRAMES[-1]
    assert decoder.decode(kline).event.kline.first_trade_id == -1
    ticker = {
        "e": "1hTicker", "E": 1, "s": "BNBBTC", "p": "0", "P": "0", "o": "1", "h": "1", "l": "1",
        "c": "1", "w": "0", "v": "0", "q": "0", "O": 0, "C": 1, "F": -1, "L": -1, "n": 0,
    }  # fmt: skip
    event = decoder.decode(combined(ticker, "bnbbtc@ticker_1h")).event
    assert (event.first_trade_id, event.last_trade_id, event.trade_count) == (-1, -1, 0)
    _check_bad(decoder, combined({**ticker, "n": -1}, "bnbbtc@ticker_1h"), Cat.OUT_OF_RANGE)


@pytest.mark.parametrize("symbol", ["", "BTC-USDT", "BTC USDT", "BTC/USDT"])
def test_raw_payload_with_unusable_symbol(symbol: str) -> None:
    """A raw payload whose symbol cannot form a stream name is a DecodeError like any other bad
    frame (decode documents DecodeError as its only error), and it is counted."""
    decoder = Decoder()
    error = _check_bad_any(decoder, dumps(trade(s=symbol)))
    assert error.category in {Cat.UNKNOWN_STREAM, Cat.UNROUTABLE}
    assert decoder.decode(GOOD).event == expected_trade()


def _check_bad_any(decoder: Decoder, frame: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decoder.decode(frame)
    assert type(info.value) is DecodeError
    assert decoder.error_counts[info.value.category] == 1
    return info.value


def test_server_shutdown_on_raw_connection() -> None:
    decoder = Decoder()
    message = decoder.decode(b'{"e":"serverShutdown","E":1770123456789}', stream=STREAM)
    assert message.stream == "!serverShutdown"
    assert message.event == fastmd.ServerShutdown(event_time=1770123456789)


def test_control_reply_among_data() -> None:
    decoder = Decoder()
    decoder.register([STREAM])
    assert decoder.decode(b'{"result":null,"id":7}') == fastmd.ControlReply(id=7)
    assert decoder.decode(b'{"result":["bnbbtc@trade"],"id":8}').result == ["bnbbtc@trade"]
    reply = decoder.decode(b'{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}')
    assert reply.error == fastmd.ControlError(code=2, msg="Invalid request: invalid stream")
    assert decoder.decode(GOOD).event == expected_trade()
    _check_bad(decoder, b'{"result":null,"id":[1]}', Cat.WRONG_TYPE)


# -- properties ------------------------------------------------------------------------------

decimals = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**12),
    st.text(alphabet="0123456789", max_size=8),
)
ids = st.integers(0, 2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(ids, ids, decimals, decimals, st.booleans(), st.sampled_from(["BNBBTC", "币安人生USDT"]))
def test_trade_values_survive_every_mode(
    trade_id: int, time: int, price: str, quantity: str, maker: bool, symbol: str
) -> None:
    payload = trade(t=trade_id, E=time, T=time, p=price, q=quantity, m=maker, s=symbol)
    stream = f"{symbol.lower()}@trade"
    for price_type, convert in ((float, float), (str, str), (Decimal, Decimal)):
        decoder = Decoder(price_type=price_type)
        for message in (decoder.decode(combined(payload, stream)), decoder.decode(dumps(payload))):
            assert message.stream == stream
            event = message.event
            assert (event.trade_id, event.event_time, event.trade_time) == (trade_id, time, time)
            assert event.price == convert(price)
            assert event.quantity == convert(quantity)
            assert event.is_buyer_maker is maker
            assert event.symbol == symbol
            assert decoder.decode(msgspec.json.encode(message)) == message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_decode_error(frame: bytes) -> None:
    decoder = Decoder()
    decoder.register([STREAM])
    category = None
    try:
        decoder.decode(frame)
    except DecodeError as exc:
        category = exc.category
    if category is not None:
        assert decoder.error_counts[category] == 1
    assert decoder.decode(GOOD).event == expected_trade()


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    # "s" is left out here: test_raw_payload_with_unusable_symbol covers it
    st.sampled_from(sorted(set(TRADE) - {"s"})),
)
def test_any_json_value_in_a_field_only_raises_decode_error(value: Any, key: str) -> None:
    decoder = Decoder()
    for frame in (combined(trade(**{key: value})), dumps(trade(**{key: value}))):
        try:
            message = decoder.decode(frame)
        except DecodeError:
            continue
        assert message.event.symbol == TRADE["s"]
    assert decoder.decode(GOOD).event == expected_trade()


# -- classification from the input -----------------------------------------------------------
# The category of a bad frame is read from the frame, never from msgspec's exception (whose type
# and wording change between releases: msgspec 0.23 raises DecodeError where 0.19 raised
# UnicodeDecodeError for bad UTF-8).


def _nest(depth: int, tail: bytes = b"") -> bytes:
    return b"[" * depth + tail + b"]" * depth


KLINE = json.loads(ROUND_TRIP_FRAMES[-1])["data"]

# (id, frame, category, decode kwargs, price_type)
BY_HAND: list[tuple[str, bytes, Cat, dict[str, Any], Any]] = [
    # INVALID_UTF8, wherever the bad bytes are, when the frame fails
    ("utf8-in-key", GOOD.replace(b'"p"', b'"\xff"'), Cat.INVALID_UTF8, {}, float),
    ("utf8-outside-strings", GOOD[:-1] + b"\xff}", Cat.INVALID_UTF8, {}, float),
    ("utf8-cut-short", GOOD.replace(b"BNBBTC", b"BN\xe2\x82"), Cat.INVALID_UTF8, {}, float),
    ("utf8-overlong", GOOD.replace(b"BNBBTC", b"BN\xc0\xafBTC"), Cat.INVALID_UTF8, {}, float),
    ("utf8-surrogate", GOOD.replace(b"BNBBTC", b"\xed\xa0\x80"), Cat.INVALID_UTF8, {}, float),
    ("utf8-and-missing", combined(_without("q")).replace(b"BNBBTC", b"\xff"), Cat.INVALID_UTF8,
     {}, float),
    ("utf8-raw", RAW.replace(b"BNBBTC", b"\xff"), Cat.INVALID_UTF8, {"stream": STREAM}, float),
    ("utf8-control", b'{"result":"\xff","id":1}', Cat.INVALID_UTF8, {}, float),
    # NOT_JSON and TOO_DEEP: malformed, nesting past 256 levels or not
    ("nan-value", combined(trade(p=0)).replace(b'"p":0', b'"p":NaN'), Cat.NOT_JSON, {}, float),
    ("infinity", b"Infinity", Cat.NOT_JSON, {}, float),
    ("single-quotes", b"{'stream':'bnbbtc@trade'}", Cat.NOT_JSON, {}, float),
    ("trailing-comma", GOOD[:-2] + b",}}", Cat.NOT_JSON, {}, float),
    ("lone-high-surrogate", GOOD.replace(b"BNBBTC", b"\\ud800"), Cat.NOT_JSON, {}, float),
    ("lone-low-surrogate", GOOD.replace(b"BNBBTC", b"\\udc00x"), Cat.NOT_JSON, {}, float),
    ("reversed-pair", GOOD.replace(b"BNBBTC", b"\\ude00\\ud83d"), Cat.NOT_JSON, {}, float),
    ("cut-short-256", b"[" * 256, Cat.NOT_JSON, {}, float),
    ("cut-short-257", b"[" * 257, Cat.TOO_DEEP, {}, float),
    ("deep-and-missing", _deep(combined({**_without("q"), "X": 0})), Cat.TOO_DEEP, {}, float),
    ("deep-raw", _nest(5000), Cat.TOO_DEEP, {"stream": STREAM}, float),
    ("brackets-in-string", combined({**_without("q"), "X": "[" * 3000}), Cat.MISSING_FIELD, {},
     float),
    ("escaped-quote-in-string", combined({**_without("q"), "X": '\\"' + "{" * 3000}),
     Cat.MISSING_FIELD, {}, float),
    ("string-then-cut-short", b'["\\\\"' + b"[" * 300, Cat.TOO_DEEP, {}, float),
    ("open-string-cut-short", b'["\\"' + b"[" * 300, Cat.NOT_JSON, {}, float),
    ("deep-but-parsed-and-missing", combined({**_without("q"), "X": json.loads(_nest(300))}),
     Cat.MISSING_FIELD, {}, float),
    # OUT_OF_RANGE: numbers are judged as written
    ("price-1e400", combined(trade(p=0)).replace(b'"p":0', b'"p":1e400'), Cat.OUT_OF_RANGE, {},
     float),
    ("price-str-1e400", combined(trade(p="1e400")), Cat.OUT_OF_RANGE, {}, float),
    ("price-str-minus-1e400", combined(trade(p="-1e400")), Cat.OUT_OF_RANGE, {}, float),
    ("id-5000-digits", combined(trade(t=0)).replace(b'"t":0', b'"t":' + b"9" * 5000),
     Cat.OUT_OF_RANGE, {}, float),
    ("id-huge-exponent", combined(trade(t=0)).replace(b'"t":0', b'"t":1e99999999999999999999'),
     Cat.OUT_OF_RANGE, {}, float),
    ("id-str-negative", combined(trade(t="-5")), Cat.OUT_OF_RANGE, {}, float),
    ("id-float-negative-lax", combined(trade(t=-5.0)), Cat.OUT_OF_RANGE, {}, float),
    ("kline-trade-count", combined({**KLINE, "k": {**KLINE["k"], "n": -1}}, "bnbbtc@kline_1m"),
     Cat.OUT_OF_RANGE, {}, float),
    # WRONG_TYPE
    ("id-float-strict", combined(trade(t=5.0)), Cat.WRONG_TYPE, {}, str),
    ("id-fraction-lax", combined(trade(t=5.5)), Cat.WRONG_TYPE, {}, float),
    ("id-str-fraction-lax", combined(trade(t="5.5")), Cat.WRONG_TYPE, {}, float),
    ("id-str-plus-lax", combined(trade(t="+5")), Cat.WRONG_TYPE, {}, float),
    ("id-bool", combined(trade(t=True)), Cat.WRONG_TYPE, {}, float),
    ("price-str-hex", combined(trade(p="0x5")), Cat.WRONG_TYPE, {}, float),
    ("price-object", combined(trade(p={"v": 1})), Cat.WRONG_TYPE, {}, float),
    ("maker-str-2", combined(trade(m="2")), Cat.WRONG_TYPE, {}, float),
    ("maker-int-strict", combined(trade(m=1)), Cat.WRONG_TYPE, {}, Decimal),
    ("decimal-bad-string", combined(trade(p="abc")), Cat.WRONG_TYPE, {}, Decimal),
    ("level-too-short", combined({**DEPTH, "b": [["1"]]}, "bnbbtc@depth"), Cat.WRONG_TYPE, {},
     float),
    ("level-not-array", combined({**DEPTH, "b": ["1"]}, "bnbbtc@depth"), Cat.WRONG_TYPE, {},
     float),
    ("data-array", combined([TRADE]), Cat.WRONG_TYPE, {}, float),
    ("event-type-not-str", combined(trade(e=5)), Cat.WRONG_TYPE, {}, float),
    ("control-error-code", b'{"error":{"code":"x","msg":"m"},"id":1}', Cat.WRONG_TYPE, {}, float),
    ("flat-control-id", b'{"code":1,"msg":"m","id":[1]}', Cat.WRONG_TYPE, {}, float),
    ("flat-control-msg", b'{"code":1,"msg":5}', Cat.UNROUTABLE, {}, float),  # the probe's msg
    # MISSING_FIELD, at any level
    ("kline-missing-close", combined({**KLINE, "k": {**KLINE["k"]} | {"c": None}},
                                     "bnbbtc@kline_1m").replace(b',"c":null', b""),
     Cat.MISSING_FIELD, {}, float),
    ("force-order-missing-qty", combined({**FORCE, "o": {k: v for k, v in FORCE["o"].items()
                                                        if k != "q"}}, "btcusdt@forceOrder"),
     Cat.MISSING_FIELD, {}, float),
    ("control-missing-id", b'{"result":null,"error":null}', Cat.MISSING_FIELD, {}, float),
    # UNKNOWN_EVENT: an event type the stream (or the venue) does not define
    ("other-event-on-stream", combined(trade(e="aggTrade")), Cat.UNKNOWN_EVENT, {}, float),
    ("raw-unknown-event-first", dumps({"e": "foo", "E": -1}), Cat.UNKNOWN_EVENT, {}, float),
    ("raw-with-stream", dumps(trade(e="aggTrade")), Cat.UNKNOWN_EVENT, {"stream": STREAM}, float),
    ("unknown-event-and-bad-id", combined(trade(e="zzz", t=-1)), Cat.UNKNOWN_EVENT, {}, float),
]  # fmt: skip


def _decoder_for(frame: bytes, price_type: Any = float, registered: bool = True) -> Decoder:
    """A decoder of the frame's venue, with the streams of these tests registered or not."""
    if b"forceOrder" in frame:
        decoder = Decoder("binance-usdm", price_type=price_type)
        streams = ["btcusdt@forceOrder"]
    else:
        decoder = Decoder(price_type=price_type)
        streams = [STREAM, "bnbbtc@depth", "bnbbtc@kline_1m"]
    if registered:
        decoder.register(streams)
    return decoder


@pytest.mark.parametrize("registered", [False, True], ids=["slow-path", "fast-path"])
@pytest.mark.parametrize(
    ("frame", "category", "kwargs", "price_type"),
    [case[1:] for case in BY_HAND],
    ids=[case[0] for case in BY_HAND],
)
def test_category_of_hand_built_input(
    frame: bytes, category: Cat, kwargs: dict[str, Any], price_type: Any, registered: bool
) -> None:
    decoder = _decoder_for(frame, price_type, registered)
    error = _check_bad(decoder, frame, category, **kwargs)
    assert str(error).startswith(f"{category.value}: ")


@pytest.mark.parametrize(
    "frame",
    [
        combined(trade(X=json.loads(_nest(300)))),  # deep, but within what msgspec reads
        combined(trade(X="[" * 3000)),
        GOOD.replace(b"BNBBTC", b"\\ud83d\\ude00"),  # a surrogate pair is one character
        combined(trade(p=0)).replace(b'"p":0', b'"p":1e-400'),
        combined(trade(t=5.0)),  # float mode takes integral floats for ints
        combined(trade(t="1e2")),
        combined(trade(m="TRUE")),
        combined(trade(m="0")),
        combined(trade(p="nan")),
    ],
)
def test_decodable_input_is_not_an_error(frame: bytes) -> None:
    """The slow-path rules must not make an error of a frame msgspec accepts."""
    assert Decoder().decode(frame).stream == STREAM


def test_message_names_the_problem_and_its_path() -> None:
    decoder = Decoder()
    decoder.register([STREAM, "bnbbtc@depth"])
    messages = {
        combined(trade(p="abc")): "Expected `float`, got `str` - at `$.data.p`",
        combined(_without("q")): "Object missing required field `q` - at `$.data`",
        combined(trade(t=-1)): "Expected `int` >= 0 and <= 9223372036854775807, got -1"
        " - at `$.data.t`",
        combined(trade(p="1e400")): "Expected `float` within its range, got 1e400 - at `$.data.p`",
        combined(trade(e="zzz")): "Unknown event type 'zzz', expected 'trade' - at `$.data.e`",
        combined({**DEPTH, "b": [["1", "2"], ["1"]]}, "bnbbtc@depth"): "Expected `array of"
        " length 2`, got `array` - at `$.data.b[1]`",
        GOOD.replace(b"BNBBTC", b"BN\xffBTC"): "Invalid UTF-8 at byte 70",
        b"[" * 300: "Arrays and objects nest more than 256 levels deep",
        b'{"result":null,"id":[1]}': "Expected `int | str | null`, got `array` - at `$.id`",
    }
    for frame, detail in messages.items():
        with pytest.raises(DecodeError) as info:
            decoder.decode(frame)
        assert str(info.value).endswith(": " + detail)
    with pytest.raises(DecodeError, match=r"^not_json: frame: Malformed JSON: Expecting"):
        decoder.decode(b"nope")


def test_good_frames_never_reach_the_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Classification is slow-path work only: frames that decode never pay for it."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("classified a good frame")

    monkeypatch.setattr(codec, "_classify", refuse)
    decoder = Decoder()
    assert decoder.decode(GOOD).event == expected_trade()  # learned
    decoder.register([STREAM])
    assert decoder.decode(GOOD).event == expected_trade()  # fast path
    assert decoder.decode(RAW, stream=STREAM).event == expected_trade()
    assert decoder.decode(RAW).event == expected_trade()
    assert decoder.decode(b'{"result":null,"id":1}') == fastmd.ControlReply(id=1)
    assert decoder.decode(b'{"result":null,"id":1}', stream=STREAM) == fastmd.ControlReply(id=1)


class _Scrambled:
    """A msgspec decoder with the same results, whose errors have another type and another
    message, as another msgspec release might raise them."""

    def __init__(self, inner: Any, make_error: Callable[[], Exception]) -> None:
        self.inner = inner
        self.make_error = make_error
        self.type = inner.type
        self.strict = inner.strict

    def decode(self, buf: Any) -> Any:
        try:
            return self.inner.decode(buf)
        except Exception:
            raise self.make_error() from None


SCRAMBLES: list[tuple[str, Callable[[], Exception]]] = [
    ("DecodeError", lambda: msgspec.DecodeError("Invalid UTF-8 encoded string")),
    ("ValidationError", lambda: msgspec.ValidationError("Object missing required field `x`")),
    ("MsgspecError", lambda: msgspec.MsgspecError("JSON is malformed: too deep")),
    ("ValueError", lambda: ValueError("Number out of range")),
    ("RecursionError", lambda: RecursionError("maximum recursion depth exceeded")),
    ("UnicodeDecodeError", lambda: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid")),
]


@contextmanager
def _scrambled(make_error: Callable[[], Exception]) -> Iterator[None]:
    """Every msgspec decoder the codec makes or holds raises ``make_error()`` instead."""
    real = msgspec.json.Decoder
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            msgspec.json, "Decoder", lambda *a, **k: _Scrambled(real(*a, **k), make_error)
        )
        for name in ("_probe_decoder", "_control_decoder", "_flat_control_decoder"):
            patch.setattr(codec, name, _Scrambled(getattr(codec, name), make_error))
        yield


def _outcome(frame: bytes, stream: str | None, price_type: Any = float) -> Any:
    decoder = _decoder_for(frame, price_type)
    try:
        return type(decoder.decode(frame, stream)).__name__
    except DecodeError as error:
        return error.category


ALL_BAD: list[tuple[str, bytes, str | None, Any]] = [
    *((f"combined-{c[0]}", c[1], None, float) for c in BAD_COMBINED),
    *((f"raw-{c[0]}", c[1], STREAM, float) for c in BAD_RAW),
    *((f"hand-{c[0]}", c[1], c[3].get("stream"), c[4]) for c in BY_HAND),
]


@pytest.mark.parametrize("make_error", [s[1] for s in SCRAMBLES], ids=[s[0] for s in SCRAMBLES])
@pytest.mark.parametrize(
    ("frame", "stream", "price_type"), [c[1:] for c in ALL_BAD], ids=[c[0] for c in ALL_BAD]
)
def test_category_does_not_depend_on_msgspec_errors(
    frame: bytes, stream: str | None, price_type: Any, make_error: Callable[[], Exception]
) -> None:
    expected = _outcome(frame, stream, price_type)
    assert isinstance(expected, Cat)
    with _scrambled(make_error):
        assert _outcome(frame, stream, price_type) is expected


def _spliced(frame: bytes) -> st.SearchStrategy[bytes]:
    """``frame`` with a few bytes cut out, replaced or added somewhere."""
    return st.builds(
        lambda at, cut, junk: frame[:at] + junk + frame[at + cut :],
        st.integers(0, len(frame)),
        st.integers(0, 3),
        st.binary(max_size=4) | st.sampled_from([b"\xff", b"\\ud800", b"[", b"{", b'"', b"-"]),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
    | st.sampled_from(["5", "-5", "5.5", "1e400", "nan", "true", "null", "0x5"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip
bad_frames = st.one_of(
    st.binary(max_size=200),
    _spliced(GOOD),
    _spliced(RAW),
    _spliced(combined(DEPTH, "bnbbtc@depth")),
    _spliced(b'{"result":null,"id":1}'),
    st.builds(lambda key, value: combined(trade(**{key: value})), st.sampled_from(sorted(TRADE)),
              json_values),
    st.builds(lambda key, value: dumps(trade(**{key: value})), st.sampled_from(sorted(TRADE)),
              json_values),
    # nesting well below or well above what msgspec follows (about 1000 levels less the stack)
    st.builds(lambda depth: combined(trade(X=0)).replace(b'"X":0', b'"X":' + _nest(depth)),
              st.integers(0, 600) | st.integers(1500, 3000)),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    bad_frames,
    st.sampled_from([None, STREAM]),
    st.sampled_from([float, str]),
    st.sampled_from([s[1] for s in SCRAMBLES]),
)
def test_random_input_category_does_not_depend_on_msgspec_errors(
    frame: bytes, stream: str | None, price_type: Any, make_error: Callable[[], Exception]
) -> None:
    expected = _outcome(frame, stream, price_type)
    with _scrambled(make_error):
        assert _outcome(frame, stream, price_type) == expected


ONE_STREAM_OF_EACH_KIND: list[tuple[Any, str]] = [
    *(
        ("binance-spot", name)
        for name in (
            "bnbbtc@trade", "bnbbtc@aggTrade", "bnbbtc@blockTrade", "bnbbtc@kline_1m",
            "bnbbtc@miniTicker", "bnbbtc@ticker", "bnbbtc@ticker_1h", "bnbbtc@bookTicker",
            "bnbbtc@avgPrice", "bnbbtc@referencePrice", "bnbbtc@depth", "bnbbtc@depth5",
            "!miniTicker@arr", "!ticker_1h@arr",
        )
    ),
    *(
        ("binance-usdm", name)
        for name in (
            "btcusdt@markPrice", "btcusdt@forceOrder", "btcusdt_perpetual@continuousKline_1m",
            "defiusdt@compositeIndex", "btcusdt@rpiDepth@500ms", "!ticker@arr", "!bookTicker",
            "!markPrice@arr", "!forceOrder@arr", "!contractInfo", "!assetIndex@arr",
            "!serverShutdown",
        )
    ),
]  # fmt: skip


def test_array_kinds_are_the_kinds_that_decode_to_lists() -> None:
    """streams.ARRAY_KINDS (which the sequencers and selective updates read) names exactly the
    kinds the decoder reads as arrays, and event_class has no single class for them."""
    from typing import get_origin

    from fastmd.core.streams import ARRAY_KINDS, StreamKind, parse_stream

    streams = [parse_stream(name, venue) for venue, name in ONE_STREAM_OF_EACH_KIND]
    assert {s.kind for s in streams} == set(StreamKind)
    for (venue, name), stream in zip(ONE_STREAM_OF_EACH_KIND, streams, strict=True):
        is_list = get_origin(Decoder(venue).event_type(stream)) is list
        assert is_list == (stream.kind in ARRAY_KINDS), name
        if is_list:
            assert codec.event_class(stream, venue) is None, name


def test_event_class_is_the_class_the_decoder_reads() -> None:
    """codec.event_class (the class selective updates check field names on) answers what
    Decoder.event_type decodes, unparameterised, for every kind that is not an array."""
    from typing import get_origin

    from fastmd.core.streams import ARRAY_KINDS, StreamKind, parse_stream

    for venue, name in ONE_STREAM_OF_EACH_KIND:
        stream = parse_stream(name, venue)
        cls = codec.event_class(stream, venue)
        if stream.kind in ARRAY_KINDS or stream.kind is StreamKind.SERVER_SHUTDOWN:
            assert cls is None, name
            continue
        decoded = Decoder(venue).event_type(stream)
        origin = get_origin(decoded) or decoded
        if stream.kind is StreamKind.PARTIAL_DEPTH and venue == "binance-spot":
            assert origin.__bases__ == (cls,), name  # a subclass per symbol carries it
        else:
            assert origin is cls, name
