"""The clients under test, one coroutine each: ``await CLIENTS[kind](ws_url, rest_url, meter)``.

Every client subscribes ``btcusdt@trade``, hands each trade to ``meter.on_event`` (the counting
no-op callback of :class:`benchmarks.e2e.common.Meter`) and returns once ``meter.done`` resolves.
``ws_url``/``rest_url`` are the simulator's base URLs. The bare clients use the combined-stream
URL ``/stream?streams=btcusdt@trade``; fastmd subscribes with ``SUBSCRIBE`` on ``/stream``.

Main clients (the issue's a-e):

- ``picows``: bare picows, no decode: the meter gets the frame.
- ``picows_msgspec``: bare picows + ``msgspec.json.Decoder(Envelope, strict=False)`` of the
  combined envelope into a typed Struct with float prices; the meter gets ``envelope.data``.
- ``fastmd``: ``fastmd.Client(ws_url=..., rest_url=..., validate_symbols=False)``, one
  subscription; gap detection, duplicate dropping and metrics are always on.
- ``websockets_json``: websockets (asyncio API) + ``json.loads``, python-binance style.
- ``aiohttp_orjson``: aiohttp ``ws_connect`` + ``orjson.loads``.

Also: ``drain`` (a blocking socket that only counts bytes after the upgrade: the server's and the
loopback's capacity), and the ``ladder_*`` clients that rebuild fastmd's hot path one layer at a
time to show where its time goes (see docs/benchmarks.md).

``python -m benchmarks.e2e.clients --kind ... --ws-url ... --rest-url ...`` runs one client and
prints its measurement as a JSON line (the runner pins it with taskset).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks.e2e.common import (
    FIRST_TRADE_ID,
    FRAME_WIRE_BYTES,
    STREAM,
    LatencyMeter,
    Meter,
    run,
    stream_router,
)

_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE


def stream_url(ws_url: str) -> str:
    return f"{ws_url}/stream?streams={STREAM}"


# -- (b) the bare typed reference --------------------------------------------------------------


class BareTrade(msgspec.Struct, frozen=True, gc=False):
    """The trade payload as a hand-written bare client would declare it (fastmd.Trade's fields
    and names, float prices, no constraints, no tag)."""

    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    trade_id: int = msgspec.field(name="t")
    price: float = msgspec.field(name="p")
    quantity: float = msgspec.field(name="q")
    trade_time: int = msgspec.field(name="T")
    is_buyer_maker: bool = msgspec.field(name="m")


class BareEnvelope(msgspec.Struct, frozen=True, gc=False):
    """Binance's combined-stream envelope, typed in one pass."""

    stream: str
    data: BareTrade


class _CountListener(WSListener):
    """(a): every frame goes to the callback undecoded."""

    def __init__(self, on_event: Callable[[Any], None]) -> None:
        self.on_event = on_event

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.on_event(frame)


class _MsgspecListener(WSListener):
    """(b): text frames decoded into :class:`BareEnvelope`, the trade to the callback."""

    def __init__(self, on_event: Callable[[Any], None]) -> None:
        self.on_event = on_event
        self.decode = msgspec.json.Decoder(BareEnvelope, strict=False).decode
        self.errors = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT:
            try:
                envelope = self.decode(frame.get_payload_as_memoryview())
            except msgspec.DecodeError:
                self.errors += 1
                return
            self.on_event(envelope.data)
        elif frame.msg_type is _CLOSE:
            transport.disconnect()


class _HandlerListener(WSListener):
    """A bare picows listener that hands text payloads (memoryview) to ``handler``."""

    def __init__(self, handler: Callable[[memoryview], None]) -> None:
        self.handler = handler

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT:
            self.handler(frame.get_payload_as_memoryview())
        elif frame.msg_type is _CLOSE:
            transport.disconnect()


class _RouterListener(WSListener):
    """A bare picows listener whose ``on_ws_frame`` is a fastmd frame router, as fastmd's
    Connection installs it (control frames go to a never-connected Connection: ignored)."""

    def __init__(self, router: Callable[[WSTransport, WSFrame], None]) -> None:
        self.on_ws_frame = router  # type: ignore[method-assign]


