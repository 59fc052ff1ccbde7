"""fastmd.Connection against the simulator and small fake servers: rows 1-9, 11, 16-18, 28 and 29
of the fault matrix (shared/docs/reliability.md). Timers are short; no real sleep exceeds ~1 s."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trustme
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

import fastmd
from fastmd import Backoff, CircuitBreakerPolicy, ConnectionState, ErrorReport, Heartbeat
from fastmd.aio.reporting import Reporter
from fastmd.aio.router import frame_router
from fastmd.aio.routes import RouteTable
from fastmd.core.streams import parse_stream
from fastmd.errors import DecodeError
from fastmd.sim import Exchange, SimLimits

FAST = Backoff(initial_delay=0.02, max_delay=0.1, factor=2.0, jitter=0.0, max_attempts=None)


class Recorder:
    """Collects a connection's events with their times."""

    def __init__(self, conn: fastmd.Connection) -> None:
        self.events: list[tuple[float, str, tuple[Any, ...]]] = []
        self.reports: list[ErrorReport] = []
        self.messages: list[bytes] = []
        for name in ("connect", "disconnect", "reconnecting", "circuit_open", "circuit_closed"):
            conn.on(name, self._make(name))  # type: ignore[call-overload]
        conn.on("error", self.reports.append)
        conn.on("message", self.messages.append)

    def _make(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.events.append((time.monotonic(), name, args))

        return record

    def names(self) -> list[str]:
        return [name for _, name, _ in self.events]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for _, n, args in self.events if n == name]

    def codes(self) -> list[str]:
        return [report.code for report in self.reports]

    async def wait(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; events: {self.names()}"
            await asyncio.sleep(0.005)


def quiet() -> Callable[[ErrorReport], None]:
    return lambda report: None


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    # Server pings every 0.4 s: often enough to test pongs, rare enough to leave room in the
    # client's 4 frames a second for its own pings and messages.
    limits = SimLimits.for_venue("binance-spot").with_(ping_interval=0.4, pong_timeout=2.0)
    async with Exchange(symbols=["BTCUSDT"], seed=1, rate=0, limits=limits) as ex:
        yield ex


def trade_url(ex: Exchange) -> str:
    return f"{ex.ws_url}/ws/btcusdt@trade"


async def open_conn(url: str, **options: Any) -> tuple[fastmd.Connection, Recorder]:
    options.setdefault("backoff", FAST)
    options.setdefault("error_reporter", quiet())
    conn = fastmd.Connection(url, **options)
    recorder = Recorder(conn)
    return conn, recorder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the basics ------------------------------------------------------------------------------


async def test_receives_frames_and_counts_them(exchange: Exchange) -> None:
    conn, rec = await open_conn(trade_url(exchange))
    frames: list[bytes] = []
    conn.set_frame_handler(lambda view: frames.append(bytes(view)))
    assert await conn.connect(timeout=2)
    assert conn.state is ConnectionState.OPEN
    await exchange.flood("BTCUSDT", 50)
    await rec.wait(lambda: len(rec.messages) == 50)
    assert frames == rec.messages
    decoder = fastmd.Decoder()
    ids = [decoder.decode(f, stream="btcusdt@trade").event.trade_id for f in frames]
    assert ids == list(range(ids[0], ids[0] + 50))
    stats = conn.stats
    assert stats.messages == 50
    # bytes the socket received: the payloads plus WebSocket framing and the HTTP upgrade
    assert sum(len(f) for f in frames) < stats.bytes < sum(len(f) for f in frames) + 1000
    assert stats.state == "OPEN"
    assert stats.uptime > 0
    assert stats.reconnects == 0
    await conn.close()
    assert rec.names() == ["connect", "disconnect"]
    assert conn.state is ConnectionState.CLOSED


async def test_heartbeat_measures_latency(exchange: Exchange) -> None:
    conn, rec = await open_conn(trade_url(exchange), heartbeat=Heartbeat(interval=0.05, timeout=1))
    assert await conn.connect(timeout=2)
    await rec.wait(lambda: conn.stats.latency.samples >= 3)
    latency = conn.stats.latency
    assert latency.last is not None
    assert 0 < latency.last < 0.5
    assert latency.p99 is not None
    assert latency.mean is not None
    await conn.close()


async def test_server_pings_are_answered_with_their_payload(exchange: Exchange) -> None:
    # The simulator pings every 0.4 s and drops the socket 2 s after an unanswered ping.
    conn, rec = await open_conn(trade_url(exchange))
    assert await conn.connect(timeout=2)
    await asyncio.sleep(0.9)
    server_side = exchange.connections[0]
    assert any(kind == "pong" for _, kind in server_side.incoming)
    assert conn.state is ConnectionState.OPEN
    assert "disconnect" not in rec.names()
    await conn.close()


async def test_outgoing_frames_are_paced_on_the_server_side(exchange: Exchange) -> None:
    # Binance closes with 1008 past 5 frames a second; 20 sends must leave at most 4 a second.
    conn, rec = await open_conn(f"{exchange.ws_url}/ws")
    assert await conn.connect(timeout=2)
    for i in range(8):
        assert conn.send(f'{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}')
    await rec.wait(lambda: len(rec.messages) == 8, timeout=8)
    times = [t for t, kind in exchange.connections[0].incoming if kind in ("text", "ping", "pong")]
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0) <= 4
    assert "disconnect" not in rec.names()
    await conn.close()


