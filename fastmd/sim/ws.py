"""The simulator's WebSocket market-stream server (picows), faithful to Binance's stream servers.

What it serves (binance-protocol.md is the authority; §-numbers refer to it):

- **Paths** (§1.1, §6): ``/ws``, ``/ws/<s1>[/<s2>...]`` (raw, ``combined=false``) and ``/stream``,
  ``/stream?streams=<s1>/<s2>`` (wrapped, ``combined=true``); URL-encoded targets are decoded.
  USD-M futures also serves the routed forms ``/public/...`` and ``/market/...``; a stream only
  delivers on a connection of its route (:attr:`fastmd.sim.venues.SimStream.route`), and an
  unrouted connection counts as ``/public``. A subscription on the wrong route is acknowledged and
  stays silent, as on Binance.
- **Upgrade refusals** (the simulator's choices where Binance documents nothing): a target longer
  than ``limits.max_url_length``, an invalid stream name in the URL, more URL streams than
  ``limits.max_streams_per_connection`` or an unsupported ``timeUnit`` get HTTP 400; unknown paths
  get 404; more than ``limits.max_connection_attempts`` upgrade attempts from one address within
  ``limits.attempts_window`` get 429 with ``Retry-After`` (every attempt counts, refused ones too).
- **Control messages** (§2): ``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``,
  ``SET_PROPERTY``, ``GET_PROPERTY`` with Binance's reply and nested error shapes. A ``SUBSCRIBE``
  that would take the connection past ``limits.max_streams_per_connection`` is refused with a
  code-2 error naming the limit and subscribes nothing (Binance's behaviour is undocumented).
- **Limits** (§3, §4): more than ``limits.max_incoming_per_second`` frames (text, binary, ping and
  pong) in any sliding second closes with ``limits.close_code_on_rate_limit`` and reason
  ``"Too many requests"``. The server pings every ``limits.ping_interval`` with a fresh payload; a
  pong counts only if it echoes the payload of an outstanding ping (futures: any pong counts,
  ``limits.unsolicited_pong_keeps_alive``); no such pong within ``limits.pong_timeout`` of a ping
  closes with 1008 ``"Pong timeout"``. Client pings are answered with an echoing pong. After
  ``limits.connection_lifetime`` the connection is closed with 1001, preceded by
  ``serverShutdown`` ``limits.shutdown_notice`` seconds earlier when that is positive.
- **Slow consumers**: a connection whose unsent backlog exceeds ``max_write_buffer`` bytes (64 MiB)
  is aborted at once (TCP RST), so a client that stops reading cannot exhaust the server's memory.
- **Faults**: the switches :class:`fastmd.sim.exchange.Faults` drives (drop, stall, half-open,
  skip, duplicate, malformed frames, serverShutdown, refused upgrades, muted streams). Faults given
  no connection apply to the connections open at that moment; later connections are healthy,
  except for a stream muted on every connection (the exchange stopped publishing it).

:meth:`WsServer.publish` is the hot path of floods: one dict lookup, then one ``send`` per
subscriber from a prebuilt tuple, and the combined wrapper built at most once per payload. Fault
bookkeeping moves the server to a slower path only while a fault is in force.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import unquote

from picows import (
    WSAutoPingStrategy,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)

# picows' server protocol class. ws_create_server() hides the accepted TCP connection from the
# upgrade router, but the connection-attempt limit is per client address, so the server builds
# the protocol itself (same arguments as ws_create_server passes; checked with picows 2.3).
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from fastmd.sim.limits import SimLimits
from fastmd.sim.sbe import SBE_STREAMS, SbeStreams
from fastmd.sim.venues import VENUE_STREAMS, Kind, Route, SimStream, Venue, VenueStreams

__all__ = ["ServerHooks", "WsConnection", "WsServer"]

logger = logging.getLogger(__name__)

MAX_WRITE_BUFFER: Final = 64 * 1024 * 1024
"""Unsent bytes a connection may accumulate before it is aborted as a slow consumer."""
CLOSE_TIMEOUT: Final = 2.0
"""Seconds the server waits for the client's close frame (then FIN), and for the FIN to flush
(then RST)."""
INCOMING_LOG: Final = 4096
"""Entries kept in :attr:`WsConnection.incoming`."""
MAX_MESSAGE: Final = 1024 * 1024
"""Largest control message accepted (a longer frame closes the connection with 1009)."""
OVERSIZED_BYTES: Final = 5 * 1024 * 1024
"""Size of the ``oversized`` malformed frame."""
HANDSHAKE_TIMEOUT: Final = 5.0

_GOING_AWAY: Final = 1001
_POLICY_VIOLATION: Final = 1008
_MESSAGE_TOO_BIG: Final = 1009
_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_KIND: Final = {
    WSMsgType.TEXT: "text",
    WSMsgType.BINARY: "binary",
    WSMsgType.PING: "ping",
    WSMsgType.PONG: "pong",
    WSMsgType.CLOSE: "close",
    WSMsgType.CONTINUATION: "continuation",
}
# Frames that count toward the incoming-message limit (§3: pings, pongs and controls all count;
# a continuation frame is part of a message already counted).
_COUNTED: Final = frozenset({WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG})

_METHODS: Final = (
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST_SUBSCRIPTIONS",
    "SET_PROPERTY",
    "GET_PROPERTY",
)
_EXPECTED_METHODS: Final = ", ".join(f"`{m}`" for m in _METHODS)
_SPOT_STRING_ID: Final = re.compile(r"[A-Za-z0-9-]{0,36}")  # UUIDs work on spot (§2)
_METHOD_KEY: Final = re.compile(r'"method"\s*:\s*')
_INT64: Final = 1 << 63
_UINT64: Final = 1 << 64

MSG_INVALID_JSON: Final = "Invalid JSON: expected value"
MSG_BAD_ID: Final = "Invalid request: request ID must be an unsigned integer"
MSG_INVALID_STREAM: Final = "Invalid request: invalid stream"
MSG_TOO_MANY_PARAMS: Final = "Invalid request: too many parameters"
MSG_PROPERTY_NAME: Final = "Invalid request: property name must be a string"
MSG_UNKNOWN_PROPERTY: Final = "Unknown property"
MSG_EXPECTED_BOOLEAN: Final = "Invalid value type: expected Boolean"
MSG_NOT_OBJECT: Final = "Invalid request: request must be a JSON object"  # the simulator's wording

Mode = Literal["close", "fin", "rst"]
MalformedKind = Literal["not_json", "invalid_utf8", "wrong_types", "oversized", "binary"]


class _Refused(Exception):
    """An upgrade the server answers with an HTTP error instead of 101."""

    def __init__(self, status: int, body: str, retry_after: float | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.retry_after = retry_after


def _frame(first: int, payload: bytes) -> bytes:
    """A complete, unmasked frame (server to client): ``first`` byte (FIN + opcode), length,
    ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


