"""``fastmd.Client``: pooled connections, batched and paced subscriptions, callbacks called
straight from the frame handler, gap and duplicate accounting, make-before-break handovers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
from picows import WSFrame, WSMsgType, WSTransport

from fastmd.aio.book import BookKeeper, OrderBook
from fastmd.aio.connection import Connection, LoggingReporter
from fastmd.aio.market import MarketData
from fastmd.aio.recovery import Backfiller, Poller
from fastmd.aio.rest import RestClient, RestTimeouts, SymbolDirectory
from fastmd.core.backoff import Backoff
from fastmd.core.breaker import CircuitBreakerPolicy
from fastmd.core.codec import Decoder, Message, PriceType
from fastmd.core.events import ControlReply, ServerShutdown
from fastmd.core.lifecycle import ConnectionState, ErrorReport, ErrorReporter, Severity
from fastmd.core.liveness import Heartbeat
from fastmd.core.pacing import Pacer
from fastmd.core.recovery import BACKFILLABLE
from fastmd.core.sequence import Gap, GapReason, Sequencer, sequencer_for
from fastmd.core.stats import ConnectionStats, LatencyStats
from fastmd.core.status import ShardView, Status as Status, overall_status
from fastmd.core.streams import Stream, Venue, futures_route, parse_stream
from fastmd.core.subscriptions import (
    CONTROL_FRAMES_PER_SECOND,
    STREAMS_PER_CONNECTION,
    ControlChannel,
    Outcome,
)
from fastmd.core.weights import DEFAULT_WEIGHT_LIMIT
from fastmd.errors import (
    CallbackError,
    DecodeError,
    FastmdError,
    FastmdTimeoutError,
    InvalidState,
    StreamNameError,
    StreamOverflow,
    SubscriptionError,
    UnknownSymbolError,
)

__all__ = ["Client", "EventStream", "Metrics", "Subscription"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _VenuePreset:
    ws_url: str
    rest_url: str
    routed: bool


_PRESETS: Final[dict[str, _VenuePreset]] = {
    "binance-spot": _VenuePreset("wss://stream.binance.com:9443", "https://api.binance.com", False),
    "binance-usdm": _VenuePreset("wss://fstream.binance.com", "https://fapi.binance.com", True),
}


def _backfilled_by_default(route: _Route) -> bool:
    return route.parsed.kind in BACKFILLABLE


_TIMING_EVERY: Final = 16  # time one message in 16: slow callbacks show, cost stays low
_TEXT: Final = WSMsgType.TEXT
_ROTATE_SETTLE_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class Metrics:
    """A snapshot of the client's health (``client.metrics()``).

    Attributes:
        status: the client's :class:`Status`.
        connections: per-connection statistics.
        streams: subscribed streams.
        messages: data frames received, all connections.
        message_rate_1s: frames per second over the last second, all connections.
        message_rate_10s: frames per second over the last ten seconds.
        latency: ping round trips of the connection with the most samples.
        uptime: seconds since the client started.
        reconnects: reconnects of all connections.
        handovers: make-before-break connection swaps (serverShutdown, rotation, forced).
        errors: errors reported.
        gaps: losses detected (each reported through ``on_gap``).
        duplicates_dropped: events dropped because their id was already delivered.
        decode_errors: frames that could not be decoded.
        callback_errors: user callbacks that raised.
        callback_time_mean: mean seconds a callback run took (sampled).
        callback_time_max: the longest sampled callback run, seconds.
        slow_callbacks: sampled callback runs longer than ``slow_callback``.
        overflow_dropped: events dropped by full :meth:`Client.stream` queues.
        backfilled: events recovered from REST after a gap (instead of being lost).
        book_resyncs: local order books thrown away and synced again.
    """

    status: Status
    connections: tuple[ConnectionStats, ...]
    streams: int
    messages: int
    message_rate_1s: float
    message_rate_10s: float
    latency: LatencyStats
    uptime: float
    reconnects: int
    handovers: int
    errors: int
    gaps: int
    duplicates_dropped: int
    decode_errors: int
    callback_errors: int
    callback_time_mean: float
    callback_time_max: float
    slow_callbacks: int
    overflow_dropped: int
    backfilled: int
    book_resyncs: int


class _Route:
    """Everything the frame handler needs about one stream."""

    __slots__ = (
        "backfill", "buffer", "callbacks", "check", "name", "parsed", "sequencer", "single",
        "slot", "subscriptions",
    )  # fmt: skip

    def __init__(self, name: str, parsed: Stream, sequencer: Sequencer | None) -> None:
        self.name = name
        self.parsed = parsed
        self.sequencer = sequencer
        # the sequencer's bound check, looked up once: the frame handler calls it per event
        self.check: Callable[[Any], bool] | None = sequencer.check if sequencer else None
        self.callbacks: tuple[Callable[[Any], object], ...] = ()
        self.single: Callable[[Any], object] | None = None  # the only callback, if just one
        self.subscriptions: list[Subscription] = []
        self.slot: _Slot | None = None
        self.backfill = False
        self.buffer: deque[Any] | None = None  # live events held while a backfill runs


class Subscription:
    """A callback subscribed to one or more streams (``client.subscribe(...)``).

    ``state`` is ``"pending"`` until every stream is acknowledged, then ``"active"``;
    ``"failed"`` (see ``error``) or ``"closed"`` after :meth:`unsubscribe`.
    """

    def __init__(
        self,
        client: Client,
        streams: tuple[str, ...],
        callback: Callable[[Any], object],
        backfill: bool | None = None,
    ) -> None:
        self._client = client
        self.streams = streams
        self.callback = callback
        self.backfill = backfill
        self.state: Literal["pending", "active", "failed", "closed"] = "pending"
        self.error: FastmdError | None = None
        self._waiting: set[str] = set(streams)
        self._settled = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"Subscription({list(self.streams)!r}, state={self.state!r})"

    def unsubscribe(self) -> None:
        """Stop calling the callback; streams nobody else uses are unsubscribed. Idempotent."""
        if self.state == "closed":
            return
        self.state = "closed"
        self._client._remove(self)
        self._settle()

    async def wait_active(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until every stream is acknowledged by the server.

        Raises:
            SubscriptionError: a stream was refused, not acknowledged, or its symbol is unknown.
            FastmdTimeoutError: ``timeout`` passed first.
            InvalidState: the subscription was removed.
        """
        try:
            await asyncio.wait_for(asyncio.shield(self._settled), timeout)
        except TimeoutError:
            raise FastmdTimeoutError(
                f"{len(self._waiting)} stream(s) not acknowledged within {timeout:g} s"
            ) from None
        if self.error is not None:
            raise self.error
        if self.state == "closed":
            raise InvalidState("the subscription was removed")

    def _acknowledged(self, stream: str) -> None:
        self._waiting.discard(stream)
        if not self._waiting and self.state == "pending":
            self.state = "active"
            self._settle()

    def _failed(self, error: FastmdError) -> None:
        if self.state in ("failed", "closed"):
            return
        self.state = "failed"
        self.error = error
        self._settle()

    def _settle(self) -> None:
        if not self._settled.done():
            self._settled.set_result(None)


