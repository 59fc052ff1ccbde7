"""``fastmd.Connection``: one picows WebSocket that stays up, says what happens to it, and never
goes silent.

The rules (backoff, circuit breaker, liveness, pacing, close frames, state transitions) live in
``fastmd.core``; this module owns the socket, the timers and the one supervisor task, feeds the
core and does what it answers.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import random
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal, overload

from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from fastmd.aio.reporting import LoggingReporter
from fastmd.core.backoff import Backoff, reconnect_delay
from fastmd.core.breaker import CircuitBreaker, CircuitBreakerPolicy
from fastmd.core.lifecycle import (
    ConnectionState,
    ErrorReport,
    ErrorReporter,
    Severity,
    check_transition,
    parse_close_payload,
)
from fastmd.core.liveness import Heartbeat, Liveness, LivenessAction
from fastmd.core.pacing import Pacer
from fastmd.core.stats import ConnectionStats, LatencyTracker, RateMeter
from fastmd.errors import (
    AuthenticationError,
    CallbackError,
    ConnectError,
    ConnectionClosed,
    FastmdTimeoutError,
    HandshakeError,
    InvalidState,
    ProtocolError,
    TLSError,
)

__all__ = ["Connection"]

logger = logging.getLogger(__name__)

FrameHandler = Callable[[WSTransport, WSFrame], None]
"""What picows calls with every frame of a socket."""

EventName = Literal[
    "message", "connect", "disconnect", "reconnecting", "error", "circuit_open", "circuit_closed"
]
EVENTS: Final[tuple[str, ...]] = (
    "message", "connect", "disconnect", "reconnecting", "error", "circuit_open", "circuit_closed",
)  # fmt: skip

_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_CONTINUATION: Final = WSMsgType.CONTINUATION
_Utf8Decoder: Final = codecs.getincrementaldecoder("utf-8")
_STABLE_AFTER: Final = 10.0  # a socket up this long resets the backoff schedule
_STATS_INTERVAL: Final = 1.0
_MAX_QUEUED_FRAMES: Final = 10_000
_CLOSE_TIMEOUT: Final = 1.0
# A close frame waits this long at most for its slot of the outgoing budget, so that close()
# keeps the other half of _CLOSE_TIMEOUT for the handshake. The pacer spaces frames 1/n s apart,
# so with n >= 2 frames a second the next slot is never further away than this.
_CLOSE_FRAME_WAIT: Final = _CLOSE_TIMEOUT / 2
_WIRE_CLOSE_CODES: Final = {code.value: code for code in WSCloseCode}
_TCP_INFO_LAST_DATA_RECV: Final = 52  # offset of tcpi_last_data_recv (ms) in Linux tcp_info
_TCP_INFO_BYTES_RECEIVED: Final = 128  # offset of tcpi_bytes_received (u64)


class _Message:
    """A message assembled from fragments, dressed as the one frame a router expects (FIN set,
    no reserved bits): the router then treats it exactly like an unfragmented message."""

    __slots__ = ("_data", "msg_type")

    fin: Final = True
    rsv1: Final = False
    rsv2: Final = False
    rsv3: Final = False

    def __init__(self, msg_type: WSMsgType, data: bytes) -> None:
        self.msg_type = msg_type
        self._data = data

    @property
    def payload_size(self) -> int:
        return len(self._data)

    def get_payload_as_memoryview(self) -> memoryview:
        return memoryview(self._data)

    def get_payload_as_bytes(self) -> bytes:
        return self._data


class _Listener(WSListener):
    """picows callbacks of one socket.

    With a frame router installed (``fastmd.Client`` installs one), the router *is* this
    listener's ``on_ws_frame`` (an instance attribute, which picows calls in place of the
    method): every frame goes straight to it, one Python call per frame, and the router hands
    the frames it does not consume back to :meth:`Connection.handle_frame`.

    While a fragmented message is being assembled, or once the connection is leaving the
    socket, every frame is diverted to one handler instead (:meth:`divert`): the router then
    never sees a frame in the middle of a message, and the usual path pays nothing for it.
    """

    def __init__(
        self,
        *,
        router: FrameHandler | None,
        handle_frame: FrameHandler,
        opened: Callable[[WSTransport], None],
        closed: Callable[[_Listener, WSTransport], None],
    ) -> None:
        self._handle_frame = handle_frame
        self._router = router
        self._opened = opened
        self._closed = closed
        if router is not None:
            self.on_ws_frame = router  # type: ignore[assignment]

    def divert(self, handler: FrameHandler | None) -> None:
        """Send every frame to ``handler`` from now on; None restores the usual path."""
        if handler is not None:
            self.on_ws_frame = handler  # type: ignore[assignment]
        elif self._router is not None:
            self.on_ws_frame = self._router  # type: ignore[assignment]
        else:
            vars(self).pop("on_ws_frame", None)  # the method again

    def on_ws_connected(self, transport: WSTransport) -> None:
        # Frames that came with the handshake response arrive before ws_connect() returns.
        self._opened(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self._handle_frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed(self, transport)


class Connection:
    """One resilient WebSocket connection (the seed's ``WebSocketConnectionManager``).

    It reconnects after every close it was not asked for (1000 and 1001 included), with
    exponential backoff and jitter; opens a circuit after repeated failures; pings to measure
    latency and detect dead links; paces every frame it sends (pongs and pings included) to the
    venue's budget; and reports everything through events. A network fault never raises into user
    code.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        backoff: reconnect delays (:class:`fastmd.Backoff`).
        heartbeat: client ping interval and timeout (:class:`fastmd.Heartbeat`).
        circuit_breaker: when to stop trying for a while (:class:`fastmd.CircuitBreakerPolicy`).
        auto_reconnect: reconnect after closes and failures (default True).
        max_outgoing_per_second: frames this side sends in any sliding second, pings and pongs
            included (Binance spot allows 5; fastmd uses 4).
        stale_after: seconds without a data frame after which the link counts as stale and is
            reconnected, though it still answers pings; ``None`` disables the watchdog.
        open_timeout: seconds for TCP, TLS and the HTTP upgrade together.
        max_frame_size: frames larger than this (bytes) close the socket with 1009.
        ssl_context: TLS settings for ``wss://`` (certificates are verified by default).
        extra_headers: HTTP headers for the upgrade request.
        error_reporter: receives every :class:`fastmd.ErrorReport`; the default logs them.
        connect_budget: a pacer of connection attempts shared by several connections (a pool
            stays far below Binance's 300 attempts per 5 minutes per address).
        clock: monotonic clock (injected in tests).
        rng: random source of the jitter (injected in tests).

    Events (``conn.on(name, callback)``; callbacks run on the event loop and must not block):

    - ``message(data: bytes)``: a text frame;
    - ``connect()``: the socket is open;
    - ``disconnect(code: int, reason: str)``: the socket closed (1006: no close frame);
    - ``reconnecting(attempt: int, delay: float)``: the next attempt in ``delay`` seconds;
    - ``error(report: ErrorReport)``: something went wrong (also given to ``error_reporter``);
    - ``circuit_open(cooldown: float)`` and ``circuit_closed()``.
    """

    def __init__(
        self,
        url: str,
        *,
        backoff: Backoff | None = None,
        heartbeat: Heartbeat | None = None,
        circuit_breaker: CircuitBreakerPolicy | None = None,
        auto_reconnect: bool = True,
        max_outgoing_per_second: int = 4,
        stale_after: float | None = None,
        open_timeout: float = 10.0,
        max_frame_size: int = 4 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        extra_headers: dict[str, str] | None = None,
        error_reporter: ErrorReporter | None = None,
        connect_budget: Pacer | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must start with ws:// or wss://, not {url!r}")
        if stale_after is not None and stale_after <= 0:
            raise ValueError("stale_after must be positive or None")
        self.url = url
        self.backoff = backoff or Backoff()
        self.heartbeat = heartbeat or Heartbeat()
        self.circuit_breaker = circuit_breaker or CircuitBreakerPolicy()
        self.auto_reconnect = auto_reconnect
        self.stale_after = stale_after
        self.open_timeout = open_timeout
        self.max_frame_size = max_frame_size
        self.ssl_context = ssl_context
        self.extra_headers = extra_headers
        self._reporter: ErrorReporter = (
            error_reporter if error_reporter is not None else LoggingReporter(clock=clock)
        )
        self._clock = clock
        self._rng = rng or random.Random()
        threshold = self.circuit_breaker.failure_threshold
        if self.backoff.max_attempts is not None:
            threshold = min(threshold, self.backoff.max_attempts)
        self._breaker = CircuitBreaker(self.circuit_breaker, clock, threshold=threshold)
        self._pacer = Pacer(max_outgoing_per_second)
        self._connect_budget = connect_budget
        self._listeners: dict[str, list[Callable[..., object]]] = {name: [] for name in EVENTS}
        self._frame_handler: Callable[[memoryview], None] | None = None
        self._frame_router: Callable[[WSTransport, WSFrame], None] | None = None
        self._router_consumed: Callable[[], int] | None = None
        self._state = ConnectionState.IDLE
        self._listener: _Listener | None = None
        self._transport: WSTransport | None = None  # the open socket, None once it closed
        self._current_socket: WSTransport | None = None  # the latest socket, even closed
        self._socket_done: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._opened: asyncio.Event | None = None
        self._closing = False
        self._reconnect_requested = False
        self._attempt = 0  # failed attempts since the last open
        self._flaps = 0  # consecutive connections that closed before _STABLE_AFTER
        self._last_close = (1006, "")
        self._outgoing: deque[tuple[WSMsgType, bytes]] = deque()
        self._pending_pong: bytearray | None = None
        self._ping_wanted = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._liveness: Liveness | None = None
        # the fragmented message being assembled: its type, its bytes, its UTF-8 check (text);
        # the socket's router (if any) gets it once complete
        self._fragment_type: WSMsgType | None = None
        self._fragments = bytearray()
        self._utf8 = _Utf8Decoder()
        self._socket_router: FrameHandler | None = None
        self._leaving = False  # a close frame is waiting for its pacer slot, or was sent
        self._close_timer: asyncio.TimerHandle | None = None
        self._close_code = 1006
        self._close_reason = ""
        # counters (plain ints: the hot path only increments them)
        self._messages = 0  # text frames handled here (not by the router)
        self._control_frames = 0
        self._bytes_before = 0  # socket bytes of sockets that are closed now
        self._socket_bytes = 0  # last reading of the current socket
        self._sent = 0
        self._errors = 0
        self._reconnects = 0
        self._connects = 0
        self._listener_errors = 0
        self._opened_at: float | None = None
        self._rates = RateMeter()
        self._latency = LatencyTracker()

    # -- public API ---------------------------------------------------------------------------

    @overload
    def on(
        self, event: Literal["message"], callback: Callable[[bytes], object]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, event: Literal["connect", "circuit_closed"], callback: Callable[[], object]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, event: Literal["disconnect"], callback: Callable[[int, str], object]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, event: Literal["reconnecting"], callback: Callable[[int, float], object]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, event: Literal["error"], callback: Callable[[ErrorReport], object]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, event: Literal["circuit_open"], callback: Callable[[float], object]
    ) -> Callable[[], None]: ...
    def on(self, event: str, callback: Callable[..., object]) -> Callable[[], None]:
        """Register ``callback`` for ``event``; returns a function that removes it.

        Raises:
            ValueError: ``event`` is not one of the connection's events.
        """
        listeners = self._listeners.get(event)
        if listeners is None:
            raise ValueError(f"unknown event {event!r}; allowed: {', '.join(EVENTS)}")
        listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                listeners.remove(callback)

        return remove

    @property
    def state(self) -> ConnectionState:
        """The current :class:`fastmd.ConnectionState`."""
        return self._state

    @property
    def reconnects(self) -> int:
        """Reconnections so far (what :attr:`stats` reports, without building the snapshot)."""
        return self._reconnects

    @property
    def is_open(self) -> bool:
        return self._state is ConnectionState.OPEN

    def set_frame_router(
        self,
        router: Callable[[WSTransport, WSFrame], None] | None,
        consumed: Callable[[], int] | None = None,
    ) -> None:
        """Install the decode-first hot path for the next sockets: picows calls
        ``router(transport, frame)`` for every frame (the frame is valid only during the call).
        The router must pass every frame it does not consume as data (pings, pongs, closes,
        fragments, anything it cannot decode) to :meth:`handle_frame`, and must not raise.
        ``consumed()`` returns how many data frames it consumed (for stats and liveness).

        A message that arrives in fragments is assembled here (the router sees none of its
        frames after the first) and given to the router once complete, as one frame with FIN set.
        """
        self._frame_router = router
        self._router_consumed = consumed

    def handle_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Handle a frame of this connection's socket the usual way (control frames, text
        frames for the frame handler and ``message`` listeners). Frames of a socket the
        connection has already left are ignored. Never raises."""
        if transport is not self._transport:
            return
        try:
            self._on_frame(transport, frame)
        except Exception as exc:  # never let anything reach picows
            self._report(Severity.ERROR, "frame_error", f"failed to handle a frame: {exc}", exc)

    def send_delay(self) -> float:
        """Seconds until a frame sent now would leave the paced queue (an estimate)."""
        queued = len(self._outgoing) + (self._pending_pong is not None)
        return self._pacer.delay(self._clock()) + queued * self._pacer.min_interval

    def _data_frames(self) -> int:
        consumed = self._router_consumed
        return self._messages + (consumed() if consumed is not None else 0)

    def set_frame_handler(self, handler: Callable[[memoryview], None] | None) -> None:
        """Install the hot-path handler of text frames: called synchronously inside picows'
        frame callback with a memoryview that is valid only during the call (copy to keep)."""
        self._frame_handler = handler

    async def connect(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Start the connection and wait until it is open.

        Returns True once open; False if ``timeout`` passed first or attempts stopped (circuit
        open, ``auto_reconnect=False`` after a failure, or the upgrade refused for its credentials:
        :class:`fastmd.AuthenticationError`, never retried). Failures are reported through the
        ``error`` event, never raised; the connection keeps trying in the background unless
        ``auto_reconnect`` is off.

        Raises:
            InvalidState: the connection was closed.
        """
        if self._state is ConnectionState.CLOSED:
            raise InvalidState("a closed Connection cannot connect again; create a new one")
        if self._supervisor is None:
            self._wake = asyncio.Event()
            self._opened = asyncio.Event()
            self._supervisor = asyncio.create_task(self._supervise(), name=f"fastmd {self.url}")
        assert self._opened is not None
        waiter = asyncio.ensure_future(self._opened.wait())
        try:
            await asyncio.wait(
                {waiter, self._supervisor}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        return self._state is ConnectionState.OPEN

    def send(self, data: str | bytes) -> bool:
        """Queue a text frame; frames leave paced to ``max_outgoing_per_second``.

        Returns False (and sends nothing) when no socket is up or it is being closed: nothing
        queued while disconnected is replayed on a new socket. A socket is up from the end of
        its handshake, so a ``message`` listener can answer a frame that came with the upgrade
        response, before the ``connect`` event.

        Raises:
            TypeError: ``data`` is neither str nor bytes.
        """
        if isinstance(data, str):
            payload = data.encode()
        elif isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")
        # The socket is usable from the handshake on: a listener may answer a frame that came
        # with the upgrade response, before the state turns OPEN.
        if self._transport is None or self._leaving:
            return False
        if len(self._outgoing) >= _MAX_QUEUED_FRAMES:
            self._report(
                Severity.ERROR, "send_queue_full", "outgoing queue full; frame dropped", None
            )
            return False
        self._outgoing.append((_TEXT, payload))
        self._flush()
        return True

    async def reconnect(self) -> None:
        """Close the current socket (if any) and connect again at once, without backoff."""
        if self._state is ConnectionState.CLOSED:
            raise InvalidState("a closed Connection cannot reconnect")
        if self._supervisor is None:
            await self.connect()
            return
        self._reconnect_requested = True
        self._attempt = self._flaps = 0
        if self._transport is not None and not self._leaving:
            self._close_code, self._close_reason = 1000, "reconnect requested"
            self._disconnect(WSCloseCode.OK)
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        """Close for good; idempotent, returns within about a second from any state, and leaves
        no task or socket behind."""
        if self._state is ConnectionState.CLOSED and self._supervisor is None:
            return
        self._closing = True
        if self._transport is not None and not self._leaving:
            self._close_code, self._close_reason = 1000, "closed by user"
            self._disconnect(WSCloseCode.OK)
        if self._wake is not None:
            self._wake.set()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and not supervisor.done():
            if self._state is not ConnectionState.OPEN:
                supervisor.cancel()  # connecting or waiting: nothing to close gracefully
            try:
                await asyncio.wait_for(asyncio.shield(supervisor), _CLOSE_TIMEOUT)
            except (TimeoutError, asyncio.CancelledError):
                supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
        self._teardown_socket()
        self._set_state(ConnectionState.CLOSED)

    async def __aenter__(self) -> Connection:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def stats(self) -> ConnectionStats:
        """A snapshot of the connection's statistics."""
        now = self._clock()
        messages = self._data_frames()
        return ConnectionStats(
            state=self._state.name,
            messages=messages,
            bytes=self._bytes_before + self._read_socket_bytes(),
            message_rate_1s=self._rates.rate(now, messages, 1.0),
            message_rate_10s=self._rates.rate(now, messages, 10.0),
            latency=self._latency.snapshot(),
            uptime=now - self._opened_at if self._opened_at is not None else 0.0,
            reconnects=self._reconnects,
            errors=self._errors,
            sent=self._sent,
        )

    @property
    def last_close(self) -> tuple[int, str]:
        """Code and reason of the last close (1006 when the socket died without one)."""
        return self._last_close

    # -- supervisor ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            while not self._closing:
                wait = self._breaker.time_until_allowed()
                if wait > 0:
                    self._set_state(ConnectionState.CIRCUIT_OPEN)
                    await self._sleep(wait)
                    continue
                budget = self._connect_budget
                if budget is not None:
                    wait = budget.delay(self._clock())
                    if wait > 0:
                        self._set_state(ConnectionState.RECONNECTING)
                        self._emit("reconnecting", self._flaps + self._attempt + 1, wait)
                        await self._sleep(wait)
                        continue
                    budget.record(self._clock())
                self._set_state(ConnectionState.CONNECTING)
                try:
                    transport = await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = self._translate(exc)
                    if self._stopping():
                        break
                    self._attempt += 1
                    self._attempt_failed(error)
                    if not self.auto_reconnect or isinstance(error, AuthenticationError):
                        break  # refused credentials stay refused: no retry loop
                    status = error.status if isinstance(error, HandshakeError) else None
                    retry = error.retry_after if isinstance(error, HandshakeError) else None
                    await self._backoff(handshake_status=status, retry_after=retry)
                    continue
                await self._run_open(transport)
                if self._stopping() or not self.auto_reconnect:
                    break
                if self._reconnect_requested:
                    self._reconnect_requested = False
                    continue
                await self._backoff(close_code=self._close_code)
        finally:
            self._teardown_socket()
            self._closing = True
            if self._state is not ConnectionState.CLOSED:
                self._state = ConnectionState.CLOSED
            if self._opened is not None:
                self._opened.set()

    def _stopping(self) -> bool:
        # A method, not the attribute: close() flips it while the supervisor awaits.
        return self._closing

    async def _open(self) -> WSTransport:
        listener = _Listener(
            router=self._frame_router,
            handle_frame=self.handle_frame,
            opened=self._socket_opened,
            closed=self._listener_closed,
        )

        def factory() -> _Listener:
            return listener

        self._listener = listener
        self._socket_router = self._frame_router
        try:
            transport, _ = await asyncio.wait_for(
                ws_connect(
                    factory,
                    self.url,
                    ssl_context=self.ssl_context,
                    disconnect_on_exception=False,
                    websocket_handshake_timeout=self.open_timeout,
                    enable_auto_ping=False,
                    enable_auto_pong=False,
                    max_frame_size=self.max_frame_size,
                    extra_headers=self.extra_headers,
                ),
                self.open_timeout,
            )
        except BaseException:
            self._listener = None
            raise
        return transport

    def _attempt_failed(self, error: Exception) -> None:
        code = "tls_error" if isinstance(error, TLSError) else "connect_failed"
        if isinstance(error, HandshakeError):
            code = "handshake_rejected"
        if isinstance(error, AuthenticationError):
            code = "authentication_failed"
        critical = isinstance(error, TLSError | AuthenticationError)
        self._report(
            Severity.CRITICAL if critical else Severity.ERROR,
            code,
            f"connection attempt {self._flaps + self._attempt} to {self.url} failed: {error}",
            error,
            attempt=self._flaps + self._attempt,
        )
        opened = self._breaker.record_failure()
        if isinstance(error, TLSError):
            # A certificate problem will not fix itself: no fast retry loop.
            while not opened and self._breaker.state.name == "CLOSED":
                opened = self._breaker.record_failure()
        if opened:
            cooldown = self._breaker.policy.cooldown
            self._report(
                Severity.CRITICAL,
                "circuit_open",
                f"{self._breaker.failures} consecutive failures: no attempt for {cooldown:g} s",
                None,
            )
            self._emit("circuit_open", cooldown)

    async def _backoff(
        self,
        *,
        close_code: int | None = None,
        handshake_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        if self._breaker.time_until_allowed() > 0:
            return  # the circuit decides the wait
        # Failed attempts since the last open, plus connections that died young: a link that
        # flaps keeps backing off further instead of reconnecting at the first delay forever.
        attempt = self._flaps + self._attempt
        delay = reconnect_delay(
            self.backoff,
            attempt,
            self._rng.random(),
            close_code=close_code,
            handshake_status=handshake_status,
            retry_after=retry_after,
        )
        self._set_state(ConnectionState.RECONNECTING)
        self._emit("reconnecting", attempt, delay)
        await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Sleep, waking early for close() and reconnect()."""
        assert self._wake is not None
        self._wake.clear()
        if self._closing or self._reconnect_requested:
            self._reconnect_requested = False
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        self._reconnect_requested = False

    def _socket_opened(self, transport: WSTransport) -> None:
        now = self._clock()
        self._transport = self._current_socket = transport
        self._socket_done = asyncio.get_running_loop().create_future()
        self._opened_at = now
        self._close_code, self._close_reason = 1006, ""
        self._liveness = Liveness(self.heartbeat, self.stale_after, now)
        self._outgoing.clear()
        self._pending_pong = None
        self._ping_wanted = False
        self._fragment_type = None
        self._fragments = bytearray()
        self._leaving = False

    async def _run_open(self, transport: WSTransport) -> None:
        if self._current_socket is not transport:  # on_ws_connected did not run (defensive)
            self._socket_opened(transport)
        now = self._clock()
        self._attempt = 0
        if self._breaker.record_success():
            self._emit("circuit_closed")
        if self._connects:
            self._reconnects += 1
        self._connects += 1
        self._set_state(ConnectionState.OPEN)
        assert self._opened is not None
        self._opened.set()
        self._emit("connect")
        if transport.is_disconnected:  # closed while the connect listeners ran
            self._socket_closed(transport)
        socket_done = self._socket_done
        assert socket_done is not None
        next_sample = now
        while not socket_done.done():
            now = self._clock()
            if now >= next_sample:
                self._rates.sample(now, self._data_frames())
                self._read_socket_bytes()
                next_sample = now + _STATS_INTERVAL
            self._check_liveness(now)
            assert self._liveness is not None
            timeout = min(self._liveness.next_deadline(now), next_sample) - now
            await asyncio.wait({socket_done}, timeout=max(timeout, 0.001))
        await self._collect_transport_error(transport)
        uptime = self._clock() - (self._opened_at or 0.0)
        self._flaps = 1 if uptime >= _STABLE_AFTER else self._flaps + 1
        self._opened_at = None
        self._last_close = (self._close_code, self._close_reason)
        self._emit("disconnect", self._close_code, self._close_reason)
        if not self._closing:
            error = ConnectionClosed(self._close_code, self._close_reason)
            self._report(
                Severity.WARNING,
                "disconnected",
                f"{self.url} closed ({self._close_code} {self._close_reason}); reconnecting",
                error,
                close_code=self._close_code,
            )

    async def _collect_transport_error(self, transport: WSTransport) -> None:
        """picows keeps the error that ended a socket (an invalid frame from the peer, a frame
        over max_frame_size); retrieve and report it."""
        try:
            await asyncio.wait_for(transport.wait_disconnected(), _CLOSE_TIMEOUT)
        except WSError as exc:
            code = getattr(exc, "code", None)
            close_code = int(code.value) if isinstance(code, WSCloseCode) else 1002
            self._close_code, self._close_reason = close_code, str(exc)
            error = ProtocolError(f"peer broke the WebSocket protocol: {exc}")
            error.__cause__ = exc
            self._report(Severity.ERROR, "protocol_error", str(error), error)
        except (TimeoutError, OSError) as exc:
            logger.debug("socket of %s ended with %r", self.url, exc)

    def _check_liveness(self, now: float) -> None:
        liveness, transport = self._liveness, self._transport
        if liveness is None or transport is None:
            return
        data = self._data_frames()
        frames = data + self._control_frames
        action = liveness.poll(now, data, frames, self._socket_idle())
        if action is LivenessAction.SEND_PING and not self._ping_wanted:
            # The ping is registered when it actually leaves the pacer: the round trip then
            # measures the network, not our own queue, and pings never pile up in it.
            self._ping_wanted = True
            self._flush()
        elif action is LivenessAction.DEAD:
            error = FastmdTimeoutError(
                f"no pong and no data within {self.heartbeat.timeout:g} s of a ping"
            )
            self._report(Severity.WARNING, "heartbeat_timeout", str(error), error)
            self._close_code, self._close_reason = 1006, "heartbeat timeout"
            self._disconnect(None)
        elif action is LivenessAction.STALE:
            error = FastmdTimeoutError(f"no data for {self.stale_after:g} s while pings succeed")
            self._report(Severity.WARNING, "stale", str(error), error)
            self._close_code, self._close_reason = 1000, "stale data"
            self._disconnect(WSCloseCode.OK)

    def _tcp_info(self) -> bytes | None:
        transport = self._transport
        if transport is None:
            return None
        try:
            sock = transport.underlying_transport.get_extra_info("socket")
            info: bytes = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
        except (AttributeError, OSError, ValueError):
            return None
        return info

    def _read_socket_bytes(self) -> int:
        """Bytes the current socket received (Linux TCP_INFO), kept for when it is gone."""
        info = self._tcp_info()
        if info is not None and len(info) >= _TCP_INFO_BYTES_RECEIVED + 8:
            (self._socket_bytes,) = struct.unpack_from("<Q", info, _TCP_INFO_BYTES_RECEIVED)
        return self._socket_bytes

    def _socket_idle(self) -> float | None:
        """Seconds since the socket last received a byte (Linux TCP_INFO), else None."""
        transport = self._transport
        if transport is None:
            return None
        try:
            sock = transport.underlying_transport.get_extra_info("socket")
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            (idle_ms,) = struct.unpack_from("<I", info, _TCP_INFO_LAST_DATA_RECV)
        except (AttributeError, OSError, struct.error, ValueError):
            return None
        return float(idle_ms) / 1000.0

    # -- frames -------------------------------------------------------------------------------
    #
    # RFC 6455 rules applied here (picows already refuses reserved opcodes, fragmented or
    # oversized control frames, masked server frames and bad close frames):
    # 1. Reserved bits (RSV1-3) set on any frame: no extension was negotiated; fail with 1002.
    # 2. A text message must be valid UTF-8; fail with 1007, at the first fragment that shows it.
    # 3. A message in fragments is one TEXT or BINARY frame then CONTINUATION frames up to the
    #    one with FIN; a new TEXT or BINARY frame before it, or a CONTINUATION with no message
    #    started, fails the connection with 1002. Control frames may come in between.
    # 4. A message is at most max_frame_size bytes, fragments summed; past it, fail with 1009.
    # 5. Failing the connection sends a close frame and processes no further frame.

    def _on_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is _TEXT and frame.fin and not (frame.rsv1 or frame.rsv2 or frame.rsv3):
            payload = frame.get_payload_as_memoryview()
            try:
                str(payload, "utf-8")  # rule 2, without a copy of the bytes
            except UnicodeDecodeError:
                self._invalid_text()
                return
            self._messages += 1
            handler = self._frame_handler
            if handler is not None:
                try:
                    handler(payload)
                except Exception as exc:
                    self._callback_failed("frame_handler", exc)
            if self._listeners["message"]:
                self._emit("message", bytes(payload))
            return
        self._control_frames += 1
        self._on_other_frame(transport, frame, msg_type)

    def _on_other_frame(self, transport: WSTransport, frame: WSFrame, msg_type: WSMsgType) -> None:
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self._protocol_error(f"{msg_type.name} frame with reserved bits set")
        elif msg_type is WSMsgType.PING:
            self._queue_pong(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.PONG:
            if self._liveness is not None:
                rtt = self._liveness.on_pong(frame.get_payload_as_bytes(), self._clock())
                if rtt is not None:
                    self._latency.add(rtt)
        elif msg_type is WSMsgType.CLOSE:
            self._on_close_frame(frame.get_payload_as_bytes())
        elif msg_type is _CONTINUATION:
            self._protocol_error("CONTINUATION frame with no fragmented message started")
        elif not frame.fin:  # the first frame of a fragmented TEXT or BINARY message
            self._start_message(frame, msg_type)
        else:
            self._binary_message(frame.payload_size)

    def _binary_message(self, size: int) -> None:
        self._report(
            Severity.WARNING,
            "binary_frame",
            f"binary frame of {size} bytes on a JSON stream; dropped",
            ProtocolError("binary frame on a JSON stream"),
        )

    def _invalid_text(self) -> None:
        problem = "text message that is not valid UTF-8"
        error = ProtocolError(problem)
        self._report(Severity.ERROR, "protocol_error", f"{problem}: closing with 1007", error)
        self._close_code, self._close_reason = 1007, problem
        self._disconnect(WSCloseCode.INVALID_TEXT)

    def _start_message(self, frame: WSFrame, msg_type: WSMsgType) -> None:
        self._fragment_type = msg_type
        self._fragments = bytearray()
        self._utf8.reset()
        if self._listener is not None:
            self._listener.divert(self._assemble)
        self._add_fragment(frame)

    def _assemble(self, transport: WSTransport, frame: WSFrame) -> None:
        """Every frame of the socket while a fragmented message is unfinished (rule 3)."""
        if transport is not self._transport:
            return
        try:
            msg_type = frame.msg_type
            if msg_type is _CONTINUATION and not (frame.rsv1 or frame.rsv2 or frame.rsv3):
                self._add_fragment(frame)
            elif msg_type is _TEXT or msg_type is _BINARY:
                self._control_frames += 1
                self._protocol_error(f"{msg_type.name} frame inside an unfinished message")
            else:
                self._control_frames += 1
                self._on_other_frame(transport, frame, msg_type)
        except Exception as exc:  # never let anything reach picows
            self._report(Severity.ERROR, "frame_error", f"failed to handle a frame: {exc}", exc)

    def _end_message(self) -> None:
        self._fragment_type = None
        self._fragments = bytearray()
        if self._listener is not None and not self._leaving:
            self._listener.divert(None)

    def _add_fragment(self, frame: WSFrame) -> None:
        fragments = self._fragments
        if len(fragments) + frame.payload_size > self.max_frame_size:  # rule 4
            self._end_message()
            self._close_code, self._close_reason = 1009, "message too big"
            self._report(Severity.ERROR, "message_too_big", "fragmented message over the cap", None)
            self._disconnect(WSCloseCode.MESSAGE_TOO_BIG)
            return
        payload = frame.get_payload_as_memoryview()
        binary = self._fragment_type is _BINARY
        if not binary:
            try:
                self._utf8.decode(payload, frame.fin)  # rule 2, fragment by fragment
            except UnicodeDecodeError:
                self._end_message()
                self._invalid_text()
                return
        fragments += payload
        if not frame.fin:
            return
        data = bytes(fragments)
        self._end_message()
        router = self._socket_router
        if router is not None and self._transport is not None:  # it counts it as consumed
            whole = _Message(_BINARY if binary else _TEXT, data)
            try:
                router(self._transport, whole)  # type: ignore[arg-type]
            except Exception as exc:
                self._callback_failed("frame_router", exc)
            return
        if binary:
            self._binary_message(len(data))
            return
        self._messages += 1
        if self._frame_handler is not None:
            try:
                self._frame_handler(memoryview(data))
            except Exception as exc:
                self._callback_failed("frame_handler", exc)
        if self._listeners["message"]:
            self._emit("message", data)

    def _on_close_frame(self, payload: bytes) -> None:
        code, reason, problem = parse_close_payload(payload)
        if problem is not None:
            self._protocol_error(problem)
            return
        self._close_code, self._close_reason = code, reason
        reply = _WIRE_CLOSE_CODES.get(code, WSCloseCode.OK) if code != 1005 else WSCloseCode.OK
        self._disconnect(reply)

    def _protocol_error(self, problem: str) -> None:
        error = ProtocolError(problem)
        self._report(Severity.ERROR, "protocol_error", f"{problem}: closing with 1002", error)
        self._close_code, self._close_reason = 1002, problem
        self._disconnect(WSCloseCode.PROTOCOL_ERROR)

    def _listener_closed(self, listener: _Listener, transport: WSTransport) -> None:
        if self._listener is listener:  # not a socket this connection already gave up
            self._socket_closed(transport)

    def _socket_closed(self, transport: WSTransport) -> None:
        if self._transport is transport or self._transport is None:
            self._teardown_socket()

    def _teardown_socket(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._read_socket_bytes()
        self._bytes_before += self._socket_bytes
        self._socket_bytes = 0
        transport, self._transport = self._transport, None
        self._listener = None
        self._liveness = None
        self._outgoing.clear()
        self._pending_pong = None
        self._ping_wanted = False
        self._fragment_type = None
        self._fragments = bytearray()
        if transport is not None and not transport.is_disconnected:
            transport.disconnect(graceful=False)
        done = self._socket_done
        if done is not None and not done.done():
            done.set_result(None)

    def _disconnect(self, code: WSCloseCode | None) -> None:
        """Leave the socket: with a close frame carrying ``code``, or without one (None).

        The close frame counts toward the outgoing budget like any frame: it takes a slot of the
        pacer's window, ahead of anything still queued (which is dropped), and waits for one at
        most ``_CLOSE_FRAME_WAIT`` (half a second: never reached with two frames a second or
        more); a slot further away than that closes the socket without a close frame rather than
        exceed the budget. From the decision on, no further frame of the socket is processed and
        nothing more is sent (rule 5).
        """
        transport = self._transport
        if transport is None or self._leaving:
            return
        self._leaving = True
        if self._listener is not None:
            self._listener.divert(self._ignore_frame)
        self._outgoing.clear()
        self._pending_pong = None
        self._ping_wanted = False
        if code is None or transport.is_close_frame_sent:
            self._shut(transport, graceful=code is not None)
            return
        # A slot of the window, without the spacing: the close frame is the socket's last, so it
        # cannot start a burst that arrives bunched.
        pacer, now = self._pacer, self._clock()
        delay = 0.0 if pacer.in_window(now) < pacer.max_per_window else pacer.delay(now)
        if delay <= 0:
            self._send_close(transport, code)
        elif delay <= _CLOSE_FRAME_WAIT:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(delay, self._send_close, transport, code)
        else:
            self._shut(transport, graceful=False)

    def _ignore_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Frames that arrive once the connection is leaving the socket."""

    def _send_close(self, transport: WSTransport, code: WSCloseCode) -> None:
        self._close_timer = None
        if transport is not self._transport:
            return
        try:
            if not transport.is_close_frame_sent:
                transport.send_close(code)
                self._pacer.record(self._clock())
                self._sent += 1
        except (WSError, OSError, RuntimeError) as exc:
            logger.debug("close frame to %s failed: %s", self.url, exc)
        self._shut(transport, graceful=True)

    def _shut(self, transport: WSTransport, *, graceful: bool) -> None:
        try:
            transport.disconnect(graceful=graceful)
        except (WSError, OSError, RuntimeError) as exc:
            logger.debug("disconnect of %s failed: %s", self.url, exc)
            self._teardown_socket()

    # -- outgoing -----------------------------------------------------------------------------

    def _queue_pong(self, payload: bytes) -> None:
        # Only the latest ping needs an answer: coalesce, so a ping flood cannot eat the budget.
        if self._pending_pong is not None:
            self._pending_pong[:] = payload
            return
        self._pending_pong = bytearray(payload)
        self._flush()

    def _flush(self) -> None:
        self._flush_timer = None
        transport = self._transport
        if transport is None or self._leaving:
            return
        pacer = self._pacer
        while self._pending_pong is not None or self._ping_wanted or self._outgoing:
            now = self._clock()
            delay = pacer.delay(now)
            if delay > 0:
                if self._flush_timer is None:
                    loop = asyncio.get_running_loop()
                    self._flush_timer = loop.call_later(delay, self._flush)
                return
            try:
                if self._pending_pong is not None:
                    payload, self._pending_pong = bytes(self._pending_pong), None
                    transport.send_pong(payload)
                elif self._ping_wanted:
                    self._ping_wanted = False
                    liveness = self._liveness
                    if liveness is not None:
                        frames = self._data_frames() + self._control_frames
                        transport.send_ping(liveness.ping_payload(now, frames))
                else:
                    msg_type, data = self._outgoing.popleft()
                    transport.send(msg_type, data)
            except (WSError, OSError, RuntimeError) as exc:
                self._report(Severity.WARNING, "send_failed", f"send failed: {exc}", None)
                return
            pacer.record(now)
            self._sent += 1

    # -- events and errors --------------------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        self._state = check_transition(self._state, state)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in tuple(self._listeners[event]):
            try:
                callback(*args)
            except Exception as exc:
                self._callback_failed(f"{event} listener", exc)

    def _callback_failed(self, what: str, exc: Exception) -> None:
        self._listener_errors += 1
        error = CallbackError(f"{what} raised {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._report(Severity.ERROR, "listener_error", str(error), error, callback=what)

    def _report(
        self,
        severity: Severity,
        code: str,
        message: str,
        error: BaseException | None,
        **context: Any,
    ) -> None:
        self._errors += 1
        report = ErrorReport(severity, code, message, error, {"url": self.url, **context})
        try:
            self._reporter(report)
        except Exception:
            logger.exception("the error reporter raised while reporting %s", code)
        for callback in tuple(self._listeners["error"]):
            try:
                callback(report)
            except Exception:
                # An error listener that raises must not recurse into error reporting.
                self._listener_errors += 1
                logger.exception("an error listener raised")

    def _sends_api_key(self) -> bool:
        return any(name.lower() == "x-mbx-apikey" for name in self.extra_headers or ())

    def _translate(self, exc: BaseException) -> Exception:
        """Foreign connect errors become fastmd errors (the original is the cause)."""
        error: Exception
        if isinstance(exc, WSInvalidStatusError):
            response = exc.response
            status = int(response.status) if response is not None else None
            retry_after = None
            if response is not None:
                header = response.headers.get("Retry-After")
                with contextlib.suppress(TypeError, ValueError):
                    retry_after = float(header) if header is not None else None
            if status == 401 or (status == 403 and self._sends_api_key()):
                error = AuthenticationError(
                    f"upgrade refused with HTTP {status}: the API key (X-MBX-APIKEY) was "
                    "missing or not accepted; not retried",
                    status=status,
                    retry_after=retry_after,
                )
            else:
                error = HandshakeError(
                    f"upgrade refused with HTTP {status}", status=status, retry_after=retry_after
                )
        elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
            error = TLSError(f"TLS failure: {exc}")
        elif isinstance(exc, TimeoutError):
            error = FastmdTimeoutError(f"no connection within {self.open_timeout:g} s")
        elif isinstance(exc, WSError):
            error = ConnectError(f"WebSocket handshake failed: {exc}")
        elif isinstance(exc, OSError):
            error = ConnectError(f"cannot connect: {exc}")
        else:
            error = ConnectError(f"connection attempt failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
