"""The connection pool: streams sharded over pooled connections, each shard's SUBSCRIBE channel
(batched, paced, acknowledged), connections wired to the frame router, rotation and
make-before-break handovers, and the switch to REST polling while a shard's socket is down.

A *shard* is one pooled connection and the streams it carries; the pool sees each connection
only through that shard. Outcomes of control requests go back to the client through a callable,
status changes through another: the pool never reaches into the client.

Every control reply is answered with the requests that reconcile the shard's wanted streams
with the acknowledged ones (:meth:`fastmd.core.subscriptions.ControlChannel.answer`); after a
reconnect, and on demand, the server's own list is audited (``LIST_SUBSCRIPTIONS``). A shard
left without streams keeps its connection for ``idle_timeout`` seconds, so a stream subscribed
again soon reuses it instead of spending the connect budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from picows import WSFrame, WSMsgType, WSTransport

from fastmd.aio.connection import Connection
from fastmd.aio.reporting import Reporter
from fastmd.aio.router import frame_router
from fastmd.aio.routes import Route, RouteTable
from fastmd.aio.sbe_router import sbe_frame_router
from fastmd.aio.tasks import Tasks
from fastmd.core.backoff import Backoff
from fastmd.core.breaker import CircuitBreakerPolicy
from fastmd.core.codec import Decoder, Encoding, Message, PriceType
from fastmd.core.events import ControlError, ControlReply, ServerShutdown
from fastmd.core.health import ConnectionHealth, Link, connection_status
from fastmd.core.lifecycle import ConnectionState, ErrorReport, Severity
from fastmd.core.liveness import Heartbeat
from fastmd.core.pacing import Pacer
from fastmd.core.stats import ConnectionStats
from fastmd.core.status import ShardView
from fastmd.core.streams import Venue, futures_route
from fastmd.core.subscriptions import ControlChannel, Outcome, SubscriptionAudit
from fastmd.errors import AuthenticationError, DecodeError

__all__: list[str] = []

logger = logging.getLogger(__name__)

_HANDOVER_SETTLE_TIMEOUT: Final = 10.0

DEFAULT_IDLE_TIMEOUT: Final = 60.0
"""Seconds a connection left without streams is kept open (the client's ``idle_timeout``)."""
UNROUTED_REPORT_INTERVAL: Final = 10.0
"""Frames of streams nobody subscribed are reported (and audited) at most once per this many
seconds per connection; every one is counted."""
ROUTES_PER_STREAM_SLOT: Final = 2
"""A shard's decoder keeps fast-path routes for this many times ``max_streams_per_connection``
streams: its own streams, churn, and a bounded number learned from frames nobody subscribed (the
decoder's default, 10,000, let a peer grow it by about 40 MB)."""
_LOST: Final = "the connection was lost before the audit's reply"


FrameTap = Callable[[memoryview, bool], object]
"""``tap(payload, binary)``: sees every received message exactly as it came (PoolSettings)."""


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How the pool shards, paces and keeps its connections (the client's options)."""

    venue: Venue
    ws_url: str
    routed: bool
    max_streams_per_connection: int
    max_outgoing_per_second: int
    max_params_per_request: int
    ack_timeout: float
    ack_retries: int
    connect_budget: int
    rotate_after: float | None
    price_type: PriceType
    backoff: Backoff | None
    heartbeat: Heartbeat | None
    circuit_breaker: CircuitBreakerPolicy | None
    stale_after: float | None
    fallback_after: int
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds a shard left without streams keeps its connection before closing it (a stream
    placed meanwhile reuses it, spending nothing from the connect budget); 0 closes at once."""
    frame_tap: FrameTap | None = None
    """Called with every complete text or binary message's payload (valid during the call
    only) and whether it is binary, before it is decoded (``fastmd.record``); ``None``: the
    frame handler is the router itself, nothing added per frame."""
    encoding: Encoding = "json"
    """``"sbe"``: the sockets carry Binance's binary market data (SBE decoder and router)."""
    api_key: str | None = field(default=None, repr=False)
    """Sent as ``X-MBX-APIKEY`` on every upgrade; never shown (``repr=False``)."""


class FallbackSwitch(Protocol):
    """Serves a shard's streams by REST while its connection is down
    (:class:`fastmd.aio.recovery.Fallback`)."""

    def enter(self, shard: Shard) -> None: ...

    def leave(self, shard: Shard) -> None: ...

    def forget(self, shard: Shard) -> None: ...

    def polling(self, shard: Shard) -> bool: ...


class Shard:
    """One pooled connection and the streams it carries."""

    def __init__(self, key: tuple[str, int], url: str, channel: ControlChannel) -> None:
        self.key = key
        self.url = url
        self.streams: set[str] = set()
        self.conn: Connection | None = None
        self.channel = channel
        self.decoder: Decoder | None = None
        self.rotate_timer: asyncio.TimerHandle | None = None
        self.ticker: asyncio.Task[None] | None = None
        self.rotating = False
        self.ever_connected = False
        self.flush_scheduled = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self.audits: list[asyncio.Future[SubscriptionAudit]] = []  # waiting for the next result
        self.unrouted_unreported = 0  # unexpected frames since the last report
        self.unrouted_reported_at: float | None = None
        self.budget_wait_until = 0.0  # a connect_budget_wait report covers waits until then

    @property
    def up(self) -> bool:
        """Its connection is open now."""
        return self.conn is not None and self.conn.state is ConnectionState.OPEN


class ConnectionPool:
    """The pooled connections of one client.

    Args:
        settings: sharding, pacing and connection settings.
        routes: the route table the frame routers deliver through.
        reporter: where problems are reported.
        tasks: where background work runs.
        fallback: switches shards to REST polling and back.
        outcomes: receives what the server answered to SUBSCRIBE and UNSUBSCRIBE requests.
        changed: called whenever a shard's state may have changed the client's status.
    """

    def __init__(
        self,
        settings: PoolSettings,
        *,
        routes: RouteTable,
        reporter: Reporter,
        tasks: Tasks,
        fallback: FallbackSwitch,
        outcomes: Callable[[list[Outcome]], None],
        changed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self._routes = routes
        self._reporter = reporter
        self._tasks = tasks
        self._fallback = fallback
        self._outcomes = outcomes
        self._changed = changed
        self._connect_budget = Pacer(settings.connect_budget, 300.0, min_interval=0.0)
        self._shards: dict[tuple[str, int], Shard] = {}
        self._retired: list[Connection] = []
        self._retired_totals = [0, 0, 0]  # messages, reconnects, errors of replaced connections
        self._closed = False
        self.handovers = 0
        self.decode_errors = 0
        self.unrouted_frames = 0
        self.drift_found = 0
        self._wakeups: list[asyncio.Future[None]] = []  # audits waiting for their fixes

    # -- what the client reads ----------------------------------------------------------------

    @property
    def shards(self) -> list[Shard]:
        return list(self._shards.values())

    @property
    def connections(self) -> list[Connection]:
        """The pool's connections (one per shard)."""
        return [shard.conn for shard in self._shards.values() if shard.conn is not None]

    def views(self) -> list[ShardView]:
        """Each shard as the status rule sees it."""
        return [
            ShardView(
                polling=self._fallback.polling(shard),
                was_up=shard.ever_connected,
                up=shard.up,
                streams=bool(shard.streams),
            )
            for shard in self._shards.values()
        ]

    def stats(self) -> tuple[ConnectionStats, ...]:
        """Statistics of the current connections."""
        return tuple(conn.stats for conn in self.connections)

    @property
    def retired_totals(self) -> tuple[int, int, int]:
        """Messages, reconnects and errors of connections the pool replaced or closed."""
        messages, reconnects, errors = self._retired_totals
        return messages, reconnects, errors

    # -- placing and removing streams ---------------------------------------------------------

    def place(self, routes: Iterable[Route]) -> None:
        """Give every route a shard with room (by futures route), want its stream there and
        open the shards' connections; the SUBSCRIBE requests leave at the end of this turn."""
        touched: dict[tuple[str, int], Shard] = {}
        for route in routes:
            route_key = futures_route(route.parsed) if self.settings.routed else ""
            shard = self._shard_with_room(route_key)
            shard.streams.add(route.name)
            route.shard = shard
            shard.channel.want([route.name])
            if shard.decoder is not None and self.settings.encoding == "json":
                shard.decoder.register([route.name])
            touched[shard.key] = shard
        for shard in touched.values():
            self._stop_idle(shard)
            self._ensure_connection(shard)
            self._schedule_flush(shard)
        if touched:
            self._changed()  # a stream on a shard without an open socket is not CONNECTED

    def remove(self, route: Route) -> None:
        """Unsubscribe ``route``'s stream; a shard left empty is kept ``idle_timeout`` seconds,
        then closed."""
        shard = route.shard
        if shard is None:
            return
        shard.streams.discard(route.name)
        shard.channel.drop([route.name])
        self._schedule_flush(shard)
        if not shard.streams:
            self._idle(shard)

    def forget(self, route: Route) -> None:
        """``route`` failed: its stream leaves its shard. A SUBSCRIBE given up after timeouts may
        have been applied: the channel then unsubscribes it to be sure."""
        shard = route.shard
        if shard is not None:
            shard.streams.discard(route.name)
            shard.channel.drop([route.name])
            self._schedule_flush(shard)
            if not shard.streams:
                self._idle(shard)

    def acknowledged(self, route: Route) -> bool:
        """Whether the server acknowledged ``route``'s stream on its current connection (and no
        UNSUBSCRIBE of it is still on its way)."""
        return route.shard is not None and route.shard.channel.confirmed(route.name)

    async def audit(self, timeout: float) -> SubscriptionAudit:  # noqa: ASYNC109
        """Audit every open connection with ``LIST_SUBSCRIPTIONS``: what the server lists that is
        not wanted is unsubscribed, what is wanted and missing is subscribed again; waits (up to
        ``timeout`` seconds in all) for the replies and for the fixes to be acknowledged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting: list[tuple[Shard, asyncio.Future[SubscriptionAudit]]] = []
        for shard in list(self._shards.values()):
            if not shard.up:
                continue  # audited after it reconnects
            future: asyncio.Future[SubscriptionAudit] = loop.create_future()
            shard.audits.append(future)
            shard.channel.audit()
            self._flush(shard)
            waiting.append((shard, future))
        results: list[SubscriptionAudit] = []
        for shard, future in waiting:
            try:
                results.append(await asyncio.wait_for(future, max(deadline - loop.time(), 0)))
            except TimeoutError:
                with contextlib.suppress(ValueError):
                    shard.audits.remove(future)
                message = f"no audit result within {timeout:g} s"
                results.append(SubscriptionAudit(error=ControlError(-1, message)))
        while not all(shard.channel.is_settled() for shard, _ in waiting if shard.up):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            wakeup: asyncio.Future[None] = loop.create_future()
            self._wakeups.append(wakeup)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup, remaining)  # the next reply or timeout tick
        return SubscriptionAudit.merge(results)

    def _idle(self, shard: Shard) -> None:
        """``shard`` has no stream left: keep its connection a while for streams to come."""
        self._changed()
        if self._closed:
            return  # close() closes it
        timeout = self.settings.idle_timeout
        if timeout <= 0 or not shard.up:
            self._retire_shard(shard)
            return
        if shard.idle_timer is None:
            shard.idle_timer = asyncio.get_running_loop().call_later(
                timeout, self._idle_expired, shard
            )

    def _idle_expired(self, shard: Shard) -> None:
        shard.idle_timer = None
        if not shard.streams and self._shards.get(shard.key) is shard:
            self._retire_shard(shard)

    def _stop_idle(self, shard: Shard) -> None:
        if shard.idle_timer is not None:
            shard.idle_timer.cancel()
            shard.idle_timer = None

    def _shard_with_room(self, route_key: str) -> Shard:
        index = 0
        while True:
            shard = self._shards.get((route_key, index))
            if shard is None:
                prefix = f"/{route_key}" if route_key else ""
                shard = self._shards[(route_key, index)] = Shard(
                    (route_key, index), f"{self.settings.ws_url}{prefix}/stream", self._channel()
                )
                return shard
            if len(shard.streams) < self.settings.max_streams_per_connection:
                return shard
            index += 1

    def _channel(self) -> ControlChannel:
        return ControlChannel(
            max_params=self.settings.max_params_per_request,
            ack_timeout=self.settings.ack_timeout,
            max_retries=self.settings.ack_retries,
        )

    def _retire_shard(self, shard: Shard) -> None:
        self._shards.pop(shard.key, None)
        self._stop_timers(shard)
        self._fallback.forget(shard)
        self._audits_lost(shard)
        if shard.conn is not None:
            conn, shard.conn = shard.conn, None
            self._retire_connection(conn)
        self._changed()

    # -- connections --------------------------------------------------------------------------

    def _connection(self, shard: Shard) -> Connection:
        settings = self.settings
        options: dict[str, Any] = {}
        if settings.backoff is not None:
            options["backoff"] = settings.backoff
        if settings.heartbeat is not None:
            options["heartbeat"] = settings.heartbeat
        if settings.circuit_breaker is not None:
            options["circuit_breaker"] = settings.circuit_breaker
        if settings.api_key is not None:
            options["extra_headers"] = {"X-MBX-APIKEY": settings.api_key}
        return Connection(
            shard.url,
            max_outgoing_per_second=settings.max_outgoing_per_second,
            stale_after=settings.stale_after,
            error_reporter=self._reporter.emit,
            connect_budget=self._connect_budget,
            **options,
        )

    def _decoder(self, streams: Iterable[str]) -> Decoder:
        settings = self.settings
        decoder = Decoder(
            settings.venue,
            price_type=settings.price_type,
            max_streams=ROUTES_PER_STREAM_SLOT * settings.max_streams_per_connection,
            encoding=settings.encoding,
        )
        if settings.encoding == "json":  # SBE frames name their stream: nothing to register
            decoder.register(streams)
        return decoder

    def _install_router(
        self,
        shard: Shard,
        conn: Connection,
        decoder: Decoder,
        on_reply: Callable[[ControlReply], None],
    ) -> None:
        router = sbe_frame_router if self.settings.encoding == "sbe" else frame_router
        on_frame, consumed = router(
            decoder,
            self._routes,
            conn.handle_frame,
            on_reply=on_reply,
            on_unrouted=lambda message: self._unrouted(shard, message),
            on_decode_error=self._decode_failed,
        )
        if self.settings.frame_tap is not None:
            on_frame = _tapped(on_frame, self.settings.frame_tap)
        conn.set_frame_router(on_frame, consumed)

    def _ensure_connection(self, shard: Shard) -> None:
        if shard.conn is not None or self._closed:
            return
        shard.decoder = self._decoder(shard.streams)
        conn = shard.conn = self._connection(shard)
        self._install_router(shard, conn, shard.decoder, lambda reply: self._on_reply(shard, reply))
        self._watch(shard, conn)
        self._tasks.spawn(conn.connect())
        shard.ticker = self._tasks.spawn(self._tick(shard))

    def _watch(self, shard: Shard, conn: Connection) -> None:
        conn.on("connect", lambda: self._on_connect(shard, conn))
        conn.on("disconnect", lambda code, reason: self._on_disconnect(shard, conn))
        conn.on("reconnecting", lambda attempt, delay: self._on_reconnecting(shard, conn, attempt))
        conn.on("circuit_open", lambda cooldown: self._on_circuit_open(shard, conn))
        conn.on("error", lambda report: self._on_connection_error(shard, conn, report))

    def _on_connection_error(self, shard: Shard, conn: Connection, report: ErrorReport) -> None:
        """Refused credentials (:class:`fastmd.AuthenticationError`): the connection stopped
        trying, so the shard's streams fail now, each with the refusal, instead of waiting
        forever; a later subscribe tries again (once)."""
        error = report.error
        if shard.conn is not conn or self._closed or not isinstance(error, AuthenticationError):
            return
        failure = ControlError(error.status or 401, str(error))
        self._outcomes([Outcome(s, "SUBSCRIBE", False, failure) for s in sorted(shard.streams)])
        if self._shards.get(shard.key) is shard:  # its stopped connection goes with it
            self._retire_shard(shard)

    def _on_reconnecting(self, shard: Shard, conn: Connection, attempt: int) -> None:
        if shard.conn is conn and attempt > self.settings.fallback_after and not self._closed:
            self._fallback.enter(shard)
        if shard.conn is conn:
            self._budget_wait(shard, "connection")
        self._changed()

    def _budget_wait(self, shard: Shard, what: str) -> None:
        """Report (once per wait) that the shared connect budget holds a connection back."""
        now = time.monotonic()
        delay = self._connect_budget.delay(now)
        if delay <= 0 or now < shard.budget_wait_until or self._closed:
            return
        shard.budget_wait_until = now + delay
        settings = self.settings
        self._reporter.report(
            Severity.WARNING,
            "connect_budget_wait",
            f"{shard.url}: {what} waits {delay:.1f} s for the connect budget "
            f"({settings.connect_budget} connection attempts per 5 minutes, all used)",
            None,
            url=shard.url,
            delay=delay,
            streams=len(shard.streams),
        )

    def _on_circuit_open(self, shard: Shard, conn: Connection) -> None:
        if shard.conn is conn and not self._closed:
            self._fallback.enter(shard)
        self._changed()

    def _mark_reconnect(self, shard: Shard) -> None:
        get = self._routes.get
        for name in shard.streams:
            route = get(name)
            if route is not None and route.sequencer is not None:
                route.sequencer.mark_reconnect()

    def _on_connect(self, shard: Shard, conn: Connection) -> None:
        if shard.conn is not conn:
            return
        self._fallback.leave(shard)
        reconnect = shard.ever_connected
        if reconnect:
            self._mark_reconnect(shard)
        shard.ever_connected = True
        shard.channel.reset()
        self._audits_lost(shard)
        self._flush(shard)  # the restore
        if reconnect:
            shard.channel.audit()  # sent once the restore is acknowledged
            self._flush(shard)  # (at once if there was nothing to restore)
        self._schedule_rotation(shard)
        self._changed()

    def _on_disconnect(self, shard: Shard, conn: Connection) -> None:
        if shard.conn is not conn:
            return
        # Whatever socket delivers next (this one reconnected, or a handover's new one when a
        # serverShutdown was followed at once by the close), a jump is the reconnect's.
        self._mark_reconnect(shard)
        if shard.rotate_timer is not None:
            shard.rotate_timer.cancel()
            shard.rotate_timer = None
        self._audits_lost(shard)
        if not shard.streams and not shard.rotating and not self._closed:
            self._retire_shard(shard)  # idle and down: nothing to reconnect for
            return
        self._changed()

    def _unrouted(self, shard: Shard, message: Message[Any]) -> None:
        if isinstance(message.event, ServerShutdown):
            self._reporter.report(
                Severity.WARNING, "server_shutdown", f"{shard.url}: serverShutdown received", None
            )
            self._tasks.spawn(self._handover(shard, "serverShutdown"))
            return
        self.unrouted_frames += 1
        stream = message.stream
        if shard.channel.expects(stream):
            return  # the last frames of a stream being unsubscribed: dropped on purpose
        # The server sends a stream nobody subscribed: report it (rate-limited) and audit the
        # connection, which unsubscribes what is not wanted.
        shard.unrouted_unreported += 1
        now = time.monotonic()
        last = shard.unrouted_reported_at
        if last is not None and now - last < UNROUTED_REPORT_INTERVAL:
            return
        count, shard.unrouted_unreported = shard.unrouted_unreported, 0
        shard.unrouted_reported_at = now
        self._reporter.report(
            Severity.WARNING,
            "unrouted_frames",
            f"{shard.url}: {count} frame(s) of streams nobody subscribed (e.g. {stream}); "
            "dropped, the connection's subscriptions are audited",
            None,
            stream=stream,
            frames=count,
        )
        shard.channel.audit()
        self._flush(shard)

    def _decode_failed(self, error: DecodeError) -> None:
        self.decode_errors += 1
        self._reporter.report(
            Severity.WARNING, f"decode_{error.category.value}", str(error)[:256], error,
            stream=error.stream,
        )  # fmt: skip

    # -- the control channel ------------------------------------------------------------------

    def _on_reply(self, shard: Shard, reply: ControlReply) -> None:
        conn = shard.conn
        delay = conn.send_delay() if conn is not None and conn.is_open else 0.0
        frames, outcomes = shard.channel.answer(reply, time.monotonic() + delay)
        if frames and conn is not None:
            for frame in frames:
                conn.send(frame)
        self._deliver(shard, outcomes)
        self._audited(shard)

    def _deliver(self, shard: Shard, outcomes: list[Outcome]) -> None:
        """Give the client the outcomes; a SUBSCRIBE's only while its stream is on ``shard`` (one
        removed and placed again on another shard meanwhile waits for that shard's answer)."""
        if not outcomes:
            return
        get = self._routes.get
        self._outcomes(
            [
                o
                for o in outcomes
                if o.method != "SUBSCRIBE"
                or ((r := get(o.stream)) is not None and r.shard is shard)
            ]
        )

    def _audited(self, shard: Shard) -> None:
        self._wake()
        self._take_audit(shard)

    def _wake(self) -> None:
        wakeups, self._wakeups = self._wakeups, []
        for wakeup in wakeups:
            if not wakeup.done():
                wakeup.set_result(None)

    def _take_audit(self, shard: Shard) -> None:
        """Hand an audit's result to those waiting for it, and report drift."""
        audit = shard.channel.take_audit()
        if audit is None:
            return
        if audit.drift:
            self.drift_found += 1
            unexpected, missing = sorted(audit.unexpected), sorted(audit.missing)
            self._reporter.report(
                Severity.WARNING,
                "subscription_drift",
                f"{shard.url}: the server's subscriptions differed: {len(unexpected)} not "
                f"acknowledged ({', '.join(unexpected[:5]) or '-'}), {len(missing)} missing "
                f"({', '.join(missing[:5]) or '-'}); unsubscribed {len(audit.unsubscribed)}, "
                f"subscribed again {len(audit.resubscribed)}",
                None,
                unexpected=tuple(unexpected),
                missing=tuple(missing),
            )
        elif audit.error is not None:
            self._reporter.report(
                Severity.WARNING,
                "audit_failed",
                f"{shard.url}: LIST_SUBSCRIPTIONS failed: {audit.error.msg}",
                None,
                error_code=audit.error.code,
            )
        waiting, shard.audits = shard.audits, []
        for future in waiting:
            if not future.done():
                future.set_result(audit)

    def _audits_lost(self, shard: Shard) -> None:
        waiting, shard.audits = shard.audits, []
        for future in waiting:
            if not future.done():
                future.set_result(SubscriptionAudit(error=ControlError(-1, _LOST)))

    def _schedule_flush(self, shard: Shard) -> None:
        """Send the shard's pending (un)subscriptions at the end of this loop turn, so that many
        subscribe() calls in a row leave as few, full requests."""
        if not shard.flush_scheduled:
            shard.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_scheduled, shard)

    def _flush_scheduled(self, shard: Shard) -> None:
        shard.flush_scheduled = False
        self._flush(shard)

    def _flush(self, shard: Shard) -> None:
        conn = shard.conn
        if conn is None or not conn.is_open:
            return
        # The ack clock starts when the frame is expected to leave the paced queue.
        for frame in shard.channel.requests(time.monotonic() + conn.send_delay()):
            conn.send(frame)

    async def _tick(self, shard: Shard) -> None:
        """Acknowledgement timeouts of one shard."""
        while True:
            await asyncio.sleep(min(self.settings.ack_timeout / 4, 0.5))
            conn = shard.conn
            if conn is None or not conn.is_open:
                continue
            frames, outcomes = shard.channel.poll(time.monotonic())
            for frame in frames:
                conn.send(frame)
            self._deliver(shard, outcomes)
            self._audited(shard)

    # -- health -------------------------------------------------------------------------------

    def link(self, route: Route) -> tuple[Link, object]:
        """Where ``route``'s subscription stands, and the connection carrying it (health uses
        it as a key: a stream moved to another socket is judged afresh)."""
        shard = route.shard
        if shard is None or self._shards.get(shard.key) is not shard:
            return Link.UNPLACED, None
        conn = shard.conn
        if self._fallback.polling(shard):
            return Link.POLLING, conn
        if conn is None or conn.state is not ConnectionState.OPEN:
            return (Link.DOWN if shard.ever_connected else Link.CONNECTING), conn
        if not shard.channel.confirmed(route.name):
            return Link.PENDING, conn
        return Link.UP, conn

    def resubscribe(self, route: Route) -> bool:
        """UNSUBSCRIBE then SUBSCRIBE ``route``'s stream on its open connection, paced like any
        control frame (the SUBSCRIBE leaves when the UNSUBSCRIBE is answered); False when its
        connection is not open or being replaced."""
        shard = route.shard
        if shard is None or not shard.up or shard.rotating or self._closed:
            return False
        channel = shard.channel
        if not channel.confirmed(route.name):
            return False
        channel.drop([route.name])
        self._flush(shard)
        channel.want([route.name])
        return True

    def replace(self, route: Route, why: str) -> bool:
        """Replace ``route``'s connection make-before-break (in the background); False when
        there is none to replace or a replacement already runs."""
        shard = route.shard
        if (
            shard is None
            or shard.rotating
            or self._closed
            or self._shards.get(shard.key) is not shard
            or not shard.up
        ):
            return False
        self._tasks.spawn(self._handover(shard, why))
        return True

    def troubles(self) -> tuple[list[str], list[str], int]:
        """What the health tick watches, read without building :meth:`connection_health` (no
        statistics, no sorting): the URLs whose circuit is open, the URLs served by REST
        polling, and the reconnects of all connections, replaced and closed ones included."""
        circuits: list[str] = []
        polled: list[str] = []
        reconnects = self._retired_totals[1]
        for shard in self._shards.values():
            conn = shard.conn
            if conn is not None:
                reconnects += conn.reconnects
                if conn.state is ConnectionState.CIRCUIT_OPEN:
                    circuits.append(shard.url)
            if self._fallback.polling(shard):
                polled.append(shard.url)
        return circuits, polled, reconnects

    def connection_health(self) -> list[ConnectionHealth]:
        """Each shard's connection as ``client.health()`` shows it."""
        out = []
        for shard in self._shards.values():
            conn = shard.conn
            polling = self._fallback.polling(shard)
            state = conn.state if conn is not None else None
            if conn is not None:
                stats = conn.stats
                rtt, uptime, reconnects = stats.latency.last, stats.uptime, stats.reconnects
            else:
                rtt, uptime, reconnects = None, 0.0, 0
            out.append(
                ConnectionHealth(
                    url=shard.url,
                    state=state,
                    status=connection_status(state, polling),
                    rtt=rtt,
                    uptime=uptime,
                    reconnects=reconnects,
                    streams=tuple(sorted(shard.streams)),
                    polling=polling,
                )
            )
        return out

    # -- rotation and handovers ---------------------------------------------------------------

    def _schedule_rotation(self, shard: Shard) -> None:
        rotate_after = self.settings.rotate_after
        if rotate_after is None or shard.rotate_timer is not None:
            return
        shard.rotate_timer = asyncio.get_running_loop().call_later(
            rotate_after, lambda: self._tasks.spawn(self._handover(shard, "lifetime"))
        )

    def _stop_timers(self, shard: Shard) -> None:
        if shard.rotate_timer is not None:
            shard.rotate_timer.cancel()
            shard.rotate_timer = None
        if shard.ticker is not None:
            shard.ticker.cancel()
            shard.ticker = None
        self._stop_idle(shard)

    async def handover_all(self) -> None:
        """Replace every connection, make-before-break."""
        tasks = [self._tasks.spawn(self._handover(s, "forced")) for s in self.shards]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handover(self, shard: Shard, why: str) -> None:
        """Make-before-break: a second connection subscribes the shard's streams; once it is
        acknowledged the old one closes. Both deliver during the overlap; the sequencers drop
        what was already delivered, so nothing is lost or repeated."""
        if shard.rotating or self._is_closed() or self._shards.get(shard.key) is not shard:
            return
        shard.rotating = True
        old = shard.conn
        conn: Connection | None = None
        swapped = False
        try:
            if shard.rotate_timer is not None:
                shard.rotate_timer.cancel()
                shard.rotate_timer = None
            if not shard.streams:
                self._retire_shard(shard)  # idle: nothing to hand over
                return
            channel = self._channel()
            channel.want(shard.streams)
            decoder = self._decoder(shard.streams)
            self._budget_wait(shard, f"the {why} handover")
            conn = self._connection(shard)
            replied = asyncio.Event()
            new = conn

            def on_reply(reply: ControlReply) -> None:
                if shard.conn is new:  # swapped in: replies go to the shard like any other
                    self._on_reply(shard, reply)
                    return
                self._outcomes(channel.on_reply(reply))
                replied.set()

            self._install_router(shard, conn, decoder, on_reply)
            opened = await conn.connect(timeout=_HANDOVER_SETTLE_TIMEOUT)
            settled = False
            deadline = time.monotonic() + _HANDOVER_SETTLE_TIMEOUT
            while opened and not self._is_closed() and time.monotonic() < deadline:
                # Streams subscribed or removed meanwhile are reconciled on the new channel
                # before the swap, so the shard ends with exactly its current streams.
                channel.want(shard.streams - channel.desired)
                channel.drop(channel.desired - shard.streams)
                decoder.register(shard.streams)
                for frame in channel.requests(time.monotonic() + conn.send_delay()):
                    conn.send(frame)
                if channel.is_settled():
                    settled = True
                    break
                replied.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(replied.wait(), deadline - time.monotonic())
            if self._is_closed() or self._shards.get(shard.key) is not shard:
                return  # the pool closed (or the shard went away) meanwhile
            if not opened or not settled:
                self._reporter.report(
                    Severity.WARNING,
                    "handover_failed",
                    f"replacement connection for {why} did not settle; keeping the old one",
                    None,
                )
                return
            shard.conn, shard.channel, shard.decoder = conn, channel, decoder
            swapped = True
            self._audits_lost(shard)
            self._watch(shard, conn)
            self._flush(shard)
            shard.ever_connected = True
            self.handovers += 1
            self._schedule_rotation(shard)
            if old is not None:
                self._retire_connection(old)
            logger.info("connection %s handed over (%s)", shard.url, why)
        finally:
            shard.rotating = False
            if conn is not None and not swapped:
                await asyncio.shield(conn.close())
            self._changed()

    def _is_closed(self) -> bool:
        # A method, not the attribute: close() flips it while a coroutine awaits.
        return self._closed

    def _retire_connection(self, conn: Connection) -> None:
        """Close a connection the pool no longer uses; its counts stay in the totals, and
        :meth:`close` waits for it if it is still closing."""
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

        self._tasks.spawn(close())

    def stop(self) -> None:
        """Stop opening, rotating and polling (the first step of closing)."""
        self._closed = True
        for shard in self._shards.values():
            self._stop_timers(shard)
            self._fallback.forget(shard)

    async def close(self) -> None:
        """Close every connection, the retired ones still closing included."""
        self.stop()
        closing = [*self._retired, *self.connections]
        await asyncio.gather(*(conn.close() for conn in closing), return_exceptions=True)


def _tapped(
    route_frame: Callable[[WSTransport, WSFrame], None], tap: FrameTap
) -> Callable[[WSTransport, WSFrame], None]:
    """``route_frame`` behind ``tap``: complete text and binary messages are shown to the tap
    first (a fragmented message once, assembled); control frames and fragments are not."""

    def on_frame(transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if frame.fin and (msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY):
            tap(frame.get_payload_as_memoryview(), msg_type is WSMsgType.BINARY)
        route_frame(transport, frame)

    return on_frame
