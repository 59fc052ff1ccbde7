"""``fastmd sim``: the exchange simulator on its own, for your bot, with its limits and faults
taken from the options."""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Callable

from fastmd.cli.common import cancel_all, signals_set, wait_until_set
from fastmd.core.streams import futures_route, trade_stream
from fastmd.core.weights import REST_PREFIX

__all__ = ["run"]


async def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or ``--duration``; print the URLs first."""
    from fastmd.sim import Exchange, SimLimits

    venue = args.venue
    limits = SimLimits.for_venue(venue)
    overrides = {
        "ping_interval": args.ping_interval,
        "pong_timeout": args.pong_timeout,
        "connection_lifetime": args.lifetime,
        "max_incoming_per_second": args.max_incoming,
        "max_streams_per_connection": args.max_streams,
        "rest_weight_per_minute": args.rest_weight,
    }
    limits = limits.with_(**{k: v for k, v in overrides.items() if v is not None})
    exchange = Exchange(
        venue,
        args.symbols,
        args.seed,
        host=args.host,
        port=args.port,
        rest_port=args.rest_port,
        rate=args.rate,
        limits=limits,
        replay=args.replay,
        replay_speed=None if args.replay_speed == 0 else args.replay_speed,
        sbe=args.sbe,
        api_keys=args.api_keys,
    )
    tasks: list[asyncio.Task[None]] = []
    async with exchange as ex:
        print(
            f"fastmd simulator ({ex.venue}) ws_url={ex.ws_url} rest_url={ex.rest_url}", flush=True
        )
        # The venue's stream of every trade, on its USD-M futures route (/market) if routed.
        stream = trade_stream(args.symbols[0], venue)
        route = f"/{futures_route(stream)}" if venue == "binance-usdm" else ""
        rest = f"{ex.rest_url}{REST_PREFIX[venue]}time"
        print(f"  try: {ex.ws_url}{route}/stream?streams={stream}   {rest}")
        if args.sbe:
            print("  SBE: binary frames; every upgrade needs the header X-MBX-APIKEY", flush=True)
        faults = ex.faults
        if args.drop_every:
            mode, code = args.drop_mode, args.drop_code
            tasks.append(
                _every(args.drop_every, lambda: faults.drop_connections(mode=mode, code=code))
            )
        if args.shutdown_every:
            tasks.append(
                _every(args.shutdown_every, lambda: faults.server_shutdown(close_after=1.0))
            )
        for stream in args.skip or ():
            tasks.append(_every(args.skip_every, functools.partial(faults.skip, stream)))
        if args.refuse_upgrades:
            faults.refuse_upgrades(args.refuse_upgrades, retry_after=args.retry_after)
        if args.rest_error:
            faults.rest_error(args.rest_error, retry_after=args.retry_after)
        if args.rest_delay:
            faults.rest_delay(args.rest_delay)
        try:
            await _until_signalled(args.duration)
        finally:
            await cancel_all(tasks)
    print("simulator stopped", flush=True)
    return 0


async def _until_signalled(stop_after: float | None) -> None:
    stopped = asyncio.Event()
    with signals_set(stopped):
        if stop_after is None:
            await stopped.wait()
        else:
            await wait_until_set(stopped, stop_after)


def _every(seconds: float, action: Callable[[], object]) -> asyncio.Task[None]:
    async def repeat() -> None:
        while True:
            await asyncio.sleep(seconds)
            action()

    return asyncio.create_task(repeat())
