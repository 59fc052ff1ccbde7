"""The C SBE decoder and the pure-Python one give identical results, and numbers are exact.

Hypothesis generates frames of every template (any mantissa and exponent, padded blocks and
entries, odd symbols) and mutates them (bytes flipped, cut, inserted; header fields rewritten):
both implementations must return equal messages or raise the same error category, in each number
type. Float conversions are checked against ``float(Decimal(mantissa).scaleb(exponent))``, the
correctly rounded value of the exact decimal; ``str``/``Decimal`` against the exact decimal.
Last, frames written by the simulator's encoder (``fastmd.sim.sbe``, written from the schema on
its own) decode to the values it was given, padded or not.
"""

from __future__ import annotations

import os
import struct
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastmd import DecodeError
from fastmd.core.sbe import SbeDecoder, compiled_available
from fastmd.sim import sbe

pytestmark = pytest.mark.skipif(
    not compiled_available() and not os.environ.get("CI"),
    reason="the C extension fastmd._sbe is not built",
)
# under CI a missing extension fails (SbeDecoder(compiled=True) raises ImportError)

INT64 = st.integers(-(2**63), 2**63 - 1)
EXPONENT = st.integers(-128, 127)
SMALL_EXPONENT = st.integers(-20, 4)
SYMBOLS = st.one_of(
    st.sampled_from([b"BTCUSDT", b"ETHBTC", b"1000SATSUSDT", "ÄBC".encode(), b"X"]),
    st.binary(max_size=12),
)


def _pad(draw: st.DrawFn) -> bytes:
    return bytes(draw(st.lists(st.integers(0, 255), max_size=6)))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    template = draw(st.sampled_from([10000, 10001, 10002, 10003]))
    exponents = st.one_of(SMALL_EXPONENT, EXPONENT)
    price_exp, qty_exp = draw(exponents), draw(exponents)
    mantissa = st.one_of(st.integers(0, 10**12), INT64)
    ids = st.one_of(st.integers(0, 2**40), INT64)
    root_pad = _pad(draw)
    if template == 10000:
        root = struct.pack("<qqbb", draw(ids), draw(ids), price_exp, qty_exp)
        entry_pad = _pad(draw)
        count = draw(st.integers(0, 4))
        entries = b"".join(
            struct.pack(
                "<qqqB",
                draw(ids),
                draw(mantissa),
                draw(mantissa),
                draw(st.sampled_from([0, 1, 1, 0, 2, 255])),
            )
            + entry_pad
            for _ in range(count)
        )
        body = struct.pack("<HI", 25 + len(entry_pad), count) + entries
    elif template == 10001:
        values = [draw(mantissa) for _ in range(4)]
        root = struct.pack("<qqbbqqqq", draw(ids), draw(ids), price_exp, qty_exp, *values)
        body = b""
    else:
        if template == 10003:
            root = struct.pack("<qqqbb", draw(ids), draw(ids), draw(ids), price_exp, qty_exp)
        else:
            root = struct.pack("<qqbb", draw(ids), draw(ids), price_exp, qty_exp)
        entry_pad = _pad(draw)
        body = b""
        for _ in range(2):
            count = draw(st.integers(0, 4))
            body += struct.pack("<HH", 16 + len(entry_pad), count)
            for _ in range(count):
                body += struct.pack("<qq", draw(mantissa), draw(mantissa)) + entry_pad
    root += root_pad
    raw_symbol = draw(SYMBOLS)
    head = struct.pack("<HHHH", len(root), template, 1, 0)
    return head + root + body + bytes([len(raw_symbol)]) + raw_symbol


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(frames()))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        if kind == "flip" and frame:
            at = draw(st.integers(0, len(frame) - 1))
            frame[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del frame[draw(st.integers(0, len(frame))) :]
        elif kind == "insert":
            at = draw(st.integers(0, len(frame)))
            frame[at:at] = bytes(draw(st.lists(st.integers(0, 255), min_size=1, max_size=4)))
        elif len(frame) >= 8:
            field = draw(st.integers(0, 3))
            value = draw(st.sampled_from([0, 1, 2, 17, 18, 50, 9999, 10004, 0xFFFF]))
            struct.pack_into("<H", frame, field * 2, value)
    return bytes(frame)


def outcome(decoder: SbeDecoder, frame: bytes) -> Any:
    """What decoding ``frame`` gives, comparable across implementations (message and
    PartialDepth classes are made per decoder, so events are compared as their fields)."""
    try:
        messages = decoder.decode(frame)
    except DecodeError as error:
        return ("error", error.category, error.stream)
    return [
        (
            m.stream,
            type(m.event).__name__,
            m.event.symbol,
            [(k, repr(v)) for k, v in msgspec.structs.asdict(m.event).items()],
        )
        for m in messages
    ]


PAIRS: dict[Any, tuple[SbeDecoder, SbeDecoder]] = {}


def pair(number: Any) -> tuple[SbeDecoder, SbeDecoder]:
    """A compiled and a pure-Python decoder of ``number``, built once (ImportError under CI
    when the extension is missing)."""
    if number not in PAIRS:
        compiled = SbeDecoder(price_type=number, compiled=True)
        PAIRS[number] = compiled, SbeDecoder(price_type=number, compiled=False)
    return PAIRS[number]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.one_of(frames(), mutated()), number=st.sampled_from([float, str, Decimal]))
