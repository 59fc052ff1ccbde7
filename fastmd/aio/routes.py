"""The route table: for every subscribed stream, its sequencer and the callbacks to call, and the
one place events are delivered from, with their source.

The frame router (:mod:`fastmd.aio.router`) looks routes up and calls their callbacks itself, on
the hot path; everything else (REST backfill, REST fallback, buffered live events) goes through
:meth:`RouteTable.deliver` or :meth:`RouteTable.call`, which say where the event came from:
:attr:`RouteTable.source` is ``"rest"`` while a REST event is being delivered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Literal

from fastmd.aio.reporting import Reporter
from fastmd.core.lifecycle import Severity
from fastmd.core.recovery import BACKFILLABLE
from fastmd.core.sequence import Gap, Sequencer, sequencer_for
from fastmd.core.streams import Stream, Venue
from fastmd.core.times import epoch_seconds

if TYPE_CHECKING:
    from fastmd.aio.pool import Shard
    from fastmd.aio.subscriptions import Subscription

__all__: list[str] = []

EventSource = Literal["ws", "rest"]

TIMING_EVERY: Final = 16
"""One message in this many has its callbacks timed: slow callbacks show, the cost stays low."""
LAG_SAMPLES: Final = 256
"""Lag samples kept per stream (the overall window keeps four times as many)."""


class Route:
    """Everything the frame handler needs about one stream."""

    __slots__ = (
        "backfill", "buffer", "callbacks", "check", "events", "lags", "name", "parsed",
        "rest_events", "sequencer", "shard", "single", "subscriptions", "targets",
    )  # fmt: skip

    def __init__(self, name: str, parsed: Stream, sequencer: Sequencer | None) -> None:
        self.name = name
        self.parsed = parsed
        self.sequencer = sequencer
        # the sequencer's bound check, looked up once: the frame handler calls it per event
        self.check: Callable[[Any], bool] | None = sequencer.check if sequencer else None
        self.callbacks: tuple[Callable[[Any], object], ...] = ()
        """What the frame handler calls: ``targets``, or a buffer while events must wait."""
        self.single: Callable[[Any], object] | None = None  # the only callback, if just one
        self.targets: tuple[Callable[[Any], object], ...] = ()
        """The subscriptions' callbacks."""
        self.subscriptions: list[Subscription] = []
        self.shard: Shard | None = None
        self.backfill = False
        self.buffer: deque[Any] | None = None  # live events held while a backfill runs
        self.events = 0
        """Events received on a socket past the sequence check (the frame router counts them:
        health turns the counts into last-event times and rates, no clock read per event)."""
        self.rest_events = 0
        """Events delivered from REST (backfill, fallback polling)."""
        self.lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        """Sampled lags, exchange event time to callback (seconds, on our clock: the clock
        offset to the exchange is added when they are read)."""


