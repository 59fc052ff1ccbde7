"""Small helpers the commands share: the usage exit code, Ctrl-C as a stop signal, waiting on a
stop event, and (for now) the shutdown exception handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["EXIT_USAGE", "quiet_leftovers", "signals_set", "wait_until_set"]

logger = logging.getLogger(__name__)

EXIT_USAGE: Final = 2
"""Exit code of a usage error: a bad option value, a stream or symbol the exchange refuses."""


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


def quiet_leftovers() -> None:
    """Called when a command starts shutting down: a client task that then fails because its
    HTTP session closed under it is not news, and must not print "Task exception was never
    retrieved" on the user's screen. Such fastmd errors go to the log at INFO; anything else
    still reaches asyncio's default handler.

    (Works around the client's shared exchangeInfo fetch, which outlives a waiter cancelled by
    ``Client.close()`` and then fails with nobody to retrieve its error.)
    """
    import fastmd

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, fastmd.FastmdError):
            logger.info("after shutdown began: %s: %r", context.get("message"), error)
            return
        loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(handler)
