"""Binance's SBE market-data frames, as the simulator serves them on its SBE endpoint.

An encoder of the four templates of Binance's spot stream schema (``stream_1_0.xml``, package
``spot_stream``: schemaId 1, version 0, little-endian; binance-protocol.md §8) and the transcoder
that turns the market's JSON payloads into SBE frames:

===========================  ==========  ==========================  =========================
SBE stream                   templateId  message                     served from (JSON stream)
===========================  ==========  ==========================  =========================
``<symbol>@trade``           10000       TradesStreamEvent           ``<symbol>@trade`` (or a
                                                                     recording's ``aggTrade``)
``<symbol>@bestBidAsk``      10001       BestBidAskStreamEvent       ``<symbol>@bookTicker``
``<symbol>@depth20``         10002       DepthSnapshotStreamEvent    ``<symbol>@depth20@100ms``
``<symbol>@depth``           10003       DepthDiffStreamEvent        ``<symbol>@depth@100ms``
===========================  ==========  ==========================  =========================

Every frame is an 8-byte header (``blockLength``, ``templateId``, ``schemaId``, ``version``, u16
each), the root block, the repeating groups (trades: ``u16 blockLength, u32 numInGroup``; depth
sides: ``u16 blockLength, u16 numInGroup``) and the symbol as a ``varString8`` (u8 length, UTF-8).
Times are microseconds. Prices and quantities are ``mantissa x 10^exponent`` with one price and
one quantity exponent per message: the exponents of a symbol whose decimals the simulator knows
(its tick and step sizes) are ``-decimals``; otherwise the message's own decimal strings decide
(the fewest fractional digits that write all of them exactly).

The module is stdlib-only and imports nothing from fastmd outside ``fastmd.sim``: it is the
*server's* encoding, written from the schema, never from the client's decoder.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fastmd.sim.venues import Kind, SimStream

__all__ = [
    "BEST_BID_ASK_TEMPLATE",
    "DEPTH_DIFF_TEMPLATE",
    "DEPTH_SNAPSHOT_TEMPLATE",
    "SBE_STREAMS",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "TRADES_TEMPLATE",
    "SbeStreams",
    "SbeTranscoder",
    "TradeEntry",
    "decimal_exponent",
    "encode_best_bid_ask",
    "encode_depth_diff",
    "encode_depth_snapshot",
    "encode_trades",
    "mantissa",
]

SCHEMA_ID: Final = 1
SCHEMA_VERSION: Final = 0
TRADES_TEMPLATE: Final = 10000
BEST_BID_ASK_TEMPLATE: Final = 10001
DEPTH_SNAPSHOT_TEMPLATE: Final = 10002
DEPTH_DIFF_TEMPLATE: Final = 10003

_HEADER: Final = struct.Struct("<HHHH")
_TRADES_ROOT: Final = struct.Struct("<qqbb")  # eventTime, transactTime, price/qty exponents
_GROUP32: Final = struct.Struct("<HI")  # groupSizeEncoding: blockLength, numInGroup
_GROUP16: Final = struct.Struct("<HH")  # groupSize16Encoding
_TRADE: Final = struct.Struct("<qqqB")  # id, price, qty, isBuyerMaker
_BEST_BID_ASK: Final = struct.Struct("<qqbbqqqq")
_DEPTH_SNAPSHOT_ROOT: Final = struct.Struct("<qqbb")  # eventTime, bookUpdateId, exponents
_DEPTH_DIFF_ROOT: Final = struct.Struct("<qqqbb")  # eventTime, first/last update id, exponents
_LEVEL: Final = struct.Struct("<qq")  # price, qty

MAX_SYMBOL_BYTES: Final = 255
"""A ``varString8`` holds at most 255 bytes."""

TradeEntry = tuple[int, int, int, bool]
"""One entry of a trades group: ``(id, price mantissa, quantity mantissa, is_buyer_maker)``."""
Level = tuple[int, int]
"""One depth level: ``(price mantissa, quantity mantissa)``; quantity 0 removes the level."""


def _symbol(symbol: str) -> bytes:
    raw = symbol.encode()
    if len(raw) > MAX_SYMBOL_BYTES:
        raise ValueError(f"symbol longer than {MAX_SYMBOL_BYTES} bytes: {symbol!r}")
    return bytes((len(raw),)) + raw


def _exponents(price_exponent: int, qty_exponent: int) -> None:
    for name, value in (("price_exponent", price_exponent), ("qty_exponent", qty_exponent)):
        if not -128 <= value <= 127:
            raise ValueError(f"{name} must fit an int8, not {value}")


def _levels(levels: Sequence[Level], *, entry_padding: int) -> bytes:
    block = _LEVEL.size + entry_padding
    pad = b"\x00" * entry_padding
    return _GROUP16.pack(block, len(levels)) + b"".join(
        [_LEVEL.pack(price, qty) + pad for price, qty in levels]
    )


def _depth_frame(
    template: int,
    root: bytes,
    bids: Sequence[Level],
    asks: Sequence[Level],
    symbol: str,
    entry_padding: int,
) -> bytes:
    """A depth frame (snapshot or diff): header, ``root``, the bid and ask groups, the symbol."""
    if len(bids) > 0xFFFF or len(asks) > 0xFFFF:
        raise ValueError("more than 65535 levels on a side")
    return b"".join((
        _HEADER.pack(len(root), template, SCHEMA_ID, SCHEMA_VERSION),
        root,
        _levels(bids, entry_padding=entry_padding),
        _levels(asks, entry_padding=entry_padding),
        _symbol(symbol),
    ))  # fmt: skip


def encode_trades(
    symbol: str,
    event_time: int,
    transact_time: int,
    price_exponent: int,
    qty_exponent: int,
    trades: Sequence[TradeEntry],
    *,
    root_padding: int = 0,
    entry_padding: int = 0,
) -> bytes:
    """A TradesStreamEvent (template 10000): one frame, several trades.

    ``root_padding`` and ``entry_padding`` append that many zero bytes to the root block and to
    every group entry (declared in the block lengths), as a newer schema version that added fields
    would: a conforming decoder skips them.
    """
    _exponents(price_exponent, qty_exponent)
    if len(trades) > 0xFFFFFFFF:
        raise ValueError("too many trades for one group")
    root = _TRADES_ROOT.pack(event_time, transact_time, price_exponent, qty_exponent)
    root += b"\x00" * root_padding
    pad = b"\x00" * entry_padding
    entries = b"".join([_TRADE.pack(i, p, q, 1 if m else 0) + pad for i, p, q, m in trades])
    return b"".join((
        _HEADER.pack(len(root), TRADES_TEMPLATE, SCHEMA_ID, SCHEMA_VERSION),
        root,
        _GROUP32.pack(_TRADE.size + entry_padding, len(trades)),
        entries,
        _symbol(symbol),
    ))  # fmt: skip


def encode_best_bid_ask(
    symbol: str,
    event_time: int,
    book_update_id: int,
    price_exponent: int,
    qty_exponent: int,
    bid: Level,
    ask: Level,
    *,
    root_padding: int = 0,
) -> bytes:
    """A BestBidAskStreamEvent (template 10001): 66 bytes for a 7-character symbol."""
    _exponents(price_exponent, qty_exponent)
    root = (
        _BEST_BID_ASK.pack(
            event_time, book_update_id, price_exponent, qty_exponent, bid[0], bid[1], ask[0], ask[1]
        )
        + b"\x00" * root_padding
    )
    return b"".join((
        _HEADER.pack(len(root), BEST_BID_ASK_TEMPLATE, SCHEMA_ID, SCHEMA_VERSION),
        root,
        _symbol(symbol),
    ))  # fmt: skip


def encode_depth_snapshot(
    symbol: str,
    event_time: int,
    book_update_id: int,
    price_exponent: int,
    qty_exponent: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
    *,
    root_padding: int = 0,
    entry_padding: int = 0,
) -> bytes:
    """A DepthSnapshotStreamEvent (template 10002): the top levels of both sides."""
    _exponents(price_exponent, qty_exponent)
    root = _DEPTH_SNAPSHOT_ROOT.pack(event_time, book_update_id, price_exponent, qty_exponent)
    return _depth_frame(
        DEPTH_SNAPSHOT_TEMPLATE, root + b"\x00" * root_padding, bids, asks, symbol, entry_padding
    )


def encode_depth_diff(
    symbol: str,
    event_time: int,
    first_update_id: int,
    last_update_id: int,
    price_exponent: int,
    qty_exponent: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
    *,
    root_padding: int = 0,
    entry_padding: int = 0,
) -> bytes:
    """A DepthDiffStreamEvent (template 10003): the changed levels between two update ids."""
    _exponents(price_exponent, qty_exponent)
    root = _DEPTH_DIFF_ROOT.pack(
        event_time, first_update_id, last_update_id, price_exponent, qty_exponent
    )
    return _depth_frame(
        DEPTH_DIFF_TEMPLATE, root + b"\x00" * root_padding, bids, asks, symbol, entry_padding
    )


# -- decimals ------------------------------------------------------------------------------


def decimal_exponent(texts: Iterable[str]) -> int:
    """The largest exponent (fewest fractional digits, at most 0) that writes every decimal
    string of ``texts`` exactly as an integer mantissa: ``["0.35130000", "0.3475"]`` -> -4."""
    digits = 0
    for text in texts:
        _, dot, fraction = text.partition(".")
        if dot:
            digits = max(digits, len(fraction.rstrip("0")))
    return -digits


def mantissa(text: str, exponent: int) -> int:
    """The integer ``m`` with ``m x 10^exponent`` equal to the decimal string ``text``, exactly;
    ``ValueError`` if ``text`` has more fractional digits than ``-exponent`` can hold."""
    if exponent > 0:
        raise ValueError("the simulator encodes with exponents <= 0")
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("+-").partition(".")
    places = -exponent
    significant = fraction.rstrip("0")
    if len(significant) > places:
        raise ValueError(f"{text!r} does not fit exponent {exponent}")
    scale: int = 10**places
    value = int(whole or "0") * scale + int((significant + "0" * places)[:places] or "0")
    return -value if negative else value


# -- streams -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SbeKind:
    json_tail: str  # the JSON stream the market publishes it from
    kind: Kind
    levels: int | None = None


_TAILS: Final[dict[str, _SbeKind]] = {
    "trade": _SbeKind("trade", Kind.TRADE),
    "bestBidAsk": _SbeKind("bookTicker", Kind.BOOK_TICKER),
    "depth": _SbeKind("depth@100ms", Kind.DEPTH),
    "depth20": _SbeKind("depth20@100ms", Kind.PARTIAL_DEPTH, 20),
}
# JSON stream tails -> SBE tails (a recording's aggTrades serve the SBE trade stream).
_FROM_JSON: Final[dict[str, str]] = {
    "trade": "trade",
    "aggTrade": "trade",
    "bookTicker": "bestBidAsk",
    "depth@100ms": "depth",
    "depth20@100ms": "depth20",
}


class SbeStreams:
    """The stream names Binance's SBE endpoint serves (§8): ``<symbol>@trade``,
    ``<symbol>@bestBidAsk``, ``<symbol>@depth`` and ``<symbol>@depth20``, symbols in lowercase
    letters and digits. The same ``parse`` as :class:`fastmd.sim.venues.VenueStreams`, so the
    WebSocket server validates SBE subscriptions with it."""

    def parse(self, name: str) -> SimStream | None:
        """The stream ``name`` stands for on the SBE endpoint, or ``None``."""
        symbol, at, tail = name.partition("@")
        spec = _TAILS.get(tail) if at else None
        if spec is None or not symbol or not all(c.isalnum() and not c.isupper() for c in symbol):
            return None
        return SimStream(spec.kind, symbol=symbol, levels=spec.levels)

    @staticmethod
    def market_stream(name: str, *, recorded: bool = False) -> str | None:
        """The JSON stream the market publishes SBE stream ``name`` from (``None`` if none);
        ``recorded``: a recording's, whose trades are aggTrades."""
        symbol, _, tail = name.partition("@")
        spec = _TAILS.get(tail)
        if spec is None:
            return None
        if recorded and spec.kind is Kind.TRADE:
            return f"{symbol}@aggTrade"
        return f"{symbol}@{spec.json_tail}"

    @staticmethod
    def sbe_stream(json_stream: str) -> str | None:
        """The SBE stream a JSON stream's payloads are served on (``None`` if none)."""
        symbol, _, tail = json_stream.partition("@")
        sbe_tail = _FROM_JSON.get(tail)
        return f"{symbol}@{sbe_tail}" if sbe_tail is not None else None


