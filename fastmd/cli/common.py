"""Small helpers the commands share: the usage exit code, the exchange a command talks to (the
embedded simulator or ``--url``), Ctrl-C as a stop signal, waiting on a stop event, ending helper
tasks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from fastmd.sim import Exchange

__all__ = [
    "EXIT_USAGE",
    "cancel_all",
    "describe_target",
    "signals_set",
    "start_target",
    "wait_until_set",
]

EXIT_USAGE: Final = 2
"""Exit code of a usage error: a bad option value, a stream or symbol the exchange refuses."""


async def start_target(
    stack: contextlib.AsyncExitStack, args: argparse.Namespace
) -> tuple[Exchange | None, str, str | None]:
    """The exchange a command talks to, as ``(simulator, ws_url, rest_url)``: without ``--url``,
    the embedded simulator of ``--venue``, ``--symbols``, ``--seed`` and ``--rate``, started on
    ``stack`` (which stops it); with ``--url``, no simulator, ``--url`` and ``--rest-url``."""
    if args.url is not None:
        return None, args.url, args.rest_url
    from fastmd.sim import Exchange

    exchange = Exchange(args.venue, args.symbols, args.seed, rate=args.rate)
    await stack.enter_async_context(exchange)
    return exchange, exchange.ws_url, exchange.rest_url


def describe_target(args: argparse.Namespace, ws_url: str, *, simulated: bool) -> str:
    """One line naming what :func:`start_target` gave: the simulator with its venue, seed and
    rate, or ``--url`` with the venue."""
    if simulated:
        return f"simulator {ws_url} ({args.venue}, seed {args.seed}, {args.rate:g} events/s)"
    return f"{ws_url} ({args.venue})"


@contextlib.contextmanager
def signals_set(event: asyncio.Event) -> Iterator[None]:
    """Set ``event`` on SIGINT/SIGTERM while the block runs, so Ctrl-C ends a command through its
    normal shutdown path (connections closed, summary printed) instead of a traceback."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, event.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def wait_until_set(event: asyncio.Event, seconds: float) -> None:
    """Return when ``event`` is set or after ``seconds``, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they are done (their errors are not news: they were
    stopped)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
