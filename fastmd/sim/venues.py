"""The simulator's own tables of Binance's stream names, per venue, and the parser its WebSocket
server accepts SUBSCRIBE params and URL streams with.

The simulator is the server: it knows which streams Binance serves by itself, written here from
Binance's documentation (binance-protocol.md §1.3, §6, §9), and never asks the client's rules
(:mod:`fastmd.core.streams`). Should the client's rule be wrong, the simulator disagrees with it
instead of agreeing silently; ``tests/sim/test_venues.py`` checks that both sides parse every
stream of a large generated set alike, each with its own rules.

Everything after ``<symbol>@`` is a finite set per venue, and so are the all-market streams, so
the grammar is expanded once into two dicts: :attr:`VenueStreams.tails` (``"kline_1m"``,
``"depth5@100ms"``...) and :attr:`VenueStreams.all_market` (``"!miniTicker@arr"``...). Parsing a
name is a dict lookup and a check of the symbol's characters.

Rules held here:

- symbols in stream names are lowercase letters and digits (non-ASCII ones too); USD-M delivery
  contracts add ``_`` (``btcusdt_250926``);
- each venue's stream types, with the push cadence of the timer-driven ones (spot tickers every
  second, klines every 2 s and ``1s`` klines every second; USD-M tickers every 2 s, klines every
  250 ms, mark prices every 3 s or ``@1s``);
- depth diffs and partial depth (5, 10 or 20 levels) at the venue's speeds (spot 1000 ms or
  ``@100ms``; USD-M 250 ms, ``@100ms`` or ``@500ms``);
- kline intervals (USD-M has no ``1s``) and spot's UTC+8 klines (``@+08:00``);
- USD-M continuous-contract klines, ``<pair>_<contract type>@continuousKline_<interval>``: the
  pair is letters and digits only, the contract type ``perpetual``, ``current_quarter``,
  ``next_quarter`` or ``tradifi_perpetual``; USD-M's composite index (every second), RPI depth
  (``@rpiDepth@500ms`` only), ``!contractInfo`` (on change) and ``!assetIndex@arr`` (every
  second);
- window tickers ``ticker_<1h|4h|1d>`` and their all-market arrays (spot);
- the all-market streams (spot retired ``!ticker@arr`` in 2026 and ``!bookTicker`` in 2022);
- USD-M's routes since 2026: book data (``depth*``, ``rpiDepth``, ``bookTicker``,
  ``!bookTicker``) on ``/public``, the rest on ``/market``.

``!serverShutdown`` is accepted as a subscription on both venues (the simulator's choice: Binance
documents the event, not whether it can be subscribed to); it carries only the server's own event.
Continuous klines, composite indexes, RPI depth, contract info and asset indexes are accepted and
acknowledged, and the market publishes nothing on them (as Binance does for a well-formed stream
with nothing to say).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

__all__ = [
    "SPOT",
    "USDM",
    "VENUES",
    "VENUE_STREAMS",
    "Kind",
    "Route",
    "SimStream",
    "Venue",
    "VenueStreams",
]

Venue = Literal["binance-spot", "binance-usdm"]
VENUES: Final[tuple[Venue, ...]] = ("binance-spot", "binance-usdm")
Route = Literal["public", "market"]


class Kind(StrEnum):
    """What a stream carries (the value is how its type is written in a name)."""

    TRADE = "trade"
    AGG_TRADE = "aggTrade"
    BLOCK_TRADE = "blockTrade"
    KLINE = "kline_<interval>"
    MINI_TICKER = "miniTicker"
    TICKER = "ticker"
    WINDOW_TICKER = "ticker_<window>"
    BOOK_TICKER = "bookTicker"
    AVG_PRICE = "avgPrice"
    REFERENCE_PRICE = "referencePrice"
    DEPTH = "depth"
    PARTIAL_DEPTH = "depth<levels>"
    MARK_PRICE = "markPrice"
    FORCE_ORDER = "forceOrder"
    CONTINUOUS_KLINE = "continuousKline_<interval>"
    COMPOSITE_INDEX = "compositeIndex"
    RPI_DEPTH = "rpiDepth"
    ALL_MINI_TICKERS = "!miniTicker@arr"
    ALL_TICKERS = "!ticker@arr"
    ALL_WINDOW_TICKERS = "!ticker_<window>@arr"
    ALL_BOOK_TICKERS = "!bookTicker"
    ALL_MARK_PRICES = "!markPrice@arr"
    ALL_FORCE_ORDERS = "!forceOrder@arr"
    ALL_CONTRACT_INFO = "!contractInfo"
    ALL_ASSET_INDEXES = "!assetIndex@arr"
    SERVER_SHUTDOWN = "!serverShutdown"


@dataclass(frozen=True, slots=True)
class SimStream:
    """A stream the simulator serves, as its name describes it.

    Attributes:
        kind: what it carries.
        symbol: the lowercase symbol as written in the name (the pair, for a continuous kline);
            ``None`` for all-market streams.
        interval: the kline interval (``"1m"``).
        window: the ticker window (``"1h"``, ``"4h"``, ``"1d"``).
        levels: partial depth's levels per side (5, 10, 20).
        speed: the speed suffix without its ``@`` (``"100ms"``, ``"1s"``), ``None`` for the
            default speed.
        timezone: ``"+08:00"`` for spot klines aligned to UTC+8.
        cadence_ms: how often the server pushes it (ms); ``None`` for real-time streams, pushed on
            every change, and for ``!serverShutdown``.
        route: USD-M's path that serves it (``"public"`` or ``"market"``); ``None`` on spot.
        contract_type: a continuous kline's contract type (``"perpetual"``...).
    """

    kind: Kind
    symbol: str | None = None
    interval: str | None = None
    window: str | None = None
    levels: int | None = None
    speed: str | None = None
    timezone: str | None = None
    cadence_ms: int | None = None
    route: Route | None = None
    contract_type: str | None = None


class VenueStreams:
    """One venue's stream grammar, written out as tables, and its parser.

    Args:
        venue: the venue's name.
        symbol_extra: characters a symbol may contain besides lowercase letters and digits.
        realtime: stream types pushed on every change (``<symbol>@<type>``).
        timed: stream types pushed on a timer, with their cadence in ms.
        depth_speeds: the depth streams' speed suffixes (``None``: no suffix) and cadences (ms),
            for diffs (``depth``) and partial books (``depth<levels>``) alike.
        depth_levels: partial depth's levels per side.
        kline_intervals: the kline intervals, each with its push cadence (ms).
        kline_timezones: accepted ``@<timezone>`` suffixes of klines.
        windows: the window tickers' windows (``ticker_<window>`` and ``!ticker_<window>@arr``),
            each with its cadence (ms); empty where the venue has none.
        mark_price_speeds: ``markPrice``'s speed suffixes and cadences (ms); empty where the
            venue has no mark price.
        all_market: the all-market streams without a window: name to kind, speed and cadence.
        public_kinds: the kinds served on the ``/public`` route, the rest on ``/market``;
            ``None`` for a venue without routes.
        continuous_kline_intervals: continuous-contract kline intervals and their cadence (ms);
            empty where the venue has none.
        contract_types: the contract types a continuous kline's name may give after its pair.
        rpi_depth_speeds: RPI depth's speed suffixes (it has no default speed) and cadences.
    """

    def __init__(
        self,
        venue: Venue,
        *,
        symbol_extra: str,
        realtime: Mapping[str, Kind],
        timed: Mapping[str, tuple[Kind, int]],
        depth_speeds: Mapping[str | None, int],
        depth_levels: Iterable[int],
        kline_intervals: Mapping[str, int],
        kline_timezones: Iterable[str],
        windows: Mapping[str, int],
        mark_price_speeds: Mapping[str | None, int],
        all_market: Mapping[str, tuple[Kind, str | None, int | None]],
        public_kinds: frozenset[Kind] | None,
        continuous_kline_intervals: Mapping[str, int] | None = None,
        contract_types: Iterable[str] = (),
        rpi_depth_speeds: Mapping[str, int] | None = None,
    ) -> None:
        self.venue: Venue = venue
        self.symbol_extra = frozenset(symbol_extra)
        self.kline_intervals: tuple[str, ...] = tuple(kline_intervals)
        self.windows: tuple[str, ...] = tuple(windows)
        self.depth_levels: tuple[int, ...] = tuple(depth_levels)
        self.depth_speeds: tuple[str | None, ...] = tuple(depth_speeds)
        self.public_kinds = public_kinds
        self.contract_types: tuple[str, ...] = tuple(contract_types)
        tails: dict[str, SimStream] = {}
        names: dict[str, SimStream] = {}

        def at(speed: str | None) -> str:
            return "" if speed is None else f"@{speed}"

        for name, kind in realtime.items():
            tails[name] = SimStream(kind)
        for name, (kind, cadence) in timed.items():
            tails[name] = SimStream(kind, cadence_ms=cadence)
        for speed, cadence in depth_speeds.items():
            tails[f"depth{at(speed)}"] = SimStream(Kind.DEPTH, speed=speed, cadence_ms=cadence)
            for levels in self.depth_levels:
                tails[f"depth{levels}{at(speed)}"] = SimStream(
                    Kind.PARTIAL_DEPTH, levels=levels, speed=speed, cadence_ms=cadence
                )
        for interval, cadence in kline_intervals.items():
            tails[f"kline_{interval}"] = SimStream(
                Kind.KLINE, interval=interval, cadence_ms=cadence
            )
            for timezone in kline_timezones:
                tails[f"kline_{interval}@{timezone}"] = SimStream(
                    Kind.KLINE, interval=interval, timezone=timezone, cadence_ms=cadence
                )
        for window, cadence in windows.items():
            tails[f"ticker_{window}"] = SimStream(
                Kind.WINDOW_TICKER, window=window, cadence_ms=cadence
            )
            names[f"!ticker_{window}@arr"] = SimStream(
                Kind.ALL_WINDOW_TICKERS, window=window, cadence_ms=cadence
            )
        for speed, cadence in mark_price_speeds.items():
            tails[f"markPrice{at(speed)}"] = SimStream(
                Kind.MARK_PRICE, speed=speed, cadence_ms=cadence
            )
        for interval, cadence in (continuous_kline_intervals or {}).items():
            tails[f"continuousKline_{interval}"] = SimStream(
                Kind.CONTINUOUS_KLINE, interval=interval, cadence_ms=cadence
            )
        for speed, cadence in (rpi_depth_speeds or {}).items():
            tails[f"rpiDepth@{speed}"] = SimStream(Kind.RPI_DEPTH, speed=speed, cadence_ms=cadence)
        for name, (kind, speed, every) in all_market.items():
            names[name] = SimStream(kind, speed=speed, cadence_ms=every)
        if public_kinds is not None:
            for table in (tails, names):
                for name, stream in table.items():
                    route: Route = "public" if stream.kind in public_kinds else "market"
                    table[name] = dataclasses.replace(stream, route=route)
        self.tails: Mapping[str, SimStream] = tails
        """Every valid text after ``<symbol>@``, to its stream (``symbol`` unset)."""
        self.all_market: Mapping[str, SimStream] = names
        """Every valid all-market stream name, to its stream."""

    def __repr__(self) -> str:
        return f"<VenueStreams {self.venue}: {len(self.tails)} types, {len(self.all_market)} all>"

    def valid_symbol(self, symbol: str) -> bool:
        """Whether ``symbol`` may stand before the ``@`` of a stream name: lowercase letters and
        digits (non-ASCII ones too), plus the venue's extra characters."""
        return _valid_symbol(symbol, self.symbol_extra)

    def parse(self, name: str) -> SimStream | None:
        """The stream ``name`` stands for on this venue, or ``None`` if the venue serves no such
        stream (the server answers ``Invalid request: invalid stream``)."""
        if name.startswith("!"):
            return self.all_market.get(name)
        symbol, at, tail = name.partition("@")
        template = self.tails.get(tail) if at else None
        if template is None or not self.valid_symbol(symbol):
            return None
        if template.kind is Kind.CONTINUOUS_KLINE:
            # <pair>_<contract type>: a pair is letters and digits, so the first "_" ends it
            pair, _, contract_type = symbol.partition("_")
            if contract_type not in self.contract_types or not _valid_symbol(pair):
                return None
            return dataclasses.replace(template, symbol=pair, contract_type=contract_type)
        return dataclasses.replace(template, symbol=symbol)


