"""Replaying the recorded Binance session through the simulator, read with an independent client
(the ``websockets`` library): every frame of the subscribed streams arrives once, in order."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from testdata import RECORDING
from websockets.asyncio.client import connect

from fastmd.sim import Exchange, Recording


def test_recording_loads() -> None:
    recording = Recording(RECORDING)
    assert len(recording.frames) == 265
    assert recording.venue == "binance-spot"
    assert set(recording.snapshots) == {"NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"}
    assert len(recording.streams) == 11  # 16 subscribed; 5 sent nothing in those seconds


def test_not_a_recording(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a recording"):
        Recording(tmp_path)
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "stream.jsonl").write_text('{"ts": 1, "nope": 2}\n')
    with pytest.raises(ValueError, match=r"stream\.jsonl:1"):
        Recording(tmp_path)


def _expected(streams: set[str]) -> list[tuple[str, object]]:
    frames = []
    for line in (RECORDING / "stream.jsonl").read_text().splitlines():
        envelope = json.loads(line)["msg"]
        if envelope["stream"] in streams:
            frames.append((envelope["stream"], envelope["data"]))
    return frames


async def test_combined_replay_delivers_every_subscribed_frame_once_in_order() -> None:
    streams = {"nknusdt@depth@100ms", "nknusdt@bookTicker", "lrcbtc@aggTrade", "blzeth@kline_1m"}
    expected = _expected(streams)
    async with Exchange(replay=RECORDING, replay_speed=None) as ex:
        url = f"{ex.ws_url}/stream?streams={'/'.join(sorted(streams))}"
        async with connect(url) as ws:
            received = []
            while len(received) < len(expected):
                envelope = json.loads(await asyncio.wait_for(ws.recv(), 5))
                received.append((envelope["stream"], envelope["data"]))
            assert await ex.wait_replayed() == 265
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)  # nothing more: each frame once
    assert received == expected


async def test_raw_replay_honours_subscriptions_and_the_combined_property() -> None:
    expected = _expected({"runeeur@depth@100ms"})
    async with (
        Exchange(replay=RECORDING, replay_speed=None, replay_autostart=False) as ex,
        connect(f"{ex.ws_url}/ws") as ws,
    ):
        request = {"method": "SUBSCRIBE", "params": ["runeeur@depth@100ms"], "id": 1}
        await ws.send(json.dumps(request))
        assert json.loads(await ws.recv()) == {"result": None, "id": 1}
        ex.start_replay()
        payloads = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in expected]
    assert payloads == [data for _, data in expected]  # raw: bare payloads, no envelope


async def test_replay_at_recorded_pace_keeps_the_spacing() -> None:
    # The first 4 frames of the session span about 0.8 s; at 4x they take about 0.2 s.
    async with (
        Exchange(replay=RECORDING, replay_speed=4.0) as ex,
        connect(f"{ex.ws_url}/stream?streams=nknusdt@depth@100ms") as ws,
    ):
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(4):
            await asyncio.wait_for(ws.recv(), 5)
            times.append(loop.time())
    recorded = [json.loads(line)["ts"] for line in (RECORDING / "stream.jsonl").read_text()
                .splitlines()[:4]]  # fmt: skip
    assert times[-1] - times[0] == pytest.approx((recorded[-1] - recorded[0]) / 4, abs=0.1)


async def test_replay_rest_depth_is_the_recorded_snapshot() -> None:
    snapshot = json.loads((RECORDING / "snapshots" / "BLZETH.json").read_text())["body"]
    async with Exchange(replay=RECORDING) as ex, aiohttp.ClientSession() as session:
        url = f"{ex.rest_url}/api/v3/depth?symbol=BLZETH&limit=1000"
        async with session.get(url) as response:
            assert response.status == 200
            body = await response.json()
        assert body["lastUpdateId"] == snapshot["lastUpdateId"]
        assert body["bids"] == snapshot["bids"][:1000]
        assert body["asks"] == snapshot["asks"][:1000]
        async with session.get(f"{ex.rest_url}/api/v3/trades?symbol=BLZETH") as response:
            assert response.status == 400  # not in a recording: said, not faked
            assert (await response.json())["code"] == -1000
