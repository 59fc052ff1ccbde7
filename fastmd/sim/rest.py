"""The simulator's REST server: Binance's public market-data endpoints on ``aiohttp.web``.

Spot serves ``/api/v3/...``, USD-M futures ``/fapi/v1/...`` (binance-protocol.md §6, §7). Bodies
come pre-encoded from the market (:class:`fastmd.sim.market.Market` or a replay); this module
owns what Binance's gateway does around them:

- parameter checks with Binance's error codes and messages (HTTP 400 ``{"code","msg"}``);
- request weights charged per client address against a fixed one-minute window
  (``floor(clock() / 60)``), reported in ``X-MBX-USED-WEIGHT-1M`` on every response;
- 429 with ``Retry-After`` past the limit, then 418 IP bans that double with each repeat;
- the faults :class:`fastmd.sim.Faults` switches on: injected error statuses, delays, timeouts.

The weight is charged before the limit check and before parameter validation, as on Binance: a
rejected or malformed request still costs its weight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec
from aiohttp import web
from multidict import MultiMapping

from fastmd.sim.limits import SimLimits
from fastmd.sim.replay import Unavailable
from fastmd.sim.venues import Venue

__all__ = ["MarketView", "RestServer"]

logger = logging.getLogger(__name__)

Query = MultiMapping[str]

_CONTENT_TYPE: Final = "application/json;charset=UTF-8"
_MINUTE: Final = 60.0
_MAX_BAN_SECONDS: Final = 3 * 86_400.0  # Binance: bans escalate "from 2 minutes to 3 days"
_HOUR_MS: Final = 3_600_000

# Binance validates with Java regexes and quotes them in -1100 messages; ``\w&&[^a-z]`` is "word
# characters except lowercase". The Python patterns below accept the same (ASCII) strings.
_SYMBOL_RE: Final = re.compile(r"[A-Z0-9_.\-]{1,50}")
_SYMBOL_RANGE: Final = r"^[\w\-._&&[^a-z]]{1,50}$"
_SYMBOLS_RE: Final = re.compile(r'\[(?:"[A-Z0-9_.\-]{1,50}"(?:,"[A-Z0-9_.\-]{1,50}")*)?\]')
_SYMBOLS_RANGE: Final = r'^\[("[\w\-._&&[^a-z]]{1,50}"(,"[\w\-._&&[^a-z]]{1,50}"){0,}){0,1}\]$'
_NUMBER_RE: Final = re.compile(r"[0-9]{1,20}")
_NUMBER_RANGE: Final = "^[0-9]{1,20}$"
_WINDOW_RE: Final = re.compile(r"([1-9][0-9]?)([mhd])")
_WINDOW_MAX: Final = {"m": 59, "h": 23, "d": 7}
_WINDOW_UNIT_MS: Final = {"m": 60_000, "h": _HOUR_MS, "d": 24 * _HOUR_MS}
_TIMEZONE_RE: Final = re.compile(r"([+-]?)([0-9]{1,2})(?::([0-9]{2}))?")
_INTERVAL_RE: Final = re.compile(r"([0-9]{1,3})([smhd])")
_INTERVAL_UNIT_MS: Final = {"s": 1_000, "m": 60_000, "h": _HOUR_MS, "d": 24 * _HOUR_MS}
_SYMBOL_STATUSES: Final = frozenset({"TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY"})
_FUTURES_DEPTH_LIMITS: Final = (5, 10, 20, 50, 100, 500, 1000)
_TICKER_TYPES: Final = ("FULL", "MINI")
_MAX_WINDOW_SYMBOLS: Final = 100

_MSG_UNKNOWN: Final = "An unknown error occurred while processing the request."
_MSG_BUSY: Final = (
    "Server is currently overloaded with other requests. Please try again in a few minutes."
)
_MSG_TIMEOUT: Final = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)


class MarketView(Protocol):
    """What the REST server needs from a market: :class:`fastmd.sim.market.Market` and
    :class:`fastmd.sim.replay.ReplayMarket` both fit. Views return pre-encoded JSON; a replay
    raises :class:`fastmd.sim.replay.Unavailable` for the views it has no data for."""

    @property
    def symbols(self) -> list[str]: ...

    def now_ms(self) -> int: ...

    def book(self, symbol: str) -> Any: ...

    def depth(self, book: Any, limit: int) -> bytes: ...

    def exchange_info(self, symbols: Any = None) -> bytes: ...

    def valid_interval(self, interval: str) -> bool: ...

    def recent_trades(self, book: Any, limit: int) -> bytes: ...

    def historical_trades(self, book: Any, *, limit: int, from_id: int | None = None) -> bytes: ...

    def agg_trades(
        self,
        book: Any,
        *,
        limit: int,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> bytes: ...

    def klines(
        self,
        book: Any,
        interval: str,
        *,
        limit: int,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> bytes: ...

    def avg_price_body(self, book: Any) -> bytes: ...

    def ticker_24h(self, book: Any, *, mini: bool = False, window_ms: int | None = None) -> str: ...

    def ticker_price(self, book: Any) -> str: ...

    def book_ticker(self, book: Any) -> str: ...

    def premium_index(self, book: Any) -> str: ...


class _ApiError(Exception):
    """A request Binance would reject: answered with ``status`` and ``{"code","msg"}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def _mandatory(name: str) -> _ApiError:
    return _ApiError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _illegal(name: str, legal: str) -> _ApiError:
    return _ApiError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def _not_valid(name: str) -> _ApiError:
    return _ApiError(-1130, f"Data sent for parameter '{name}' is not valid.")


