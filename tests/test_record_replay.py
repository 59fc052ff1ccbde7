"""Record and replay (docs/recording.md): ``fastmd.record`` against the simulator, the on-disk
format read back byte for byte, replay through the same client and books, the offline reader
``fastmd.replay.events``, a recorder killed mid-chunk, and every bad input a typed error."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from testdata import RECORDING, SESSION

import fastmd
import fastmd.replay
from fastmd.aio.record import SessionWriter
from fastmd.sim import Exchange, Recording
from fastmd.sim.replay import KIND_FRAME, KIND_REST, SessionFrames, iter_records

STREAMS = ["btcusdt@trade", "btcusdt@depth@100ms", "ethusdt@bookTicker"]


class Collector:
    """What a client delivered: every event per stream in order, and the BTCUSDT book's state
    after each update it applied (update id -> top levels)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.states: dict[int, tuple[Any, ...]] = {}
        self.book: fastmd.OrderBook | None = None

    def callback(self, stream: str) -> Any:
        def collect(event: Any) -> None:
            self.events.append((stream, event))

        return collect

    async def start(self, client: fastmd.Client) -> None:
        for stream in STREAMS:
            client.subscribe(stream, self.callback(stream))
        await self.open_book(client)

    async def open_book(self, client: fastmd.Client) -> None:
        opening = asyncio.ensure_future(client.order_book("BTCUSDT", strict=False))
        await asyncio.sleep(0)  # the book exists from the first step of order_book()
        client.books["BTCUSDT"].on_update(self.on_update)
        self.book = await opening

    def on_update(self, book: fastmd.OrderBook, *_: Any) -> None:
        if book.synced:
            self.states[book.update_id] = (tuple(book.bids(10)), tuple(book.asks(10)))


def _record(
    exchange: Exchange, out: Path, duration: float = 2.0, **options: Any
) -> Any:  # the coroutine of fastmd.record against the simulator
    return fastmd.record(
        STREAMS, out, duration=duration, ws_url=exchange.ws_url, rest_url=exchange.rest_url,
        **options,
    )  # fmt: skip


@pytest.fixture
async def market() -> Any:
    async with Exchange("binance-spot", ["BTCUSDT", "ETHUSDT"], seed=7, rate=400.0) as ex:
        yield ex


async def test_round_trip_delivers_the_same_events_and_book_states(
    market: Exchange, tmp_path: Path
) -> None:
    recorded = Collector()
    stats = await _record(market, tmp_path / "rec", on_start=recorded.start)
    assert stats.complete
    assert stats.frames > 50
    assert stats.snapshots >= 1
    assert recorded.states, "the recording client's book never synced"
    kinds = {stream for stream, _ in recorded.events}
    assert kinds == set(STREAMS)

    # Offline: the same events, in the same order, decoded from the recorded bytes.
    offline = [(m.stream, m.event) for m in fastmd.replay.events(tmp_path / "rec")]
    assert offline == recorded.events

    # Through the simulator, the same client, books and callbacks, as fast as possible.
    replayed = Collector()
    async with (
        Exchange(replay=tmp_path / "rec", replay_speed=None, replay_autostart=False) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url) as client,
    ):
        subs = [client.subscribe(s, replayed.callback(s)) for s in STREAMS]
        for sub in subs:
            await sub.wait_active(5)
        opening = asyncio.create_task(replayed.open_book(client))
        replay_book = ex.market.book("BTCUSDT")
        for _ in range(200):  # the recorded snapshot is served first; the diffs it needs follow
            if replay_book is not None and replay_book.served:
                break
            await asyncio.sleep(0.025)
        ex.start_replay()
        await asyncio.wait_for(opening, 10)
        await ex.wait_replayed()
        for _ in range(200):
            if len(replayed.events) >= len(recorded.events):
                break
            await asyncio.sleep(0.05)
    assert replayed.events == recorded.events
    common = set(recorded.states) & set(replayed.states)
    assert max(recorded.states) in common  # both end at the same update
    assert len(common) >= len(recorded.states) // 2
    assert all(recorded.states[uid] == replayed.states[uid] for uid in common)