# -- rows 1, 2, 3, 4: connect and handshake ----------------------------------------------------


async def test_refused_backs_off_then_opens_the_circuit_then_half_opens() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    conn, rec = await open_conn(
        url,
        backoff=Backoff(initial_delay=0.01, max_delay=0.04, factor=2, jitter=0.5, max_attempts=9),
        circuit_breaker=CircuitBreakerPolicy(failure_threshold=4, cooldown=0.3),
    )
    assert await conn.connect(timeout=0.25) is False
    await rec.wait(lambda: len(rec.of("circuit_open")) == 1)
    opened_at = next(t for t, name, _ in rec.events if name == "circuit_open")
    delays = [delay for _, delay in rec.of("reconnecting")]
    assert len(delays) == 3  # failures 1-3 back off; the 4th opens the circuit
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(0.04, 0.01 * 2 ** (attempt - 1))
        assert ceiling * 0.5 <= delay <= ceiling
    assert rec.of("circuit_open") == [(0.3,)]
    assert conn.state is ConnectionState.CIRCUIT_OPEN
    assert rec.codes().count("connect_failed") == 4
    # After the cooldown exactly one trial attempt is made; it fails and the circuit reopens.
    await rec.wait(lambda: rec.codes().count("connect_failed") == 5, timeout=2)
    trial_at = time.monotonic()
    assert trial_at - opened_at >= 0.3
    await rec.wait(lambda: rec.codes().count("circuit_open") == 2)
    assert rec.codes().count("connect_failed") == 5
    await conn.close()


async def test_half_open_trial_success_closes_the_circuit() -> None:
    port = free_port()
    conn, rec = await open_conn(
        f"ws://127.0.0.1:{port}/ws",
        circuit_breaker=CircuitBreakerPolicy(failure_threshold=2, cooldown=0.4),
    )
    assert await conn.connect(timeout=0.2) is False
    await rec.wait(lambda: len(rec.of("circuit_open")) == 1)
    async with Exchange(symbols=["BTCUSDT"], rate=0, port=port):
        assert await conn.connect(timeout=2)
        assert rec.of("circuit_closed") == [()]
        assert conn.state is ConnectionState.OPEN
        await conn.close()


async def test_syn_blackhole_abandons_each_attempt_at_open_timeout() -> None:
    # A listener whose accept queue is full drops SYNs: connect() hangs like a blackholed host.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        conn, rec = await open_conn(f"ws://127.0.0.1:{port}/ws", open_timeout=0.25)
        started = time.monotonic()
        assert await conn.connect(timeout=0.9) is False
        timeouts = [r for r in rec.reports if isinstance(r.error, fastmd.FastmdTimeoutError)]
        assert len(timeouts) >= 2
        first_failure = rec.events[0][0] if rec.events else time.monotonic()
        assert 0.25 * 0.9 <= first_failure - started <= 0.25 * 1.1 + 0.05
        # attempts never overlap: failures are at least open_timeout apart
        await conn.close()
        assert time.monotonic() - started < 2.0
    finally:
        for sock in (*fillers, listener):
            sock.close()


class _Idle(WSListener):
    pass


