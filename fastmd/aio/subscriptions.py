"""What a user holds after subscribing: a :class:`Subscription` (a callback on some streams) and
an :class:`EventStream` (an async iterator over a bounded queue).

Neither knows the client: a subscription is given the function that removes it, an event stream
the function that reports what its queue dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol

from fastmd.errors import FastmdError, FastmdTimeoutError, InvalidState, StreamOverflow

__all__ = ["EventStream", "Subscription"]

SubscriptionState = Literal["pending", "active", "failed", "closed"]
OverflowPolicy = Literal["drop_oldest", "keep_latest", "disconnect"]
OVERFLOW_POLICIES: tuple[OverflowPolicy, ...] = ("drop_oldest", "keep_latest", "disconnect")


class Subscription:
    """A callback subscribed to one or more streams (``client.subscribe(...)``).

    ``state`` is ``"pending"`` until every stream is acknowledged, then ``"active"``;
    ``"failed"`` (see ``error``) or ``"closed"`` after :meth:`unsubscribe`.

    The ``mark_*`` methods are the client's side of the object: it calls them as the server
    answers; applications read ``state`` and await :meth:`wait_active`.
    """

    def __init__(
        self,
        streams: tuple[str, ...],
        callback: Callable[[Any], object],
        *,
        backfill: bool | None,
        remove: Callable[[Subscription], None],
    ) -> None:
        self.streams = streams
        self.callback = callback
        self.backfill = backfill
        self.state: SubscriptionState = "pending"
        self.error: FastmdError | None = None
        self._remove = remove
        self._waiting: set[str] = set(streams)
        self._settled = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"Subscription({list(self.streams)!r}, state={self.state!r})"

    def unsubscribe(self) -> None:
        """Stop calling the callback; streams nobody else uses are unsubscribed. Idempotent."""
        if self.state == "closed":
            return
        self.state = "closed"
        self._remove(self)
        self._settle()

    async def wait_active(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until every stream is acknowledged by the server.

        Raises:
            SubscriptionError: a stream was refused, not acknowledged, or its symbol is unknown.
            FastmdTimeoutError: ``timeout`` passed first.
            InvalidState: the subscription was removed.
        """
        try:
            await asyncio.wait_for(asyncio.shield(self._settled), timeout)
        except TimeoutError:
            raise FastmdTimeoutError(
                f"{len(self._waiting)} stream(s) not acknowledged within {timeout:g} s"
            ) from None
        if self.error is not None:
            raise self.error
        if self.state == "closed":
            raise InvalidState("the subscription was removed")

    def mark_acknowledged(self, stream: str) -> None:
        """The server acknowledged ``stream`` (active once every stream is)."""
        self._waiting.discard(stream)
        if not self._waiting and self.state == "pending":
            self.state = "active"
            self._settle()

    def mark_failed(self, error: FastmdError) -> None:
        """A stream of this subscription failed: the subscription fails with ``error``."""
        if self.state in ("failed", "closed"):
            return
        self.state = "failed"
        self.error = error
        self._settle()

    def mark_closed(self) -> None:
        """The client closed: the subscription ends without removing anything."""
        if self.state != "closed":
            self.state = "closed"
            self._settle()

    def _settle(self) -> None:
        if not self._settled.done():
            self._settled.set_result(None)


class _Closable(Protocol):
    @property
    def state(self) -> str: ...

    def unsubscribe(self) -> None: ...


class SubscriptionGroup:
    """Several subscriptions that close together (one per stream of an :class:`EventStream`)."""

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self.subscriptions = subscriptions

    @property
    def state(self) -> str:
        states = {s.state for s in self.subscriptions}
        return "closed" if states == {"closed"} else "active"

    def unsubscribe(self) -> None:
        for sub in self.subscriptions:
            sub.unsubscribe()


OverflowSink = Callable[[str, int, int], None]
"""``(stream, expected, received)``: events of ``stream`` from position ``expected`` up to (not
including) ``received`` were dropped by a full queue."""


class EventStream:
    """An async iterator over events (``client.stream(...)``), through a bounded queue.

    Overflow policies when the consumer falls ``maxsize`` events behind:

    - ``"drop_oldest"``: the oldest queued event is dropped;
    - ``"keep_latest"``: the stream's own queued event is dropped, so each stream keeps its newest
      value (conflation, for tickers and books; the queue holds at most ``maxsize`` plus one
      event per stream);
    - ``"disconnect"``: the iterator raises :class:`fastmd.StreamOverflow` and unsubscribes.

    Every dropped event is reported as a gap with reason ``overflow``.
    """

    def __init__(self, maxsize: int, overflow: str, on_overflow: OverflowSink) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"overflow must be 'drop_oldest', 'keep_latest' or 'disconnect', not {overflow!r}"
            )
        self.maxsize = maxsize
        self.overflow = overflow
        self._on_overflow = on_overflow
        self._queue: deque[Any] = deque()
        self._wakeup = asyncio.Event()
        self._failure: FastmdError | None = None
        self._subscription: _Closable | None = None
        self.dropped = 0
        self._positions: dict[str, int] = {}

    def attach(self, subscription: Subscription | SubscriptionGroup) -> None:
        """The subscription that feeds this stream (closed with it)."""
        self._subscription = subscription

    def pusher(self, stream: str) -> Callable[[Any], None]:
        """The callback that queues the events of ``stream``."""

        def push(event: Any) -> None:
            self.push(event, stream)

        return push

    def push(self, event: Any, stream: str) -> None:
        """Queue ``event`` of ``stream``, applying the overflow policy when full."""
        position = self._positions.get(stream, 0) + 1
        self._positions[stream] = position
        queue = self._queue
        if len(queue) >= self.maxsize:
            if self.overflow == "disconnect":
                if self._failure is None:
                    self._failure = StreamOverflow(
                        f"consumer fell {self.maxsize} events behind; stream closed"
                    )
                    self._on_overflow(stream, position, position + 1)
                    if self._subscription is not None:
                        self._subscription.unsubscribe()
                self._wakeup.set()
                return
            victim: int | None = 0
            if self.overflow == "keep_latest":
                # Conflate: the stream's own queued event goes, so every stream keeps its
                # newest value; a stream with nothing queued may go over maxsize by one (the
                # queue is bounded by maxsize plus the number of streams).
                victim = next((i for i, item in enumerate(queue) if item[1] == stream), None)
            if victim is not None:
                _, dropped_stream, dropped_position = queue[victim]
                del queue[victim]
                self.dropped += 1
                self._on_overflow(dropped_stream, dropped_position, dropped_position + 1)
        queue.append((event, stream, position))
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._queue:
                return self._queue.popleft()[0]
            if self._failure is not None:
                raise self._failure
            if self._subscription is not None and self._subscription.state == "closed":
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Unsubscribe and end the iteration."""
        if self._subscription is not None:
            self._subscription.unsubscribe()
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._queue)