def _valid_symbol(symbol: str, extra: frozenset[str] = frozenset()) -> bool:
    """Lowercase letters and digits (non-ASCII ones too) and ``extra``; not empty."""
    return bool(symbol) and all(
        (char.isalnum() and not char.isupper()) or char in extra for char in symbol
    )


# -- the tables, from Binance's documentation ----------------------------------------------

_SECOND: Final = 1000
_SPOT_INTERVALS: Final = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip
"""§9: spot kline intervals, case-sensitive (``1M`` is a month, ``1m`` a minute)."""

SPOT: Final = VenueStreams(
    "binance-spot",
    symbol_extra="",
    # §1.3: pushed on every change.
    realtime={
        "trade": Kind.TRADE,
        "aggTrade": Kind.AGG_TRADE,
        "blockTrade": Kind.BLOCK_TRADE,
        "bookTicker": Kind.BOOK_TICKER,
    },
    # §1.3: pushed every second.
    timed={
        "miniTicker": (Kind.MINI_TICKER, _SECOND),
        "ticker": (Kind.TICKER, _SECOND),
        "avgPrice": (Kind.AVG_PRICE, _SECOND),
        "referencePrice": (Kind.REFERENCE_PRICE, _SECOND),
    },
    depth_speeds={None: _SECOND, "100ms": 100},
    depth_levels=(5, 10, 20),
    # §1.3: klines every 2 s, 1 s for the 1s interval.
    kline_intervals={i: _SECOND if i == "1s" else 2 * _SECOND for i in _SPOT_INTERVALS},
    kline_timezones=("+08:00",),
    windows={"1h": _SECOND, "4h": _SECOND, "1d": _SECOND},
    mark_price_speeds={},
    # §1.3: !ticker@arr was retired on 2026-03-26 and !bookTicker removed in December 2022.
    all_market={
        "!miniTicker@arr": (Kind.ALL_MINI_TICKERS, None, _SECOND),
        "!serverShutdown": (Kind.SERVER_SHUTDOWN, None, None),
    },
    public_kinds=None,
)
"""Binance spot (``wss://stream.binance.com:9443``)."""

