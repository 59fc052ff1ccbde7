"""Reading recorded sessions, and replaying them in the simulator.

Two layouts are read:

- the session format that ``fastmd record`` writes (docs/recording.md, "On-disk format"): a
  folder with ``manifest.json`` and compressed chunks ``chunk-NNNNNN.fmr.zst`` (or ``.fmr.gz``)
  holding every received frame exactly as received, with its receive time, and the REST
  responses (depth snapshots, exchangeInfo) the recorder's client fetched;
- the older layout of ``tests/data/README.md``: ``meta.json``, ``stream.jsonl`` (one received frame
  per line: ``{"ts": <epoch seconds>, "msg": <combined-stream envelope>}``) and
  ``snapshots/<SYMBOL>.json`` (``{"ts", "url", "body": <REST depth response>}``).

:func:`read_records` streams a session's records chunk by chunk (one chunk's decompressor and a
bounded buffer at a time); :class:`Recording` loads either layout for the simulator, which serves
the frames to the connections subscribed to their streams, at the recorded pace or as fast as
possible, and answers REST depth with the recorded snapshots, in the order they were fetched.

This module is the format's reference reader and imports nothing from fastmd outside the
simulator (``fastmd.replay`` builds on it and translates its errors into ``fastmd.errors``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, overload

import msgspec

from fastmd.sim.venues import Venue

__all__ = [
    "CHUNK_MAGIC",
    "FORMAT",
    "FORMAT_VERSION",
    "KIND_FRAME",
    "KIND_FRAME_BINARY",
    "KIND_GAP",
    "KIND_REST",
    "RECORD_HEADER",
    "ChunkDamaged",
    "ChunkTruncated",
    "NotARecording",
    "Record",
    "RecordedFrame",
    "Recording",
    "SessionFrames",
    "RecordingDamaged",
    "ReplayMarket",
    "Unavailable",
    "chunk_files",
    "iter_records",
    "read_manifest",
    "read_records",
    "query_params",
    "split_envelope",
    "split_rest",
]

FORMAT: Final = "fastmd-recording"
"""``manifest.json``'s ``format``."""
FORMAT_VERSION: Final = 1
"""``manifest.json``'s ``version`` this reader reads."""
CHUNK_MAGIC: Final = b"FMDREC\x00\x01"
"""The first 8 bytes of every chunk's decompressed content: ``FMDREC``, NUL, version 1."""
RECORD_HEADER: Final = struct.Struct("<BqI")
"""Each record: kind (u8), receive time (i64, ns since the Unix epoch), payload length (u32)."""
KIND_FRAME: Final = 1
"""A text WebSocket message, its payload exactly as received."""
KIND_FRAME_BINARY: Final = 2
"""A binary WebSocket message, its payload exactly as received."""
KIND_REST: Final = 3
"""A REST response: ``<endpoint>?<query>`` (the venue's path prefix left out), ``\\n``, body."""
KIND_GAP: Final = 4
"""A gap the recorder's client reported: a JSON object (stream, expected, received, reason...)."""

_CHUNK_NAME: Final = re.compile(r"^chunk-(\d{6})\.fmr\.(zst|gz)(\.part)?$")
_READ_SIZE: Final = 1 << 20


class Unavailable(Exception):
    """A REST endpoint the replayed recording has no data for."""


class NotARecording(ValueError):
    """The folder is missing, or holds no manifest (or old-layout ``meta.json``)."""


