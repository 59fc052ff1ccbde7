"""``fastmd relay STREAM... --nats URL``: the feed handler (:class:`fastmd.relay.Relay`) until
Ctrl-C. Without ``--url`` it relays the embedded simulator's market (tries it out with no
exchange). ``--workers N`` runs N processes, each owning the streams that
:func:`fastmd.core.wire.shard_of` gives it, each its own relay (id ``<relay-id>-w<k>``, own epoch
and sequences); a worker that dies is started again (its consumers see a relay restart)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
from typing import Any, Final

from fastmd.cli.common import signals_set
from fastmd.core import wire
from fastmd.core.streams import parse_stream

__all__ = ["run"]

logger = logging.getLogger(__name__)

RESTART_DELAY: Final = 0.5
"""Seconds before a worker that died is started again."""


def _symbols(streams: list[str], venue: Any) -> list[str]:
    found = [parse_stream(name, venue).symbol for name in streams]
    symbols = list(dict.fromkeys(s.upper() for s in found if s))
    return symbols or ["BTCUSDT"]


async def run(args: argparse.Namespace) -> int:
    """Relay until Ctrl-C; exit 0, or 1 when NATS support is missing."""
    from fastmd.errors import FastmdError

    try:
        from fastmd.relay import import_nats

        import_nats()
    except FastmdError as exc:
        print(f"fastmd relay: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    with signals_set(stop):
        return await _serve(args, stop)


async def _serve(args: argparse.Namespace, stop: asyncio.Event) -> int:
    async with contextlib.AsyncExitStack() as stack:
        ws_url, rest_url = args.url, args.rest_url
        if ws_url is None:
            from fastmd.sim import Exchange

            exchange = await stack.enter_async_context(
                Exchange(args.venue, _symbols(args.streams, args.venue), rate=args.rate)
            )
            ws_url, rest_url = exchange.ws_url, exchange.rest_url
            print(f"fastmd relay: relaying the simulator at {ws_url}", file=sys.stderr)
        if args.workers == 1:
            relay_id = args.relay_id or socket.gethostname()  # stable: the epoch tells restarts
            return await _relay(args, args.streams, ws_url, rest_url, relay_id, stop)
        return await _supervise(args, ws_url, rest_url, stop)


async def _relay(
    args: argparse.Namespace,
    streams: list[str],
    ws_url: str | None,
    rest_url: str | None,
    relay_id: str | None,
    stop: asyncio.Event,
) -> int:
    from fastmd.relay import Relay

    relay = Relay(
        streams,
        nats=args.nats,
        venue=args.venue,
        ws_url=ws_url,
        rest_url=rest_url,
        relay_id=relay_id,
        batch_size=args.batch_size,
        batch_delay=args.batch_delay / 1000,
        max_buffered=args.max_buffered,
        prefix=args.prefix,
        jetstream=args.jetstream,
        retention=args.retention,
    )
    async with relay:
        subjects = wire.events_wildcard(args.venue, args.prefix)
        print(
            f"fastmd relay {relay.relay_id}: {len(streams)} stream(s) to {args.nats} as {subjects}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    stats = relay.stats
    print(
        f"fastmd relay {relay.relay_id}: {stats.events} events, {stats.published} published "
        f"in {stats.batches} batches, {stats.dropped} dropped, {stats.outages} NATS outage(s)",
        file=sys.stderr,
    )
    return 0


def _worker_command(
    args: argparse.Namespace, shard: list[str], ws_url: str, rest_url: str | None, relay_id: str
) -> list[str]:
    command = [
        sys.executable, "-m", "fastmd", "--log-level", args.log_level, "relay", *shard,
        "--nats", args.nats, "--venue", args.venue, "--url", ws_url, "--workers", "1",
        "--relay-id", relay_id, "--batch-size", str(args.batch_size),
        "--batch-delay", repr(args.batch_delay), "--max-buffered", str(args.max_buffered),
        "--prefix", args.prefix, "--retention", repr(args.retention),
    ]  # fmt: skip
    if rest_url:
        command += ["--rest-url", rest_url]
    if args.jetstream:
        command.append("--jetstream")
    if args.loop:
        command[3:3] = ["--loop", args.loop]
    return command


async def _supervise(
    args: argparse.Namespace, ws_url: str, rest_url: str | None, stop: asyncio.Event
) -> int:
    base = args.relay_id or socket.gethostname()
    shards: list[list[str]] = [[] for _ in range(args.workers)]
    for name in args.streams:
        shards[wire.shard_of(name, args.workers)].append(name)
    workers = {k: shard for k, shard in enumerate(shards) if shard}
    for k in range(args.workers):
        if k not in workers:
            print(f"fastmd relay: worker {k} owns no stream; not started", file=sys.stderr)

    async def keep(k: int, shard: list[str]) -> None:
        relay_id = f"{base}-w{k}"
        while not stop.is_set():
            command = _worker_command(args, shard, ws_url, rest_url, relay_id)
            process = await asyncio.create_subprocess_exec(*command)
            print(f"fastmd relay: worker {k} pid {process.pid}: {len(shard)} stream(s)",
                  file=sys.stderr, flush=True)  # fmt: skip
            waiter = asyncio.create_task(process.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                if process.returncode is None:
                    process.terminate()
                    try:
                        await asyncio.wait_for(waiter, 10)
                    except TimeoutError:
                        process.kill()
                        await waiter
                return
            print(f"fastmd relay: worker {k} exited with {process.returncode}; restarting",
                  file=sys.stderr, flush=True)  # fmt: skip
            await asyncio.sleep(RESTART_DELAY)

    await asyncio.gather(*(keep(k, shard) for k, shard in workers.items()))
    return 0