async def test_tls_failure_is_fatal_and_opens_the_circuit() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    server = await ws_create_server(lambda request: _Idle(), "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        conn, rec = await open_conn(f"wss://127.0.0.1:{port}/ws")  # default context: CA unknown
        assert await conn.connect(timeout=1) is False
        await rec.wait(lambda: len(rec.of("circuit_open")) == 1)
        tls = [r for r in rec.reports if r.code == "tls_error"]
        assert len(tls) == 1  # no fast retry loop
        assert isinstance(tls[0].error, fastmd.TLSError)
        assert tls[0].severity is fastmd.Severity.CRITICAL
        assert isinstance(tls[0].error.__cause__, ssl.SSLError)
        # With the CA trusted, the same server is fine.
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        ok, _ = await open_conn(f"wss://127.0.0.1:{port}/ws", ssl_context=client_context)
        assert await ok.connect(timeout=2)
        await ok.close()
        await conn.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("status", [429, 418])
async def test_rate_limited_upgrade_waits_retry_after(exchange: Exchange, status: int) -> None:
    fault = exchange.faults.refuse_upgrades(status, retry_after=0.4)
    conn, rec = await open_conn(trade_url(exchange))
    assert await conn.connect(timeout=0.2) is False
    refused = [r for r in rec.reports if r.code == "handshake_rejected"]
    assert refused[0].error.status == status  # type: ignore[union-attr]
    retry_after = refused[0].error.retry_after  # type: ignore[union-attr]
    assert retry_after is not None
    assert retry_after >= 0.4  # the simulator sends whole seconds
    assert rec.of("reconnecting")[0][1] >= retry_after
    fault.clear()
    assert await conn.connect(timeout=retry_after + 0.5)
    assert len(refused) == 1  # zero connects before Retry-After
    await conn.close()


async def test_503_upgrade_follows_normal_backoff(exchange: Exchange) -> None:
    exchange.faults.refuse_upgrades(503, duration=0.15)
    conn, rec = await open_conn(trade_url(exchange))
    assert await conn.connect(timeout=2)
    delays = [delay for _, delay in rec.of("reconnecting")]
    assert delays
    assert all(delay <= 0.1 for delay in delays)
    await conn.close()


async def test_handshake_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        await asyncio.sleep(5)

    async with RawServer(silent) as port:
        conn, rec = await open_conn(f"ws://127.0.0.1:{port}/ws", open_timeout=0.2)
        assert await conn.connect(timeout=0.35) is False
        assert any(isinstance(r.error, fastmd.FastmdTimeoutError) for r in rec.reports)
        await conn.close()


# -- rows 5, 6, 7, 8, 9, 11: mid-stream transport ----------------------------------------------


@pytest.mark.parametrize("mode", ["fin", "rst"])
async def test_socket_killed_mid_stream_reconnects_fast(exchange: Exchange, mode: str) -> None:
    conn, rec = await open_conn(trade_url(exchange), backoff=Backoff(jitter=0.0))
    assert await conn.connect(timeout=2)
    dropped_at = time.monotonic()
    assert exchange.faults.drop_connections(mode=mode) == 1  # type: ignore[arg-type]
    await rec.wait(lambda: len(rec.of("connect")) == 2, timeout=3)
    reconnected_at = rec.events[-1][0]
    assert rec.of("disconnect")[0][0] == 1006
    assert rec.of("reconnecting")[0] == (1, 1.0)
    assert reconnected_at - dropped_at <= 1.0 + 0.5  # the first backoff bound plus slack
    assert conn.stats.reconnects == 1
    await exchange.flood("BTCUSDT", 3)
    await rec.wait(lambda: len(rec.messages) == 3)
    await conn.close()


async def test_half_open_link_detected_within_interval_plus_timeout(exchange: Exchange) -> None:
    heartbeat = Heartbeat(interval=0.2, timeout=0.2)
    conn, rec = await open_conn(trade_url(exchange), heartbeat=heartbeat)
    assert await conn.connect(timeout=2)
    silent_at = time.monotonic()
    exchange.faults.half_open()
    await rec.wait(lambda: "heartbeat_timeout" in rec.codes(), timeout=2)
    detected = time.monotonic() - silent_at
    assert detected <= (0.2 + 0.2) * 1.1 + 0.05
    exchange.faults.clear()
    await rec.wait(lambda: len(rec.of("connect")) == 2)
    await conn.close()


async def test_ping_alive_but_data_dead_is_reconnected(exchange: Exchange) -> None:
    conn, rec = await open_conn(
        trade_url(exchange), heartbeat=Heartbeat(interval=0.05, timeout=0.5), stale_after=0.3
    )
    assert await conn.connect(timeout=2)
    await exchange.flood("BTCUSDT", 5)
    exchange.faults.stall()
    stalled_at = time.monotonic()
    await rec.wait(lambda: "stale" in rec.codes(), timeout=2)
    assert time.monotonic() - stalled_at <= 0.3 + 0.15
    assert "heartbeat_timeout" not in rec.codes()  # pongs kept coming
    await conn.close()


class _DataNoPong(WSListener):
    """A server that streams a frame every 20 ms and never answers pings."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.task = asyncio.get_running_loop().call_later(0.02, self.tick)

    def tick(self) -> None:
        if not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, b'{"result":null,"id":1}')
            self.task = asyncio.get_running_loop().call_later(0.02, self.tick)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.task.cancel()


async def test_data_counts_as_liveness_when_pongs_never_come() -> None:
    server = await ws_create_server(
        lambda request: _DataNoPong(), "127.0.0.1", 0, enable_auto_pong=False
    )
    port = server.sockets[0].getsockname()[1]
    try:
        conn, rec = await open_conn(
            f"ws://127.0.0.1:{port}/ws", heartbeat=Heartbeat(interval=0.05, timeout=0.1)
        )
        assert await conn.connect(timeout=2)
        await asyncio.sleep(0.6)  # about 10 pings, none answered
        assert "heartbeat_timeout" not in rec.codes()
        assert conn.state is ConnectionState.OPEN
        assert conn.stats.latency.samples == 0
        await conn.close()
    finally:
        server.close()
        await server.wait_closed()


class RawServer:
    """An asyncio TCP server whose handlers are tracked and cancelled (and their sockets
    closed) when the test ends, so no transport outlives the test's event loop."""

    def __init__(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]
    ) -> None:
        self._handler = handler
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await self.server.wait_closed()


