"""What a user holds after subscribing: a :class:`Subscription` (a callback on some streams) and
an :class:`EventStream` (an async iterator over a bounded queue).

Neither knows the client: a subscription is given the function that removes it, an event stream
the function that reports what its queue dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, Protocol

from fastmd.aio.tasks import require_loop
from fastmd.core.selective import ChangeFilter, Throttle, change_gate
from fastmd.core.sequence import Gap, GapReason
from fastmd.errors import FastmdError, FastmdTimeoutError, InvalidState, StreamOverflow

__all__ = ["EventStream", "Subscription"]

logger = logging.getLogger(__name__)

SubscriptionState = Literal["pending", "active", "failed", "closed"]
OverflowPolicy = Literal["drop_oldest", "keep_latest", "disconnect"]
OVERFLOW_POLICIES: tuple[OverflowPolicy, ...] = ("drop_oldest", "keep_latest", "disconnect")


class SelectionStats:
    """Events held back by ``only_changes`` and ``throttle``, all subscriptions together."""

    def __init__(self) -> None:
        self._live: set[SelectiveDelivery] = set()
        self._ended = [0, 0]

    def track(self, delivery: SelectiveDelivery) -> None:
        self._live.add(delivery)

    def ended(self, delivery: SelectiveDelivery) -> None:
        if delivery in self._live:
            self._live.discard(delivery)
            self._ended[0] += delivery.skipped
            self._ended[1] += delivery.conflated

    @property
    def skipped(self) -> int:
        """Events not delivered because nothing compared had changed (``only_changes``)."""
        return self._ended[0] + sum(d.skipped for d in self._live)

    @property
    def conflated(self) -> int:
        """Events replaced by a newer one before their turn came (``throttle``)."""
        return self._ended[1] + sum(d.conflated for d in self._live)


class SelectiveDelivery:
    """What a route calls for one stream of a subscription with ``only_changes`` or
    ``throttle`` (:attr:`target`): it compares, holds and conflates (rules in
    :mod:`fastmd.core.selective`), and calls the user's callback with what passes. A held event
    goes at the end of its interval, from a timer of the running loop.

    Args:
        callback: the user's callback.
        change: the comparison of ``only_changes`` (``None``: every event passes).
        throttle: the interval rule of ``throttle`` (``None``: no throttling).
        stats: the client's counts of held-back events (``None``: not counted there).
        failed: called when ``callback`` raises from the timer (on the frame path, the route
            reports it as for any callback).
    """

    def __init__(
        self,
        callback: Callable[[Any], object],
        *,
        change: ChangeFilter | None,
        throttle: Throttle | None,
        stats: SelectionStats | None,
        failed: Callable[[Exception], None],
    ) -> None:
        self._callback = callback
        self._change = change
        self._throttle = throttle
        self._stats = stats
        self._failed = failed
        self._timer: asyncio.TimerHandle | None = None
        self._skipped: Callable[[], int] = lambda: change.skipped if change is not None else 0
        self.target: Callable[[Any], object] = self._deliver
        """The function the route calls with each event."""
        if change is not None and throttle is None and not change.by_symbol:
            self.target, self._skipped = change_gate(change.fields, callback)
        if stats is not None:
            stats.track(self)

    @property
    def skipped(self) -> int:
        return self._skipped()

    @property
    def conflated(self) -> int:
        return self._throttle.conflated if self._throttle is not None else 0

    def _deliver(self, event: Any) -> None:
        change = self._change
        if change is not None and not change.passes(event):
            return
        throttle = self._throttle
        if throttle is None:
            self._callback(event)
            return
        loop = asyncio.get_running_loop()
        if throttle.offer(event, loop.time()):
            self._callback(event)
            return
        if self._timer is None and throttle.deadline is not None:
            self._timer = loop.call_at(throttle.deadline, self._due)

    def _due(self) -> None:
        self._timer = None
        throttle = self._throttle
        assert throttle is not None
        for event in throttle.due(asyncio.get_running_loop().time()):
            try:
                self._callback(event)
            except Exception as exc:
                self._failed(exc)

    def close(self) -> None:
        """Cancel the timer and forget held events (the subscription ended)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._throttle is not None:
            self._throttle.drop()
        if self._stats is not None:
            self._stats.ended(self)


