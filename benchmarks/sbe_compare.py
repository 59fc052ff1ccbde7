"""SBE against JSON, per event, in one run: the frames and a small comparison script.

The SBE frames carry the same events as the JSON frames of ``benchmarks/frames.py`` (a sample
trade, a recorded bookTicker, a depth diff and a depth20 snapshot with 20 levels a side): they are
encoded here with ``struct.pack`` from the JSON payloads (exponents from the decimal strings'
fraction digits, times in microseconds) following Binance's schema (binance-protocol.md §8). A
trades frame of 10 trades is also measured, since Binance packs several trades in one frame.

Usage::

    python -m benchmarks.sbe_compare           # prints the table docs/benchmarks.md quotes

Each row interleaves its candidates for several repeats and keeps each one's minimum, so they
share the machine's load. Costs are per event (a 10-trade frame's cost is divided by 10); bytes
per event are the WebSocket payload (JSON combined-stream frame, JSON raw-stream frame, SBE frame).
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import fastmd
from benchmarks.frames import CASES, Case
from fastmd.core.sbe import SbeDecoder, compiled_available

BOOK_TICKER_EVENT_TIME = 1_634_036_400_000_000  # spot JSON bookTicker has no E; any time will do


def _exponent(values: list[str]) -> int:
    return -max(len(value.partition(".")[2]) for value in values)


def _mantissa(text: str, exponent: int) -> int:
    return int(Decimal(text).scaleb(-exponent))


def _symbol(name: str) -> bytes:
    raw = name.encode()
    return bytes([len(raw)]) + raw


def _levels(levels: list[list[str]], price_exp: int, qty_exp: int) -> bytes:
    body = b"".join(
        struct.pack("<qq", _mantissa(p, price_exp), _mantissa(q, qty_exp)) for p, q in levels
    )
    return struct.pack("<HH", 16, len(levels)) + body


def trades_frame(payload: dict[str, Any], count: int = 1) -> bytes:
    """A TradesStreamEvent of ``count`` trades: the payload's trade, then ids after it."""
    price_exp, qty_exp = _exponent([payload["p"]]), _exponent([payload["q"]])
    root = struct.pack("<qqbb", payload["E"] * 1000, payload["T"] * 1000, price_exp, qty_exp)
    entries = b"".join(
        struct.pack(
            "<qqqB",
            payload["t"] + i,
            _mantissa(payload["p"], price_exp),
            _mantissa(payload["q"], qty_exp),
            payload["m"],
        )
        for i in range(count)
    )
    head = struct.pack("<HHHH", len(root), 10000, 1, 0)
    return head + root + struct.pack("<HI", 25, count) + entries + _symbol(payload["s"])


def best_bid_ask_frame(payload: dict[str, Any]) -> bytes:
    price_exp = _exponent([payload["b"], payload["a"]])
    qty_exp = _exponent([payload["B"], payload["A"]])
    root = struct.pack(
        "<qqbbqqqq",
        BOOK_TICKER_EVENT_TIME,
        payload["u"],
        price_exp,
        qty_exp,
        _mantissa(payload["b"], price_exp),
        _mantissa(payload["B"], qty_exp),
        _mantissa(payload["a"], price_exp),
        _mantissa(payload["A"], qty_exp),
    )
    return struct.pack("<HHHH", len(root), 10001, 1, 0) + root + _symbol(payload["s"])


def _depth_exponents(payload: dict[str, Any], bids: str, asks: str) -> tuple[int, int]:
    levels = payload[bids] + payload[asks]
    return _exponent([p for p, _ in levels]), _exponent([q for _, q in levels])


def depth_diff_frame(payload: dict[str, Any]) -> bytes:
    price_exp, qty_exp = _depth_exponents(payload, "b", "a")
    root = struct.pack(
        "<qqqbb", payload["E"] * 1000, payload["U"], payload["u"], price_exp, qty_exp
    )
    sides = _levels(payload["b"], price_exp, qty_exp) + _levels(payload["a"], price_exp, qty_exp)
    return struct.pack("<HHHH", len(root), 10003, 1, 0) + root + sides + _symbol(payload["s"])


def depth_snapshot_frame(payload: dict[str, Any], symbol: str) -> bytes:
    price_exp, qty_exp = _depth_exponents(payload, "bids", "asks")
    root = struct.pack("<qqbb", BOOK_TICKER_EVENT_TIME, payload["lastUpdateId"], price_exp, qty_exp)
    sides = _levels(payload["bids"], price_exp, qty_exp)
    sides += _levels(payload["asks"], price_exp, qty_exp)
    return struct.pack("<HHHH", len(root), 10002, 1, 0) + root + sides + _symbol(symbol)