def test_compiled_and_python_agree(frame: bytes, number: Any) -> None:
    compiled, python = pair(number)
    assert outcome(compiled, frame) == outcome(python, frame)


def bba(mantissa: int, exponent: int) -> bytes:
    root = struct.pack("<qqbbqqqq", 1, 2, exponent, exponent, mantissa, 0, 0, 0)
    return struct.pack("<HHHH", 50, 10001, 1, 0) + root + b"\x01X"


@settings(max_examples=600, deadline=None)
@given(
    mantissa=st.one_of(INT64, st.integers(-(2**53), 2**53), st.integers(-9999, 9999)),
    exponent=st.one_of(EXPONENT, st.integers(-24, 24)),
)
def test_numbers_are_exact(mantissa: int, exponent: int) -> None:
    exact = Decimal(mantissa).scaleb(exponent)
    frame = bba(mantissa, exponent)
    for compiled in (True, False):
        as_float = SbeDecoder(compiled=compiled).decode(frame)[0].event.bid_price
        assert as_float == float(exact)
        as_str = SbeDecoder(price_type=str, compiled=compiled).decode(frame)[0].event.bid_price
        assert Decimal(as_str) == exact
        if exponent < 0:
            assert len(as_str.partition(".")[2]) == -exponent
        else:
            assert "." not in as_str
        as_decimal = SbeDecoder(price_type=Decimal, compiled=compiled).decode(frame)
        assert as_decimal[0].event.bid_price == exact


@pytest.mark.parametrize(
    ("mantissa", "exponent"),
    [
        (2**53 + 1, -1),  # a mantissa no double holds exactly
        (-(2**63), -8),
        (2**63 - 1, 127),
        (1, -128),
        (123456789, -23),  # 10**23 is not an exact double
        (7, 22),
        (0, -128),
        (5, -1),
    ],
)
def test_number_edges(mantissa: int, exponent: int) -> None:
    exact = Decimal(mantissa).scaleb(exponent)
    for compiled in (True, False):
        decoder = SbeDecoder(compiled=compiled)
        assert decoder.decode(bba(mantissa, exponent))[0].event.bid_price == float(exact)


# -- frames the simulator's encoder writes (fastmd/sim/sbe.py, written from the schema) ----------

LEVELS = st.lists(st.tuples(INT64, INT64), max_size=5)
PADDING = st.integers(0, 7)
TIMES = st.integers(0, 2**63 - 1)
NAMES = st.sampled_from(["BTCUSDT", "ETHBTC", "1000SATSUSDT", "ÄBC"])


