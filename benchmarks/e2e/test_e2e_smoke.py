"""Smoke test of the end-to-end benchmark: every client against an in-process simulator, and the
two-process path (flood server script + client script) once. Correctness only: every trade
arrives, trade ids are contiguous, fastmd reports no gap. No timing is asserted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from benchmarks.e2e import run as e2e_run
from benchmarks.e2e.clients import CLIENTS, trade_id
from benchmarks.e2e.common import (
    FIRST_TRADE_ID,
    FRAME_WIRE_BYTES,
    STREAM,
    SYMBOL,
    Meter,
    encode_chunks,
    trade_frame,
)
from fastmd.sim import Exchange

MESSAGES = 2_000
IN_PROCESS = sorted(kind for kind in CLIENTS if kind != "drain")  # drain blocks its loop


class RecordingMeter(Meter):
    """The benchmark's meter, also recording every trade id it is handed."""

    __slots__ = ("ids", "kind")

    def __init__(self, kind: str, messages: int) -> None:
        super().__init__(0, messages)
        self.kind = kind
        self.ids: list[int] = []

    def on_event(self, event: Any) -> None:
        if self.kind == "picows":  # the raw frame, valid only during this call
            self.ids.append(json.loads(event.get_payload_as_bytes())["data"]["t"])
        else:
            tid = trade_id(self.kind, event)
            assert tid is not None
            self.ids.append(tid)
        super().on_event(event)


async def _subscribed(ex: Exchange) -> None:
    async with asyncio.timeout(10):
        while not any(STREAM in conn.subscriptions for conn in ex.connections):  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("kind", IN_PROCESS)
async def test_client_gets_every_trade_in_order(kind: str) -> None:
    async with Exchange(symbols=[SYMBOL], rate=0.0) as ex:
        meter = RecordingMeter(kind, MESSAGES)
        task = asyncio.create_task(CLIENTS[kind](ex.ws_url, ex.rest_url, meter))
        await _subscribed(ex)
        assert await ex.flood(SYMBOL, MESSAGES) == MESSAGES
        info = await asyncio.wait_for(task, 20)
    assert meter.n == MESSAGES
    assert meter.ids == list(range(meter.ids[0], meter.ids[0] + MESSAGES))
    result = meter.result()
    assert result["complete"]
    assert result["messages"] == MESSAGES
    assert info.get("gaps", 0) == 0
    assert info.get("decode_errors", 0) == 0
    if kind == "fastmd":
        assert info["duplicates"] == 0
        assert info["callback_errors"] == 0


def test_pre_encoded_frames_are_binance_trades() -> None:
    chunks = encode_chunks(FIRST_TRADE_ID, 5, per_chunk=2)
    wire = b"".join(chunks)
    assert len(wire) == 5 * FRAME_WIRE_BYTES
    payload = trade_frame(FIRST_TRADE_ID + 4)
    assert wire.endswith(payload)
    frame = json.loads(payload)
    assert frame["stream"] == STREAM
    assert frame["data"]["e"] == "trade"
    assert frame["data"]["t"] == FIRST_TRADE_ID + 4


@pytest.mark.parametrize("kind", ["drain", "fastmd"])
def test_two_process_flood(kind: str) -> None:
    result = e2e_run.run_pair(kind, count=3_000, warmup=1_000, timeout=30.0)
    assert result["complete"]
    assert result["received"] == 3_000
    assert result["server"]["count"] == 3_000
    if kind == "fastmd":
        assert result["gaps"] == 0
        assert result["last_trade_id_ok"]
