"""What the NATS hop costs per event, against the decode every client pays anyway: the relay's
callback (append to the stream's open batch), encoding a batch, and the consumer's decode of it.
Each body handles 100 trade events; divide by 100 for a per-event figure."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

import fastmd
from fastmd.core import wire
from fastmd.core.streams import parse_stream
from fastmd.relay import _Buffer, _Lane

pytestmark = pytest.mark.benchmark(group="nats-hop-100-trades")

FRAMES = [
    b'{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":%d,"p":"42000.10000000",'
    b'"q":"0.01200000","T":1700000000000,"m":true,"M":true}' % (3_000_000_000 + i)
    for i in range(100)
]
RELAY_DECODER = fastmd.Decoder(price_type=str)
EVENTS = [RELAY_DECODER.decode(frame, "btcusdt@trade").event for frame in FRAMES]
BATCH = wire.encode(
    wire.Batch(v=1, venue="binance-spot", stream="btcusdt@trade", relay="r", epoch=1, seq=1,
               first=1, n=100, sent=0, events=EVENTS)
)  # fmt: skip
SOURCE_DECODER = wire.batch_decoder(
    fastmd.Decoder().event_type(parse_stream("btcusdt@trade", "binance-spot"))
)


def test_client_decode(bench: Any) -> None:
    """The baseline: the client's decode of 100 frames (a relay pays it as any client does)."""
    decode = RELAY_DECODER.decode

    def run() -> Any:
        for frame in FRAMES:
            last = decode(frame, "btcusdt@trade")
        return last

    assert bench(run).event.trade_id == 3_000_000_099


def test_relay_callback(bench: Any) -> None:
    """The relay's callback, 100 times: one batch of 100 cut and handed over."""
    loop = asyncio.new_event_loop()
    try:
        buffer = _Buffer(100, 0.001, 1_000_000, loop)
        lane = _Lane("btcusdt@trade", "s", "g", buffer)
        push = lane.push

        def run() -> int:
            for event in EVENTS:
                push(event)
            count = len(buffer.outbox)
            buffer.outbox.clear()  # the publisher's part, not timed here
            buffer.count = 0
            buffer.dirty.clear()
            return count

        assert bench(run) == 1
    finally:
        if buffer.timer is not None:
            buffer.timer.cancel()
        loop.close()


def test_relay_encode(bench: Any) -> None:
    """Encoding one batch of 100 trades (header included)."""

    def run() -> bytes:
        return wire.encode(
            wire.Batch(v=1, venue="binance-spot", stream="btcusdt@trade", relay="r", epoch=1,
                       seq=1, first=1, n=100, sent=0, events=EVENTS)
        )  # fmt: skip

    assert bench(run) == BATCH


def test_source_decode(bench: Any) -> None:
    """The consumer's decode of one batch of 100 trades into float events."""
    batch = bench(SOURCE_DECODER.decode, BATCH)
    assert [e.trade_id for e in batch.events] == [3_000_000_000 + i for i in range(100)]
    assert msgspec.structs.asdict(batch.events[0])["price"] == 42000.1