def _empty(name: str) -> _ApiError:
    return _ApiError(-1105, f"Parameter '{name}' was empty.")


def _error_body(code: int, msg: str) -> bytes:
    return msgspec.json.encode({"code": code, "msg": msg})


def _seconds(value: float) -> str:
    """A ``Retry-After`` value: whole seconds as Binance sends them; a fractional value (only
    from an explicit ``retry_after`` fault) is kept so tests can stay fast."""
    return str(int(value)) if value == int(value) else f"{value:g}"


def _array(items: list[str]) -> bytes:
    return ("[" + ",".join(items) + "]").encode()


# -- lenient readers for weights (never raise: a malformed request still costs its weight) -----


def _peek_int(query: Query, name: str, default: int) -> int:
    raw = query.get(name)
    return int(raw) if raw is not None and _NUMBER_RE.fullmatch(raw) else default


def _peek_symbol_count(query: Query) -> int | None:
    """1 for ``symbol``, the length of ``symbols``, ``None`` for neither (all symbols)."""
    if query.get("symbol"):
        return 1
    raw = query.get("symbols")
    if not raw:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        return 1
    return max(len(names), 1) if isinstance(names, list) else 1


class _Params:
    """The query of one request, checked the way Binance checks it before any endpoint logic:
    a repeated parameter is -1101; on spot, a parameter the endpoint does not read is -1104."""

    def __init__(self, query: Query, known: frozenset[str], *, strict: bool) -> None:
        keys = [key for key, _ in query.items()]
        distinct = set(keys)
        if len(distinct) != len(keys):
            raise _ApiError(-1101, "Duplicate values for a parameter detected.")
        unread = distinct - known
        if strict and unread:
            raise _ApiError(
                -1104,
                f"Not all sent parameters were read; read '{len(distinct) - len(unread)}' "
                f"parameter(s) but was sent '{len(distinct)}'.",
            )
        # Futures ignores parameters it does not know; keep only the known ones either way.
        self.values: dict[str, str] = {k: query[k] for k in distinct & known}

    def get(self, name: str) -> str | None:
        return self.values.get(name)


@dataclass(frozen=True)
class _Endpoint:
    weight: Callable[[Query], int]
    handler: Callable[[_Params], bytes]
    params: frozenset[str]


def _e(
    weight: Callable[[Query], int], handler: Callable[[_Params], bytes], params: str = ""
) -> _Endpoint:
    """An endpoint reading ``params`` (space-separated names)."""
    return _Endpoint(weight, handler, frozenset(params.split()))


def _fixed(weight: int) -> Callable[[Query], int]:
    return lambda query: weight


