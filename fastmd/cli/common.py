"""Small helpers the commands share: the usage exit code, Ctrl-C as a stop signal, waiting on a
stop event, ending helper tasks."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable, Iterator
from typing import Any, Final

__all__ = ["EXIT_USAGE", "cancel_all", "signals_set", "wait_until_set"]

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


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they are done (their errors are not news: they were
    stopped)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
