"""Offline replay: ``fastmd.replay.events`` over a recording, against bare ``json.loads`` loops.

The recording is the repository's recorded Binance session (265 real frames of 16 streams)
written 40 times over into one session folder (10,600 frames, one zstd chunk per 4 MiB, receive
times kept increasing) by :class:`fastmd.aio.record.SessionWriter`, the recorder's writer. One
benchmark call reads the whole recording; events/s = 10,600 / time. In group ``replay``:

- ``fastmd_replay_events``: ``fastmd.replay.events(folder)``: streaming zstd decompression, the
  record framing, one :class:`fastmd.Decoder` pass per frame into typed events;
- ``records_then_json_loads``: the same reading and framing (``fastmd.replay.records``), then
  ``json.loads`` of each frame into dicts: the same I/O work with the standard library's decode;
- ``json_loads_loop``: ``json.loads`` over the frames already in memory (a list of bytes): no
  file, no decompression, the bare decode a hand-written backtest loop pays at least;
- ``jsonl_json_loads``: an uncompressed JSON-lines file of the frames read line by line and
  each line ``json.loads``-ed, as recordings kept as JSONL are read.

Every body asserts its count (CI runs each once with ``--benchmark-disable``). Ratios in
docs/benchmarks.md ("Offline replay"), from one run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fastmd.replay
from benchmarks.frames import load_recording
from fastmd.aio.record import SessionWriter

COPIES = 40


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    frames = load_recording() * COPIES
    folder = tmp_path_factory.mktemp("replay") / "session"
    clock = iter(range(1_600_000_000_000_000_000, 1 << 62, 10_000_000))
    writer = SessionWriter(
        folder, venue="binance-spot", streams=[], rotate_bytes=4 << 20,
        clock_ns=lambda: next(clock),
    )  # fmt: skip
    writer.open("wss://stream.binance.com:9443", "https://api.binance.com")
    for frame in frames:
        writer.frame(memoryview(frame), False)
    writer.close()
    return folder, frames


def _run(benchmark: Any, function: Any) -> Any:
    return benchmark.pedantic(function, rounds=40, iterations=1, warmup_rounds=2)


@pytest.mark.benchmark(group="replay")
def test_fastmd_replay_events(benchmark: Any, recording: tuple[Path, list[bytes]]) -> None:
    folder, frames = recording

    def read() -> int:
        count = 0
        for _ in fastmd.replay.events(folder):
            count += 1
        return count

    assert _run(benchmark, read) == len(frames)


@pytest.mark.benchmark(group="replay")
def test_records_then_json_loads(benchmark: Any, recording: tuple[Path, list[bytes]]) -> None:
    folder, frames = recording
    loads = json.loads

    def read() -> int:
        count = 0
        for kind, _, payload in fastmd.replay.records(folder):
            if kind == 1:
                loads(bytes(payload))
                count += 1
        return count

    assert _run(benchmark, read) == len(frames)


@pytest.mark.benchmark(group="replay")
def test_json_loads_loop(benchmark: Any, recording: tuple[Path, list[bytes]]) -> None:
    _, frames = recording
    loads = json.loads

    def read() -> int:
        count = 0
        for frame in frames:
            loads(frame)
            count += 1
        return count

    assert _run(benchmark, read) == len(frames)


@pytest.mark.benchmark(group="replay")
def test_jsonl_json_loads(
    benchmark: Any, recording: tuple[Path, list[bytes]], tmp_path: Path
) -> None:
    _, frames = recording
    jsonl = tmp_path / "frames.jsonl"
    jsonl.write_bytes(b"\n".join(frames) + b"\n")
    loads = json.loads

    def read() -> int:
        count = 0
        with jsonl.open("rb") as lines:
            for line in lines:
                loads(line)
                count += 1
        return count

    assert _run(benchmark, read) == len(frames)


@pytest.mark.benchmark(group="record")
def test_record_frames(benchmark: Any, recording: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    """What recording costs per frame on the client's hot path: ``SessionWriter.frame`` (the
    client's frame tap) for every frame, its buffer compressed into zstd chunks as it fills."""
    _, frames = recording
    views = [memoryview(frame) for frame in frames]
    writers: list[SessionWriter] = []

    def setup() -> tuple[tuple[SessionWriter], dict[str, Any]]:
        writer = SessionWriter(tmp_path / str(len(writers)), venue="binance-spot", streams=[])
        writer.open("ws://bench", "http://bench")
        writers.append(writer)
        return (writer,), {}

    def record(writer: SessionWriter) -> SessionWriter:
        tap = writer.frame
        for view in views:
            tap(view, False)
        return writer

    writer = benchmark.pedantic(record, setup=setup, rounds=40, iterations=1, warmup_rounds=2)
    for each in writers:
        each.close()
    assert writer.stats().frames == len(frames)


@pytest.mark.benchmark(group="record")
def test_decode_frames(benchmark: Any, recording: tuple[Path, list[bytes]]) -> None:
    """The reference for the above: the client's one decode pass over the same frames."""
    _, frames = recording
    views = [memoryview(frame) for frame in frames]
    decode = fastmd.Decoder().decode

    def read() -> int:
        for view in views:
            decode(view)
        return len(views)

    assert _run(benchmark, read) == len(frames)