async def _picows(url: str, listener: WSListener, meter: Meter) -> dict[str, Any]:
    transport, _ = await ws_connect(lambda: listener, url)
    try:
        await meter.done
    finally:
        transport.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.wait_disconnected(), 2.0)
    return {"decode_errors": getattr(listener, "errors", 0)}


async def client_picows(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    return await _picows(stream_url(ws_url), _CountListener(meter.on_event), meter)


async def client_picows_msgspec(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    return await _picows(stream_url(ws_url), _MsgspecListener(meter.on_event), meter)


# -- (c) fastmd --------------------------------------------------------------------------------


async def client_fastmd(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    import fastmd

    gaps: list[Any] = []
    async with fastmd.Client(ws_url=ws_url, rest_url=rest_url, validate_symbols=False) as client:
        client.on_gap(gaps.append)
        sub = client.subscribe(STREAM, meter.on_event)
        await sub.wait_active(10.0)
        await meter.done
        metrics = client.metrics()
    return {
        "gaps": metrics.gaps,
        "gap_events": [repr(gap) for gap in gaps[:5]],
        "duplicates": metrics.duplicates_dropped,
        "decode_errors": metrics.decode_errors,
        "callback_errors": metrics.callback_errors,
        "fastmd_messages": metrics.messages,
    }


# -- (d) websockets + json, (e) aiohttp + orjson --------------------------------------------------


async def _until_done(reader: Awaitable[None], meter: Meter) -> None:
    task = asyncio.ensure_future(reader)
    try:
        await asyncio.wait({task, meter.done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def client_websockets_json(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    on_event = meter.on_event
    loads = json.loads
    async with connect(stream_url(ws_url), proxy=None) as ws:

        async def reader() -> None:
            async for message in ws:
                on_event(loads(message)["data"])

        await _until_done(reader(), meter)
    return {}


async def client_aiohttp_orjson(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    import aiohttp
    import orjson

    on_event = meter.on_event
    loads = orjson.loads
    text = aiohttp.WSMsgType.TEXT
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(stream_url(ws_url)) as ws,
    ):

        async def reader() -> None:
            async for message in ws:
                if message.type is text:
                    on_event(loads(message.data)["data"])

        await _until_done(reader(), meter)
    return {}


# -- the server's capacity -------------------------------------------------------------------------


async def client_drain(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    """A blocking socket that upgrades by hand and then only counts bytes: frames are counted as
    ``bytes // FRAME_WIRE_BYTES`` (the flood's frames all have one length)."""
    parts = urlsplit(ws_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.create_connection((host, port))
    try:
        request = (
            f"GET /stream?streams={STREAM} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n", 1)[0]:
            raise ConnectionError(status.decode(errors="replace"))
        buffer = bytearray(1 << 20)
        received = len(rest)
        frames = 0
        on_event = meter.on_event
        while meter.n < meter.total:
            count = received // FRAME_WIRE_BYTES
            while frames < count and meter.n < meter.total:
                frames += 1
                on_event(None)
            if meter.n >= meter.total:
                break
            n = sock.recv_into(buffer)
            if n == 0:
                break
            received += n
    finally:
        sock.close()
    return {}


# -- the ladder: fastmd's hot path rebuilt one layer at a time ----------------------------------


async def ladder_decoder(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    """(b) with fastmd's decoder instead of the bare Struct: ``Decoder.fast_decode`` (the one
    msgspec pass over the tagged union the client uses), the event to the callback."""
    import fastmd

    decoder = fastmd.Decoder()
    decoder.register([STREAM])
    on_event = meter.on_event

    def handler(payload: memoryview) -> None:
        on_event(decoder.fast_decode(payload).event)

    return await _picows(stream_url(ws_url), _HandlerListener(handler), meter)


async def ladder_client_handler(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    """(b)'s bare picows listener driving fastmd's real frame router
    (``fastmd.aio.router.frame_router``: decode, route lookup, sequencer, dispatch with sampled
    timing), without fastmd's ``Connection``. The route is installed by hand, as ``subscribe``
    would."""
    router, _, gaps = stream_router(meter.on_event, stream_url(ws_url))
    out = await _picows(stream_url(ws_url), _RouterListener(router), meter)
    return {**out, "gaps": len(gaps)}


async def ladder_connection(ws_url: str, rest_url: str, meter: Meter) -> dict[str, Any]:
    """fastmd's ``Connection`` (its picows listener, counters and supervisor) with (b)'s bare
    decode as the frame handler: the connection layer's cost over (b)."""
    import fastmd

    decode = msgspec.json.Decoder(BareEnvelope, strict=False).decode
    on_event = meter.on_event

    conn = fastmd.Connection(stream_url(ws_url))
    count = 0

    def router(transport: WSTransport, frame: WSFrame) -> None:
        nonlocal count
        try:
            on_event(decode(frame.get_payload_as_memoryview()).data)
        except msgspec.MsgspecError:
            conn.handle_frame(transport, frame)  # a control frame: the connection's job
            return
        count += 1

    conn.set_frame_router(router, lambda: count)
    try:
        if not await conn.connect(timeout=10.0):
            raise ConnectionError("fastmd.Connection did not open")
        await meter.done
    finally:
        await conn.close()
    return {}


Client = Callable[[str, str, Meter], Coroutine[Any, Any, dict[str, Any]]]

CLIENTS: dict[str, Client] = {
    "picows": client_picows,
    "picows_msgspec": client_picows_msgspec,
    "fastmd": client_fastmd,
    # the same client code, importing fastmd from the checkout in $FASTMD_BASELINE_PATH (a
    # worktree of an earlier commit): before/after comparisons in one run
    "fastmd_baseline": client_fastmd,
    "websockets_json": client_websockets_json,
    "aiohttp_orjson": client_aiohttp_orjson,
    "drain": client_drain,
    "ladder_decoder": ladder_decoder,
    "ladder_client_handler": ladder_client_handler,
    "ladder_connection": ladder_connection,
}


def trade_id(kind: str, event: Any) -> int | None:
    """The trade id of what ``kind`` hands its callback (None when it does not decode)."""
    if event is None or kind in ("picows", "drain"):
        return None
    if isinstance(event, dict):
        return int(event["t"])
    return int(event.trade_id)


async def measure(
    kind: str,
    ws_url: str,
    rest_url: str,
    warmup: int,
    messages: int,
    *,
    latency: bool = False,
    timeout: float = 120.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Run client ``kind`` until ``warmup + messages`` trades arrived; its measurement."""
    meter = (LatencyMeter if latency else Meter)(warmup, messages)
    info: dict[str, Any] = {}
    try:
        info = await asyncio.wait_for(CLIENTS[kind](ws_url, rest_url, meter), timeout)
    except TimeoutError:
        info = {"error": f"timeout after {timeout:g} s"}
    result = {"kind": kind, **meter.result(), **info}
    last = trade_id(kind, meter.last)
    if last is not None:
        result["last_trade_id_ok"] = last == FIRST_TRADE_ID + meter.total - 1
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one end-to-end benchmark client.")
    parser.add_argument("--kind", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--ws-url", required=True)
    parser.add_argument("--rest-url", required=True)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--latency", action="store_true", help="record send-to-callback latency")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--cprofile", metavar="FILE", help="write a cProfile of the run to FILE")
    args = parser.parse_args(argv)
    if args.kind.endswith("_baseline"):
        baseline = os.environ["FASTMD_BASELINE_PATH"]
        sys.path.insert(0, baseline)
        import fastmd

        assert fastmd.__file__ is not None
        assert fastmd.__file__.startswith(baseline), fastmd.__file__
    coro = measure(
        args.kind, args.ws_url, args.rest_url, args.warmup, args.messages,
        latency=args.latency, timeout=args.timeout,
    )  # fmt: skip
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(run, coro, args.loop)
        profiler.dump_stats(args.cprofile)
    else:
        result = run(coro, args.loop)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