class EventStream:
    """An async iterator over events (``client.stream(...)``), through a bounded queue.

    Overflow policies when the consumer falls ``maxsize`` events behind:

    - ``"drop_oldest"``: the oldest queued event is dropped;
    - ``"keep_latest"``: the stream's own queued event is dropped, so each stream keeps its newest
      value (conflation, for tickers and books; the queue holds at most ``maxsize`` plus one
      event per stream);
    - ``"disconnect"``: the iterator raises :class:`StreamOverflow` and unsubscribes.

    Every dropped event is reported as a gap with reason ``overflow``.
    """

    def __init__(self, client: Client, maxsize: int, overflow: str) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if overflow not in ("drop_oldest", "keep_latest", "disconnect"):
            raise ValueError(
                f"overflow must be 'drop_oldest', 'keep_latest' or 'disconnect', not {overflow!r}"
            )
        self._client = client
        self.maxsize = maxsize
        self.overflow = overflow
        self._queue: deque[Any] = deque()
        self._wakeup = asyncio.Event()
        self._failure: FastmdError | None = None
        self._subscription: Subscription | None = None
        self.dropped = 0
        self._positions: dict[str, int] = {}

    def _push(self, event: Any, stream: str) -> None:
        position = self._positions.get(stream, 0) + 1
        self._positions[stream] = position
        queue = self._queue
        if len(queue) >= self.maxsize:
            if self.overflow == "disconnect":
                if self._failure is None:
                    self._failure = StreamOverflow(
                        f"consumer fell {self.maxsize} events behind; stream closed"
                    )
                    self._client._overflow_gap(stream, position, position + 1)
                    if self._subscription is not None:
                        self._subscription.unsubscribe()
                self._wakeup.set()
                return
            victim: int | None = 0
            if self.overflow == "keep_latest":
                # Conflate: the stream's own queued event goes, so every stream keeps its
                # newest value; a stream with nothing queued may go over maxsize by one (the
                # queue is bounded by maxsize plus the number of streams).
                victim = next((i for i, item in enumerate(queue) if item[1] == stream), None)
            if victim is not None:
                _, dropped_stream, dropped_position = queue[victim]
                del queue[victim]
                self.dropped += 1
                self._client._overflow_gap(dropped_stream, dropped_position, dropped_position + 1)
        queue.append((event, stream, position))
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._queue:
                return self._queue.popleft()[0]
            if self._failure is not None:
                raise self._failure
            if self._subscription is not None and self._subscription.state == "closed":
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Unsubscribe and end the iteration."""
        if self._subscription is not None:
            self._subscription.unsubscribe()
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._queue)


class _Slot:
    """One pooled connection and the streams it carries."""

    def __init__(self, key: tuple[str, int], url: str) -> None:
        self.key = key
        self.url = url
        self.streams: set[str] = set()
        self.conn: Connection | None = None
        self.channel = ControlChannel()
        self.decoder: Decoder | None = None
        self.rotate_timer: asyncio.TimerHandle | None = None
        self.ticker: asyncio.Task[None] | None = None
        self.rotating = False
        self.ever_connected = False
        self.poller: Poller | None = None
        self.flush_scheduled = False


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
        max_streams_per_connection: 1024 spot, 200 futures by default.
        max_outgoing_per_second: 4 spot, 8 futures by default (Binance allows 5 and 10).
        max_params_per_request: streams per SUBSCRIBE/UNSUBSCRIBE.
        ack_timeout: seconds to wait for a control reply before sending again.
        ack_retries: resends before a subscription fails.
        connect_budget: connection attempts per 5 minutes for the whole pool.
        rotate_after: seconds after which a connection is replaced make-before-break
            (Binance closes at 24 h); ``None`` disables rotation.
        validate_symbols: check symbols against ``exchangeInfo`` before subscribing.
        price_type: ``float``, ``str`` or ``Decimal`` for prices and quantities.
        backoff, heartbeat, circuit_breaker, stale_after: per-connection settings
            (see :class:`fastmd.Connection`).
        slow_callback: seconds above which a sampled callback run counts as slow.
        rest_weight_budget: REST weight per minute fastmd may spend on book snapshots (half of
            Binance's limit by default: 3,000 spot, 1,200 futures).
        fallback: serve a connection's streams by REST polling while it cannot be kept up
            (status FALLBACK).
        fallback_after: failed reconnect attempts in a row before the fallback starts (it also
            starts when the connection's circuit opens).
        rest_timeouts: timeouts of REST requests (:class:`fastmd.RestTimeouts`).
        max_response_size: REST bodies larger than this (bytes) are refused while being read.
        error_reporter: receives every :class:`fastmd.ErrorReport`.
    """

    def __init__(
        self,
        venue: Venue = "binance-spot",
        *,
        ws_url: str | None = None,
        rest_url: str | None = None,
        max_streams_per_connection: int | None = None,
        max_outgoing_per_second: int | None = None,
        max_params_per_request: int = 200,
        ack_timeout: float = 5.0,
        ack_retries: int = 2,
        connect_budget: int = 30,
        rotate_after: float | None = 23 * 3600.0,
        validate_symbols: bool = True,
        price_type: PriceType = float,
        backoff: Backoff | None = None,
        heartbeat: Heartbeat | None = None,
        circuit_breaker: CircuitBreakerPolicy | None = None,
        stale_after: float | None = None,
        slow_callback: float = 0.01,
        rest_weight_budget: int | None = None,
        fallback: bool = True,
        fallback_after: int = 3,
        rest_timeouts: RestTimeouts | None = None,
        max_response_size: int = 16 * 1024 * 1024,
        error_reporter: ErrorReporter | None = None,
    ) -> None:
        preset = _PRESETS.get(venue)
        if preset is None:
            raise ValueError(f"unknown venue {venue!r}; allowed: {', '.join(_PRESETS)}")
        self.venue: Venue = venue
        self.ws_url = (ws_url or preset.ws_url).rstrip("/")
        self.rest_url = (rest_url or preset.rest_url).rstrip("/")
        self._routed = preset.routed
        self.max_streams_per_connection = (
            max_streams_per_connection or STREAMS_PER_CONNECTION[venue]
        )
        self.max_outgoing_per_second = max_outgoing_per_second or CONTROL_FRAMES_PER_SECOND[venue]
        self.max_params_per_request = max_params_per_request
        self.ack_timeout = ack_timeout
        self.ack_retries = ack_retries
        self.rotate_after = rotate_after
        self.validate_symbols = validate_symbols
        self.price_type = price_type
        self.backoff = backoff
        self.heartbeat = heartbeat
        self.circuit_breaker = circuit_breaker
        self.stale_after = stale_after
        self.slow_callback = slow_callback
        self._reporter: ErrorReporter = (
            error_reporter if error_reporter is not None else LoggingReporter()
        )
        self._connect_budget = Pacer(connect_budget, 300.0, min_interval=0.0)
        self._routes: dict[str, _Route] = {}
        self._slots: dict[tuple[str, int], _Slot] = {}
        self._retired: list[Connection] = []
        self._gap_listeners: list[Callable[[Gap], object]] = []
        self._status_listeners: list[Callable[[Status, Metrics], object]] = []
        self._error_listeners: list[Callable[[ErrorReport], object]] = []
        self._status = Status.CONNECTING
        self._started_at: float | None = None
        self._session: aiohttp.ClientSession | None = None
        self._rest: RestClient | None = None
        self._market: MarketData | None = None
        self._symbols: SymbolDirectory | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._started = False
        # counters
        self._gaps = 0
        self._errors = 0
        self._decode_errors = 0
        self._callback_errors = 0
        self._handovers = 0
        self._overflow_dropped = 0
        self._callback_time = 0.0
        self._callback_samples = 0
        self._callback_max = 0.0
        self._slow_callbacks = 0
        self._duplicates_retired = 0
        self._retired_totals = [0, 0, 0]  # messages, reconnects, errors of replaced connections
        self._book_resyncs = 0
        self.fallback = fallback
        self.fallback_after = fallback_after
        self.rest_timeouts = rest_timeouts or RestTimeouts()
        self.max_response_size = max_response_size
        self._backfiller = Backfiller(self)
        self._rest_delivery = False
        self._books = BookKeeper(self, rest_weight_budget or DEFAULT_WEIGHT_LIMIT[venue] // 2)

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

    async def close(self) -> None:
        """Close every connection and the HTTP session; idempotent."""
        if self._closed:
            return
        self._closed = True
        for book in list(self._books.books.values()):
            book.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        closing = [conn for conn in self._retired]
        for slot in self._slots.values():
            self._stop_slot_timers(slot)
            if slot.conn is not None:
                closing.append(slot.conn)
        await asyncio.gather(*(conn.close() for conn in closing), return_exceptions=True)
        for route in self._routes.values():
            for sub in route.subscriptions:
                if sub.state != "closed":
                    sub.state = "closed"
                    sub._settle()
        if self._market is not None:
            self._market.close()
        if self._symbols is not None:
            self._symbols.close()
        if self._session is not None:
            await self._session.close()
        self._set_status(Status.CLOSED)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("the Client is closed")
        if not self._started:
            raise InvalidState("start the Client first: async with fastmd.Client(...) as client")

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(
        self,
        streams: str | Iterable[str],
        callback: Callable[[Any], object],
        *,
        backfill: bool | None = None,
    ) -> Subscription:
        """Call ``callback(event)`` for every event of ``streams``.

        Returns at once; the streams become active once the server acknowledges them
        (``await sub.wait_active()``). Several callbacks may share a stream.

        ``backfill``: fill gaps from REST before live events resume (on by default for
        aggTrade and kline streams, the ones REST can replay).

        Raises:
            StreamNameError: a stream name is invalid for the venue (nothing is subscribed).
            InvalidState: the client is not started or is closed.
        """
        self._check_open()
        names = (streams,) if isinstance(streams, str) else tuple(dict.fromkeys(streams))
        if not names:
            raise StreamNameError("subscribe() needs at least one stream")
        parsed = [parse_stream(name, self.venue) for name in names]
        subscription = Subscription(self, names, callback, backfill)
        fresh: list[str] = []
        for name, stream in zip(names, parsed, strict=True):
            route = self._routes.get(name)
            if route is None:
                sequencer = sequencer_for(
                    stream, name, self._on_gap, futures=self.venue == "binance-usdm"
                )
                route = self._routes[name] = _Route(name, stream, sequencer)
                fresh.append(name)
            route.subscriptions.append(subscription)
            self._refresh_callbacks(route)
            if route.slot is not None and name in route.slot.channel.active:
                subscription._acknowledged(name)
        if fresh:
            self._spawn(self._place(fresh, subscription))
        elif subscription.state == "pending" and not subscription._waiting:
            subscription.state = "active"
            subscription._settle()
        return subscription

    def stream(
        self,
        streams: str | Iterable[str],
        *,
        maxsize: int = 10_000,
        overflow: Literal["drop_oldest", "keep_latest", "disconnect"] = "drop_oldest",
    ) -> EventStream:
        """An async iterator over the events of ``streams`` through a bounded queue.

        Raises:
            StreamNameError: a stream name is invalid.
            ValueError: bad ``maxsize`` or ``overflow``.
        """
        events = EventStream(self, maxsize, overflow)
        names = (streams,) if isinstance(streams, str) else tuple(streams)
        for name in names:  # all or nothing: a bad name subscribes none
            parse_stream(name, self.venue)
        callbacks = {name: self._stream_pusher(events, name) for name in names}
        # One subscription per stream name so the queue knows where each event came from.
        subs = [self.subscribe(name, callbacks[name]) for name in names]
        events._subscription = subs[0] if len(subs) == 1 else _Group(subs)  # type: ignore[assignment]
        return events

    def _refresh_callbacks(self, route: _Route) -> None:
        """What the frame handler calls for ``route``: its subscriptions' callbacks, or the
        backfill buffer while a backfill runs."""
        route.backfill = any(
            sub.backfill if sub.backfill is not None else _backfilled_by_default(route)
            for sub in route.subscriptions
        )
        if route.buffer is not None:
            route.callbacks = (route.buffer.append,)
        else:
            route.callbacks = tuple(sub.callback for sub in route.subscriptions)
        route.single = route.callbacks[0] if len(route.callbacks) == 1 else None

    @staticmethod
    def _stream_pusher(events: EventStream, name: str) -> Callable[[Any], None]:
        def push(event: Any) -> None:
            events._push(event, name)

        return push

    async def _place(self, streams: list[str], subscription: Subscription) -> None:
        if self.validate_symbols:
            unknown = await self._unknown_symbols(streams)
            for name in unknown:
                error = UnknownSymbolError(
                    f"{name}: symbol is not listed by the exchange", stream=name
                )
                self._fail_stream(name, error)
            streams = [s for s in streams if s not in unknown]
        by_route: dict[str, list[str]] = {}
        for name in streams:
            route = self._routes.get(name)
            if route is None:  # unsubscribed while validating
                continue
            route_key: str = futures_route(route.parsed) if self._routed else ""
            by_route.setdefault(route_key, []).append(name)
        for route_key, names in by_route.items():
            for name in names:
                slot = self._slot_with_room(route_key)
                slot.streams.add(name)
                self._routes[name].slot = slot
                slot.channel.want([name])
                if slot.decoder is not None:
                    slot.decoder.register([name])
            for slot in self._slots.values():
                if slot.key[0] == route_key:
                    self._ensure_connection(slot)
                    self._schedule_flush(slot)

    async def _unknown_symbols(self, streams: list[str]) -> set[str]:
        assert self._symbols is not None
        try:
            listed = await self._symbols.symbols()
        except FastmdError as exc:
            # Validation is a safeguard, not a gate: without it, still subscribe.
            self._report(
                Severity.WARNING, "symbol_check_failed", f"symbols not validated: {exc}", exc
            )
            return set()
        unknown = set()
        for name in streams:
            route = self._routes.get(name)
            symbol = route.parsed.symbol if route is not None else None
            if symbol is not None and symbol.upper() not in listed:
                unknown.add(name)
        return unknown

    def _slot_with_room(self, route_key: str) -> _Slot:
        index = 0
        while True:
            slot = self._slots.get((route_key, index))
            if slot is None:
                prefix = f"/{route_key}" if route_key else ""
                slot = self._slots[(route_key, index)] = _Slot(
                    (route_key, index), f"{self.ws_url}{prefix}/stream"
                )
                slot.channel = self._new_channel()
                return slot
            if len(slot.streams) < self.max_streams_per_connection:
                return slot
            index += 1

    def _new_channel(self) -> ControlChannel:
        return ControlChannel(
            max_params=self.max_params_per_request,
            ack_timeout=self.ack_timeout,
            max_retries=self.ack_retries,
        )

    def _fail_stream(self, name: str, error: SubscriptionError) -> None:
        route = self._routes.pop(name, None)
        if route is None:
            return
        self._forget_route(route)
        if route.slot is not None:
            route.slot.streams.discard(name)
            route.slot.channel.drop([name])
        for sub in route.subscriptions:
            sub._failed(error)
        self._report(Severity.ERROR, "subscription_failed", str(error), error, stream=name)

    def _remove(self, subscription: Subscription) -> None:
        for name in subscription.streams:
            route = self._routes.get(name)
            if route is None:
                continue
            with contextlib.suppress(ValueError):
                route.subscriptions.remove(subscription)
            self._refresh_callbacks(route)
            if route.subscriptions:
                continue
            del self._routes[name]
            self._forget_route(route)
            slot = route.slot
            if slot is not None:
                slot.streams.discard(name)
                slot.channel.drop([name])
                self._schedule_flush(slot)
                if not slot.streams:
                    self._retire_slot(slot)

    def _forget_route(self, route: _Route) -> None:
        if route.sequencer is not None:
            self._duplicates_retired += route.sequencer.duplicates

    def _retire_slot(self, slot: _Slot) -> None:
        self._slots.pop(slot.key, None)
        self._stop_slot_timers(slot)
        if slot.conn is not None:
            conn, slot.conn = slot.conn, None
            self._retire_connection(conn)

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
        key = symbol.upper()
        book = self._books.books.get(key)
        if book is None:
            book = OrderBook(self, key, depth=depth, strict=strict)
            self._books.books[key] = book
            book._subscription = self.subscribe(f"{key.lower()}@depth@100ms", book._on_diff)
            try:
                await book._subscription.wait_active(timeout)
            except FastmdError:
                book.close()
                raise
            book._request_snapshot()  # diffs are buffered from the acknowledgement on
        await book.wait_synced(timeout)
        return book

    @property
    def books(self) -> dict[str, OrderBook]:
        """The order books the client keeps, by symbol."""
        return dict(self._books.books)

    async def _book_snapshot(self, book: OrderBook) -> Any:
        return await self._books.fetch(book)

    def _book_resync(self, book: OrderBook, reason: str) -> None:
        self._book_resyncs += 1
        self._report(
            Severity.WARNING, "book_resync", f"{book.symbol} book resyncing ({reason})", None,
            symbol=book.symbol,
        )  # fmt: skip

    def _book_listener_failed(self, book: OrderBook, exc: Exception) -> None:
        self._callback_errors += 1
        error = CallbackError(f"on_update of the {book.symbol} book raised {exc!r}")
        error.__cause__ = exc
        self._report(Severity.ERROR, "callback_error", str(error), error, symbol=book.symbol)

    def _forget_book(self, book: OrderBook) -> None:
        if self._books.books.get(book.symbol) is book:
            del self._books.books[book.symbol]

    # -- connections --------------------------------------------------------------------------

    def _connection_for(self, slot: _Slot) -> Connection:
        options: dict[str, Any] = {}
        if self.backoff is not None:
            options["backoff"] = self.backoff
        if self.heartbeat is not None:
            options["heartbeat"] = self.heartbeat
        if self.circuit_breaker is not None:
            options["circuit_breaker"] = self.circuit_breaker
        return Connection(
            slot.url,
            max_outgoing_per_second=self.max_outgoing_per_second,
            stale_after=self.stale_after,
            error_reporter=self._emit_report,
            connect_budget=self._connect_budget,
            **options,
        )

    def _new_decoder(self, streams: Iterable[str]) -> Decoder:
        decoder = Decoder(self.venue, price_type=self.price_type)
        decoder.register(streams)
        return decoder

    def _ensure_connection(self, slot: _Slot) -> None:
        if slot.conn is not None or self._closed:
            return
        slot.decoder = self._new_decoder(slot.streams)
        conn = slot.conn = self._connection_for(slot)
        conn.set_frame_router(*self._frame_router(slot, slot.decoder, conn))
        self._watch(slot, conn)
        self._spawn(conn.connect())
        slot.ticker = self._spawn(self._tick(slot))

    def _watch(self, slot: _Slot, conn: Connection) -> None:
        conn.on("connect", lambda: self._on_connect(slot, conn))
        conn.on("disconnect", lambda code, reason: self._on_disconnect(slot, conn))
        conn.on("reconnecting", lambda attempt, delay: self._on_reconnecting(slot, conn, attempt))
        conn.on("circuit_open", lambda cooldown: self._on_circuit_open(slot, conn))

    def _on_reconnecting(self, slot: _Slot, conn: Connection, attempt: int) -> None:
        if slot.conn is conn and attempt > self.fallback_after:
            self._enter_fallback(slot)
        self._update_status()

    def _on_circuit_open(self, slot: _Slot, conn: Connection) -> None:
        if slot.conn is conn:
            self._enter_fallback(slot)
        self._update_status()

    def _enter_fallback(self, slot: _Slot) -> None:
        if not self.fallback or self._closed or self._rest is None:
            return
        if slot.poller is None:
            slot.poller = Poller(self, slot)
        if not slot.poller.running:
            self._report(
                Severity.WARNING, "fallback", f"{slot.url}: serving its streams by REST polling",
                None,
            )  # fmt: skip
            slot.poller.start()

    def _leave_fallback(self, slot: _Slot) -> None:
        if slot.poller is not None and slot.poller.running:
            slot.poller.stop()
            logger.info("%s: back on the socket, REST polling stopped", slot.url)

    def _on_connect(self, slot: _Slot, conn: Connection) -> None:
        if slot.conn is not conn:
            return
        self._leave_fallback(slot)
        if slot.ever_connected:
            for name in slot.streams:
                route = self._routes.get(name)
                if route is not None and route.sequencer is not None:
                    route.sequencer.mark_reconnect()
        slot.ever_connected = True
        slot.channel.reset()
        self._flush_requests(slot)
        self._schedule_rotation(slot)
        self._update_status()

    def _on_disconnect(self, slot: _Slot, conn: Connection) -> None:
        if slot.conn is not conn:
            return
        if slot.rotate_timer is not None:
            slot.rotate_timer.cancel()
            slot.rotate_timer = None
        self._update_status()

    def _schedule_flush(self, slot: _Slot) -> None:
        """Send the slot's pending (un)subscriptions at the end of this loop turn, so that many
        subscribe() calls in a row leave as few, full requests."""
        if not slot.flush_scheduled:
            slot.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_scheduled, slot)

    def _flush_scheduled(self, slot: _Slot) -> None:
        slot.flush_scheduled = False
        self._flush_requests(slot)

    def _flush_requests(self, slot: _Slot) -> None:
        conn = slot.conn
        if conn is None or not conn.is_open:
            return
        # The ack clock starts when the frame is expected to leave the paced queue.
        for frame in slot.channel.requests(time.monotonic() + conn.send_delay()):
            conn.send(frame)

    async def _tick(self, slot: _Slot) -> None:
        """Acknowledgement timeouts of one slot."""
        while True:
            await asyncio.sleep(min(self.ack_timeout / 4, 0.5))
            conn = slot.conn
            if conn is None or not conn.is_open:
                continue
            frames, outcomes = slot.channel.poll(time.monotonic())
            for frame in frames:
                conn.send(frame)
            self._apply_outcomes(outcomes)

    def _schedule_rotation(self, slot: _Slot) -> None:
        if self.rotate_after is None or slot.rotate_timer is not None:
            return
        loop = asyncio.get_running_loop()
        slot.rotate_timer = loop.call_later(
            self.rotate_after, lambda: self._spawn(self._handover(slot, "lifetime"))
        )

    def _stop_slot_timers(self, slot: _Slot) -> None:
        if slot.poller is not None:
            slot.poller.stop()
        if slot.rotate_timer is not None:
            slot.rotate_timer.cancel()
            slot.rotate_timer = None
        if slot.ticker is not None:
            slot.ticker.cancel()
            slot.ticker = None

    async def _handover(self, slot: _Slot, why: str) -> None:
        """Make-before-break: a second connection subscribes the slot's streams; once it is
        acknowledged the old one closes. Both deliver during the overlap; the sequencers drop
        what was already delivered, so nothing is lost or repeated."""
        if slot.rotating or self._closed or self._slots.get(slot.key) is not slot:
            return
        slot.rotating = True
        old = slot.conn
        conn: Connection | None = None
        swapped = False
        try:
            if slot.rotate_timer is not None:
                slot.rotate_timer.cancel()
                slot.rotate_timer = None
            channel = self._new_channel()
            channel.want(slot.streams)
            decoder = self._new_decoder(slot.streams)
            conn = self._connection_for(slot)
            replied = asyncio.Event()

            def on_frame_reply(reply: ControlReply) -> None:
                if slot.conn is conn:  # swapped in: replies go to the slot like any other
                    self._on_reply(slot, reply)
                    return
                self._apply_outcomes(channel.on_reply(reply))
                replied.set()

            conn.set_frame_router(*self._frame_router(slot, decoder, conn, replies=on_frame_reply))
            opened = await conn.connect(timeout=_ROTATE_SETTLE_TIMEOUT)
            settled = False
            deadline = time.monotonic() + _ROTATE_SETTLE_TIMEOUT
            while opened and not self._is_closed() and time.monotonic() < deadline:
                # Streams subscribed or removed meanwhile are reconciled on the new channel
                # before the swap, so the slot ends with exactly its current streams.
                channel.want(slot.streams - channel.desired)
                channel.drop(channel.desired - slot.streams)
                decoder.register(slot.streams)
                for frame in channel.requests(time.monotonic() + conn.send_delay()):
                    conn.send(frame)
                if channel.is_settled():
                    settled = True
                    break
                replied.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replied.wait(), deadline - time.monotonic())
            if self._is_closed() or self._slots.get(slot.key) is not slot:
                return  # the client closed (or the slot went away) meanwhile
            if not opened or not settled:
                self._report(
                    Severity.WARNING,
                    "handover_failed",
                    f"replacement connection for {why} did not settle; keeping the old one",
                    None,
                )
                return
            slot.conn, slot.channel, slot.decoder = conn, channel, decoder
            swapped = True
            self._watch(slot, conn)
            self._flush_requests(slot)
            slot.ever_connected = True
            self._handovers += 1
            self._schedule_rotation(slot)
            if old is not None:
                self._retire_connection(old)
            logger.info("connection %s handed over (%s)", slot.url, why)
        finally:
            slot.rotating = False
            if conn is not None and not swapped:
                await asyncio.shield(conn.close())
            self._update_status()

    async def force_reconnect(self) -> None:
        """Replace every connection, make-before-break: no gap, no duplicate."""
        self._check_open()
        tasks = [self._spawn(self._handover(s, "forced")) for s in list(self._slots.values())]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _is_closed(self) -> bool:
        # A method, not the attribute: close() flips it while a coroutine awaits.
        return self._closed

    def _retire_connection(self, conn: Connection) -> None:
        """Close a connection the pool no longer uses; its counts stay in the client's totals,
        and close() waits for it if it is still closing."""
        stats = conn.stats
        self._retired_totals[0] += stats.messages
        self._retired_totals[1] += stats.reconnects
        self._retired_totals[2] += stats.errors
        self._retired.append(conn)

        async def close() -> None:
            try:
                await conn.close()
            finally:
                with contextlib.suppress(ValueError):
                    self._retired.remove(conn)

        self._spawn(close())

    # -- the hot path -------------------------------------------------------------------------

    def _frame_router(
        self,
        slot: _Slot,
        decoder: Decoder,
        conn: Connection,
        *,
        replies: Callable[[ControlReply], None] | None = None,
    ) -> tuple[Callable[[WSTransport, WSFrame], None], Callable[[], int]]:
        """The hot path: picows calls the returned function for every frame of the slot's
        socket. Decode first (one msgspec pass), look at the frame type only when that fails,
        then the stream's sequencer and its callbacks, all synchronously, one Python call deep.
        Frames it does not consume go back to the connection. The second function counts the
        data frames it consumed."""
        get_route = self._routes.get
        handle_frame = conn.handle_frame
        on_reply = replies or (lambda reply: self._on_reply(slot, reply))
        countdown = _TIMING_EVERY  # closure cells: cheaper than attributes per frame
        consumed = 0

        def on_frame(transport: WSTransport, frame: WSFrame) -> None:
            nonlocal countdown, consumed
            payload = frame.get_payload_as_memoryview()
            try:
                message = decoder.fast_decode(payload)
            except Exception as exc:
                if frame.msg_type is not _TEXT or not frame.fin:
                    handle_frame(transport, frame)
                    return
                consumed += 1
                try:
                    message = decoder.recover(payload, exc)
                except DecodeError as error:
                    self._decode_failed(error)
                    return
                if type(message) is ControlReply:
                    on_reply(message)
                    return
            else:
                consumed += 1
            route = get_route(message.stream)
            if route is None:
                self._unrouted(slot, message)
                return
            event = message.event
            check = route.check
            if check is not None and not check(event):
                return
            countdown -= 1
            if countdown:
                single = route.single
                if single is not None:
                    try:
                        single(event)
                    except Exception as exc:
                        self._callback_failed(route, exc)
                else:
                    for callback in route.callbacks:
                        try:
                            callback(event)
                        except Exception as exc:
                            self._callback_failed(route, exc)
            else:
                countdown = _TIMING_EVERY
                self._timed_dispatch(route, event)

        def count() -> int:
            return consumed

        return on_frame, count

    def _timed_dispatch(self, route: _Route, event: Any) -> None:
        started = time.perf_counter()
        for callback in route.callbacks:
            try:
                callback(event)
            except Exception as exc:
                self._callback_failed(route, exc)
        elapsed = time.perf_counter() - started
        self._callback_time += elapsed
        self._callback_samples += 1
        if elapsed > self._callback_max:
            self._callback_max = elapsed
        if elapsed > self.slow_callback:
            self._slow_callbacks += 1
            self._report(
                Severity.WARNING,
                "slow_callback",
                f"callbacks of {route.name} took {elapsed * 1000:.1f} ms (loop blocked)",
                None,
                stream=route.name,
            )

    def _deliver(self, route: _Route, event: Any) -> bool:
        """Deliver an event that did not come through the frame handler (REST fallback):
        the same sequencer and callbacks. Returns whether it was delivered."""
        sequencer = route.sequencer
        if sequencer is not None and not sequencer.check(event):
            return False
        self._call(route, event)
        return True

    def _call(self, route: _Route, event: Any) -> None:
        """Call ``route``'s callbacks with an event already sequenced (backfill, buffer)."""
        for callback in route.callbacks:
            try:
                callback(event)
            except Exception as exc:
                self._callback_failed(route, exc)

    @property
    def event_source(self) -> Literal["ws", "rest"]:
        """Where the event being delivered right now comes from (read it in a callback)."""
        return "rest" if self._rest_delivery else "ws"

    def _unrouted(self, slot: _Slot, message: Message[Any]) -> None:
        if isinstance(message.event, ServerShutdown):
            self._report(
                Severity.WARNING, "server_shutdown", f"{slot.url}: serverShutdown received", None
            )
            self._spawn(self._handover(slot, "serverShutdown"))
        # else: a stream unsubscribed a moment ago; its last frames are dropped on purpose

    def _on_reply(self, slot: _Slot, reply: ControlReply) -> None:
        self._apply_outcomes(slot.channel.on_reply(reply))

    def _apply_outcomes(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            route = self._routes.get(outcome.stream)
            if route is None:
                continue
            if outcome.ok and outcome.method == "SUBSCRIBE":
                for sub in route.subscriptions:
                    sub._acknowledged(outcome.stream)
            elif not outcome.ok and outcome.method == "SUBSCRIBE":
                error = outcome.error
                code = error.code if error is not None else None
                message = error.msg if error is not None else "refused"
                self._fail_stream(
                    outcome.stream,
                    SubscriptionError(f"{outcome.stream}: {message}", stream=outcome.stream,
                                      code=code),
                )  # fmt: skip

    def _decode_failed(self, error: DecodeError) -> None:
        self._decode_errors += 1
        self._report(
            Severity.WARNING, f"decode_{error.category.value}", str(error)[:256], error,
            stream=error.stream,
        )  # fmt: skip

    def _callback_failed(self, route: _Route, exc: Exception) -> None:
        self._callback_errors += 1
        error = CallbackError(f"callback of {route.name} raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._report(Severity.ERROR, "callback_error", str(error), error, stream=route.name)

    # -- gaps, status, metrics ----------------------------------------------------------------

    def on_gap(self, callback: Callable[[Gap], object]) -> Callable[[], None]:
        """Call ``callback(gap)`` for every detected loss; returns a remover."""
        self._gap_listeners.append(callback)
        return lambda: self._remove_listener(self._gap_listeners, callback)

    def on_status(self, callback: Callable[[Status, Metrics], object]) -> Callable[[], None]:
        """Call ``callback(status, metrics)`` on every status change; returns a remover."""
        self._status_listeners.append(callback)
        return lambda: self._remove_listener(self._status_listeners, callback)

    def on_error(self, callback: Callable[[ErrorReport], object]) -> Callable[[], None]:
        """Call ``callback(report)`` for every :class:`fastmd.ErrorReport` of this client and its
        connections (``report.severity`` tells warnings from errors): failed subscriptions,
        raising callbacks, decode errors, refused connections, REST failures. Listeners are
        called in addition to ``error_reporter`` (by default: logging); returns a remover."""
        self._error_listeners.append(callback)
        return lambda: self._remove_listener(self._error_listeners, callback)

    def _listener_failed(self, kind: str, exc: Exception) -> None:
        self._callback_errors += 1
        error = CallbackError(f"a {kind} listener raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._report(Severity.ERROR, "callback_error", str(error), error, listener=kind)

    @staticmethod
    def _remove_listener(listeners: list[Any], callback: Any) -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(callback)

    def _on_gap(self, gap: Gap) -> None:
        route = self._routes.get(gap.stream)
        if route is not None and self._backfiller.takes(route, gap):
            return  # the parts REST cannot return are reported when the fill ends
        self._report_gap(gap)

    def _report_gap(self, gap: Gap) -> None:
        self._gaps += 1
        self._report(
            Severity.WARNING,
            "gap",
            f"{gap.stream}: expected {gap.expected}, got {gap.received} ({gap.reason.value})",
            None,
            stream=gap.stream,
        )
        for listener in tuple(self._gap_listeners):
            try:
                listener(gap)
            except Exception as exc:
                self._listener_failed("gap", exc)

    def _overflow_gap(self, stream: str, expected: int, received: int) -> None:
        self._overflow_dropped += 1
        self._on_gap(Gap(stream, expected, received, GapReason.OVERFLOW))

    @property
    def status(self) -> Status:
        """The client's :class:`Status`."""
        return self._status

    def _update_status(self) -> None:
        if self._closed:
            return
        shards = [
            ShardView(
                polling=slot.poller is not None and slot.poller.running,
                was_up=slot.ever_connected,
                up=_open(slot),
            )
            for slot in self._slots.values()
        ]
        self._set_status(overall_status(self._status, shards))

    def _set_status(self, status: Status) -> None:
        if status is self._status:
            return
        self._status = status
        metrics = self.metrics()
        for listener in tuple(self._status_listeners):
            try:
                listener(status, metrics)
            except Exception as exc:
                self._listener_failed("status", exc)

    def metrics(self) -> Metrics:
        """A :class:`Metrics` snapshot."""
        conns = [slot.conn for slot in self._slots.values() if slot.conn is not None]
        stats = tuple(conn.stats for conn in conns)
        latency = max(
            (s.latency for s in stats), key=lambda lat: lat.samples, default=LatencyStats(
                None, None, None, 0)
        )  # fmt: skip
        duplicates = self._duplicates_retired + sum(
            route.sequencer.duplicates for route in self._routes.values() if route.sequencer
        )
        return Metrics(
            status=self._status,
            connections=stats,
            streams=len(self._routes),
            messages=self._retired_totals[0] + sum(s.messages for s in stats),
            message_rate_1s=sum(s.message_rate_1s for s in stats),
            message_rate_10s=sum(s.message_rate_10s for s in stats),
            latency=latency,
            uptime=time.monotonic() - self._started_at if self._started_at else 0.0,
            reconnects=self._retired_totals[1] + sum(s.reconnects for s in stats),
            handovers=self._handovers,
            errors=self._errors + self._retired_totals[2] + sum(s.errors for s in stats),
            gaps=self._gaps,
            duplicates_dropped=duplicates,
            decode_errors=self._decode_errors,
            callback_errors=self._callback_errors,
            callback_time_mean=(
                self._callback_time / self._callback_samples if self._callback_samples else 0.0
            ),
            callback_time_max=self._callback_max,
            slow_callbacks=self._slow_callbacks,
            overflow_dropped=self._overflow_dropped,
            backfilled=self._backfiller.filled,
            book_resyncs=self._book_resyncs,
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
        return [slot.conn for slot in self._slots.values() if slot.conn is not None]

    # -- helpers ------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._report(Severity.ERROR, "internal_error", f"background task failed: {exc!r}", exc)

    def _report(
        self,
        severity: Severity,
        code: str,
        message: str,
        error: BaseException | None,
        **context: Any,
    ) -> None:
        self._errors += 1
        self._emit_report(ErrorReport(severity, code, message, error, context))

    def _emit_report(self, report: ErrorReport) -> None:
        """Give ``report`` to the error reporter and to every ``on_error`` listener."""
        try:
            self._reporter(report)
        except Exception:
            logger.exception("the error reporter raised while reporting %s", report.code)
        for listener in tuple(self._error_listeners):
            try:
                listener(report)
            except Exception as exc:
                # Not reported through _report: a listener that always raises would recurse.
                self._callback_errors += 1
                logger.error("an error listener raised on %s", report.code, exc_info=exc)


def _open(slot: _Slot) -> bool:
    return slot.conn is not None and slot.conn.state is ConnectionState.OPEN


class _Group:
    """Several subscriptions that close together (one per stream of an EventStream)."""

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self._subscriptions = subscriptions

    @property
    def state(self) -> str:
        states = {s.state for s in self._subscriptions}
        return "closed" if states == {"closed"} else "active"

    def unsubscribe(self) -> None:
        for sub in self._subscriptions:
            sub.unsubscribe()
