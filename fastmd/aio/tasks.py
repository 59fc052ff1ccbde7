"""The background tasks of one client (started in one place, each failure reported, all
cancelled and awaited on close), and the check that a call comes from the client's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastmd.errors import InvalidState

__all__: list[str] = []


def require_loop(loop: asyncio.AbstractEventLoop | None, what: str) -> None:
    """Raise unless called from ``loop``'s thread, while it runs: the client is not
    thread-safe, and a call from elsewhere must fail before it changes anything.

    Raises:
        InvalidState: called from another thread (or with no loop running).
    """
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not loop:
        raise InvalidState(
            f"{what} must be called from the client's event loop thread (fastmd.Client is not "
            "thread-safe); from another thread use client.call_soon_threadsafe(...) or "
            "asyncio.run_coroutine_threadsafe(...)"
        )


class Tasks:
    """A set of running tasks.

    Args:
        failed: called with the exception of a task that ended with one (not cancelled).
    """

    def __init__(self, failed: Callable[[BaseException], None]) -> None:
        self._failed = failed
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of this set."""
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._failed(exc)

    async def cancel_all(self) -> None:
        """Cancel every task and wait until all have ended."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._running)
