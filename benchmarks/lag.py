"""Exchange-to-callback lag of a plain subscription against the simulator (issue 13's lag figure).

Lag is ``time.time()`` when the callback runs, plus the exchange clock offset measured from REST
server time (``fastmd.aio.clock.ClockSync``), minus the event time ``E``. Both times are whole
milliseconds on the wire, so figures are good to about 1 ms.

Two set-ups per order-flow rate: the simulator on the client's own event loop (``in-process``),
and ``fastmd sim`` in its own process (``separate``), as a bot would meet an exchange::

    python benchmarks/lag.py [SECONDS] [RATE ...]
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

import fastmd
from fastmd.aio.clock import ClockSync
from fastmd.aio.reporting import Reporter
from fastmd.aio.rest import RestClient
from fastmd.aio.tasks import Tasks
from fastmd.core.clock import LagWindow
from fastmd.sim import Exchange

STREAMS = ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@kline_1s"]


async def _offset(rest_url: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as session:
        rest = RestClient(session, rest_url, "binance-spot")
        sync = ClockSync(rest, Reporter(), Tasks(print), burst=8, spacing=0.01)
        if not await sync.measure():
            raise SystemExit("no server time from the simulator")
        return sync.offset or 0.0, sync.uncertainty or 0.0


async def measure(ws_url: str, rest_url: str, seconds: float) -> None:
    """Subscribe to :data:`STREAMS` for ``seconds`` and print each stream's lag."""
    offset, uncertainty = await _offset(rest_url)
    windows = {stream: LagWindow(1_000_000) for stream in STREAMS}

    def recorder(window: LagWindow) -> Callable[[Any], None]:
        add, now = window.add, time.time

        def on_event(event: Any) -> None:
            add(now() + offset - event.event_time / 1000)

        return on_event

    async with fastmd.Client(ws_url=ws_url, rest_url=rest_url) as client:
        for stream, window in windows.items():
            await client.subscribe(stream, recorder(window)).wait_active(timeout=5)
        for window in windows.values():
            window.clear()
        await asyncio.sleep(seconds)
    print(f"  clock offset {offset * 1000:+.3f} ms (+-{uncertainty * 1000:.3f} ms)")
    for stream, window in windows.items():
        stats = window.stats()
        if stats.p50 is None or stats.p99 is None or stats.max is None:
            print(f"  {stream:22s} no events")
            continue
        print(
            f"  {stream:22s} n={stats.samples:7d}  p50 {stats.p50 * 1000:7.2f} ms  "
            f"p99 {stats.p99 * 1000:7.2f} ms  max {stats.max * 1000:7.2f} ms"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def main(seconds: float, rates: list[float]) -> None:
    for rate in rates:
        print(f"in-process simulator, {rate:g} order-flow events/s, {seconds:g} s")
        async with Exchange(symbols=["BTCUSDT"], seed=1, rate=rate) as ex:
            await measure(ex.ws_url, ex.rest_url, seconds)
        port, rest_port = _free_port(), _free_port()
        command = [sys.executable, "-m", "fastmd", "sim", "--symbols", "BTCUSDT", "--port",
                   str(port), "--rest-port", str(rest_port), "--rate", str(rate)]  # fmt: skip
        server = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL)
        try:
            await asyncio.sleep(2.0)  # its start-up
            print(f"separate `fastmd sim` process, {rate:g} order-flow events/s, {seconds:g} s")
            await measure(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{rest_port}", seconds)
        finally:
            server.terminate()
            await server.wait()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(
        main(
            float(arguments[0]) if arguments else 10.0,
            [float(r) for r in arguments[1:]] or [50, 1000],
        )
    )