async def test_the_recording_holds_every_frame_exactly_as_received(
    market: Exchange, tmp_path: Path
) -> None:
    stats = await _record(market, tmp_path / "rec", duration=1.5, compression="gzip")
    frames = [(t, bytes(p)) for k, t, p in iter_records(tmp_path / "rec") if k == KIND_FRAME]
    assert len(frames) == stats.frames
    assert sum(len(p) for _, p in frames) == stats.frame_bytes
    times = [t for t, _ in frames]
    assert times == sorted(times)
    manifest = fastmd.replay.manifest(tmp_path / "rec")
    assert manifest["started_ns"] <= times[0] <= times[-1] <= manifest["ended_ns"]
    assert manifest["complete"] is True
    assert manifest["streams"] == STREAMS
    assert manifest["venue"] == "binance-spot"
    assert manifest["ws_url"] == market.ws_url
    assert set(manifest["versions"]) >= {"fastmd", "picows", "msgspec", "python"}
    assert manifest["gaps_total"] == 0
    assert manifest["frames"] == stats.frames
    # The first frames are the SUBSCRIBE acknowledgements, then combined-stream envelopes.
    assert json.loads(frames[0][1]) == {"result": None, "id": 1}
    envelopes = [json.loads(p) for _, p in frames[1:] if b'"stream"' in p]
    assert {e["stream"] for e in envelopes} >= set(STREAMS)
    # REST: the depth snapshot and exchangeInfo, bodies as the simulator sent them.
    rest = list(fastmd.replay.rest_responses(tmp_path / "rec"))
    assert {r.endpoint for r in rest} == {"depth", "exchangeInfo"}
    depth = next(r for r in rest if r.endpoint == "depth")
    assert depth.params["symbol"] == "BTCUSDT"
    assert json.loads(depth.body)["lastUpdateId"] > 0


def test_writer_keeps_bytes_times_and_rotates_by_size(tmp_path: Path) -> None:
    now = iter(range(1_000, 10_000_000, 1_000))
    writer = SessionWriter(
        tmp_path / "rec", venue="binance-spot", streams=["x@trade"], rotate_bytes=4096,
        buffer_size=1024, clock_ns=lambda: next(now),
    )  # fmt: skip
    writer.open("ws://example", "http://example")
    sent = [b'{"odd" :  "spacing", "n": %d}' % i + b" " * (i % 7) for i in range(300)]
    for payload in sent:
        writer.frame(memoryview(payload), False)
    writer.frame(memoryview(b"\x00\x01binary"), True)
    writer.rest_response("depth", {"symbol": "XUSDT", "limit": "5"}, b'{"lastUpdateId":1}')
    writer.rest_response("klines", {"symbol": "XUSDT"}, b"[]")  # not a recorded endpoint
    writer.close()
    manifest = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    assert len(manifest["chunks"]) > 2  # rotated by size
    assert manifest["complete"]
    assert manifest["frames"] == 301
    assert manifest["snapshots"] == 1
    assert not list((tmp_path / "rec").glob("*.part"))
    records = [(k, t, bytes(p)) for k, t, p in iter_records(tmp_path / "rec")]
    assert [p for k, _, p in records if k == KIND_FRAME] == sent
    assert records[300] == (2, records[299][1] + 1000, b"\x00\x01binary")
    assert records[301] == (KIND_REST, records[300][1] + 1000,
                            b'depth?symbol=XUSDT&limit=5\n{"lastUpdateId":1}')  # fmt: skip
    assert len(records) == 302


def test_writer_rotates_by_age_and_a_killed_writer_leaves_completed_chunks(tmp_path: Path) -> None:
    clock = [0.0]
    writer = SessionWriter(
        tmp_path / "rec", venue="binance-spot", streams=[], rotate_seconds=10.0,
        monotonic=lambda: clock[0],
    )  # fmt: skip
    writer.open("ws://example", "http://example")
    for second in range(35):
        clock[0] = float(second)
        writer.frame(memoryview(b'{"s":%d}' % second), False)
        writer.flush()
    writer.sync()  # the writer thread has written all of it
    # No close(): as if the process died here. Three chunks completed, the fourth is open.
    manifest = fastmd.replay.manifest(tmp_path / "rec")
    assert [c["frames"] for c in manifest["chunks"]] == [11, 11, 11]  # 0-10, 11-21, 22-32
    assert manifest["complete"] is False
    assert len(list((tmp_path / "rec").glob("chunk-000004.fmr.zst.part"))) == 1
    read: list[bytes] = []
    with pytest.raises(fastmd.RecordingTruncated) as info:
        _drain((bytes(payload) for _, _, payload in fastmd.replay.records(tmp_path / "rec")), read)
    # The open chunk was flushed after every frame: nothing is lost, its end is missing only.
    assert read == [b'{"s":%d}' % s for s in range(35)]
    assert info.value.records == 35
    assert "chunk-000004" in str(info.value)
    writer.close()  # it lives on after all: the open chunk completes, nothing is truncated
    assert [bytes(p) for _, _, p in fastmd.replay.records(tmp_path / "rec")] == read


