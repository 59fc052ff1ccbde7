"""``fastmd replay DIR``: serve a recording (docs/recording.md) with the simulator, so a bot (or
``fastmd watch --url``) connects to it as to the exchange: the recorded frames at the recorded
pace (``--speed`` times faster, or as fast as possible with ``--fast``) once a client subscribes
to a recorded stream, REST depth with the recorded snapshots. Ends once every frame was served
(after ``--linger`` seconds) or on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio

from fastmd.cli.common import signals_set, wait_until_set

__all__ = ["run"]


async def run(args: argparse.Namespace) -> int:
    """Serve until the recording was played (plus ``--linger``) or Ctrl-C."""
    from fastmd.core.streams import futures_route
    from fastmd.sim import Exchange

    speed = None if args.fast else args.speed
    exchange = Exchange(
        host=args.host, port=args.port, rest_port=args.rest_port, replay=args.dir,
        replay_speed=speed,
    )  # fmt: skip
    recording = exchange.recording
    assert recording is not None
    streams = recording.streams
    async with exchange as ex:
        pace = "as fast as possible" if speed is None else f"at {speed:g}x the recorded pace"
        print(
            f"fastmd replay: {args.dir} ({ex.venue}, {len(recording.frames)} frames of "
            f"{len(streams)} streams) {pace}, once a client subscribes to one of them",
            flush=True,
        )
        if recording.truncated:
            print(f"fastmd replay: warning: {recording.truncated}", flush=True)
        print(f"  ws_url={ex.ws_url} rest_url={ex.rest_url}", flush=True)
        if streams:
            route = f"/{futures_route(streams[0])}" if ex.venue == "binance-usdm" else ""
            print(f"  try: {ex.ws_url}{route}/stream?streams={streams[0]}", flush=True)
        stopped = asyncio.Event()
        with signals_set(stopped):
            done = asyncio.ensure_future(ex.wait_replayed())
            stop = asyncio.ensure_future(stopped.wait())
            await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if done.done():
                print(f"fastmd replay: {done.result()} frames served", flush=True)
                await wait_until_set(stopped, args.linger)
            else:
                done.cancel()
                print("fastmd replay: stopped", flush=True)
    return 0
