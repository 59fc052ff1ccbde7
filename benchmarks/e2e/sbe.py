"""End-to-end SBE against JSON through ``fastmd.Client``, in one run (issue 14).

``python -m benchmarks.e2e.sbe --messages 200000 --repeat 3``

The same trades (price 67012.34, quantity 0.012, contiguous ids) flood one ``btcusdt@trade``
subscriber of the simulator, in three wire forms, one server process and one client process per
run (pinned with ``taskset -c 0`` / ``-c 1`` when there are two cores), the order rotating per
repetition:

- ``json``: Binance's combined-stream JSON trade frames (``/stream``, one trade a frame) to
  ``fastmd.Client(ws_url=...)``, as ``benchmarks.e2e.run``'s fastmd client receives them;
- ``sbe``: SBE TradesStreamEvent frames (template 10000) with one trade each, to
  ``fastmd.Client(encoding="sbe", api_key=...)`` on ``Exchange(sbe=True)``: the same frame count;
- ``sbe4``: SBE frames of four trades each (Binance puts the trades of one taker order in one
  frame): the same trades in a quarter of the frames.

Each server pre-encodes its frames (WebSocket header included) and writes them to the
subscriber's socket in chunks of 1,024 frames, waiting while more than 2 MiB are queued, so the
client sets the pace (as ``benchmarks.e2e.server``'s ``chunks`` mode). The client counts trades
with the common :class:`benchmarks.e2e.common.Meter` (warm-up, then the measured trades): trades
per second, CPU per trade. Bytes per trade on the wire are the frames' exact size (WebSocket
header included) divided by the trades they carry; the client's own socket byte count is
reported beside them as a check. Ratios are SBE over JSON within each repetition; the median and
the per-repetition values are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import time
from typing import Any

from benchmarks.e2e.common import (
    COMBINED_TEMPLATE,
    EVENT_TIME_MS,
    Meter,
    pinned,
    run,
    run_processes,
    ws_header,
)

SYMBOL = "BTCUSDT"
STREAM = "btcusdt@trade"
API_KEY = "benchmark-ed25519-key"
FIRST_TRADE_ID = 1_000_000_000
PRICE_MANTISSA, PRICE_EXPONENT = 6_701_234, -2  # 67012.34
QTY_MANTISSA, QTY_EXPONENT = 1_200_000, -8  # 0.012
KINDS = {"json": 1, "sbe": 1, "sbe4": 4}  # wire form -> trades per frame
_POLL = 0.001


def _binary_header(length: int) -> bytes:
    """The header of an unmasked final BINARY frame of ``length`` bytes."""
    text = ws_header(length)
    return bytes((0x82,)) + text[1:]


def sbe_frames(first_id: int, count: int, per_frame: int) -> list[bytes]:
    """``count`` trades as complete binary WebSocket frames of ``per_frame`` trades each."""
    from fastmd.sim.sbe import encode_trades

    time_us = EVENT_TIME_MS * 1000
    frames = []
    for start in range(first_id, first_id + count, per_frame):
        stop = min(start + per_frame, first_id + count)
        trades = [(i, PRICE_MANTISSA, QTY_MANTISSA, True) for i in range(start, stop)]
        payload = encode_trades(SYMBOL, time_us, time_us, PRICE_EXPONENT, QTY_EXPONENT, trades)
        frames.append(_binary_header(len(payload)) + payload)
    return frames


def json_frames(first_id: int, count: int) -> list[bytes]:
    """``count`` combined-stream JSON trade frames (header included), one trade each."""
    frames = []
    for i in range(first_id, first_id + count):
        payload = COMBINED_TEMPLATE % (EVENT_TIME_MS, i, EVENT_TIME_MS)
        frames.append(ws_header(len(payload)) + payload)
    return frames


def _chunks(frames: list[bytes], per_chunk: int = 1024) -> list[bytes]:
    return [b"".join(frames[i : i + per_chunk]) for i in range(0, len(frames), per_chunk)]


# -- server ----------------------------------------------------------------------------------------


async def serve(kind: str, count: int, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    from fastmd.sim import Exchange

    per_frame = KINDS[kind]
    frames = json_frames(FIRST_TRADE_ID, count) if kind == "json" else (
        sbe_frames(FIRST_TRADE_ID, count, per_frame)
    )  # fmt: skip
    wire_bytes = sum(len(f) for f in frames)
    chunks = _chunks(frames)
    async with Exchange(symbols=[SYMBOL], rate=0.0, sbe=kind != "json") as ex:
        print(json.dumps({"ws_url": ex.ws_url, "rest_url": ex.rest_url}), flush=True)
        deadline = time.monotonic() + timeout
        while not (conns := [c for c in ex.connections if STREAM in c.subscriptions]):
            if time.monotonic() > deadline:
                raise TimeoutError("no subscriber")
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
        transport = conns[0].transport.underlying_transport
        started = time.perf_counter()
        for chunk in chunks:
            while transport.get_write_buffer_size() > 2 * 1024 * 1024:
                if transport.is_closing():
                    break
                await asyncio.sleep(_POLL)
            transport.write(chunk)
        # The transport's write buffer has no event to wait on: polled (1 ms).
        while transport.get_write_buffer_size() > 0 and not transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(_POLL)
        seconds = time.perf_counter() - started
        while any(STREAM in c.subscriptions for c in ex.connections):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
    return {"frames": len(frames), "wire_bytes": wire_bytes, "seconds": seconds}


# -- client ----------------------------------------------------------------------------------------


async def measure(kind: str, ws_url: str, rest_url: str, warmup: int, messages: int) -> Any:
    import fastmd

    meter = Meter(warmup, messages)
    options: dict[str, Any] = {"ws_url": ws_url, "rest_url": rest_url, "validate_symbols": False}
    if kind != "json":
        options.update(encoding="sbe", api_key=API_KEY)
    async with fastmd.Client(**options) as client:
        await client.subscribe(STREAM, meter.on_event).wait_active(10.0)
        await meter.done
        metrics = client.metrics()
        socket_bytes = sum(c.bytes for c in metrics.connections)
    result = meter.result()
    result.update(
        gaps=metrics.gaps, decode_errors=metrics.decode_errors, socket_bytes=socket_bytes,
        last_price=float(meter.last.price), backpressure_pauses=metrics.backpressure_pauses,
        deferred_events=metrics.deferred_events,
    )  # fmt: skip
    return result


# -- driver ----------------------------------------------------------------------------------------


def run_pair(
    kind: str, warmup: int, messages: int, timeout: float, *, realtime: bool = False
) -> dict[str, Any]:
    """One server and one client process; the client's result, the server's under ``"server"``.
    ``realtime`` runs both under ``chrt -f 10`` (SCHED_FIFO): other tenants of a shared machine
    then cannot delay their wake-ups, which otherwise makes trades per second swing by 3x."""
    total = warmup + messages
    priority = ["chrt", "-f", "10"] if realtime and shutil.which("chrt") else []
    me = [sys.executable, "-m", "benchmarks.e2e.sbe"]
    result = run_processes(
        [*priority, *pinned(0), *me, "--serve", kind, "--count", str(total),
         "--timeout", str(timeout)],
        lambda urls: [
            *priority, *pinned(1), *me, "--client", kind, "--ws-url", urls["ws_url"],
            "--rest-url", urls["rest_url"], "--warmup", str(warmup), "--messages", str(messages),
        ],
        timeout=timeout,
        what=f"client {kind}",
    )  # fmt: skip
    result["bytes_per_trade"] = result["server"]["wire_bytes"] / total
    return result


def report(results: dict[str, list[dict[str, Any]]], repeat: int) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    lines = [
        "| wire form | trades/frame | bytes/trade on the wire | trades/s (median) | "
        "CPU µs/trade | rate vs JSON (per repetition) | CPU vs JSON |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    json_rates = [r["msgs_per_s"] for r in results["json"]]
    json_cpu = [r["cpu_us_per_msg"] for r in results["json"]]
    for kind, runs in results.items():
        rates = [r["msgs_per_s"] for r in runs]
        cpu = [r["cpu_us_per_msg"] for r in runs]
        ratio = [a / b for a, b in zip(rates, json_rates, strict=True)]
        cpu_ratio = [a / b for a, b in zip(cpu, json_cpu, strict=True)]
        lines.append(
            f"| {kind} | {KINDS[kind]} | {runs[0]['bytes_per_trade']:.1f} | {med(rates):,.0f} | "
            f"{med(cpu):.2f} | {med(ratio):.2f}x [{', '.join(f'{x:.2f}' for x in ratio)}] | "
            f"{med(cpu_ratio):.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="measured trades")
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated wire forms")
    parser.add_argument(
        "--realtime", action="store_true", help="run server and client under chrt -f 10"
    )
    parser.add_argument("--serve", choices=sorted(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=sorted(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    parser.add_argument("--rest-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        print(json.dumps(run(serve(args.serve, args.count, args.timeout))), flush=True)
        return 0
    if args.client:
        coro = measure(args.client, args.ws_url, args.rest_url, args.warmup, args.messages)
        print(json.dumps(run(coro)), flush=True)
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    if "json" not in kinds:
        kinds.insert(0, "json")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for rep in range(args.repeat):
        order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
        for kind in order:
            result = run_pair(
                kind, args.warmup, args.messages, args.timeout, realtime=args.realtime
            )
            if result.get("gaps") or result.get("decode_errors") or not result.get("complete"):
                raise RuntimeError(f"{kind}: incomplete or lossy run: {result}")
            results[kind].append(result)
            print(
                f"rep {rep} {kind}: {result['msgs_per_s']:,.0f} trades/s, "
                f"{result['cpu_us_per_msg']:.2f} µs CPU/trade, "
                f"{result['bytes_per_trade']:.1f} B/trade (socket {result['socket_bytes']:,} B)",
                file=sys.stderr,
                flush=True,
            )
    print(report(results, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