async def test_a_killed_recorder_leaves_every_completed_chunk_readable(
    market: Exchange, tmp_path: Path
) -> None:
    out = tmp_path / "rec"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastmd", "record", *STREAMS, "--out", str(out),
        "--url", market.ws_url, "--rest-url", market.rest_url,
        "--rotate-seconds", "0.5", "--flush-interval", "0.1", "--plain",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(300):
            await asyncio.sleep(0.05)
            if len(list(out.glob("chunk-*.fmr.zst"))) >= 2 and list(out.glob("*.part")):
                break
        else:
            pytest.fail("the recorder completed no two chunks in 15 s")
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    manifest = fastmd.replay.manifest(out)
    assert manifest["complete"] is False
    assert manifest["ended"] is None
    completed = manifest["chunks"]
    assert len(completed) >= 2
    for chunk in completed:  # each one whole: read it alone
        alone = tmp_path / f"alone-{chunk['name']}"
        alone.mkdir()
        (alone / chunk["name"]).write_bytes((out / chunk["name"]).read_bytes())
        (alone / "manifest.json").write_text(json.dumps({**manifest, "chunks": [chunk]}))
        assert (
            sum(1 for k, _, _ in fastmd.replay.records(alone) if k == KIND_FRAME)
            == (chunk["frames"])
        )
    events: list[Any] = []
    with contextlib.suppress(fastmd.RecordingTruncated):  # the open chunk: read to its last flush
        _drain(fastmd.replay.events(out), events)
    in_completed = sum(c["frames"] for c in completed) - 1  # the SUBSCRIBE reply is no event
    assert len(events) >= in_completed
    # The simulator replays it too, up to the cut.
    recording = Recording(out)
    assert len(recording.frames) == len(events)


def _drain(items: Iterator[Any], into: list[Any]) -> None:
    """Append every item to ``into``: what was read stays when the iteration raises."""
    for item in items:
        into.append(item)


def _chunks(path: Path) -> list[Path]:
    return sorted(path.glob("chunk-*"))