class _Endpoints:
    """The endpoint table of one venue: parameter rules, weights and market views."""

    def __init__(self, venue: Venue, market: MarketView, limits: SimLimits) -> None:
        self.venue = venue
        self.market = market
        self.limits = limits
        self.spot = venue == "binance-spot"
        self.stale_depth: dict[Any, bytes] = {}  # book spec -> snapshot body (a fault)
        self.prefix = "/api/v3/" if self.spot else "/fapi/v1/"
        self.routes: dict[str, _Endpoint] = self._spot() if self.spot else self._futures()

    def route(self, path: str) -> _Endpoint | None:
        if not path.startswith(self.prefix):
            return None
        return self.routes.get(path[len(self.prefix) :])

    # -- tables ----------------------------------------------------------------------------

    def _spot(self) -> dict[str, _Endpoint]:
        klines = _e(_fixed(2), self.klines, "symbol interval startTime endTime timeZone limit")
        tickers = "symbol symbols symbolStatus"
        return {
            "ping": _e(_fixed(1), self.ping),
            "time": _e(_fixed(1), self.time),
            "exchangeInfo": _e(_fixed(20), self.exchange_info,
                               "symbol symbols permissions showPermissionSets symbolStatus"),
            "depth": _e(self._spot_depth_weight, self.depth, "symbol limit symbolStatus"),
            "trades": _e(_fixed(25), self.trades, "symbol limit"),
            "historicalTrades": _e(_fixed(25), self.historical_trades, "symbol limit fromId"),
            "aggTrades": _e(_fixed(4), self.agg_trades,
                            "symbol fromId startTime endTime limit"),
            "klines": klines,
            "uiKlines": klines,
            "avgPrice": _e(_fixed(2), self.avg_price, "symbol"),
            "ticker/24hr": _e(self._spot_24hr_weight, self.ticker_24hr, tickers + " type"),
            "ticker/price": _e(self._spot_ticker_weight, self.ticker_price, tickers),
            "ticker/bookTicker": _e(self._spot_ticker_weight, self.book_ticker, tickers),
            "ticker": _e(self._window_weight, self.ticker_window,
                         tickers + " windowSize type"),
        }  # fmt: skip

    def _futures(self) -> dict[str, _Endpoint]:
        def by_symbol(one: int, every: int) -> Callable[[Query], int]:
            return lambda query: one if query.get("symbol") else every

        return {
            "ping": _e(_fixed(1), self.ping),
            "time": _e(_fixed(1), self.time),
            "exchangeInfo": _e(_fixed(1), self.exchange_info),
            "depth": _e(self._futures_depth_weight, self.futures_depth, "symbol limit"),
            "trades": _e(_fixed(5), self.trades, "symbol limit"),
            "historicalTrades": _e(_fixed(20), self.historical_trades, "symbol limit fromId"),
            "aggTrades": _e(_fixed(20), self.agg_trades,
                            "symbol fromId startTime endTime limit"),
            "klines": _e(self._futures_klines_weight, self.klines,
                         "symbol interval startTime endTime limit"),
            "ticker/24hr": _e(by_symbol(1, 40), self.ticker_24hr, "symbol"),
            "ticker/price": _e(by_symbol(1, 2), self.ticker_price, "symbol"),
            "ticker/bookTicker": _e(by_symbol(2, 5), self.book_ticker, "symbol"),
            "premiumIndex": _e(by_symbol(1, 10), self.premium_index, "symbol"),
        }  # fmt: skip

    # -- weights ---------------------------------------------------------------------------

    @staticmethod
    def _spot_depth_weight(query: Query) -> int:
        limit = _peek_int(query, "limit", 100)
        if limit <= 100:
            return 5
        if limit <= 500:
            return 25
        return 50 if limit <= 1000 else 250

    @staticmethod
    def _futures_depth_weight(query: Query) -> int:
        limit = _peek_int(query, "limit", 500)
        if limit <= 50:
            return 2
        if limit <= 100:
            return 5
        return 10 if limit <= 500 else 20

    @staticmethod
    def _futures_klines_weight(query: Query) -> int:
        limit = _peek_int(query, "limit", 500)
        if limit < 100:
            return 1
        if limit < 500:
            return 2
        return 5 if limit <= 1000 else 10

    @staticmethod
    def _spot_24hr_weight(query: Query) -> int:
        count = _peek_symbol_count(query)
        if count is None:
            return 80
        if count <= 20:
            return 2
        return 40 if count <= 100 else 80

    @staticmethod
    def _spot_ticker_weight(query: Query) -> int:
        return 2 if query.get("symbol") else 4

    @staticmethod
    def _window_weight(query: Query) -> int:
        return min(4 * (_peek_symbol_count(query) or 1), 200)

    # -- parameters ------------------------------------------------------------------------

    def _book(self, value: str | None, *, required: bool = True) -> Any:
        if value is None or value == "":
            if required or value is None:
                raise _mandatory("symbol")
            raise _empty("symbol")
        # Spot rejects lowercase as illegal characters; futures looks symbols up in any case.
        if self.spot and not _SYMBOL_RE.fullmatch(value):
            raise _illegal("symbol", _SYMBOL_RANGE)
        book = self.market.book(value)
        if book is None:
            raise _ApiError(-1121, "Invalid symbol.")
        return book

    def _symbol_list(self, raw: str) -> list[Any]:
        if raw == "":
            raise _empty("symbols")
        if not _SYMBOLS_RE.fullmatch(raw):
            raise _illegal("symbols", _SYMBOLS_RANGE)
        names: list[str] = json.loads(raw)
        if not names:
            raise _mandatory("symbols")
        if len(set(names)) != len(names):
            raise _ApiError(-1151, "Symbol is present multiple times in the list.")
        return [self._book(name) for name in names]

    def _select(self, p: _Params, *, required: bool = False) -> tuple[list[Any], bool]:
        """The books a request names (``symbol``, ``symbols`` or all) and whether it named one."""
        symbol, symbols = p.get("symbol"), p.get("symbols")
        if symbol is not None and symbols is not None:
            raise _ApiError(
                -1128,
                "Combination of optional parameters invalid. Recommendation: 'symbol' and "
                "'symbols' cannot both be sent.",
            )
        if symbol is not None:
            return [self._book(symbol, required=False)], True
        if symbols is not None:
            return self._symbol_list(symbols), False
        if required:
            raise _ApiError(
                -1102, "Param 'symbol' or 'symbols' must be sent, but both were empty/null!"
            )
        return [self.market.book(name) for name in self.market.symbols], False

    def _symbol_status(self, p: _Params, books: list[Any], single: bool) -> list[Any]:
        """Apply ``symbolStatus``: every simulated symbol is ``TRADING``."""
        status = p.get("symbolStatus")
        if status is None:
            return books
        if status not in _SYMBOL_STATUSES:
            raise _ApiError(-1122, "Invalid symbolStatus.")
        if status == "TRADING":
            return books
        if single:
            raise _ApiError(-1220, "The symbol's status does not match the requested symbolStatus.")
        return []

    def _number(self, p: _Params, name: str) -> int | None:
        raw = p.get(name)
        if raw is None:
            return None
        if raw == "":
            raise _empty(name)
        if not _NUMBER_RE.fullmatch(raw):
            raise _illegal(name, _NUMBER_RANGE)
        return int(raw)

    def _time(self, p: _Params, name: str) -> int | None:
        value = self._number(p, name)
        # Spot takes time parameters in milliseconds or microseconds (binance-protocol.md §7).
        if value is not None and self.spot and value >= 10**14:
            value //= 1000
        return value

    def _limit(self, p: _Params, *, default: int, maximum: int, clamp: bool = False) -> int:
        limit = self._number(p, "limit")
        if limit is None:
            return default
        if limit < 1:
            raise _not_valid("limit")
        if limit > maximum:
            if clamp:
                return maximum
            raise _not_valid("limit")
        return limit

    def _ticker_type(self, p: _Params) -> bool:
        """Whether ``type`` asks for MINI tickers."""
        kind = p.get("type")
        if kind is None:
            return False
        if kind not in _TICKER_TYPES:
            raise _ApiError(-1139, "Invalid ticker type.")
        return kind == "MINI"

    def _time_range(self, p: _Params) -> tuple[int | None, int | None]:
        return self._time(p, "startTime"), self._time(p, "endTime")

    # -- handlers --------------------------------------------------------------------------

    def ping(self, p: _Params) -> bytes:
        return b"{}"

    def time(self, p: _Params) -> bytes:
        return b'{"serverTime":%d}' % self.market.now_ms()

    def exchange_info(self, p: _Params) -> bytes:
        books: list[Any] | None = None
        if p.get("symbol") is not None or p.get("symbols") is not None:
            books, single = self._select(p)
            books = self._symbol_status(p, books, single)
        elif p.get("symbolStatus") is not None:
            books = self._symbol_status(p, [], False)
        names = None if books is None else [self._name(book) for book in books]
        return self._patch_rate_limits(self.market.exchange_info(names))

    @staticmethod
    def _name(book: Any) -> str:
        spec = getattr(book, "spec", None)
        return str(spec.symbol if spec is not None else book.symbol)

    def _patch_rate_limits(self, body: bytes) -> bytes:
        """Advertise the REQUEST_WEIGHT limit this server enforces (tests shrink it)."""
        advertised = b'"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":%d}'
        if advertised % self.limits.rest_weight_per_minute in body:
            return body
        info = msgspec.json.decode(body)
        for item in info.get("rateLimits", ()):
            if item.get("rateLimitType") == "REQUEST_WEIGHT":
                item["limit"] = self.limits.rest_weight_per_minute
        return msgspec.json.encode(info)

    def depth(self, p: _Params) -> bytes:
        book = self._book(p.get("symbol"))
        limit = self._limit(p, default=100, maximum=5000, clamp=True)
        self._symbol_status(p, [book], True)
        return self._stale_or(book, limit) or self.market.depth(book, limit)

    def _stale_or(self, book: Any, limit: int) -> bytes | None:
        """A snapshot captured earlier (the stale-depth fault), trimmed to ``limit`` levels."""
        old = self.stale_depth.pop(getattr(book, "spec", book), None)
        if old is None:
            return None
        body = json.loads(old)
        body["bids"], body["asks"] = body["bids"][:limit], body["asks"][:limit]
        return json.dumps(body, separators=(",", ":")).encode()

    def futures_depth(self, p: _Params) -> bytes:
        book = self._book(p.get("symbol"))
        limit = self._number(p, "limit")
        if limit is None:
            limit = 500
        elif limit not in _FUTURES_DEPTH_LIMITS:
            raise _ApiError(-4021, f"{limit} is not valid depth limit")
        return self._stale_or(book, limit) or self.market.depth(book, limit)

    def trades(self, p: _Params) -> bytes:
        book = self._book(p.get("symbol"))
        limit = self._limit(p, default=500, maximum=1000)
        return self.market.recent_trades(book, limit)

    def historical_trades(self, p: _Params) -> bytes:
        book = self._book(p.get("symbol"))
        limit = self._limit(p, default=500, maximum=1000)
        from_id = self._number(p, "fromId")
        return self.market.historical_trades(book, limit=limit, from_id=from_id)

    def agg_trades(self, p: _Params) -> bytes:
        book = self._book(p.get("symbol"))
        limit = self._limit(p, default=500, maximum=1000)
        from_id = self._number(p, "fromId")
        start, end = self._time_range(p)
        if from_id is not None and (start is not None or end is not None):
            raise _ApiError(-1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and end - start > _HOUR_MS:
            raise _ApiError(-1127, "More than 1 hours between startTime and endTime.")
        return self.market.agg_trades(
            book, limit=limit, from_id=from_id, start_time=start, end_time=end
        )

    def klines(self, p: _Params) -> bytes:
        book = self._book(p.get("symbol"))
        interval = p.get("interval")
        if not interval:
            raise _mandatory("interval")
        if not self.market.valid_interval(interval):
            raise _ApiError(-1120, "Invalid interval.")
        limit = self._limit(p, default=500, maximum=1000 if self.spot else 1500)
        start, end = self._time_range(p)
        self._check_time_zone(p.get("timeZone"), interval)
        return self.market.klines(book, interval, limit=limit, start_time=start, end_time=end)

    @staticmethod
    def _check_time_zone(raw: str | None, interval: str) -> None:
        """Accept ``timeZone`` where its bars equal the UTC bars; refuse other offsets honestly."""
        if raw is None:
            return
        match = _TIMEZONE_RE.fullmatch(raw)
        if match is None:
            raise _not_valid("timeZone")
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        offset = (hours * 60 + minutes) * (-1 if sign == "-" else 1)
        if minutes >= 60 or not -12 * 60 <= offset <= 14 * 60:
            raise _not_valid("timeZone")
        if offset == 0:
            return
        bar = _INTERVAL_RE.fullmatch(interval)
        # An offset that is a whole number of bars leaves the bucket edges where UTC puts them
        # (weeks and months are calendar-aligned: no offset qualifies).
        if (
            bar is not None
            and (offset * 60_000) % (int(bar.group(1)) * _INTERVAL_UNIT_MS[bar.group(2)]) == 0
        ):
            return
        raise _ApiError(
            -1000, f"The simulator serves timeZone {raw} only for intervals it divides evenly."
        )

    def avg_price(self, p: _Params) -> bytes:
        book = self._book(p.get("symbol"))
        return self.market.avg_price_body(book)

    def _many(self, p: _Params, view: Callable[[Any], str]) -> bytes:
        books, single = self._select(p)
        books = self._symbol_status(p, books, single)
        items = [view(book) for book in books]
        return items[0].encode() if single else _array(items)

    def ticker_24hr(self, p: _Params) -> bytes:
        mini = self._ticker_type(p)
        ticker = self.market.ticker_24h
        return self._many(p, lambda book: ticker(book, mini=mini))

    def ticker_price(self, p: _Params) -> bytes:
        return self._many(p, self.market.ticker_price)

    def book_ticker(self, p: _Params) -> bytes:
        return self._many(p, self.market.book_ticker)

    def premium_index(self, p: _Params) -> bytes:
        return self._many(p, self.market.premium_index)

    def ticker_window(self, p: _Params) -> bytes:
        books, single = self._select(p, required=True)
        if len(books) > _MAX_WINDOW_SYMBOLS:
            raise _ApiError(
                -1101,
                f"Too many parameters; expected '{_MAX_WINDOW_SYMBOLS}' and received "
                f"'{len(books)}'.",
            )
        window_ms = self._window_size(p.get("windowSize"))
        mini = self._ticker_type(p)
        books = self._symbol_status(p, books, single)
        # Binance opens the window on a whole minute: up to 59,999 ms wider than asked.
        window_ms += self.market.now_ms() % 60_000
        ticker = self.market.ticker_24h
        items = [ticker(book, mini=mini, window_ms=window_ms) for book in books]
        return items[0].encode() if single else _array(items)

    @staticmethod
    def _window_size(raw: str | None) -> int:
        if raw is None:
            return 24 * _HOUR_MS
        match = _WINDOW_RE.fullmatch(raw)
        if match is None or int(match.group(1)) > _WINDOW_MAX[match.group(2)]:
            raise _not_valid("windowSize")
        return int(match.group(1)) * _WINDOW_UNIT_MS[match.group(2)]


@dataclass
class _Client:
    """Rate-limit state of one client address."""

    window: int = -1
    weight: int = 0
    rejected: int = 0  # requests answered 429 in this window
    bans: int = 0
    banned_until: float = 0.0


@dataclass
class _ErrorFault:
    status: int
    remaining: int | None
    retry_after: float | None
    path: str | None

    def matches(self, path: str) -> bool:
        if self.path is None or self.path == path:
            return True
        # A bare endpoint name ("depth", "ticker/price") matches it under any prefix.
        return not self.path.startswith("/") and path.endswith("/" + self.path)


class RestServer:
    """Binance's public REST market data for one venue, served from ``market``.

    Args:
        venue: ``"binance-spot"`` (``/api/v3``) or ``"binance-usdm"`` (``/fapi/v1``).
        market: the market whose views answer (synthetic or replay).
        limits: request-weight limit and ban rules.
        clock: wall clock in seconds; decides the weight window and ban ends.

    Attributes:
        requests: how many requests arrived (every path, every outcome).
    """

    def __init__(
        self,
        *,
        venue: Venue,
        market: MarketView,
        limits: SimLimits,
        clock: Callable[[], float],
    ) -> None:
        self.venue: Venue = venue
        self.market = market
        self.limits = limits
        self.requests = 0
        self._clock = clock
        self._endpoints = _Endpoints(venue, market, limits)
        self._clients: dict[str, _Client] = {}
        self._error: _ErrorFault | None = None
        self._delay: float | None = None
        self._timeout = False
        self._hung: set[asyncio.Future[None]] = set()
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (0 picks a free port) and serve; returns the bound port."""
        if self._runner is not None:
            raise RuntimeError("RestServer already started")
        self._stopped = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # access_log=None: one log line per request would swamp tests and benchmarks.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound: int = runner.addresses[0][1]
        logger.info("REST server (%s) listening on %s:%d", self.venue, host, bound)
        return bound

    async def stop(self) -> None:
        """Answer pending requests (503), close every connection and the listener; idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopped.set()
        self._release_hung()
        await runner.cleanup()
        logger.info("REST server (%s) stopped", self.venue)

    # -- faults ----------------------------------------------------------------------------

    def set_error(
        self,
        status: int | None,
        *,
        count: int | None = None,
        retry_after: float | None = None,
        path: str | None = None,
    ) -> None:
        """Answer requests with HTTP ``status`` instead of serving them.

        429 and 418 come as Binance's rate-limit responses (``-1003`` bodies, ``Retry-After``:
        ``retry_after``, or the seconds to the next minute for 429 and the ban length for 418);
        503 as ``-1008``; other statuses as ``-1000``. The fault charges no weight and registers
        no ban.

        Args:
            status: the HTTP status, or ``None`` to clear the fault.
            count: answer only the next ``count`` matching requests; ``None``: until cleared.
            retry_after: ``Retry-After`` seconds (fractions are sent as given).
            path: only requests to this path (``"/api/v3/depth"``), or to this endpoint under
                any prefix (``"depth"``); ``None``: every path.

        Raises:
            ValueError: ``status`` is not an HTTP error status or ``count`` is below 1.
        """
        if status is None:
            self._error = None
            return
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), not {status}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None for 'until cleared')")
        self._error = _ErrorFault(status, count, retry_after, path)
        logger.debug("REST fault: status %d (count=%s, path=%s)", status, count, path)

    def set_stale_depth(self, symbols: Iterable[str] | None) -> None:
        """Capture each symbol's depth snapshot now; the next depth request of the symbol gets
        that (by then stale) snapshot, once. ``None`` drops what was captured."""
        self._endpoints.stale_depth.clear()
        for symbol in symbols or ():
            book = self._endpoints.market.book(symbol)
            if book is not None:
                self._endpoints.stale_depth[book.spec] = self._endpoints.market.depth(book, 5000)

    def set_delay(self, seconds: float | None) -> None:
        """Delay every response by ``seconds`` (``None`` or 0 ends the delay)."""
        if seconds is not None and seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = seconds or None

    def set_timeout(self, active: bool) -> None:
        """While active, accept requests and never answer them; clearing answers the pending
        ones with 503 (``-1007``)."""
        self._timeout = active
        if not active:
            self._release_hung()

    def _release_hung(self) -> None:
        hung, self._hung = self._hung, set()
        for future in hung:
            if not future.done():
                future.set_result(None)

    # -- counters --------------------------------------------------------------------------

    def used_weight(self, address: str) -> int:
        """The weight ``address`` used in the current minute window."""
        client = self._clients.get(address)
        if client is None or client.window != math.floor(self._clock() / _MINUTE):
            return 0
        return client.weight

    # -- serving ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        address = request.remote or "unknown"
        delay = self._delay
        if self._timeout:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hung.add(future)
            await future
            return self._json(503, _error_body(-1007, _MSG_TIMEOUT), self.used_weight(address))
        try:
            response = self._fault(request.path, address) or self._serve(request, address)
        except Exception:
            logger.exception("REST %s failed", request.path_qs)
            response = self._json(500, _error_body(-1000, _MSG_UNKNOWN), self.used_weight(address))
        if delay is not None and not self._stopped.is_set():
            try:
                # Wait on the stop event rather than sleep, so stop() never waits for a delay.
                async with asyncio.timeout(delay):
                    await self._stopped.wait()
            except TimeoutError:
                pass
        return response

    def _json(
        self, status: int, body: bytes, weight: int, retry_after: str | None = None
    ) -> web.Response:
        headers = {
            "Content-Type": _CONTENT_TYPE,
            "X-MBX-USED-WEIGHT-1M": str(weight),
            "X-MBX-USED-WEIGHT": str(weight),
        }
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return web.Response(status=status, body=body, headers=headers)

    def _client(self, address: str, now: float) -> _Client:
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = _Client()
        window = math.floor(now / _MINUTE)
        if client.window != window:
            client.window, client.weight, client.rejected = window, 0, 0
        return client

    def _fault(self, path: str, address: str) -> web.Response | None:
        fault = self._error
        if fault is None or not fault.matches(path):
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._error = None
        now = self._clock()
        weight = self.used_weight(address)
        status, retry_after = fault.status, fault.retry_after
        if status == 429:
            wait = retry_after if retry_after is not None else self._to_next_minute(now)
            return self._json(429, self._too_much_body(address), weight, _seconds(wait))
        if status == 418:
            wait = retry_after if retry_after is not None else self.limits.rest_ban_seconds
            body = self._banned_body(address, int((now + wait) * 1000))
            return self._json(418, body, weight, _seconds(wait))
        code, msg = (-1008, _MSG_BUSY) if status == 503 else (-1000, _MSG_UNKNOWN)
        header = _seconds(retry_after) if retry_after is not None else None
        return self._json(status, _error_body(code, msg), weight, header)

    def _serve(self, request: web.Request, address: str) -> web.Response:
        now = self._clock()
        client = self._client(address, now)
        if client.banned_until > now:
            return self._banned(client, now, address)
        endpoint = self._endpoints.route(request.path)
        if endpoint is None or request.method not in ("GET", "HEAD"):
            return self._not_found(request, client.weight, 404 if endpoint is None else 405)
        client.weight += endpoint.weight(request.query)
        if client.weight > self.limits.rest_weight_per_minute:
            if client.rejected >= self.limits.rest_ban_after_429s:
                return self._ban(client, now, address)
            client.rejected += 1
            wait = _seconds(self._to_next_minute(now))
            return self._json(429, self._too_much_body(address), client.weight, wait)
        try:
            params = _Params(request.query, endpoint.params, strict=self._endpoints.spot)
            body = endpoint.handler(params)
        except _ApiError as exc:
            return self._json(exc.status, _error_body(exc.code, exc.msg), client.weight)
        except Unavailable as exc:
            return self._json(400, _error_body(-1000, str(exc)), client.weight)
        return self._json(200, body, client.weight)

    def _not_found(self, request: web.Request, weight: int, status: int) -> web.Response:
        if self._endpoints.spot:
            # Spot's gateway answers unknown paths without a JSON body.
            return web.Response(
                status=status,
                headers={"X-MBX-USED-WEIGHT-1M": str(weight), "X-MBX-USED-WEIGHT": str(weight)},
            )
        msg = f"Path {request.path}, Method {request.method} is invalid"
        return self._json(status, _error_body(-5000, msg), weight)

    # -- rate limits -----------------------------------------------------------------------

    @staticmethod
    def _to_next_minute(now: float) -> int:
        return max(1, math.ceil((math.floor(now / _MINUTE) + 1) * _MINUTE - now))

    def _too_much_body(self, address: str) -> bytes:
        limit = self.limits.rest_weight_per_minute
        if self._endpoints.spot:
            msg = (
                f"Too much request weight used; current limit is {limit} request weight per 1 "
                "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
            )
        else:
            msg = (
                f"Too many requests; current limit of IP({address}) is {limit} requests per "
                "minute. Please use the websocket for live updates to avoid polling the API."
            )
        return _error_body(-1003, msg)

    def _banned_body(self, address: str, until_ms: int) -> bytes:
        if self._endpoints.spot:
            msg = (
                f"Way too much request weight used; IP banned until {until_ms}. Please use "
                "WebSocket Streams for live updates to avoid bans."
            )
        else:
            msg = (
                f"Way too many requests; IP({address}) banned until {until_ms}. Please use the "
                "websocket for live updates to avoid bans."
            )
        return _error_body(-1003, msg)

    def _ban(self, client: _Client, now: float, address: str) -> web.Response:
        # The exponent is capped so that a client banned thousands of times cannot overflow.
        doubled = self.limits.rest_ban_seconds * 2 ** min(client.bans, 64)
        seconds = min(doubled, _MAX_BAN_SECONDS)
        client.bans += 1
        client.banned_until = now + seconds
        logger.warning("REST client %s banned for %g s (ban #%d)", address, seconds, client.bans)
        return self._banned(client, now, address)

    def _banned(self, client: _Client, now: float, address: str) -> web.Response:
        wait = max(1, math.ceil(client.banned_until - now))
        body = self._banned_body(address, int(client.banned_until * 1000))
        return self._json(418, body, client.weight, str(wait))