def _text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final TEXT frame (server to client) around ``payload``."""
    return _frame(0x81, payload)


def _binary_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final BINARY frame (server to client) around ``payload``."""
    return _frame(0x82, payload)


class _Fanout:
    """The subscribers of one stream, split by wire shape, as tuples that publish() iterates.

    Tuples are rebuilt on every (rare) subscription change, so a publish that is iterating the
    old tuple is never disturbed by a connection closing in the middle of it.
    """

    __slots__ = ("bare", "combined", "combined_sends", "members", "prefix", "raw", "raw_sends")

    def __init__(self, stream: str, *, bare: bool = False) -> None:
        # Validated stream names contain no '"' or '\\': no JSON escaping needed.
        self.prefix = b'{"stream":"' + stream.encode() + b'","data":'
        self.bare = bare  # SBE: no combined wrapper, every subscriber gets the bare frame
        self.members: dict[WsConnection, None] = {}
        self.raw: tuple[WsConnection, ...] = ()
        self.combined: tuple[WsConnection, ...] = ()
        self.raw_sends: tuple[Callable[[WSMsgType, bytes], None], ...] = ()
        self.combined_sends: tuple[Callable[[WSMsgType, bytes], None], ...] = ()

    def rebuild(self) -> None:
        self.raw = tuple(c for c in self.members if self.bare or not c.combined)
        self.combined = tuple(c for c in self.members if not self.bare and c.combined)
        self.raw_sends = tuple(c.send for c in self.raw)
        self.combined_sends = tuple(c.send for c in self.combined)


@dataclass(frozen=True, slots=True)
class ServerHooks:
    """What a :class:`WsConnection` asks of its server, as callables: :class:`WsServer` builds one
    and hands it to every connection it accepts.

    Attributes:
        limits: the limits the connection enforces (incoming frames, pings and pongs).
        max_write_buffer: unsent bytes after which the connection is a slow consumer.
        loop: the event loop the server runs on (the connection's timers).
        clock: the server's wall clock (ping payloads).
        connected: the connection is upgraded and open.
        disconnected: the connection is gone.
        client_closed: the client sent a close frame.
        rate_limited: the client sent more frames than ``limits`` allow.
        slow_consumer: the connection's unsent backlog passed ``max_write_buffer``.
        control: a complete control message (text) arrived.
        close: close the connection with a code and reason (the closing handshake).
    """

    limits: SimLimits
    max_write_buffer: int
    loop: Callable[[], asyncio.AbstractEventLoop]
    clock: Callable[[], float]
    connected: Callable[[WsConnection], None]
    disconnected: Callable[[WsConnection], None]
    client_closed: Callable[[WsConnection, WSFrame], None]
    rate_limited: Callable[[WsConnection], None]
    slow_consumer: Callable[[WsConnection], None]
    control: Callable[[WsConnection, bytes], None]
    close: Callable[[WsConnection, int, str], object]


