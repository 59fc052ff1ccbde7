"""``client.market``: Binance market data through one call each, answered from the live
WebSocket value when MarketData sees the stream, else from a short-lived cache, else by REST.

Rules:

- every data method returns a :class:`Result` and never raises for what the exchange or the
  network does: a failure comes back in ``Result.error`` (a :class:`fastmd.FastmdError`, usually
  :class:`fastmd.RestError`). Only API misuse raises, at once: a malformed symbol or an interval
  the venue does not define (:class:`fastmd.StreamNameError`, a ``ValueError``), a limit below 1
  (``ValueError``), a client that is not started or is closed (:class:`fastmd.InvalidState`);
- REST answers are cached per endpoint and arguments in a ``cachetools.TTLCache`` whose timer is
  the injected monotonic clock; results are cached, never coroutines, and failures are not
  cached;
- identical requests made while one is in flight share it (one HTTP call): a dict of tasks keyed
  like the cache;
- live values come only from streams MarketData subscribed itself (:meth:`MarketData.track`,
  :meth:`MarketData.subscribe_price`): it never touches the client's frame handler, it adds a
  callback like any user would. They are used while that subscription is active and the client
  is ``CONNECTED``; any other status forgets them until the next WebSocket event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Protocol, TypeVar

import msgspec
from cachetools import TTLCache

from fastmd.aio.subscriptions import SelectiveDelivery
from fastmd.core.convert import rest_ticker
from fastmd.core.events import Kline, Ticker
from fastmd.core.rest_models import DepthSnapshot, KlineBar, RestTicker, RestTrade
from fastmd.core.selective import ChangeFilter, Throttle, throttle_seconds
from fastmd.core.streams import (
    SPOT_KLINE_INTERVALS,
    USDM_KLINE_INTERVALS,
    Venue,
    trade_stream,
    validate_symbol,
)
from fastmd.errors import (
    FastmdError,
    FastmdTimeoutError,
    InvalidState,
    RestError,
    StreamNameError,
)

if TYPE_CHECKING:
    from fastmd.aio.metrics import Metrics
    from fastmd.aio.rest import RestClient
    from fastmd.aio.subscriptions import Subscription
    from fastmd.core.status import Status

__all__ = ["CacheTTLs", "MarketData", "Result"]


class MarketHost(Protocol):
    """What MarketData uses of the client: public members only (:class:`fastmd.Client`)."""

    @property
    def venue(self) -> Venue: ...

    @property
    def status(self) -> Status: ...

    @property
    def rest(self) -> RestClient: ...

    @property
    def event_source(self) -> Literal["ws", "rest"]: ...

    def subscribe(
        self,
        streams: str | list[str],
        callback: Callable[[Any], object],
        *,
        only_changes: bool = False,
        throttle: float | None = None,
    ) -> Subscription: ...

    def on_status(self, callback: Callable[[Status, Metrics], object]) -> Callable[[], None]: ...


logger = logging.getLogger(__name__)

T = TypeVar("T")

Source = Literal["ws", "rest", "cache"]
"""Where a :class:`Result` comes from."""

_CONNECTED: Final = "CONNECTED"  # fastmd.Status is a StrEnum; compared by value, no import cycle
_CLOSED: Final = "CLOSED"


class Result(msgspec.Struct, Generic[T], frozen=True):
    """The outcome of a :class:`MarketData` call: ``Result(data, source, error, ts)``.

    Attributes:
        data: the value (see the method for its type); ``None`` when ``error`` is set.
        source: ``"ws"`` (a live WebSocket event), ``"rest"`` (an HTTP answer fetched for this
            call, or for an identical call in flight at the same time) or ``"cache"`` (an
            earlier REST answer still within its TTL).
        error: why there is no data: a :class:`fastmd.FastmdError` (:class:`fastmd.RestError`
            with ``status``, ``code`` and ``retry_after`` for HTTP failures); ``None`` on success.
        ts: epoch milliseconds: the event time (``E``) of a WebSocket event; the local time the
            REST answer arrived (or the failure was seen); for ``"cache"``, the ``ts`` of the
            cached REST answer, so ``now - ts`` is its age.
    """

    data: T | None
    source: Source
    error: FastmdError | None
    ts: int

    @property
    def ok(self) -> bool:
        """True when there is data (no error)."""
        return self.error is None


@dataclass(frozen=True, kw_only=True)
class CacheTTLs:
    """How long (seconds) a REST answer of each :class:`MarketData` method is served from the
    cache; 0 disables caching for that method.

    Attributes:
        price: :meth:`MarketData.price` (``ticker/price``).
        ticker_24h: :meth:`MarketData.ticker_24h` (``ticker/24hr``).
        klines: :meth:`MarketData.klines`.
        order_book_snapshot: :meth:`MarketData.order_book_snapshot` (``depth``).
        recent_trades: :meth:`MarketData.recent_trades` (``trades``).
        max_entries: cached answers kept per method (least recently used go first).
    """

    price: float = 1.0
    ticker_24h: float = 2.0
    klines: float = 5.0
    order_book_snapshot: float = 1.0
    recent_trades: float = 1.0
    max_entries: int = 256

    def __post_init__(self) -> None:
        for name in ("price", "ticker_24h", "klines", "order_book_snapshot", "recent_trades"):
            if getattr(self, name) < 0:
                raise ValueError(f"CacheTTLs.{name} must be >= 0 seconds")
        if self.max_entries < 1:
            raise ValueError("CacheTTLs.max_entries must be >= 1")


_ENDPOINTS: Final = ("price", "ticker_24h", "klines", "order_book_snapshot", "recent_trades")


class _Live:
    """The last WebSocket event of one stream, and MarketData's subscriptions that feed it."""

    __slots__ = ("event", "subscriptions")

    def __init__(self) -> None:
        self.event: Any = None
        self.subscriptions: list[Subscription] = []

    def prune(self) -> None:
        self.subscriptions = [s for s in self.subscriptions if s.state in ("pending", "active")]
        if not self.subscriptions:
            self.event = None  # a value nobody keeps up to date any more

    def current(self) -> Any:
        """The last event while a subscription is active, else ``None``."""
        self.prune()
        if any(s.state == "active" for s in self.subscriptions):
            return self.event
        return None


