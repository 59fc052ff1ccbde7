"""REST over one aiohttp session: Binance's public market-data endpoints, typed, within the
request-weight budget, with a circuit breaker for a REST side that keeps failing.

Rules applied to every request:

- its weight (``fastmd.core.weights``) must fit the local budget (90% of the exchange's limit by
  default): the request waits rather than exceed it;
- ``X-MBX-USED-WEIGHT-1M`` from the exchange is trusted over the local count (the application
  may spend weight from the same address);
- a 429 or 418 blocks every request for its ``Retry-After`` (60 s when absent) and counts as a
  failure of the REST circuit breaker, as do 5xx answers, timeouts and network errors;
- response bodies are capped while they are read (``max_response_size``), before decoding.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from fastmd.core.breaker import CircuitBreaker, CircuitBreakerPolicy, CircuitState
from fastmd.core.codec import PriceType
from fastmd.core.pacing import WeightWindow
from fastmd.core.rest_models import (
    DepthSnapshot,
    ExchangeInfo,
    KlineBar,
    PremiumIndex,
    RestAggTrade,
    RestAvgPrice,
    RestBookTicker,
    RestErrorBody,
    RestTicker,
    RestTrade,
    ServerTime,
    TickerPrice,
)
from fastmd.core.streams import Venue
from fastmd.core.weights import (
    BAN_STATUSES,
    DEFAULT_WEIGHT_LIMIT,
    REST_PREFIX,
    ban_seconds,
    request_weight,
    usable_weight,
)
from fastmd.errors import RestError, RestTimeoutError

__all__ = ["RestClient", "RestTimeouts"]

T = TypeVar("T")

_decode_error = msgspec.json.Decoder(RestErrorBody).decode


@dataclass(frozen=True, kw_only=True)
class RestTimeouts:
    """Timeouts of REST requests, seconds.

    Attributes:
        total: the whole request, body included.
        connect: TCP (and TLS) connect.
    """

    total: float = 10.0
    connect: float = 5.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.total, connect=self.connect)


class RestClient:
    """Typed access to the public market-data endpoints of one venue.

    Args:
        session: the aiohttp session (owned by the caller).
        base_url: the REST base URL (``https://api.binance.com``, the simulator's ``rest_url``).
        venue: ``"binance-spot"`` or ``"binance-usdm"``.
        price_type: number type of prices and quantities (float, str, Decimal).
        weight_limit: the exchange's weight limit per minute (Binance's by default); requests
            keep below 90% of it.
        timeouts: :class:`RestTimeouts`.
        max_response_size: bodies larger than this (bytes) are refused while being read.
        circuit_breaker: when the REST side counts as down, and for how long.
        max_wait: longest a request waits for the weight budget or a ``Retry-After``; past it
            the request fails at once with :class:`fastmd.RestError` (``retry_after`` set)
            instead of sleeping through a ban.
        clock: monotonic clock.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        venue: Venue,
        *,
        price_type: PriceType = float,
        weight_limit: int | None = None,
        timeouts: RestTimeouts | None = None,
        max_response_size: int = 16 * 1024 * 1024,
        circuit_breaker: CircuitBreakerPolicy | None = None,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.venue: Venue = venue
        self.price_type = price_type
        self.timeouts = timeouts or RestTimeouts()
        self.max_response_size = max_response_size
        self._clock = clock
        limit = weight_limit or DEFAULT_WEIGHT_LIMIT[venue]
        self.weights = WeightWindow(usable_weight(limit))
        self.breaker = CircuitBreaker(
            circuit_breaker or CircuitBreakerPolicy(failure_threshold=5, cooldown=30.0), clock
        )
        self.max_wait = max_wait
        self._trial_in_flight = False
        self.used_weight: int | None = None
        """The exchange's ``X-MBX-USED-WEIGHT-1M`` after the last response."""
        self.requests = 0
        self._decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
        self.on_response: Callable[[str, Mapping[str, str], bytes], object] | None = None
        """``on_response(endpoint, query, body)`` for every 200 response, before it is decoded
        (``fastmd.record`` keeps the depth snapshots and exchangeInfo); must not raise."""

    def set_weight_limit(self, limit: int) -> None:
        """Use the limit the exchange announced (``exchangeInfo.rateLimits``)."""
        self.weights.budget = usable_weight(limit)

    # -- machinery ----------------------------------------------------------------------------

    def _decoder(self, model: Any) -> msgspec.json.Decoder[Any]:
        decoder = self._decoders.get(model)
        if decoder is None:
            decoder = self._decoders[model] = msgspec.json.Decoder(
                model, strict=self.price_type is not float
            )
        return decoder

    async def get(self, endpoint: str, params: Mapping[str, Any], model: Any) -> Any:
        """``GET <prefix><endpoint>`` decoded into ``model``.

        Raises:
            RestError: refused by the budget's circuit breaker, HTTP error (with status, Binance
                code and Retry-After), network failure, timeout, oversized or invalid body.
        """
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()
                 if v is not None}  # fmt: skip
        wait = self.breaker.time_until_allowed()
        if wait > 0:
            raise RestError(
                f"REST circuit open for another {wait:.1f} s: {endpoint} not sent",
                retry_after=wait,
            )
        trial = self.breaker.state is CircuitState.HALF_OPEN
        if trial and self._trial_in_flight:
            raise RestError(
                f"REST circuit half-open, its trial request is out: {endpoint} not sent"
            )
        weight = request_weight(self.venue, endpoint, query)
        while (delay := self.weights.delay(self._clock(), weight)) > 0:
            if delay > self.max_wait:
                raise RestError(
                    f"{endpoint}: the weight budget (or a Retry-After) frees up in {delay:.0f} s, "
                    f"more than max_wait={self.max_wait:g} s; not sent",
                    retry_after=delay,
                )
            await asyncio.sleep(delay)  # the budget frees up with time, not with an event
        self.weights.record(self._clock(), weight)
        url = self.base_url + REST_PREFIX[self.venue] + endpoint
        self.requests += 1
        self._trial_in_flight = trial
        try:
            status, headers, body = await self._fetch(url, query)
        except RestError as failed:
            if failed.status is None:  # no answer: the REST side may be down
                self.breaker.record_failure()
            raise
        finally:
            if trial:
                self._trial_in_flight = False
        self._note_weight(headers)
        if status != 200:
            error = self._http_error(endpoint, status, headers, body)
            if status in BAN_STATUSES or status >= 500:
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # it answered: a refusal of this request only
            raise error
        self.breaker.record_success()
        if self.on_response is not None:
            self.on_response(endpoint, query, body)
        try:
            return self._decoder(model).decode(body)
        except msgspec.MsgspecError as exc:
            raise RestError(f"{endpoint}: invalid response body: {exc}", status=status) from exc

    async def _fetch(self, url: str, query: dict[str, str]) -> tuple[int, Any, bytes]:
        try:
            async with self._session.get(
                url, params=query, timeout=self.timeouts.client_timeout()
            ) as response:
                chunks = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    chunks += chunk
                    if len(chunks) > self.max_response_size:
                        raise RestError(
                            f"{url}: response over {self.max_response_size} bytes; refused",
                            status=response.status,
                        )
                return response.status, response.headers, bytes(chunks)
        except TimeoutError as exc:
            total = self.timeouts.total
            raise RestTimeoutError(f"GET {url}: no complete answer within {total:g} s") from exc
        except (aiohttp.ClientError, RuntimeError) as exc:  # RuntimeError: session closed
            raise RestError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc

    def _note_weight(self, headers: Any) -> None:
        used = headers.get("X-MBX-USED-WEIGHT-1M")
        if used is None or not used.isdigit():
            return
        self.used_weight = int(used)
        now = self._clock()
        local = self.weights.used(now)
        if self.used_weight > local:
            self.weights.record(now, self.used_weight - local)  # others spend here too

    def _http_error(self, endpoint: str, status: int, headers: Any, body: bytes) -> RestError:
        code = None
        message = body[:200].decode("utf-8", "replace")
        try:
            parsed = _decode_error(body)
            code, message = parsed.code, parsed.msg
        except msgspec.MsgspecError:
            pass
        retry_after = None
        header = headers.get("Retry-After")
        if header is not None:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        ban = ban_seconds(status, retry_after)
        if ban is not None:
            self.weights.block(self._clock(), ban)
        return RestError(
            f"{endpoint}: HTTP {status} {code if code is not None else ''} {message}".strip(),
            status=status,
            code=code,
            retry_after=retry_after,
        )

    # -- endpoints ----------------------------------------------------------------------------

    async def ping(self) -> None:
        """``GET ping``: the REST API answers."""
        await self.get("ping", {}, dict)

    async def time(self) -> ServerTime:
        """``GET time``."""
        result: ServerTime = await self.get("time", {}, ServerTime)
        return result

    async def exchange_info(self, symbols: list[str] | None = None) -> ExchangeInfo:
        """``GET exchangeInfo`` (all symbols, or ``symbols``)."""
        params = {"symbols": _symbols(symbols)} if symbols else {}
        result: ExchangeInfo = await self.get("exchangeInfo", params, ExchangeInfo)
        return result

    async def depth(self, symbol: str, limit: int = 100) -> DepthSnapshot[Any]:
        """``GET depth``: the order book's top ``limit`` levels and its ``lastUpdateId``."""
        model = DepthSnapshot[self.price_type]  # type: ignore[name-defined]
        result: DepthSnapshot[Any] = await self.get(
            "depth", {"symbol": symbol.upper(), "limit": limit}, model
        )
        return result

    async def recent_trades(self, symbol: str, limit: int = 500) -> list[RestTrade[Any]]:
        """``GET trades``: the newest ``limit`` trades, oldest first."""
        model = list[RestTrade[self.price_type]]  # type: ignore[name-defined]
        result: list[RestTrade[Any]] = await self.get(
            "trades", {"symbol": symbol.upper(), "limit": limit}, model
        )
        return result

    async def historical_trades(
        self, symbol: str, *, from_id: int | None = None, limit: int = 500
    ) -> list[RestTrade[Any]]:
        """``GET historicalTrades``: ``limit`` trades (at most 1000) from trade id ``from_id`` on,
        oldest first (the newest without ``from_id``). Spot serves it without an API key
        (security type NONE, weight 25); USD-M's (weight 20) wants one, which this client does
        not send: expect :class:`fastmd.RestError` with status 401 there."""
        params = {"symbol": symbol.upper(), "fromId": from_id, "limit": limit}
        model = list[RestTrade[self.price_type]]  # type: ignore[name-defined]
        result: list[RestTrade[Any]] = await self.get("historicalTrades", params, model)
        return result

    async def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = 500,
    ) -> list[RestAggTrade[Any]]:
        """``GET aggTrades``: from ``from_id`` on, or in a time range, or the newest."""
        params = {
            "symbol": symbol.upper(), "fromId": from_id, "startTime": start_time,
            "endTime": end_time, "limit": limit,
        }  # fmt: skip
        model = list[RestAggTrade[self.price_type]]  # type: ignore[name-defined]
        result: list[RestAggTrade[Any]] = await self.get("aggTrades", params, model)
        return result

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = 500,
    ) -> list[KlineBar[Any]]:
        """``GET klines``: candles, oldest first."""
        params = {
            "symbol": symbol.upper(), "interval": interval, "startTime": start_time,
            "endTime": end_time, "limit": limit,
        }  # fmt: skip
        model = list[KlineBar[self.price_type]]  # type: ignore[name-defined]
        result: list[KlineBar[Any]] = await self.get("klines", params, model)
        return result

    async def ticker_24h(self, symbol: str, *, mini: bool = False) -> RestTicker[Any]:
        """``GET ticker/24hr`` of one symbol (``mini``: the MINI shape, spot only).

        Raises:
            ValueError: ``mini`` on USD-M futures (which has no MINI shape).
            RestError: as :meth:`get`.
        """
        params: dict[str, Any] = {"symbol": symbol.upper()}
        if mini:
            if self.venue != "binance-spot":
                raise ValueError("ticker/24hr type=MINI exists on spot only")
            params["type"] = "MINI"
        model = RestTicker[self.price_type]  # type: ignore[name-defined]
        result: RestTicker[Any] = await self.get("ticker/24hr", params, model)
        return result

    async def ticker_price(self, symbol: str) -> TickerPrice[Any]:
        """``GET ticker/price`` of one symbol."""
        model = TickerPrice[self.price_type]  # type: ignore[name-defined]
        result: TickerPrice[Any] = await self.get("ticker/price", {"symbol": symbol.upper()}, model)
        return result

    async def book_ticker(self, symbol: str) -> RestBookTicker[Any]:
        """``GET ticker/bookTicker`` of one symbol."""
        model = RestBookTicker[self.price_type]  # type: ignore[name-defined]
        result: RestBookTicker[Any] = await self.get(
            "ticker/bookTicker", {"symbol": symbol.upper()}, model
        )
        return result

    async def avg_price(self, symbol: str) -> RestAvgPrice[Any]:
        """``GET avgPrice`` (spot)."""
        model = RestAvgPrice[self.price_type]  # type: ignore[name-defined]
        result: RestAvgPrice[Any] = await self.get("avgPrice", {"symbol": symbol.upper()}, model)
        return result

    async def premium_index(self, symbol: str) -> PremiumIndex[Any]:
        """``GET premiumIndex`` (futures mark price and funding)."""
        model = PremiumIndex[self.price_type]  # type: ignore[name-defined]
        result: PremiumIndex[Any] = await self.get(
            "premiumIndex", {"symbol": symbol.upper()}, model
        )
        return result


