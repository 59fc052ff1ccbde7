"""The flood server: fastmd's simulator (``fastmd.sim.Exchange``, synthetic market at rate 0) in
its own process. It waits for one subscriber of ``btcusdt@trade`` (URL stream or SUBSCRIBE: the
simulator handles the handshake and the control protocol), then floods it and exits once the
client has gone, printing its own statistics as a JSON line.

Modes:

- ``chunks`` (default, throughput): every frame pre-encoded before the flood as complete
  WebSocket frames (header + combined trade payload, contiguous trade ids), written to the
  connection's socket transport in chunks of 1,024 frames; the writer waits while more than
  ``--high-water`` bytes are queued in user space, so the simulator's 64 MiB slow-consumer guard
  never trips and the client sets the pace.
- ``publish``: the simulator's own hot path, ``WsServer.publish`` once per frame (pre-encoded
  bare payloads; the simulator wraps them in the combined envelope), as ``Exchange.flood`` does;
  to measure the simulator's send rate.
- ``paced`` (latency): ``--rate`` frames per second on a fixed schedule, each stamped at send
  with ``time.monotonic_ns()`` in ``"E"`` (nanoseconds); the server spins between frames (it has
  its own core) and yields to its loop whenever the next frame is more than 50 µs away.

Output: a first JSON line ``{"ws_url", "rest_url"}``, a last one with the flood's statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from picows import WSMsgType

from benchmarks.e2e.common import (
    COMBINED_TEMPLATE,
    EVENT_TIME_MS,
    FIRST_TRADE_ID,
    STREAM,
    SYMBOL,
    encode_chunks,
    run,
)
from fastmd.sim import Exchange

_TEXT = WSMsgType.TEXT
_POLL = 0.001  # libuv timers have 1 ms resolution; shorter sleeps spin
_YIELD_NS = 50_000


def _subscriber(ex: Exchange) -> Any:
    for conn in ex.connections:
        if STREAM in conn.subscriptions and conn.transport is not None:
            return conn
    return None


async def _wait_subscriber(ex: Exchange, timeout: float) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while (conn := _subscriber(ex)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no subscriber")
        await asyncio.sleep(0.005)
    return conn


# The transport's write buffer has no event to wait on: the flood polls it (1 ms).


async def _drained(transport: Any) -> None:
    while transport.get_write_buffer_size() > 0 and not transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(_POLL)


async def flood_chunks(transport: Any, chunks: list[bytes], high_water: int) -> None:
    write, closing = transport.write, transport.is_closing
    buffered = transport.get_write_buffer_size
    for chunk in chunks:
        while buffered() > high_water:
            if closing():
                return
            await asyncio.sleep(_POLL)
        write(chunk)
    await _drained(transport)


async def flood_publish(
    ex: Exchange, transport: Any, payloads: list[bytes], high_water: int, batch: int = 1000
) -> None:
    publish = ex.ws.publish
    for start in range(0, len(payloads), batch):
        while transport.get_write_buffer_size() > high_water:
            if transport.is_closing():
                return
            await asyncio.sleep(_POLL)
        for payload in payloads[start : start + batch]:
            publish(STREAM, payload)
        await asyncio.sleep(0)
    await _drained(transport)


async def flood_paced(conn: Any, count: int, rate: float) -> dict[str, Any]:
    send = conn.transport.send
    clock = time.monotonic_ns
    template = COMBINED_TEMPLATE
    interval = 1e9 / rate
    due = float(clock())
    late = 0
    for trade_id in range(FIRST_TRADE_ID, FIRST_TRADE_ID + count):
        while True:
            now = clock()
            if now >= due:
                break
            if due - now > _YIELD_NS:
                await asyncio.sleep(0)
        if now - due > 1_000_000:
            late += 1
        send(_TEXT, template % (clock(), trade_id, EVENT_TIME_MS))
        due += interval
    await _drained(conn.transport.underlying_transport)
    return {"late_over_1ms": late}


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    chunks: list[bytes] = []
    payloads: list[bytes] = []
    if args.mode == "chunks":
        chunks = encode_chunks(FIRST_TRADE_ID, args.count)
    elif args.mode == "publish":
        payloads = [
            COMBINED_TEMPLATE[COMBINED_TEMPLATE.index(b'{"e"') : -1]
            % (EVENT_TIME_MS, i, EVENT_TIME_MS)
            for i in range(FIRST_TRADE_ID, FIRST_TRADE_ID + args.count)
        ]
    async with Exchange(symbols=[SYMBOL], rate=0.0, port=args.port) as ex:
        print(json.dumps({"ws_url": ex.ws_url, "rest_url": ex.rest_url}), flush=True)
        conn = await _wait_subscriber(ex, args.timeout)
        await asyncio.sleep(args.settle)
        transport = conn.transport.underlying_transport
        stats: dict[str, Any] = {"mode": args.mode, "count": args.count}
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if args.mode == "chunks":
            await flood_chunks(transport, chunks, args.high_water)
        elif args.mode == "publish":
            await flood_publish(ex, transport, payloads, args.high_water)
        else:
            stats.update(await flood_paced(conn, args.count, args.rate))
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        stats.update(
            seconds=wall,
            msgs_per_s=args.count / wall,
            cpu_us_per_msg=cpu * 1e6 / args.count,
            cpu_utilisation=cpu / wall,
        )
        deadline = time.monotonic() + args.timeout
        while _subscriber(ex) is conn and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True, help="frames to send")
    parser.add_argument("--mode", choices=("chunks", "publish", "paced"), default="chunks")
    parser.add_argument("--rate", type=float, default=10_000.0, help="paced: frames per second")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--high-water", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--settle", type=float, default=0.2, help="seconds before flooding")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    stats = run(serve(args), args.loop)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