class Subscription:
    """A callback subscribed to one or more streams (``client.subscribe(...)``).

    ``state`` is ``"pending"`` until every stream is acknowledged, then ``"active"``;
    ``"failed"`` (see ``error``) or ``"closed"`` after :meth:`unsubscribe`.

    With ``only_changes`` or ``throttle``, :attr:`skipped` and :attr:`conflated` count the
    events held back (sequence checks still saw them: they are never gaps).

    The ``mark_*`` methods and :meth:`target` are the client's side of the object: it calls them
    as the server answers and as it routes events; applications read ``state`` and await
    :meth:`wait_active`.
    """

    def __init__(
        self,
        streams: tuple[str, ...],
        callback: Callable[[Any], object],
        *,
        backfill: bool | None,
        remove: Callable[[Subscription], None],
        selective: dict[str, SelectiveDelivery] | None = None,
    ) -> None:
        self.streams = streams
        self.callback = callback
        self.backfill = backfill
        self._selective = selective or {}
        self.state: SubscriptionState = "pending"
        self.error: FastmdError | None = None
        self._remove = remove
        self._waiting: set[str] = set(streams)
        self._loop = asyncio.get_running_loop()
        self._settled = self._loop.create_future()

    def __repr__(self) -> str:
        return f"Subscription({list(self.streams)!r}, state={self.state!r})"

    @property
    def skipped(self) -> int:
        """Events not delivered because nothing compared had changed (``only_changes``)."""
        return sum(delivery.skipped for delivery in self._selective.values())

    @property
    def conflated(self) -> int:
        """Events replaced by a newer one within a throttle interval (``throttle``)."""
        return sum(delivery.conflated for delivery in self._selective.values())

    def held_back(self, stream: str) -> tuple[int, int]:
        """``(skipped, conflated)`` of one of its streams (both 0 without ``only_changes`` and
        ``throttle``): what ``client.health()`` shows per stream."""
        delivery = self._selective.get(stream)
        return (delivery.skipped, delivery.conflated) if delivery is not None else (0, 0)

    def target(self, stream: str) -> Callable[[Any], object]:
        """What the route of ``stream`` calls with each event: the callback itself, or the
        selective delivery in front of it."""
        delivery = self._selective.get(stream)
        return delivery.target if delivery is not None else self.callback

    def unsubscribe(self) -> None:
        """Stop calling the callback; streams nobody else uses are unsubscribed. Idempotent.

        Raises:
            InvalidState: called from another thread than the client's event loop (nothing
                changes then; use ``client.call_soon_threadsafe(sub.unsubscribe)``).
        """
        if self.state == "closed":
            return
        require_loop(self._loop, "unsubscribe()")
        self.state = "closed"
        self._end_selective()
        self._remove(self)
        self._settle()

    def _end_selective(self) -> None:
        for delivery in self._selective.values():
            delivery.close()

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
        self._end_selective()
        self._settle()

    def mark_closed(self) -> None:
        """The client closed: the subscription ends without removing anything."""
        if self.state != "closed":
            self.state = "closed"
            self._end_selective()
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


OverflowSink = Callable[[Gap, int], None]
"""``(gap, dropped)``: a burst of ``dropped`` events of ``gap.stream`` was dropped by a full
queue (positions ``gap.expected`` up to, not including, ``gap.received``)."""


