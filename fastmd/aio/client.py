"""``fastmd.Client``: the façade that wires the client's parts together.

Each part owns one idea and is given what it needs as objects or callables (see
docs/architecture.md): the route table and the frame router (the hot path), subscriptions and
event streams, the connection pool with its control channels and handovers, recovery (backfill
and fallback), order books, market data, status, gaps and reports. This module builds them, keeps
the public API, and decides the few things that need several parts at once: the life of a
subscription (symbol check, placement, acknowledgement, failure) and where a gap goes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import aiohttp

from fastmd.aio.book import DEFAULT_DIFF_STREAM, SBE_DIFF_STREAM, BookKeeper, OrderBook
from fastmd.aio.connection import Connection
from fastmd.aio.gaps import GapLog
from fastmd.aio.health import HealthMonitor
from fastmd.aio.market import MarketData
from fastmd.aio.metrics import Metrics
from fastmd.aio.pool import DEFAULT_IDLE_TIMEOUT, ConnectionPool, FrameTap, PoolSettings
from fastmd.aio.recovery import Backfiller, Fallback
from fastmd.aio.reporting import Reporter
from fastmd.aio.rest import RestClient, RestTimeouts, SymbolDirectory
from fastmd.aio.routes import EventSource, RouteTable
from fastmd.aio.status import StatusBoard
from fastmd.aio.subscriptions import (
    EventStream,
    SelectionStats,
    SelectiveDelivery,
    Subscription,
    SubscriptionGroup,
)
from fastmd.aio.tasks import Tasks, require_loop
from fastmd.core.backoff import Backoff
from fastmd.core.breaker import CircuitBreakerPolicy
from fastmd.core.codec import PriceType
from fastmd.core.health import Alert, Health, HealthConfig, check_stale_after
from fastmd.core.lifecycle import ErrorReport, ErrorReporter, Severity
from fastmd.core.liveness import Heartbeat
from fastmd.core.sbe_streams import in_microseconds, parse_sbe_stream
from fastmd.core.selective import (
    ChangeFilter,
    Throttle,
    change_fields,
    check_throttle,
    per_symbol,
)
from fastmd.core.sequence import Gap
from fastmd.core.stats import LatencyStats
from fastmd.core.status import Status
from fastmd.core.streams import Stream, Venue, parse_stream
from fastmd.core.subscriptions import (
    CONTROL_FRAMES_PER_SECOND,
    STREAMS_PER_CONNECTION,
    Outcome,
    SubscriptionAudit,
)
from fastmd.core.weights import DEFAULT_WEIGHT_LIMIT
from fastmd.errors import (
    FastmdError,
    InvalidState,
    StreamNameError,
    SubscriptionError,
    UnknownSymbolError,
)

__all__ = ["Client"]


@dataclass(frozen=True)
class _VenuePreset:
    ws_url: str
    rest_url: str
    routed: bool


_PRESETS: Final[dict[str, _VenuePreset]] = {
    "binance-spot": _VenuePreset("wss://stream.binance.com:9443", "https://api.binance.com", False),
    "binance-usdm": _VenuePreset("wss://fstream.binance.com", "https://fapi.binance.com", True),
}


SBE_WS_URL: Final = "wss://stream-sbe.binance.com:9443"
"""Binance spot's SBE market-data endpoint (binance-protocol.md §8)."""


def _check_encoding(venue: str, encoding: str, api_key: str | None) -> None:
    """Refuse an encoding the venue does not serve, or SBE without its API key."""
    if encoding not in ("json", "sbe"):
        raise ValueError(f"unknown encoding {encoding!r}; allowed: 'json', 'sbe'")
    if api_key is not None and not str(api_key).strip():  # str(): the input is unchecked
        raise ValueError("api_key must be a non-empty string")
    if api_key is not None and not isinstance(api_key, str):
        raise TypeError(f"api_key must be a str, not {type(api_key).__name__}")
    if encoding == "sbe":
        if venue != "binance-spot":
            raise ValueError(f"encoding='sbe' is Binance spot market data only, not {venue!r}")
        if api_key is None:
            raise ValueError(
                "encoding='sbe' needs api_key=...: Binance's SBE streams require an Ed25519 API "
                "key in the X-MBX-APIKEY header of the WebSocket upgrade"
            )


