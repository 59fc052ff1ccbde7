"""Prometheus export: :class:`Collector`, a custom ``prometheus_client`` collector over a
:class:`fastmd.Client`'s :meth:`~fastmd.Client.health` and :meth:`~fastmd.Client.metrics`.

Nothing here is registered at import and nothing is global: the application registers a
collector in its own registry. The hot path makes no Prometheus call and takes no lock: every
scrape builds the metric families from one snapshot of the client's own counters, taken on the
client's event loop (the client is not thread-safe; ``prometheus_client``'s HTTP server scrapes
from a thread of its own)::

    from prometheus_client import CollectorRegistry, start_http_server
    import fastmd.prometheus

    registry = CollectorRegistry()
    registry.register(fastmd.prometheus.Collector(client, max_streams=200))
    start_http_server(9464, registry=registry)

``prometheus-client`` is the optional extra ``fastmd[prometheus]``; ``import fastmd`` never
imports it, and importing this module without it raises an :class:`ImportError` naming the extra.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector as _CollectorBase
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the package
    raise ImportError(
        "fastmd.prometheus needs prometheus-client: pip install 'fastmd[prometheus]'"
    ) from exc

from fastmd.core.clock import LagStats
from fastmd.core.health import HealthStatus
from fastmd.core.lifecycle import ConnectionState
from fastmd.core.status import Status
from fastmd.errors import DecodeErrorCategory, InvalidState

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from fastmd import Client, ErrorReport, Metrics
    from fastmd.core.health import Health

__all__ = ["OTHER_STREAMS", "Collector", "METRIC_NAMES"]

logger = logging.getLogger(__name__)

OTHER_STREAMS: Final = "_other"
"""The ``stream`` label of the series that aggregate the streams past ``max_streams``."""

DEFAULT_MAX_STREAMS: Final = 500

_DECODE_PREFIX: Final = "decode_"

METRIC_NAMES: Final[frozenset[str]] = frozenset(
    {
        "fastmd_health_status",
        "fastmd_client_status",
        "fastmd_streams",
        "fastmd_streams_aggregated",
        "fastmd_events_total",
        "fastmd_rest_events_total",
        "fastmd_gaps_total",
        "fastmd_missing_events_total",
        "fastmd_stream_healthy",
        "fastmd_stream_last_event_age_seconds",
        "fastmd_stream_lag_p50_seconds",
        "fastmd_stream_lag_p99_seconds",
        "fastmd_stream_lag_max_seconds",
        "fastmd_lag_p50_seconds",
        "fastmd_lag_p99_seconds",
        "fastmd_lag_max_seconds",
        "fastmd_messages_total",
        "fastmd_reconnects_total",
        "fastmd_handovers_total",
        "fastmd_decode_errors_total",
        "fastmd_callback_errors_total",
        "fastmd_slow_callbacks_total",
        "fastmd_duplicates_dropped_total",
        "fastmd_backfilled_events_total",
        "fastmd_overflow_dropped_events_total",
        "fastmd_book_resyncs_total",
        "fastmd_uptime_seconds",
        "fastmd_alerts_firing",
        "fastmd_connection_up",
        "fastmd_connection_ping_rtt_seconds",
        "fastmd_connection_uptime_seconds",
        "fastmd_connection_reconnects_total",
        "fastmd_connection_streams",
    }
)
"""Every metric name :class:`Collector` exposes (counters with their ``_total``)."""


def _labels(stream: str) -> list[str]:
    return [stream]


class Collector(_CollectorBase):
    """A ``prometheus_client`` collector exporting a client's health and counters.

    Register it in your own registry (``registry.register(Collector(client))``); each scrape
    calls :meth:`collect`, which reads one :meth:`fastmd.Client.health` and one
    :meth:`fastmd.Client.metrics` snapshot. The collector keeps no per-message state.

    Cardinality: each of the first ``max_streams`` streams (in the order they were first seen
    subscribed) gets series of its own (``stream="btcusdt@trade"``); every further stream is
    summed into ``stream="_other"`` (counters summed, ``fastmd_stream_healthy`` the minimum,
    the last event's age the maximum), and ``fastmd_streams_aggregated`` says how many streams
    that is. A stream keeps its own series while it stays subscribed; the slot of an
    unsubscribed stream goes to the next stream seen. As ``_other`` sums a changing set of
    streams, its counters can go down when a stream leaves it, which Prometheus reads as a
    counter reset.

    Args:
        client: the :class:`fastmd.Client` to export (started or not).
        max_streams: streams with series of their own (``0``: every stream in ``_other``).
        per_connection: export the per-connection series (``connection`` label: the index of
            the connection in :attr:`fastmd.Health.connections`).
        snapshot_timeout: seconds a scrape from another thread waits for the client's event
            loop to take the snapshot; past it the scrape yields nothing and a warning is
            logged (a loop blocked that long is news).

    Raises:
        ValueError: ``max_streams`` is negative or ``snapshot_timeout`` is not positive.
    """

    def __init__(
        self,
        client: Client,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        per_connection: bool = True,
        snapshot_timeout: float = 5.0,
    ) -> None:
        count: object = max_streams
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"max_streams must be an int >= 0, not {max_streams!r}")
        timeout: object = snapshot_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"snapshot_timeout must be > 0, not {snapshot_timeout!r}")
        self.client = client
        self.max_streams = max_streams
        self.per_connection = per_connection
        self.snapshot_timeout = float(snapshot_timeout)
        self._own: dict[str, None] = {}  # streams with series of their own, in order
        self._decode_errors = dict.fromkeys((c.value for c in DecodeErrorCategory), 0)
        # Decode errors by category come from the client's error reports (rare events,
        # counted on the loop's thread; a scrape reads them there too).
        self._removers = [client.on_error(self._on_report)]
        self._loop = _running_loop()  # the client's, when made on its loop (the usual way)

    def close(self) -> None:
        """Stop listening to the client's error reports (unregister the collector from its
        registry too)."""
        removers, self._removers = self._removers, []
        for remove in removers:
            remove()

    # -- listener: error reports (decode errors by category) ------------------------------------

    def _on_report(self, report: ErrorReport) -> None:
        code = report.code
        if code.startswith(_DECODE_PREFIX):
            category = code[len(_DECODE_PREFIX) :]
            self._decode_errors[category] = self._decode_errors.get(category, 0) + 1

    # -- scraping -----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The metric families of one snapshot (called by the registry on each scrape)."""
        families = self._families_on_loop()
        yield from families

    def describe(self) -> Iterator[Metric]:
        """Nothing: the registry then calls nothing at registration (the families depend on
        the client's streams and connections, known at scrape time only)."""
        return iter(())

    def _families_on_loop(self) -> list[Metric]:
        running = _running_loop()
        if running is not None and (self._loop is None or running is self._loop):
            return self._families()  # on the client's loop (it is not thread-safe: it lives there)
        done: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()

        def build() -> None:
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(self._families())
                except Exception as exc:  # handed to the scraping thread
                    done.set_exception(exc)

        try:
            self.client.call_soon_threadsafe(build)
        except (RuntimeError, InvalidState):
            # Never started, or its loop is gone: nothing moves, so reading here is safe.
            return self._families()
        try:
            return done.result(self.snapshot_timeout)
        except concurrent.futures.TimeoutError:
            done.cancel()
            logger.warning(
                "fastmd.prometheus: the client's event loop did not take a snapshot within "
                "%.3g s (blocked?); this scrape has no fastmd metrics",
                self.snapshot_timeout,
            )
            return []

    def _families(self) -> list[Metric]:
        health = self.client.health()
        metrics = self.client.metrics()
        return [
            *self._overall(health, metrics),
            *self._streams(health),
            *self._connections(health),
        ]

    # -- families -------------------------------------------------------------------------

    def _overall(self, health: Health, metrics: Metrics) -> Iterable[Metric]:
        yield _one_hot(
            "fastmd_health_status",
            "The client's health verdict: 1 for the current status, 0 for the others.",
            HealthStatus,
            health.status,
        )
        yield _one_hot(
            "fastmd_client_status",
            "The client's connection status (fastmd.Status): 1 for the current one.",
            Status,
            metrics.status,
        )
        by_status = GaugeMetricFamily(
            "fastmd_streams", "Subscribed streams by health status.", labels=["status"]
        )
        counts = dict.fromkeys(HealthStatus, 0)
        for stream in health.streams.values():
            counts[stream.status] += 1
        for verdict, count in counts.items():
            by_status.add_metric([verdict.value], float(count))
        yield by_status

        yield from _lag_families("fastmd_lag", "all streams", [], [([], health.lag)])
        counters: Sequence[tuple[str, str, int]] = (
            ("fastmd_messages", "Data frames received, all connections.", metrics.messages),
            ("fastmd_reconnects", "Reconnects of all connections.", metrics.reconnects),
            ("fastmd_handovers", "Make-before-break connection swaps.", metrics.handovers),
            ("fastmd_callback_errors", "User callbacks that raised.", metrics.callback_errors),
            (
                "fastmd_slow_callbacks",
                "Sampled callback runs longer than the client's slow_callback.",
                metrics.slow_callbacks,
            ),
            (
                "fastmd_duplicates_dropped",
                "Events dropped because their id was already delivered.",
                metrics.duplicates_dropped,
            ),
            (
                "fastmd_backfilled_events",
                "Events recovered from REST after a gap.",
                metrics.backfilled,
            ),
            (
                "fastmd_overflow_dropped_events",
                "Events dropped by full client.stream() queues (each reported as a gap).",
                metrics.overflow_dropped,
            ),
            ("fastmd_book_resyncs", "Local order books synced again.", metrics.book_resyncs),
        )
        for name, text, value in counters:
            yield CounterMetricFamily(name, text, value=float(value))
        decode = CounterMetricFamily(
            "fastmd_decode_errors",
            "Frames that could not be decoded, by category (counted since the collector "
            "was created; the all-time total is fastmd.Metrics.decode_errors).",
            labels=["category"],
        )
        for category, count in self._decode_errors.items():
            decode.add_metric([category], float(count))
        yield decode
        yield GaugeMetricFamily(
            "fastmd_uptime_seconds", "Seconds since the client started.", value=metrics.uptime
        )
        firing = GaugeMetricFamily(
            "fastmd_alerts_firing",
            "Alerts firing now (client.on_alert episodes raised and not yet resolved), by kind "
            "and severity.",
            labels=["kind", "severity"],
        )
        tally: dict[tuple[str, str], int] = {}
        for alert in health.alerts:
            key = (alert.kind.value, alert.severity.value)
            tally[key] = tally.get(key, 0) + 1
        for (kind, severity), count in sorted(tally.items()):
            firing.add_metric([kind, severity], float(count))
        yield firing

    def _streams(self, health: Health) -> Iterable[Metric]:
        streams = health.streams
        own = self._own
        for gone in [name for name in own if name not in streams]:
            del own[gone]
        for name in streams:
            if len(own) >= self.max_streams:
                break
            if name not in own:
                own[name] = None
        events = CounterMetricFamily(
            "fastmd_events",
            "Events delivered to the stream's callbacks, past the sequence checks (from the "
            "socket and from REST; only_changes and throttle filter after this count).",
            labels=["stream"],
        )
        rest = CounterMetricFamily(
            "fastmd_rest_events",
            "Of those, events delivered from REST (gap backfill and fallback polling).",
            labels=["stream"],
        )
        gaps = CounterMetricFamily(
            "fastmd_gaps", "Gaps detected (each reported through on_gap).", labels=["stream"]
        )
        missing = CounterMetricFamily(
            "fastmd_missing_events",
            "Events lost in gaps (reported missing), per stream.",
            labels=["stream"],
        )
        healthy = GaugeMetricFamily(
            "fastmd_stream_healthy",
            "1 when the stream's health status is HEALTHY, else 0 (for _other: 1 only if "
            "every aggregated stream is).",
            labels=["stream"],
        )
        age = GaugeMetricFamily(
            "fastmd_stream_last_event_age_seconds",
            "Seconds since the stream's last event (no sample before the first; for _other: "
            "the oldest).",
            labels=["stream"],
        )
        lags: list[tuple[list[str], LagStats | None]] = [
            (_labels(name), stream.lag) for name, stream in streams.items() if name in own
        ]
        rows = [(_labels(name), [stream]) for name, stream in streams.items() if name in own]
        others = [stream for name, stream in streams.items() if name not in own]
        if others:
            rows.append((_labels(OTHER_STREAMS), others))
        for labels, group in rows:  # one stream, or every stream past max_streams summed
            rest_events = sum(s.rest_events for s in group)
            events.add_metric(labels, float(sum(s.events for s in group) + rest_events))
            rest.add_metric(labels, float(rest_events))
            gaps.add_metric(labels, float(sum(s.gaps for s in group)))
            missing.add_metric(labels, float(sum(s.missing for s in group)))
            ok = all(s.status is HealthStatus.HEALTHY for s in group)
            healthy.add_metric(labels, 1.0 if ok else 0.0)
            ages = [s.last_event_age for s in group if s.last_event_age is not None]
            if ages:
                age.add_metric(labels, max(ages))
        other = len(others)
        yield from (events, rest, gaps, missing, healthy, age)
        yield GaugeMetricFamily(
            "fastmd_streams_aggregated",
            f"Streams past max_streams, summed into stream={OTHER_STREAMS!r}.",
            value=float(other),
        )
        lagged = [s.lag for s in others if s.lag is not None and s.lag.max is not None]
        if lagged:
            worst = max(lag.max for lag in lagged if lag.max is not None)
            samples = sum(lag.samples for lag in lagged)
            lags.append((_labels(OTHER_STREAMS), LagStats(None, None, worst, samples)))
        yield from _lag_families("fastmd_stream_lag", "per stream", ["stream"], lags)

    def _connections(self, health: Health) -> Iterable[Metric]:
        if not self.per_connection:
            return
        up = GaugeMetricFamily(
            "fastmd_connection_up",
            "1 while the connection's socket is open.",
            labels=["connection"],
        )
        rtt = GaugeMetricFamily(
            "fastmd_connection_ping_rtt_seconds",
            "The connection's last ping round trip.",
            labels=["connection"],
        )
        uptime = GaugeMetricFamily(
            "fastmd_connection_uptime_seconds",
            "Seconds the connection's current socket has been open (0 when not open).",
            labels=["connection"],
        )
        reconnects = CounterMetricFamily(
            "fastmd_connection_reconnects",
            "Reconnects of the connection (a replaced connection starts again at 0).",
            labels=["connection"],
        )
        streams = GaugeMetricFamily(
            "fastmd_connection_streams", "Streams the connection carries.", labels=["connection"]
        )
        for index, connection in enumerate(health.connections):
            labels = [str(index)]
            up.add_metric(labels, 1.0 if connection.state is ConnectionState.OPEN else 0.0)
            if connection.rtt is not None:
                rtt.add_metric(labels, connection.rtt)
            uptime.add_metric(labels, connection.uptime)
            reconnects.add_metric(labels, float(connection.reconnects))
            streams.add_metric(labels, float(len(connection.streams)))
        yield from (up, rtt, uptime, reconnects, streams)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _one_hot(
    name: str, text: str, members: Iterable[HealthStatus | Status], current: object
) -> GaugeMetricFamily:
    """A gauge with a ``status`` label per member of an enum: 1 for ``current``, 0 for the rest."""
    family = GaugeMetricFamily(name, text, labels=["status"])
    for member in members:
        family.add_metric([member.value], 1.0 if member is current else 0.0)
    return family


def _lag_families(
    prefix: str, scope: str, labels: list[str], rows: list[tuple[list[str], LagStats | None]]
) -> Iterator[Metric]:
    """Three gauges, ``<prefix>_p50_seconds``, ``_p99_seconds`` and ``_max_seconds``: a gauge
    with a ``quantile`` label is reserved for summaries, and the client keeps percentiles over
    a window of samples, not a summary's running sum."""
    for part, what in (("p50", "median"), ("p99", "99th percentile"), ("max", "maximum")):
        family = GaugeMetricFamily(
            f"{prefix}_{part}_seconds",
            f"Exchange event time to callback, {scope}, corrected by the clock offset to the "
            f"exchange: the {what} over the last sampled events (no sample before the first, "
            "nor for streams without an event time).",
            labels=labels,
        )
        for values, lag in rows:
            value = None if lag is None else getattr(lag, part)
            if value is not None and math.isfinite(value):
                family.add_metric(values, value)
        yield family