class EventStream:
    """An async iterator over events (``client.stream(...)``), through a bounded queue.

    Overflow policies when the consumer falls ``maxsize`` events behind:

    - ``"drop_oldest"``: the oldest queued event is dropped;
    - ``"keep_latest"``: the stream's own queued event is replaced by the new one, in its place
      in the queue (conflation, for tickers and books: each stream keeps its newest value; the
      queue holds at most ``maxsize`` plus one event per stream);
    - ``"disconnect"``: the iterator raises :class:`fastmd.StreamOverflow` and unsubscribes.

    What overflows is this consumer's loss, not the stream's: it is never backfilled, and each
    burst (the drops of one stream within one loop turn) becomes one :class:`fastmd.Gap` with the
    reason ``overflow``, given to this stream's :meth:`on_gap` listeners and kept in
    :attr:`gaps` (the newest 1,000). Positions count events in this stream's delivery order,
    from 1; they are not exchange ids.
    """

    def __init__(self, maxsize: int, overflow: str, on_overflow: OverflowSink) -> None:
        if type(maxsize) is not int or maxsize < 1:
            raise ValueError(f"maxsize must be an int >= 1, not {maxsize!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"overflow must be 'drop_oldest', 'keep_latest' or 'disconnect', not {overflow!r}"
            )
        self.maxsize = maxsize
        self.overflow = overflow
        self._on_overflow = on_overflow
        self._queue: deque[list[Any]] = deque()  # entries: [event, stream, position]
        self._newest: dict[str, list[Any]] = {}  # keep_latest: each stream's queued entry
        self._wakeup = asyncio.Event()
        self._failure: FastmdError | None = None
        self._subscription: _Closable | None = None
        self.dropped = 0
        """Events this consumer lost to overflow."""
        self.gaps: deque[Gap] = deque(maxlen=1000)
        """The newest overflow gaps of this consumer, one per burst."""
        self._gap_listeners: list[Callable[[Gap], object]] = []
        self._bursts: dict[str, list[int]] = {}  # stream -> [first, last, count] this turn

    def attach(self, subscription: Subscription | SubscriptionGroup) -> None:
        """The subscription that feeds this stream (closed with it)."""
        self._subscription = subscription

    def on_gap(self, callback: Callable[[Gap], object]) -> Callable[[], None]:
        """Call ``callback(gap)`` for each burst this consumer loses to overflow; returns a
        remover."""
        self._gap_listeners.append(callback)

        def remove() -> None:
            if callback in self._gap_listeners:
                self._gap_listeners.remove(callback)

        return remove

    def pusher(self, stream: str) -> Callable[[Any], None]:
        """The callback that queues the events of ``stream`` (it numbers them itself: one
        pusher per stream)."""
        position = 0
        enqueue = self._enqueue

        def push(event: Any) -> None:
            nonlocal position
            position += 1
            enqueue(event, stream, position)

        return push

    def _enqueue(self, event: Any, stream: str, position: int) -> None:
        # The overflow paths cost less than decoding the frame did: no allocation when an
        # event is dropped, no search of the queue.
        queue = self._queue
        if len(queue) >= self.maxsize:
            policy = self.overflow
            if policy == "drop_oldest":
                entry = queue.popleft()  # reused for the new event
                self._dropped(entry[1], entry[2])
                entry[0] = event
                entry[1] = stream
                entry[2] = position
                queue.append(entry)
                return  # the consumer was woken when the queue filled
            if policy == "keep_latest":
                newest = self._newest.get(stream)
                if newest is not None:  # conflate in place
                    self._dropped(stream, newest[2])
                    newest[0] = event
                    newest[2] = position
                    return
                # a stream with nothing queued may go over maxsize by one
            else:  # disconnect
                if self._failure is None:
                    self._failure = StreamOverflow(
                        f"consumer fell {self.maxsize} events behind; stream closed"
                    )
                    self._dropped(stream, position)
                    if self._subscription is not None:
                        self._subscription.unsubscribe()
                self._wakeup.set()
                return
        entry = [event, stream, position]
        queue.append(entry)
        if self.overflow == "keep_latest":
            self._newest[stream] = entry
        self._wakeup.set()

    def _dropped(self, stream: str, position: int) -> None:
        self.dropped += 1
        burst = self._bursts.get(stream)
        if burst is not None:
            burst[1] = position
            burst[2] += 1
            return
        if not self._bursts:
            asyncio.get_running_loop().call_soon(self._flush_bursts)
        self._bursts[stream] = [position, position, 1]

    def _flush_bursts(self) -> None:
        bursts, self._bursts = self._bursts, {}
        for stream, (first, last, count) in bursts.items():
            gap = Gap(stream, first, last + 1, GapReason.OVERFLOW)
            self.gaps.append(gap)
            self._on_overflow(gap, count)
            for listener in tuple(self._gap_listeners):
                try:
                    listener(gap)
                except Exception:
                    logger.exception("an EventStream gap listener raised")

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._queue:
                event, stream, _ = entry = self._queue.popleft()
                if self._newest.get(stream) is entry:
                    del self._newest[stream]
                return event
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
