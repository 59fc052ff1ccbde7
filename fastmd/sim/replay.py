"""Replay of a recorded session in the recording layout (``tests/data/README.md``).

A recording is a folder with ``meta.json``, ``stream.jsonl`` (one received frame per line:
``{"ts": <epoch seconds>, "msg": <combined-stream envelope>}``) and ``snapshots/<SYMBOL>.json``
(``{"ts", "url", "body": <REST depth response>}``). The simulator serves its frames to the
connections subscribed to their streams, at the recorded pace or as fast as possible, and answers
REST depth with the recorded snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmd.sim.venues import Venue

__all__ = ["Recording", "RecordedFrame", "ReplayMarket", "Unavailable"]


class Unavailable(Exception):
    """A REST endpoint the replayed recording has no data for."""


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One recorded frame: its receive time, stream and payload (compact JSON bytes)."""

    ts: float
    stream: str
    payload: bytes


class Recording:
    """A recording loaded from ``path``.

    Raises:
        ValueError: the folder is not a recording (missing files, malformed lines).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        stream_file = self.path / "stream.jsonl"
        if not meta_file.is_file() or not stream_file.is_file():
            raise ValueError(f"{self.path} is not a recording: meta.json and stream.jsonl needed")
        self.meta: dict[str, Any] = json.loads(meta_file.read_text())
        self.venue: Venue = self.meta.get("venue", "binance-spot")
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
        self.snapshots: dict[str, bytes] = {}
        snapshot_dir = self.path / "snapshots"
        if snapshot_dir.is_dir():
            for file in sorted(snapshot_dir.glob("*.json")):
                body = json.loads(file.read_text())["body"]
                self.snapshots[file.stem.upper()] = json.dumps(body, separators=(",", ":")).encode()

    @property
    def streams(self) -> list[str]:
        """The recorded streams, in order of first appearance."""
        return list(dict.fromkeys(frame.stream for frame in self.frames))

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


class ReplayMarket:
    """The REST side of a replay: depth answers with the recorded snapshot; endpoints the
    recording has no data for raise :class:`Unavailable`."""

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
        body = self.recording.snapshots.get(book.symbol)
        if body is None:
            raise Unavailable(f"the recording has no depth snapshot of {book.symbol}")
        data = json.loads(body)
        data["bids"] = data["bids"][:limit]
        data["asks"] = data["asks"][:limit]
        return json.dumps(data, separators=(",", ":")).encode()

    def exchange_info(self, symbols: Iterable[str] | None = None) -> bytes:
        wanted = [s.upper() for s in symbols] if symbols is not None else list(self.books)
        items = ",".join(
            f'{{"symbol":"{name}","status":"TRADING","baseAsset":"{name}","quoteAsset":"",'
            f'"orderTypes":[],"filters":[],"permissions":["SPOT"]}}'
            for name in wanted
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
