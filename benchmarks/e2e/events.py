"""End to end over loopback, per event type: fastmd against bare picows + msgspec, aiohttp +
orjson and websockets + json, on the same flood of frames of one event type at a time.

``python -m benchmarks.e2e.events --messages 100000 --json FILE``

The method of ``benchmarks.e2e.run``'s throughput stage (docs/benchmarks.md): one flood-server
process (``taskset -c 0``) and one client process (``taskset -c 1``) per run, a warm-up, then the
measured frames between two marks taken in the callback (``benchmarks.e2e.common.Meter``), and
every client hands each event to that same callback. What differs:

- the frames: for each event type, the recorded frame of ``benchmarks/frames.py`` with its
  sequence key advanced frame by frame (trade and aggTrade ids, the book ticker's update id, a
  depth diff's ``U``/``u``, the event time of tickers and klines), so that fastmd's sequence
  checks see a clean stream, neither gaps nor duplicates; the symbol is ``BTCUSDT``, which the
  server does not list: the simulator acknowledges the subscription and publishes nothing of its
  own on it, so the flood is the whole stream;
- the clients: (b) decodes the combined envelope into ``Envelope[Event[float]]`` with
  fastmd's event structs (one typed msgspec pass, as a hand-written bare client would), (c) is
  ``fastmd.Client.subscribe``, (d) and (e) are ``json.loads`` / ``orjson.loads`` then
  ``["data"]``, as in ``benchmarks.e2e.clients``.

Internal modes (the runner starts them): ``--serve EVENT`` and ``--client KIND --event EVENT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from benchmarks.e2e.common import pinned, run_processes

SYMBOL = "BTCUSDT"
LISTED = "ETHUSDT"
"""The only symbol the server lists: BTCUSDT streams are acknowledged and stay silent."""
FIRST_ID = 1_000_000_000
BASE_TIME_MS = 1_764_000_000_000
KINDS = ("picows_msgspec", "fastmd", "aiohttp_orjson", "websockets_json")

# event type -> (stream, the frames.py case it is built from)
EVENTS: dict[str, tuple[str, str]] = {
    "trade": ("btcusdt@trade", "trade"),
    "aggTrade": ("btcusdt@aggTrade", "aggTrade"),
    "bookTicker": ("btcusdt@bookTicker", "bookTicker"),
    "kline": ("btcusdt@kline_1m", "kline"),
    "miniTicker": ("btcusdt@miniTicker", "miniTicker"),
    "depthUpdate (20+20 levels)": ("btcusdt@depth@100ms", "depthUpdate-20"),
}


def _case(name: str) -> Any:
    from benchmarks.frames import CASES

    return next(case for case in CASES if case.name == name)


def _advance(event: str, payload: dict[str, Any], n: int) -> dict[str, Any]:
    """The recorded payload as the ``n``-th frame of a clean stream of ``event``."""
    data = copy.deepcopy(payload)
    key = FIRST_ID + n
    if "s" in data:
        data["s"] = SYMBOL
    if "E" in data:
        data["E"] = BASE_TIME_MS + n
    if event == "trade":
        data["t"] = key
    elif event == "aggTrade":
        data["a"] = key
    elif event == "bookTicker":
        data["u"] = key
    elif event.startswith("depthUpdate"):
        data["U"] = data["u"] = key
    elif event == "kline":
        data["k"]["s"] = SYMBOL
    return data


def frames(event: str, count: int) -> list[bytes]:
    """``count`` combined-stream payloads of ``event``, keys advancing one per frame."""
    stream, case_name = EVENTS[event]
    payload = _case(case_name).payload_obj
    prefix = b'{"stream":"' + stream.encode() + b'","data":'
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    return [prefix + dumps(_advance(event, payload, n)).encode() + b"}" for n in range(count)]


def event_type(event: str) -> Any:
    return _case(EVENTS[event][1]).event_type


# -- server ----------------------------------------------------------------------------------------


def _ws_header(length: int) -> bytes:
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


async def serve(event: str, count: int, give_up_after: float, high_water: int) -> dict[str, Any]:
    from fastmd.sim import Exchange

    stream = EVENTS[event][0]
    payloads = frames(event, count)
    wire = [_ws_header(len(p)) + p for p in payloads]
    chunks = [b"".join(wire[i : i + 1024]) for i in range(0, len(wire), 1024)]
    async with Exchange(symbols=[LISTED], rate=0.0) as ex:
        print(json.dumps({"ws_url": ex.ws_url, "rest_url": ex.rest_url}), flush=True)
        deadline = time.monotonic() + give_up_after
        conn = None
        while conn is None:
            conn = next((c for c in ex.connections if stream in c.subscriptions), None)
            if time.monotonic() > deadline:
                raise TimeoutError("no subscriber")
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
        transport = conn.transport.underlying_transport
        started = time.perf_counter()
        for chunk in chunks:
            while transport.get_write_buffer_size() > high_water:
                if transport.is_closing():
                    return {"closed_early": True}
                await asyncio.sleep(0.001)
            transport.write(chunk)
        while transport.get_write_buffer_size() > 0 and not transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        seconds = time.perf_counter() - started
        while conn in ex.connections and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return {"frame_bytes": len(payloads[0]), "seconds": seconds}


# -- clients ---------------------------------------------------------------------------------------

T = TypeVar("T")


def envelope_decoder(event: str) -> Any:
    """Client (b)'s decode: the combined envelope and the typed event (float prices), one pass."""
    import msgspec

    class Envelope(msgspec.Struct, Generic[T], frozen=True, gc=False):
        stream: str
        data: T

    return msgspec.json.Decoder(Envelope[event_type(event)[float]], strict=False).decode  # type: ignore[index]


