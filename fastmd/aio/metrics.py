"""``client.metrics()``: a snapshot of the client's health, counts and timings."""

from __future__ import annotations

from dataclasses import dataclass

from fastmd.core.stats import ConnectionStats, LatencyStats
from fastmd.core.status import Status

__all__ = ["Metrics"]


@dataclass(frozen=True, slots=True)
class Metrics:
    """A snapshot of the client's health (``client.metrics()``).

    Attributes:
        status: the client's :class:`Status`.
        connections: per-connection statistics.
        streams: subscribed streams.
        messages: data frames received, all connections.
        message_rate_1s: frames per second over the last second, all connections.
        message_rate_10s: frames per second over the last ten seconds.
        latency: ping round trips of the connection with the most samples.
        uptime: seconds since the client started.
        reconnects: reconnects of all connections.
        handovers: make-before-break connection swaps (serverShutdown, rotation, forced).
        errors: errors reported.
        gaps: losses detected (each reported through ``on_gap``).
        duplicates_dropped: events dropped because their id was already delivered.
        decode_errors: frames that could not be decoded.
        callback_errors: user callbacks that raised.
        callback_time_mean: mean seconds a callback run took (sampled).
        callback_time_max: the longest sampled callback run, seconds.
        slow_callbacks: sampled callback runs longer than ``slow_callback``.
        overflow_dropped: events dropped by full :meth:`Client.stream` queues.
        backfilled: events recovered from REST after a gap (instead of being lost).
        book_resyncs: local order books thrown away and synced again.
        backpressure_pauses: times callbacks ran past ``loop_budget`` in a loop turn, so events
            waited and the sockets stopped reading until the backlog was worked off.
        deferred_events: events that waited in that backlog (delivered later, in order).
        unchanged_skipped: events not delivered to ``only_changes`` subscriptions because nothing
            they compare had changed (sequence checks saw them; never gaps).
        throttle_conflated: events of ``throttle`` subscriptions replaced by a newer one within
            an interval (never gaps).
        unrouted_frames: data frames of streams no subscription wants, dropped (the last frames
            of a stream being unsubscribed, or streams the server should not send: those are
            reported as ``unrouted_frames`` and the connection is audited).
        subscription_drift: audits (``LIST_SUBSCRIPTIONS``) that found the server's
            subscriptions differing from the acknowledged ones (each reported and fixed).
        stale_resubscribes: stale streams resubscribed by health (``stream_stale`` reports).
        stale_replacements: connections replaced because a stream on them stayed stale.
        streams_not_revived: stale streams given up on the socket (``stream_not_revived``;
            served by REST polling where fallback is on).
        alerts_fired: alert episodes raised (``on_alert``).
    """

    status: Status
    connections: tuple[ConnectionStats, ...]
    streams: int
    messages: int
    message_rate_1s: float
    message_rate_10s: float
    latency: LatencyStats
    uptime: float
    reconnects: int
    handovers: int
    errors: int
    gaps: int
    duplicates_dropped: int
    decode_errors: int
    callback_errors: int
    callback_time_mean: float
    callback_time_max: float
    slow_callbacks: int
    overflow_dropped: int
    backfilled: int
    book_resyncs: int
    backpressure_pauses: int = 0
    deferred_events: int = 0
    unchanged_skipped: int = 0
    throttle_conflated: int = 0
    unrouted_frames: int = 0
    subscription_drift: int = 0
    stale_resubscribes: int = 0
    stale_replacements: int = 0
    streams_not_revived: int = 0
    alerts_fired: int = 0