def _accept_key(key: str) -> str:
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def _raw_ws_server(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    greeting: bytes = b"",
) -> RawServer:
    """A hand-written WebSocket server: does the upgrade, then runs ``script``. ``greeting``
    (frames) goes out in the same write as the upgrade response."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {_accept_key(key)}\r\n\r\n".encode()
            + greeting
        )
        await writer.drain()
        await script(reader, writer)

    return RawServer(handle)


async def test_slow_large_frame_is_not_a_dead_link() -> None:
    payload = b'{"result":null,"id":"' + b"x" * 200_000 + b'"}'

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x81\x7f" + len(payload).to_bytes(8, "big"))
        for start in range(0, len(payload), 20_000):  # 10 chunks over ~1 s
            writer.write(payload[start : start + 20_000])
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)

    async with _raw_ws_server(drip) as port:
        conn, rec = await open_conn(
            f"ws://127.0.0.1:{port}/ws", heartbeat=Heartbeat(interval=0.1, timeout=0.25)
        )
        assert await conn.connect(timeout=2)
        await rec.wait(lambda: len(rec.messages) == 1, timeout=3)
        assert rec.messages[0] == payload
        assert "heartbeat_timeout" not in rec.codes()
        await conn.close()


# -- rows 16, 17, 18: server-initiated closes --------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012, 1013])
async def test_every_server_close_code_reconnects(exchange: Exchange, code: int) -> None:
    conn, rec = await open_conn(trade_url(exchange))
    assert await conn.connect(timeout=2)
    exchange.faults.drop_connections(mode="close", code=code, reason="bye")
    await rec.wait(lambda: len(rec.of("connect")) == 2)
    assert rec.of("disconnect")[0] == (code, "bye")
    assert conn.last_close == (code, "bye")
    await conn.close()


async def test_1008_lengthens_the_backoff(exchange: Exchange) -> None:
    backoff = Backoff(initial_delay=0.05, max_delay=1.0, jitter=0.0)
    conn, rec = await open_conn(trade_url(exchange), backoff=backoff)
    assert await conn.connect(timeout=2)
    exchange.faults.drop_connections(mode="close", code=1001)
    await rec.wait(lambda: len(rec.of("connect")) == 2)
    exchange.faults.drop_connections(mode="close", code=1008, reason="Too many requests")
    await rec.wait(lambda: len(rec.of("connect")) == 3)
    normal, after_1008 = (delay for _, delay in rec.of("reconnecting"))
    assert after_1008 >= 4 * backoff.initial_delay
    assert after_1008 > normal
    await conn.close()


@pytest.mark.parametrize(
    "close_payload", [b"\x03\xe7", b"\x03\xec", b"\x03\xf7", b"\x13\x88", b"\x03\xe8\xff\xfe", b"x"]
)
async def test_invalid_close_frame_is_a_protocol_error(close_payload: bytes) -> None:
    replies: list[bytes] = []

    async def bad_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes([0x88, len(close_payload)]) + close_payload)
        await writer.drain()
        header = await reader.readexactly(2)
        mask = await reader.readexactly(4)
        body = await reader.readexactly(header[1] & 0x7F)
        replies.append(bytes(b ^ mask[i % 4] for i, b in enumerate(body)))

    async with _raw_ws_server(bad_close) as port:
        conn, rec = await open_conn(f"ws://127.0.0.1:{port}/ws")
        assert await conn.connect(timeout=2)
        await rec.wait(lambda: "protocol_error" in rec.codes() and len(rec.of("connect")) >= 2)
        await conn.close()
    # picows answers a non-UTF-8 reason with 1007 (invalid payload data) itself; both are errors
    expected = 1007 if close_payload == b"\x03\xe8\xff\xfe" else 1002
    assert replies[0][:2] == expected.to_bytes(2, "big")
    assert rec.of("disconnect")[0][0] == expected


# -- RFC 6455 frames: fragments, reserved bits, UTF-8, binary frames (issue 12, item 8) ---------

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def trade(trade_id: int) -> bytes:
    return (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":%d,"p":"1.0",'
        b'"q":"2.0","T":1,"m":true,"M":true}}' % trade_id
    )


TRADE = trade(7)


def ws_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """One frame as a server sends it (unmasked)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    size = len(payload)
    if size < 126:
        return head + bytes([size]) + payload
    if size < 65536:
        return head + bytes([126]) + size.to_bytes(2, "big") + payload
    return head + bytes([127]) + size.to_bytes(8, "big") + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One frame from the client (masked): ``(opcode, payload)``."""
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4)
    body = await reader.readexactly(size)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


class Scripted:
    """A raw server that writes ``frames`` on its first connection, then records what the
    client sends (``(time, opcode, payload)``) until the client's close frame; later connections
    (the reconnects) stay open and silent."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.connections = 0
        self.received: list[tuple[float, int, bytes]] = []

    def close_code(self) -> int | None:
        codes = [int.from_bytes(p[:2], "big") for _, op, p in self.received if op == CLOSE]
        return codes[0] if codes else None

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections > 1:
            await reader.read()
            return
        writer.write(b"".join(self.frames))
        await writer.drain()
        while True:
            opcode, payload = await read_frame(reader)
            self.received.append((time.monotonic(), opcode, payload))
            if opcode == CLOSE:
                return


