"""Exchange.flood: batched socket writes deliver every frame, in order, to raw and combined
subscribers (read with the independent ``websockets`` client), paced by the slowest reader."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from fastmd.sim import Exchange


async def _read(url: str, count: int, ready: asyncio.Event) -> list[dict[str, object]]:
    async with connect(url, max_queue=None) as ws:
        ready.set()
        return [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(count)]


async def test_flood_reaches_raw_and_combined_subscribers_in_order() -> None:
    count = 20_000
    async with Exchange(symbols=["BTCUSDT"], rate=0) as ex:
        raw_ready, combined_ready = asyncio.Event(), asyncio.Event()
        raw = asyncio.ensure_future(_read(f"{ex.ws_url}/ws/btcusdt@trade", count, raw_ready))
        combined = asyncio.ensure_future(
            _read(f"{ex.ws_url}/stream?streams=btcusdt@trade", count, combined_ready)
        )
        await raw_ready.wait()
        await combined_ready.wait()
        while len(ex.connections) < 2 or not all(c.subscriptions for c in ex.connections):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert await ex.flood("BTCUSDT", count, batch=512) == count
        raw_frames, combined_frames = await raw, await combined
    ids = [frame["t"] for frame in raw_frames]
    assert ids == list(range(ids[0], ids[0] + count))
    assert [f["stream"] for f in combined_frames] == ["btcusdt@trade"] * count
    assert [f["data"] for f in combined_frames] == raw_frames