class RecordingDamaged(ValueError):
    """A recording's content cannot be read; ``path`` names the file."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class ChunkDamaged(RecordingDamaged):
    """A chunk is corrupt (bad compressed data, checksum, magic, record) or listed and missing."""


class ChunkTruncated(RecordingDamaged):
    """A chunk ends in the middle: its compressed stream or its last record is cut short (the
    open chunk of a recorder that was killed). Every record before the cut was read."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a session: ``kind`` (``KIND_*``), receive time in ns since the epoch, and
    the payload bytes."""

    kind: int
    time_ns: int
    payload: bytes


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A session's ``manifest.json``.

    Raises:
        NotARecording: no such folder, or no manifest in it.
        RecordingDamaged: the manifest is not a JSON object of this format and version.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise NotARecording(f"{folder} is not a recording: no such folder")
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise NotARecording(f"{folder} is not a recording: manifest.json missing")
    try:
        manifest = json.loads(manifest_file.read_bytes())
    except ValueError as exc:
        raise RecordingDamaged(f"{manifest_file}: not JSON ({exc})", manifest_file) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecordingDamaged(f"{manifest_file}: not a {FORMAT} manifest", manifest_file)
    if manifest.get("version") != FORMAT_VERSION:
        raise RecordingDamaged(
            f"{manifest_file}: format version {manifest.get('version')!r}, this reader reads "
            f"{FORMAT_VERSION}",
            manifest_file,
        )
    return manifest


def chunk_files(path: str | os.PathLike[str], manifest: dict[str, Any]) -> list[Path]:
    """The session's chunks in recorded order: every chunk the manifest lists, and chunks on
    disk it does not list yet (the last ones of a recorder that was killed, ``.part`` included).

    Raises:
        ChunkDamaged: a chunk the manifest lists is missing.
    """
    folder = Path(path)
    found: dict[int, Path] = {}
    for entry in folder.iterdir():
        match = _CHUNK_NAME.match(entry.name)
        if match is not None:
            number = int(match.group(1))
            # A finished chunk wins over a leftover .part of the same number.
            if number not in found or found[number].name.endswith(".part"):
                found[number] = entry
    for listed in manifest.get("chunks", ()):
        name = str(listed.get("name", ""))
        match = _CHUNK_NAME.match(name)
        if match is None or int(match.group(1)) not in found:
            raise ChunkDamaged(f"{folder / name}: listed in manifest.json, missing", folder / name)
    return [found[number] for number in sorted(found)]


def _decompressor(path: Path) -> tuple[Callable[[bytes], bytes], Callable[[], bool]]:
    """``(decompress, finished)`` for the chunk's codec (its name's suffix)."""
    if ".fmr.gz" in path.name:
        inflate = zlib.decompressobj(wbits=31)

        def gz_finished() -> bool:
            return inflate.eof

        return inflate.decompress, gz_finished
    try:
        import zstandard
    except ImportError as exc:  # a dependency of fastmd: only a broken install lacks it
        raise ChunkDamaged(
            f"{path}: reading zstd chunks needs the zstandard package", path
        ) from exc
    unzstd = zstandard.ZstdDecompressor().decompressobj()

    def zst_finished() -> bool:
        return bool(unzstd.eof)

    return unzstd.decompress, zst_finished


def _read_chunk(path: Path) -> Iterator[tuple[int, int, memoryview]]:
    decompress, finished = _decompressor(path)
    unpack_from = RECORD_HEADER.unpack_from
    size = RECORD_HEADER.size
    pending = b""
    started = False
    with path.open("rb") as file:
        while True:
            block = file.read(_READ_SIZE)
            if not block:
                break
            if finished():
                raise ChunkDamaged(f"{path}: data after the end of the compressed stream", path)
            try:
                out = decompress(block)
            except Exception as exc:  # zlib.error, zstandard.ZstdError: foreign, said here
                raise ChunkDamaged(f"{path}: corrupt compressed data ({exc})", path) from exc
            data = pending + out if pending else out
            if not started:
                if len(data) < len(CHUNK_MAGIC):
                    pending = data
                    continue
                if data[: len(CHUNK_MAGIC)] != CHUNK_MAGIC:
                    raise ChunkDamaged(f"{path}: not a {FORMAT} chunk (bad magic)", path)
                data = data[len(CHUNK_MAGIC) :]
                started = True
            view = memoryview(data)
            offset = 0
            end = len(data)
            while end - offset >= size:
                kind, time_ns, length = unpack_from(data, offset)
                if not KIND_FRAME <= kind <= KIND_GAP:
                    raise ChunkDamaged(f"{path}: unknown record kind {kind}", path)
                start = offset + size
                if end - start < length:
                    break
                offset = start + length
                yield kind, time_ns, view[start:offset]
            pending = data[offset:]
    if not finished() or not started or pending:
        raise ChunkTruncated(
            f"{path}: truncated ({len(pending)} bytes of an incomplete record at the end"
            + ("" if finished() else ", compressed stream cut short")
            + ")",
            path,
        )


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, memoryview]]:
    """``(kind, time_ns, payload)`` of every record of the session at ``path``, in recorded
    order, streamed chunk by chunk (one decompressed block in memory at a time). The payload is
    a view valid until the next step; :func:`read_records` gives copies.

    Raises:
        NotARecording: see :func:`read_manifest`.
        RecordingDamaged: a bad manifest.
        ChunkDamaged: a corrupt or missing chunk (raised when reached).
        ChunkTruncated: the last chunk is cut short: raised after its last complete record. A
            truncated chunk that is not the last is damage: :class:`ChunkDamaged`.
    """
    manifest = read_manifest(path)
    chunks = chunk_files(path, manifest)
    for index, chunk in enumerate(chunks):
        try:
            yield from _read_chunk(chunk)
        except ChunkTruncated as exc:
            if index == len(chunks) - 1:
                raise
            raise ChunkDamaged(f"{exc} (and it is not the last chunk)", chunk) from exc


def read_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Every record of the session at ``path`` as a :class:`Record` (errors: as
    :func:`iter_records`)."""
    for kind, time_ns, payload in iter_records(path):
        yield Record(kind, time_ns, bytes(payload))


