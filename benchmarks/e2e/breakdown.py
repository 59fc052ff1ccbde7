"""Where fastmd's frame handler spends its time, step by step, in process (no socket).

``python -m benchmarks.e2e.breakdown`` feeds the same 10,000 distinct combined trade frames
(memoryviews, contiguous ids) to a ladder of handlers, each adding one piece of the frame
router to the one before, and prints ns per frame (min of ``--rounds`` rounds) with the step's
increment. The last rung is the real handler, built by ``fastmd.aio.router.frame_router`` with a
route installed by hand. Complements the ``ladder_*`` clients of the end-to-end run, which
measure the same layers inside the real receive loop.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from benchmarks.e2e.clients import BareEnvelope
from benchmarks.e2e.common import (
    FIRST_TRADE_ID,
    STREAM,
    Meter,
    malloc_reader,
    run,
    stream_router,
    trade_frame,
)

Handler = Callable[[memoryview], None]


def _handlers(on_event: Callable[[Any], None]) -> tuple[list[tuple[str, Handler]], Any]:
    from picows import WSMsgType
    from picows.picows import _make_test_ws_frame

    import fastmd
    from fastmd.aio.router import TIMING_EVERY

    bare = msgspec.json.Decoder(BareEnvelope, strict=False).decode
    decoder = fastmd.Decoder()
    decoder.register([STREAM])
    router, route, gaps = stream_router(on_event, "ws://127.0.0.1:1/stream")
    routes = {STREAM: route}  # the dict lookup the frame router's get() is bound to
    sequencer = route.sequencer
    assert sequencer is not None
    state = {"countdown": TIMING_EVERY, "errors": 0}
    resets: list[Callable[[], None]] = [lambda: setattr(sequencer, "last", -1)]

    def h_bare(payload: memoryview) -> None:
        on_event(bare(payload).data)

    fast = decoder.fast_decode

    def h_fast_local(payload: memoryview) -> None:
        on_event(fast(payload).event)

    def h_fast_attr(payload: memoryview) -> None:
        on_event(decoder.fast_decode(payload).event)

    def h_try(payload: memoryview) -> None:
        try:
            message = decoder.fast_decode(payload)
        except Exception:
            return
        on_event(message.event)

    def h_route(payload: memoryview) -> None:
        try:
            message = decoder.fast_decode(payload)
        except Exception:
            return
        route = routes.get(message.stream)
        if route is None:
            return
        on_event(message.event)

    def h_sequencer(payload: memoryview) -> None:
        try:
            message = decoder.fast_decode(payload)
        except Exception:
            return
        route = routes.get(message.stream)
        if route is None:
            return
        event = message.event
        sequencer = route.sequencer
        if sequencer is not None and not sequencer.check(event):
            return
        on_event(event)

    class EmptyCheck:
        __slots__ = ()

        def check(self, event: Any) -> bool:
            return True

    class NoEnumStore:
        """The in-order path of ``_TradeIds.check`` written out: the real sequencer's rung
        should cost no more (it once stored an enum member per frame; docs/benchmarks.md)."""

        __slots__ = ("last",)

        def __init__(self) -> None:
            self.last = -1

        def check(self, event: Any) -> bool:
            key: int = event.trade_id
            last = self.last
            if key == last + 1 or last < 0:
                self.last = key
                return True
            return False

    empty, no_enum = EmptyCheck(), NoEnumStore()
    resets.append(lambda: setattr(no_enum, "last", -1))

    def _with(checker: Any) -> Handler:
        def handler(payload: memoryview) -> None:
            try:
                message = decoder.fast_decode(payload)
            except Exception:
                return
            route = routes.get(message.stream)
            if route is None:
                return
            event = message.event
            if not checker.check(event):
                return
            on_event(event)

        return handler

    def h_dispatch(payload: memoryview) -> None:
        try:
            message = decoder.fast_decode(payload)
        except Exception:
            return
        route = routes.get(message.stream)
        if route is None:
            return
        event = message.event
        sequencer = route.sequencer
        if sequencer is not None and not sequencer.check(event):
            return
        countdown = state["countdown"] - 1
        if countdown:
            state["countdown"] = countdown
            single = route.single
            if single is not None:
                try:
                    single(event)
                except Exception:
                    state["errors"] += 1
        else:
            state["countdown"] = TIMING_EVERY

    # The router takes picows frames; the ladder feeds payloads: wrap each in a test frame
    # built once per payload (cached), so the rung measures the router, not frame creation.
    test_frames: dict[int, Any] = {}

    def real(payload: memoryview) -> None:
        frame = test_frames.get(id(payload))
        if frame is None:
            frame = test_frames[id(payload)] = _make_test_ws_frame(
                WSMsgType.TEXT, bytes(payload), True, False
            )
        router(None, frame)  # type: ignore[arg-type]

    ladder: list[tuple[str, Handler]] = [
        ("bare msgspec envelope decode + callback (b)", h_bare),
        ("fastmd fast_decode (local name) + callback", h_fast_local),
        ("fastmd decoder.fast_decode (attribute, as the handler) + callback", h_fast_attr),
        ("+ try/except around the decode", h_try),
        ("+ routes.get(message.stream)", h_route),
        ("+ a method call that returns True (sequencer stand-in)", _with(empty)),
        ("+ trade-id check in that method, no enum store", _with(no_enum)),
        ("+ route.sequencer.check(event) (the real trade sequencer)", h_sequencer),
        ("+ sampling countdown, single callback with try", h_dispatch),
        ("real frame router (1 in 16 timed, from a picows test frame)", real),
    ]
    return ladder, (resets, gaps)


def _time(
    handler: Handler, frames: list[memoryview], rounds: int, reset: Callable[[], None]
) -> tuple[float, float | None]:
    """(min ns per frame, malloc events per frame or None without the LD_PRELOAD counter)."""
    best = float("inf")
    for _ in range(rounds):
        reset()
        start = time.perf_counter_ns()
        for frame in frames:
            handler(frame)
        best = min(best, (time.perf_counter_ns() - start) / len(frames))
    mallocs = malloc_reader()
    per_frame = None
    if mallocs is not None:
        reset()
        before = mallocs()
        for frame in frames:
            handler(frame)
        per_frame = (mallocs() - before) / len(frames)
    return best, per_frame


def _micro() -> list[tuple[str, float]]:
    """A few single operations of the handler, timed alone (ns, min of 7 repeats)."""
    setup = (
        "import fastmd\n"
        "from fastmd.core.sequence import GapReason\n"
        "from fastmd.aio.client import Client\n"
        f"d = fastmd.Decoder(); d.register([{STREAM!r}])\n"
        f"m = d.decode({trade_frame(FIRST_TRADE_ID)!r})\n"
        "c = Client(ws_url='ws://x:1', rest_url='http://x:1', validate_symbols=False)\n"
    )
    statements = [
        ("GapReason.SERVER_SKIP (module global + enum member)", "GapReason.SERVER_SKIP"),
        ("message.stream (ClassVar through the instance)", "m.stream"),
        ("message.event", "m.event"),
        ("decoder.fast_decode (instance attribute)", "d.fast_decode"),
        ("an attribute store on the client", "c.countdown_probe = 5"),
    ]
    out = []
    number = 1_000_000
    baseline = min(timeit.repeat("pass", setup, number=number, repeat=7))
    for name, stmt in statements:
        best = min(timeit.repeat(stmt, setup, number=number, repeat=7))
        out.append((name, (best - baseline) / number * 1e9))
    return out


async def _main(args: argparse.Namespace) -> None:
    meter = Meter(0, 1 << 62)
    frames = [memoryview(trade_frame(FIRST_TRADE_ID + i)) for i in range(args.frames)]
    ladder, (resets, gaps) = _handlers(meter.on_event)

    def reset() -> None:
        for undo in resets:
            undo()

    if not args.gc:
        gc.disable()
    results: list[tuple[str, float, float | None]] = []
    for _ in range(args.passes):  # interleave the rungs: the machine's load moves
        for index, (name, handler) in enumerate(ladder):
            ns, mallocs = _time(handler, frames, args.rounds, reset)
            if len(results) <= index:
                results.append((name, ns, mallocs))
            else:
                results[index] = (name, min(results[index][1], ns), results[index][2])
    assert not gaps, "the sequencer saw a gap"
    print("| step | ns/frame | increment ns | malloc events/frame |")
    print("|---|---:|---:|---:|")
    previous = None
    for name, ns, mallocs in results:
        increment = "" if previous is None else f"{ns - previous:+.0f}"
        allocs = "" if mallocs is None else f"{mallocs:.2f}"
        print(f"| {name} | {ns:.0f} | {increment} | {allocs} |")
        previous = ns
    print()
    print("| operation alone | ns |")
    print("|---|---:|")
    for name, ns in _micro():
        print(f"| {name} | {ns:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on")
    args = parser.parse_args(argv)
    run(_main(args), "asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
