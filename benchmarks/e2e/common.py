"""What the flood server and the clients share: the frames on the wire, the counting callback
with its measurement marks, and the process probes (CPU, mallocs, gc, RSS)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SYMBOL = "BTCUSDT"
STREAM = "btcusdt@trade"
FIRST_TRADE_ID = 1_000_000_000
"""Ten-digit ids (for up to 9e9 frames) keep every flood frame the same length."""
EVENT_TIME_MS = 1_764_000_000_000

_PREFIX = b'{"stream":"' + STREAM.encode() + b'","data":'
_TRADE = (
    b'{"e":"trade","E":%d,"s":"' + SYMBOL.encode() + b'","t":%d,"p":"67012.34000000",'
    b'"q":"0.01200000","T":%d,"m":true,"M":true}'
)
COMBINED_TEMPLATE = _PREFIX + _TRADE + b"}"
"""A Binance combined-stream trade frame; ``% (event_time, trade_id, trade_time)``."""

MALLOC_COUNTER_C = Path(__file__).resolve().parent / "malloc_counter.c"


def trade_frame(trade_id: int, event_time: int = EVENT_TIME_MS) -> bytes:
    """One combined-stream trade frame (the WebSocket payload)."""
    return COMBINED_TEMPLATE % (event_time, trade_id, EVENT_TIME_MS)


def ws_header(length: int) -> bytes:
    """The header of an unmasked (server to client) final text frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


FRAME_PAYLOAD_BYTES = len(trade_frame(FIRST_TRADE_ID))
FRAME_WIRE_BYTES = FRAME_PAYLOAD_BYTES + len(ws_header(FRAME_PAYLOAD_BYTES))


def encode_chunks(first_id: int, count: int, per_chunk: int = 1024) -> list[bytes]:
    """``count`` complete WebSocket frames (header + combined trade payload, contiguous ids),
    joined into chunks of ``per_chunk`` frames: what the flood server writes to the socket."""
    # a header byte 0x25 would read as a % directive: escape it
    template = ws_header(FRAME_PAYLOAD_BYTES).replace(b"%", b"%%") + COMBINED_TEMPLATE
    chunks = []
    end = first_id + count
    for start in range(first_id, end, per_chunk):
        stop = min(start + per_chunk, end)
        chunk = b"".join([template % (EVENT_TIME_MS, i, EVENT_TIME_MS) for i in range(start, stop)])
        chunks.append(chunk)
    return chunks


# -- process probes ------------------------------------------------------------------------------


def malloc_reader() -> Any:
    try:
        lib = ctypes.CDLL(None)
        reader = lib.mc_allocs
    except (OSError, AttributeError):
        return None
    reader.restype = ctypes.c_ulonglong
    reader.argtypes = []
    return reader


def build_malloc_counter(directory: str | None = None) -> str:
    """Compile benchmarks/e2e/malloc_counter.c into a temporary directory; returns the .so path."""
    out_dir = directory or tempfile.mkdtemp(prefix="fastmd-e2e-")
    lib = os.path.join(out_dir, "libmc.so")
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-o", lib, str(MALLOC_COUNTER_C)],
        check=True,
        capture_output=True,
    )
    return lib


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def gc_collections() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]


class Snapshot:
    """Probes read at one measurement mark."""

    __slots__ = ("allocs", "blocks", "cpu_ns", "gc", "rss", "wall_ns")

    def __init__(self, allocs: int | None, wall_ns: int, cpu_ns: int, gcs: list[int]) -> None:
        self.allocs = allocs
        self.wall_ns = wall_ns
        self.cpu_ns = cpu_ns
        self.gc = gcs
        self.rss = 0
        self.blocks = 0


# -- the callback every client calls once per trade ------------------------------------------------