class Routed:
    """The Client's real frame router on a connection: one route (btcusdt@trade)."""

    def __init__(self, conn: fastmd.Connection) -> None:
        self.events: list[Any] = []
        self.decode_errors: list[DecodeError] = []
        self.replies: list[Any] = []
        table = RouteTable("binance-spot", Reporter(quiet()), lambda gap: None, slow_callback=1.0)
        route = table.add("btcusdt@trade", parse_stream("btcusdt@trade"))
        route.callbacks = (self.events.append,)
        route.single = self.events.append
        decoder = fastmd.Decoder()
        decoder.register(["btcusdt@trade"])
        conn.set_frame_router(
            *frame_router(
                decoder,
                table,
                conn.handle_frame,
                on_reply=self.replies.append,
                on_unrouted=lambda message: None,
                on_decode_error=self.decode_errors.append,
            )
        )


class Run:
    """What one scripted run saw: the server's side, the connection's events, the router's."""

    def __init__(self, script: Scripted, rec: Recorder, router: Routed | None) -> None:
        self.script = script
        self.rec = rec
        self.router = router
        self.messages = 0  # conn.stats.messages before close()

    def events(self) -> list[Any]:
        return self.router.events if self.router is not None else []


async def run_script(
    frames: list[bytes], *, routed: bool, until: Callable[[Run], bool], **options: Any
) -> Run:
    script = Scripted(frames)
    async with _raw_ws_server(script) as port:
        conn, rec = await open_conn(f"ws://127.0.0.1:{port}/ws", **options)
        run = Run(script, rec, Routed(conn) if routed else None)
        assert await conn.connect(timeout=2)
        await rec.wait(lambda: until(run))
        run.messages = conn.stats.messages
        await conn.close()
    return run


def reconnected(run: Run) -> bool:
    return len(run.rec.of("connect")) >= 2


async def test_close_frame_takes_a_slot_of_the_outgoing_budget() -> None:
    # Two frames a second: the two texts fill the window, so the close frame waits for the slot
    # the first one frees (about 0.5 s after close() is called), never a third frame in one
    # second, and close() still returns within its bound.
    script = Scripted([])
    async with _raw_ws_server(script) as port:
        conn, rec = await open_conn(f"ws://127.0.0.1:{port}/ws", max_outgoing_per_second=2)
        assert await conn.connect(timeout=2)
        assert conn.send("a")
        assert conn.send("b")  # leaves 0.5 s after "a" (the pacer's spacing)
        await rec.wait(lambda: len(script.received) == 2)
        started = time.monotonic()
        await conn.close()
        elapsed = time.monotonic() - started
        await rec.wait(lambda: script.close_code() is not None)
    assert [(op, payload) for _, op, payload in script.received] == [
        (TEXT, b"a"),
        (TEXT, b"b"),
        (CLOSE, b"\x03\xe8"),
    ]
    first, second, close = (t for t, _, _ in script.received)
    assert close - first >= 0.95  # the window of "a" had to end
    assert close - second >= 0.45
    assert 0.3 < elapsed < 1.1
    assert conn.stats.sent == 3
    assert conn.send("c") is False