USDM: Final = VenueStreams(
    "binance-usdm",
    symbol_extra="_",  # delivery contracts: btcusdt_250926
    # §6: USD-M has no raw trade, blockTrade, avgPrice or referencePrice stream.
    realtime={
        "aggTrade": Kind.AGG_TRADE,
        "bookTicker": Kind.BOOK_TICKER,
        "forceOrder": Kind.FORCE_ORDER,
    },
    timed={
        "miniTicker": (Kind.MINI_TICKER, 2 * _SECOND),
        "ticker": (Kind.TICKER, 2 * _SECOND),
        "compositeIndex": (Kind.COMPOSITE_INDEX, _SECOND),
    },
    depth_speeds={None: 250, "100ms": 100, "500ms": 500},
    depth_levels=(5, 10, 20),
    # §6: klines every 250 ms; no 1s interval, no UTC+8 variant.
    kline_intervals={i: 250 for i in _SPOT_INTERVALS if i != "1s"},
    kline_timezones=(),
    windows={},
    mark_price_speeds={None: 3 * _SECOND, "1s": _SECOND},
    all_market={
        "!miniTicker@arr": (Kind.ALL_MINI_TICKERS, None, _SECOND),
        "!ticker@arr": (Kind.ALL_TICKERS, None, _SECOND),
        "!bookTicker": (Kind.ALL_BOOK_TICKERS, None, None),
        "!markPrice@arr": (Kind.ALL_MARK_PRICES, None, 3 * _SECOND),
        "!markPrice@arr@1s": (Kind.ALL_MARK_PRICES, "1s", _SECOND),
        "!forceOrder@arr": (Kind.ALL_FORCE_ORDERS, None, None),
        "!contractInfo": (Kind.ALL_CONTRACT_INFO, None, None),  # pushed on change
        "!assetIndex@arr": (Kind.ALL_ASSET_INDEXES, None, _SECOND),
        "!serverShutdown": (Kind.SERVER_SHUTDOWN, None, None),
    },
    # §6, 2026 routing: high-frequency book data on /public, everything else on /market.
    public_kinds=frozenset(
        {Kind.DEPTH, Kind.PARTIAL_DEPTH, Kind.RPI_DEPTH, Kind.BOOK_TICKER, Kind.ALL_BOOK_TICKERS}
    ),
    # §6: continuous-contract klines every 250 ms like klines (no 1s); the contract types of
    # the protocol notes, and tradifi_perpetual from Binance's current USD-M page.
    continuous_kline_intervals={i: 250 for i in _SPOT_INTERVALS if i != "1s"},
    contract_types=("perpetual", "current_quarter", "next_quarter", "tradifi_perpetual"),
    rpi_depth_speeds={"500ms": 500},
)
"""Binance USD-M futures (``wss://fstream.binance.com``)."""

VENUE_STREAMS: Final[Mapping[Venue, VenueStreams]] = {"binance-spot": SPOT, "binance-usdm": USDM}
