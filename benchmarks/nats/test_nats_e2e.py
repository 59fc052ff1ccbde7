"""simulator flood -> relay -> real nats-server -> Source callback, against the in-process Client.

``python -m benchmarks.nats.test_nats_e2e`` runs the full comparison (one run: the in-process
client, the relay with 1 and 2 workers, a batch size sweep) and prints events/s and p50/p99
latency (exchange event time to the consumer's callback, wall clock in ms: the simulator
stamps events with its own wall clock); docs/scaling.md holds the figures. Under pytest
(``pytest benchmarks --benchmark-disable``) one short pass of each path checks that it works;
without nats-server it skips (fails when ``CI`` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"]
STREAMS = [f"{s.lower()}@trade" for s in SYMBOLS] + [f"{s.lower()}@bookTicker" for s in SYMBOLS]


class _Meter:
    def __init__(self) -> None:
        self.count = 0
        self.lat: list[float] = []

    def __call__(self, event: Any) -> None:
        self.count += 1
        if self.count % 16 == 0:
            stamp = getattr(event, "event_time", None) or getattr(event, "trade_time", None)
            if stamp:
                self.lat.append(time.time() * 1000 - stamp)

    def summary(self, seconds: float) -> dict[str, float]:
        lat = sorted(self.lat) or [float("nan")]
        return {
            "events_per_s": self.count / seconds,
            "p50_ms": lat[len(lat) // 2],
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        }


class _Sim:
    """``fastmd sim`` in its own process, so the consumer's loop measures only consuming."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.ws_url = self.rest_url = ""
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> _Sim:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastmd", "sim", "--symbols", ",".join(SYMBOLS),
            "--rate", str(self.rate), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 20)).decode()
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        self.ws_url, self.rest_url = fields["ws_url"], fields["rest_url"]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.process is not None
        self.process.terminate()
        await self.process.wait()


async def _client_only(rate: float, seconds: float) -> dict[str, float]:
    import fastmd

    meter = _Meter()
    async with (
        _Sim(rate) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url) as client,
    ):
        await client.subscribe(STREAMS, meter).wait_active(10)
        await asyncio.sleep(0.5)
        meter.count, meter.lat = 0, []
        await asyncio.sleep(seconds)
        return meter.summary(seconds)


async def _through_nats(
    url: str, rate: float, seconds: float, workers: int, batch_size: int
) -> dict[str, float]:
    from fastmd.nats import Source

    meter = _Meter()
    async with _Sim(rate) as ex, Source(url) as source:
        await source.subscribe(STREAMS, meter).wait_active(10)
        relay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastmd", "relay", *STREAMS, "--nats", url, "--url", ex.ws_url,
            "--rest-url", ex.rest_url, "--workers", str(workers),
            "--batch-size", str(batch_size), stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with asyncio.timeout(20):
                while meter.count < 50:  # noqa: ASYNC110 - the relay is another process
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            meter.count, meter.lat = 0, []
            await asyncio.sleep(seconds)
            return meter.summary(seconds)
        finally:
            relay.terminate()
            await relay.wait()


def _nats_server() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        if os.environ.get("CI"):
            pytest.fail("nats-server is not installed: CI is set")
        pytest.skip("nats-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return process, f"nats://127.0.0.1:{port}"


async def run(
    rate: float, seconds: float, sweep: tuple[int, ...], workers: tuple[int, ...] = (1, 2)
) -> list[tuple[str, Any]]:
    process, url = _nats_server()
    try:
        rows: list[tuple[str, Any]] = [("in-process Client", await _client_only(rate, seconds))]
        for n in workers:
            rows.append(
                (f"relay x{n} -> NATS -> Source (batch 100)",
                 await _through_nats(url, rate, seconds, n, 100))
            )  # fmt: skip
        for size in sweep:
            rows.append(
                (f"relay x1, batch {size}", await _through_nats(url, rate, seconds, 1, size))
            )
        for size in (1, *sweep):
            rows.append((f"wire ceiling, batch {size}", await _ceiling(url, size, seconds)))
        return rows
    finally:
        process.kill()
        process.wait()


PUBLISHER = """
import asyncio, sys, time
import nats
from msgspec.structs import replace
import fastmd
from fastmd.core import wire

async def main():
    url, size, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    frame = (b'{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"42000.10","q":"0.01",'
             b'"T":1,"m":true,"M":true}')
    event = fastmd.Decoder(price_type=str).decode(frame, "btcusdt@trade").event
    nc = await nats.connect(url)
    await asyncio.sleep(float(sys.argv[4]))
    seq, first, end = 0, 1, time.monotonic() + seconds
    subject = wire.event_subject("binance-spot", "btcusdt@trade")
    while time.monotonic() < end:
        for _ in range(50):
            seq += 1
            events = [replace(event, trade_id=first + i) for i in range(size)]  # distinct ids
            data = wire.encode(wire.Batch(v=1, venue="binance-spot", stream="btcusdt@trade",
                relay="bench", epoch=1, seq=seq, first=first, n=size, sent=time.time_ns(),
                events=events))
            first += size
            await nc.publish(subject, data)
    await nc.flush()
    print(first - 1, flush=True)
    await nc.close()

asyncio.run(main())
"""


async def _ceiling(url: str, batch_size: int, seconds: float) -> dict[str, float]:
    """Batches of trades published as fast as one process can build, encode and publish them
    (building costs the publisher more than a relay pays: it makes each event), and one Source
    decoding, checking and calling back: the wire's own ceilings, no exchange in front."""
    from fastmd.nats import Source

    count = 0
    last = 0.0

    def callback(event: Any) -> None:
        nonlocal count, last
        count += 1
        last = time.monotonic()

    async with Source(url) as source:
        await source.subscribe("btcusdt@trade", callback).wait_active(10)
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, url, str(batch_size), str(seconds), "0.5",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        started = time.monotonic() + 0.5  # the publisher waits 0.5 s before it starts
        out, _ = await publisher.communicate()
        published = int(out.decode().split()[-1])
        counters = source.health().streams["btcusdt@trade"]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):  # the consumer works off its backlog
                while count + counters.missing < published:
                    await asyncio.sleep(0.05)
                    counters = source.health().streams["btcusdt@trade"]
    return {
        "published_per_s": published / seconds,
        "consumed_per_s": count / max(last - started, 1e-3),
        "missing": counters.missing,
    }


def test_smoke_every_path_delivers() -> None:
    pytest.importorskip("nats")
    rows = asyncio.run(run(rate=500.0, seconds=0.2, sweep=(), workers=(1,)))
    assert all(
        result.get("events_per_s", result.get("consumed_per_s", 0)) > 0 for _, result in rows
    ), rows


if __name__ == "__main__":
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 50_000.0
    for name, result in asyncio.run(run(rate=rate, seconds=3.0, sweep=(10, 100, 1000))):
        if "events_per_s" in result:
            print(
                f"{name:42s} {result['events_per_s']:>10,.0f} ev/s  "
                f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms"
            )
        else:
            print(
                f"{name:42s} published {result['published_per_s']:>10,.0f} ev/s  consumed "
                f"{result['consumed_per_s']:>10,.0f} ev/s  reported missing {result['missing']}"
            )