class Client:
    """The client most users hold (the seed's ``UnifiedWebSocketClient``).

    Streams are sharded over pooled connections (at most ``max_streams_per_connection`` each);
    subscriptions are batched (up to ``max_params_per_request`` streams per SUBSCRIBE) and paced
    (``max_outgoing_per_second`` frames in any second per connection, pings and pongs included);
    callbacks are plain functions called directly from the frame handler; every loss is reported
    through :meth:`on_gap` and duplicates are dropped; ``serverShutdown``, the 24 h limit and
    :meth:`force_reconnect` are handled make-before-break.

    Args:
        venue: ``"binance-spot"`` or ``"binance-usdm"`` (Binance's real URLs by default).
        ws_url: base WebSocket URL (the simulator's ``ws_url``), overriding the venue's.
        rest_url: base REST URL (used to validate symbols), overriding the venue's.
        encoding: ``"json"`` (default) or ``"sbe"``: Binance spot's binary market data
            (``wss://stream-sbe.binance.com:9443`` by default; streams ``<symbol>@trade``,
            ``@bestBidAsk``, ``@depth``, ``@depth20``, times in microseconds; see docs/sbe.md).
            Needs ``api_key``; books then sync from ``<symbol>@depth``.
        api_key: the API key (an Ed25519 key on Binance) sent as ``X-MBX-APIKEY`` on every
            WebSocket upgrade; required by ``encoding="sbe"``. Never logged nor shown in reprs;
            a refused upgrade (401/403) is reported as :class:`fastmd.AuthenticationError` and
            not retried.
        max_streams_per_connection: 1024 spot, 200 futures by default.
        max_outgoing_per_second: 4 spot, 8 futures by default (Binance allows 5 and 10).
        max_params_per_request: streams per SUBSCRIBE/UNSUBSCRIBE.
        ack_timeout: seconds to wait for a control reply before sending again.
        ack_retries: resends before a subscription fails.
        connect_budget: connection attempts per 5 minutes for the whole pool.
        idle_timeout: seconds a connection left without streams stays open for the next stream
            (reused: nothing spent from ``connect_budget``); 0 closes it at once.
        rotate_after: seconds after which a connection is replaced make-before-break
            (Binance closes at 24 h); ``None`` disables rotation.
        validate_symbols: check symbols against ``exchangeInfo`` before subscribing.
        price_type: ``float``, ``str`` or ``Decimal`` for prices and quantities.
        backoff, heartbeat, circuit_breaker, stale_after: per-connection settings
            (see :class:`fastmd.Connection`).
        slow_callback: seconds above which a sampled callback run counts as slow.
        loop_budget: seconds of callbacks per event-loop turn; beyond it events wait in order in
            a backlog worked off one budget per turn, and the sockets stop reading meanwhile
            (TCP backpressure), so pings, timers and close() keep working under slow callbacks.
        rest_weight_budget: REST weight per minute fastmd may spend on book snapshots (half of
            Binance's limit by default: 3,000 spot, 1,200 futures).
        fallback: serve a connection's streams by REST polling while it cannot be kept up
            (status FALLBACK).
        fallback_after: failed reconnect attempts in a row before the fallback starts (it also
            starts when the connection's circuit opens).
        rest_timeouts: timeouts of REST requests (:class:`fastmd.RestTimeouts`).
        max_response_size: REST bodies larger than this (bytes) are refused while being read.
        error_reporter: receives every :class:`fastmd.ErrorReport`.
        health: health thresholds, alerts and recovery of stale streams
            (:class:`fastmd.HealthConfig`; docs/monitoring.md).
        frame_tap: ``tap(payload, binary)`` called with every complete message each socket
            receives, exactly as received and before it is decoded (the payload is a memoryview
            valid during the call only; the tap must not raise). What :func:`fastmd.record`
            writes; ``None`` (the default) adds nothing to the hot path.
    """

    def __init__(
        self,
        venue: Venue = "binance-spot",
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        encoding: Literal["json", "sbe"] = "json",
        api_key: str | None = None,
        max_streams_per_connection: int | None = None,
        max_outgoing_per_second: int | None = None,
        max_params_per_request: int = 200,
        ack_timeout: float = 5.0,
        ack_retries: int = 2,
        connect_budget: int = 30,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        rotate_after: float | None = 23 * 3600.0,
        validate_symbols: bool = True,
        price_type: PriceType = float,
        backoff: Backoff | None = None,
        heartbeat: Heartbeat | None = None,
        circuit_breaker: CircuitBreakerPolicy | None = None,
        stale_after: float | None = None,
        slow_callback: float = 0.01,
        loop_budget: float = 0.02,
        rest_weight_budget: int | None = None,
        fallback: bool = True,
        fallback_after: int = 3,
        rest_timeouts: RestTimeouts | None = None,
        max_response_size: int = 16 * 1024 * 1024,
        error_reporter: ErrorReporter | None = None,
        health: HealthConfig | None = None,
        frame_tap: FrameTap | None = None,
    ) -> None:
        if health is not None and not isinstance(health, HealthConfig):
            raise TypeError(f"health must be a fastmd.HealthConfig, not {health!r}")
        preset = _PRESETS.get(venue)
        if preset is None:
            raise ValueError(f"unknown venue {venue!r}; allowed: {', '.join(_PRESETS)}")
        self.venue: Venue = venue
        _check_encoding(venue, encoding, api_key)
        self.encoding: Literal["json", "sbe"] = encoding
        """``"json"`` or ``"sbe"`` (Binance spot's binary market data)."""
        if encoding == "sbe" and ws_url is None:
            ws_url = SBE_WS_URL
        self.ws_url = (ws_url or preset.ws_url).rstrip("/")
        self.rest_url = (rest_url or preset.rest_url).rstrip("/")
        self.validate_symbols = validate_symbols
        self.price_type = price_type
        self.rest_timeouts = rest_timeouts or RestTimeouts()
        self.max_response_size = max_response_size
        self._settings = PoolSettings(
            venue=venue,
            ws_url=self.ws_url,
            encoding=encoding,
            api_key=api_key,
            routed=preset.routed,
            max_streams_per_connection=(
                max_streams_per_connection or STREAMS_PER_CONNECTION[venue]
            ),
            max_outgoing_per_second=max_outgoing_per_second or CONTROL_FRAMES_PER_SECOND[venue],
            max_params_per_request=max_params_per_request,
            ack_timeout=ack_timeout,
            ack_retries=ack_retries,
            connect_budget=connect_budget,
            rotate_after=rotate_after,
            price_type=price_type,
            backoff=backoff,
            heartbeat=heartbeat,
            circuit_breaker=circuit_breaker,
            stale_after=stale_after,
            fallback_after=fallback_after,
            idle_timeout=idle_timeout,
            frame_tap=frame_tap,
        )
        self._started_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._closed = False
        self._started = False
        self._session: aiohttp.ClientSession | None = None
        self._rest: RestClient | None = None
        self._symbols: SymbolDirectory | None = None
        self._market: MarketData | None = None
        # The parts, each given only what it needs.
        self._reporter = Reporter(error_reporter)
        self._tasks = Tasks(self._task_failed)
        self._gaps = GapLog(self._reporter)
        self._selection = SelectionStats()
        if not 0 < loop_budget < float("inf"):
            raise ValueError(f"loop_budget must be a positive number of seconds: {loop_budget!r}")
        self._routes = RouteTable(
            venue, self._reporter, self._gap_detected, slow_callback, loop_budget=loop_budget
        )
        if encoding == "sbe":  # REST speaks milliseconds; the SBE streams microseconds
            self._routes.from_rest = in_microseconds
        self._backfiller = Backfiller(
            self._routes, self._rest_or_none, self._tasks, self._reporter, self._gaps.report
        )
        self._fallback = Fallback(
            venue, self._routes, self._rest_or_none, self._tasks, self._reporter, enabled=fallback
        )
        self._status = StatusBoard(self.metrics, self._reporter)
        self._pool = ConnectionPool(
            self._settings,
            routes=self._routes,
            reporter=self._reporter,
            tasks=self._tasks,
            fallback=self._fallback,
            outcomes=self._apply_outcomes,
            changed=self._update_status,
        )
        self._health = HealthMonitor(
            venue,
            health or HealthConfig(),
            routes=self._routes,
            pool=self._pool,
            fallback=self._fallback,
            reporter=self._reporter,
            tasks=self._tasks,
        )
        self._gaps.on_gap(self._health.gap)
        self._books = BookKeeper(
            venue,
            subscribe=self.subscribe,
            rest=lambda: self.rest,
            weight_limit=self._announced_weight_limit,
            tasks=self._tasks,
            reporter=self._reporter,
            weight_budget=rest_weight_budget or DEFAULT_WEIGHT_LIMIT[venue] // 2,
            diff_stream=SBE_DIFF_STREAM if encoding == "sbe" else DEFAULT_DIFF_STREAM,
        )

    def _parse_stream(self, name: str) -> Stream:
        """``name`` parsed by the grammar of this client's endpoint (JSON or SBE)."""
        if self.encoding == "sbe":
            return parse_sbe_stream(name)
        return parse_stream(name, self.venue)

    # -- options kept as attributes -----------------------------------------------------------

    @property
    def max_streams_per_connection(self) -> int:
        """Streams per pooled connection at most."""
        return self._settings.max_streams_per_connection

    @property
    def max_outgoing_per_second(self) -> int:
        """Frames each connection sends per second at most (pings and pongs included)."""
        return self._settings.max_outgoing_per_second

    @property
    def max_params_per_request(self) -> int:
        """Streams per SUBSCRIBE or UNSUBSCRIBE request."""
        return self._settings.max_params_per_request

    @property
    def ack_timeout(self) -> float:
        """Seconds to wait for a control reply before sending again."""
        return self._settings.ack_timeout

    @property
    def ack_retries(self) -> int:
        """Resends before a subscription fails."""
        return self._settings.ack_retries

    @property
    def idle_timeout(self) -> float:
        """Seconds a connection left without streams stays open for the next stream."""
        return self._settings.idle_timeout

    @property
    def rotate_after(self) -> float | None:
        """Seconds after which a connection is replaced make-before-break (None: never)."""
        return self._settings.rotate_after

    @property
    def fallback_after(self) -> int:
        """Failed reconnect attempts in a row before REST polling starts."""
        return self._settings.fallback_after

    @property
    def fallback(self) -> bool:
        """Whether a shard whose socket cannot be kept up is served by REST polling."""
        return self._fallback.enabled

    @fallback.setter
    def fallback(self, enabled: bool) -> None:
        self._fallback.enabled = enabled

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the client's HTTP session (done by ``async with``).

        Raises:
            InvalidState: the client was closed.
        """
        if self._closed:
            raise InvalidState("a closed Client cannot start again")
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._started_at = time.monotonic()
        self._session = aiohttp.ClientSession()
        self._rest = RestClient(
            self._session,
            self.rest_url,
            self.venue,
            price_type=self.price_type,
            timeouts=self.rest_timeouts,
            max_response_size=self.max_response_size,
        )
        self._symbols = SymbolDirectory(self._rest)
        self._health.attach_rest(self._rest)

    async def close(self) -> None:
        """Close every connection and the HTTP session; idempotent.

        Callbacks stop at once: frames still buffered when close() is called are not delivered.
        Connections get a bounded closing handshake, so close() returns within about a second
        whatever the backlog. A close() that is cancelled (a shutdown timeout) still finishes in
        the background, and the next close() waits for it: no socket is left open.

        Raises:
            InvalidState: called from another thread than the client's event loop (nothing is
                closed then).
        """
        if self._close_task is None:
            if self._loop is not None:
                self._check_thread()
            self._closed = True
            self._health.stop()
            self._routes.silence()  # no callback from here on, whatever is still buffered
            for route in self._routes:
                for sub in route.subscriptions:
                    sub.mark_closed()
            self._close_task = asyncio.get_running_loop().create_task(self._shut_down())
        await asyncio.shield(self._close_task)

    async def _shut_down(self) -> None:
        self._books.close()
        self._pool.stop()
        await self._tasks.cancel_all()
        await self._pool.close()
        if self._market is not None:
            self._market.close()
        if self._symbols is not None:
            self._symbols.close()
        if self._session is not None:
            await self._session.close()
        self._status.set(Status.CLOSED)

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the client's event loop, from any thread: the way to
        subscribe or unsubscribe from a thread that is not the loop's (the client itself is not
        thread-safe). For coroutines (``close()``, ``order_book()``), use
        ``asyncio.run_coroutine_threadsafe(coro, loop)``.

        Raises:
            TypeError: ``callback`` is not callable.
            InvalidState: the client was never started.
        """
        _callable(callback)
        if self._loop is None:
            raise InvalidState("start the Client first: async with fastmd.Client(...) as client")
        self._loop.call_soon_threadsafe(callback, *args)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("the Client is closed")
        if not self._started:
            raise InvalidState("start the Client first: async with fastmd.Client(...) as client")
        self._check_thread()

    def _check_thread(self) -> None:
        require_loop(self._loop, "fastmd.Client")

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(
        self,
        streams: str | Iterable[str],
        callback: Callable[[Any], object],
        *,
        backfill: bool | None = None,
        only_changes: bool | Sequence[str] = False,
        throttle: float | None = None,
        stale_after: float | None = None,
    ) -> Subscription:
        """Call ``callback(event)`` for every event of ``streams``.

        Returns at once; the streams become active once the server acknowledges them
        (``await sub.wait_active()``). Several callbacks may share a stream.

        ``backfill``: fill gaps from REST before live events resume (on by default for
        aggTrade and kline streams, the ones REST can replay cheaply; ``backfill=True`` asks
        for it on trade streams too, from ``historicalTrades`` at weight 25 per 1,000 trades).

        ``only_changes``: call back only when the fields that matter for the stream's kind
        differ from the last event delivered (``True``: the defaults of docs/client.md), or the
        named event attributes (``("bid_quantity", "ask_quantity")``, dotted for nested ones).

        ``throttle``: at most one call per that many seconds, always with the newest event; the
        newest of a burst is delivered at the end of its interval. Not offered for trades,
        aggTrades, depth diffs and liquidations (their events are facts, not states).

        Sequence checks see every frame either way: held-back events are counted in
        ``metrics()`` (``unchanged_skipped``, ``throttle_conflated``) and on the subscription,
        never reported as gaps.

        ``stale_after``: seconds of silence after which :meth:`health` calls the streams
        ``STALE`` (and recovers them), instead of what their kind's cadence or their learned
        inter-arrival time says (docs/monitoring.md).

        Raises:
            StreamNameError: a stream name is invalid for the venue.
            TypeError: ``callback`` is not callable, or an option has the wrong type.
            ValueError: ``only_changes`` names an unknown field or the stream kind has no
                defaults; ``throttle`` is not a positive number or not offered for the stream;
                ``stale_after`` is not a positive finite number.
            InvalidState: the client is not started or is closed.

        Nothing is subscribed when it raises.
        """
        self._check_open()
        _callable(callback)
        stale_after = check_stale_after(stale_after)
        names = (streams,) if isinstance(streams, str) else tuple(dict.fromkeys(streams))
        if not names:
            raise StreamNameError("subscribe() needs at least one stream")
        parsed = [self._parse_stream(name) for name in names]
        selective = {
            name: delivery
            for name, stream in zip(names, parsed, strict=True)
            if (delivery := self._selective(name, stream, callback, only_changes, throttle))
        }
        subscription = Subscription(
            names, callback, backfill=backfill, remove=self._remove, selective=selective
        )
        fresh: list[str] = []
        for name, stream in zip(names, parsed, strict=True):
            route = self._routes.get(name)
            if route is None:
                route = self._routes.add(name, stream)
                fresh.append(name)
            route.subscriptions.append(subscription)
            self._routes.refresh(route)
            self._health.watch(name, route, stale_after)
            if self._pool.acknowledged(route):
                subscription.mark_acknowledged(name)
        if fresh:
            self._tasks.spawn(self._place(fresh))
        return subscription

    def stream(
        self,
        streams: str | Iterable[str],
        *,
        maxsize: int = 10_000,
        overflow: Literal["drop_oldest", "keep_latest", "disconnect"] = "drop_oldest",
        only_changes: bool | Sequence[str] = False,
        throttle: float | None = None,
        stale_after: float | None = None,
    ) -> EventStream:
        """An async iterator over the events of ``streams`` through a bounded queue
        (``only_changes``, ``throttle`` and ``stale_after`` as in :meth:`subscribe`, per
        stream).

        Raises:
            StreamNameError: a stream name is invalid.
            ValueError: bad ``maxsize``, ``overflow``, ``only_changes``, ``throttle`` or
                ``stale_after``.
            TypeError: an option has the wrong type.
        """
        stale_after = check_stale_after(stale_after)
        events = EventStream(maxsize, overflow, self._overflowed)
        names = (streams,) if isinstance(streams, str) else tuple(streams)
        for name in names:  # all or nothing: a bad name or option subscribes none
            stream = self._parse_stream(name)
            change_fields(stream, name, self.venue, only_changes)
            check_throttle(stream, name, throttle)
        # One subscription per stream name so the queue knows where each event came from.
        subs = [
            self.subscribe(
                name,
                events.pusher(name),
                only_changes=only_changes,
                throttle=throttle,
                stale_after=stale_after,
            )
            for name in names
        ]
        events.attach(subs[0] if len(subs) == 1 else SubscriptionGroup(subs))
        return events

    def _selective(
        self,
        name: str,
        stream: Stream,
        callback: Callable[[Any], object],
        only_changes: bool | Sequence[str],
        throttle: float | None,
    ) -> SelectiveDelivery | None:
        fields = change_fields(stream, name, self.venue, only_changes)
        interval = check_throttle(stream, name, throttle)
        if fields is None and interval is None:
            return None  # the route calls the callback itself: nothing added per event
        by_symbol = per_symbol(stream)
        reporter = self._reporter

        def failed(exc: Exception) -> None:
            reporter.callback_failed(f"callback of {name}", exc, stream=name)

        return SelectiveDelivery(
            callback,
            change=ChangeFilter(fields, by_symbol=by_symbol) if fields is not None else None,
            throttle=Throttle(interval, by_symbol=by_symbol) if interval is not None else None,
            stats=self._selection,
            failed=failed,
        )

    async def _place(self, names: list[str]) -> None:
        if self.validate_symbols:
            unknown = await self._unknown_symbols(names)
            for name in unknown:
                error = UnknownSymbolError(
                    f"{name}: symbol is not listed by the exchange", stream=name
                )
                self._fail_stream(name, error)
            names = [name for name in names if name not in unknown]
        # a stream unsubscribed while its symbol was checked is not placed
        self._pool.place(route for name in names if (route := self._routes.get(name)))

    async def _unknown_symbols(self, names: list[str]) -> set[str]:
        assert self._symbols is not None
        try:
            listed = await self._symbols.symbols()
        except FastmdError as exc:
            # Validation is a safeguard, not a gate: without it, still subscribe.
            self._reporter.report(
                Severity.WARNING, "symbol_check_failed", f"symbols not validated: {exc}", exc
            )
            return set()
        unknown = set()
        for name in names:
            route = self._routes.get(name)
            symbol = route.parsed.symbol if route is not None else None
            if symbol is not None and symbol.upper() not in listed:
                unknown.add(name)
        return unknown

    def _apply_outcomes(self, outcomes: list[Outcome]) -> None:
        unsubscribe_failed: dict[tuple[int | None, str], list[str]] = {}
        for outcome in outcomes:
            if outcome.method == "UNSUBSCRIBE":
                if not outcome.ok:
                    failure = outcome.error
                    key = (failure.code, failure.msg) if failure is not None else (None, "refused")
                    unsubscribe_failed.setdefault(key, []).append(outcome.stream)
                continue
            route = self._routes.get(outcome.stream)
            if route is None:
                continue
            if outcome.ok:
                for sub in route.subscriptions:
                    sub.mark_acknowledged(outcome.stream)
                continue
            error = outcome.error
            code = error.code if error is not None else None
            message = error.msg if error is not None else "refused"
            self._fail_stream(
                outcome.stream,
                SubscriptionError(f"{outcome.stream}: {message}", stream=outcome.stream,
                                  code=code),
            )  # fmt: skip
        for (code, message), streams in unsubscribe_failed.items():
            # Nobody waits for an UNSUBSCRIBE: reported (one report per reply), the streams may
            # still be on the server until the next audit removes them.
            shown = ", ".join(streams[:5]) + (", ..." if len(streams) > 5 else "")
            self._reporter.report(
                Severity.WARNING,
                "unsubscribe_failed",
                f"UNSUBSCRIBE of {len(streams)} stream(s) failed ({shown}): {message}; they may "
                "still be subscribed on the server until the next audit",
                SubscriptionError(f"UNSUBSCRIBE failed: {message}", stream=streams[0], code=code),
                stream=streams[0],
                streams=tuple(streams),
            )

    def _fail_stream(self, name: str, error: SubscriptionError) -> None:
        route = self._routes.pop(name)
        if route is None:
            return
        self._pool.forget(route)
        for sub in route.subscriptions:
            sub.mark_failed(error)
        self._reporter.report(Severity.ERROR, "subscription_failed", str(error), error, stream=name)

    def _remove(self, subscription: Subscription) -> None:
        for name in subscription.streams:
            route = self._routes.get(name)
            if route is None:
                continue
            if subscription in route.subscriptions:
                route.subscriptions.remove(subscription)
            self._routes.refresh(route)
            if not route.subscriptions:
                self._routes.pop(name)
                self._pool.remove(route)

    # -- order books --------------------------------------------------------------------------

    async def order_book(
        self,
        symbol: str,
        depth: int | None = None,
        *,
        strict: bool = True,
        timeout: float | None = 30.0,  # noqa: ASYNC109
    ) -> OrderBook:
        """A live local order book of ``symbol``, synced (snapshot plus diffs) before it is
        returned; the same object for repeated calls.

        Args:
            symbol: the symbol, any case.
            depth: levels to read per side (also caps the snapshot size); all when ``None``.
            strict: reads of a book that is not in sync raise :class:`fastmd.BookNotSynced`;
                with ``False`` they return the levels and ``book.synced`` tells.
            timeout: seconds to wait for the first sync.

        Raises:
            SubscriptionError: the diff stream could not be subscribed (unknown symbol...).
            FastmdTimeoutError: not synced within ``timeout``.
            InvalidState: the client is not started or closed.
        """
        self._check_open()
        return await self._books.open(symbol, depth, strict=strict, timeout=timeout)

    @property
    def books(self) -> dict[str, OrderBook]:
        """The order books the client keeps, by symbol."""
        return dict(self._books.books)

    def _announced_weight_limit(self) -> int | None:
        return self._symbols.weight_limit if self._symbols is not None else None

    # -- connections --------------------------------------------------------------------------

    async def force_reconnect(self) -> None:
        """Replace every connection, make-before-break: no gap, no duplicate."""
        self._check_open()
        await self._pool.handover_all()

    async def audit_subscriptions(self, timeout: float = 30.0) -> SubscriptionAudit:  # noqa: ASYNC109
        """Ask the server which streams each open connection carries (``LIST_SUBSCRIPTIONS``)
        and fix what differs from the streams subscribed: streams nobody wants are unsubscribed,
        wanted streams the server lacks are subscribed again. Done by itself after every
        reconnect; differences are reported as ``subscription_drift``.

        Returns what was found and fixed (:class:`fastmd.core.subscriptions.SubscriptionAudit`:
        ``listed``, ``unexpected``, ``missing``, ``unsubscribed``, ``resubscribed``, ``error``),
        once the fixes are acknowledged or ``timeout`` seconds passed. Connections that are not
        open are skipped (they are audited after they reconnect).

        Raises:
            InvalidState: the client is not started or is closed.
        """
        self._check_open()
        return await self._pool.audit(timeout)

    @property
    def event_source(self) -> EventSource:
        """Where the event being delivered right now comes from (read it in a callback):
        ``"rest"`` for events recovered by a backfill or polled during a fallback, ``"ws"``
        otherwise."""
        return self._routes.source

    # -- gaps, errors, status, metrics --------------------------------------------------------

    def on_gap(self, callback: Callable[[Gap], object]) -> Callable[[], None]:
        """Call ``callback(gap)`` for every detected loss; returns a remover.

        Raises:
            TypeError: ``callback`` is not callable.
        """
        return self._gaps.on_gap(_callable(callback))

    def on_status(self, callback: Callable[[Status, Metrics], object]) -> Callable[[], None]:
        """Call ``callback(status, metrics)`` on every status change; returns a remover.

        Raises:
            TypeError: ``callback`` is not callable.
        """
        return self._status.on_status(_callable(callback))

    def on_error(self, callback: Callable[[ErrorReport], object]) -> Callable[[], None]:
        """Call ``callback(report)`` for every :class:`fastmd.ErrorReport` of this client and its
        connections (``report.severity`` tells warnings from errors): failed subscriptions,
        raising callbacks, decode errors, refused connections, REST failures. Listeners are
        called in addition to ``error_reporter`` (by default: logging); returns a remover.

        Raises:
            TypeError: ``callback`` is not callable.
        """
        return self._reporter.on_error(_callable(callback))

    def _gap_detected(self, gap: Gap) -> None:
        route = self._routes.get(gap.stream)
        if route is not None and self._backfiller.takes(route, gap):
            return  # the parts REST cannot return are reported when the fill ends
        self._gaps.report(gap)

    def _overflowed(self, gap: Gap, dropped: int) -> None:
        self._gaps.overflowed(gap, dropped)

    def health(self) -> Health:
        """A :class:`fastmd.Health` snapshot: the overall status, every subscribed stream's
        :class:`fastmd.StreamHealth` (status, last event age, rate, gaps, lag, reason) and every
        connection's :class:`fastmd.ConnectionHealth`. No I/O: cheap enough for every loop
        turn. A client not started or closed is ``DOWN``. The first call starts measuring the
        clock offset lag is corrected by (``HealthConfig.clock_sync``).

        Raises:
            InvalidState: called from another thread than the client's event loop.
        """
        if self._loop is not None:
            self._check_thread()
            self._health.used()
        running = self._started and not self._closed
        return self._health.snapshot(running)

    def on_alert(self, callback: Callable[[Alert], object]) -> Callable[[], None]:
        """Call ``callback(alert)`` when an alert episode starts (``alert.firing``) and once
        when it ends (see :class:`fastmd.Alert` and :class:`fastmd.HealthConfig` for kinds and
        thresholds); returns a remover. A raising callback is reported (``callback_error``).

        Raises:
            TypeError: ``callback`` is not callable.
        """
        remove = self._health.on_alert(_callable(callback))
        if self._loop is not None:
            self._health.used()
        return remove

    @property
    def status(self) -> Status:
        """The client's :class:`Status`."""
        return self._status.status

    def _update_status(self) -> None:
        if not self._closed:
            self._status.update(self._pool.views())

    def metrics(self) -> Metrics:
        """A :class:`Metrics` snapshot."""
        stats = self._pool.stats()
        latency = max(
            (s.latency for s in stats), key=lambda lat: lat.samples, default=LatencyStats(
                None, None, None, 0)
        )  # fmt: skip
        retired_messages, retired_reconnects, retired_errors = self._pool.retired_totals
        routes = self._routes
        return Metrics(
            status=self._status.status,
            connections=stats,
            streams=len(routes),
            messages=retired_messages + sum(s.messages for s in stats),
            message_rate_1s=sum(s.message_rate_1s for s in stats),
            message_rate_10s=sum(s.message_rate_10s for s in stats),
            latency=latency,
            uptime=time.monotonic() - self._started_at if self._started_at else 0.0,
            reconnects=retired_reconnects + sum(s.reconnects for s in stats),
            handovers=self._pool.handovers,
            errors=self._reporter.errors + retired_errors + sum(s.errors for s in stats),
            gaps=self._gaps.gaps,
            duplicates_dropped=routes.duplicates,
            decode_errors=self._pool.decode_errors,
            callback_errors=self._reporter.callback_errors,
            callback_time_mean=(
                routes.callback_time / routes.callback_samples if routes.callback_samples else 0.0
            ),
            callback_time_max=routes.callback_max,
            slow_callbacks=routes.slow_callbacks,
            overflow_dropped=self._gaps.overflow_dropped,
            backfilled=self._backfiller.filled,
            book_resyncs=self._books.resyncs,
            backpressure_pauses=self._routes.pauses,
            deferred_events=self._routes.deferred,
            unchanged_skipped=self._selection.skipped,
            throttle_conflated=self._selection.conflated,
            unrouted_frames=self._pool.unrouted_frames,
            subscription_drift=self._pool.drift_found,
            stale_resubscribes=self._health.resubscribes,
            stale_replacements=self._health.replacements,
            streams_not_revived=self._health.not_revived,
            alerts_fired=self._health.alerts_fired,
        )

    @property
    def market(self) -> MarketData:
        """Market data in one call each, as :class:`fastmd.Result` objects: the live WebSocket
        value when MarketData tracks the stream, else a TTL cache, else REST
        (docs/market-data.md). The same object on every access.

        Raises:
            InvalidState: the client is not started.
        """
        if self._market is None:
            self._check_open()
            self._market = MarketData(self)
        return self._market

    @property
    def rest(self) -> RestClient:
        """The client's REST access (one aiohttp session, shared weight budget).

        Raises:
            InvalidState: the client is not started.
        """
        if self._rest is None:
            raise InvalidState("start the Client first: async with fastmd.Client(...) as client")
        return self._rest

    @property
    def connections(self) -> list[Connection]:
        """The pool's open connections (one per shard)."""
        return self._pool.connections

    # -- helpers ------------------------------------------------------------------------------

    def _rest_or_none(self) -> RestClient | None:
        return self._rest

    def _task_failed(self, exc: BaseException) -> None:
        self._reporter.report(
            Severity.ERROR, "internal_error", f"background task failed: {exc!r}", exc
        )


_C = TypeVar("_C")


def _callable(callback: _C) -> _C:
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {callback!r}")
    return callback
