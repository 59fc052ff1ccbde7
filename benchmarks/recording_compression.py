"""zstd against gzip for recordings (docs/recording.md, "Compression"): size and speed on recorded
data, as the recorder compresses it.

Usage: ``python -m benchmarks.recording_compression [DIR...]``. Without folders it measures the
repository's recorded Binance session (``tests/data/binance-spot-2021-10-12-session``) and a
30 s recording of the simulator's demo streams (3 symbols x trade, kline_1m, bookTicker,
depth@100ms, 300 order-flow events/s) made on the spot. Each input is the uncompressed content
of the recording's chunks (records: header + frame or REST body); each codec compresses it as the
recorder does (256 KiB buffers, a block flush every 16 buffers, about once a second at this data
rate, then the end of the stream) and decompresses it as the reader does (1 MiB reads). Times
are the best of 5 runs, single core.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import zstandard

from fastmd.sim.replay import RECORD_HEADER, iter_records

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "tests" / "data" / "binance-spot-2021-10-12-session"
BUFFER = 256 << 10
RUNS = 5


def raw_content(folder: Path) -> bytes:
    """The records of ``folder`` as the chunks hold them, uncompressed."""
    parts = []
    for kind, time_ns, payload in iter_records(folder):
        parts.append(RECORD_HEADER.pack(kind, time_ns, len(payload)))
        parts.append(bytes(payload))
    return b"".join(parts)


def _zstd(level: int) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    def compress(data: bytes) -> bytes:
        stream = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
        out = []
        for index, start in enumerate(range(0, len(data), BUFFER)):
            out.append(stream.compress(data[start : start + BUFFER]))
            if index % 16 == 15:
                out.append(stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        out.append(stream.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
        return b"".join(out)

    def decompress(data: bytes) -> bytes:
        stream = zstandard.ZstdDecompressor().decompressobj()
        return b"".join(stream.decompress(data[i : i + (1 << 20)])
                        for i in range(0, len(data), 1 << 20))  # fmt: skip

    return compress, decompress


def _gzip(level: int) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    def compress(data: bytes) -> bytes:
        stream = zlib.compressobj(level, zlib.DEFLATED, 31)
        out = []
        for index, start in enumerate(range(0, len(data), BUFFER)):
            out.append(stream.compress(data[start : start + BUFFER]))
            if index % 16 == 15:
                out.append(stream.flush(zlib.Z_SYNC_FLUSH))
        out.append(stream.flush(zlib.Z_FINISH))
        return b"".join(out)

    def decompress(data: bytes) -> bytes:
        stream = zlib.decompressobj(wbits=31)
        return b"".join(stream.decompress(data[i : i + (1 << 20)])
                        for i in range(0, len(data), 1 << 20))  # fmt: skip

    return compress, decompress


CODECS = {
    "zstd -1": _zstd(1),
    "zstd -3 (default)": _zstd(3),
    "zstd -9": _zstd(9),
    "gzip -1": _gzip(1),
    "gzip -6": _gzip(6),
    "gzip -9": _gzip(9),
}


def _best(action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def measure(name: str, data: bytes) -> None:
    mib = len(data) / (1 << 20)
    print(f"\n{name}: {len(data):,} bytes uncompressed")
    print(
        f"{'codec':<18} {'ratio':>6} {'size':>10} {'compress MiB/s':>15} {'decompress MiB/s':>17}"
    )
    for codec, (compress, decompress) in CODECS.items():
        packed = compress(data)
        assert decompress(packed) == data
        c_time = _best(lambda compress=compress: compress(data))
        d_time = _best(lambda decompress=decompress, packed=packed: decompress(packed))
        print(
            f"{codec:<18} {len(data) / len(packed):6.1f} {len(packed):>10,} "
            f"{mib / c_time:15.0f} {mib / d_time:17.0f}"
        )


async def _simulator_recording(out: Path) -> None:
    import fastmd
    from fastmd.sim import Exchange

    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    streams = [f"{s.lower()}@{kind}" for s in symbols
               for kind in ("trade", "kline_1m", "bookTicker", "depth@100ms")]  # fmt: skip
    async with Exchange("binance-spot", symbols, seed=1, rate=300.0) as ex:
        await fastmd.record(streams, out, duration=30.0, ws_url=ex.ws_url, rest_url=ex.rest_url)


def main(argv: list[str]) -> None:
    folders = [Path(arg) for arg in argv]
    with tempfile.TemporaryDirectory() as temp:
        if not folders:
            simulated = Path(temp) / "sim"
            asyncio.run(_simulator_recording(simulated))
            folders = [SESSION, simulated]
        for folder in folders:
            label = "simulator, 30 s of the demo streams" if folder.parent == Path(temp) else folder
            measure(str(label), raw_content(folder))


if __name__ == "__main__":
    main(sys.argv[1:])