def _symbols(symbols: list[str]) -> str:
    return "[" + ",".join(f'"{s.upper()}"' for s in symbols) + "]"


class SymbolDirectory:
    """The venue's listed symbols, fetched from ``exchangeInfo`` and kept for ``ttl`` seconds.

    Binance acknowledges a SUBSCRIBE for a well-formed stream of a symbol that does not exist and
    then sends nothing; checking the symbol here is the only way to say so.
    """

    def __init__(
        self,
        rest: RestClient,
        *,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rest = rest
        self._ttl = ttl
        self._clock = clock
        self._symbols: frozenset[str] | None = None
        self._fetched_at = 0.0
        self._pending: asyncio.Future[frozenset[str]] | None = None
        self.weight_limit: int | None = None
        """The REQUEST_WEIGHT limit per minute the exchange announced, once fetched."""

    async def symbols(self) -> frozenset[str]:
        """The listed symbols (uppercase); concurrent callers share one request.

        Raises:
            RestError: the list could not be fetched or decoded (``status``, ``code`` and
                ``retry_after`` as the failed request's; :class:`fastmd.RestTimeoutError` when
                it ran out of time).
        """
        if self._symbols is not None and self._clock() - self._fetched_at < self._ttl:
            return self._symbols
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch())
            # Shared and shielded: its waiters may all be cancelled (the client closing), and
            # its failure must not then surface as "Task exception was never retrieved".
            self._pending.add_done_callback(_retrieve)
        pending = self._pending
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self._pending = None

    def close(self) -> None:
        """Cancel a fetch in flight (the client is closing)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    async def _fetch(self) -> frozenset[str]:
        try:
            info = await self._rest.exchange_info()
        except RestError as exc:
            # The same class, status, code and Retry-After: callers decide on those, not on text.
            raise type(exc)(
                f"cannot fetch exchangeInfo: {exc}",
                status=exc.status,
                code=exc.code,
                retry_after=exc.retry_after,
            ) from exc
        self._symbols = frozenset(s.symbol for s in info.symbols)
        self._fetched_at = self._clock()
        for limit in info.rate_limits:
            if limit.rate_limit_type == "REQUEST_WEIGHT" and limit.interval == "MINUTE":
                self.weight_limit = limit.limit // max(limit.interval_num, 1)
                self._rest.set_weight_limit(self.weight_limit)
        return self._symbols


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