class WsConnection(WSListener):
    """One accepted WebSocket connection: its picows listener and its inspectable state.

    Attributes:
        id: unique id (``Exchange.faults`` selects connections by it).
        path: the request target as received (still URL-encoded).
        combined: whether events arrive wrapped as ``{"stream":..,"data":..}``.
        route: ``"public"`` or ``"market"`` on routed futures paths, else ``None``.
        remote: the client's address (``(host, port)``).
        opened_at: wall-clock time (the server's clock) of the upgrade.
        incoming: ``(time.monotonic(), kind)`` of every frame received, newest last, bounded;
            kind is ``"text"``, ``"binary"``, ``"ping"``, ``"pong"``, ``"close"`` or
            ``"continuation"``.
    """

    __slots__ = (
        "_close_timer",
        "_fragments",
        "_hooks",
        "_last_ping",
        "_pings",
        "_pong_timer",
        "_rate",
        "_timers",
        "closing",
        "combined",
        "delivering",
        "half_open",
        "id",
        "incoming",
        "muted",
        "opened_at",
        "path",
        "remote",
        "route",
        "send",
        "stall_all",
        "stall_rules",
        "stall_streams",
        "subs",
        "transport",
        "url_streams",
    )

    def __init__(
        self,
        hooks: ServerHooks,
        conn_id: int,
        path: str,
        combined: bool,
        route: Route | None,
        url_streams: list[str],
    ) -> None:
        self._hooks = hooks
        self.id = conn_id
        self.path = path
        self.combined = combined
        self.route = route
        self.url_streams = url_streams
        self.remote: Any = None
        self.opened_at = 0.0
        self.incoming: deque[tuple[float, str]] = deque(maxlen=INCOMING_LOG)
        self.subs: dict[str, None] = {}  # every subscription, in subscription order
        self.delivering: set[str] = set()  # the subscriptions on this connection's route
        self.transport: WSTransport | None = None
        self.send: Callable[[WSMsgType, bytes], None] = _unsent
        self.closing = False
        self.half_open = 0
        self.stall_all = 0
        self.stall_rules: list[frozenset[str] | None] = []
        self.stall_streams: set[str] = set()
        self.muted: set[str] = set()  # streams a mute_stream fault keeps from this connection
        self._rate: deque[float] = deque(maxlen=hooks.limits.max_incoming_per_second + 1)
        self._pings: dict[bytes, float] = {}  # outstanding ping payload -> loop time sent
        self._last_ping = 0
        self._pong_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}  # ping, notice, lifetime, shutdown
        self._fragments: bytearray | None = None

    def __repr__(self) -> str:
        return f"<WsConnection {self.id} {self.path!r} combined={self.combined}>"

    @property
    def subscriptions(self) -> set[str]:
        """The streams this connection is subscribed to (including silent wrong-route ones)."""
        return set(self.subs)

    # -- picows callbacks ------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.send = transport.send
        underlying = transport.underlying_transport
        self.remote = underlying.get_extra_info("peername")
        # pause_writing() fires once the backlog passes the slow-consumer limit: no per-frame
        # check on the hot path.
        underlying.set_write_buffer_limits(high=self._hooks.max_write_buffer)
        self._hooks.connected(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._hooks.disconnected(self)

    def write_frames(self, frames: bytes) -> None:
        """Write already-framed server frames (unmasked, complete) straight to the socket."""
        transport = self.transport
        if transport is not None and not self.closing and not transport.is_close_frame_sent:
            transport.underlying_transport.write(frames)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        now = time.monotonic()
        self.incoming.append((now, _KIND.get(msg_type, "other")))
        if self.half_open:
            return  # a dead server reads nothing and answers nothing
        if msg_type is WSMsgType.CLOSE:
            self._hooks.client_closed(self, frame)
            return
        if self.closing:
            return
        if msg_type in _COUNTED:
            rate = self._rate
            rate.append(now)
            if len(rate) == rate.maxlen and now - rate[0] < 1.0:
                self._hooks.rate_limited(self)
                return
        if msg_type is WSMsgType.TEXT:
            if frame.fin:
                self._hooks.control(self, frame.get_payload_as_bytes())
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
        elif msg_type is WSMsgType.CONTINUATION:
            self._continuation(frame)
        elif msg_type is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.PONG:
            self._pong(frame.get_payload_as_bytes())
        # BINARY: Binance's JSON stream servers have no binary requests; it only counts.

    def pause_writing(self) -> None:
        self._hooks.slow_consumer(self)

    def resume_writing(self) -> None:
        pass  # the connection is gone by then (see pause_writing)

    # -- per-connection mechanics ----------------------------------------------------------

    def _continuation(self, frame: WSFrame) -> None:
        if self._fragments is None:
            return  # a continuation of a binary message, or of nothing: ignored
        self._fragments += frame.get_payload_as_memoryview()
        if len(self._fragments) > MAX_MESSAGE:
            self._fragments = None
            self._hooks.close(self, _MESSAGE_TOO_BIG, "Message too big")
        elif frame.fin:
            data, self._fragments = bytes(self._fragments), None
            self._hooks.control(self, data)

    def send_ping(self) -> None:
        """Ping with a fresh payload (the wall clock's milliseconds), arm the pong deadline, and
        schedule the next ping ``limits.ping_interval`` from now."""
        hooks = self._hooks
        if self.closing or self.transport is None:
            return
        self.arm("ping", hooks.limits.ping_interval, self.send_ping)
        if self.half_open:
            return
        stamp = max(int(hooks.clock() * 1000), self._last_ping + 1)
        self._last_ping = stamp
        payload = b"%d" % stamp
        self._pings[payload] = hooks.loop().time()
        self.transport.send_ping(payload)
        if self._pong_timer is None:
            self._arm_pong_deadline()

    def _arm_pong_deadline(self) -> None:
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
        if self._pings:
            oldest = next(iter(self._pings.values()))
            loop = self._hooks.loop()
            self._pong_timer = loop.call_at(
                oldest + self._hooks.limits.pong_timeout, self._pong_expired
            )

    def _pong_expired(self) -> None:
        self._pong_timer = None
        if self._pings and not self.closing and not self.half_open:
            logger.info("connection %d: no pong within %.3gs, closing", self.id,
                        self._hooks.limits.pong_timeout)  # fmt: skip
            self._hooks.close(self, _POLICY_VIOLATION, "Pong timeout")

    def _pong(self, payload: bytes) -> None:
        pings = self._pings
        if payload in pings:
            # A pong answers its ping and proves every earlier one was delivered too.
            while pings:
                sent = next(iter(pings))
                del pings[sent]
                if sent == payload:
                    break
        elif self._hooks.limits.unsolicited_pong_keeps_alive:
            pings.clear()
        else:
            return  # spot: an unsolicited pong (or a wrong payload) does not keep alive
        self._arm_pong_deadline()

    def reset_pings(self) -> None:
        """Forget the outstanding pings and disarm the pong deadline."""
        self._pings.clear()
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None

    def arm(self, name: str, delay: float, callback: Callable[..., object], *args: Any) -> None:
        """(Re)schedule the timer ``name`` of this connection on the event loop."""
        timer = self._timers.get(name)
        if timer is not None:
            timer.cancel()
        self._timers[name] = self._hooks.loop().call_later(delay, callback, *args)

    def cancel_timers(self) -> None:
        """Cancel the timers :meth:`arm` scheduled and the pong deadline (not the close timer)."""
        self.reset_pings()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def set_close_timer(self, delay: float, callback: Callable[..., object], *args: Any) -> None:
        """(Re)schedule the closing handshake's timer: the next step of a close in progress
        (FIN, then RST). :meth:`cancel_timers` leaves it running."""
        self.cancel_close_timer()
        self._close_timer = self._hooks.loop().call_later(delay, callback, *args)

    def cancel_close_timer(self) -> None:
        """Cancel the closing handshake's timer, if one is scheduled."""
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    def blocked(self, stream: str) -> bool:
        """Whether a fault keeps data of ``stream`` from this connection right now."""
        return bool(
            self.half_open or self.stall_all or stream in self.stall_streams or stream in self.muted
        )


@dataclass(slots=True)
class _Mute:
    """One ``mute_stream`` fault: ``stream`` muted on one connection or on all of them."""

    stream: str
    connection_id: int | None
    until_resubscribed: bool
    released: set[int] = field(default_factory=set)  # connections that subscribed again

    def applies(self, conn_id: int) -> bool:
        return (
            self.connection_id is None or self.connection_id == conn_id
        ) and conn_id not in self.released


def _unsent(msg_type: WSMsgType, payload: bytes) -> None:
    """``send`` of a connection not yet upgraded, or gone."""


class WsServer:
    """The WebSocket market-stream server of :class:`fastmd.sim.Exchange`.

    Args:
        venue: ``"binance-spot"`` or ``"binance-usdm"``: validates stream names and enables
            futures routing.
        limits: the limits to enforce.
        on_streams_changed: called with the set of streams that have at least one delivering
            subscription, whenever that set changes (the market emits only those).
        clock: wall clock in seconds, for ``serverShutdown`` times and ping payloads.
        max_write_buffer: unsent bytes after which a connection is aborted as a slow consumer.
        sbe: serve Binance's SBE endpoint instead (spot, §8): only the SBE stream names
            (:class:`fastmd.sim.sbe.SbeStreams`), data as bare BINARY frames (no combined
            wrapper; control messages stay JSON text), and every upgrade needs an
            ``X-MBX-APIKEY`` header (HTTP 401 without one).
        api_keys: with ``sbe``, the keys accepted (any other gets 401); ``None`` accepts any
            non-empty key.
    """

    def __init__(
        self,
        *,
        venue: Venue,
        limits: SimLimits,
        on_streams_changed: Callable[[set[str]], None],
        clock: Callable[[], float] = time.time,
        max_write_buffer: int = MAX_WRITE_BUFFER,
        sbe: bool = False,
        api_keys: Iterable[str] | None = None,
    ) -> None:
        if venue not in ("binance-spot", "binance-usdm"):
            raise ValueError(f"unknown venue {venue!r}; allowed: 'binance-spot', 'binance-usdm'")
        if sbe and venue != "binance-spot":
            raise ValueError("Binance serves SBE market data on spot only")
        self.sbe = sbe
        self._api_keys = frozenset(api_keys) if api_keys is not None else None
        self._data_type = _BINARY if sbe else _TEXT
        self._data_frame = _binary_frame if sbe else _text_frame
        self.venue: Venue = venue
        self.limits = limits
        self.max_write_buffer = max_write_buffer
        self._on_streams_changed = on_streams_changed
        self._clock = clock
        self._bound_loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._protocols: set[_Protocol] = set()
        self._conns: dict[int, WsConnection] = {}
        self._fanout: dict[str, _Fanout] = {}
        self.streams: VenueStreams | SbeStreams = SBE_STREAMS if sbe else VENUE_STREAMS[venue]
        """The venue's stream table: which names the server accepts (:mod:`fastmd.sim.venues`)."""
        self._parsed: dict[str, SimStream] = {}
        self._next_id = 1
        self._attempts: dict[str, deque[float]] = {}
        self._refuse: tuple[int, float | None] | None = None
        self._skips: dict[str, int] = {}
        self._dups: dict[str, int] = {}
        self._mutes: list[_Mute] = []
        self._hooks = ServerHooks(
            limits=limits,
            max_write_buffer=max_write_buffer,
            loop=lambda: self._loop,
            clock=clock,
            connected=self._connected,
            disconnected=self._disconnected,
            client_closed=self._client_closed,
            rate_limited=self._rate_limited,
            slow_consumer=self._slow_consumer,
            control=self._control,
            close=self._close,
        )
        self._faulty = False
        self._all_gone: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._bound_loop is None:
            raise RuntimeError("WsServer is not started")
        return self._bound_loop

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("WsServer already started")
        self._bound_loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Protocol(self._upgrade, self._protocols.add, self._protocol_lost), host, port
        )
        bound: int = self._server.sockets[0].getsockname()[1]
        logger.info("WebSocket server listening on %s:%d (%s)", host, bound, self.venue)
        return bound

    async def stop(self) -> None:
        """Close every connection with 1001, then the listening socket; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        changed = False
        for conn in list(self._conns.values()):
            changed |= self._close(conn, _GOING_AWAY, "", notify=False)
        if changed:
            self._notify()
        for proto in list(self._protocols):
            if proto.listener is None:  # accepted, not (yet) upgraded
                proto.transport.disconnect()
        if self._protocols:
            self._all_gone = asyncio.Event()
            try:
                await asyncio.wait_for(self._all_gone.wait(), 2 * CLOSE_TIMEOUT + 1.0)
            except TimeoutError:
                for proto in list(self._protocols):
                    proto.transport.disconnect(False)  # an abort is lost on the next turn
                await self._all_gone.wait()
            self._all_gone = None
        await server.wait_closed()
        self._attempts.clear()
        logger.info("WebSocket server stopped")

    @property
    def connections(self) -> list[WsConnection]:
        """The open (upgraded, not yet disconnected) connections."""
        return list(self._conns.values())

    @property
    def faulty(self) -> bool:
        """Whether a fault is in force (skip, duplicate, stall, half-open): :meth:`publish` then
        takes its slower, fault-aware path."""
        return self._faulty

    # -- publishing ------------------------------------------------------------------------

    def publish(self, stream: str, payload: bytes) -> None:
        """Send one payload of ``stream`` to its subscribers: bare to raw connections, wrapped
        as ``{"stream":..,"data":..}`` to combined ones."""
        if self._faulty:
            self._publish_faulty(stream, payload)
            return
        fan = self._fanout.get(stream)
        if fan is None:
            return
        data_type = self._data_type
        for send in fan.raw_sends:
            send(data_type, payload)
        if fan.combined_sends:
            frame = b"".join((fan.prefix, payload, b"}"))
            for send in fan.combined_sends:
                send(_TEXT, frame)

    def publish_many(self, stream: str, payloads: list[bytes]) -> None:
        """Send many payloads of ``stream`` at once (floods): each subscriber gets them as
        ready-made WebSocket frames in one socket write, instead of one write (one system
        call) per frame. Falls back to :meth:`publish` per payload while a fault is active."""
        if self._faulty:
            for payload in payloads:
                self._publish_faulty(stream, payload)
            return
        fan = self._fanout.get(stream)
        if fan is None:
            return
        if fan.raw:
            data_frame = self._data_frame
            raw = b"".join([data_frame(p) for p in payloads])
            for conn in fan.raw:
                conn.write_frames(raw)
        if fan.combined:
            prefix = fan.prefix
            combined = b"".join([_text_frame(b"".join((prefix, p, b"}"))) for p in payloads])
            for conn in fan.combined:
                conn.write_frames(combined)

    def backlog(self, stream: str) -> int:
        """The largest unsent byte count among the subscribers of ``stream`` (floods wait on
        it, so a slow client is fed at its own pace instead of tripping the slow-consumer
        limit)."""
        fan = self._fanout.get(stream)
        if fan is None:
            return 0
        most = 0
        for conn in (*fan.raw, *fan.combined):
            transport = conn.transport
            if transport is not None and not transport.is_disconnected:
                most = max(most, transport.underlying_transport.get_write_buffer_size())
        return most

    def _publish_faulty(self, stream: str, payload: bytes) -> None:
        if self._skips.get(stream):
            self._consume(self._skips, stream)
            return
        copies = 1
        if self._dups.get(stream):
            self._consume(self._dups, stream)
            copies = 2
        fan = self._fanout.get(stream)
        if fan is None:
            return
        for conn in fan.raw:
            if not conn.blocked(stream):
                for _ in range(copies):
                    conn.send(self._data_type, payload)
        if fan.combined:
            frame = b"".join((fan.prefix, payload, b"}"))
            for conn in fan.combined:
                if not conn.blocked(stream):
                    for _ in range(copies):
                        conn.send(_TEXT, frame)

    def _consume(self, counters: dict[str, int], stream: str) -> None:
        left = counters[stream] - 1
        if left > 0:
            counters[stream] = left
        else:
            del counters[stream]
            self._refresh_faulty()

    def _refresh_faulty(self) -> None:
        self._faulty = bool(
            self._skips
            or self._dups
            or any(
                c.half_open or c.stall_all or c.stall_streams or c.muted
                for c in self._conns.values()
            )
        )

    # -- faults ----------------------------------------------------------------------------

    def _select(self, connection_id: int | None) -> list[WsConnection]:
        if connection_id is None:
            return list(self._conns.values())
        conn = self._conns.get(connection_id)
        return [conn] if conn is not None else []

    def drop(
        self, *, mode: Mode = "close", code: int = 1001, reason: str = "",
        connection_id: int | None = None,
    ) -> int:  # fmt: skip
        """Drop connections now.

        Args:
            mode: ``"close"`` sends a close frame with ``code``/``reason`` (then waits for the
                client's); ``"fin"`` closes TCP without a close frame (the client sees 1006);
                ``"rst"`` resets TCP (SO_LINGER 0, then abort).
            code: close code for ``"close"``.
            reason: close reason for ``"close"``.
            connection_id: one connection, or ``None`` for all.

        Returns:
            How many connections were dropped.
        """
        if mode not in ("close", "fin", "rst"):
            raise ValueError(f"unknown drop mode {mode!r}; allowed: 'close', 'fin', 'rst'")
        targets = [c for c in self._select(connection_id) if c.transport is not None]
        changed = False
        for conn in targets:
            transport = conn.transport
            assert transport is not None
            if mode == "close":
                conn.half_open = 0  # an explicit drop overrides a half-open fault
                changed |= self._close(conn, code, reason, notify=False)
                continue
            changed |= self._retire(conn)
            conn.closing = True
            if mode == "rst":
                _reset(transport)
            else:
                transport.disconnect(True)
                self._arm_abort(conn)
        if changed:
            self._notify()
        if targets:
            logger.info("fault: dropped %d connection(s) (%s)", len(targets), mode)
        return len(targets)

    def set_stall(
        self, active: bool, *, connection_id: int | None = None,
        streams: frozenset[str] | None = None,
    ) -> None:  # fmt: skip
        """Start or end a stall: no data frames (of ``streams``, or all) to the selected
        connections, while pings are still sent and answered and control requests replied."""
        for conn in self._select(connection_id):
            if active:
                conn.stall_rules.append(streams)
            elif streams in conn.stall_rules:
                conn.stall_rules.remove(streams)
            conn.stall_all = sum(1 for rule in conn.stall_rules if rule is None)
            conn.stall_streams = set().union(*(r for r in conn.stall_rules if r is not None))
        self._refresh_faulty()

    def set_mute(
        self, stream: str, active: bool, *, connection_id: int | None = None,
        until_resubscribed: bool = False,
    ) -> None:  # fmt: skip
        """Start or end a mute of ``stream``: its data frames reach no selected connection while
        every other stream, pings and control replies go on.

        Args:
            stream: the stream name, as subscribed (``"btcusdt@trade"``).
            active: start (True) or end (False) the mute with these arguments.
            connection_id: one connection; ``None`` mutes the stream on every connection,
                those opened later included (the exchange stopped publishing it).
            until_resubscribed: the mute ends, on each connection, when the client subscribes
                to the stream there again (after an UNSUBSCRIBE, or on a new connection).

        Raises:
            ValueError: ``stream`` is not a valid stream name of the venue.
        """
        if self._parse(stream) is None:
            raise ValueError(f"cannot mute {stream!r}: not a valid stream name of {self.venue}")
        if active:
            self._mutes.append(_Mute(stream, connection_id, until_resubscribed))
        else:
            for index, mute in enumerate(self._mutes):
                if (mute.stream, mute.connection_id, mute.until_resubscribed) == (
                    stream, connection_id, until_resubscribed,
                ):  # fmt: skip
                    del self._mutes[index]
                    break
        for conn in self._conns.values():
            self._apply_mutes(conn)
        self._refresh_faulty()

    def _apply_mutes(self, conn: WsConnection) -> None:
        conn.muted = {mute.stream for mute in self._mutes if mute.applies(conn.id)}
        if conn.muted:
            self._faulty = True

    def _resubscribed(self, conn: WsConnection, stream: str) -> None:
        """``conn`` subscribed to muted ``stream`` again: the mutes that end then release it."""
        for mute in self._mutes:
            if mute.stream == stream and mute.until_resubscribed:
                mute.released.add(conn.id)
        self._apply_mutes(conn)
        self._refresh_faulty()

    def set_half_open(self, active: bool, *, connection_id: int | None = None) -> None:
        """Start or end half-open silence on the selected connections: nothing is sent (no
        data, replies, pings or pongs) and everything received is ignored; TCP stays open."""
        for conn in self._select(connection_id):
            if active:
                conn.half_open += 1
                conn.reset_pings()  # a dead server enforces nothing
            elif conn.half_open:
                conn.half_open -= 1
        self._refresh_faulty()

    def skip(self, stream: str, count: int = 1) -> None:
        """Drop the next ``count`` payloads published on ``stream`` for every subscriber."""
        if count > 0:
            self._skips[stream] = self._skips.get(stream, 0) + count
            self._faulty = True

    def duplicate(self, stream: str, count: int = 1) -> None:
        """Send each of the next ``count`` payloads published on ``stream`` twice."""
        if count > 0:
            self._dups[stream] = self._dups.get(stream, 0) + count
            self._faulty = True

    def inject(
        self, kind: MalformedKind, *, connection_id: int | None = None, stream: str | None = None
    ) -> int:
        """Send one malformed frame now.

        Args:
            kind: ``"not_json"`` (truncated JSON), ``"invalid_utf8"`` (a TEXT frame with invalid
                UTF-8 bytes inside a JSON string), ``"wrong_types"`` (an event of ``stream``
                whose id field is a string), ``"oversized"`` (a 5 MiB text frame) or
                ``"binary"`` (a BINARY frame holding an event).
            connection_id: one connection, or ``None`` for all.
            stream: send it as a frame of this stream: only to connections it delivers to, and
                wrapped on combined ones. Required for ``"wrong_types"``.

        Stalled connections get the frame (it is not market data); half-open ones do not.

        Returns:
            How many connections got the frame.
        """
        if kind == "wrong_types" and stream is None:
            raise ValueError("inject('wrong_types') needs a stream")
        payload, msg_type = self._malformed(kind, stream)
        sent = 0
        for conn in self._select(connection_id):
            if conn.closing or conn.half_open or conn.transport is None:
                continue
            if stream is not None and stream not in conn.delivering:
                continue
            frame = payload
            if stream is not None and conn.combined:
                frame = b"".join((b'{"stream":"', stream.encode(), b'","data":', payload, b"}"))
            conn.transport.send(msg_type, frame)
            sent += 1
        logger.info("fault: malformed frame %r sent to %d connection(s)", kind, sent)
        return sent

    def shutdown(
        self, *, close_after: float = 0.0, code: int = 1001, connection_id: int | None = None
    ) -> int:
        """Send ``serverShutdown`` to the selected connections, then close them with ``code``
        ``close_after`` seconds later. Returns how many got the event."""
        targets = [
            c for c in self._select(connection_id)
            if not c.closing and not c.half_open and c.transport is not None
        ]  # fmt: skip
        for conn in targets:
            self._send_shutdown_event(conn)
            if close_after <= 0:
                self._close(conn, code, "")
            else:
                conn.arm("shutdown", close_after, self._close, conn, code, "")
        if targets:
            logger.info("fault: serverShutdown to %d connection(s), close in %.3gs",
                        len(targets), close_after)  # fmt: skip
        return len(targets)

    def set_refuse_upgrades(self, status: int | None, *, retry_after: float | None = None) -> None:
        """Refuse new upgrades with HTTP ``status`` (and ``Retry-After`` when given); ``None``
        accepts them again."""
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"refusal status must be 4xx or 5xx, not {status}")
        self._refuse = None if status is None else (status, retry_after)

    # -- upgrade ---------------------------------------------------------------------------

    def _upgrade(
        self, request: WSUpgradeRequest, proto: _Protocol
    ) -> WsConnection | WSUpgradeResponseWithListener:
        peer = proto.transport.underlying_transport.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        try:
            over_limit = self._count_attempt(host)
            if self._refuse is not None:
                status, retry_after = self._refuse
                raise _Refused(status, "Upgrades refused (simulated fault)", retry_after)
            if over_limit is not None:
                raise _Refused(429, "Too many connection attempts", over_limit)
            if self.sbe:
                self._check_api_key(request)
            return self._route(request.path)
        except _Refused as refused:
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if refused.retry_after is not None:
                headers["Retry-After"] = str(max(0, math.ceil(refused.retry_after)))
            response = WSUpgradeResponse.create_error_response(
                refused.status, refused.body.encode(), headers
            )
            logger.debug("upgrade %r from %s refused: %d", request.path, host, refused.status)
            return WSUpgradeResponseWithListener(response, None)

    def _check_api_key(self, request: WSUpgradeRequest) -> None:
        """SBE upgrades carry ``X-MBX-APIKEY`` (§8); the key itself is never logged."""
        key = next((v for k, v in request.headers.items() if k.lower() == "x-mbx-apikey"), None)
        if not key:
            raise _Refused(401, "Missing X-MBX-APIKEY header: SBE market data needs an API key")
        if self._api_keys is not None and key not in self._api_keys:
            raise _Refused(401, "Invalid API-key, IP, or permissions for action")

    def _count_attempt(self, host: str) -> float | None:
        """Record one upgrade attempt of ``host``; past the limit, the seconds to wait."""
        now = time.monotonic()
        window = self.limits.attempts_window
        attempts = self._attempts.setdefault(host, deque())
        while attempts and attempts[0] <= now - window:
            attempts.popleft()
        attempts.append(now)
        if len(attempts) > self.limits.max_connection_attempts:
            return attempts[-self.limits.max_connection_attempts - 1] + window - now
        return None

    def _route(self, raw_target: bytes) -> WsConnection:
        """Parse a request target into a connection, or raise :class:`_Refused`."""
        if len(raw_target) > self.limits.max_url_length:
            raise _Refused(400, f"URL longer than {self.limits.max_url_length} characters")
        try:
            target = raw_target.decode()
        except UnicodeDecodeError:
            raise _Refused(400, "URL is not UTF-8") from None
        raw_path, _, query = target.partition("?")
        path = _unquote(raw_path)
        route: Route | None = None
        if self.venue == "binance-usdm":
            for prefix in ("/public", "/market"):
                if path.startswith(prefix + "/"):
                    route = "public" if prefix == "/public" else "market"
                    path = path[len(prefix) :]
                    break
        params = _query(query)
        time_unit = params.get("timeUnit")
        if time_unit is not None and time_unit not in ("MILLISECOND", "millisecond"):
            if time_unit in ("MICROSECOND", "microsecond"):
                raise _Refused(400, "timeUnit=MICROSECOND is not supported by the simulator")
            raise _Refused(400, f"Invalid timeUnit {time_unit!r}")
        if path == "/ws" or path.startswith("/ws/"):
            combined, names = False, path[len("/ws/") :].split("/")
        elif path in ("/stream", "/stream/"):
            combined, names = True, params.get("streams", "").split("/")
        else:
            raise _Refused(404, "Not Found")
        streams = list(dict.fromkeys(name for name in names if name))
        for name in streams:
            if self._parse(name) is None:
                raise _Refused(400, f"Invalid stream {name!r}")
        if len(streams) > self.limits.max_streams_per_connection:
            raise _Refused(
                400, f"More than {self.limits.max_streams_per_connection} streams in the URL"
            )
        conn_id, self._next_id = self._next_id, self._next_id + 1
        return WsConnection(self._hooks, conn_id, raw_target.decode(), combined, route, streams)

    def _parse(self, name: str) -> SimStream | None:
        """The parsed stream, or ``None`` if ``name`` is not a valid stream of the venue."""
        parsed = self._parsed.get(name)
        if parsed is None:
            parsed = self.streams.parse(name)
            if parsed is None:
                return None
            if len(self._parsed) < 100_000:  # bounded: names come from clients
                self._parsed[name] = parsed
        return parsed

    # -- connection lifecycle --------------------------------------------------------------

    def _connected(self, conn: WsConnection) -> None:
        self._conns[conn.id] = conn
        conn.opened_at = self._clock()
        limits = self.limits
        conn.arm("ping", limits.ping_interval, conn.send_ping)
        if limits.shutdown_notice > 0:
            notice_at = max(limits.connection_lifetime - limits.shutdown_notice, 0.0)
            conn.arm("notice", notice_at, self._lifetime_notice, conn)
        conn.arm("lifetime", limits.connection_lifetime, self._lifetime_over, conn)
        logger.debug("connection %d open: %s from %s", conn.id, conn.path, conn.remote)
        if self._mutes:
            self._apply_mutes(conn)  # before its URL streams: subscribing may release a mute
        if conn.url_streams and self._subscribe(conn, conn.url_streams):
            self._notify()
        conn.url_streams = []

    def _disconnected(self, conn: WsConnection) -> None:
        if self._retire(conn):
            self._notify()
        conn.cancel_close_timer()
        conn.closing = True
        conn.send = _unsent
        self._conns.pop(conn.id, None)
        if self._faulty:
            self._refresh_faulty()
        logger.debug("connection %d closed", conn.id)

    def _protocol_lost(self, proto: _Protocol) -> None:
        self._protocols.discard(proto)
        if not self._protocols and self._all_gone is not None:
            self._all_gone.set()

    def _retire(self, conn: WsConnection) -> bool:
        """Stop all traffic to ``conn``; returns whether the set of live streams changed."""
        conn.cancel_timers()
        changed = False
        for stream in list(conn.delivering):
            changed |= self._unindex(conn, stream)
        return changed

    def _close(self, conn: WsConnection, code: int, reason: str, *, notify: bool = True) -> bool:
        """Start the closing handshake: close frame now, FIN once the client answers (or after
        CLOSE_TIMEOUT). Returns whether the set of live streams changed."""
        if conn.closing or conn.transport is None:
            return False
        changed = self._retire(conn)
        conn.closing = True
        # picows' stub types the code as WSCloseCode; any int in 1000..4999 works on the wire.
        conn.transport.send_close(code, reason.encode())  # type: ignore[arg-type]
        conn.set_close_timer(CLOSE_TIMEOUT, self._close_timed_out, conn)
        if changed and notify:
            self._notify()
        return changed

    def _close_timed_out(self, conn: WsConnection) -> None:
        if conn.transport is not None and not conn.transport.is_disconnected:
            conn.transport.disconnect(True)
            self._arm_abort(conn)

    def _arm_abort(self, conn: WsConnection) -> None:
        """Reset the connection if a graceful close has not finished within CLOSE_TIMEOUT (a
        client that stopped reading never lets the FIN out)."""
        transport = conn.transport
        if transport is None:
            conn.cancel_close_timer()
        else:
            conn.set_close_timer(CLOSE_TIMEOUT, transport.disconnect, False)

    def _client_closed(self, conn: WsConnection, frame: WSFrame) -> None:
        """The client sent a close frame: answer it (unless we started) and close TCP."""
        transport = conn.transport
        if transport is None:
            return
        if not conn.closing:
            if self._retire(conn):
                self._notify()
            conn.closing = True
            code: int = frame.get_close_code().value
            # Echo the client's code (RFC 6455 §5.5.1); a close without a code gets 1000.
            reply = code if 1000 <= code <= 4999 and code not in (1005, 1006, 1015) else 1000
            transport.send_close(reply)  # type: ignore[arg-type]
        transport.disconnect(True)
        self._arm_abort(conn)

    def _rate_limited(self, conn: WsConnection) -> None:
        logger.info("connection %d: more than %d incoming frames in 1s, closing", conn.id,
                    self.limits.max_incoming_per_second)  # fmt: skip
        self._close(conn, self.limits.close_code_on_rate_limit, "Too many requests")

    def _slow_consumer(self, conn: WsConnection) -> None:
        logger.warning("connection %d: more than %d bytes unsent, aborting (slow consumer)",
                       conn.id, self.max_write_buffer)  # fmt: skip
        if self._retire(conn):
            self._notify()
        conn.closing = True
        if conn.transport is not None:
            _reset(conn.transport)

    def _lifetime_notice(self, conn: WsConnection) -> None:
        if not conn.closing and not conn.half_open:
            self._send_shutdown_event(conn)

    def _lifetime_over(self, conn: WsConnection) -> None:
        if conn.half_open:
            # A silent server closes nothing; try again once the fault is over.
            conn.arm("lifetime", 1.0, self._lifetime_over, conn)
            return
        logger.info("connection %d reached its lifetime, closing", conn.id)
        self._close(conn, _GOING_AWAY, "")

    def _send_shutdown_event(self, conn: WsConnection) -> None:
        event = b'{"e":"serverShutdown","E":%d}' % int(self._clock() * 1000)
        if conn.combined:
            event = b'{"stream":"!serverShutdown","data":' + event + b"}"
        conn.send(_TEXT, event)

    # -- subscriptions ---------------------------------------------------------------------

    def _delivers(self, conn: WsConnection, stream: str) -> bool:
        parsed = self._parse(stream)
        if parsed is None:
            return False
        return parsed.route is None or parsed.route == (conn.route or "public")

    def _subscribe(self, conn: WsConnection, streams: Iterable[str]) -> bool:
        changed = False
        for stream in streams:
            if stream in conn.subs:
                continue
            conn.subs[stream] = None
            if stream in conn.muted:
                self._resubscribed(conn, stream)
            if self._delivers(conn, stream):
                changed |= self._index(conn, stream)
        return changed

    def _unsubscribe(self, conn: WsConnection, streams: Iterable[str]) -> bool:
        changed = False
        for stream in streams:
            if stream in conn.subs:
                del conn.subs[stream]
                if stream in conn.delivering:
                    changed |= self._unindex(conn, stream)
        return changed

    def _index(self, conn: WsConnection, stream: str) -> bool:
        conn.delivering.add(stream)
        fan = self._fanout.get(stream)
        new = fan is None
        if fan is None:
            fan = self._fanout[stream] = _Fanout(stream, bare=self.sbe)
        fan.members[conn] = None
        fan.rebuild()
        return new

    def _unindex(self, conn: WsConnection, stream: str) -> bool:
        conn.delivering.discard(stream)
        fan = self._fanout.get(stream)
        if fan is None or conn not in fan.members:
            return False
        del fan.members[conn]
        if fan.members:
            fan.rebuild()
            return False
        del self._fanout[stream]
        return True

    def _set_combined(self, conn: WsConnection, combined: bool) -> None:
        if conn.combined == combined:
            return
        conn.combined = combined
        for stream in conn.delivering:
            self._fanout[stream].rebuild()

    def _notify(self) -> None:
        try:
            self._on_streams_changed(set(self._fanout))
        except Exception:
            logger.exception("on_streams_changed failed")

    # -- control messages ------------------------------------------------------------------

    def _control(self, conn: WsConnection, data: bytes) -> None:
        """Handle one control message and reply at once."""
        reply = self._handle(conn, data)
        if reply is not None and conn.transport is not None and not conn.closing:
            conn.transport.send(_TEXT, reply)

    def _handle(self, conn: WsConnection, data: bytes) -> bytes | None:
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            prefix = data[: exc.start].decode()
            line, col = _line_col(prefix, len(prefix))
            return _error(3, f"{MSG_INVALID_JSON} at line {line} column {col + 1}")
        try:
            request = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            return _error(3, f"{MSG_INVALID_JSON} at line {exc.lineno} column {exc.colno}")
        except (ValueError, RecursionError):
            return _error(3, f"{MSG_INVALID_JSON} at line 1 column 1")
        if not isinstance(request, dict):
            return _error(2, MSG_NOT_OBJECT)
        # Fields are checked in document order, as Binance's (serde) parser meets them.
        for key, value in request.items():
            if key == "method" and value not in _METHODS:
                shown = value if isinstance(value, str) else json.dumps(value)
                line, col = _line_col(text, _value_end(text, value))
                return _error(
                    2, f"Invalid request: unknown variant `{shown}`, expected one of "
                    f"{_EXPECTED_METHODS} at line {line} column {col}",
                )  # fmt: skip
            if key == "id" and not self._valid_id(value):
                return _error(2, MSG_BAD_ID)
        if "method" not in request:
            line, col = _line_col(text, len(text.rstrip()))
            return _error(2, f"Invalid request: missing field `method` at line {line} column {col}")
        if "id" not in request:
            return _error(2, MSG_BAD_ID)
        rid = json.dumps(request["id"]).encode()
        method: str = request["method"]
        params = request.get("params")
        if method == "SUBSCRIBE" or method == "UNSUBSCRIBE":
            return self._handle_subscription(conn, method, params, rid)
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                return _error(2, MSG_TOO_MANY_PARAMS, rid)
            listed = json.dumps(list(conn.subs), ensure_ascii=False, separators=(",", ":"))
            return b'{"result":%b,"id":%b}' % (listed.encode(), rid)
        if params is not None and not isinstance(params, list):
            return _error(2, MSG_PROPERTY_NAME, rid)
        args = params or []
        if len(args) > (2 if method == "SET_PROPERTY" else 1):
            return _error(2, MSG_TOO_MANY_PARAMS, rid)
        if not args or not isinstance(args[0], str):
            return _error(2, MSG_PROPERTY_NAME, rid)
        if args[0] != "combined":
            return _error(0, MSG_UNKNOWN_PROPERTY, rid)
        if method == "GET_PROPERTY":
            return b'{"result":%b,"id":%b}' % (b"true" if conn.combined else b"false", rid)
        if len(args) < 2 or not isinstance(args[1], bool):
            return _error(1, MSG_EXPECTED_BOOLEAN, rid)
        self._set_combined(conn, args[1])
        return b'{"result":null,"id":%b}' % rid

    def _handle_subscription(
        self, conn: WsConnection, method: str, params: Any, rid: bytes
    ) -> bytes:
        streams = [] if params is None else params
        if not isinstance(streams, list) or not all(
            isinstance(s, str) and self._parse(s) is not None for s in streams
        ):
            return _error(2, MSG_INVALID_STREAM, rid)
        if method == "SUBSCRIBE":
            new = [s for s in dict.fromkeys(streams) if s not in conn.subs]
            limit = self.limits.max_streams_per_connection
            if len(conn.subs) + len(new) > limit:
                return _error(
                    2, f"Invalid request: too many streams; the limit is {limit} streams per "
                    f"connection ({len(conn.subs)} subscribed, {len(new)} requested)", rid,
                )  # fmt: skip
            changed = self._subscribe(conn, new)
        else:
            changed = self._unsubscribe(conn, streams)
        if changed:
            self._notify()
        return b'{"result":null,"id":%b}' % rid

    def _valid_id(self, value: Any) -> bool:
        if self.limits.id_rule == "futures":
            return type(value) is int and 0 <= value < _UINT64
        if value is None:
            return True
        if type(value) is int:
            return -_INT64 <= value < _INT64
        return isinstance(value, str) and _SPOT_STRING_ID.fullmatch(value) is not None

    # -- malformed frames ------------------------------------------------------------------

    def _malformed(self, kind: MalformedKind, stream: str | None) -> tuple[bytes, WSMsgType]:
        now = int(self._clock() * 1000)
        parsed = self._parse(stream) if stream is not None else None
        if kind == "not_json":
            return b'{"e":"trade","E":%d,"s":"BTCUSDT","t":' % now, _TEXT
        if kind == "invalid_utf8":
            return _sample(parsed, now, text=b"1.0\xc3\x28"), _TEXT
        if kind == "wrong_types":
            return _sample(parsed, now, ident=b'"x"'), _TEXT
        if kind == "oversized":
            return _sample(parsed, now, text=b"1" * OVERSIZED_BYTES), _TEXT
        if kind == "binary":
            return _sample(parsed, now), _BINARY
        raise ValueError(
            f"unknown malformed kind {kind!r}; allowed: not_json, invalid_utf8, wrong_types, "
            "oversized, binary"
        )


class _Protocol(WSProtocol):  # type: ignore[misc]
    """picows' server protocol, created per accepted TCP connection by :class:`WsServer`.

    Built here rather than by ``ws_create_server`` so that the upgrade router sees the peer
    address (the connection-attempt limit is per address) and :meth:`WsServer.stop` can reach
    connections that never upgraded.
    """

    def __init__(
        self,
        upgrade: Callable[
            [WSUpgradeRequest, _Protocol], WsConnection | WSUpgradeResponseWithListener
        ],
        opened: Callable[[_Protocol], None],
        lost: Callable[[_Protocol], None],
    ) -> None:
        self._upgrade = upgrade
        self._opened = opened
        self._lost = lost
        super().__init__(
            host_port=None,
            ws_path=None,
            is_client_side=False,
            ws_listener_factory=self._route,
            logger=logging.getLogger("picows.server"),
            disconnect_on_exception=True,
            websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
            enable_auto_ping=False,
            auto_ping_idle_timeout=20.0,
            auto_ping_reply_timeout=20.0,
            auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
            enable_auto_pong=False,  # client pings must reach the rate limiter
            max_frame_size=MAX_MESSAGE,
            extra_headers=None,
            read_buffer_init_size=16 * 1024,
        )

    def _route(self, request: WSUpgradeRequest) -> WsConnection | WSUpgradeResponseWithListener:
        return self._upgrade(request, self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._opened(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._lost(self)


# -- helpers -------------------------------------------------------------------------------


def _reset(transport: WSTransport) -> None:
    """Close with a TCP RST: SO_LINGER 0 makes the kernel drop unsent data instead of a FIN."""
    sock = transport.underlying_transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.disconnect(False)


def _error(code: int, msg: str, rid: bytes = b"null") -> bytes:
    """Binance's nested error reply (§2)."""
    return b'{"error":{"code":%d,"msg":%b},"id":%b}' % (
        code, json.dumps(msg, ensure_ascii=False).encode(), rid,
    )  # fmt: skip


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _line_col(text: str, end: int) -> tuple[int, int]:
    """Line (1-based) and column (characters consumed on that line) after ``text[:end]``."""
    line = text.count("\n", 0, end) + 1
    return line, end - (text.rfind("\n", 0, end) + 1)


def _value_end(text: str, value: Any) -> int:
    """Where the ``"method"`` value ``value`` ends in ``text`` (for serde-style positions)."""
    decoder = json.JSONDecoder()
    for match in _METHOD_KEY.finditer(text):
        try:
            found, end = decoder.raw_decode(text, match.end())
        except ValueError:
            continue
        if found == value:
            return end
    return len(text)


def _unquote(text: str) -> str:
    """Percent-decode a URL part (``+`` stays ``+``: it is literal in ``@+08:00``)."""
    return unquote(text, errors="strict") if "%" in text else text


def _query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            params.setdefault(_unquote(key), _unquote(value))
    return params


# Event shapes of the malformed frames: (event JSON with %(E)d, %(id)s and %(text)s slots).
_SAMPLES: Final[dict[Kind | None, bytes]] = {
    Kind.TRADE: b'{"e":"trade","E":%(E)d,"s":"%(S)s","t":%(id)s,"p":"%(text)s",'
    b'"q":"1.00000000","T":%(E)d,"m":true,"M":true}',
    Kind.AGG_TRADE: b'{"e":"aggTrade","E":%(E)d,"s":"%(S)s","a":%(id)s,"p":"%(text)s",'
    b'"q":"1.00000000","f":1,"l":1,"T":%(E)d,"m":true,"M":true}',
    Kind.DEPTH: b'{"e":"depthUpdate","E":%(E)d,"s":"%(S)s","U":%(id)s,"u":%(id)s,'
    b'"b":[["%(text)s","1.00000000"]],"a":[]}',
    Kind.BOOK_TICKER: b'{"u":%(id)s,"s":"%(S)s","b":"%(text)s","B":"1.00000000",'
    b'"a":"1.00000000","A":"1.00000000"}',
    Kind.PARTIAL_DEPTH: b'{"lastUpdateId":%(id)s,"bids":[["%(text)s","1.00000000"]],"asks":[]}',
    None: b'{"e":"event","E":%(id)s,"s":"%(S)s","p":"%(text)s"}',
}


def _sample(
    stream: SimStream | None, now: int, *, ident: bytes = b"1", text: bytes = b"1.00000000"
) -> bytes:
    """A plausible event of ``stream`` with ``ident`` as its id and ``text`` in a string field."""
    template = _SAMPLES.get(stream.kind if stream is not None else Kind.TRADE, _SAMPLES[None])
    symbol = (stream.symbol or "").upper().encode() if stream is not None else b"BTCUSDT"
    return template % {b"E": now, b"S": symbol, b"id": ident, b"text": text}