async def test_bad_inputs_are_typed_errors(market: Exchange, tmp_path: Path) -> None:
    with pytest.raises(fastmd.RecordingNotFound, match="no such folder"):
        fastmd.replay.events(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(fastmd.RecordingNotFound, match=r"manifest\.json missing"):
        fastmd.replay.events(tmp_path / "empty")
    with pytest.raises(fastmd.StreamNameError):
        await fastmd.record(["btcusdt@nonsense"], tmp_path / "bad")
    await _record(market, tmp_path / "rec", duration=1.0, rotate_seconds=0.3, flush_interval=0.1)
    with pytest.raises(fastmd.RecordingError, match="already holds a recording"):
        await _record(market, tmp_path / "rec", duration=1.0)
    chunks = _chunks(tmp_path / "rec")
    assert len(chunks) >= 2
    complete = [(m.stream, m.event) for m in fastmd.replay.events(tmp_path / "rec")]
    sizes = [sum(1 for k, _, _ in _records_of(c)) for c in chunks]

    # A truncated last chunk: everything before the damage, then the error.
    damaged = _copy(tmp_path / "rec", tmp_path / "truncated")
    last = _chunks(damaged)[-1]
    last.write_bytes(last.read_bytes()[: last.stat().st_size * 2 // 3])
    got: list[Any] = []
    with pytest.raises(fastmd.RecordingTruncated) as truncated:
        _drain(((m.stream, m.event) for m in fastmd.replay.events(damaged)), got)
    assert complete[: len(got)] == got
    assert len(got) < len(complete)
    assert truncated.value.records >= sum(sizes[:-1])
    assert truncated.value.path == str(last)

    # A corrupt chunk: its bytes changed in the middle.
    corrupt = _copy(tmp_path / "rec", tmp_path / "corrupt")
    first = _chunks(corrupt)[0]
    data = bytearray(first.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0x5A
    first.write_bytes(bytes(data))
    with pytest.raises(fastmd.RecordingCorrupt) as error:
        list(fastmd.replay.events(corrupt))
    assert not isinstance(error.value, fastmd.RecordingTruncated)

    # A truncated chunk that is not the last is damage, not the end of a recording.
    middle = _copy(tmp_path / "rec", tmp_path / "middle")
    first = _chunks(middle)[0]
    first.write_bytes(first.read_bytes()[:-20])
    with pytest.raises(fastmd.RecordingCorrupt, match="not the last chunk"):
        list(fastmd.replay.events(middle))

    # A chunk the manifest lists is missing; a manifest that is not one.
    missing = _copy(tmp_path / "rec", tmp_path / "gone")
    _chunks(missing)[0].unlink()
    with pytest.raises(fastmd.RecordingCorrupt, match="missing"):
        list(fastmd.replay.events(missing))
    (missing / "manifest.json").write_text("{not json")
    with pytest.raises(fastmd.RecordingCorrupt, match="not JSON"):
        fastmd.replay.events(missing)
    (missing / "manifest.json").write_text('{"format": "fastmd-recording", "version": 99}')
    with pytest.raises(fastmd.RecordingCorrupt, match="version 99"):
        fastmd.replay.events(missing)


def _records_of(chunk: Path) -> Iterator[tuple[int, int, memoryview]]:
    folder = chunk.parent / f"only-{chunk.name}"
    folder.mkdir()
    manifest = json.loads((chunk.parent / "manifest.json").read_text())
    manifest["chunks"] = []
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / chunk.name).write_bytes(chunk.read_bytes())
    return iter_records(folder)


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for entry in source.iterdir():
        if entry.is_file():
            (target / entry.name).write_bytes(entry.read_bytes())
    return target


async def test_decode_errors_raise_or_go_to_the_handler(tmp_path: Path) -> None:
    writer = SessionWriter(tmp_path / "rec", venue="binance-spot", streams=["btcusdt@trade"])
    writer.open("ws://example", "http://example")
    good = (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.5",'
        b'"q":"2","T":1,"m":true,"M":true}}'
    )
    for payload in (good, b'{"stream":"btcusdt@trade","data":{"e":"trade"}}', good):
        writer.frame(memoryview(payload), False)
    writer.frame(memoryview(b"\x01\x02"), True)
    writer.close()
    with pytest.raises(fastmd.DecodeError):
        list(fastmd.replay.events(tmp_path / "rec"))
    errors: list[fastmd.DecodeError] = []
    messages = list(fastmd.replay.events(tmp_path / "rec", on_decode_error=errors.append,
                                         price_type=str))  # fmt: skip
    assert len(messages) == 2
    assert [e.category for e in errors] == ["missing_field", "binary_frame"]
    assert messages[0].stream == "btcusdt@trade"
    assert messages[0].event.price == "1.5"
    assert msgspec.json.decode(msgspec.json.encode(messages[0]))["stream"] == "btcusdt@trade"


async def test_replay_at_twice_the_recorded_pace(market: Exchange, tmp_path: Path) -> None:
    await _record(market, tmp_path / "rec", duration=1.5)
    recording = Recording(tmp_path / "rec")
    span = recording.frames[-1].ts - recording.frames[0].ts
    assert span > 1.0
    times: list[float] = []
    async with (
        Exchange(replay=tmp_path / "rec", replay_speed=2.0) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url) as client,
    ):
        loop = asyncio.get_running_loop()
        client.subscribe(STREAMS, lambda event: times.append(loop.time()))
        assert await asyncio.wait_for(ex.wait_replayed(), 10) == len(recording.frames)
        await asyncio.sleep(0.2)
    assert len(times) == len(recording.frames)
    assert times[-1] - times[0] == pytest.approx(span / 2, abs=0.25)


def test_the_repository_session_in_the_new_format(tmp_path: Path) -> None:
    """tests/data/binance-spot-2021-10-12-session is the old-layout session converted
    (``fastmd.replay.convert``): both layouts replay the same frames and snapshots, and the
    offline reader decodes every recorded frame."""
    old, new = Recording(RECORDING), Recording(SESSION)
    assert [(f.stream, f.payload) for f in new.frames] == [
        (f.stream, f.payload) for f in old.frames
    ]
    assert [f.ts for f in new.frames] == pytest.approx([f.ts for f in old.frames], abs=1e-6)
    assert new.snapshots == old.snapshots
    assert new.streams == old.streams
    # The simulator reads a session's frames from disk when it serves them: none kept in memory.
    assert isinstance(new.frames, SessionFrames)
    assert len(new.frames) == 265
    for index in (0, 1, 131, -2, -1):
        assert new.frames[index].payload == old.frames[index].payload, index
    assert [f.payload for f in new.frames[10:13]] == [f.payload for f in old.frames[10:13]]
    with pytest.raises(IndexError):
        new.frames[265]
    lines = (RECORDING / "stream.jsonl").read_text().splitlines()
    decoder = fastmd.Decoder()
    decoded = [decoder.decode(json.dumps(json.loads(line)["msg"]).encode()) for line in lines]
    expected = [(m.stream, m.event) for m in decoded]
    assert [(m.stream, m.event) for m in fastmd.replay.events(SESSION)] == expected
    manifest = fastmd.replay.manifest(SESSION)
    assert len(manifest["streams"]) == 16  # as subscribed; 5 of them sent nothing
    assert manifest["snapshots"] == 4
    # The conversion is reproducible: the same records again.
    assert fastmd.replay.convert(RECORDING, tmp_path / "again") == 265
    again = [(k, t, bytes(p)) for k, t, p in fastmd.replay.records(tmp_path / "again")]
    assert again == [(k, t, bytes(p)) for k, t, p in fastmd.replay.records(SESSION)]
    with pytest.raises(fastmd.RecordingNotFound, match="older layout"):
        fastmd.replay.convert(SESSION, tmp_path / "x")


async def test_gaps_the_client_reports_are_recorded(market: Exchange, tmp_path: Path) -> None:
    reported: list[fastmd.Gap] = []

    async def skip_trades(client: fastmd.Client) -> None:
        client.on_gap(reported.append)
        subscription = client.subscribe("btcusdt@trade", lambda event: None)
        await subscription.wait_active(5)
        await asyncio.sleep(0.3)
        market.faults.skip("btcusdt@trade", 3)

    await _record(market, tmp_path / "rec", duration=1.5, on_start=skip_trades)
    assert [gap.stream for gap in reported] == ["btcusdt@trade"]
    recorded = list(fastmd.replay.gaps(tmp_path / "rec"))
    assert len(recorded) == 1
    assert recorded[0]["stream"] == "btcusdt@trade"
    assert recorded[0]["missing"] == reported[0].missing == 3
    assert recorded[0]["reason"] == "server_skip"
    manifest = fastmd.replay.manifest(tmp_path / "rec")
    assert manifest["gaps_total"] == 1
    assert manifest["gaps"] == recorded
    # The gap is in the frames too: the replay shows the same jump in trade ids.
    trades = [m.event.trade_id for m in fastmd.replay.events(tmp_path / "rec")
              if m.stream == "btcusdt@trade"]  # fmt: skip
    jumps = [b - a for a, b in itertools.pairwise(trades) if b - a != 1]
    assert jumps == [4]


async def test_a_write_error_stops_the_recording_with_a_typed_error(
    market: Exchange, tmp_path: Path
) -> None:
    out = tmp_path / "rec"

    async def remove_the_folder(client: fastmd.Client) -> None:
        await asyncio.sleep(0.3)
        shutil.rmtree(out)  # the next chunk or manifest cannot be written: a real OSError

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(fastmd.RecordingError, match="stopped") as error:
        await _record(market, out, duration=10.0, rotate_seconds=0.2, flush_interval=0.1,
                      on_start=remove_the_folder)  # fmt: skip
    assert isinstance(error.value.__cause__, OSError)
    assert loop.time() - started < 5  # it stopped at the error, not at the duration


async def test_usdm_futures_round_trip(tmp_path: Path) -> None:
    streams = ["btcusdt@aggTrade", "btcusdt@markPrice@1s", "btcusdt@depth@100ms"]
    recorded: list[tuple[str, Any]] = []

    def watch(client: fastmd.Client) -> None:
        for stream in streams:
            client.subscribe(stream, lambda event, s=stream: recorded.append((s, event)))

    async with Exchange("binance-usdm", ["BTCUSDT"], seed=5, rate=300.0) as ex:
        stats = await fastmd.record(
            streams, tmp_path / "rec", duration=2.0, venue="binance-usdm", ws_url=ex.ws_url,
            rest_url=ex.rest_url, on_start=watch,
        )  # fmt: skip
    assert stats.snapshots >= 1
    assert {s for s, _ in recorded} == set(streams)
    assert fastmd.replay.manifest(tmp_path / "rec")["venue"] == "binance-usdm"
    # USD-M streams come on two sockets (/public, /market): per stream, the same events in the
    # same order; across sockets the interleaving is the sockets' (and flow control's).
    offline = [(m.stream, m.event) for m in fastmd.replay.events(tmp_path / "rec")]
    assert _per_stream(offline) == _per_stream(recorded)
    replayed: list[tuple[str, Any]] = []
    async with (
        Exchange(replay=tmp_path / "rec", replay_speed=None, replay_autostart=False) as ex,
        fastmd.Client("binance-usdm", ws_url=ex.ws_url, rest_url=ex.rest_url) as client,
    ):
        assert ex.venue == "binance-usdm"
        subs = [
            client.subscribe(s, lambda event, s=s: replayed.append((s, event))) for s in streams
        ]
        for sub in subs:
            await sub.wait_active(5)
        ex.start_replay()
        await ex.wait_replayed()
        for _ in range(100):
            if len(replayed) >= len(recorded):
                break
            await asyncio.sleep(0.05)
    assert _per_stream(replayed) == _per_stream(recorded)


def _per_stream(events: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    by_stream: dict[str, list[Any]] = {}
    for stream, event in events:
        by_stream.setdefault(stream, []).append(event)
    return by_stream


def test_writer_and_reader_agree_on_the_format() -> None:
    """The writer (fastmd.aio.record) may not import the simulator's reader (fastmd.sim.replay),
    so each spells the format out: this pins the two copies together."""
    import fastmd.aio.record as writer
    import fastmd.sim.replay as reader

    for name in ("FORMAT", "FORMAT_VERSION", "CHUNK_MAGIC", "KIND_FRAME", "KIND_FRAME_BINARY",
                 "KIND_REST", "KIND_GAP"):  # fmt: skip
        assert getattr(writer, name) == getattr(reader, name), name
    assert writer._HEADER.format == reader.RECORD_HEADER.format


@pytest.mark.parametrize(
    ("file", "text", "where"),
    [
        ("stream.jsonl", '{"ts": 1.0, "msg": {"stream": "a@trade", "data": {}}}\n{"ts": 2.0}\n',
         "stream.jsonl:2"),
        ("stream.jsonl", "not json\n", "stream.jsonl:1"),
        ("meta.json", "[", "meta.json"),
        ("snapshots/BTCUSDT.json", '{"ts": 1.0, "body": {}}', "BTCUSDT.json"),
    ],
)  # fmt: skip
def test_converting_a_damaged_older_layout_is_a_typed_error(
    tmp_path: Path, file: str, text: str, where: str
) -> None:
    source = tmp_path / "old"
    (source / "snapshots").mkdir(parents=True)
    (source / "meta.json").write_text('{"venue": "binance-spot"}')
    (source / "stream.jsonl").write_text(
        '{"ts": 1.0, "msg": {"stream": "btcusdt@trade", "data": {}}}\n'
    )
    (source / file).write_text(text)
    with pytest.raises(fastmd.RecordingCorrupt, match=where):
        fastmd.replay.convert(source, tmp_path / "new")
    assert not (tmp_path / "new").exists()
