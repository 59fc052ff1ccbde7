"""The asyncio side of health: a periodic tick feeds :mod:`fastmd.core.health` with each stream's
event counts (the frame router keeps one integer per route: no clock read per event), where its
subscription stands, and the client's counters; it raises and resolves alerts, executes the
recovery steps the core asks for, and keeps the lag's clock offset current.

Recovery (docs/monitoring.md): a stale stream on a live connection is resubscribed through the
connection's control channel (paced like any control frame); stale again, its connection is
replaced make-before-break (the pool's handover); stale again, it is reported
(``stream_not_revived``) and, with fallback enabled, served by REST polling (the client's
:class:`~fastmd.aio.recovery.Fallback`) until its events flow again. Every step is a report, an
alert edge and a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fastmd.aio.clock import ClockSync
from fastmd.aio.pool import ConnectionPool
from fastmd.aio.recovery import Fallback
from fastmd.aio.reporting import Reporter
from fastmd.aio.rest import RestClient
from fastmd.aio.routes import Route, RouteTable
from fastmd.aio.tasks import Tasks
from fastmd.core.codec import Decoder
from fastmd.core.health import (
    Alert,
    AlertBook,
    AlertKind,
    ConnectionHealth,
    Health,
    HealthConfig,
    HealthStatus,
    Recent,
    RecoveryAction,
    StreamHealth,
    StreamWatch,
    Window,
    lag_stats,
    overall_health,
    shift_lag,
)
from fastmd.core.lifecycle import Severity
from fastmd.core.sequence import Gap
from fastmd.core.streams import Venue

__all__: list[str] = []

logger = logging.getLogger(__name__)

AlertListener = Callable[[Alert], object]

LAG_CHECK_INTERVAL: Final = 1.0
"""Seconds between two lag_high checks of a stream (each sorts its samples)."""
SNAPSHOT_REUSE: Final = 0.05
"""Seconds a ``client.health()`` snapshot is reused (a health tick renews it at once)."""

_SEVERITY: Final = {
    AlertKind.STREAM_STALE: Severity.WARNING,
    AlertKind.LAG_HIGH: Severity.WARNING,
    AlertKind.RECONNECT_STORM: Severity.ERROR,
    AlertKind.CIRCUIT_OPEN: Severity.ERROR,
    AlertKind.FALLBACK: Severity.WARNING,
    AlertKind.GAP: Severity.WARNING,
    AlertKind.DECODE_ERRORS: Severity.WARNING,
    AlertKind.SLOW_CALLBACK: Severity.WARNING,
}


@dataclass
class _Outage:
    """A stream given up on the socket, served alone by REST polling (what
    :class:`~fastmd.aio.recovery.Fallback` polls: a shard of one stream)."""

    url: str
    streams: set[str]
    decoder: Decoder | None = field(default=None)


class HealthMonitor:
    """The client's health: :meth:`snapshot` for ``client.health()``, a background tick for
    alerts and recovery, ``on_alert`` listeners.

    Args:
        venue: the client's venue (cadences differ).
        config: thresholds and recovery (:class:`fastmd.HealthConfig`).
        routes: the route table (event counts, lag samples, the clock offset).
        pool: links, connections, resubscriptions and replacements.
        fallback: REST polling of streams not revived.
        reporter: where recovery steps and raising alert listeners are reported.
        tasks: where the tick runs.
        clock: monotonic clock.
        wall: wall clock (alerts' times).
    """

    def __init__(
        self,
        venue: Venue,
        config: HealthConfig,
        *,
        routes: RouteTable,
        pool: ConnectionPool,
        fallback: Fallback,
        reporter: Reporter,
        tasks: Tasks,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.venue: Venue = venue
        self.config = config
        self._routes = routes
        self._pool = pool
        self._fallback = fallback
        self._reporter = reporter
        self._tasks = tasks
        self._clock = clock
        self._wall = wall
        self._watches: dict[str, StreamWatch] = {}
        self._gaps: dict[str, Recent] = {}
        self._outages: dict[str, _Outage] = {}
        self._alerts = AlertBook()
        self._listeners: list[AlertListener] = []
        self._reconnects = Window(config.reconnect_window)
        self._decode_errors = Recent(config.resolve_after)
        self._slow_callbacks = Recent(config.resolve_after)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._measured = False
        self._lag_checked = -math.inf
        self._snapshot: Health | None = None
        self._snapshot_at = -math.inf
        self._snapshot_key: tuple[bool, int, int] = (False, 0, 0)
        self.clock_sync: ClockSync | None = None
        """Measures the clock offset lag is corrected by (set once the client started)."""
        self.resubscribes = 0
        """Stale streams resubscribed."""
        self.replacements = 0
        """Connections replaced because a stream on them stayed stale."""
        self.not_revived = 0
        """Streams given up on the socket (reported; served by REST where fallback is on)."""
        self.alerts_fired = 0
        """Alert episodes raised."""

    # -- inputs -------------------------------------------------------------------------------

    def watch(self, name: str, route: Route, stale_after: float | None) -> None:
        """``name`` is subscribed (again); ``stale_after`` overrides its threshold (the smallest
        override of its subscriptions wins)."""
        self._snapshot = None
        watch = self._watches.get(name)
        if watch is None:
            watch = self._watches[name] = StreamWatch(
                name, route.parsed, self.venue, self.config, stale_after, self._clock()
            )
            watch.count = route.events
        elif stale_after is not None and (
            watch.stale_after is None or stale_after < watch.stale_after
        ):
            watch.stale_after = stale_after
        self.start()

    def gap(self, gap: Gap) -> None:
        """A gap was reported on ``gap.stream`` (counted per stream; raises ``gap``)."""
        self._snapshot = None
        watch = self._watches.get(gap.stream)
        if watch is None:
            return
        watch.gaps += 1
        watch.missing += gap.missing
        if gap.stream not in self._gaps:
            self._gaps[gap.stream] = Recent(self.config.resolve_after)

    def on_alert(self, callback: AlertListener) -> Callable[[], None]:
        """Call ``callback(alert)`` on every alert edge; returns a remover."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    # -- the tick -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the tick in the background (idempotent; after :meth:`stop`, never again)."""
        if self._task is None and not self._stopped:
            self._task = self._tasks.spawn(self._run())

    def attach_rest(self, rest: RestClient) -> None:
        """The client started: the clock offset can be measured through ``rest`` (from the
        first :meth:`used`)."""
        interval = self.config.clock_sync
        if interval is not None and self.clock_sync is None:
            self.clock_sync = ClockSync(rest, self._reporter, self._tasks, interval=interval)

    def used(self) -> None:
        """Someone reads health (``health()``, ``on_alert``): start measuring the clock offset
        (lag is corrected by it), once."""
        sync = self.clock_sync
        if sync is not None and not self._stopped and not sync.running and not self._measured:
            self._measured = True
            sync.start()

    @property
    def offset(self) -> float | None:
        """The exchange's clock minus ours, seconds (``None`` until measured)."""
        return self.clock_sync.offset if self.clock_sync is not None else None

    def stop(self) -> None:
        """Stop the tick and the clock measurements (the client is closing)."""
        self._stopped = True
        self._snapshot = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.clock_sync is not None:
            self.clock_sync.stop()
        for outage in self._outages.values():
            self._fallback.forget(outage)
        self._outages.clear()

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.config.interval)
            try:
                self.tick()
            except Exception as exc:  # a bug must not end health for good: reported once
                if not failing:
                    self._reporter.report(
                        Severity.ERROR, "internal_error", f"health tick failed: {exc!r}", exc
                    )
                failing = True
            else:
                failing = False

    def tick(self) -> None:
        """One health round: staleness, recovery steps, alerts."""
        self._snapshot = None  # what the round decides shows at once
        now = self._clock()
        wall = self._wall()
        routes = self._routes
        routes.wall_offset = wall - time.perf_counter()  # follows adjustments of our clock
        # lag percentiles sort each stream's samples: once a second is enough for lag_high
        check_lag = now - self._lag_checked >= LAG_CHECK_INTERVAL
        if check_lag:
            self._lag_checked = now
        present = {route.name: route for route in routes}
        for name in [name for name in self._watches if name not in present]:
            self._forget(name, wall)
        config = self.config
        for name, route in present.items():
            watch = self._update(name, route, now)
            self._recover(watch, route, watch.recovery(now))
            self._stream_alerts(name, route, watch, now, wall, check_lag)
        circuits, polled, reconnects = self._pool.troubles()
        self._alert(
            AlertKind.CIRCUIT_OPEN,
            None,
            bool(circuits),
            wall,
            lambda: f"circuit open on {', '.join(circuits)}",
        )
        polled += [name for name, outage in self._outages.items() if self._fallback.polling(outage)]
        self._alert(
            AlertKind.FALLBACK,
            None,
            bool(polled),
            wall,
            lambda: f"served by REST polling: {', '.join(polled[:5])}",
        )
        storm = self._reconnects.observe(now, reconnects)
        self._alert(
            AlertKind.RECONNECT_STORM,
            None,
            storm >= config.reconnect_storm,
            wall,
            lambda: f"{storm} reconnects within {config.reconnect_window:g} s",
        )
        decode = self._decode_errors.observe(now, self._pool.decode_errors)
        self._alert(
            AlertKind.DECODE_ERRORS,
            None,
            decode,
            wall,
            lambda: f"{self._pool.decode_errors} undecodable frame(s)",
        )
        slow = self._slow_callbacks.observe(now, routes.slow_callbacks)
        self._alert(
            AlertKind.SLOW_CALLBACK,
            None,
            slow,
            wall,
            lambda: (
                f"callbacks ran over {routes.slow_callback * 1000:g} ms "
                f"({routes.slow_callbacks} sampled runs)"
            ),
        )

    def _stream_alerts(
        self,
        name: str,
        route: Route,
        watch: StreamWatch,
        now: float,
        wall: float,
        check_lag: bool,
    ) -> None:
        config = self.config
        self._alert(
            AlertKind.STREAM_STALE,
            name,
            watch.troubled(now),
            wall,
            lambda: f"{name}: {watch.status(now)[1]}",
        )
        recent = self._gaps.get(name)
        if recent is not None:
            active = recent.observe(now, watch.gaps)
            self._alert(
                AlertKind.GAP,
                name,
                active,
                wall,
                lambda: f"{name}: {watch.gaps} gap(s), {watch.missing} missing",
            )
            if not active:
                del self._gaps[name]
        if check_lag and route.lags:
            lag = shift_lag(lag_stats(route.lags), self.offset)
            p99 = lag.p99
            high = p99 is not None and lag.samples >= config.lag_min_samples
            high = high and p99 is not None and p99 > config.lag_high
            self._alert(
                AlertKind.LAG_HIGH,
                name,
                high,
                wall,
                lambda: f"{name}: lag p99 {p99 or 0:.3f} s above {config.lag_high:g} s",
            )

    def _update(self, name: str, route: Route, now: float) -> StreamWatch:
        watch = self._watches.get(name)
        if watch is None:
            watch = self._watches[name] = StreamWatch(
                name, route.parsed, self.venue, self.config, None, now
            )
        watch.observe(now, route.events, route.rest_events)
        link, key = self._pool.link(route)
        watch.link(now, link, key)
        return watch

    def _forget(self, name: str, wall: float) -> None:
        self._watches.pop(name, None)
        self._gaps.pop(name, None)
        outage = self._outages.pop(name, None)
        if outage is not None:
            self._fallback.forget(outage)
        for alert in self._alerts.resolve_stream(name, wall):
            self._emit(alert)

    def _alert(
        self,
        kind: AlertKind,
        stream: str | None,
        active: bool,
        wall: float,
        message: Callable[[], str],
    ) -> None:
        if active == self._alerts.is_firing(kind, stream):
            return  # nothing changes: no message built
        alert = self._alerts.update(
            kind, stream, active, wall, _SEVERITY[kind], message() if active else ""
        )
        if alert is not None:
            if alert.firing:
                self.alerts_fired += 1
            self._emit(alert)

    def _emit(self, alert: Alert) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(alert)
            except Exception as exc:
                self._reporter.callback_failed("an alert listener", exc, listener="alert")

    # -- recovery -----------------------------------------------------------------------------

    def _recover(self, watch: StreamWatch, route: Route, action: RecoveryAction) -> None:
        if action is RecoveryAction.NOTHING:
            return
        name = route.name
        if action is RecoveryAction.RECOVERED:
            outage = self._outages.pop(name, None)
            if outage is not None:
                self._fallback.forget(outage)
            logger.info("%s: events flow again after the recovery steps", name)
            return
        silence = watch.threshold() or 0.0
        if action is RecoveryAction.RESUBSCRIBE:
            done = self._pool.resubscribe(route)
            self.resubscribes += done
            self._reporter.report(
                Severity.WARNING,
                "stream_stale",
                f"{name}: silent for more than {silence:g} s while its connection is up; "
                + ("resubscribing" if done else "cannot resubscribe now (connection busy)"),
                None,
                stream=name,
                action="resubscribe",
            )
        elif action is RecoveryAction.REPLACE:
            done = self._pool.replace(route, f"stale stream {name}")
            self.replacements += done
            self._reporter.report(
                Severity.WARNING,
                "stream_stale",
                f"{name}: still silent after resubscribing; "
                + (
                    "replacing its connection (make-before-break)"
                    if done
                    else "its connection cannot be replaced now"
                ),
                None,
                stream=name,
                action="replace",
            )
        else:
            self.not_revived += 1
            served = self._serve_by_rest(route)
            self._reporter.report(
                Severity.ERROR,
                "stream_not_revived",
                f"{name}: still silent after resubscribing and replacing its connection; "
                + (
                    "served by REST polling until its events flow again"
                    if served
                    else "nothing is delivered until its events flow again (fallback is off)"
                ),
                None,
                stream=name,
                action="give_up",
            )

    def _serve_by_rest(self, route: Route) -> bool:
        if not self._fallback.enabled:
            return False
        shard = route.shard
        outage = self._outages.get(route.name)
        if outage is None:
            url = f"{shard.url} ({route.name})" if shard is not None else route.name
            decoder = shard.decoder if shard is not None else None
            outage = self._outages[route.name] = _Outage(url, {route.name}, decoder)
        self._fallback.enter(outage)
        return self._fallback.polling(outage)

    # -- the snapshot -------------------------------------------------------------------------

    def snapshot(self, running: bool) -> Health:
        """``client.health()``: every stream and connection, no I/O. A snapshot is reused for
        up to :data:`SNAPSHOT_REUSE` seconds while no event, gap, subscription or health tick
        came meanwhile (its counts are always exact), so calling it on every loop turn costs a
        sum of counters."""
        now = self._clock()
        routes = self._routes
        key = (running, len(routes), sum(r.events + r.rest_events for r in routes))
        cached = self._snapshot
        fresh = now - self._snapshot_at < SNAPSHOT_REUSE and key == self._snapshot_key
        if cached is not None and fresh:
            return cached
        health = self._take(now, running)
        self._snapshot, self._snapshot_at, self._snapshot_key = health, now, key
        return health

    def _take(self, now: float, running: bool) -> Health:
        streams: dict[str, StreamHealth] = {}
        statuses: list[HealthStatus] = []
        everything: list[float] = []
        alerts = self._alerts
        offset = self.offset
        for route in self._routes:
            name = route.name
            watch = self._update(name, route, now)
            degraded = self._degraded(name, watch)
            status, reason = watch.status(now, degraded=degraded)
            if not running:
                status, reason = HealthStatus.DOWN, "the client is not running"
            statuses.append(status)
            lags = route.lags
            everything.extend(lags)
            shard = route.shard
            streams[name] = StreamHealth(
                stream=name,
                status=status,
                reason=reason,
                last_event_age=watch.age(now),
                rate=watch.rate(now),
                events=route.events,
                rest_events=route.rest_events,
                gaps=watch.gaps,
                missing=watch.missing,
                lag=shift_lag(lag_stats(lags), offset) if lags else None,
                expected_interval=watch.expected(),
                stale_after=watch.threshold(),
                connection=shard.url if shard is not None else None,
                resubscribes=watch.resubscribes,
                replacements=watch.replacements,
                skipped=sum(sub.held_back(name)[0] for sub in route.subscriptions),
                conflated=sum(sub.held_back(name)[1] for sub in route.subscriptions),
            )
        connections: tuple[ConnectionHealth, ...] = tuple(self._pool.connection_health())
        overall, reason = overall_health(running, statuses, [c.status for c in connections])
        return Health(
            status=overall,
            reason=reason,
            streams=streams,
            connections=connections,
            lag=shift_lag(lag_stats(everything), offset) if everything else None,
            clock_offset=offset,
            alerts=alerts.firing(),
        )

    def _degraded(self, name: str, watch: StreamWatch) -> str | None:
        outage = self._outages.get(name)
        if outage is not None and self._fallback.polling(outage):
            return "not revived on the socket: served by REST polling"
        if self._alerts.is_firing(AlertKind.LAG_HIGH, name):
            return f"lag above {self.config.lag_high:g} s"
        if self._alerts.is_firing(AlertKind.GAP, name):
            return f"{watch.gaps} gap(s) lately, {watch.missing} event(s) missing"
        return None