async def _until(meter: Any, reader: Any) -> None:
    task = asyncio.ensure_future(reader)
    try:
        await asyncio.wait({task, meter.done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def client(kind: str, event: str, ws_url: str, rest_url: str, meter: Any) -> dict[str, Any]:
    stream = EVENTS[event][0]
    url = f"{ws_url}/stream?streams={stream}"
    on_event: Callable[[Any], None] = meter.on_event
    if kind == "picows_msgspec":
        from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

        decode = envelope_decoder(event)
        text = WSMsgType.TEXT

        class Listener(WSListener):
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type is text:
                    on_event(decode(frame.get_payload_as_memoryview()).data)

        transport, _ = await ws_connect(Listener, url)
        try:
            await meter.done
        finally:
            transport.disconnect()
        return {}
    if kind == "fastmd":
        import fastmd

        async with fastmd.Client(ws_url=ws_url, rest_url=rest_url, validate_symbols=False) as c:
            await c.subscribe(stream, on_event).wait_active(10.0)
            await meter.done
            metrics = c.metrics()
        return {"gaps": metrics.gaps, "duplicates": metrics.duplicates_dropped}
    if kind == "aiohttp_orjson":
        import aiohttp
        import orjson

        loads = orjson.loads
        aio_text = aiohttp.WSMsgType.TEXT
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:

            async def read_aiohttp() -> None:
                async for message in ws:
                    if message.type is aio_text:
                        on_event(loads(message.data)["data"])

            await _until(meter, read_aiohttp())
        return {}
    if kind == "websockets_json":
        from websockets.asyncio.client import connect

        json_loads = json.loads
        async with connect(url, proxy=None, max_size=None) as ws:

            async def read_websockets() -> None:
                async for message in ws:
                    on_event(json_loads(message)["data"])

            await _until(meter, read_websockets())
        return {}
    raise ValueError(kind)


async def run_client(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.e2e.common import Meter

    meter = Meter(args.warmup, args.messages)
    extra = await asyncio.wait_for(
        client(args.client, args.event, args.ws_url, args.rest_url, meter), args.timeout
    )
    return {"kind": args.client, "event": args.event, **meter.result(), **extra}


# -- runner ----------------------------------------------------------------------------------------


def run_pair(kind: str, event: str, warmup: int, messages: int, timeout: float) -> dict[str, Any]:
    me = [sys.executable, "-m", "benchmarks.e2e.events"]
    return run_processes(
        [*pinned(0), *me, "--serve", event, "--count", str(warmup + messages),
         "--timeout", str(timeout)],
        lambda urls: [
            *pinned(1), *me, "--client", kind, "--event", event, "--ws-url", urls["ws_url"],
            "--rest-url", urls["rest_url"], "--warmup", str(warmup),
            "--messages", str(messages), "--timeout", str(timeout),
        ],
        timeout=timeout,
        what=f"{kind} {event}",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from benchmarks.e2e.common import run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="measured frames per run")
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1, help="repetitions (client order rotates)")
    parser.add_argument("--events", default=",".join(EVENTS), help="comma-separated")
    parser.add_argument("--clients", default=",".join(KINDS), help="comma-separated")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--json", metavar="FILE", help="write every raw result to FILE")
    parser.add_argument("--serve", metavar="EVENT", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", metavar="KIND", help=argparse.SUPPRESS)
    parser.add_argument("--event", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    parser.add_argument("--rest-url", help=argparse.SUPPRESS)
    parser.add_argument("--high-water", type=int, default=2 * 1024 * 1024, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        stats = run(serve(args.serve, args.count, args.timeout, args.high_water))
        print(json.dumps(stats), flush=True)
        return 0
    if args.client:
        print(json.dumps(run(run_client(args))), flush=True)
        return 0

    from benchmarks.e2e.run import machine_info

    events = [e for e in args.events.split(",") if e]
    kinds = [k for k in args.clients.split(",") if k]
    raw: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "runs": []}
    for rep in range(args.repeat):
        for event in events:
            order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
            for kind in order:
                result = run_pair(kind, event, args.warmup, args.messages, args.timeout)
                result["rep"] = rep
                raw["runs"].append(result)
                print(
                    f"# {time.strftime('%H:%M:%S')} rep {rep} {event} {kind}: "
                    f"{result.get('msgs_per_s', 0):,.0f} msgs/s",
                    file=sys.stderr,
                    flush=True,
                )
    for event in events:
        rates = {
            r["kind"]: r["msgs_per_s"] for r in raw["runs"] if r["event"] == event and r["rep"] == 0
        }
        cells = ", ".join(f"{k} {v / 1e3:,.0f}k" for k, v in rates.items())
        print(f"{event}: {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