@dataclass(frozen=True)
class SbeCase:
    """One JSON case of benchmarks/frames.py and the SBE frame of the same event(s)."""

    name: str
    json: Case
    frame: bytes
    events: int
    """Events in ``frame`` (10 for the 10-trade frame)."""


def _case(name: str) -> Case:
    return next(case for case in CASES if case.name == name)


def build_cases() -> list[SbeCase]:
    trade, ticker = _case("trade"), _case("bookTicker")
    diff, snapshot = _case("depthUpdate-20"), _case("depth20-partial")
    symbol = snapshot.stream.partition("@")[0].upper()
    return [
        SbeCase("trade", trade, trades_frame(trade.payload_obj), 1),
        SbeCase("trade-x10", trade, trades_frame(trade.payload_obj, 10), 10),
        SbeCase("bookTicker", ticker, best_bid_ask_frame(ticker.payload_obj), 1),
        SbeCase("depthUpdate-20", diff, depth_diff_frame(diff.payload_obj), 1),
        SbeCase("depth20-partial", snapshot, depth_snapshot_frame(snapshot.payload_obj, symbol), 1),
    ]


SBE_CASES: list[SbeCase] = build_cases()


def json_hot_path(case: Case) -> Callable[[Any], Any]:
    """The client's JSON hot path: the decoder's single msgspec pass, stream registered."""
    decoder = fastmd.Decoder(case.venue)
    decoder.register([case.stream])
    fast_decode: Callable[[Any], Any] = decoder.fast_decode
    return fast_decode


def sbe_hot_path(compiled: bool) -> Callable[[Any], list[fastmd.Message[Any]]]:
    """The SBE hot path (``Decoder(encoding="sbe").fast_decode_sbe``), C or pure Python."""
    return SbeDecoder(compiled=compiled).fast_decode


def check(case: SbeCase, messages: list[fastmd.Message[Any]]) -> None:
    """Assert the SBE messages carry the JSON frame's event (times: ms x 1000 = us; the
    10-trade frame's ids follow the sample's)."""
    expected = json_hot_path(case.json)(case.json.frame).event
    assert len(messages) == case.events
    for index, message in enumerate(messages):
        event = message.event
        assert isinstance(event, case.json.event_type), type(event)
        assert event.symbol == expected.symbol
        for name in event.__struct_fields__:
            got, want = getattr(event, name), getattr(expected, name)
            if name in ("event_time", "trade_time"):
                if want is None:  # spot JSON bookTicker and depth20 carry no time
                    continue
                want *= 1000
            elif name == "trade_id":
                want += index
            assert got == want, (case.name, name, got, want)


def _per_call(fn: Callable[[Any], Any], arg: Any, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn(arg)
    return (time.perf_counter() - start) / loops


def compare(repeats: int = 30, loops: int = 2000) -> list[dict[str, Any]]:
    """Per-event costs (ns) and bytes of every case, candidates interleaved in one run."""
    rows = []
    for case in SBE_CASES:
        candidates: dict[str, tuple[Callable[[Any], Any], bytes]] = {
            "json": (json_hot_path(case.json), case.json.frame),
            "sbe_python": (sbe_hot_path(False), case.frame),
        }
        if compiled_available():
            candidates["sbe_c"] = (sbe_hot_path(True), case.frame)
        best = dict.fromkeys(candidates, float("inf"))
        for _ in range(repeats):
            for name, (fn, frame) in candidates.items():
                best[name] = min(best[name], _per_call(fn, frame, loops))
        row: dict[str, Any] = {
            "case": case.name,
            "json_ns": best["json"] * 1e9,
            "sbe_c_ns": best.get("sbe_c", float("nan")) * 1e9 / case.events,
            "sbe_python_ns": best["sbe_python"] * 1e9 / case.events,
            "json_bytes": len(case.json.frame),
            "json_raw_bytes": len(case.json.payload),
            "sbe_bytes": len(case.frame) / case.events,
        }
        rows.append(row)
    return rows


def main() -> int:
    if not compiled_available():
        print("fastmd._sbe is not built: run pip install -e . first", file=sys.stderr)
        return 1
    for case in SBE_CASES:
        check(case, sbe_hot_path(True)(case.frame))
    print(
        "| event | JSON ns | SBE C ns | SBE Python ns | C / JSON | Python / JSON"
        " | JSON bytes (combined / raw) | SBE bytes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in compare():
        print(
            f"| {row['case']} | {row['json_ns']:.0f} | {row['sbe_c_ns']:.0f}"
            f" | {row['sbe_python_ns']:.0f} | {row['sbe_c_ns'] / row['json_ns']:.2f}"
            f" | {row['sbe_python_ns'] / row['json_ns']:.2f}"
            f" | {row['json_bytes']} / {row['json_raw_bytes']} | {row['sbe_bytes']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
