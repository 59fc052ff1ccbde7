"""``fastmd.record``: write a market-data session to disk, every frame exactly as received.

A :class:`SessionWriter` owns the folder (docs/recording.md, "On-disk format"): records are
appended to a bounded in-memory buffer by the client's frame tap (one header pack and two
``bytearray`` appends per frame, no decode), compressed into the open chunk whenever the buffer
fills and once per ``flush_interval``, and the chunk is closed, fsynced and renamed from
``.part`` to its final name when it reaches ``rotate_bytes`` or ``rotate_seconds``. The manifest
is rewritten (temp file, fsync, rename) at the start, at every rotation and at the end, so a
recorder killed at any moment leaves a manifest and every completed chunk readable, and the open
chunk readable up to its last flush.

:func:`record` runs a :class:`fastmd.Client` with the tap, keeps the order books of the depth
diff streams (so their REST snapshots are recorded), fetches exchangeInfo once, records every gap
the client reports, and stops after ``duration`` or when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import platform
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final, Literal

import fastmd
from fastmd.core.sequence import Gap
from fastmd.core.streams import StreamKind, Venue, parse_stream
from fastmd.errors import FastmdError, RecordingError, StreamNameError

__all__ = ["RecordingStats", "record"]

logger = logging.getLogger(__name__)

Compression = Literal["zstd", "gzip"]

FORMAT: Final = "fastmd-recording"
FORMAT_VERSION: Final = 1
CHUNK_MAGIC: Final = b"FMDREC\x00\x01"
_HEADER: Final = struct.Struct("<BqI")  # kind, receive time (ns since the epoch), length
KIND_FRAME: Final = 1
KIND_FRAME_BINARY: Final = 2
KIND_REST: Final = 3
KIND_GAP: Final = 4
_SUFFIX: Final[dict[str, str]] = {"zstd": "zst", "gzip": "gz"}
_DEFAULT_LEVEL: Final[dict[str, int]] = {"zstd": 3, "gzip": 6}
_RECORDED_ENDPOINTS: Final = frozenset({"depth", "exchangeInfo"})
_DATA, _FLUSH, _CLOSE = 0, 1, 2  # the writer thread's commands
MAX_GAPS_LISTED: Final = 1000
"""Gaps listed one by one in the manifest; beyond, only counted (every gap is a chunk record)."""


@dataclass(frozen=True, slots=True)
class RecordingStats:
    """What a recording holds so far (passed to ``on_progress``) or in all (returned by
    :func:`record`).

    Attributes:
        path: the recording's folder.
        frames: WebSocket messages recorded.
        frame_bytes: their payload bytes, as received.
        written_bytes: compressed bytes written to disk (chunks), the open chunk included.
        chunks: chunks completed (closed, fsynced and renamed).
        snapshots: REST depth snapshots recorded.
        gaps: gaps the client reported.
        elapsed: seconds since the recording started.
        complete: the recording ended normally (``False`` while it runs or after a failure).
    """

    path: Path
    frames: int
    frame_bytes: int
    written_bytes: int
    chunks: int
    snapshots: int
    gaps: int
    elapsed: float
    complete: bool


def _versions() -> dict[str, str]:
    found = {"fastmd": fastmd.__version__, "python": platform.python_version()}
    for package in ("picows", "msgspec", "aiohttp", "zstandard"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def _iso(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec="milliseconds")


class _Compressor:
    """One chunk's compressed stream: ``compress``, ``flush`` (readable up to here) and
    ``finish`` (the end of the stream, with its checksum)."""

    def __init__(self, compression: Compression, level: int) -> None:
        if compression == "zstd":
            import zstandard

            zstd = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
            self.compress: Callable[[bytes | bytearray], bytes] = zstd.compress
            self._flush_block: Callable[[], bytes] = lambda: zstd.flush(
                zstandard.COMPRESSOBJ_FLUSH_BLOCK
            )
            self._finish: Callable[[], bytes] = lambda: zstd.flush(
                zstandard.COMPRESSOBJ_FLUSH_FINISH
            )
        else:
            deflate = zlib.compressobj(level, zlib.DEFLATED, 31)
            self.compress = deflate.compress
            self._flush_block = lambda: deflate.flush(zlib.Z_SYNC_FLUSH)
            self._finish = lambda: deflate.flush(zlib.Z_FINISH)

    def flush(self) -> bytes:
        return self._flush_block()

    def finish(self) -> bytes:
        return self._finish()


class SessionWriter:
    """Writes one recording folder (docs/recording.md).

    The recording thread (the event loop's) only appends records to a buffer; a writer thread of
    its own compresses full buffers, writes, flushes, fsyncs, renames and rewrites the manifest,
    so neither compression nor the disk ever holds up the event loop. At most ``queue_limit``
    buffers wait for the writer thread; when the disk cannot keep up, the recording thread waits
    for it (memory stays bounded, the client's reading pauses) rather than growing.

    Call every method from one thread (the event loop's).

    Args:
        path: the folder; created if missing, refused if it already holds a recording.
        venue, streams: written to the manifest (and the URLs, given to :meth:`open`).
        compression: ``"zstd"`` (default) or ``"gzip"``.
        level: compression level (zstd 3, gzip 6 by default).
        rotate_bytes: a chunk is completed once it holds this many uncompressed bytes.
        rotate_seconds: ... or once it is this old (checked at each :meth:`flush`).
        buffer_size: bytes buffered before they go to the writer thread.
        queue_limit: buffers waiting for the writer thread at most.
        clock_ns: receive-time clock (ns since the epoch).
        monotonic: the clock of ``rotate_seconds``.
        extra: more manifest keys (where a converted recording came from...).

    Raises:
        RecordingError: a bad option, or the zstandard package is missing for ``"zstd"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        venue: Venue,
        streams: Iterable[str],
        compression: Compression = "zstd",
        level: int | None = None,
        rotate_bytes: int = 64 << 20,
        rotate_seconds: float = 3600.0,
        buffer_size: int = 256 << 10,
        queue_limit: int = 16,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        folder = str(self.path)
        if compression not in _SUFFIX:
            raise RecordingError(f"compression must be 'zstd' or 'gzip', not {compression!r}",
                                 path=folder)  # fmt: skip
        if not (rotate_bytes > 0 and rotate_seconds > 0 and buffer_size > 0 and queue_limit > 0):
            raise RecordingError(
                "rotate_bytes, rotate_seconds, buffer_size and queue_limit must be positive",
                path=folder,
            )
        if compression == "zstd":
            try:
                import zstandard  # noqa: F401
            except ImportError as exc:
                raise RecordingError(
                    "zstd needs the zstandard package (pip install zstandard), or use gzip",
                    path=folder,
                ) from exc
        self.compression: Compression = compression
        self.level = _DEFAULT_LEVEL[compression] if level is None else level
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.buffer_size = buffer_size
        self._clock_ns = clock_ns
        self._monotonic = monotonic
        # Written by the writer thread only (the recording thread's counts are copied in when
        # it writes the manifest): json.dump never sees it change under it.
        self._manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "venue": venue,
            "streams": list(streams),
            "ws_url": None,
            "rest_url": None,
            "compression": compression,
            "record_header": "<BqI: kind u8, receive time i64 ns since the epoch, length u32",
            "versions": _versions(),
            "started": None,
            "started_ns": None,
            "ended": None,
            "ended_ns": None,
            "complete": False,
            "chunks": [],
            "frames": 0,
            "frame_bytes": 0,
            "rest_responses": 0,
            "snapshots": 0,
            "gaps_total": 0,
            "gaps": [],
            **(extra or {}),
        }
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(queue_limit)
        self._thread: threading.Thread | None = None
        self._buffer = bytearray()
        self._last_ns = 0
        self._started = 0.0
        self._open = False
        self._closing = False
        # recording thread's counts
        self._frames = 0
        self._others = 0  # records that are not frames
        self._frame_bytes = 0
        self._rest_responses = 0
        self._snapshots = 0
        self._gaps_total = 0
        self._gaps: list[dict[str, Any]] = []
        # writer thread's state
        self._chunk_number = 0
        self._file: Any = None
        self._compressor: _Compressor | None = None
        self._chunk_raw = 0
        self._chunk_written = 0
        self._chunk_records = 0
        self._chunk_frames = 0
        self._chunk_first_ns = 0
        self._chunk_last_ns = 0
        self._chunk_opened = 0.0
        self._frames_before = self._others_before = 0  # totals already in chunks
        self._written = 0
        self._chunks = 0
        self.failed: OSError | None = None
        """The write error that stopped the recording, if one did."""

    # -- lifecycle (recording thread) ---------------------------------------------------------

    def open(self, ws_url: str, rest_url: str) -> None:
        """Create the folder, write the first manifest (naming the URLs recorded) and start the
        writer thread.

        Raises:
            RecordingError: the folder holds a recording, or cannot be created or written.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"cannot create {self.path}: {exc}", path=str(self.path)) from exc
        if (self.path / "manifest.json").exists() or any(self.path.glob("chunk-*")):
            raise RecordingError(
                f"{self.path} already holds a recording; choose another --out folder",
                path=str(self.path),
            )
        now = self._clock_ns()
        self._manifest.update(ws_url=ws_url, rest_url=rest_url, started=_iso(now), started_ns=now)
        self._started = self._monotonic()
        try:
            self._write_manifest()
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc}", path=str(self.path)) from exc
        self._open = True
        self._thread = threading.Thread(
            target=self._work, name=f"fastmd-record {self.path.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Take no more records; the writer thread completes the open chunk and writes the
        final manifest (``complete: true`` unless a write failed). Returns at once; idempotent."""
        if not self._open and self._closing:
            return
        was_open, self._open = self._open, False
        if self._thread is None or self._closing:
            return
        self._closing = True
        if was_open and self.failed is None:
            self._submit()
        self._queue.put((_CLOSE, self._clock_ns()))

    def close(self) -> None:
        """:meth:`stop`, then wait until the writer thread finished (the last chunk fsynced and
        renamed, the manifest written); idempotent."""
        self.stop()
        if self._thread is not None:
            self._thread.join()

    def sync(self) -> None:
        """Wait until the writer thread has handled everything submitted so far."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    # -- records (recording thread) -----------------------------------------------------------

    def frame(self, payload: memoryview, binary: bool) -> None:
        """The client's frame tap: append one received message (never raises)."""
        if not self._open:
            return
        now = self._last_ns = self._clock_ns()
        buffer = self._buffer
        buffer += _HEADER.pack(KIND_FRAME_BINARY if binary else KIND_FRAME, now, len(payload))
        buffer += payload
        self._frames += 1
        self._frame_bytes += len(payload)
        if len(buffer) >= self.buffer_size:
            self._submit()

    def rest_response(self, endpoint: str, query: Mapping[str, str], body: bytes) -> None:
        """The REST client's response tap: depth snapshots and exchangeInfo are recorded."""
        if not self._open or endpoint not in _RECORDED_ENDPOINTS:
            return
        request = endpoint + "?" + "&".join(f"{key}={value}" for key, value in query.items())
        self._append(KIND_REST, request.encode() + b"\n" + body)
        self._rest_responses += 1
        if endpoint == "depth":
            self._snapshots += 1

    def gap(self, gap: Gap) -> None:
        """A gap the client reported: a record in the chunk and a line in the manifest."""
        if not self._open:
            return
        entry = {
            "time_ns": self._clock_ns(),
            "stream": gap.stream,
            "expected": gap.expected,
            "received": gap.received,
            "missing": gap.missing,
            "reason": str(gap.reason),
        }
        self._append(KIND_GAP, json.dumps(entry, separators=(",", ":")).encode())
        self._gaps_total += 1
        if len(self._gaps) < MAX_GAPS_LISTED:
            self._gaps.append(entry)

    def flush(self) -> None:
        """Hand what is buffered to the writer thread and have it flush the compressed stream,
        so the open chunk is readable up to here, and complete the chunk if it is due (size or
        age). Returns at once; never raises."""
        if not self._open:
            return
        self._submit()
        self._queue.put((_FLUSH, self._monotonic()))

    def stats(self) -> RecordingStats:
        """What the recording holds so far."""
        return RecordingStats(
            path=self.path,
            frames=self._frames,
            frame_bytes=self._frame_bytes,
            written_bytes=self._written,
            chunks=self._chunks,
            snapshots=self._snapshots,
            gaps=self._gaps_total,
            elapsed=self._monotonic() - self._started if self._started else 0.0,
            complete=bool(self._manifest["complete"]),
        )

    def _append(self, kind: int, payload: bytes) -> None:
        now = self._last_ns = self._clock_ns()
        self._buffer += _HEADER.pack(kind, now, len(payload))
        self._buffer += payload
        self._others += 1
        if len(self._buffer) >= self.buffer_size:
            self._submit()

    def _submit(self) -> None:
        if not self._buffer:
            return
        if self.failed is not None:
            self._buffer.clear()  # nothing more can be written: memory stays bounded
            return
        full, self._buffer = self._buffer, bytearray()
        # waits when queue_limit buffers are pending
        handed = (full, self._frames, self._others, self._last_ns, self._monotonic())
        self._queue.put((_DATA, handed))

    # -- the writer thread --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            command, argument = self._queue.get()
            try:
                if self.failed is None:
                    if command == _DATA:
                        self._compress(*argument)
                    elif command == _FLUSH:
                        self._flush_chunk(argument)
                    else:
                        self._finish_chunk()
                        self._manifest.update(
                            ended=_iso(argument), ended_ns=argument, complete=True
                        )
                        self._write_manifest()
            except OSError as exc:
                self._fail(exc)
            finally:
                self._queue.task_done()
            if command == _CLOSE:
                return

    def _fail(self, exc: OSError) -> None:
        self.failed = exc
        self._open = False  # the recording thread stops appending
        logger.error("recording to %s stopped: %s", self.path, exc)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = self._compressor = None

    def _compress(
        self, data: bytearray, frames: int, others: int, last_ns: int, handed: float
    ) -> None:
        """Compress ``data`` (whole records; the recording's frame and other record totals,
        last receive time and monotonic time when it was handed over) into the open chunk
        (opened now if none: its age counts from ``handed``)."""
        if self._compressor is None:
            self._open_chunk(_HEADER.unpack_from(data)[1], handed)
        assert self._compressor is not None
        added = frames - self._frames_before
        self._chunk_frames += added
        self._chunk_records += added + others - self._others_before
        self._frames_before, self._others_before = frames, others
        self._chunk_last_ns = last_ns
        self._chunk_raw += len(data)
        self._write(self._compressor.compress(data))
        if self._chunk_raw >= self.rotate_bytes:
            self._finish_chunk()

    def _flush_chunk(self, now: float) -> None:
        if self._compressor is None:
            return
        self._write(self._compressor.flush())
        self._file.flush()
        if now - self._chunk_opened >= self.rotate_seconds:
            self._finish_chunk()

    def _write(self, data: bytes) -> None:
        if data:
            self._file.write(data)
            self._chunk_written += len(data)
            self._written += len(data)

    def _chunk_name(self) -> str:
        return f"chunk-{self._chunk_number:06d}.fmr.{_SUFFIX[self.compression]}"

    def _open_chunk(self, first_ns: int, opened: float) -> None:
        self._chunk_number += 1
        self._file = (self.path / (self._chunk_name() + ".part")).open("wb")
        self._compressor = _Compressor(self.compression, self.level)
        self._chunk_opened = opened
        self._chunk_first_ns = first_ns
        self._chunk_raw = len(CHUNK_MAGIC)
        self._chunk_written = 0
        self._write(self._compressor.compress(CHUNK_MAGIC))

    def _finish_chunk(self) -> None:
        """Complete the open chunk: end its stream, fsync, rename, record it in the manifest."""
        if self._compressor is None:
            return
        self._write(self._compressor.finish())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        name = self._chunk_name()
        os.replace(self.path / (name + ".part"), self.path / name)
        _fsync_dir(self.path)
        self._manifest["chunks"].append(
            {
                "name": name,
                "records": self._chunk_records,
                "frames": self._chunk_frames,
                "raw_bytes": self._chunk_raw,
                "bytes": self._chunk_written,
                "first_ns": self._chunk_first_ns,
                "last_ns": self._chunk_last_ns,
            }
        )
        self._chunks += 1
        self._file = self._compressor = None
        self._chunk_raw = self._chunk_written = self._chunk_records = self._chunk_frames = 0
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = self._manifest
        manifest.update(
            frames=self._frames,
            frame_bytes=self._frame_bytes,
            rest_responses=self._rest_responses,
            snapshots=self._snapshots,
            gaps_total=self._gaps_total,
            gaps=self._gaps[: len(self._gaps)],
        )
        temp = self.path / "manifest.json.tmp"
        with temp.open("w") as file:
            json.dump(manifest, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, self.path / "manifest.json")
        _fsync_dir(self.path)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _book_symbols(streams: Iterable[str], venue: Venue) -> list[str]:
    """The symbols of the depth diff streams, whose books are kept (their snapshots recorded)."""
    symbols = []
    for name in streams:
        stream = parse_stream(name, venue)
        if stream.kind is StreamKind.DEPTH and stream.symbol is not None:
            symbols.append(stream.symbol.upper())
    return list(dict.fromkeys(symbols))


async def record(
    streams: str | Iterable[str],
    out: str | os.PathLike[str],
    *,
    duration: float | None = None,
    venue: Venue = "binance-spot",
    ws_url: str | None = None,
    rest_url: str | None = None,
    books: bool = True,
    compression: Compression = "zstd",
    level: int | None = None,
    rotate_bytes: int = 64 << 20,
    rotate_seconds: float = 3600.0,
    flush_interval: float = 1.0,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[RecordingStats], object] | None = None,
    on_start: Callable[[fastmd.Client], object] | None = None,
    error_reporter: fastmd.ErrorReporter | None = None,
) -> RecordingStats:
    """Record ``streams`` into the folder ``out`` (docs/recording.md) until ``duration``
    seconds passed or ``stop`` is set (or forever), and return what was recorded.

    Every message each socket receives is written exactly as received with its receive time
    (control replies included), with the REST depth snapshots the order books fetched, an
    exchangeInfo fetched once at the start, every gap the client reported, and a manifest.

    Args:
        streams: stream names (``btcusdt@trade``...); checked before anything starts.
        out: the folder; created if missing, refused if it already holds a recording.
        duration: seconds to record; ``None``: until ``stop`` is set.
        venue: ``"binance-spot"`` or ``"binance-usdm"``.
        ws_url, rest_url: base URLs (the simulator's), instead of the venue's.
        books: keep the order book of every depth diff stream (``<symbol>@depth...``), so the
            REST snapshots a replay needs are in the recording.
        compression: ``"zstd"`` (default; docs/recording.md has the measurement) or ``"gzip"``.
        level: compression level (zstd 3, gzip 6 by default).
        rotate_bytes: uncompressed bytes per chunk (64 MiB by default).
        rotate_seconds: a chunk's longest life (1 h by default).
        flush_interval: seconds between flushes of the open chunk (and ``on_progress`` calls):
            what a killed recorder can lose at most.
        stop: set it to end the recording.
        on_progress: called with :class:`RecordingStats` after every flush.
        on_start: called with the recording :class:`fastmd.Client` once it started, before it
            subscribes: subscribe your own callbacks to see what is being recorded. If it
            returns an awaitable, that runs alongside the recording (cancelled at its end).
        error_reporter: the client's error reporter (default: logging).

    Returns:
        :class:`RecordingStats` of the finished recording (``complete`` is ``True``).

    Raises:
        StreamNameError: no stream, or an invalid one.
        RecordingError: bad options, ``out`` holds a recording, or writing failed (the
            recording stops at the first write error; what was completed stays readable).
    """
    names = [streams] if isinstance(streams, str) else list(dict.fromkeys(streams))
    if not names:
        raise StreamNameError("record() needs at least one stream")
    for name in names:
        parse_stream(name, venue)
    if duration is not None and not duration > 0:
        raise RecordingError(f"duration must be positive, not {duration!r}", path=str(out))
    if not flush_interval > 0:
        raise RecordingError(
            f"flush_interval must be positive, not {flush_interval!r}", path=str(out)
        )
    client_options: dict[str, Any] = {}
    if error_reporter is not None:
        client_options["error_reporter"] = error_reporter
    writer = SessionWriter(
        out,
        venue=venue,
        streams=names,
        compression=compression,
        level=level,
        rotate_bytes=rotate_bytes,
        rotate_seconds=rotate_seconds,
    )
    client = fastmd.Client(
        venue, ws_url=ws_url, rest_url=rest_url, frame_tap=writer.frame, **client_options
    )
    writer.open(client.ws_url, client.rest_url)
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with client:
            client.rest.on_response = writer.rest_response
            client.on_gap(writer.gap)
            if on_start is not None:
                started = on_start(client)
                if inspect.isawaitable(started):
                    tasks.append(asyncio.ensure_future(started))
            symbols = sorted({s.upper() for n in names if (s := parse_stream(n, venue).symbol)})
            tasks.append(asyncio.create_task(_exchange_info(client, symbols)))
            client.subscribe(names, _ignore)
            if books:
                for symbol in _book_symbols(names, venue):
                    tasks.append(asyncio.create_task(_keep_book(client, symbol)))
            while not stop.is_set() and writer.failed is None:
                wait = flush_interval
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                writer.flush()
                if on_progress is not None:
                    on_progress(writer.stats())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # No await between stopping the writer and the client's close(), which silences
            # every callback before it awaits: the recording holds exactly what was delivered.
            writer.stop()
    finally:
        for task in tasks:
            task.cancel()
        writer.stop()
        await asyncio.to_thread(writer.close)  # the last chunk fsynced, off the event loop
    if writer.failed is not None:
        raise RecordingError(
            f"recording to {writer.path} stopped: {writer.failed}", path=str(writer.path)
        ) from writer.failed
    stats = writer.stats()
    if on_progress is not None:
        on_progress(stats)
    return stats


def _ignore(event: Any) -> None:
    """Recording needs no callback: the frames are taken before decoding."""


async def _exchange_info(client: fastmd.Client, symbols: list[str]) -> None:
    try:
        await client.rest.exchange_info(symbols or None)
    except FastmdError as exc:
        logger.warning("exchangeInfo not recorded: %s", exc)


async def _keep_book(client: fastmd.Client, symbol: str) -> None:
    try:
        await client.order_book(symbol, strict=False, timeout=None)
    except FastmdError as exc:
        logger.warning("the %s order book (its snapshots) is not recorded: %s", symbol, exc)