class MarketData:
    """Market data with a TTL cache and uniform :class:`Result` objects (``client.market``).

    Args:
        client: the :class:`fastmd.Client` it serves (started before the first call); its
            ``rest`` (weight budget, breaker), ``subscribe`` and ``venue`` are used.
        ttls: cache lifetimes per method (:class:`CacheTTLs`).
        request_timeout: seconds a call waits for its REST answer, weight-budget and
            ``Retry-After`` waits included, before it returns a :class:`fastmd.FastmdTimeoutError`
            in ``error`` (the request itself goes on, and fills the cache when it lands);
            ``None`` waits as long as the REST client does.
        clock: monotonic clock of the cache TTLs.
        wall_clock: epoch seconds, for the ``ts`` of REST results.
    """

    def __init__(
        self,
        client: MarketHost,
        *,
        ttls: CacheTTLs | None = None,
        request_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if request_timeout is not None and request_timeout <= 0:
            raise ValueError("request_timeout must be > 0 seconds (or None)")
        self._client = client
        self.ttls = ttls or CacheTTLs()
        self.request_timeout = request_timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._futures = client.venue == "binance-usdm"
        self._caches: dict[str, TTLCache[Hashable, Result[Any]]] = {
            name: TTLCache(self.ttls.max_entries, getattr(self.ttls, name), timer=clock)
            for name in _ENDPOINTS
            if getattr(self.ttls, name) > 0
        }
        self._inflight: dict[tuple[str, Hashable], asyncio.Task[Result[Any]]] = {}
        self._live: dict[str, _Live] = {}
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._remove_status_listener = client.on_status(self._on_status)
        self._closed = False

    # -- REST and cache -----------------------------------------------------------------------

    async def price(self, symbol: str) -> Result[Any]:
        """The last traded price of ``symbol``.

        From the live trade stream when MarketData keeps one active (``<symbol>@trade`` spot,
        ``<symbol>@aggTrade`` futures: see :meth:`track`, :meth:`subscribe_price`), else from
        ``GET ticker/price`` (cached ``ttls.price`` seconds). ``data`` is the price in the
        client's number type (``float`` by default) whatever the source.

        Raises:
            StreamNameError: ``symbol`` is not a well-formed symbol.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        event = self._live_event(self._trade_stream(name))
        if event is not None:
            return Result(event.price, "ws", None, event.event_time)

        async def fetch() -> Any:
            return (await self._rest.ticker_price(name)).price

        return await self._cached("price", (name,), fetch)

    async def ticker_24h(self, symbol: str) -> Result[RestTicker[Any]]:
        """The rolling 24-hour statistics of ``symbol``.

        From the last ``<symbol>@ticker`` event when MarketData keeps that stream active
        (``track(symbol, ticker=True)``), else from ``GET ticker/24hr`` (cached
        ``ttls.ticker_24h`` seconds). ``data`` is a :class:`fastmd.RestTicker` from either source:
        the event is converted field by field (nothing is lost; its event time is ``ts``). Futures
        tickers have no book or previous-close fields: those are ``None``.

        Raises:
            StreamNameError: ``symbol`` is not a well-formed symbol.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        event = self._live_event(f"{name.lower()}@ticker")
        if event is not None:
            return Result(rest_ticker(event), "ws", None, event.event_time)
        return await self._cached("ticker_24h", (name,), lambda: self._rest.ticker_24h(name))

    async def klines(
        self, symbol: str, interval: str, limit: int = 500
    ) -> Result[list[KlineBar[Any]]]:
        """The newest ``limit`` candles of ``symbol`` at ``interval``, oldest first
        (``GET klines``, cached ``ttls.klines`` seconds); ``data`` is a list of
        :class:`fastmd.KlineBar`. A limit over the exchange's maximum comes back as an error.

        Raises:
            StreamNameError: ``symbol`` is malformed or ``interval`` is not one of the venue's.
            ValueError: ``limit`` is below 1.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        intervals = USDM_KLINE_INTERVALS if self._futures else SPOT_KLINE_INTERVALS
        if interval not in intervals:
            raise StreamNameError(
                f"kline interval {interval!r} on {self._client.venue}; "
                f"allowed: {', '.join(intervals)}"
            )
        _check_limit(limit)
        return await self._cached(
            "klines",
            (name, interval, limit),
            lambda: self._rest.klines(name, interval, limit=limit),
        )

    async def order_book_snapshot(
        self, symbol: str, limit: int = 100
    ) -> Result[DepthSnapshot[Any]]:
        """The top ``limit`` levels a side of ``symbol``'s book and its ``last_update_id``
        (``GET depth``, cached ``ttls.order_book_snapshot`` seconds); ``data`` is a
        :class:`fastmd.DepthSnapshot`. Futures accepts only 5, 10, 20, 50, 100, 500 and 1000:
        other limits come back as an error (``code`` -4021).

        Raises:
            StreamNameError: ``symbol`` is not a well-formed symbol.
            ValueError: ``limit`` is below 1.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        _check_limit(limit)
        return await self._cached(
            "order_book_snapshot", (name, limit), lambda: self._rest.depth(name, limit)
        )

    async def recent_trades(self, symbol: str, limit: int = 500) -> Result[list[RestTrade[Any]]]:
        """The newest ``limit`` trades of ``symbol``, oldest first (``GET trades``, cached
        ``ttls.recent_trades`` seconds); ``data`` is a list of :class:`fastmd.RestTrade`.

        Raises:
            StreamNameError: ``symbol`` is not a well-formed symbol.
            ValueError: ``limit`` is below 1.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        _check_limit(limit)
        return await self._cached(
            "recent_trades", (name, limit), lambda: self._rest.recent_trades(name, limit)
        )

    def clear_cache(self) -> None:
        """Forget every cached answer (in-flight requests still complete)."""
        for cache in self._caches.values():
            cache.clear()

    @property
    def _rest(self) -> RestClient:
        return self._client.rest

    async def _cached(
        self, endpoint: str, args: Hashable, fetch: Callable[[], Awaitable[Any]]
    ) -> Result[Any]:
        cache = self._caches.get(endpoint)
        if cache is not None:
            hit = cache.get(args)
            if hit is not None:
                return Result(hit.data, "cache", None, hit.ts)
        key = (endpoint, args)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(endpoint, args, fetch))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        # shield: a caller that gives up (timeout, cancel) leaves the request to the others
        if self.request_timeout is None:
            return await asyncio.shield(task)
        try:
            async with asyncio.timeout(self.request_timeout):
                return await asyncio.shield(task)
        except TimeoutError:
            error = FastmdTimeoutError(
                f"{endpoint} {args!r}: no REST answer within {self.request_timeout:g} s"
            )
            return Result(None, "rest", error, self._now_ms())

    def _landed(self, key: tuple[str, Hashable], task: asyncio.Task[Result[Any]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def _fetch(
        self, endpoint: str, args: Hashable, fetch: Callable[[], Awaitable[Any]]
    ) -> Result[Any]:
        try:
            data = await fetch()
        except FastmdError as exc:
            logger.debug("market %s %r failed: %s", endpoint, args, exc)
            return Result(None, "rest", exc, self._now_ms())
        except Exception as exc:
            # The REST client should only raise RestError; anything else (a closed session...)
            # still comes back in the Result, as promised, with the original as its cause.
            logger.warning("market %s %r failed unexpectedly: %r", endpoint, args, exc)
            error = RestError(f"{endpoint}: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return Result(None, "rest", error, self._now_ms())
        result: Result[Any] = Result(data, "rest", None, self._now_ms())
        cache = self._caches.get(endpoint)
        if cache is not None:
            cache[args] = result
        return result

    # -- live values ----------------------------------------------------------------------------

    def track(self, symbol: str, *, price: bool = True, ticker: bool = False) -> Subscription:
        """Keep ``symbol``'s live values so that :meth:`price` (``price=True``: the trade
        stream, ``<symbol>@trade`` spot, ``<symbol>@aggTrade`` futures) and :meth:`ticker_24h`
        (``ticker=True``: ``<symbol>@ticker``) answer from the WebSocket.

        Returns:
            The client's :class:`fastmd.Subscription` of those streams: ``await
            sub.wait_active()`` to wait for the server's acknowledgement, ``sub.unsubscribe()``
            to stop tracking.

        Raises:
            StreamNameError: ``symbol`` is not a well-formed symbol.
            ValueError: neither ``price`` nor ``ticker``.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        if not (price or ticker):
            raise ValueError("track() needs price=True or ticker=True")
        streams = []
        trade_live = ticker_live = _Live()
        if price:
            streams.append(self._trade_stream(name))
            trade_live = self._live_for(streams[-1])
        if ticker:
            streams.append(f"{name.lower()}@ticker")
            ticker_live = self._live_for(streams[-1])
        client = self._client
        futures = self._futures

        def on_event(event: Any) -> None:
            if client.event_source != "ws":
                return  # a REST-polled or backfilled event: not a live value
            if isinstance(event, Ticker):
                ticker_live.event = event
            elif not (futures and event.is_invalidated):
                trade_live.event = event

        subscription = client.subscribe(streams, on_event)
        for stream in streams:
            self._live[stream].subscriptions.append(subscription)
        self._keep(subscription)
        return subscription

    def subscribe_price(
        self,
        symbol: str,
        callback: Callable[[Result[Any]], object],
        *,
        only_changes: bool = False,
        throttle: float | None = None,
    ) -> Subscription:
        """Call ``callback(result)`` with every trade price of ``symbol`` (``<symbol>@trade``
        spot, ``<symbol>@aggTrade`` futures): ``data`` is the price, ``ts`` the event time,
        ``source`` ``"ws"`` (``"rest"`` for events the client recovered or polled by REST). While
        the subscription is active, :meth:`price` answers from it too. If the subscription
        fails (unknown symbol, refused), ``callback`` gets one Result with ``error`` set.

        ``only_changes=True``: call back only when the price differs from the last one given.
        ``throttle=seconds``: at most one call per interval, with the newest price (the price
        is a state, so a price feed may be throttled though its trades may not). :meth:`price`
        still sees every trade.

        Returns:
            The client's :class:`fastmd.Subscription` (``unsubscribe()``, ``wait_active()``).

        Raises:
            StreamNameError: ``symbol`` is not a well-formed symbol.
            TypeError: ``only_changes`` is not a bool, or ``throttle`` not a number.
            ValueError: ``throttle`` is not a positive number of seconds.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        notify = _selective_results(callback, only_changes, throttle)
        stream = self._trade_stream(name)
        live = self._live_for(stream)
        client = self._client
        futures = self._futures

        def on_trade(event: Any) -> None:  # a Trade, or an AggTrade on futures
            if futures and event.is_invalidated:
                return
            source: Source = client.event_source
            if source == "ws":
                live.event = event
            notify(Result(event.price, source, None, event.event_time))

        subscription = client.subscribe(stream, on_trade)
        live.subscriptions.append(subscription)
        self._keep(subscription)
        self._watch(subscription, callback)
        return subscription

    def subscribe_klines(
        self,
        symbol: str,
        interval: str,
        callback: Callable[[Result[Any]], object],
        *,
        only_changes: bool = False,
        throttle: float | None = None,
    ) -> Subscription:
        """Call ``callback(result)`` with every candle update of ``symbol`` at ``interval``
        (``<symbol>@kline_<interval>``): ``data`` is the candle, a :class:`fastmd.KlineData`
        (``data.is_closed`` marks its final update), ``ts`` the event time, ``source`` ``"ws"``
        (``"rest"`` for candles the client recovered or polled by REST). If the subscription
        fails, ``callback`` gets one Result with ``error`` set.

        ``only_changes=True``: only when the close price or the closed flag changes (every
        candle's final update is delivered). ``throttle=seconds``: at most one call per interval,
        with the newest candle. Both as in :meth:`fastmd.Client.subscribe`.

        Returns:
            The client's :class:`fastmd.Subscription` (``unsubscribe()``, ``wait_active()``).

        Raises:
            StreamNameError: ``symbol`` is malformed or ``interval`` is not one of the venue's.
            TypeError, ValueError: bad ``only_changes`` or ``throttle``.
            InvalidState: the client is not started or is closed.
        """
        name = self._symbol(symbol)
        client = self._client

        def on_kline(event: Kline[Any]) -> None:
            source: Source = client.event_source
            callback(Result(event.kline, source, None, event.event_time))

        subscription = client.subscribe(
            f"{name.lower()}@kline_{interval}",
            on_kline,
            only_changes=only_changes,
            throttle=throttle,
        )
        self._keep(subscription)
        self._watch(subscription, callback)
        return subscription

    def _keep(self, subscription: Subscription) -> None:
        self._subscriptions = [s for s in self._subscriptions if s.state in ("pending", "active")]
        self._subscriptions.append(subscription)

    def _live_for(self, stream: str) -> _Live:
        live = self._live.get(stream)
        if live is None:
            live = self._live[stream] = _Live()
        else:
            live.prune()  # forgets the value if nobody kept it current
        return live

    def _live_event(self, stream: str) -> Any:
        live = self._live.get(stream)
        if live is None or self._client.status != _CONNECTED:
            return None
        event = live.current()
        if not live.subscriptions:
            del self._live[stream]
        return event

    def _on_status(self, status: Status, metrics: Metrics) -> None:
        if status != _CONNECTED:
            # Events may be missed from now on: live values are trusted again once new ones come.
            for live in self._live.values():
                live.event = None

    def _watch(self, subscription: Subscription, callback: Callable[[Result[Any]], object]) -> None:
        task = asyncio.get_running_loop().create_task(self._settled(subscription, callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settled(
        self, subscription: Subscription, callback: Callable[[Result[Any]], object]
    ) -> None:
        try:
            await subscription.wait_active()
        except InvalidState:
            return  # unsubscribed, or the client closed
        except FastmdError as exc:
            try:
                callback(Result(None, "ws", exc, self._now_ms()))
            except Exception:
                logger.exception("a market-data callback raised on %s", subscription)

    # -- helpers --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop: unsubscribe what :meth:`track` and the ``subscribe_*`` methods subscribed, drop
        the cache, stop listening to the client's status. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._remove_status_listener()
        for subscription in self._subscriptions:
            subscription.unsubscribe()
        self._subscriptions.clear()
        self._live.clear()
        for task in list(self._tasks):
            task.cancel()  # failure watchers; in-flight REST requests finish for their callers
        self.clear_cache()

    def _symbol(self, symbol: str) -> str:
        """``symbol`` uppercased, once checked against the stream-name symbol grammar.

        Raises:
            StreamNameError: a malformed symbol.
            InvalidState: the client is closed or not started.
        """
        if self._client.status == _CLOSED:
            raise InvalidState("the Client is closed")
        self._client.rest  # noqa: B018 -- raises InvalidState when the client is not started
        return validate_symbol(symbol, self._client.venue)

    def _trade_stream(self, symbol: str) -> str:
        return trade_stream(symbol, self._client.venue)

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, not {limit!r}")


def _selective_results(
    callback: Callable[[Result[Any]], object], only_changes: bool, throttle: float | None
) -> Callable[[Result[Any]], object]:
    """``callback`` behind the comparison and throttle of a price feed (the Result's ``data``
    is the state compared and conflated)."""
    if not isinstance(only_changes, bool):
        raise TypeError(f"only_changes must be True or False here, not {only_changes!r}")
    interval = throttle_seconds(throttle)
    if not only_changes and interval is None:
        return callback

    def failed(exc: Exception) -> None:
        logger.error("a market-data callback raised", exc_info=exc)

    return SelectiveDelivery(
        callback,
        change=ChangeFilter(("data",)) if only_changes else None,
        throttle=Throttle(interval) if interval is not None else None,
        stats=None,
        failed=failed,
    ).target