async def test_a_close_frame_never_exceeds_the_budget_nor_delays_close() -> None:
    # One frame a second, spent just now: the close frame's slot is a second away, more than
    # the half second a close frame may wait, so the socket closes without one (the server sees
    # the TCP close) rather than exceed the budget, and close() returns at once.
    script = Scripted([])
    async with _raw_ws_server(script) as port:
        conn, rec = await open_conn(f"ws://127.0.0.1:{port}/ws", max_outgoing_per_second=1)
        assert await conn.connect(timeout=2)
        assert conn.send("a")
        assert conn.send("b")  # queued for a second later; dropped by the close
        await rec.wait(lambda: len(script.received) == 1)
        started = time.monotonic()
        await conn.close()
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.1)
    assert elapsed < 0.5
    assert [(op, payload) for _, op, payload in script.received] == [(TEXT, b"a")]
    assert conn.stats.sent == 1


@pytest.mark.parametrize("routed", [False, True], ids=["plain", "routed"])
@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        pytest.param(
            [ws_frame(TEXT, b'{"a":', fin=False), ws_frame(TEXT, TRADE)],
            "TEXT frame inside an unfinished message",
            id="text-inside-text",
        ),
        pytest.param(
            [ws_frame(TEXT, b'{"a":', fin=False), ws_frame(BINARY, b"\x00")],
            "BINARY frame inside an unfinished message",
            id="binary-inside-text",
        ),
        pytest.param(
            [ws_frame(BINARY, b"\x00", fin=False), ws_frame(PING, b"p"), ws_frame(TEXT, TRADE)],
            "TEXT frame inside an unfinished message",
            id="text-inside-binary-after-a-ping",
        ),
        pytest.param(
            [ws_frame(CONT, b"}")],
            "CONTINUATION frame with no fragmented message started",
            id="stray-continuation",
        ),
    ],
)
async def test_a_data_frame_that_breaks_fragmentation_fails_with_1002(
    frames: list[bytes], problem: str, routed: bool
) -> None:
    # RFC 6455 5.4: after a first fragment only CONTINUATION (or control) frames may come; a
    # CONTINUATION needs a message to continue. Either mistake fails the connection (1002),
    # is reported, and the usual reconnect follows. The trade inside a message is never data.
    run = await run_script(frames, routed=routed, until=reconnected)
    assert run.script.close_code() == 1002
    assert run.rec.of("disconnect")[0] == (1002, problem)
    assert [r.message for r in run.rec.reports if r.code == "protocol_error"] == [
        f"{problem}: closing with 1002"
    ]
    assert run.rec.messages == []
    assert run.events() == []


@pytest.mark.parametrize("routed", [False, True], ids=["plain", "routed"])
async def test_fragmented_message_is_assembled_around_control_frames(routed: bool) -> None:
    frames = [
        ws_frame(TEXT, TRADE[:10], fin=False),
        ws_frame(PING, b"between"),
        ws_frame(CONT, TRADE[10:50], fin=False),
        ws_frame(CONT, TRADE[50:]),
        ws_frame(TEXT, trade(8)),  # an ordinary frame after the message: the usual path again
    ]

    def done(run: Run) -> bool:
        delivered = len(run.events()) if routed else len(run.rec.messages)
        return delivered == 2 and bool(run.script.received)

    run = await run_script(frames, routed=routed, until=done)
    assert run.script.received[0][1:] == (PONG, b"between")
    assert run.messages == 2
    assert run.rec.of("disconnect") == [(1000, "closed by user")]
    assert run.rec.reports == []
    if routed:  # given to the router as one frame
        assert [event.trade_id for event in run.events()] == [7, 8]
        assert run.rec.messages == []
    else:
        assert run.rec.messages == [TRADE, trade(8)]


BINARY_FRAMES = [
    ws_frame(BINARY, b"\x00\x01\x02"),
    ws_frame(BINARY, b"\x00", fin=False),
    ws_frame(CONT, b"\x01"),
    ws_frame(TEXT, TRADE),
]


async def test_binary_frames_are_reported_and_the_socket_stays_up() -> None:
    run = await run_script(BINARY_FRAMES, routed=False, until=lambda r: len(r.rec.messages) == 1)
    assert run.rec.messages == [TRADE]
    assert [(r.code, r.message) for r in run.rec.reports] == [
        ("binary_frame", "binary frame of 3 bytes on a JSON stream; dropped"),
        ("binary_frame", "binary frame of 2 bytes on a JSON stream; dropped"),
    ]
    assert run.rec.of("disconnect") == [(1000, "closed by user")]
    assert run.script.close_code() == 1000


