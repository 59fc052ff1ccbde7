"""The feed handler: a :class:`fastmd.Client` whose events, gaps and health go to NATS.

``Relay`` runs one client for its streams and publishes every event in micro-batches (at most
``batch_size`` events or ``batch_delay`` seconds, whichever comes first) in the wire format of
:mod:`fastmd.core.wire` (docs/nats.md). The WebSocket side never waits for NATS: a callback only
appends the event to its stream's batch; a loop timer and a full batch hand batches to one
publishing task. While NATS is slow or away, batches wait in a bounded buffer
(``max_buffered`` events); past it new events are dropped, counted, and published as a gap
when NATS is back, so consumers see exactly what was lost.

Requires the ``nats`` extra: ``pip install 'fastmd[nats]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fastmd.core import wire
from fastmd.core.sequence import Gap, GapReason
from fastmd.core.streams import Venue, parse_stream
from fastmd.errors import FastmdError

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

    from fastmd import Client

__all__ = ["Relay", "RelayStats"]

logger = logging.getLogger(__name__)

DEFAULT_NATS: Final = "nats://127.0.0.1:4222"
_YIELD_EVERY: Final = 64  # batches published between two yields to the loop


def import_nats() -> Any:
    """The nats-py package, or a clear error naming the extra to install."""
    try:
        import nats
    except ImportError as exc:
        raise FastmdError("NATS support needs nats-py: pip install 'fastmd[nats]'") from exc
    return nats


async def connect_forever(
    nats: Any,
    servers: list[str],
    name: str,
    *,
    disconnected: Callable[[], Awaitable[None]],
    reconnected: Callable[[], Awaitable[None]],
    error: Callable[[Exception], Awaitable[None]],
    on_failure: Callable[[Exception, float], None],
) -> NatsClient:
    """Connect to NATS with nats-py (``nats``, from :func:`import_nats`), retrying every
    attempt that fails (after 0.1 s, doubling up to 2 s) until one succeeds; nats-py then
    reconnects by itself. ``on_failure(exc, delay)`` is told of each failed attempt."""
    delay = 0.1
    while True:
        try:
            client: NatsClient = await nats.connect(
                servers,
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                connect_timeout=2,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except Exception as exc:  # nats-py raises several unrelated types here
            on_failure(exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        return client


class RelayStats(msgspec.Struct, kw_only=True):
    """A relay's counters (``relay.stats``).

    Attributes:
        events: events received from the exchange.
        batches: batches published.
        published: events published.
        dropped: events dropped because the buffer was full (NATS slow or away).
        buffered: events waiting to be published now.
        gaps: exchange gaps the client reported (each published on the gap subject).
        outages: NATS disconnects.
    """

    events: int = 0
    batches: int = 0
    published: int = 0
    dropped: int = 0
    buffered: int = 0
    gaps: int = 0
    outages: int = 0


class _Buffer:
    """What every lane shares: the event count against its bound, the batches ready to go, the
    lanes with a batch open, and the flush timer."""

    __slots__ = ("batch_size", "count", "delay", "dirty", "dropped", "limit", "loop", "outbox",
                 "received", "timer", "wake")  # fmt: skip

    def __init__(
        self, batch_size: int, delay: float, limit: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.batch_size = batch_size
        self.delay = delay
        self.limit = limit
        self.count = 0
        self.dropped = 0
        self.received = 0
        self.outbox: deque[tuple[_Lane, int, list[Any]]] = deque()
        self.dirty: list[_Lane] = []
        self.timer: asyncio.TimerHandle | None = None
        self.loop = loop
        self.wake = asyncio.Event()

    def opened(self, lane: _Lane) -> None:
        """``lane`` started a batch: flush it within ``delay`` at the latest."""
        if not self.dirty and self.timer is None:
            self.timer = self.loop.call_later(self.delay, self.flush)
        self.dirty.append(lane)

    def cut(self, lane: _Lane) -> None:
        """Hand ``lane``'s open batch to the publisher."""
        self.outbox.append((lane, lane.first, lane.events))
        lane.events = []
        self.wake.set()

    def flush(self) -> None:
        """The timer: every open batch goes, full or not."""
        self.timer = None
        for lane in self.dirty:
            if lane.events:
                self.cut(lane)
        self.dirty.clear()


