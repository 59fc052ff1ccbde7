"""The ``fastmd`` command line. The only place that configures logging and picks the event loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("fastmd.cli")


def _run(coro: Coroutine[Any, Any, int], loop_name: str) -> int:
    if loop_name == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed: pip install 'fastmd[uvloop]'", file=sys.stderr)
            return 2
        result: int = uvloop.run(coro)
        return result
    return asyncio.run(coro)


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


async def _until_signalled(stop_after: float | None) -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopped.set)
    try:
        if stop_after is None:
            await stopped.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), stop_after)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _every(seconds: float, action: Callable[[], object]) -> asyncio.Task[None]:
    async def repeat() -> None:
        while True:
            await asyncio.sleep(seconds)
            action()

    return asyncio.create_task(repeat())


async def _sim(args: argparse.Namespace) -> int:
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
        [s.upper() for s in args.symbols.split(",") if s],
        args.seed,
        host=args.host,
        port=args.port,
        rest_port=args.rest_port,
        rate=args.rate,
        limits=limits,
        replay=args.replay,
        replay_speed=None if args.replay_speed == 0 else args.replay_speed,
    )
    tasks: list[asyncio.Task[None]] = []
    async with exchange as ex:
        print(
            f"fastmd simulator ({ex.venue}) ws_url={ex.ws_url} rest_url={ex.rest_url}", flush=True
        )
        print(f"  try: {ex.ws_url}/stream?streams=btcusdt@trade   {ex.rest_url}/api/v3/time")
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
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    print("simulator stopped", flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastmd", description="fastmd: Binance market data.")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=None)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING...")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="run the exchange simulator until Ctrl-C")
    sim.add_argument("--venue", choices=("binance-spot", "binance-usdm"), default="binance-spot")
    sim.add_argument("--symbols", default="BTCUSDT,ETHUSDT,BNBUSDT")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=0, help="WebSocket port (0: any free port)")
    sim.add_argument("--rest-port", type=int, default=0, help="REST port (0: any free port)")
    sim.add_argument("--rate", type=float, default=50.0, help="order-flow events per second")
    sim.add_argument("--replay", metavar="DIR", help="serve a recording instead of the market")
    sim.add_argument("--replay-speed", type=float, default=1.0, help="1 = recorded pace, 0 = max")
    sim.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    limits = sim.add_argument_group("limits (Binance's values by default)")
    limits.add_argument("--ping-interval", type=float)
    limits.add_argument("--pong-timeout", type=float)
    limits.add_argument("--lifetime", type=float, help="connection lifetime in seconds")
    limits.add_argument("--max-incoming", type=int, help="incoming frames per second")
    limits.add_argument("--max-streams", type=int, help="streams per connection")
    limits.add_argument("--rest-weight", type=int, help="REST weight per minute")
    faults = sim.add_argument_group("faults")
    faults.add_argument("--drop-every", type=float, metavar="S", help="drop all connections")
    faults.add_argument("--drop-mode", choices=("close", "fin", "rst"), default="close")
    faults.add_argument("--drop-code", type=int, default=1001)
    faults.add_argument("--shutdown-every", type=float, metavar="S", help="serverShutdown+close")
    faults.add_argument("--skip", action="append", metavar="STREAM", help="skip frames of STREAM")
    faults.add_argument("--skip-every", type=float, default=5.0, metavar="S")
    faults.add_argument("--refuse-upgrades", type=int, metavar="STATUS")
    faults.add_argument("--rest-error", type=int, metavar="STATUS")
    faults.add_argument("--rest-delay", type=float, metavar="S")
    faults.add_argument("--retry-after", type=float, metavar="S")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastmd`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    loop_name = args.loop or _default_loop()
    if args.command == "sim":
        try:
            return _run(_sim(args), loop_name)
        except (OSError, ValueError) as exc:
            print(f"fastmd sim: {exc}", file=sys.stderr)
            return 1
    return 2  # pragma: no cover - argparse rejects unknown commands
