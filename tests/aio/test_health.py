"""client.health(), client.on_alert() and health-guided recovery against the simulator: one stream
muted among several on one connection goes STALE and comes back, recovery resubscribes, then
replaces the connection, then serves the stream by REST; alert episodes; lag on a skewed
exchange clock; stale_after validation; health of a closed client; the connections listing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from client_helpers import client_for, reports_of, text_frames, until

import fastmd
from fastmd import Alert, AlertKind, HealthConfig, HealthStatus
from fastmd.sim import Exchange

DEPTH = "btcusdt@depth@100ms"
TRADES = "btcusdt@trade"
QUOTES = "btcusdt@bookTicker"
QUIET = HealthConfig(recover=False, clock_sync=None)


def nothing(event: Any) -> None:
    pass


def stale_alerts(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.kind is AlertKind.STREAM_STALE]


def status_of(client: fastmd.Client, stream: str) -> HealthStatus:
    return client.health().streams[stream].status


async def flowing(client: fastmd.Client, *streams: str) -> None:
    """Every stream acknowledged and HEALTHY with events seen."""

    def ready() -> bool:
        health = client.health()
        return all(
            (s := health.streams.get(name)) is not None
            and s.status is HealthStatus.HEALTHY
            and s.last_event_age is not None
            # a fixed-cadence stream with its pace learned: staleness is acted on
            and (name != DEPTH or (s.stale_after == 1.5 and s.events >= 6))
            for name in streams
        )

    await until(ready, 10.0, f"{streams} flowing")


async def test_one_muted_stream_among_several_goes_stale_within_3_s_and_back_within_1_s() -> None:
    async with Exchange() as ex, client_for(ex, health=QUIET) as client:
        client.subscribe([DEPTH, TRADES, QUOTES], nothing)
        await flowing(client, DEPTH, TRADES, QUOTES)
        assert len(client.health().connections) == 1  # all three on one connection
        fault = ex.faults.mute_stream(DEPTH)
        muted = time.monotonic()
        await until(lambda: status_of(client, DEPTH) is HealthStatus.STALE, 5.0, "STALE")
        assert time.monotonic() - muted < 3.0
        health = client.health()
        assert health.status is HealthStatus.STALE
        assert health.reason == "a stream is stale"
        stale = health.streams[DEPTH]
        assert stale.reason is not None
        assert "silent for" in stale.reason
        assert stale.last_event_age is not None
        assert stale.last_event_age > 1.0
        for other in (TRADES, QUOTES):
            assert health.streams[other].status is HealthStatus.HEALTHY
        assert health.connections[0].status is HealthStatus.HEALTHY
        fault.clear()
        cleared = time.monotonic()
        await until(lambda: status_of(client, DEPTH) is HealthStatus.HEALTHY, 3.0, "HEALTHY")
        assert time.monotonic() - cleared < 1.0
        assert client.health().status is not HealthStatus.STALE


async def test_a_stale_stream_is_resubscribed_and_revived() -> None:
    config = HealthConfig(clock_sync=None)
    async with Exchange() as ex, client_for(ex, health=config) as client:
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        client.subscribe([DEPTH, TRADES], nothing)
        await flowing(client, DEPTH, TRADES)
        sent = text_frames(ex)
        ex.faults.mute_stream(DEPTH, until_resubscribed=True)
        await until(lambda: client.metrics().stale_resubscribes == 1, 6.0, "a resubscription")
        await until(lambda: status_of(client, DEPTH) is HealthStatus.HEALTHY, 6.0, "revived")
        await until(lambda: len(stale_alerts(alerts)) == 2, 1.0, "resolved")
        assert text_frames(ex) - sent >= 2  # UNSUBSCRIBE, then SUBSCRIBE
        metrics = client.metrics()
        assert (metrics.stale_replacements, metrics.handovers) == (0, 0)
        steps = [r for r in reports_of(client) if r.code == "stream_stale"]
        assert [r.context["action"] for r in steps] == ["resubscribe"]
        assert steps[0].context["stream"] == DEPTH
        stale = stale_alerts(alerts)
        assert [(a.firing, a.stream) for a in stale] == [(True, DEPTH), (False, DEPTH)]
        assert stale[0].since == stale[1].since
        assert client.health().streams[DEPTH].resubscribes == 1


async def test_a_stream_muted_on_its_connection_is_revived_by_replacing_the_connection() -> None:
    config = HealthConfig(clock_sync=None)
    async with Exchange() as ex, client_for(ex, health=config) as client:
        client.subscribe([DEPTH, TRADES], nothing)
        await flowing(client, DEPTH, TRADES)
        (conn,) = ex.connections
        ex.faults.mute_stream(DEPTH, connection=conn.id)  # a resubscription there won't help
        await until(lambda: client.metrics().stale_replacements == 1, 10.0, "a replacement")
        await until(lambda: client.metrics().handovers == 1, 10.0, "the handover")
        await until(lambda: status_of(client, DEPTH) is HealthStatus.HEALTHY, 6.0, "revived")
        metrics = client.metrics()
        assert metrics.stale_resubscribes == 1
        assert metrics.streams_not_revived == 0
        steps = [r.context["action"] for r in reports_of(client) if r.code == "stream_stale"]
        assert steps == ["resubscribe", "replace"]
        health = client.health()
        assert health.streams[DEPTH].replacements == 1
        assert health.streams[TRADES].status is HealthStatus.HEALTHY
        assert [c.streams for c in health.connections] == [(DEPTH, TRADES)]


async def test_a_stream_not_revived_is_reported_and_served_by_rest() -> None:
    ticker = "btcusdt@ticker"
    config = HealthConfig(clock_sync=None)
    async with Exchange() as ex, client_for(ex, health=config) as client:
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        client.subscribe(ticker, nothing, stale_after=0.6)
        client.subscribe(TRADES, nothing)
        await flowing(client, ticker, TRADES)
        fault = ex.faults.mute_stream(ticker)  # every connection, new ones too
        await until(lambda: client.metrics().streams_not_revived == 1, 15.0, "given up")
        given_up = [r for r in reports_of(client) if r.code == "stream_not_revived"]
        assert len(given_up) == 1
        assert given_up[0].severity is fastmd.Severity.ERROR
        assert "REST polling" in given_up[0].message
        await until(lambda: client.health().streams[ticker].rest_events > 0, 10.0, "REST")
        health = client.health()
        assert health.streams[ticker].status is HealthStatus.STALE
        assert any(a.kind is AlertKind.FALLBACK and a.firing for a in alerts)
        metrics = client.metrics()
        assert (metrics.stale_resubscribes, metrics.stale_replacements) == (1, 1)
        fault.clear()
        await until(lambda: status_of(client, ticker) is HealthStatus.HEALTHY, 6.0, "back")
        await until(
            lambda: any(a.kind is AlertKind.FALLBACK and not a.firing for a in alerts),
            3.0,
            "fallback resolved",
        )
        polled = client.health().streams[ticker].rest_events
        await asyncio.sleep(1.5)
        assert client.health().streams[ticker].rest_events == polled  # polling stopped


async def test_an_alert_fires_once_per_episode_and_resolves_once() -> None:
    async with Exchange() as ex, client_for(ex, health=QUIET) as client:
        alerts: list[Alert] = []
        remove = client.on_alert(alerts.append)
        client.subscribe([DEPTH, TRADES], nothing)
        await flowing(client, DEPTH, TRADES)
        fault = ex.faults.mute_stream(DEPTH)
        await until(lambda: len(stale_alerts(alerts)) == 1, 5.0, "the alert")
        await asyncio.sleep(1.5)  # six more ticks, still stale: no new alert
        (firing,) = stale_alerts(alerts)
        assert (firing.kind, firing.firing, firing.stream) == (AlertKind.STREAM_STALE, True, DEPTH)
        assert firing.severity is fastmd.Severity.WARNING
        assert DEPTH in firing.message
        assert abs(firing.since - time.time()) < 5
        assert client.health().alerts == (firing,)
        fault.clear()
        await until(lambda: len(stale_alerts(alerts)) == 2, 3.0, "resolved")
        resolved = stale_alerts(alerts)[1]
        assert (resolved.kind, resolved.firing, resolved.since) == (
            AlertKind.STREAM_STALE,
            False,
            firing.since,
        )
        # the muted diffs were lost: that is a gap episode of its own
        assert [(a.kind, a.firing) for a in alerts if a.kind is AlertKind.GAP] == [
            (AlertKind.GAP, True)
        ]
        assert AlertKind.STREAM_STALE not in {a.kind for a in client.health().alerts}
        remove()
        count = len(alerts)
        ex.faults.mute_stream(DEPTH)
        await until(lambda: status_of(client, DEPTH) is HealthStatus.STALE, 5.0, "STALE again")
        await asyncio.sleep(0.3)
        assert len(alerts) == count  # removed: not called
        assert client.metrics().alerts_fired == 3  # stale, gap, stale again


async def test_a_raising_alert_callback_is_reported() -> None:
    async with Exchange() as ex, client_for(ex, health=QUIET) as client:

        def bad(alert: Alert) -> None:
            raise RuntimeError("boom")

        client.on_alert(bad)
        client.subscribe([DEPTH, TRADES], nothing)
        await flowing(client, DEPTH, TRADES)
        ex.faults.mute_stream(DEPTH)
        reports = reports_of(client)
        await until(lambda: "callback_error" in reports.codes(), 5.0, "the report")
        (report,) = [r for r in reports if r.code == "callback_error"]
        assert isinstance(report.error, fastmd.CallbackError)
        assert isinstance(report.error.__cause__, RuntimeError)
        assert client.metrics().callback_errors == 1


async def test_lag_is_corrected_by_the_clock_offset_of_a_skewed_exchange() -> None:
    async with Exchange(clock_skew=30.0) as ex, client_for(ex) as client:
        client.subscribe([TRADES, QUOTES], nothing)
        assert client.health().clock_offset is None  # measuring starts with this call
        await until(lambda: client.health().clock_offset is not None, 5.0, "the offset")
        offset = client.health().clock_offset
        assert offset == pytest.approx(30.0, abs=0.5)

        def sampled() -> bool:
            lag = client.health().streams[TRADES].lag
            return lag is not None and lag.samples >= 5

        await until(sampled, 10.0, "lag samples")
        health = client.health()
        lag = health.streams[TRADES].lag
        assert lag is not None
        assert lag.p50 is not None
        assert lag.p99 is not None
        assert abs(lag.p50) < 0.5  # 30 s off without the correction
        assert lag.p99 < 1.0
        assert health.lag is not None
        assert health.lag.samples >= lag.samples
        assert health.streams[QUOTES].lag is None  # spot bookTicker has no event time
        assert health.streams[TRADES].status is HealthStatus.HEALTHY


async def test_a_lag_above_the_threshold_raises_lag_high() -> None:
    config = HealthConfig(clock_sync=None, lag_high=1.0, recover=False)
    async with Exchange(clock_skew=-3.0) as ex, client_for(ex, health=config) as client:
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        client.subscribe(TRADES, nothing)  # uncorrected: events look 3 s old
        await until(lambda: any(a.kind is AlertKind.LAG_HIGH for a in alerts), 10.0, "lag_high")
        (alert,) = [a for a in alerts if a.kind is AlertKind.LAG_HIGH]
        assert (alert.firing, alert.stream) == (True, TRADES)
        stream = client.health().streams[TRADES]
        assert stream.status is HealthStatus.DEGRADED
        assert stream.reason == "lag above 1 s"
        assert stream.lag is not None
        assert stream.lag.p50 is not None
        assert stream.lag.p50 > 2.5


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
async def test_stale_after_must_be_a_positive_finite_number(bad: float) -> None:
    async with Exchange() as ex, client_for(ex) as client:
        with pytest.raises(ValueError, match="stale_after"):
            client.subscribe(TRADES, nothing, stale_after=bad)
        with pytest.raises(TypeError, match="stale_after"):
            client.subscribe(TRADES, nothing, stale_after="1")  # type: ignore[arg-type]
        assert client.health().streams == {}  # nothing subscribed


async def test_stale_after_sets_the_streams_threshold() -> None:
    async with Exchange() as ex, client_for(ex, health=QUIET) as client:
        client.subscribe(TRADES, nothing, stale_after=0.4)
        client.subscribe(DEPTH, nothing)
        await flowing(client, TRADES, DEPTH)
        health = client.health()
        assert health.streams[TRADES].stale_after == 0.4
        assert health.streams[DEPTH].stale_after == 1.5
        assert health.streams[DEPTH].expected_interval == pytest.approx(0.1, rel=0.5)


async def test_health_of_a_client_not_started_and_closed() -> None:
    async with Exchange() as ex:
        client = client_for(ex, health=QUIET)
        health = client.health()
        assert health.status is HealthStatus.DOWN
        assert health.streams == {}
        assert health.connections == ()
        async with client:
            client.subscribe([TRADES, DEPTH], nothing)
            await flowing(client, TRADES, DEPTH)
            assert client.health().status is HealthStatus.HEALTHY
        closed = client.health()
        assert closed.status is HealthStatus.DOWN
        assert closed.reason == "the client is not running"
        assert set(closed.streams) == {TRADES, DEPTH}  # still listed, so the check below has some
        assert all(s.status is HealthStatus.DOWN for s in closed.streams.values())


async def test_connections_are_listed_with_their_streams() -> None:
    async with (
        Exchange() as ex,
        client_for(ex, health=QUIET, max_streams_per_connection=2) as client,
    ):
        streams = [TRADES, QUOTES, DEPTH]
        client.subscribe(streams, nothing)
        await flowing(client, *streams)
        connections = client.health().connections
        assert len(connections) == 2
        assert sorted(s for c in connections for s in c.streams) == sorted(streams)
        for connection in connections:
            assert connection.state is fastmd.ConnectionState.OPEN
            assert connection.status is HealthStatus.HEALTHY
            assert connection.uptime > 0
            assert connection.reconnects == 0
            assert connection.url.startswith(ex.ws_url)
            assert not connection.polling
        health = client.health()
        for name in streams:
            assert health.streams[name].connection in {c.url for c in connections}
            assert health.streams[name].rate > 0
            assert health.streams[name].events > 0


async def test_a_dropped_connection_makes_its_streams_down_then_healthy() -> None:
    async with Exchange() as ex, client_for(ex, health=QUIET, fallback=False) as client:
        client.subscribe([TRADES, DEPTH], nothing)
        await flowing(client, TRADES, DEPTH)
        refused = ex.faults.refuse_upgrades(503)
        ex.faults.drop_connections()
        await until(lambda: status_of(client, TRADES) is HealthStatus.DOWN, 5.0, "down")
        health = client.health()
        assert health.status is HealthStatus.DOWN
        assert health.reason == "every stream is down"
        assert health.streams[TRADES].reason == "its connection is down (reconnecting)"
        assert health.connections[0].status is HealthStatus.DOWN
        refused.clear()
        await flowing(client, TRADES, DEPTH)
        assert client.health().connections[0].reconnects == 1


async def test_unsubscribed_streams_leave_health_and_resolve_their_alerts() -> None:
    async with Exchange() as ex, client_for(ex, health=QUIET) as client:
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        sub = client.subscribe(DEPTH, nothing)
        client.subscribe(TRADES, nothing)
        await flowing(client, DEPTH, TRADES)
        ex.faults.mute_stream(DEPTH)
        await until(lambda: len(alerts) == 1, 5.0, "stale")
        sub.unsubscribe()
        await until(lambda: len(alerts) == 2, 3.0, "resolved")
        assert not alerts[1].firing
        assert [(a.kind, a.stream) for a in alerts] == [(AlertKind.STREAM_STALE, DEPTH)] * 2
        assert DEPTH not in client.health().streams


def test_the_health_option_must_be_a_health_config() -> None:
    with pytest.raises(TypeError, match="HealthConfig"):
        fastmd.Client(health={"stale_floor": 1.0})  # type: ignore[arg-type]


async def test_client_stream_takes_stale_after() -> None:
    async with Exchange() as ex, client_for(ex, health=QUIET) as client:
        with pytest.raises(ValueError, match="stale_after"):
            client.stream(TRADES, stale_after=-1.0)
        assert client.health().streams == {}
        events = client.stream(TRADES, stale_after=0.7)
        await flowing(client, TRADES)
        assert client.health().streams[TRADES].stale_after == 0.7
        events.close()


def reconnected(client: fastmd.Client, count: int) -> Callable[[], bool]:
    return lambda: client.metrics().reconnects == count


def client_wide(alerts: list[Alert], kind: AlertKind) -> list[tuple[bool, str | None]]:
    return [(a.firing, a.stream) for a in alerts if a.kind is kind]


async def test_decode_errors_and_slow_callbacks_raise_alerts_that_resolve_when_quiet() -> None:
    config = HealthConfig(clock_sync=None, recover=False, resolve_after=1.0)
    slow = [True]

    def callback(event: Any) -> None:
        if slow[0]:
            time.sleep(0.003)

    async with Exchange() as ex, client_for(ex, health=config, slow_callback=0.002) as client:
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        client.subscribe(TRADES, callback)
        await flowing(client, TRADES)
        await until(lambda: bool(client_wide(alerts, AlertKind.SLOW_CALLBACK)), 5.0, "slow")
        slow[0] = False
        ex.faults.malformed("not_json", stream=TRADES)
        await until(lambda: bool(client_wide(alerts, AlertKind.DECODE_ERRORS)), 5.0, "decode")
        await until(lambda: len(client_wide(alerts, AlertKind.DECODE_ERRORS)) == 2, 3.0, "quiet")
        await until(lambda: len(client_wide(alerts, AlertKind.SLOW_CALLBACK)) == 2, 3.0, "fast")
        assert client_wide(alerts, AlertKind.DECODE_ERRORS) == [(True, None), (False, None)]
        assert client_wide(alerts, AlertKind.SLOW_CALLBACK) == [(True, None), (False, None)]
        decode = next(a for a in alerts if a.kind is AlertKind.DECODE_ERRORS)
        assert decode.message == "1 undecodable frame(s)"


async def test_reconnects_in_a_row_raise_reconnect_storm_then_it_resolves() -> None:
    config = HealthConfig(clock_sync=None, reconnect_storm=2, reconnect_window=2.0)
    async with Exchange() as ex, client_for(ex, health=config) as client:
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        client.subscribe(TRADES, nothing)
        await flowing(client, TRADES)
        for reconnects in (1, 2):
            ex.faults.drop_connections()
            await until(reconnected(client, reconnects), 5.0, "reconnect")
        await until(lambda: bool(client_wide(alerts, AlertKind.RECONNECT_STORM)), 2.0, "storm")
        (firing,) = [a for a in alerts if a.kind is AlertKind.RECONNECT_STORM]
        assert firing.severity is fastmd.Severity.ERROR
        assert "2 reconnects within 2 s" in firing.message
        await until(lambda: len(client_wide(alerts, AlertKind.RECONNECT_STORM)) == 2, 4.0, "calm")


async def test_an_open_circuit_raises_circuit_open() -> None:
    breaker = fastmd.CircuitBreakerPolicy(failure_threshold=2, cooldown=0.5)
    config = HealthConfig(clock_sync=None, recover=False)
    async with (
        Exchange() as ex,
        client_for(ex, health=config, circuit_breaker=breaker, fallback=False) as client,
    ):
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        client.subscribe(TRADES, nothing)
        await flowing(client, TRADES)
        refused = ex.faults.refuse_upgrades(503)
        ex.faults.drop_connections()
        await until(lambda: bool(client_wide(alerts, AlertKind.CIRCUIT_OPEN)), 5.0, "open")
        assert client.health().status is HealthStatus.DOWN
        refused.clear()
        await until(lambda: len(client_wide(alerts, AlertKind.CIRCUIT_OPEN)) == 2, 5.0, "closed")
        await flowing(client, TRADES)


async def test_a_failing_health_tick_is_reported_once_and_health_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastmd.aio.pool import ConnectionPool

    real = ConnectionPool.troubles  # what every tick reads from the pool
    broken = [True]

    def troubles(self: ConnectionPool) -> tuple[list[str], list[str], int]:
        if broken[0]:
            raise RuntimeError("bug")
        return real(self)

    monkeypatch.setattr(ConnectionPool, "troubles", troubles)
    async with Exchange() as ex, client_for(ex, health=QUIET) as client:
        alerts: list[Alert] = []
        client.on_alert(alerts.append)
        client.subscribe([DEPTH, TRADES], nothing)
        reports = reports_of(client)
        await until(lambda: "internal_error" in reports.codes(), 5.0, "the report")
        await asyncio.sleep(0.6)  # more failing ticks: no more reports
        assert reports.codes().count("internal_error") == 1
        broken[0] = False
        await flowing(client, DEPTH, TRADES)
        ex.faults.mute_stream(DEPTH)
        await until(lambda: len(stale_alerts(alerts)) == 1, 5.0, "the tick works again")