class _Lane:
    """One stream's open batch and positions; :meth:`push` is the client's callback."""

    __slots__ = ("buffer", "events", "first", "gap_subject", "holed", "next", "published_next",
                 "seq", "stream", "subject")  # fmt: skip

    def __init__(self, stream: str, subject: str, gap_subject: str, buffer: _Buffer) -> None:
        self.stream = stream
        self.subject = subject
        self.gap_subject = gap_subject
        self.buffer = buffer
        self.events: list[Any] = []
        self.first = 1
        self.next = 1
        self.published_next = 1
        self.seq = 0
        self.holed = False

    def push(self, event: Any) -> None:
        buffer = self.buffer
        index = self.next
        self.next = index + 1
        buffer.received += 1
        if buffer.count >= buffer.limit:
            self.holed = True
            buffer.dropped += 1
            return
        events = self.events
        if events and self.holed:  # positions in one batch are contiguous: close this one
            buffer.cut(self)
            events = self.events
        if not events:
            self.first = index
            self.holed = False
            buffer.opened(self)
        events.append(event)
        buffer.count += 1
        if len(events) >= buffer.batch_size:
            buffer.cut(self)


class Relay:
    """Publish the events, gaps and health of ``streams`` to NATS.

    Use as an async context manager (or :meth:`start` / :meth:`close`)::

        async with Relay(["btcusdt@trade"], nats="nats://127.0.0.1:4222") as relay:
            await relay.wait_closed()

    Args:
        streams: stream names (``btcusdt@trade``, ``btcusdt@depth@100ms``...).
        nats: NATS server URL(s).
        venue: ``binance-spot`` or ``binance-usdm``.
        ws_url, rest_url: the exchange's URLs (the simulator's in tests); the venue's by default.
        relay_id: this relay's name in every message (default ``<host>-<pid>``); keep it stable
            across restarts of the same worker: the epoch tells restarts apart.
        batch_size: events per batch at most.
        batch_delay: seconds an event waits for its batch to fill at most.
        max_buffered: events held while NATS is slow or away; past it new events are dropped
            and counted.
        health_interval: seconds between health messages (also sent on every status change
            and every alert of the client's health, firing or resolved).
        prefix: the first subject token.
        jetstream: also keep the venue's subjects in a JetStream stream (see ``retention``).
        retention: seconds JetStream keeps messages (with ``jetstream``).
        client_options: keyword arguments for :class:`fastmd.Client` (``price_type`` is always
            ``str``: prices travel as Binance's exact strings; each consumer picks its type).

    Raises:
        StreamNameError: a stream name is invalid for the venue.
        ValueError: an option is out of range.
    """

    def __init__(
        self,
        streams: Iterable[str],
        *,
        nats: str | list[str] = DEFAULT_NATS,
        venue: Venue = "binance-spot",
        ws_url: str | None = None,
        rest_url: str | None = None,
        relay_id: str | None = None,
        batch_size: int = 100,
        batch_delay: float = 0.001,
        max_buffered: int = 100_000,
        health_interval: float = 1.0,
        prefix: str = wire.DEFAULT_PREFIX,
        jetstream: bool = False,
        retention: float = 3600.0,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.streams = tuple(dict.fromkeys(streams))
        if not self.streams:
            raise ValueError("a relay needs at least one stream")
        for name in self.streams:
            parse_stream(name, venue)
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, not {batch_size!r}")
        if not 0 < batch_delay < 60:
            raise ValueError(f"batch_delay must be within (0, 60) seconds, not {batch_delay!r}")
        if type(max_buffered) is not int or max_buffered < batch_size:
            raise ValueError(f"max_buffered must be an int >= batch_size, not {max_buffered!r}")
        if not 0 < health_interval < float("inf"):
            raise ValueError(f"health_interval must be > 0, not {health_interval!r}")
        if not 0 < retention < float("inf"):
            raise ValueError(f"retention must be > 0 seconds, not {retention!r}")
        wire.event_subject(venue, self.streams[0], prefix)  # checks the prefix
        self.servers = [nats] if isinstance(nats, str) else list(nats)
        self.venue: Venue = venue
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.relay_id = relay_id or f"{socket.gethostname()}-{os.getpid()}"
        self.epoch = time.time_ns()
        self.batch_size = batch_size
        self.batch_delay = batch_delay
        self.max_buffered = max_buffered
        self.health_interval = health_interval
        self.prefix = prefix
        self.jetstream = jetstream
        self.retention = retention
        self._client_options = dict(client_options or {})
        self._nats_module = import_nats()
        self._client: Client | None = None
        self._nc: NatsClient | None = None
        self._buffer: _Buffer | None = None
        self._lanes: dict[str, _Lane] = {}
        self._gaps: deque[wire.GapMessage] = deque(maxlen=10_000)
        self._tasks: list[asyncio.Task[None]] = []
        self._health_tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._stopping = False
        self._stats = RelayStats()
        self._status = "starting"

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> Client:
        """The relay's :class:`fastmd.Client` (after :meth:`start`)."""
        if self._client is None:
            raise FastmdError("the relay is not started")
        return self._client

    @property
    def stats(self) -> RelayStats:
        """A snapshot of the relay's counters."""
        buffer = self._buffer
        stats = msgspec.structs.replace(self._stats)
        if buffer is not None:
            stats.events = buffer.received
            stats.dropped = buffer.dropped
            stats.buffered = buffer.count
        return stats

    @property
    def nats_connected(self) -> bool:
        """Whether the NATS connection is up."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect to NATS (retrying in the background if it is away: events are buffered
        meanwhile) and start the client and its subscriptions."""
        from fastmd import Client
        from fastmd.errors import InvalidState

        if self._client is not None or self._closing:
            raise InvalidState("a relay starts once")
        self._buffer = _Buffer(
            self.batch_size, self.batch_delay, self.max_buffered, asyncio.get_running_loop()
        )
        options: dict[str, Any] = {**self._client_options, "price_type": str}  # exact on the wire
        client = Client(self.venue, ws_url=self.ws_url, rest_url=self.rest_url, **options)
        self._client = client
        await client.start()
        client.on_gap(self._exchange_gap)
        client.on_status(lambda status, metrics: self._status_changed(str(status)))
        client.on_alert(lambda alert: self._health_now())  # the report carries the alerts
        self._tasks.append(asyncio.create_task(self._publish_loop(), name="fastmd-relay-publish"))
        self._tasks.append(asyncio.create_task(self._health_loop(), name="fastmd-relay-health"))
        for name in self.streams:
            lane = _Lane(
                name,
                wire.event_subject(self.venue, name, self.prefix),
                wire.gap_subject(self.venue, name, self.prefix),
                self._buffer,
            )
            self._lanes[name] = lane
            client.subscribe(name, lane.push)  # backfilled gaps reach consumers filled
        self._status = str(client.status)

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the NATS connection is up."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` ran."""
        await self._closed.wait()

    async def close(self) -> None:
        """Stop the client, publish what is buffered (for up to a second), say goodbye in a
        health message and close the NATS connection. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            if self._client is not None:
                await self._client.close()
            buffer = self._buffer
            if buffer is not None:
                buffer.flush()
                if self._connected.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            while buffer.outbox or self._gaps:  # noqa: ASYNC110
                                await asyncio.sleep(0.005)  # the publisher empties them
            self._status = "stopping"
            nc = self._nc
            if nc is not None and self._connected.is_set():
                with contextlib.suppress(Exception):
                    await nc.publish(self._health_subject(), wire.encode(self._health()))
                    await nc.flush(timeout=1)
            self._stopping = True  # the loops end at their next turn...
            if buffer is not None:
                buffer.wake.set()
            for task in (*self._tasks, *self._health_tasks):
                task.cancel()  # ...or now (nats-py may swallow a cancellation mid-publish)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=2.0)
            if buffer is not None and buffer.timer is not None:
                buffer.timer.cancel()
            nc = self._nc  # a connection made while the publisher was being stopped, too
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
        finally:
            self._closed.set()

    # -- the client's side -----------------------------------------------------------------

    def _exchange_gap(self, gap: Gap) -> None:
        self._stats.gaps += 1
        self._gaps.append(self._gap_message(gap.stream, "exchange", gap))
        if self._buffer is not None:
            self._buffer.wake.set()

    def _gap_message(self, stream: str, origin: str, gap: Gap) -> wire.GapMessage:
        return wire.GapMessage(
            v=wire.WIRE_VERSION,
            venue=self.venue,
            stream=stream,
            relay=self.relay_id,
            epoch=self.epoch,
            origin="exchange" if origin == "exchange" else "relay",
            reason=str(gap.reason),
            expected=gap.expected,
            received=gap.received,
            step=gap.step,
            sent=time.time_ns(),
        )

    def _status_changed(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._health_now()

    def _health_now(self) -> None:
        if self._closing:
            return
        task = asyncio.create_task(self._publish_health())
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    # -- the NATS side ---------------------------------------------------------------------

    async def _connect(self) -> NatsClient:
        async def disconnected() -> None:
            if self._connected.is_set() and not self._closing:
                self._stats.outages += 1
                logger.warning("relay %s: NATS connection lost; buffering", self.relay_id)
            self._connected.clear()

        async def reconnected() -> None:
            logger.warning("relay %s: NATS connection back", self.relay_id)
            self._connected.set()
            if self._buffer is not None:
                self._buffer.wake.set()

        unreachable = False

        async def error(exc: Exception) -> None:
            # nats-py retries the first connection itself (forever): say so once.
            nonlocal unreachable
            if self._nc is None and not unreachable and not self._closing:
                unreachable = True
                logger.warning(
                    "relay %s: NATS at %s unreachable (%r); buffering and retrying",
                    self.relay_id, ", ".join(self.servers), exc,
                )  # fmt: skip
            else:
                logger.debug("relay %s: NATS: %r", self.relay_id, exc)

        def failed(exc: Exception, delay: float) -> None:
            logger.warning(
                "relay %s: NATS at %s unreachable (%s); retrying in %.1f s",
                self.relay_id, ", ".join(self.servers), repr(exc), delay,
            )  # fmt: skip

        return await connect_forever(
            self._nats_module, self.servers, f"fastmd-relay {self.relay_id}",
            disconnected=disconnected, reconnected=reconnected, error=error, on_failure=failed,
        )  # fmt: skip

    async def _setup_jetstream(self, nc: NatsClient) -> None:
        from nats.js.api import StreamConfig

        config = StreamConfig(
            name=jetstream_name(self.venue, self.prefix),
            subjects=[f"{self.prefix}.{self.venue}.>"],
            max_age=self.retention,
        )
        js = nc.jetstream()
        try:
            await js.add_stream(config)
        except Exception:  # it exists with another config: take ours
            await js.update_stream(config)

    async def _publish_loop(self) -> None:
        nc = await self._connect()
        self._nc = nc
        if self._stopped():  # nats-py finished connecting through our cancellation
            return
        if self.jetstream:
            await self._setup_jetstream(nc)
        self._connected.set()
        logger.info("relay %s: publishing to %s", self.relay_id, ", ".join(self.servers))
        await self._publish_health()
        buffer = self._buffer
        assert buffer is not None
        outbox, gaps, stats = buffer.outbox, self._gaps, self._stats
        encode, batch = wire.encode, wire.Batch
        while True:
            await buffer.wake.wait()
            buffer.wake.clear()
            if self._stopped():
                return
            published = 0
            while (outbox or gaps) and self._connected.is_set():
                try:
                    if gaps:
                        gap_message = gaps[0]
                        await nc.publish(
                            wire.gap_subject(self.venue, gap_message.stream, self.prefix),
                            encode(gap_message),
                        )
                        gaps.popleft()
                        continue
                    lane, first, events = outbox[0]
                    if first != lane.published_next:  # the relay dropped what is in between
                        gap = Gap(lane.stream, lane.published_next, first, GapReason.OVERFLOW)
                        await nc.publish(lane.gap_subject, encode(self._gap_message(
                            lane.stream, "relay", gap)))  # fmt: skip
                        lane.published_next = first
                    lane.seq += 1
                    count = len(events)
                    message = batch(
                        v=1, venue=self.venue, stream=lane.stream, relay=self.relay_id,
                        epoch=self.epoch, seq=lane.seq, first=first, n=count,
                        sent=time.time_ns(), events=events,
                    )  # fmt: skip
                    data = encode(message)
                    outbox.popleft()
                    buffer.count -= count
                    lane.published_next = first + count
                    await nc.publish(lane.subject, data)
                    stats.batches += 1
                    stats.published += count
                except Exception as exc:  # a dying connection: the batch is lost, and counted
                    logger.warning("relay %s: publish failed: %r", self.relay_id, exc)
                    await asyncio.sleep(0.01)
                published += 1
                if published % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)

    def _stopped(self) -> bool:
        # a method, not the attribute: close() sets it while this task awaits
        return self._stopping

    def _health_subject(self) -> str:
        return wire.health_subject(self.venue, self.relay_id, self.prefix)

    def _health(self) -> wire.HealthMessage:
        stats = self.stats
        detail: dict[str, Any] = {}
        client = self._client
        if client is not None:  # the client's own health report, once it exists
            with contextlib.suppress(Exception):
                detail = {"client": msgspec.to_builtins(client.health())}
        return wire.HealthMessage(
            v=wire.WIRE_VERSION,
            venue=self.venue,
            relay=self.relay_id,
            epoch=self.epoch,
            status=self._status,
            streams=list(self.streams),
            events=stats.events,
            batches=stats.batches,
            dropped=stats.dropped,
            buffered=stats.buffered,
            gaps=stats.gaps,
            outages=stats.outages,
            sent=time.time_ns(),
            detail=detail,
        )

    async def _publish_health(self) -> None:
        nc = self._nc
        if nc is None or not self._connected.is_set():
            return
        try:
            await nc.publish(self._health_subject(), wire.encode(self._health()))
        except Exception as exc:  # reported by the connection's own callbacks too
            logger.debug("relay %s: health not published: %r", self.relay_id, exc)

    async def _health_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.health_interval)
            await self._publish_health()


def jetstream_name(venue: str, prefix: str = wire.DEFAULT_PREFIX) -> str:
    """The JetStream stream a relay with ``jetstream`` keeps ``venue``'s subjects in."""
    return f"{prefix}_{venue}".upper().replace("-", "_")