SBE_STREAMS: Final = SbeStreams()


class SbeTranscoder:
    """Turns the market's JSON emissions into SBE frames (one frame per message; the trades of
    one taker order, consecutive emissions of one stream with one trade time, share a frame).

    Args:
        clock_us: wall clock in microseconds, for the event time of messages whose JSON has
            none (spot bookTicker and partial depth).
        decimals: ``(price decimals, quantity decimals)`` of a symbol (uppercase), or ``None``
            to take the exponents from each message's decimal strings.
    """

    def __init__(
        self,
        clock_us: Callable[[], int],
        decimals: Callable[[str], tuple[int, int] | None] = lambda symbol: None,
    ) -> None:
        self._clock_us = clock_us
        self._decimals = decimals

    def _exponents(
        self, symbol: str, prices: Iterable[str], qtys: Iterable[str]
    ) -> tuple[int, int]:
        known = self._decimals(symbol)
        if known is not None:
            return -known[0], -known[1]
        return decimal_exponent(prices), decimal_exponent(qtys)

    def transcode(self, emissions: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """SBE ``(stream, frame)`` pairs for the JSON ``(stream, payload)`` pairs that have an
        SBE stream; the others are dropped (the SBE endpoint serves only four streams)."""
        out: list[tuple[str, bytes]] = []
        pending: list[dict[str, Any]] = []  # trades waiting to share one frame
        pending_stream = ""
        for json_stream, payload in emissions:
            stream = SbeStreams.sbe_stream(json_stream)
            if stream is None:
                continue
            data = json.loads(payload)
            if stream.endswith("@trade"):
                if pending and (stream != pending_stream or data["T"] != pending[0]["T"]):
                    out.append((pending_stream, self.trades(pending)))
                    pending = []
                pending.append(data)
                pending_stream = stream
                continue
            if pending:
                out.append((pending_stream, self.trades(pending)))
                pending = []
            out.append((stream, self.message(stream, data)))
        if pending:
            out.append((pending_stream, self.trades(pending)))
        return out

    def trades(self, items: Sequence[dict[str, Any]]) -> bytes:
        """One TradesStreamEvent from JSON ``trade`` (or ``aggTrade``) events of one symbol."""
        first = items[0]
        symbol = first["s"]
        pe, qe = self._exponents(symbol, (t["p"] for t in items), (t["q"] for t in items))
        entries = [
            (t["t"] if "t" in t else t["a"], mantissa(t["p"], pe), mantissa(t["q"], qe), t["m"])
            for t in items
        ]
        return encode_trades(symbol, first["E"] * 1000, first["T"] * 1000, pe, qe, entries)

    def message(self, stream: str, data: dict[str, Any]) -> bytes:
        """The SBE frame of one JSON ``bookTicker``, ``depthUpdate`` or partial-depth event of
        SBE stream ``stream``."""
        tail = stream.partition("@")[2]
        if tail == "bestBidAsk":
            symbol = data["s"]
            pe, qe = self._exponents(symbol, (data["b"], data["a"]), (data["B"], data["A"]))
            event_time = data["E"] * 1000 if "E" in data else self._clock_us()
            return encode_best_bid_ask(
                symbol, event_time, data["u"], pe, qe,
                (mantissa(data["b"], pe), mantissa(data["B"], qe)),
                (mantissa(data["a"], pe), mantissa(data["A"], qe)),
            )  # fmt: skip
        if tail == "depth":
            symbol = data["s"]
            pe, qe, bids, asks = self._sides(symbol, data["b"], data["a"])
            return encode_depth_diff(
                symbol, data["E"] * 1000, data["U"], data["u"], pe, qe, bids, asks
            )
        symbol = data.get("s") or stream.partition("@")[0].upper()
        pe, qe, bids, asks = self._sides(symbol, data["bids"], data["asks"])
        event_time = data["E"] * 1000 if "E" in data else self._clock_us()
        return encode_depth_snapshot(symbol, event_time, data["lastUpdateId"], pe, qe, bids, asks)

    def _sides(
        self, symbol: str, bids: list[list[str]], asks: list[list[str]]
    ) -> tuple[int, int, list[Level], list[Level]]:
        """The exponents of a depth message and its ``[price, qty]`` string levels as mantissas."""
        pe, qe = self._exponents(symbol, (p for p, _ in bids + asks), (q for _, q in bids + asks))
        return (
            pe,
            qe,
            [(mantissa(p, pe), mantissa(q, qe)) for p, q in bids],
            [(mantissa(p, pe), mantissa(q, qe)) for p, q in asks],
        )
