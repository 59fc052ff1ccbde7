"""Binance stream names: parse, build and validate them, per venue.

Grammar (binance-protocol.md §1.3, §6, §9)::

    <lowercase symbol>@<type>[_<param>][@<speed or timezone>]
    <lowercase pair>_<contract type>@continuousKline_<interval>      (USD-M)
    !<all-market type>[@arr][@<speed>]

Rules that live here and nowhere else:

- symbols are lowercase in stream names (payloads carry them uppercase); non-ASCII is legal;
- kline intervals are checked per venue: USD-M futures has no ``1s``;
- each venue has its own catalogue and speeds (spot depth ``@100ms``; futures also ``@500ms``);
- USD-M continuous-contract klines name a pair and a contract type (``btcusdt_perpetual``), and
  USD-M RPI depth exists only as ``@rpiDepth@500ms``;
- USD-M futures routes streams by path since 2026: book data on ``/public``, the rest on
  ``/market``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from fastmd.errors import StreamNameError

__all__ = [
    "CONTRACT_TYPES",
    "SPOT_KLINE_INTERVALS",
    "TRADE_KINDS",
    "USDM_KLINE_INTERVALS",
    "Stream",
    "StreamKind",
    "Venue",
    "build_stream",
    "futures_route",
    "parse_stream",
    "trade_stream",
    "validate_stream",
    "validate_symbol",
]

Venue = Literal["binance-spot", "binance-usdm"]
VENUES: Final = ("binance-spot", "binance-usdm")

SPOT_KLINE_INTERVALS: Final = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip
USDM_KLINE_INTERVALS: Final = SPOT_KLINE_INTERVALS[1:]
WINDOWS: Final = ("1h", "4h", "1d")
PARTIAL_DEPTH_LEVELS: Final = (5, 10, 20)
KLINE_TIMEZONE: Final = "+08:00"
CONTRACT_TYPES: Final = ("perpetual", "current_quarter", "next_quarter", "tradifi_perpetual")
"""USD-M contract types of ``<pair>_<contract type>@continuousKline_<interval>`` (§6; Binance's
current USD-M page adds ``tradifi_perpetual`` to the three of the protocol notes)."""
RPI_DEPTH_SPEED: Final = "500ms"


class StreamKind(StrEnum):
    """What a stream carries; the value is the stream type as written in the name."""

    TRADE = "trade"
    AGG_TRADE = "aggTrade"
    BLOCK_TRADE = "blockTrade"
    KLINE = "kline"
    MINI_TICKER = "miniTicker"
    TICKER = "ticker"
    WINDOW_TICKER = "ticker_window"
    BOOK_TICKER = "bookTicker"
    AVG_PRICE = "avgPrice"
    REFERENCE_PRICE = "referencePrice"
    DEPTH = "depth"
    PARTIAL_DEPTH = "depthN"
    MARK_PRICE = "markPrice"
    FORCE_ORDER = "forceOrder"
    CONTINUOUS_KLINE = "continuousKline"
    COMPOSITE_INDEX = "compositeIndex"
    RPI_DEPTH = "rpiDepth"
    ALL_MINI_TICKERS = "!miniTicker@arr"
    ALL_TICKERS = "!ticker@arr"
    ALL_WINDOW_TICKERS = "!ticker_window@arr"
    ALL_BOOK_TICKERS = "!bookTicker"
    ALL_MARK_PRICES = "!markPrice@arr"
    ALL_FORCE_ORDERS = "!forceOrder@arr"
    ALL_CONTRACT_INFO = "!contractInfo"
    ALL_ASSET_INDEXES = "!assetIndex@arr"
    SERVER_SHUTDOWN = "!serverShutdown"


ARRAY_KINDS: Final = frozenset(
    {
        StreamKind.ALL_MINI_TICKERS,
        StreamKind.ALL_TICKERS,
        StreamKind.ALL_WINDOW_TICKERS,
        StreamKind.ALL_MARK_PRICES,
        StreamKind.ALL_ASSET_INDEXES,
    }
)
"""Kinds whose frames are JSON arrays of events (one per symbol that changed)."""

_SYMBOL_KINDS: Final = frozenset(
    {
        StreamKind.TRADE, StreamKind.AGG_TRADE, StreamKind.BLOCK_TRADE, StreamKind.KLINE,
        StreamKind.MINI_TICKER, StreamKind.TICKER, StreamKind.WINDOW_TICKER,
        StreamKind.BOOK_TICKER, StreamKind.AVG_PRICE, StreamKind.REFERENCE_PRICE,
        StreamKind.DEPTH, StreamKind.PARTIAL_DEPTH, StreamKind.MARK_PRICE, StreamKind.FORCE_ORDER,
        StreamKind.CONTINUOUS_KLINE, StreamKind.COMPOSITE_INDEX, StreamKind.RPI_DEPTH,
    }
)  # fmt: skip

# Which kinds each venue serves. Keys are the plain stream types that can follow "<symbol>@".
_SPOT_TYPES: Final = {
    "trade": StreamKind.TRADE,
    "aggTrade": StreamKind.AGG_TRADE,
    "blockTrade": StreamKind.BLOCK_TRADE,
    "miniTicker": StreamKind.MINI_TICKER,
    "ticker": StreamKind.TICKER,
    "bookTicker": StreamKind.BOOK_TICKER,
    "avgPrice": StreamKind.AVG_PRICE,
    "referencePrice": StreamKind.REFERENCE_PRICE,
    "depth": StreamKind.DEPTH,
}
_USDM_TYPES: Final = {
    "aggTrade": StreamKind.AGG_TRADE,
    "miniTicker": StreamKind.MINI_TICKER,
    "ticker": StreamKind.TICKER,
    "bookTicker": StreamKind.BOOK_TICKER,
    "depth": StreamKind.DEPTH,
    "markPrice": StreamKind.MARK_PRICE,
    "forceOrder": StreamKind.FORCE_ORDER,
    "compositeIndex": StreamKind.COMPOSITE_INDEX,
    "rpiDepth": StreamKind.RPI_DEPTH,
}
_DEPTH_SPEEDS: Final[dict[str, tuple[str, ...]]] = {
    "binance-spot": ("100ms",),
    "binance-usdm": ("100ms", "500ms"),
}
# All-market streams with no speed or window parameter, per venue.
_SPOT_ALL: Final = {
    "!miniTicker@arr": StreamKind.ALL_MINI_TICKERS,
    "!serverShutdown": StreamKind.SERVER_SHUTDOWN,
}
_USDM_ALL: Final = {
    "!miniTicker@arr": StreamKind.ALL_MINI_TICKERS,
    "!ticker@arr": StreamKind.ALL_TICKERS,
    "!bookTicker": StreamKind.ALL_BOOK_TICKERS,
    "!markPrice@arr": StreamKind.ALL_MARK_PRICES,
    "!markPrice@arr@1s": StreamKind.ALL_MARK_PRICES,
    "!forceOrder@arr": StreamKind.ALL_FORCE_ORDERS,
    "!contractInfo": StreamKind.ALL_CONTRACT_INFO,
    "!assetIndex@arr": StreamKind.ALL_ASSET_INDEXES,
    "!serverShutdown": StreamKind.SERVER_SHUTDOWN,
}
_RETIRED: Final = {
    (
        "binance-spot",
        "!ticker@arr",
    ): "retired on 2026-03-26; use <symbol>@ticker or !miniTicker@arr",
    ("binance-spot", "!bookTicker"): "removed in December 2022; use <symbol>@bookTicker",
}
# USD-M futures path routing (2026): high-frequency book data is on /public, the rest on /market.
_USDM_PUBLIC_KINDS: Final = frozenset(
    {
        StreamKind.BOOK_TICKER,
        StreamKind.ALL_BOOK_TICKERS,
        StreamKind.DEPTH,
        StreamKind.PARTIAL_DEPTH,
        StreamKind.RPI_DEPTH,
    }
)


@dataclass(frozen=True, slots=True)
class Stream:
    """A parsed stream name. ``name`` rebuilds the canonical wire name.

    Attributes:
        kind: what the stream carries.
        symbol: the lowercase symbol (the pair, for CONTINUOUS_KLINE), or ``None`` for
            all-market streams.
        interval: kline interval (``"1m"``), for KLINE and CONTINUOUS_KLINE.
        window: ticker window (``"1h"``, ``"4h"``, ``"1d"``), for the window tickers.
        levels: 5, 10 or 20, for PARTIAL_DEPTH.
        speed: update speed suffix (``"100ms"``, ``"500ms"``, ``"1s"``) when the name has one.
        timezone: ``"+08:00"`` for klines aligned to UTC+8.
        contract_type: ``"perpetual"``, ``"current_quarter"``, ``"next_quarter"`` or
            ``"tradifi_perpetual"``, for CONTINUOUS_KLINE.
    """

    kind: StreamKind
    symbol: str | None = None
    interval: str | None = None
    window: str | None = None
    levels: int | None = None
    speed: str | None = None
    timezone: str | None = None
    contract_type: str | None = None

    @property
    def name(self) -> str:
        """The stream name as written on the wire."""
        kind = self.kind
        speed = f"@{self.speed}" if self.speed else ""
        if kind not in _SYMBOL_KINDS:
            if kind is StreamKind.ALL_WINDOW_TICKERS:
                return f"!ticker_{self.window}@arr"
            return f"{kind.value}{speed}"
        if kind is StreamKind.KLINE:
            tz = f"@{self.timezone}" if self.timezone else ""
            return f"{self.symbol}@kline_{self.interval}{tz}"
        if kind is StreamKind.CONTINUOUS_KLINE:
            return f"{self.symbol}_{self.contract_type}@continuousKline_{self.interval}"
        if kind is StreamKind.WINDOW_TICKER:
            return f"{self.symbol}@ticker_{self.window}"
        if kind is StreamKind.PARTIAL_DEPTH:
            return f"{self.symbol}@depth{self.levels}{speed}"
        return f"{self.symbol}@{kind.value}{speed}"


def _fail(name: str, part: str, allowed: str) -> StreamNameError:
    return StreamNameError(f"invalid stream name {name!r}: {part}; allowed: {allowed}")


def _check_venue(venue: str) -> None:
    if venue not in VENUES:
        raise StreamNameError(f"unknown venue {venue!r}; allowed: {', '.join(VENUES)}")


def _symbol_char(char: str, venue: Venue) -> bool:
    # USD-M delivery contracts carry their expiry after an underscore: btcusdt_250926.
    return char.isalnum() or (char == "_" and venue == "binance-usdm")


def _check_symbol(name: str, symbol: str, venue: Venue) -> None:
    if not symbol:
        raise _fail(name, "the symbol before '@' is empty", "a lowercase symbol such as 'btcusdt'")
    for char in symbol:
        if not _symbol_char(char, venue):
            raise _fail(
                name,
                f"symbol {symbol!r} contains {char!r}",
                "letters and digits (non-ASCII letters too)",
            )
        if char.isupper():
            raise _fail(
                name,
                f"symbol {symbol!r} is not lowercase",
                f"lowercase symbols in stream names, e.g. {symbol.lower()!r}",
            )


def validate_symbol(symbol: str, venue: Venue = "binance-spot") -> str:
    """``symbol`` uppercased (as REST and payloads spell it), once checked against the symbol
    grammar of stream names: letters and digits, and ``_`` for USD-M delivery contracts.

    Raises:
        StreamNameError: a malformed symbol.
    """
    _check_venue(venue)
    if not symbol:
        raise StreamNameError(f"invalid symbol {symbol!r}: expected e.g. 'BTCUSDT'")
    for char in symbol:
        if not _symbol_char(char, venue):
            raise StreamNameError(
                f"invalid symbol {symbol!r}: {char!r} is not allowed; letters and digits"
                + (" (and '_' for delivery contracts)" if venue == "binance-usdm" else "")
            )
    return symbol.upper()


TRADE_KINDS: Final[Mapping[Venue, StreamKind]] = {
    "binance-spot": StreamKind.TRADE,
    # USD-M futures has no raw trade stream: aggTrade ids are its contiguous trade sequence.
    "binance-usdm": StreamKind.AGG_TRADE,
}
"""The stream kind that carries every trade of a symbol, per venue."""


def trade_stream(symbol: str, venue: Venue = "binance-spot") -> str:
    """The name of the stream that carries every trade of ``symbol`` on ``venue``
    (``btcusdt@trade`` spot, ``btcusdt@aggTrade`` USD-M).

    Raises:
        StreamNameError: a malformed symbol.
    """
    return f"{validate_symbol(symbol, venue).lower()}@{TRADE_KINDS[venue].value}"


def _parse_all_market(name: str, venue: Venue) -> Stream:
    retired = _RETIRED.get((venue, name))
    if retired:
        raise _fail(name, f"this stream was {retired}", _allowed_all(venue))
    table = _SPOT_ALL if venue == "binance-spot" else _USDM_ALL
    kind = table.get(name)
    if kind is not None:
        speed = "1s" if name.endswith("@1s") else None
        return Stream(kind, speed=speed)
    if name.startswith("!ticker_") and name.endswith("@arr") and venue == "binance-spot":
        window = name[len("!ticker_") : -len("@arr")]
        if window in WINDOWS:
            return Stream(StreamKind.ALL_WINDOW_TICKERS, window=window)
        raise _fail(name, f"ticker window {window!r}", ", ".join(WINDOWS))
    raise _fail(name, f"unknown all-market stream for {venue}", _allowed_all(venue))


def _allowed_all(venue: Venue) -> str:
    names = list(_SPOT_ALL if venue == "binance-spot" else _USDM_ALL)
    if venue == "binance-spot":
        names += [f"!ticker_{w}@arr" for w in WINDOWS]
    return ", ".join(names)


def _allowed_types(venue: Venue) -> str:
    types = list(_SPOT_TYPES if venue == "binance-spot" else _USDM_TYPES)
    types += ["kline_<interval>", "depth5", "depth10", "depth20"]
    if venue == "binance-spot":
        types += ["ticker_1h", "ticker_4h", "ticker_1d"]
    else:
        types += ["continuousKline_<interval> (after <pair>_<contract type>@)"]
    return ", ".join(types)


def parse_stream(name: str, venue: Venue = "binance-spot") -> Stream:
    """Parse a stream name of ``venue`` into a :class:`Stream`.

    Raises:
        StreamNameError: the name does not follow the venue's grammar; the message names the bad
            part and the values that are allowed.
    """
    _check_venue(venue)
    if not isinstance(name, str):
        raise StreamNameError(f"a stream name must be a str, not {type(name).__name__}")
    if name.startswith("!"):
        return _parse_all_market(name, venue)
    symbol, at, rest = name.partition("@")
    if not at:
        raise _fail(name, "no '@' between symbol and stream type", "<symbol>@<type>")
    _check_symbol(name, symbol, venue)
    stream_type, at_suffix, suffix = rest.partition("@")
    if at_suffix and not suffix:
        raise _fail(name, "nothing after the trailing '@'", "a speed or timezone, or no '@'")
    if stream_type.startswith("kline_"):
        intervals = SPOT_KLINE_INTERVALS if venue == "binance-spot" else USDM_KLINE_INTERVALS
        interval = stream_type[len("kline_") :]
        if interval not in intervals:
            raise _fail(name, f"kline interval {interval!r} on {venue}", ", ".join(intervals))
        if suffix and (suffix != KLINE_TIMEZONE or venue != "binance-spot"):
            allowed = f"no suffix or @{KLINE_TIMEZONE}" if venue == "binance-spot" else "no suffix"
            raise _fail(name, f"kline suffix {'@' + suffix!r}", allowed)
        return Stream(StreamKind.KLINE, symbol, interval=interval, timezone=suffix or None)
    if stream_type.startswith("continuousKline_") and venue == "binance-usdm":
        return _parse_continuous_kline(name, symbol, stream_type, suffix)
    if stream_type.startswith("ticker_") and venue == "binance-spot":
        window = stream_type[len("ticker_") :]
        if window not in WINDOWS:
            raise _fail(name, f"ticker window {window!r}", ", ".join(WINDOWS))
        if suffix:
            raise _fail(name, f"suffix {'@' + suffix!r} after a window ticker", "no suffix")
        return Stream(StreamKind.WINDOW_TICKER, symbol, window=window)
    if stream_type.startswith("depth") and stream_type != "depth":
        levels_text = stream_type[len("depth") :]
        if levels_text not in {str(n) for n in PARTIAL_DEPTH_LEVELS}:
            raise _fail(name, f"depth levels {levels_text!r}", "5, 10, 20")
        speed = _check_depth_speed(name, venue, suffix)
        return Stream(StreamKind.PARTIAL_DEPTH, symbol, levels=int(levels_text), speed=speed)
    types = _SPOT_TYPES if venue == "binance-spot" else _USDM_TYPES
    kind = types.get(stream_type)
    if kind is None:
        raise _fail(name, f"stream type {stream_type!r} on {venue}", _allowed_types(venue))
    if kind is StreamKind.DEPTH:
        return Stream(kind, symbol, speed=_check_depth_speed(name, venue, suffix))
    if kind is StreamKind.MARK_PRICE:
        if suffix not in ("", "1s"):
            raise _fail(name, f"markPrice speed {'@' + suffix!r}", "no suffix or @1s")
        return Stream(kind, symbol, speed=suffix or None)
    if kind is StreamKind.RPI_DEPTH:
        if suffix != RPI_DEPTH_SPEED:
            shown = f"speed {'@' + suffix!r}" if suffix else "no speed"
            raise _fail(name, f"rpiDepth with {shown}", f"@{RPI_DEPTH_SPEED} only")
        return Stream(kind, symbol, speed=suffix)
    if suffix:
        raise _fail(name, f"suffix {'@' + suffix!r} after {stream_type!r}", "no suffix")
    return Stream(kind, symbol)


def _parse_continuous_kline(name: str, symbol: str, stream_type: str, suffix: str) -> Stream:
    # <pair>_<contract type>: a pair has no "_", so the first one ends it
    pair, _, contract_type = symbol.partition("_")
    if not pair:
        raise _fail(name, "no pair before the contract type", "<pair>_<contract type>")
    if contract_type not in CONTRACT_TYPES:
        shown = f"contract type {contract_type!r}" if contract_type else "no contract type"
        raise _fail(
            name,
            f"{shown} after the pair (<pair>_<contract type>@continuousKline_<interval>)",
            ", ".join(CONTRACT_TYPES),
        )
    interval = stream_type[len("continuousKline_") :]
    if interval not in USDM_KLINE_INTERVALS:
        raise _fail(
            name, f"kline interval {interval!r} on binance-usdm", ", ".join(USDM_KLINE_INTERVALS)
        )
    if suffix:
        raise _fail(name, f"suffix {'@' + suffix!r} after a continuous kline", "no suffix")
    return Stream(StreamKind.CONTINUOUS_KLINE, pair, interval=interval, contract_type=contract_type)


def _check_depth_speed(name: str, venue: Venue, suffix: str) -> str | None:
    if not suffix:
        return None
    speeds = _DEPTH_SPEEDS[venue]
    if suffix not in speeds:
        allowed = "no suffix or " + ", ".join(f"@{s}" for s in speeds)
        raise _fail(name, f"depth speed {'@' + suffix!r} on {venue}", allowed)
    return suffix


def validate_stream(name: str, venue: Venue = "binance-spot") -> str:
    """Return ``name`` unchanged if it is a valid stream of ``venue``.

    Raises:
        StreamNameError: as :func:`parse_stream`.
    """
    parse_stream(name, venue)
    return name


def build_stream(
    kind: StreamKind | str,
    symbol: str | None = None,
    *,
    venue: Venue = "binance-spot",
    interval: str | None = None,
    window: str | None = None,
    levels: int | None = None,
    speed: str | None = None,
    timezone: str | None = None,
    contract_type: str | None = None,
) -> str:
    """Build a stream name and validate it for ``venue``.

    ``symbol`` may be given in any case (``"BTCUSDT"``); stream names use it lowercased. For a
    continuous-contract kline it is the pair, and ``contract_type`` names the contract.

    Raises:
        StreamNameError: the parts do not make a valid stream of ``venue``.
    """
    try:
        kind = StreamKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in StreamKind)
        raise StreamNameError(f"unknown stream kind {kind!r}; allowed: {allowed}") from None
    if kind in _SYMBOL_KINDS:
        if not symbol:
            raise StreamNameError(f"stream kind {kind.value!r} needs a symbol")
        symbol = symbol.lower()
    elif symbol is not None:
        raise StreamNameError(f"all-market stream kind {kind.value!r} takes no symbol")
    stream = Stream(kind, symbol, interval, window, levels, speed, timezone, contract_type)
    name = stream.name
    if parse_stream(name, venue) != stream:
        raise StreamNameError(f"stream parts {stream!r} do not form a valid {venue} stream")
    return name


def futures_route(stream: str | Stream) -> Literal["public", "market"]:
    """The USD-M futures path (``/public`` or ``/market``) that serves ``stream``.

    An unrouted futures connection only gets ``/public`` streams: a ``markPrice`` subscription on it
    is acknowledged and then delivers nothing, so the client must pick the route.
    """
    parsed = parse_stream(stream, "binance-usdm") if isinstance(stream, str) else stream
    return "public" if parsed.kind in _USDM_PUBLIC_KINDS else "market"