async def test_binary_frames_are_decode_errors_of_the_router() -> None:
    # The router counts a binary frame as a decode error (category binary_frame: the pool's
    # metrics().decode_errors counts it), a fragmented one too once assembled; the socket stays
    # up and the trade after them is delivered.
    run = await run_script(BINARY_FRAMES, routed=True, until=lambda r: len(r.events()) == 1)
    assert run.router is not None
    assert [(e.category.value, str(e)) for e in run.router.decode_errors] == [
        ("binary_frame", "binary frame of 3 bytes on a JSON stream"),
        ("binary_frame", "binary frame of 2 bytes on a JSON stream"),
    ]
    assert run.messages == 3  # every data message counts (stats, liveness)
    assert run.rec.reports == []
    assert run.rec.of("disconnect") == [(1000, "closed by user")]


@pytest.mark.parametrize("routed", [False, True], ids=["plain", "routed"])
@pytest.mark.parametrize(
    ("frames", "code", "problem"),
    [
        pytest.param(
            [ws_frame(TEXT, b"hello", rsv=4)],
            1002,
            "TEXT frame with reserved bits set",
            id="rsv1-text",
        ),
        pytest.param(
            [ws_frame(TEXT, b'{"a":', fin=False), ws_frame(CONT, b"1}", rsv=1)],
            1002,
            "CONTINUATION frame with reserved bits set",
            id="rsv3-continuation",
        ),
        pytest.param(
            [ws_frame(PING, b"p", rsv=2)], 1002, "PING frame with reserved bits set", id="rsv2-ping"
        ),
        pytest.param(
            [ws_frame(TEXT, b'{"a":"\xce', fin=False), ws_frame(CONT, b'\xff"}', fin=False)],
            1007,
            "text message that is not valid UTF-8",
            id="invalid-utf8-fails-at-the-fragment",
        ),
    ],
)
async def test_reserved_bits_and_invalid_utf8_fail_the_connection(
    frames: list[bytes], code: int, problem: str, routed: bool
) -> None:
    run = await run_script(frames, routed=routed, until=reconnected)
    assert run.script.close_code() == code
    assert run.rec.of("disconnect")[0] == (code, problem)
    assert run.rec.messages == []


async def test_invalid_utf8_text_frame_fails_the_plain_connection_with_1007() -> None:
    run = await run_script([ws_frame(TEXT, b'{"a":"\xff"}')], routed=False, until=reconnected)
    assert run.script.close_code() == 1007
    assert run.rec.of("disconnect")[0] == (1007, "text message that is not valid UTF-8")


async def test_invalid_utf8_text_frame_is_a_decode_error_of_the_router() -> None:
    # Decode first: a single text frame the router cannot decode is a decode error (counted,
    # dropped, the socket stays up), whatever the reason; the connection checks UTF-8 only on
    # the frames the router declines and on fragmented messages.
    frames = [ws_frame(TEXT, b'{"a":"\xff"}'), ws_frame(TEXT, TRADE)]
    run = await run_script(frames, routed=True, until=lambda r: len(r.events()) == 1)
    assert run.router is not None
    assert len(run.router.decode_errors) == 1
    assert run.rec.of("disconnect") == [(1000, "closed by user")]


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([ws_frame(TEXT, b"x" * 200)], id="one-frame"),
        pytest.param(
            [ws_frame(TEXT, b"x" * 80, fin=False), ws_frame(CONT, b"x" * 80, fin=False)],
            id="fragments-summed",
        ),
    ],
)
async def test_a_message_over_max_frame_size_fails_with_1009(frames: list[bytes]) -> None:
    # picows refuses one frame over the cap at its header; the connection sums the fragments
    # of a message and stops before it holds more than the cap.
    run = await run_script(frames, routed=False, until=reconnected, max_frame_size=150)
    assert run.script.close_code() == 1009
    assert run.rec.of("disconnect")[0][0] == 1009
    assert run.rec.messages == []


async def test_a_listener_can_answer_a_frame_that_came_with_the_handshake() -> None:
    # Autobahn's servers (and some venues) speak first: the frame arrives with the upgrade
    # response, before the connection's state turns OPEN; the socket is usable already.
    echoed: list[tuple[int, bytes]] = []

    async def echo_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        echoed.append(await read_frame(reader))
        await reader.read()

    async with _raw_ws_server(echo_one, greeting=ws_frame(TEXT, b"hello")) as port:
        conn, rec = await open_conn(f"ws://127.0.0.1:{port}/ws")
        sent: list[bool] = []
        conn.on("message", lambda data: sent.append(conn.send(data)))
        assert await conn.connect(timeout=2)
        await rec.wait(lambda: bool(echoed))
        await conn.close()
    assert sent == [True]
    assert echoed == [(TEXT, b"hello")]


