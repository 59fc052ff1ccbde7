"""``fastmd.nats.Source``: the client's consumer API, fed by ``fastmd relay`` over NATS.

A bot written against :class:`fastmd.Client` (``subscribe``, ``stream``, ``on_gap``) runs on
any machine that reaches the NATS server, with the same typed events. Batch headers tell the
source what it lost: a lost batch, events the relay dropped, a relay restart and its own NATS
disconnects are reported through :meth:`Source.on_gap`; duplicates are dropped. The wire format
and subjects are :mod:`fastmd.core.wire`'s (docs/nats.md).

Requires the ``nats`` extra: ``pip install 'fastmd[nats]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import msgspec

from fastmd.aio.reporting import Reporter
from fastmd.aio.subscriptions import EventStream, Subscription, SubscriptionGroup
from fastmd.core import wire
from fastmd.core.codec import Decoder, PriceType
from fastmd.core.health import HealthStatus
from fastmd.core.lifecycle import ErrorReporter, Severity
from fastmd.core.sequence import Gap, GapReason, Sequencer, sequencer_for
from fastmd.core.streams import Venue, parse_stream
from fastmd.errors import FastmdError, StreamNameError

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription

__all__ = [
    "PENDING_BYTES",
    "RELAY_SILENT_AFTER",
    "Source",
    "SourceHealth",
    "StreamCounters",
    "judge",
]

logger = logging.getLogger(__name__)

DEFAULT_SERVERS: Final = "nats://127.0.0.1:4222"
_DECODE_ERRORS: Final = (msgspec.MsgspecError, ValueError, TypeError)
_C = TypeVar("_C", wire.GapMessage, wire.HealthMessage)


class StreamCounters(msgspec.Struct, kw_only=True):
    """One stream's counters in :meth:`Source.health`.

    Attributes:
        events: events delivered.
        batches: batches received.
        duplicates: batches (or events) dropped as already delivered.
        gaps: gaps reported for the stream.
        missing: events known to be lost (sum of ``gap.missing``).
        last_event: wall-clock time (s) the last batch arrived, or ``None``.
        latency: seconds between the relay publishing the last batch and its arrival.
        relay: the relay id that publishes the stream, and its epoch.
        epoch: the publishing relay's epoch.
    """

    events: int = 0
    batches: int = 0
    duplicates: int = 0
    gaps: int = 0
    missing: int = 0
    last_event: float | None = None
    latency: float | None = None
    relay: str | None = None
    epoch: int | None = None


PENDING_BYTES: Final = 64 * 1024 * 1024
"""Bytes of messages held per stream for a consumer that falls behind (then dropped, reported)."""

RELAY_SILENT_AFTER: Final = wire.RELAY_SILENT_AFTER
"""Seconds without a health message after which a relay counts as gone (the rule and its
constant live in :mod:`fastmd.core.wire`, with the wire format the relays speak)."""


class SourceHealth(msgspec.Struct, kw_only=True):
    """:meth:`Source.health`: the NATS connection, each stream, and what each relay last said.

    Attributes:
        status: the overall :class:`fastmd.HealthStatus` (see :func:`judge`).
        reason: why it is not ``HEALTHY``.
        connected: whether the NATS connection is up.
        outages: NATS disconnects since the source started.
        streams: per subscribed stream, its :class:`StreamCounters`.
        relays: per relay id, its latest :class:`fastmd.core.wire.HealthMessage`.
        decode_errors: messages that could not be read (reported, dropped).
    """

    status: HealthStatus
    reason: str | None
    connected: bool
    outages: int
    streams: dict[str, StreamCounters]
    relays: dict[str, wire.HealthMessage]
    decode_errors: int


judge = wire.judge  # the source's status rule, sans-I/O in fastmd.core.wire


class _Route:
    """One subscribed stream: its NATS subscription, checks and callbacks."""

    __slots__ = ("batches", "callbacks", "counters", "decoder", "nats_sub", "restarting",
                 "sequencer", "stream", "subscriptions")  # fmt: skip

    def __init__(self, stream: str, decoder: msgspec.msgpack.Decoder[wire.Batch[Any]]) -> None:
        self.stream = stream
        self.decoder = decoder
        self.batches = wire.BatchSequencer(stream)
        self.sequencer: Sequencer | None = None
        self.subscriptions: list[Subscription] = []
        self.callbacks: tuple[Callable[[Any], object], ...] = ()
        self.nats_sub: NatsSubscription | None = None
        self.counters = StreamCounters()
        self.restarting = False


class Source:
    """Market data from ``fastmd relay`` over NATS, with :class:`fastmd.Client`'s consumer API.

    Use as an async context manager::

        async with fastmd.nats.Source("nats://127.0.0.1:4222") as source:
            source.on_gap(print)
            sub = source.subscribe("btcusdt@trade", print)
            await sub.wait_active()

    Args:
        servers: NATS server URL(s).
        venue: the venue the relays publish (``binance-spot`` or ``binance-usdm``).
        price_type: ``float``, ``str`` or ``Decimal`` for prices and quantities.
        prefix: the subjects' first token (the relays' ``prefix``).
        pending_limit: messages (batches) held for this source per stream, and at most
            :data:`PENDING_BYTES` bytes, before the NATS client drops them (a slow consumer):
            each drop comes back as an ``overflow`` gap. Memory stays bounded either way.
        replay_from: read from the relays' JetStream stream (``fastmd relay --jetstream``)
            instead of live subjects, starting at this JetStream sequence number (``int``, 1:
            everything retained) or time (an aware ``datetime``); the consumer then follows
            live, and resumes where it was after a reconnect (ordered consumer). ``None``:
            live subjects only.
        error_reporter: receives every :class:`fastmd.ErrorReport` (logging by default).

    A NATS server that cannot be reached is retried in the background (reported); a
    subscription becomes active once NATS confirms it.
    """

    def __init__(
        self,
        servers: str | list[str] = DEFAULT_SERVERS,
        venue: Venue = "binance-spot",
        *,
        price_type: PriceType = float,
        prefix: str = wire.DEFAULT_PREFIX,
        pending_limit: int = 10_000,
        replay_from: int | datetime | None = None,
        error_reporter: ErrorReporter | None = None,
    ) -> None:
        from fastmd.relay import import_nats

        self._nats = import_nats()
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        if not self.servers:
            raise ValueError("servers must name at least one NATS URL")
        self.venue: Venue = venue
        self.prefix = prefix
        wire.events_wildcard(venue, prefix)  # checks the prefix
        if type(pending_limit) is not int or pending_limit < 1:
            raise ValueError(f"pending_limit must be an int >= 1, not {pending_limit!r}")
        self.pending_limit = pending_limit
        if replay_from is not None:
            if isinstance(replay_from, bool) or not isinstance(replay_from, int | datetime):
                raise TypeError(f"replay_from must be an int or a datetime, not {replay_from!r}")
            if isinstance(replay_from, int) and replay_from < 1:
                raise ValueError(f"replay_from must be a sequence >= 1, not {replay_from!r}")
            if isinstance(replay_from, datetime) and replay_from.tzinfo is None:
                raise ValueError("replay_from must be an aware datetime (tzinfo set)")
        self.replay_from = replay_from
        self._decoder = Decoder(venue, price_type=price_type)
        self._reporter = Reporter(error_reporter)
        self._routes: dict[str, _Route] = {}
        self._gap_listeners: list[Callable[[Gap], object]] = []
        self._relays: dict[str, wire.HealthMessage] = {}
        self._heard: dict[str, float] = {}
        self._clock = time.monotonic
        self._nc: NatsClient | None = None
        self._connected = asyncio.Event()
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connector: asyncio.Task[None] | None = None
        self._outages = 0
        self._decode_errors = 0
        self._started = False
        self._closed = False

    async def __aenter__(self) -> Source:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self, timeout: float | None = 5.0) -> None:  # noqa: ASYNC109
        """Connect to NATS; waits up to ``timeout`` seconds for the first connection, then
        goes on connecting in the background (subscriptions wait for it)."""
        if self._closed:
            raise FastmdError("the source is closed")
        if self._started:
            return
        self._started = True
        self._connector = asyncio.create_task(self._connect(), name="fastmd-source-connect")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ready.wait()), timeout)

    async def close(self) -> None:
        """Unsubscribe everything and close the NATS connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for route in self._routes.values():
            for subscription in route.subscriptions:
                subscription.mark_closed()
        self._routes.clear()
        tasks = [*self._tasks, *([self._connector] if self._connector else [])]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: nats-py may swallow a cancellation while it connects
            await asyncio.wait(tasks, timeout=2.0)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    # -- the consumer API ------------------------------------------------------------------

    def subscribe(
        self, streams: str | Iterable[str], callback: Callable[[Any], object]
    ) -> Subscription:
        """Call ``callback(event)`` for every event of ``streams``, as
        :meth:`fastmd.Client.subscribe` does. Returns at once; ``await sub.wait_active()``
        waits until NATS confirmed the subscription.

        Raises:
            StreamNameError: a stream name is invalid for the venue.
            TypeError: ``callback`` is not callable.
            InvalidState: the source is closed or not started.
        """
        self._check_open()
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        names = (streams,) if isinstance(streams, str) else tuple(dict.fromkeys(streams))
        if not names:
            raise StreamNameError("subscribe() needs at least one stream")
        parsed = [parse_stream(name, self.venue) for name in names]
        subscription = Subscription(names, callback, backfill=None, remove=self._remove)
        for name, stream in zip(names, parsed, strict=True):
            route = self._routes.get(name)
            if route is None:
                route = _Route(name, wire.batch_decoder(self._decoder.event_type(stream)))
                route.sequencer = sequencer_for(
                    stream, name, self._sequence_sink(route), futures=self.venue == "binance-usdm"
                )
                self._routes[name] = route
                self._spawn(self._open(route))
            elif route.nats_sub is not None:
                subscription.mark_acknowledged(name)
            route.subscriptions.append(subscription)
            route.callbacks = tuple(s.target(name) for s in route.subscriptions)
        return subscription

    def stream(
        self,
        streams: str | Iterable[str],
        *,
        maxsize: int = 10_000,
        overflow: Literal["drop_oldest", "keep_latest", "disconnect"] = "drop_oldest",
    ) -> EventStream:
        """An async iterator over the events of ``streams`` through a bounded queue, as
        :meth:`fastmd.Client.stream` (same overflow policies).

        Raises:
            StreamNameError: a stream name is invalid.
            ValueError: bad ``maxsize`` or ``overflow``.
        """
        events = EventStream(maxsize, overflow, self._overflowed)
        names = (streams,) if isinstance(streams, str) else tuple(streams)
        for name in names:
            parse_stream(name, self.venue)
        subs = [self.subscribe(name, events.pusher(name)) for name in names]
        events.attach(subs[0] if len(subs) == 1 else SubscriptionGroup(subs))
        return events

    def on_gap(self, callback: Callable[[Gap], object]) -> Callable[[], None]:
        """Call ``callback(gap)`` for every loss: gaps the relays saw on the exchange's
        sequence (exchange ids), lost batches and events the relay dropped (``overflow``, relay
        positions), NATS disconnects (``reconnect``, reported at the first batch after it, even
        when nothing was missed) and relay restarts (``reconnect``). Returns a remover.

        Raises:
            TypeError: ``callback`` is not callable.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._gap_listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._gap_listeners.remove(callback)

        return remove

    def health(self) -> SourceHealth:
        """A snapshot of the connection, every subscribed stream and the relays' last health."""
        connected = self._connected.is_set() and not self._closed
        status, reason = judge(connected, self._routes, self._relays, self._heard, self._clock())
        return SourceHealth(
            status=status,
            reason=reason,
            connected=connected,
            outages=self._outages,
            streams={
                name: msgspec.structs.replace(route.counters)
                for name, route in self._routes.items()
            },
            relays=dict(self._relays),
            decode_errors=self._decode_errors,
        )

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the NATS connection is up."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    # -- inside ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        from fastmd.errors import InvalidState

        if self._closed:
            raise InvalidState("the source is closed")
        if not self._started:
            raise InvalidState("the source is not started: use 'async with Source(...)'")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remove(self, subscription: Subscription) -> None:
        for name in subscription.streams:
            route = self._routes.get(name)
            if route is None:
                continue
            with contextlib.suppress(ValueError):
                route.subscriptions.remove(subscription)
            route.callbacks = tuple(s.target(name) for s in route.subscriptions)
            if not route.subscriptions:
                del self._routes[name]
                if route.nats_sub is not None:
                    self._spawn(_quietly(route.nats_sub.unsubscribe()))

    def _overflowed(self, gap: Gap, dropped: int) -> None:
        self._reporter.report(
            Severity.WARNING,
            "stream_overflow",
            f"{gap.stream}: a source.stream() consumer fell behind and lost {dropped} event(s)",
            None,
            stream=gap.stream,
        )

    def _report_gap(self, route: _Route, gap: Gap) -> None:
        route.counters.gaps += 1
        route.counters.missing += gap.missing
        for listener in tuple(self._gap_listeners):
            try:
                listener(gap)
            except Exception as exc:
                self._reporter.callback_failed("on_gap listener", exc, stream=gap.stream)

    def _sequence_sink(self, route: _Route) -> Callable[[Gap], None]:
        # Within one relay epoch the exchange's gaps come from the relay (gap subject) and the
        # transport's from the headers; only across a restart do exchange ids tell the loss.
        def sink(gap: Gap) -> None:
            if route.restarting:
                route.restarting = False
                self._report_gap(route, gap)

        return sink

    async def _connect(self) -> None:
        from fastmd.relay import connect_forever

        async def disconnected() -> None:
            if self._connected.is_set() and not self._closed:
                self._outages += 1
                self._reporter.report(
                    Severity.WARNING, "nats_disconnected",
                    f"NATS connection to {', '.join(self.servers)} lost; reconnecting", None,
                )  # fmt: skip
            self._connected.clear()
            for route in self._routes.values():
                route.batches.mark_reconnect()

        async def reconnected() -> None:
            self._connected.set()
            logger.warning("NATS connection back")

        unreachable = False

        async def error(exc: Exception) -> None:
            # nats-py retries the first connection itself (forever): say so once.
            nonlocal unreachable
            if not self._ready.is_set() and not unreachable and not self._closed:
                unreachable = True
                self._reporter.report(
                    Severity.WARNING, "nats_unreachable",
                    f"NATS at {', '.join(self.servers)} unreachable ({exc!r}); retrying", None,
                )  # fmt: skip
            else:
                logger.debug("NATS: %r", exc)

        def failed(exc: Exception, delay: float) -> None:
            self._reporter.report(
                Severity.WARNING, "nats_unreachable",
                f"NATS at {', '.join(self.servers)} unreachable ({exc!r}); "
                f"retrying in {delay:.1f} s", None,
            )  # fmt: skip

        nc = await connect_forever(
            self._nats, self.servers, "fastmd-source",
            disconnected=disconnected, reconnected=reconnected, error=error, on_failure=failed,
        )  # fmt: skip
        self._nc = nc
        if self._closed:  # nats-py finished connecting through our cancellation
            await _quietly(nc.close())
            return
        await nc.subscribe(wire.gap_wildcard(self.venue, self.prefix), cb=self._on_gap_message)
        await nc.subscribe(
            wire.health_wildcard(self.venue, self.prefix), cb=self._on_health_message
        )
        self._connected.set()
        self._ready.set()

    async def _open(self, route: _Route) -> None:
        await self._ready.wait()
        nc = self._nc
        assert nc is not None
        subject = wire.event_subject(self.venue, route.stream, self.prefix)
        pending_bytes = PENDING_BYTES
        if self.replay_from is None:
            route.nats_sub = await nc.subscribe(
                subject,
                cb=self._handler(route),
                pending_msgs_limit=self.pending_limit,
                pending_bytes_limit=pending_bytes,
            )
        else:
            route.nats_sub = await self._replay(nc, subject, route, pending_bytes)
        with contextlib.suppress(Exception):
            await nc.flush(timeout=5)
        if self._routes.get(route.stream) is not route:  # unsubscribed meanwhile
            await _quietly(route.nats_sub.unsubscribe())
            return
        for subscription in route.subscriptions:
            subscription.mark_acknowledged(route.stream)

    async def _replay(
        self, nc: NatsClient, subject: str, route: _Route, pending_bytes: int
    ) -> NatsSubscription:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        from fastmd.relay import jetstream_name

        start = self.replay_from
        if isinstance(start, datetime):
            start_time: Any = start.astimezone(UTC)
            if "datetime" not in str(ConsumerConfig.__dataclass_fields__["opt_start_time"].type):
                # nats-py < 2.14 sends the value as given: the server wants RFC 3339
                start_time = start_time.isoformat().replace("+00:00", "Z")
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start_time
            )
        else:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            )
        while True:
            try:
                sub: NatsSubscription = await nc.jetstream().subscribe(
                    subject,
                    cb=self._handler(route),
                    stream=jetstream_name(self.venue, self.prefix),
                    config=config,
                    ordered_consumer=True,
                    pending_msgs_limit=self.pending_limit,
                    pending_bytes_limit=pending_bytes,
                )
                return sub
            except Exception as exc:  # no stream yet (the relay not started): retry
                self._reporter.report(
                    Severity.WARNING, "jetstream_unavailable",
                    f"{route.stream}: JetStream replay not available yet ({exc!r}); retrying",
                    None, stream=route.stream,
                )  # fmt: skip
                await asyncio.sleep(1.0)

    def _handler(self, route: _Route) -> Callable[[Msg], Any]:
        decode = route.decoder.decode
        check = route.batches.check
        counters = route.counters
        reporter = self._reporter

        async def on_message(msg: Msg) -> None:
            try:
                batch = decode(msg.data)
                wire.check_version(batch.v)
            except (*_DECODE_ERRORS, FastmdError) as exc:
                self._decode_errors += 1
                reporter.report(
                    Severity.ERROR, "decode_error",
                    f"{route.stream}: a message on {msg.subject} could not be read: {exc}", exc,
                    stream=route.stream,
                )  # fmt: skip
                return
            verdict = check(batch.epoch, batch.seq, batch.first, batch.n)
            now = time.time()
            counters.batches += 1
            counters.last_event = now
            counters.latency = now - batch.sent / 1e9
            if not verdict.deliver:
                counters.duplicates += 1
                return
            if verdict.gap is not None:
                self._report_gap(route, verdict.gap)
            sequencer = route.sequencer
            if verdict.restarted:
                counters.relay, counters.epoch = batch.relay, batch.epoch
                route.restarting = True
                if sequencer is not None:
                    sequencer.mark_reconnect()
            elif counters.relay is None:
                counters.relay, counters.epoch = batch.relay, batch.epoch
            checked = sequencer.check if sequencer is not None else None
            callbacks = route.callbacks
            delivered = 0
            for event in batch.events:
                if checked is not None and not checked(event):
                    counters.duplicates += 1
                    continue
                delivered += 1
                for callback in callbacks:
                    try:
                        callback(event)
                    except Exception as exc:
                        reporter.callback_failed(
                            f"callback of {route.stream}", exc, stream=route.stream
                        )
            counters.events += delivered
            if route.restarting:  # the exchange ids showed no loss, or the stream has none
                route.restarting = False
                self._report_gap(
                    route, Gap(route.stream, batch.first, batch.first, GapReason.RECONNECT)
                )

        return on_message

    def _read_control(self, decoder: msgspec.msgpack.Decoder[_C], msg: Msg, kind: str) -> _C | None:
        """Decode and version-check a gap or health message; None (counted, logged) if bad."""
        try:
            message = decoder.decode(msg.data)
            wire.check_version(message.v)
        except (*_DECODE_ERRORS, FastmdError) as exc:
            self._decode_errors += 1
            logger.error("a %s message on %s could not be read: %s", kind, msg.subject, exc)
            return None
        return message

    async def _on_gap_message(self, msg: Msg) -> None:
        message = self._read_control(wire.gap_decoder, msg, "gap")
        if message is None:
            return
        route = self._routes.get(message.stream)
        # The relay's own drops are read from the batch headers, exactly once.
        if route is not None and message.origin == "exchange":
            self._report_gap(route, message.to_gap())

    async def _on_health_message(self, msg: Msg) -> None:
        message = self._read_control(wire.health_decoder, msg, "health")
        if message is None:
            return
        self._relays[message.relay] = message
        self._heard[message.relay] = self._clock()


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable
