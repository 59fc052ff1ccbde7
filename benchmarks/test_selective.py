"""Selective updates on the hot path: the real frame router fed 1,000 book-ticker frames, with a
plain callback, with ``only_changes`` where every frame is skipped (only quantities move), and
with ``only_changes`` where every frame is delivered (the ask moves each time).

Compare ``min`` within one run (docs/benchmarks.md): a skipped frame must cost less than a
delivered one, and a subscription without the options must cost what a plain callback costs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

import fastmd
from fastmd.aio.reporting import Reporter
from fastmd.aio.router import frame_router
from fastmd.aio.routes import RouteTable
from fastmd.aio.subscriptions import SelectiveDelivery
from fastmd.core.selective import ChangeFilter
from fastmd.core.streams import parse_stream

pytestmark = pytest.mark.benchmark(group="selective")

STREAM = "btcusdt@bookTicker"
FRAMES = 1000


def _frames(moving_ask: bool) -> list[Any]:
    # The ask is the second field compared: skipped and delivered frames both compare both.
    frames = []
    for i in range(FRAMES):
        data = {
            "u": 400900217 + i, "s": "BTCUSDT",
            "b": "25000.00", "B": f"{1 + i % 7}.00",
            "a": f"{25001.0 + (i if moving_ask else 0):.2f}", "A": f"{2 + i % 5}.00",
        }  # fmt: skip
        payload = msgspec.json.encode({"stream": STREAM, "data": data})
        frames.append(_make_test_ws_frame(WSMsgType.TEXT, payload, True, False))
    return frames


def _target(selective: bool, sink: Callable[[Any], None]) -> Callable[[Any], object]:
    if not selective:
        return sink
    return SelectiveDelivery(
        sink,
        change=ChangeFilter(("bid_price", "ask_price")),
        throttle=None,
        stats=None,
        failed=lambda exc: None,
    ).target


@pytest.mark.parametrize(
    ("case", "selective", "moving_ask", "delivered"),
    [
        ("plain callback", False, False, FRAMES),
        ("only_changes, every frame skipped", True, False, 1),
        ("only_changes, every frame delivered", True, True, FRAMES),
    ],
)
def test_book_ticker_frames(
    benchmark: Any, case: str, selective: bool, moving_ask: bool, delivered: int
) -> None:
    frames = _frames(moving_ask)
    count = [0]

    def sink(event: Any) -> None:
        count[0] += 1

    table = RouteTable("binance-spot", Reporter(), lambda gap: None, slow_callback=1.0)
    route = table.add(STREAM, parse_stream(STREAM))
    decoder = fastmd.Decoder()
    decoder.register([STREAM])
    router, _ = frame_router(
        decoder,
        table,
        lambda transport, frame: None,
        on_reply=lambda reply: None,
        on_unrouted=lambda message: None,
        on_decode_error=lambda error: None,
    )

    def run() -> None:
        # a fresh subscription each round: the comparison starts again, ids may repeat
        target = _target(selective, sink)
        route.callbacks = (target,)
        route.single = target
        if route.sequencer is not None:
            route.sequencer.last = -1
        count[0] = 0
        for frame in frames:
            router(None, frame)

    benchmark(run)
    assert count[0] == delivered, case