def query_params(query: str) -> dict[str, str]:
    """``"symbol=BTCUSDT&limit=1000"`` as ``{"symbol": "BTCUSDT", "limit": "1000"}``."""
    return dict(pair.partition("=")[::2] for pair in query.split("&") if pair)


def split_rest(payload: bytes | memoryview) -> tuple[str, dict[str, str], bytes]:
    """``(endpoint, params, body)`` of a :data:`KIND_REST` record's payload."""
    request, _, body = bytes(payload).partition(b"\n")
    endpoint, _, query = request.decode("utf-8", "replace").partition("?")
    return endpoint, query_params(query), body


def split_envelope(payload: bytes | memoryview) -> tuple[str, bytes] | None:
    """``(stream, data)`` of a combined-stream frame, ``data`` byte for byte as received; ``None``
    for frames that are not one (control replies, raw-stream payloads)."""
    try:
        envelope = _ENVELOPE.decode(payload)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None
    return envelope.stream, bytes(envelope.data)


class _Envelope(msgspec.Struct):
    """A combined frame: msgspec's Raw keeps ``data`` byte for byte as received (the simulator
    re-wraps it per connection)."""

    stream: str
    data: msgspec.Raw


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One recorded frame: its receive time, stream and payload (the envelope's ``data``)."""

    ts: float
    stream: str
    payload: bytes


class SessionFrames(Sequence[RecordedFrame]):
    """The frames of a session, read from disk each time they are iterated (the first and the
    last are kept; other indexes read up to them). Iteration ends quietly where a truncated last
    chunk ends (:attr:`Recording.truncated` says so)."""

    def __init__(
        self,
        path: Path,
        count: int,
        first: RecordedFrame | None,
        last: RecordedFrame | None,
    ) -> None:
        self._path = path
        self._count = count
        self._first = first
        self._last = last

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[RecordedFrame]:
        served = 0
        try:
            for kind, time_ns, payload in iter_records(self._path):
                if kind == KIND_FRAME and served < self._count:
                    split = split_envelope(payload)
                    if split is not None:
                        served += 1
                        yield RecordedFrame(time_ns / 1e9, *split)
        except ChunkTruncated:
            return

    @overload
    def __getitem__(self, index: int) -> RecordedFrame: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecordedFrame]: ...

    def __getitem__(self, index: int | slice) -> RecordedFrame | list[RecordedFrame]:
        if isinstance(index, slice):
            return list(self)[index]
        position = index + self._count if index < 0 else index
        if not 0 <= position < self._count:
            raise IndexError(index)
        if position == 0 and self._first is not None:
            return self._first
        if position == self._count - 1 and self._last is not None:
            return self._last
        return next(itertools.islice(self, position, None))