class Meter:
    """The user callback of every client: counts events and keeps the last one (a no-op apart
    from that). At the ``warmup``-th event it snapshots the probes; at ``warmup + messages`` it
    snapshots again and resolves :attr:`done`. The snapshot reads are ordered so the probes
    themselves fall outside the measured interval as far as possible."""

    __slots__ = ("_malloc", "done", "end", "last", "mark", "n", "start", "total", "warmup")

    def __init__(self, warmup: int, messages: int) -> None:
        self.n = 0
        self.warmup = warmup
        self.total = warmup + messages
        self.mark = warmup if warmup > 0 else self.total
        self.last: Any = None
        self.start: Snapshot | None = None
        self.end: Snapshot | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._malloc = malloc_reader()
        if warmup <= 0:
            self.start = self._snapshot_start()

    def on_event(self, event: Any) -> None:
        self.last = event
        self.n += 1
        if self.n == self.mark:
            self._at_mark()

    def _at_mark(self) -> None:
        if self.n == self.total:
            self.end = self._snapshot_end()
            if not self.done.done():
                self.done.set_result(None)
        else:
            self.start = self._snapshot_start()
            self.mark = self.total

    def _snapshot_start(self) -> Snapshot:
        rss, blocks = rss_bytes(), sys.getallocatedblocks()
        gcs = gc_collections()
        malloc = self._malloc
        snap = Snapshot(None, 0, 0, gcs)
        snap.rss, snap.blocks = rss, blocks
        snap.allocs = malloc() if malloc is not None else None
        snap.cpu_ns = time.process_time_ns()
        snap.wall_ns = time.perf_counter_ns()
        return snap

    def _snapshot_end(self) -> Snapshot:
        wall_ns = time.perf_counter_ns()
        cpu_ns = time.process_time_ns()
        malloc = self._malloc
        allocs = malloc() if malloc is not None else None
        snap = Snapshot(allocs, wall_ns, cpu_ns, gc_collections())
        snap.rss, snap.blocks = rss_bytes(), sys.getallocatedblocks()
        return snap

    def result(self) -> dict[str, Any]:
        """The measurement between the two marks, as JSON-able numbers."""
        start, end = self.start, self.end
        if start is None or end is None:
            return {"received": self.n, "complete": False}
        messages = self.total - self.warmup
        wall = (end.wall_ns - start.wall_ns) / 1e9
        out: dict[str, Any] = {
            "received": self.n,
            "complete": True,
            "messages": messages,
            "seconds": wall,
            "msgs_per_s": messages / wall if wall > 0 else 0.0,
            "cpu_us_per_msg": (end.cpu_ns - start.cpu_ns) / 1e3 / messages,
            "gc_collections": [b - a for a, b in zip(start.gc, end.gc, strict=True)],
            "rss_start": start.rss,
            "rss_end": end.rss,
            "blocks_start": start.blocks,
            "blocks_end": end.blocks,
        }
        if start.allocs is not None and end.allocs is not None:
            out["mallocs_per_msg"] = (end.allocs - start.allocs) / messages
        return out


class LatencyMeter(Meter):
    """A :class:`Meter` that also records ``monotonic_ns() - event.event_time`` for every event
    after the warm-up (the flood server stamps ``E`` with its ``monotonic_ns()`` at send)."""

    __slots__ = ("latencies",)

    def __init__(self, warmup: int, messages: int) -> None:
        super().__init__(warmup, messages)
        self.latencies: list[int] = []

    def on_event(self, event: Any) -> None:
        now = time.monotonic_ns()
        self.last = event
        self.n += 1
        if self.n > self.warmup:
            self.latencies.append(now - event.event_time)
        if self.n == self.mark:
            self._at_mark()

    def result(self) -> dict[str, Any]:
        out = super().result()
        values = sorted(self.latencies)
        if values:
            out["latency_us"] = {name: percentile(values, q) / 1e3 for name, q in PERCENTILES}
            out["latency_samples"] = len(values)
        return out


PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0))


def percentile(sorted_values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return float(sorted_values[rank - 1])


def run(coro: Any, loop: str = "uvloop") -> Any:
    """``asyncio.run`` on the named event loop (uvloop falls back to asyncio if missing)."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


def stream_router(on_event: Any, ws_url: str) -> tuple[Any, Any, list[Any]]:
    """fastmd's real frame router for the benchmark's one trade stream, its route installed by
    hand as ``subscribe`` would with one callback, without a running Client: ``(router, route,
    gaps)``. The router falls back to a never-connected ``Connection`` for control frames."""
    import fastmd
    from fastmd.aio.reporting import Reporter
    from fastmd.aio.router import frame_router
    from fastmd.aio.routes import RouteTable
    from fastmd.core.streams import parse_stream

    gaps: list[Any] = []
    table = RouteTable("binance-spot", Reporter(), gaps.append, slow_callback=0.01)
    route = table.add(STREAM, parse_stream(STREAM))
    route.callbacks = (on_event,)
    route.single = on_event
    decoder = fastmd.Decoder()
    decoder.register([STREAM])
    conn = fastmd.Connection(ws_url)
    router, _ = frame_router(
        decoder,
        table,
        conn.handle_frame,
        on_reply=lambda reply: None,
        on_unrouted=lambda message: None,
        on_decode_error=lambda error: None,
    )
    return router, route, gaps


ROOT = Path(__file__).resolve().parents[2]


def pinned(core: int) -> list[str]:
    """``taskset`` to one core when the machine has two: server and client never share one."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def _last_json(text: str) -> dict[str, Any] | None:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def run_processes(
    server_cmd: Sequence[str],
    client_cmd: Callable[[dict[str, Any]], Sequence[str]],
    *,
    timeout: float,
    what: str,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A server process that prints its URLs as a first JSON line, then a client process given
    them (``client_cmd(urls)``); the client's last JSON line, with the server's last one under
    ``"server"`` and the 1-minute load average when the server started under ``"loadavg_1m"``.

    Raises:
        RuntimeError: either process failed or printed no result (``what`` names the run).
    """
    load = os.getloadavg()[0]
    server = subprocess.Popen(
        list(server_cmd), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        if not first:
            raise RuntimeError(f"server failed: {server.stderr.read() if server.stderr else ''}")
        done = subprocess.run(
            list(client_cmd(json.loads(first))), cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, **(env or {})}, timeout=timeout + 30,
        )  # fmt: skip
        result = _last_json(done.stdout)
        if done.returncode != 0 or result is None:
            raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}")
        out, _ = server.communicate(timeout=30)
        result["server"] = _last_json(out) or {}
        result["loadavg_1m"] = load
        return result
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
