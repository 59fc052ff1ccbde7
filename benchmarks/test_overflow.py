"""The overflow path of ``client.stream()``: what a dropped (or conflated) event costs, against
decoding the frame it came in. Compare ``min`` within one run (docs/benchmarks.md): dropping must
cost less than the decode."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fastmd
from fastmd.aio.subscriptions import EventStream

pytestmark = pytest.mark.benchmark(group="overflow")

EVENTS = 10_000
FRAME = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT",'
    b'"t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}}'
)


@pytest.mark.parametrize("policy", ["drop_oldest", "keep_latest"])
def test_events_dropped_by_a_full_queue(benchmark: Any, policy: str) -> None:
    loop = asyncio.new_event_loop()
    stream = EventStream(1_000, policy, lambda gap, dropped: None)

    async def fill() -> Any:
        push = stream.pusher("btcusdt@trade")
        for i in range(1_000):
            push(i)
        return push

    push = loop.run_until_complete(fill())

    async def overflow() -> None:
        for i in range(EVENTS):
            push(i)

    def run() -> None:
        loop.run_until_complete(overflow())

    try:
        benchmark(run)
    finally:
        loop.close()
    assert stream.dropped >= EVENTS
    assert len(stream) == 1_000


def test_decoding_the_frames(benchmark: Any) -> None:
    decoder = fastmd.Decoder()
    decoder.register(["btcusdt@trade"])
    decode = decoder.fast_decode
    frame = memoryview(FRAME)

    def run() -> None:
        for _ in range(EVENTS):
            decode(frame)

    benchmark(run)
    assert decode(frame).event.trade_id == 12345