class Recording:
    """A recording loaded from ``path`` (either layout) for the simulator: its frames in memory.

    Attributes:
        frames: the combined-stream frames, in recorded order (control replies left out).
        snapshots: per symbol, the recorded REST depth bodies in the order they were fetched.
        exchange_info: the recorded ``exchangeInfo`` body, if any.
        meta: the manifest (or old-layout ``meta.json``).

    Raises:
        ValueError: the folder is not a recording (:class:`NotARecording`), or it is damaged
            (:class:`RecordingDamaged`; a truncated last chunk is not: its complete records are
            kept and ``truncated`` says so).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.snapshots: dict[str, list[bytes]] = {}
        self.exchange_info: bytes | None = None
        self.truncated: str | None = None
        """Why the last chunk ended early, or ``None``."""
        self._streams: list[str] | None = None
        if not self.path.is_dir():
            raise NotARecording(f"{self.path} is not a recording: no such folder")
        if (self.path / "manifest.json").is_file():
            self._load_session()
        else:
            self._load_old_layout()

    def _load_session(self) -> None:
        # One pass to learn the streams, the count, the snapshots and where a truncated last
        # chunk ends; the frames themselves are read again from disk when served, so a replay
        # holds no more than a decompressed block in memory, whatever the recording's length.
        self.meta = read_manifest(self.path)
        self.venue: Venue = self.meta.get("venue", "binance-spot")
        streams: dict[str, None] = {}
        count = 0
        first = last = None
        try:
            for kind, time_ns, payload in iter_records(self.path):
                if kind == KIND_FRAME:
                    split = split_envelope(payload)
                    if split is not None:
                        last = RecordedFrame(time_ns / 1e9, *split)
                        first = first or last
                        streams[last.stream] = None
                        count += 1
                elif kind == KIND_REST:
                    self._rest_response(payload)
        except ChunkTruncated as exc:
            self.truncated = str(exc)
        self._streams = list(streams)
        self.frames: Sequence[RecordedFrame] = SessionFrames(self.path, count, first, last)

    def _rest_response(self, payload: memoryview) -> None:
        endpoint, params, body = split_rest(payload)
        if endpoint == "depth" and "symbol" in params:
            self.snapshots.setdefault(params["symbol"].upper(), []).append(body)
        elif endpoint == "exchangeInfo" and self.exchange_info is None:
            self.exchange_info = body

    def _load_old_layout(self) -> None:
        meta_file = self.path / "meta.json"
        stream_file = self.path / "stream.jsonl"
        if not meta_file.is_file() or not stream_file.is_file():
            raise NotARecording(
                f"{self.path} is not a recording: manifest.json (or meta.json and stream.jsonl) "
                "needed"
            )
        self.meta = json.loads(meta_file.read_text())
        self.venue = self.meta.get("venue", "binance-spot")
        frames: list[RecordedFrame] = []
        with stream_file.open("rb") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    envelope = record["msg"]
                    frames.append(
                        RecordedFrame(
                            float(record["ts"]),
                            str(envelope["stream"]),
                            json.dumps(envelope["data"], separators=(",", ":")).encode(),
                        )
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{stream_file}:{number}: not a recorded frame") from exc
        self.frames = frames
        snapshot_dir = self.path / "snapshots"
        if snapshot_dir.is_dir():
            for file in sorted(snapshot_dir.glob("*.json")):
                body = json.loads(file.read_text())["body"]
                self.snapshots[file.stem.upper()] = [
                    json.dumps(body, separators=(",", ":")).encode()
                ]

    @property
    def streams(self) -> list[str]:
        """The recorded streams, in order of first appearance."""
        if self._streams is None:
            self._streams = list(dict.fromkeys(frame.stream for frame in self.frames))
        return list(self._streams)

    @property
    def symbols(self) -> list[str]:
        """Symbols with a snapshot, then the symbols named by the recorded streams."""
        names = list(self.snapshots)
        for stream in self.streams:
            if not stream.startswith("!"):
                symbol = stream.partition("@")[0].upper()
                if symbol not in names:
                    names.append(symbol)
        return names


@dataclass
class _ReplayBook:
    symbol: str
    served: int = 0


class ReplayMarket:
    """The REST side of a replay: depth answers with the recorded snapshots (the first request
    of a symbol gets the first one fetched while recording, the next the next, then the last
    again); exchangeInfo with the recorded one (or a minimal one naming the recorded symbols);
    endpoints the recording has no data for raise :class:`Unavailable`."""

    def __init__(self, recording: Recording, clock_ms: Any) -> None:
        self.recording = recording
        self.venue: Venue = recording.venue
        self._clock_ms = clock_ms
        self.books = {name: _ReplayBook(name) for name in recording.symbols}

    @property
    def symbols(self) -> list[str]:
        return list(self.books)

    def now_ms(self) -> int:
        return int(self._clock_ms())

    def book(self, symbol: str) -> _ReplayBook | None:
        return self.books.get(symbol.upper())

    def set_active(self, streams: Iterable[str]) -> None:
        """Replays send what was recorded; subscriptions only select it."""

    def depth(self, book: _ReplayBook, limit: int) -> bytes:
        bodies = self.recording.snapshots.get(book.symbol)
        if not bodies:
            raise Unavailable(f"the recording has no depth snapshot of {book.symbol}")
        body = bodies[min(book.served, len(bodies) - 1)]
        book.served += 1
        data = json.loads(body)
        if len(data["bids"]) <= limit and len(data["asks"]) <= limit:
            return body  # exactly as recorded
        data["bids"] = data["bids"][:limit]
        data["asks"] = data["asks"][:limit]
        return json.dumps(data, separators=(",", ":")).encode()

    def exchange_info(self, symbols: Iterable[str] | None = None) -> bytes:
        wanted = [s.upper() for s in symbols] if symbols is not None else None
        recorded = self.recording.exchange_info
        if recorded is not None:
            if wanted is None:
                return recorded
            info = json.loads(recorded)
            info["symbols"] = [s for s in info.get("symbols", ()) if s.get("symbol") in wanted]
            return json.dumps(info, separators=(",", ":")).encode()
        items = ",".join(
            f'{{"symbol":"{name}","status":"TRADING","baseAsset":"{name}","quoteAsset":"",'
            f'"orderTypes":[],"filters":[],"permissions":["SPOT"]}}'
            for name in (wanted if wanted is not None else list(self.books))
        )
        return (
            f'{{"timezone":"UTC","serverTime":{self.now_ms()},"rateLimits":[],'
            f'"exchangeFilters":[],"symbols":[{items}]}}'
        ).encode()

    def valid_interval(self, interval: str) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        # Every other market view (trades, klines, tickers...) is not in a recording.
        if name.startswith("_"):
            raise AttributeError(name)

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise Unavailable(f"{name} is not available when replaying a recording")

        return unavailable