def _exact(mantissa: int, exponent: int) -> float:
    return float(Decimal(mantissa).scaleb(exponent))


@settings(max_examples=150, deadline=None)
@given(
    name=NAMES,
    times=st.tuples(TIMES, TIMES),
    exponents=st.tuples(EXPONENT, EXPONENT),
    trades=st.lists(st.tuples(TIMES, INT64, INT64, st.booleans()), max_size=5),
    padding=st.tuples(PADDING, PADDING),
)
def test_simulator_trades(
    name: str,
    times: tuple[int, int],
    exponents: tuple[int, int],
    trades: list[tuple[int, int, int, bool]],
    padding: tuple[int, int],
) -> None:
    frame = sbe.encode_trades(
        name, *times, *exponents, trades, root_padding=padding[0], entry_padding=padding[1]
    )
    for compiled in (True, False):
        messages = SbeDecoder(compiled=compiled).decode(frame)
        assert [m.stream for m in messages] == [f"{name.lower()}@trade"] * len(trades)
        for message, (trade_id, price, qty, maker) in zip(messages, trades, strict=True):
            event = message.event
            assert (event.event_time, event.trade_time) == times
            assert (event.symbol, event.trade_id, event.is_buyer_maker) == (name, trade_id, maker)
            assert event.price == _exact(price, exponents[0])
            assert event.quantity == _exact(qty, exponents[1])


@settings(max_examples=150, deadline=None)
@given(
    name=NAMES,
    ids=st.tuples(TIMES, TIMES, TIMES),
    exponents=st.tuples(EXPONENT, EXPONENT),
    sides=st.tuples(LEVELS, LEVELS),
    padding=st.tuples(PADDING, PADDING),
)
def test_simulator_books(
    name: str,
    ids: tuple[int, int, int],
    exponents: tuple[int, int],
    sides: tuple[list[tuple[int, int]], list[tuple[int, int]]],
    padding: tuple[int, int],
) -> None:
    pads = {"root_padding": padding[0], "entry_padding": padding[1]}
    price_exp, qty_exp = exponents
    bids, asks = sides
    exact_bids = [(_exact(p, price_exp), _exact(q, qty_exp)) for p, q in bids]
    exact_asks = [(_exact(p, price_exp), _exact(q, qty_exp)) for p, q in asks]
    bid, ask = (bids or [(1, 2)])[0], (asks or [(3, 4)])[0]
    frames = {
        "bestBidAsk": sbe.encode_best_bid_ask(
            name, ids[0], ids[1], *exponents, bid, ask, root_padding=padding[0]
        ),
        "depth": sbe.encode_depth_diff(name, *ids, *exponents, bids, asks, **pads),
        "depth20": sbe.encode_depth_snapshot(name, *ids[:2], *exponents, bids, asks, **pads),
    }
    for compiled in (True, False):
        decoder = SbeDecoder(compiled=compiled)
        decoded = {kind: decoder.decode(frame) for kind, frame in frames.items()}
        for kind, (message,) in decoded.items():
            assert message.stream == f"{name.lower()}@{kind}"
            assert message.event.symbol == name
            assert message.event.event_time == ids[0]
        ticker = decoded["bestBidAsk"][0].event
        assert ticker.update_id == ids[1]
        assert (ticker.bid_price, ticker.bid_quantity) == (
            _exact(bid[0], price_exp),
            _exact(bid[1], qty_exp),
        )
        assert (ticker.ask_price, ticker.ask_quantity) == (
            _exact(ask[0], price_exp),
            _exact(ask[1], qty_exp),
        )
        diff = decoded["depth"][0].event
        assert (diff.first_update_id, diff.final_update_id) == ids[1:]
        assert (diff.bids, diff.asks) == (exact_bids, exact_asks)
        snapshot = decoded["depth20"][0].event
        assert snapshot.last_update_id == ids[1]
        assert (snapshot.bids, snapshot.asks) == (exact_bids, exact_asks)