# -- rows 28, 29: user callbacks and close() ---------------------------------------------------


async def test_raising_listener_never_closes_the_socket(exchange: Exchange) -> None:
    conn, rec = await open_conn(trade_url(exchange))
    seen: list[int] = []

    def flaky(data: bytes) -> None:
        seen.append(len(seen))
        if len(seen) % 3 == 0:
            raise RuntimeError("user bug")

    conn.on("message", flaky)
    conn.set_frame_handler(lambda view: 1 / 0)  # the hot-path handler raising too
    assert await conn.connect(timeout=2)
    await exchange.flood("BTCUSDT", 30)
    await rec.wait(lambda: len(rec.messages) == 30)
    assert len(seen) == 30
    listener_errors = [r for r in rec.reports if r.code == "listener_error"]
    assert len(listener_errors) == 10 + 30
    assert isinstance(listener_errors[0].error, fastmd.CallbackError)
    assert conn.state is ConnectionState.OPEN
    assert rec.of("disconnect") == []
    await conn.close()


async def test_error_reporter_gets_every_report(exchange: Exchange) -> None:
    reports: list[ErrorReport] = []
    conn = fastmd.Connection(trade_url(exchange), error_reporter=reports.append, backoff=FAST)
    assert await conn.connect(timeout=2)
    exchange.faults.drop_connections(mode="fin")
    await asyncio.sleep(0.3)
    assert [r.code for r in reports] == ["disconnected"]
    assert reports[0].context["close_code"] == 1006
    await conn.close()


def _tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_close_is_fast_and_clean_from_every_state(exchange: Exchange) -> None:
    baseline = _tasks()
    # open
    conn, _ = await open_conn(trade_url(exchange))
    assert await conn.connect(timeout=2)
    started = time.monotonic()
    await conn.close()
    await conn.close()  # idempotent
    assert time.monotonic() - started < 1.0
    # backing off (refused port, long backoff)
    conn, _ = await open_conn(
        f"ws://127.0.0.1:{free_port()}/ws", backoff=Backoff(initial_delay=30, max_delay=60)
    )
    await conn.connect(timeout=0.1)
    assert conn.state is ConnectionState.RECONNECTING
    started = time.monotonic()
    await conn.close()
    assert time.monotonic() - started < 1.0
    # circuit open
    conn, _rec = await open_conn(
        f"ws://127.0.0.1:{free_port()}/ws",
        circuit_breaker=CircuitBreakerPolicy(failure_threshold=1, cooldown=300),
    )
    await conn.connect(timeout=0.1)
    assert conn.state is ConnectionState.CIRCUIT_OPEN
    started = time.monotonic()
    await conn.close()
    assert time.monotonic() - started < 1.0
    # never connected
    idle = fastmd.Connection(trade_url(exchange))
    await idle.close()
    assert idle.state is ConnectionState.CLOSED
    with pytest.raises(fastmd.InvalidState):
        await idle.connect()
    await asyncio.sleep(0)
    assert _tasks() <= baseline
    assert conn.send("x") is False


async def test_close_during_a_hanging_connect_returns_within_a_second() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with RawServer(silent) as port:
        conn, _ = await open_conn(f"ws://127.0.0.1:{port}/ws", open_timeout=30)
        await conn.connect(timeout=0.1)
        assert conn.state is ConnectionState.CONNECTING
        started = time.monotonic()
        await conn.close()
        assert time.monotonic() - started < 1.0
        assert conn.state is ConnectionState.CLOSED


async def test_force_reconnect_skips_backoff(exchange: Exchange) -> None:
    conn, rec = await open_conn(trade_url(exchange), backoff=Backoff(initial_delay=5, max_delay=9))
    assert await conn.connect(timeout=2)
    await conn.reconnect()
    await rec.wait(lambda: len(rec.of("connect")) == 2, timeout=1.5)
    assert rec.of("reconnecting") == []
    assert rec.of("disconnect")[0] == (1000, "reconnect requested")
    await conn.close()


async def test_no_reconnect_when_auto_reconnect_is_off(exchange: Exchange) -> None:
    conn, rec = await open_conn(trade_url(exchange), auto_reconnect=False)
    assert await conn.connect(timeout=2)
    exchange.faults.drop_connections(mode="close", code=1001)
    await rec.wait(lambda: conn.state is ConnectionState.CLOSED)
    assert rec.of("connect") == [()]
    await conn.close()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ws://"):
        fastmd.Connection("http://example.invalid")
    conn = fastmd.Connection("ws://127.0.0.1:1/ws")
    with pytest.raises(ValueError, match="unknown event"):
        conn.on("nope", print)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="str or bytes"):
        conn.send(123)  # type: ignore[arg-type]