class RouteTable:
    """The client's routes, by stream name.

    Flow control: when the callbacks of one loop turn have run longer than ``loop_budget``
    (estimated from the timed runs, one message in :data:`fastmd.aio.router.TIMING_EVERY`: the
    time spent decoding a large read does not count, only callbacks falling behind), events
    stop reaching callbacks directly: they wait, in order, in a backlog that is worked off one
    budget per loop turn, and the sockets that deliver meanwhile stop reading (TCP backpressure),
    so the loop keeps turning (pings, timers, other sockets, close) whatever the callbacks cost.
    Sequencers still check every event as it arrives. A backlog that lasts over a second is
    reported (``slow_consumer``).

    Args:
        venue: the venue (futures depth streams chain by ``pu``).
        reporter: where raising callbacks and slow callback runs are reported.
        on_gap: called by every route's sequencer with each gap it detects.
        slow_callback: seconds above which a timed callback run counts as slow.
        loop_budget: seconds of callbacks per loop turn before events wait.
    """

    def __init__(
        self,
        venue: Venue,
        reporter: Reporter,
        on_gap: Callable[[Gap], None],
        slow_callback: float,
        loop_budget: float = 0.02,
    ) -> None:
        self.venue = venue
        self._reporter = reporter
        self._on_gap = on_gap
        self.slow_callback = slow_callback
        self._routes: dict[str, Route] = {}
        self.get = self._routes.get
        """``get(name)``: the route of a stream, or ``None`` (the frame router binds it once)."""
        self._silent = False
        self.loop_budget = loop_budget
        self._turn_callbacks: float | None = None  # estimated seconds of callbacks this turn
        self._backlog: deque[tuple[Route, Any, EventSource]] = deque()
        self._deferring_since: float | None = None
        self._paused: list[Any] = []  # the asyncio transports told to stop reading
        self._reported_slow = False
        self._drained = 0
        self.pauses = 0
        """Times the callbacks fell behind and the sockets stopped reading."""
        self.deferred = 0
        """Events that waited in the backlog instead of reaching their callbacks at once."""
        self.source: EventSource = "ws"
        """Where the event being delivered right now comes from."""
        self.from_rest: Callable[[Any], Any] | None = None
        """Applied once to every event recovered or polled from REST before delivery (an SBE
        client's REST events get its streams' microsecond times); ``None``: as decoded."""
        self._duplicates_retired = 0
        self.callback_time = 0.0
        self.callback_samples = 0
        self.callback_max = 0.0
        self.slow_callbacks = 0
        self.wall_offset = time.time() - time.perf_counter()
        """Our wall clock minus ``time.perf_counter()``: lag samples read the wall clock from
        the callback timer's reading (health refreshes it, following clock adjustments)."""

    # -- the table ----------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._routes

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(list(self._routes.values()))

    def add(self, name: str, parsed: Stream) -> Route:
        """A new route for ``name`` with the sequencer of its kind."""
        sequencer = sequencer_for(parsed, name, self._on_gap, futures=self.venue == "binance-usdm")
        route = self._routes[name] = Route(name, parsed, sequencer)
        return route

    def pop(self, name: str) -> Route | None:
        """Remove and return the route of ``name`` (its duplicate count is kept)."""
        route = self._routes.pop(name, None)
        if route is not None and route.sequencer is not None:
            self._duplicates_retired += route.sequencer.duplicates
        return route

    @property
    def duplicates(self) -> int:
        """Events dropped as duplicates, removed routes included."""
        return self._duplicates_retired + sum(
            route.sequencer.duplicates for route in self._routes.values() if route.sequencer
        )

    def refresh(self, route: Route) -> None:
        """Recompute what the frame handler calls for ``route``: its subscriptions' callbacks,
        or the backfill buffer while a backfill runs."""
        route.backfill = any(
            sub.backfill if sub.backfill is not None else route.parsed.kind in BACKFILLABLE
            for sub in route.subscriptions
        )
        route.targets = tuple(sub.target(route.name) for sub in route.subscriptions)
        if self._silent:
            route.callbacks = ()
        elif route.buffer is not None:
            route.callbacks = (route.buffer.append,)
        elif self._deferring_since is not None:
            route.callbacks = (self._waiter(route),)
        else:
            route.callbacks = route.targets
        route.single = route.callbacks[0] if len(route.callbacks) == 1 else None

    def silence(self) -> None:
        """Call no callback any more (the client is closing): frames still buffered are
        decoded and dropped, sequencers still run; waiting events are dropped and the sockets
        read again (their closing handshakes must get through)."""
        self._silent = True
        self._backlog.clear()
        self._end_deferring()
        for route in self._routes.values():
            self.refresh(route)

    def hold(self, route: Route) -> None:
        """Buffer ``route``'s live events (a backfill runs) instead of calling its callbacks."""
        route.buffer = deque()
        self.refresh(route)

    def release(self, route: Route) -> deque[Any]:
        """Stop buffering; returns the live events that waited, in order."""
        buffered = route.buffer if route.buffer is not None else deque()
        route.buffer = None
        self.refresh(route)
        return buffered

    # -- delivery -----------------------------------------------------------------------------

    def deliver(self, route: Route, event: Any, source: EventSource) -> bool:
        """Deliver an event that did not come through the frame handler: the same sequencer and
        callbacks. Returns whether it was delivered (not a duplicate)."""
        sequencer = route.sequencer
        if sequencer is not None and not sequencer.check(event):
            return False
        self.call(route, event, source)
        return True

    def call(self, route: Route, event: Any, source: EventSource) -> None:
        """Call ``route``'s callbacks with an event already sequenced (after the events waiting
        in the backlog, if any)."""
        if source == "rest" and self.from_rest is not None:
            event = self.from_rest(event)
        if route.buffer is not None:  # a backfill runs: after what it recovers
            route.buffer.append(event)
            return
        if self._deferring_since is not None:
            self._backlog.append((route, event, source))
            self.deferred += 1
            return
        if source == "rest":
            route.rest_events += 1
        previous, self.source = self.source, source
        try:
            for callback in route.targets:
                try:
                    callback(event)
                except Exception as exc:
                    self.callback_failed(route, exc)
        finally:
            self.source = previous

    def callback_failed(self, route: Route, exc: Exception) -> None:
        """A callback of ``route`` raised ``exc`` (reported; delivery goes on)."""
        self._reporter.callback_failed(f"callback of {route.name}", exc, stream=route.name)

    def dispatch_timed(self, route: Route, event: Any, transport: Any = None) -> None:
        """Call ``route``'s callbacks and time the run (the frame router does this for one
        message in :data:`fastmd.aio.router.TIMING_EVERY`), then check the loop turn's budget:
        over it, events wait and ``transport`` (the picows transport the message came on) stops
        reading."""
        waiting = self._deferring_since is not None  # the callbacks only queue the event
        started = time.perf_counter()
        for callback in route.callbacks:
            try:
                callback(event)
            except Exception as exc:
                self.callback_failed(route, exc)
        ended = time.perf_counter()
        if transport is not None:
            if self._turn_callbacks is None:
                self._turn_callbacks = 0.0
                asyncio.get_running_loop().call_soon(self._new_turn)
            # Callback time this turn, estimated from the timed runs: decoding a large read is
            # not falling behind, and must not cost the backlog's per-event bookkeeping.
            self._turn_callbacks += (ended - started) * TIMING_EVERY
            if waiting or self._turn_callbacks > self.loop_budget:
                self._defer(transport, ended)
        if not waiting:
            self._sample(route, ended - started)
            # The lag sample of this timed message: exchange event time (E) to the callback
            # call, on our wall clock; nothing more is paid per message.
            stamp = getattr(event if type(event) is not list else _first(event), "event_time", 0)
            if stamp:
                route.lags.append(started + self.wall_offset - epoch_seconds(stamp))

    def _sample(self, route: Route, elapsed: float) -> None:
        self.callback_time += elapsed
        self.callback_samples += 1
        if elapsed > self.callback_max:
            self.callback_max = elapsed
        if elapsed > self.slow_callback:
            self.slow_callbacks += 1
            self._reporter.report(
                Severity.WARNING,
                "slow_callback",
                f"callbacks of {route.name} took {elapsed * 1000:.1f} ms (loop blocked)",
                None,
                stream=route.name,
            )

    # -- flow control ---------------------------------------------------------------------------

    def _new_turn(self) -> None:
        self._turn_callbacks = None

    def _waiter(self, route: Route) -> Callable[[Any], None]:
        backlog = self._backlog

        def wait(event: Any) -> None:
            backlog.append((route, event, self.source))
            self.deferred += 1

        return wait

    def _defer(self, transport: Any, now: float) -> None:
        if self._deferring_since is None:
            self._deferring_since = now
            self.pauses += 1
            for route in self._routes.values():
                self.refresh(route)
            asyncio.get_running_loop().call_soon(self._drain)
        underlying = getattr(transport, "underlying_transport", None)
        if underlying is not None and underlying not in self._paused:
            if not underlying.is_closing():
                underlying.pause_reading()
            self._paused.append(underlying)

    def _drain(self) -> None:
        """Work off the backlog for one budget, then let the loop turn."""
        if self._deferring_since is None:
            return
        started = time.perf_counter()
        backlog = self._backlog
        failed = self.callback_failed
        try:
            while backlog:
                route, event, self.source = backlog.popleft()
                before = time.perf_counter()
                for callback in route.targets:
                    try:
                        callback(event)
                    except Exception as exc:
                        failed(route, exc)
                after = time.perf_counter()
                self._drained += 1
                if self._drained % TIMING_EVERY == 0:  # sampled as on the frame path
                    self._sample(route, after - before)
                if after - started > self.loop_budget:
                    break
        finally:
            self.source = "ws"
        now = time.perf_counter()
        if backlog:
            if not self._reported_slow and now - self._deferring_since > 1.0:
                self._reported_slow = True
                self._reporter.report(
                    Severity.WARNING,
                    "slow_consumer",
                    f"callbacks have been behind for {now - self._deferring_since:.1f} s "
                    f"({len(backlog)} events waiting): sockets stopped reading meanwhile",
                    None,
                    backlog=len(backlog),
                )
            asyncio.get_running_loop().call_soon(self._drain)
            return
        self._end_deferring()
        for route in self._routes.values():
            self.refresh(route)

    def _end_deferring(self) -> None:
        self._deferring_since = None
        self._reported_slow = False
        paused, self._paused = self._paused, []
        for underlying in paused:
            if not underlying.is_closing():
                underlying.resume_reading()


def _first(events: list[Any]) -> Any:
    """The first event of an array stream's message (its event time stands for the message)."""
    return events[0] if events else None
