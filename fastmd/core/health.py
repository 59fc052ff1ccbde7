"""Per-stream health: when a stream is stale, what the client's overall health is, which alerts
fire and resolve, and which recovery step comes next. Sans-I/O: the asyncio shell
(:mod:`fastmd.aio.health`) feeds event counts, link states and times in, and executes the
actions this module answers.

Rules:

1. Expected interval. A stream of a fixed cadence knows it from its kind and speed
   (:func:`expected_interval`: ``@depth@100ms`` 0.1 s, ``@depth`` 1 s on spot, klines 2 s on
   spot, markPrice 3 s or 1 s, tickers 1 s on spot and 2 s on USD-M...). Event-driven streams
   (trade, aggTrade, bookTicker) learn their usual inter-arrival time (the median of the last
   :data:`LEARN_WINDOW`) once :attr:`HealthConfig.learn_events` events arrived; sparse ones
   (forceOrder, blockTrade, ``!contractInfo``) are never judged by silence unless
   ``stale_after`` is given.
2. Staleness. A stream is ``STALE`` when its link is up, its subscription acknowledged, and it
   has been silent for longer than its threshold (:meth:`StreamWatch.threshold`): the
   ``stale_after`` given to ``subscribe``; else, for a fixed cadence, ``max(stale_floor,
   cadence_factor x cadence)``, or ``event_factor x learned interval`` once learned
   (:data:`TICKING_EVENTS` events) when longer (diff streams push only when the book changes:
   an illiquid one learns a long interval), and ``max(event_floor, ...)`` before its first
   event; else ``max(event_floor, event_factor x learned interval)``.
   Silence is counted from the last event or from the moment the stream became judged
   (connected, acknowledged, resubscribed, moved), whichever is later.
3. A stream's status: its link down is ``DOWN``; served by REST polling, waiting for its
   acknowledgement, a high lag or a fresh gap is ``DEGRADED``; staleness is ``STALE``;
   otherwise ``HEALTHY``.
4. Overall status (:data:`OVERALL_RULES`, first that holds): closed or not started is ``DOWN``;
   every stream down is ``DOWN``; a stale stream makes it ``STALE``; a stream down or degraded,
   or a connection not healthy, makes it ``DEGRADED``; otherwise ``HEALTHY``.
5. Recovery (when :attr:`HealthConfig.recover`), once a stream's pace is known (interval
   learned, ``stale_after`` given, or nothing delivered at all): a stale stream on a live link is
   resubscribed;
   stale again after that (its threshold elapsed anew), its connection is replaced
   make-before-break; stale again, it is given up: reported, and served by REST where fallback
   is enabled. Events flowing again end the episode (:attr:`RecoveryAction.RECOVERED`).
6. Alerts are episodes (:class:`AlertBook`): one ``firing`` alert when a condition starts, one
   resolved alert when it ends, never one per event. Conditions that are events (gaps, decode
   errors, slow callbacks) hold for :attr:`HealthConfig.resolve_after` seconds after the last one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from fastmd.core.clock import LagStats, lag_stats as lag_stats  # one definition, in clock
from fastmd.core.lifecycle import ConnectionState, Severity
from fastmd.core.stats import RateMeter
from fastmd.core.streams import Stream, StreamKind, Venue

__all__ = [
    "Alert",
    "AlertKind",
    "ConnectionHealth",
    "Health",
    "HealthConfig",
    "HealthStatus",
    "StreamHealth",
]


class HealthStatus(StrEnum):
    """How well a stream, a connection or the whole client is doing (worst last)."""

    HEALTHY = "HEALTHY"
    """Data flows as expected."""
    DEGRADED = "DEGRADED"
    """Data flows, or will soon, but not as it should: served by REST polling, waiting for an
    acknowledgement, lagging, or just lost events."""
    STALE = "STALE"
    """The link is up but the stream has been silent for longer than its expected interval
    allows."""
    DOWN = "DOWN"
    """No data can flow: the connection is down, or the client is closed or not started."""


class AlertKind(StrEnum):
    """What an :class:`Alert` is about."""

    STREAM_STALE = "stream_stale"
    LAG_HIGH = "lag_high"
    RECONNECT_STORM = "reconnect_storm"
    CIRCUIT_OPEN = "circuit_open"
    FALLBACK = "fallback"
    GAP = "gap"
    DECODE_ERRORS = "decode_errors"
    SLOW_CALLBACK = "slow_callback"


@dataclass(frozen=True, slots=True)
class Alert:
    """One edge of an alert episode (``client.on_alert``): ``firing=True`` when the condition
    starts, ``firing=False`` once when it ends, like Alertmanager's firing and resolved.

    Attributes:
        kind: what it is about (:class:`AlertKind`; compares equal to its string value).
        firing: True when raised, False when resolved.
        stream: the stream it is about, or ``None`` for client-wide conditions.
        severity: how bad (:class:`fastmd.Severity`).
        message: a readable sentence.
        since: when the episode started (epoch seconds, ``time.time()``); the resolved alert
            keeps the firing one's ``since``.
        at: when this edge happened (epoch seconds).
    """

    kind: AlertKind
    firing: bool
    stream: str | None
    severity: Severity
    message: str
    since: float
    at: float


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """One subscribed stream's health (``client.health().streams[name]``).

    Attributes:
        stream: the stream name.
        status: its :class:`HealthStatus`.
        reason: why it is not ``HEALTHY`` (``None`` when it is).
        last_event_age: seconds since its last event, to the health tick (``None`` before the
            first one).
        rate: events per second over the last ten seconds.
        events: events received on the socket (past the sequence checks).
        rest_events: events delivered from REST (backfill and fallback polling).
        gaps: losses detected on it.
        missing: events (candles, for klines) those losses lost.
        lag: exchange event time to callback, corrected by the clock offset to the exchange
            (:class:`fastmd.core.clock.LagStats`, seconds: p50, p99, max over the last sampled
            events); ``None`` where the stream's events carry no event time, or before the
            first sample.
        expected_interval: seconds between events it expects (its cadence, or what it learned),
            ``None`` while unknown.
        stale_after: seconds of silence that make it ``STALE`` now (``None``: never judged).
        connection: the URL of the connection carrying it (``None`` before placement).
        resubscribes: times health resubscribed it.
        replacements: times health replaced its connection.
        skipped: events its current subscriptions did not deliver because nothing they compare
            had changed (``only_changes``); counted in ``events``, never gaps.
        conflated: events its current subscriptions' throttles replaced by a newer one
            (``throttle``); counted in ``events``, never gaps.
    """

    stream: str
    status: HealthStatus
    reason: str | None
    last_event_age: float | None
    rate: float
    events: int
    rest_events: int
    gaps: int
    missing: int
    lag: LagStats | None
    expected_interval: float | None
    stale_after: float | None
    connection: str | None
    resubscribes: int = 0
    replacements: int = 0
    skipped: int = 0
    conflated: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    """One pooled connection's health (``client.health().connections``).

    Attributes:
        url: its URL.
        state: its :class:`fastmd.ConnectionState` (``None`` before a socket was made).
        status: ``HEALTHY`` when open, ``DEGRADED`` when its streams are served by REST
            polling, ``DOWN`` otherwise.
        rtt: the last ping round trip in seconds (``None`` before the first pong).
        uptime: seconds the current socket has been open (0 when not open).
        reconnects: successful connects after the first.
        streams: the streams it carries, sorted.
        polling: its streams are served by REST polling.
    """

    url: str
    state: ConnectionState | None
    status: HealthStatus
    rtt: float | None
    uptime: float
    reconnects: int
    streams: tuple[str, ...]
    polling: bool = False


@dataclass(frozen=True, slots=True)
class Health:
    """A snapshot of the client's health (``client.health()``); no I/O to take it.

    Attributes:
        status: the overall :class:`HealthStatus` (rules in :mod:`fastmd.core.health`).
        reason: why it is not ``HEALTHY``.
        streams: every subscribed stream's :class:`StreamHealth`, by name.
        connections: every pooled connection's :class:`ConnectionHealth`.
        lag: lag over every stream's samples (``None`` without any).
        clock_offset: exchange clock minus local clock, seconds (``None`` until measured).
        alerts: the alerts firing now.
    """

    status: HealthStatus
    reason: str | None
    streams: Mapping[str, StreamHealth]
    connections: tuple[ConnectionHealth, ...]
    lag: LagStats | None = None
    clock_offset: float | None = None
    alerts: tuple[Alert, ...] = ()


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """Health thresholds and recovery (``fastmd.Client(health=HealthConfig(...))``).

    Attributes:
        interval: seconds between health ticks (staleness, rates, alerts, recovery).
        stale_floor: fixed-cadence streams are never stale sooner than this many seconds.
        cadence_factor: a fixed-cadence stream is stale after this many cadences of silence.
        event_floor: event-driven streams are never stale sooner (a quiet market).
        event_factor: an event-driven stream is stale after this many learned intervals.
        learn_events: events an event-driven stream needs before its interval is trusted (a
            fixed-cadence stream needs at most :data:`TICKING_EVENTS`).
        recover: resubscribe stale streams, then replace their connection, then give them up
            to REST polling.
        lag_high: seconds of lag (p99 of a stream's recent samples) that raise ``lag_high``.
        lag_min_samples: samples a stream needs before its lag is judged.
        reconnect_storm: reconnects within ``reconnect_window`` that raise ``reconnect_storm``.
        reconnect_window: seconds over which reconnects are counted.
        resolve_after: seconds without a new gap, decode error or slow callback before their
            alert resolves.
        clock_sync: seconds between measurements of the exchange's clock offset (a burst of
            REST server-time requests, weight 1 each), which lag is corrected by; they start
            with the first ``client.health()`` or ``client.on_alert()``. ``None``: never
            measured, lag is read against our own clock.
    """

    interval: float = 0.25
    stale_floor: float = 1.5
    cadence_factor: float = 3.0
    event_floor: float = 10.0
    event_factor: float = 10.0
    learn_events: int = 20
    recover: bool = True
    lag_high: float = 1.0
    lag_min_samples: int = 5
    reconnect_storm: int = 3
    reconnect_window: float = 60.0
    resolve_after: float = 10.0
    clock_sync: float | None = 300.0

    def __post_init__(self) -> None:
        for name in (
            "interval", "stale_floor", "cadence_factor", "event_floor", "event_factor",
            "lag_high", "reconnect_window", "resolve_after",
        ):  # fmt: skip
            _positive(name, getattr(self, name))
        for name in ("learn_events", "lag_min_samples", "reconnect_storm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.clock_sync is not None:
            _positive("clock_sync", self.clock_sync)
        if not isinstance(self.recover, bool):
            raise TypeError(f"recover must be a bool, not {self.recover!r}")


def check_stale_after(value: object) -> float | None:
    """``subscribe(..., stale_after=)``: ``None`` or a positive finite number of seconds.

    Raises:
        TypeError: not a number.
        ValueError: not positive and finite.
    """
    return None if value is None else _positive("stale_after", value)


# -- expected intervals ---------------------------------------------------------------------

_SPEEDS: Final = {"100ms": 0.1, "250ms": 0.25, "500ms": 0.5, "1000ms": 1.0, "1s": 1.0}
_SPARSE: Final = frozenset(
    {
        StreamKind.FORCE_ORDER, StreamKind.ALL_FORCE_ORDERS, StreamKind.BLOCK_TRADE,
        StreamKind.ALL_CONTRACT_INFO, StreamKind.SERVER_SHUTDOWN,
    }
)  # fmt: skip
"""Kinds that may stay silent for hours in a healthy market: judged only with ``stale_after``."""
_EVENT_DRIVEN: Final = frozenset(
    {
        StreamKind.TRADE, StreamKind.AGG_TRADE, StreamKind.BOOK_TICKER,
        StreamKind.ALL_BOOK_TICKERS,
    }
)  # fmt: skip


def expected_interval(stream: Stream, venue: Venue) -> float | None:
    """Seconds between pushes of a fixed-cadence stream (binance-protocol notes §1.3 and §6),
    ``None`` for event-driven and sparse streams."""
    kind = stream.kind
    if kind in _SPARSE or kind in _EVENT_DRIVEN:
        return None
    futures = venue == "binance-usdm"
    speed = _SPEEDS.get(stream.speed or "")
    if kind in (StreamKind.DEPTH, StreamKind.PARTIAL_DEPTH, StreamKind.RPI_DEPTH):
        return speed if speed is not None else (0.25 if futures else 1.0)
    if kind in (StreamKind.KLINE, StreamKind.CONTINUOUS_KLINE):
        if futures:
            return 0.25
        return 1.0 if stream.interval == "1s" else 2.0
    if kind in (StreamKind.MARK_PRICE, StreamKind.ALL_MARK_PRICES):
        return speed if speed is not None else 3.0
    if kind in (StreamKind.MINI_TICKER, StreamKind.TICKER):
        return 2.0 if futures else 1.0
    # avgPrice, referencePrice, window tickers, the all-market arrays, composite and asset
    # indexes: every second.
    return speed if speed is not None else 1.0


# -- one stream -------------------------------------------------------------------------------

LEARN_WINDOW: Final = 31
"""Inter-arrival samples a stream keeps; its learned interval is their median, so a rare long
silence (a mute that ended, a reconnect) does not move it, and an illiquid stream whose usual
gaps are long learns them."""
TICKING_EVENTS: Final = 5
"""Events after which a fixed-cadence stream counts as seen ticking (its learned interval is
trusted): half a second of a 100 ms stream."""


class Link(Enum):
    """Where a stream's subscription stands, as the shell sees it each tick."""

    UNPLACED = "not placed on a connection yet"
    CONNECTING = "its connection is opening"
    DOWN = "its connection is down (reconnecting)"
    PENDING = "waiting for the subscription's acknowledgement"
    POLLING = "served by REST polling while its connection is down"
    UP = "subscribed on an open connection"


