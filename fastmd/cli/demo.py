"""``fastmd demo``: the main job. Starts the embedded simulator (unless ``--url`` names an
exchange), subscribes a :class:`fastmd.Client` to trades, klines, book tickers and depth diffs,
shows a live view, drops the connection midway and shows that every loss is reported, then
prints a summary. Gives up early, with the cause, on an exchange that never answers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import fastmd
from fastmd.cli.common import cancel_all, describe_target, signals_set, start_target
from fastmd.cli.reports import Reachability, give_up_when_unreachable
from fastmd.cli.state import Demo
from fastmd.cli.view import plain_view, rich_view, summary

__all__ = ["run"]


async def run(args: argparse.Namespace) -> int:
    """Run the demo for ``--duration`` seconds; exit 0 if its result is OK."""
    symbols: list[str] = args.symbols
    plain = args.plain or not sys.stdout.isatty()
    duration: float = args.duration
    async with contextlib.AsyncExitStack() as stack:
        exchange, ws_url, rest_url = await start_target(stack, args)
        source = describe_target(args, ws_url, simulated=exchange is not None)
        reach = Reachability(args.give_up_after)
        demo = Demo(args.venue, symbols, source, plain=sys.stdout if plain else None, reach=reach)
        client = fastmd.Client(
            args.venue,
            ws_url=ws_url,
            rest_url=rest_url,
            # A ping a second: the view shows a live round trip; Binance allows 5 frames/s.
            heartbeat=fastmd.Heartbeat(interval=1.0, timeout=5.0),
            error_reporter=demo.on_report,
        )
        reach.watch(client)
        demo.timeline.append((demo.elapsed(), client.status.value))
        client.on_gap(demo.on_gap)
        client.on_status(demo.on_status)
        await stack.enter_async_context(client)
        if plain:
            print(f"fastmd demo: {source}, {duration:g} s", flush=True)
        # One subscribe() call for every stream: one symbol check and one batched SUBSCRIBE.
        # Separate calls would each fetch exchangeInfo and, once the connection is open, each
        # send a SUBSCRIBE of their own; a burst of those can pass Binance's 5 frames/s.
        # Failures of single streams arrive through the error reporter.
        client.subscribe(list(demo.streams), demo.dispatcher())

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        timers = [loop.call_later(duration, stop.set)]
        if exchange is not None and not args.no_fault:
            faults = exchange.faults

            def inject() -> None:
                dropped = faults.drop_connections(mode="rst")
                demo.note(f"fault injected: the simulator reset {dropped} connection(s) (TCP RST)")

            timers.append(loop.call_later(duration / 2, inject))

        watchdog = asyncio.create_task(
            give_up_when_unreachable(reach, lambda: demo.total_events > 0, stop, demo)
        )
        try:
            with signals_set(stop):
                if plain:
                    await plain_view(demo, client, stop)
                else:
                    await rich_view(demo, client, stop, duration)
        finally:  # also when the run is cancelled (Ctrl-C before the handler was installed)
            for timer in timers:  # after Ctrl-C, no fault on a stopping simulator
                timer.cancel()
            await cancel_all([watchdog])
        demo.sample(client)
        elapsed = demo.elapsed()
    if demo.timeline[-1][1] != "CLOSED":
        demo.timeline.append((elapsed, "CLOSED"))
    print(summary(demo, duration=elapsed), flush=True)
    return 0 if demo.ok else 1