class RecoveryAction(Enum):
    """What :meth:`StreamWatch.recovery` asks the shell to do."""

    NOTHING = 0
    RESUBSCRIBE = 1
    """UNSUBSCRIBE and SUBSCRIBE the stream on its connection (paced)."""
    REPLACE = 2
    """Replace the stream's connection make-before-break."""
    GIVE_UP = 3
    """Report the stream as not revived and serve it by REST polling where enabled."""
    RECOVERED = 4
    """Events flow again after recovery steps: end the episode (stop polling it)."""


class StreamWatch:
    """The health state of one stream, fed by :meth:`observe` each tick.

    Args:
        name: the stream name.
        stream: the parsed stream.
        venue: its venue (cadences differ).
        config: the thresholds.
        stale_after: the subscription's override (validated with :func:`check_stale_after`).
        now: the monotonic time it was subscribed.
    """

    __slots__ = (
        "_intervals", "_judged_since", "_learned", "_link", "_link_key", "_median", "_rate_at",
        "_rates", "_stage", "cadence", "config", "count", "gaps", "last_event", "missing", "name",
        "replacements", "rest_count", "resubscribes", "stale_after", "stream",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        stream: Stream,
        venue: Venue,
        config: HealthConfig,
        stale_after: float | None,
        now: float,
    ) -> None:
        self.name = name
        self.stream = stream
        self.config = config
        self.cadence = expected_interval(stream, venue)
        self.stale_after = stale_after
        self.count = 0
        self.rest_count = 0
        self.last_event: float | None = None
        self._intervals: deque[float] = deque(maxlen=LEARN_WINDOW)
        self._median: float | None = None
        self.gaps = 0
        self.missing = 0
        self.resubscribes = 0
        self.replacements = 0
        self._learned = 0
        self._rates = RateMeter()
        self._rate_at = -math.inf
        self._judged_since = now
        self._link = Link.UNPLACED
        self._link_key: object = None
        self._stage = RecoveryAction.NOTHING

    # -- feeding ------------------------------------------------------------------------------

    def observe(self, now: float, count: int, rest_count: int = 0) -> None:
        """The stream's socket event count (and REST event count) at ``now``."""
        delta = count - self.count
        self.rest_count = rest_count
        if delta > 0:
            last = self.last_event
            if last is not None:
                sample = (now - max(last, self._judged_since)) / delta
                if sample > 0:
                    self._intervals.append(sample)
                    self._median = None
            self._learned += delta
            self.last_event = now
            self.count = count
        elif delta < 0:  # a counter that went back (a new route): start over
            self.count = count
        if now - self._rate_at >= 1.0:
            self._rates.sample(now, self.count)
            self._rate_at = now

    def link(self, now: float, link: Link, key: object = None) -> None:
        """Where its subscription stands; ``key`` names the connection carrying it. Becoming
        ``UP``, or moving to another connection, restarts the silence count."""
        if link is Link.UP and (self._link is not Link.UP or key != self._link_key):
            self._judged_since = now
        self._link = link
        self._link_key = key

    def restart(self, now: float) -> None:
        """Count silence from ``now`` (a resubscription or replacement was just made)."""
        self._judged_since = now

    # -- judging ------------------------------------------------------------------------------

    def learned_interval(self) -> float | None:
        """The learned interval, once enough events taught it (a fixed-cadence stream is seen
        ticking after :data:`TICKING_EVENTS`)."""
        needed = self.config.learn_events
        if self.cadence is not None:
            needed = min(needed, TICKING_EVENTS)
        if self._learned < needed:
            return None
        return self.interval

    @property
    def interval(self) -> float | None:
        """The median of the recent inter-arrival samples (``None`` without any)."""
        median = self._median
        if median is None and self._intervals:
            ordered = sorted(self._intervals)
            median = self._median = ordered[len(ordered) // 2]
        return median

    def threshold(self) -> float | None:
        """Seconds of silence that make the stream stale (``None``: never judged)."""
        if self.stale_after is not None:
            return self.stale_after
        config = self.config
        learned = self.learned_interval()
        if self.cadence is not None:
            bound = max(config.stale_floor, config.cadence_factor * self.cadence)
            if self.last_event is None:
                # Nothing yet: a diff stream pushes only when its book changes (an idle or
                # illiquid one), so as patient as an event-driven stream; one that never
                # delivers anything is still caught.
                return max(bound, config.event_floor)
            if learned is None:
                return bound
            return max(bound, config.event_factor * learned)
        if learned is None or self.stream.kind in _SPARSE:
            return None  # sparse, or nothing learned yet: silence is no evidence
        return max(config.event_floor, config.event_factor * learned)

    def silence(self, now: float) -> float:
        """Seconds it has been silent while judged."""
        last = self.last_event
        since = self._judged_since if last is None else max(last, self._judged_since)
        return max(now - since, 0.0)

    def is_stale(self, now: float) -> bool:
        """Silent on an acknowledged subscription of an open connection for longer than its
        threshold."""
        if self._link is not Link.UP:
            return False
        threshold = self.threshold()
        return threshold is not None and self.silence(now) > threshold

    def troubled(self, now: float) -> bool:
        """In a staleness episode: stale now, or a recovery step was taken and no event has
        arrived since (a resubscription gets the stream's whole threshold to work, and the
        episode does not end meanwhile)."""
        if self.is_stale(now):
            return True
        return self._stage is not RecoveryAction.NOTHING and not self._flowing(now)

    def status(self, now: float, *, degraded: str | None = None) -> tuple[HealthStatus, str | None]:
        """Its status and the reason; ``degraded`` is a reason the shell knows of (a high lag,
        a fresh gap, REST polling of this stream)."""
        link = self._link
        if link is Link.UP:
            if self.troubled(now):
                return HealthStatus.STALE, self._stale_reason(now)
            if degraded is not None:
                return HealthStatus.DEGRADED, degraded
            return HealthStatus.HEALTHY, None
        if link is Link.POLLING:
            return HealthStatus.DEGRADED, link.value
        if link is Link.PENDING:
            if self._stage is not RecoveryAction.NOTHING:
                return HealthStatus.DEGRADED, f"{self._stale_reason(now)}; {link.value}"
            return HealthStatus.DEGRADED, degraded or link.value
        return HealthStatus.DOWN, link.value

    def _stale_reason(self, now: float) -> str:
        expected = self.expected()
        told = f", expected every {expected:.3g} s" if expected is not None else ""
        age = self.age(now)
        quiet = f"silent for {age:.1f} s" if age is not None else "no event yet"
        step = _STEPS.get(self._stage, "")
        return f"{quiet}{told}{step}"

    def expected(self) -> float | None:
        """Seconds between events it expects: the cadence, or what it learned."""
        learned = self.learned_interval()
        if self.cadence is None:
            return learned
        return self.cadence if learned is None else max(self.cadence, learned)

    def rate(self, now: float) -> float:
        """Events per second over the last ten seconds."""
        return self._rates.rate(now, self.count, 10.0)

    def age(self, now: float) -> float | None:
        """Seconds since the last event (``None`` before the first)."""
        return None if self.last_event is None else max(now - self.last_event, 0.0)

    # -- recovery -----------------------------------------------------------------------------

    def recovery(self, now: float) -> RecoveryAction:
        """The next recovery step, once per tick (rule 5)."""
        stage = self._stage
        if stage is not RecoveryAction.NOTHING and self._flowing(now):
            self._stage = RecoveryAction.NOTHING
            return RecoveryAction.RECOVERED
        stale = self.is_stale(now)
        if not stale or not self.config.recover or stage is RecoveryAction.GIVE_UP:
            return RecoveryAction.NOTHING
        if stage is RecoveryAction.NOTHING and not self._sure():
            return RecoveryAction.NOTHING  # reported STALE, but not acted on yet
        if stage is RecoveryAction.NOTHING:
            step = RecoveryAction.RESUBSCRIBE
            self.resubscribes += 1
        elif stage is RecoveryAction.RESUBSCRIBE:
            step = RecoveryAction.REPLACE
            self.replacements += 1
        else:
            step = RecoveryAction.GIVE_UP
        self._stage = step
        self._judged_since = now  # the step gets the stream's whole threshold to work
        return step

    def _sure(self) -> bool:
        """Staleness is acted on (resubscribe...) only when the stream's usual pace is known:
        its interval learned, or ``stale_after`` given, or nothing delivered at all; a stream
        that just started may be an idle book."""
        return (
            self.stale_after is not None
            or self.last_event is None
            or self.learned_interval() is not None
        )

    def _flowing(self, now: float) -> bool:
        """Events arrived since the last step was taken."""
        last = self.last_event
        return last is not None and last >= self._judged_since and self._link is Link.UP


_STEPS: Final = {
    RecoveryAction.RESUBSCRIBE: "; resubscribed, waiting for events",
    RecoveryAction.REPLACE: "; resubscribed, then its connection replaced, waiting for events",
    RecoveryAction.GIVE_UP: "; not revived by resubscribing nor by a new connection",
}


def shift_lag(stats: LagStats, offset: float | None) -> LagStats:
    """``stats`` of uncorrected samples (our clock minus event time) corrected by the clock
    ``offset`` (what to add to our clock to read the exchange's; ``None``: unknown)."""
    if not offset or stats.p50 is None or stats.p99 is None or stats.max is None:
        return stats
    return LagStats(stats.p50 + offset, stats.p99 + offset, stats.max + offset, stats.samples)


# -- alerts -----------------------------------------------------------------------------------


class AlertBook:
    """Alert episodes by ``(kind, stream)``: :meth:`update` answers an :class:`Alert` only when a
    condition starts or ends."""

    def __init__(self) -> None:
        self._firing: dict[tuple[AlertKind, str | None], Alert] = {}

    def update(
        self,
        kind: AlertKind,
        stream: str | None,
        active: bool,
        wall: float,
        severity: Severity = Severity.WARNING,
        message: str = "",
    ) -> Alert | None:
        """The condition ``(kind, stream)`` holds (``active``) or not at ``wall`` (epoch
        seconds): the firing alert when it starts, the resolved one when it ends, else None."""
        key = (kind, stream)
        current = self._firing.get(key)
        if active and current is None:
            alert = self._firing[key] = Alert(
                kind, True, stream, severity, message or kind.value, wall, wall
            )
            return alert
        if not active and current is not None:
            del self._firing[key]
            return Alert(kind, False, stream, current.severity, current.message, current.since,
                         wall)  # fmt: skip
        return None

    def firing(self) -> tuple[Alert, ...]:
        """The alerts firing now, oldest first."""
        return tuple(sorted(self._firing.values(), key=lambda alert: alert.since))

    def is_firing(self, kind: AlertKind, stream: str | None = None) -> bool:
        return (kind, stream) in self._firing

    def streams(self) -> set[str]:
        """Streams with an alert firing."""
        return {stream for _, stream in self._firing if stream is not None}

    def resolve_stream(self, stream: str, wall: float) -> list[Alert]:
        """Resolve every alert about ``stream`` (it was unsubscribed)."""
        return [
            alert
            for kind, name in list(self._firing)
            if name == stream and (alert := self.update(kind, name, False, wall)) is not None
        ]


class Recent:
    """A condition that is an event: it holds from a count's increase until ``hold`` seconds
    passed without another."""

    __slots__ = ("_count", "_last", "hold")

    def __init__(self, hold: float, count: int = 0) -> None:
        self.hold = hold
        self._count = count
        self._last: float | None = None

    def observe(self, now: float, count: int) -> bool:
        """Feed the count at ``now``; answers whether the condition holds."""
        if count > self._count:
            self._last = now
        self._count = count
        return self._last is not None and now - self._last < self.hold


class Window:
    """Counts increases of a counter within the last ``span`` seconds (reconnect storms)."""

    __slots__ = ("_count", "_times", "span")

    def __init__(self, span: float, count: int = 0) -> None:
        self.span = span
        self._count = count
        self._times: list[float] = []

    def observe(self, now: float, count: int) -> int:
        """Feed the count at ``now``; answers the increases within the window."""
        if count > self._count:
            self._times.extend([now] * min(count - self._count, 1000))
        self._count = count
        horizon = now - self.span
        self._times = [when for when in self._times if when > horizon]
        return len(self._times)


# -- overall ----------------------------------------------------------------------------------

_Inputs = tuple[bool, Sequence[HealthStatus], Sequence[HealthStatus]]


def _all_down(inputs: _Inputs) -> bool:
    _, streams, _ = inputs
    return bool(streams) and all(s is HealthStatus.DOWN for s in streams)


OVERALL_RULES: Final = (
    (lambda inputs: not inputs[0], HealthStatus.DOWN, "the client is not running"),
    (_all_down, HealthStatus.DOWN, "every stream is down"),
    (
        lambda inputs: any(s is HealthStatus.STALE for s in inputs[1]),
        HealthStatus.STALE,
        "a stream is stale",
    ),
    (
        lambda inputs: any(s is not HealthStatus.HEALTHY for s in inputs[1]),
        HealthStatus.DEGRADED,
        "a stream is not healthy",
    ),
    (
        lambda inputs: any(s is not HealthStatus.HEALTHY for s in inputs[2]),
        HealthStatus.DEGRADED,
        "a connection is not healthy",
    ),
)
"""``(condition, status, reason)`` in order over ``(running, stream statuses, connection
statuses)``; the first that holds gives the overall status, else ``HEALTHY``."""


def overall_health(
    running: bool, streams: Sequence[HealthStatus], connections: Sequence[HealthStatus]
) -> tuple[HealthStatus, str | None]:
    """The client's overall status and its reason (rule 4)."""
    inputs: _Inputs = (running, streams, connections)
    for holds, status, reason in OVERALL_RULES:
        if holds(inputs):
            return status, reason
    return HealthStatus.HEALTHY, None


def connection_status(state: ConnectionState | None, polling: bool) -> HealthStatus:
    """A connection's status: open is ``HEALTHY``, polled ``DEGRADED``, else ``DOWN``."""
    if state is ConnectionState.OPEN:
        return HealthStatus.HEALTHY
    return HealthStatus.DEGRADED if polling else HealthStatus.DOWN
