"""fastmd.core.health: expected intervals, staleness with an injected clock and plain counts,
recovery steps, alert episodes and the overall status table (docs/monitoring.md)."""

from __future__ import annotations

import math

import pytest

from fastmd import AlertKind, HealthConfig, HealthStatus, Severity
from fastmd.core.clock import LagStats
from fastmd.core.health import (
    OVERALL_RULES,
    AlertBook,
    Link,
    Recent,
    RecoveryAction,
    StreamWatch,
    Window,
    check_stale_after,
    connection_status,
    expected_interval,
    lag_stats,
    overall_health,
    shift_lag,
)
from fastmd.core.lifecycle import ConnectionState
from fastmd.core.streams import Venue, parse_stream

CONFIG = HealthConfig()


def watch(
    name: str,
    venue: Venue = "binance-spot",
    stale_after: float | None = None,
    config: HealthConfig = CONFIG,
) -> StreamWatch:
    w = StreamWatch(name, parse_stream(name, venue), venue, config, stale_after, 0.0)
    w.link(0.0, Link.UP, "conn-1")
    return w


def feed(w: StreamWatch, start: float, end: float, every: float, tick: float = 0.25) -> float:
    """Events every ``every`` seconds from ``start`` to ``end``, observed each ``tick``;
    returns the last tick time."""
    now = start
    count = w.count
    next_event = start
    while now <= end + 1e-9:
        while next_event <= now + 1e-9:
            count += 1
            next_event += every
        w.observe(now, count)
        w.recovery(now)
        now += tick
    return now - tick


@pytest.mark.parametrize(
    ("name", "venue", "expected"),
    [
        ("btcusdt@depth@100ms", "binance-spot", 0.1),
        ("btcusdt@depth", "binance-spot", 1.0),
        ("btcusdt@depth", "binance-usdm", 0.25),
        ("btcusdt@depth20@100ms", "binance-spot", 0.1),
        ("btcusdt@depth5", "binance-spot", 1.0),
        ("btcusdt@depth@500ms", "binance-usdm", 0.5),
        ("btcusdt@kline_1m", "binance-spot", 2.0),
        ("btcusdt@kline_1s", "binance-spot", 1.0),
        ("btcusdt@kline_1m", "binance-usdm", 0.25),
        ("btcusdt@markPrice", "binance-usdm", 3.0),
        ("btcusdt@markPrice@1s", "binance-usdm", 1.0),
        ("!markPrice@arr", "binance-usdm", 3.0),
        ("btcusdt@ticker", "binance-spot", 1.0),
        ("btcusdt@miniTicker", "binance-usdm", 2.0),
        ("btcusdt@avgPrice", "binance-spot", 1.0),
        ("!miniTicker@arr", "binance-spot", 1.0),
        ("btcusdt@trade", "binance-spot", None),
        ("btcusdt@aggTrade", "binance-usdm", None),
        ("btcusdt@bookTicker", "binance-spot", None),
        ("btcusdt@forceOrder", "binance-usdm", None),
        ("!forceOrder@arr", "binance-usdm", None),
    ],
)
def test_expected_intervals_follow_the_protocol_cadences(
    name: str, venue: Venue, expected: float | None
) -> None:
    assert expected_interval(parse_stream(name, venue), venue) == expected


def test_a_100ms_stream_that_stops_is_stale_within_3_s_and_healthy_again_within_1_s() -> None:
    w = watch("btcusdt@depth@100ms")
    last = feed(w, 0.0, 10.0, 0.1)
    assert w.status(last) == (HealthStatus.HEALTHY, None)
    assert w.learned_interval() == pytest.approx(0.1, rel=0.2)
    # silence: judged at each tick
    now = last
    stale_at = None
    while now < last + 5:
        now += 0.25
        w.observe(now, w.count)
        if w.is_stale(now):
            stale_at = now
            break
    assert stale_at is not None
    assert stale_at - last <= 3.0
    status, reason = w.status(stale_at)
    assert status is HealthStatus.STALE
    assert reason is not None
    assert "silent for" in reason
    assert "expected every 0.1" in reason
    # events again: the next tick sees them
    w.observe(stale_at + 0.25, w.count + 2)
    assert w.status(stale_at + 0.25)[0] is HealthStatus.HEALTHY


def test_the_threshold_is_the_cadence_times_the_factor_with_a_floor() -> None:
    depth = watch("btcusdt@depth@100ms")
    feed(depth, 0.0, 3.0, 0.1)
    assert depth.threshold() == CONFIG.stale_floor
    kline = watch("btcusdt@kline_1m")
    feed(kline, 0.0, 60.0, 2.0)
    assert kline.threshold() == pytest.approx(2.0 * CONFIG.cadence_factor * 10 / 3, rel=0.1)
    mark = watch("btcusdt@markPrice", "binance-usdm")
    assert mark.cadence == 3.0
    feed(mark, 0.0, 90.0, 3.0)
    assert mark.threshold() == pytest.approx(30.0, rel=0.1)  # 10 learned intervals


def test_a_cadence_stream_without_an_event_yet_is_as_patient_as_an_event_driven_one() -> None:
    # a diff stream pushes only when its book changes: an idle or illiquid one may not tick
    assert watch("btcusdt@depth@100ms").threshold() == CONFIG.event_floor
    assert watch("btcusdt@markPrice", "binance-usdm").threshold() == CONFIG.event_floor
    first = watch("btcusdt@depth@100ms")
    first.observe(0.25, 1)
    assert first.threshold() == CONFIG.stale_floor  # it ticked: its cadence rules
    slow = watch("btcusdt@depth@100ms")
    last = feed(slow, 0.0, 200.0, 2.5)  # an illiquid book: a diff every 2.5 s
    assert slow.threshold() == pytest.approx(25.0, rel=0.15)
    assert not slow.is_stale(last + 20.0)


def test_stale_after_overrides_the_threshold() -> None:
    w = watch("btcusdt@trade", stale_after=0.5)
    assert w.threshold() == 0.5
    w.observe(0.25, 1)
    w.observe(0.5, 1)
    assert not w.is_stale(0.5)
    assert w.is_stale(0.8)


def test_event_driven_streams_learn_their_interval_with_a_floor() -> None:
    w = watch("btcusdt@trade")
    assert w.threshold() is None  # nothing learned: silence is no evidence
    feed(w, 0.0, 3.0, 0.1)
    assert w.learned_interval() is not None
    # busy stream: the floor keeps a short lull from being an alarm
    assert w.threshold() == CONFIG.event_floor
    assert not w.is_stale(3.0 + CONFIG.event_floor - 0.5)
    assert w.is_stale(3.0 + CONFIG.event_floor + 0.5)


def test_a_quiet_event_driven_stream_gets_a_longer_threshold() -> None:
    w = watch("btcusdt@trade")
    last = feed(w, 0.0, 120.0, 4.0)
    threshold = w.threshold()
    assert threshold is not None
    assert threshold > 30.0
    assert not w.is_stale(last + 25.0)


def test_sparse_streams_are_never_judged_by_silence() -> None:
    w = watch("btcusdt@forceOrder", "binance-usdm")
    feed(w, 0.0, 100.0, 1.0)
    assert w.threshold() is None
    assert not w.is_stale(10_000.0)


def test_a_stale_silence_is_not_learned_as_the_usual_interval() -> None:
    w = watch("btcusdt@depth@100ms")
    last = feed(w, 0.0, 5.0, 0.1)
    before = w.learned_interval()
    w.observe(last + 4.0, w.count)
    w.recovery(last + 4.0)  # stale: a step is taken
    w.observe(last + 4.25, w.count + 1)
    assert w.learned_interval() == before


def test_silence_counts_from_when_the_stream_became_judged() -> None:
    w = StreamWatch(
        "btcusdt@depth@100ms",
        parse_stream("btcusdt@depth@100ms", "binance-spot"),
        "binance-spot",
        CONFIG,
        None,
        0.0,
    )
    w.link(0.0, Link.PENDING, "c")
    assert not w.is_stale(100.0)  # not acknowledged: not judged
    assert w.status(100.0)[0] is HealthStatus.DEGRADED
    w.link(100.0, Link.UP, "c")
    assert not w.is_stale(109.0)
    assert w.is_stale(110.5)  # no event at all since it was acknowledged
    assert w.status(110.5)[1] == "no event yet, expected every 0.1 s"
    # moved to another connection: judged afresh
    w.link(110.5, Link.UP, "d")
    assert not w.is_stale(111.0)


@pytest.mark.parametrize(
    ("link", "status"),
    [
        (Link.DOWN, HealthStatus.DOWN),
        (Link.CONNECTING, HealthStatus.DOWN),
        (Link.UNPLACED, HealthStatus.DOWN),
        (Link.POLLING, HealthStatus.DEGRADED),
        (Link.PENDING, HealthStatus.DEGRADED),
    ],
)
def test_a_stream_without_a_live_link_is_down_or_degraded(link: Link, status: HealthStatus) -> None:
    w = watch("btcusdt@depth@100ms")
    w.link(1.0, link, None)
    assert w.status(100.0) == (status, link.value)


def test_a_degraded_reason_from_the_shell_shows_when_not_stale() -> None:
    w = watch("btcusdt@depth@100ms")
    feed(w, 0.0, 2.0, 0.1)
    assert w.status(2.0, degraded="lag above 1 s") == (HealthStatus.DEGRADED, "lag above 1 s")


def test_recovery_resubscribes_then_replaces_then_gives_up() -> None:
    w = watch("btcusdt@depth@100ms")
    last = feed(w, 0.0, 5.0, 0.1)
    steps: list[tuple[float, RecoveryAction]] = []
    now = last
    while now < last + 10:
        now += 0.25
        w.observe(now, w.count)
        step = w.recovery(now)
        if step is not RecoveryAction.NOTHING:
            steps.append((now, step))
        # the episode never ends while silent: status stays STALE between the steps
        if now - last > 2.0:
            assert w.status(now)[0] is HealthStatus.STALE
    assert [step for _, step in steps] == [
        RecoveryAction.RESUBSCRIBE,
        RecoveryAction.REPLACE,
        RecoveryAction.GIVE_UP,
    ]
    # each step gets the stream's whole threshold to work
    assert steps[1][0] - steps[0][0] >= w.threshold()  # type: ignore[operator]
    assert (w.resubscribes, w.replacements) == (1, 1)
    # events again: the episode ends once
    w.observe(now + 0.25, w.count + 3)
    assert w.recovery(now + 0.25) is RecoveryAction.RECOVERED
    assert w.recovery(now + 0.5) is RecoveryAction.NOTHING
    assert w.status(now + 0.5)[0] is HealthStatus.HEALTHY


def test_a_resubscription_that_works_ends_the_episode() -> None:
    w = watch("btcusdt@depth@100ms")
    last = feed(w, 0.0, 5.0, 0.1)
    now = last
    while w.recovery(now) is not RecoveryAction.RESUBSCRIBE:
        now += 0.25
        w.observe(now, w.count)
    w.link(now + 0.1, Link.PENDING, "conn-1")
    assert w.status(now + 0.1)[0] is HealthStatus.DEGRADED
    w.link(now + 0.3, Link.UP, "conn-1")
    assert w.troubled(now + 0.3)  # acknowledged, no event yet: the episode goes on
    w.observe(now + 0.5, w.count + 2)
    assert not w.troubled(now + 0.5)
    assert w.recovery(now + 0.5) is RecoveryAction.RECOVERED


def test_recovery_can_be_switched_off() -> None:
    w = watch("btcusdt@depth@100ms", config=HealthConfig(recover=False))
    last = feed(w, 0.0, 3.0, 0.1)
    assert w.recovery(last + 5) is RecoveryAction.NOTHING
    assert w.status(last + 5)[0] is HealthStatus.STALE


def test_rate_is_events_per_second_over_ten_seconds() -> None:
    w = watch("btcusdt@trade")
    last = feed(w, 0.0, 20.0, 0.1)
    assert w.rate(last) == pytest.approx(10.0, rel=0.1)
    assert w.age(last) == pytest.approx(0.0, abs=0.25)


def test_an_alert_fires_once_and_resolves_once_per_episode() -> None:
    book = AlertBook()
    first = book.update(AlertKind.STREAM_STALE, "a", True, 100.0, Severity.WARNING, "a: silent")
    assert first is not None
    assert first.firing
    assert first.since == 100.0
    for wall in (101.0, 102.0, 103.0):
        assert book.update(AlertKind.STREAM_STALE, "a", True, wall) is None
    assert book.firing() == (first,)
    resolved = book.update(AlertKind.STREAM_STALE, "a", False, 104.0)
    assert resolved is not None
    assert not resolved.firing
    assert (resolved.since, resolved.at, resolved.message) == (100.0, 104.0, "a: silent")
    assert book.update(AlertKind.STREAM_STALE, "a", False, 105.0) is None
    assert book.firing() == ()


def test_alerts_of_a_stream_resolve_when_it_goes() -> None:
    book = AlertBook()
    book.update(AlertKind.STREAM_STALE, "a", True, 1.0)
    book.update(AlertKind.GAP, "a", True, 1.0)
    book.update(AlertKind.GAP, "b", True, 1.0)
    resolved = book.resolve_stream("a", 2.0)
    assert {(a.kind, a.firing) for a in resolved} == {
        (AlertKind.STREAM_STALE, False),
        (AlertKind.GAP, False),
    }
    assert book.streams() == {"b"}


def test_alert_kinds_are_the_contract_names() -> None:
    assert {kind.value for kind in AlertKind} >= {
        "stream_stale", "lag_high", "reconnect_storm", "circuit_open", "fallback", "gap",
        "decode_errors", "slow_callback",
    }  # fmt: skip
    assert AlertKind("gap") is AlertKind.GAP


def test_recent_holds_after_each_increase() -> None:
    recent = Recent(10.0)
    assert not recent.observe(0.0, 0)
    assert recent.observe(1.0, 1)
    assert recent.observe(10.5, 1)
    assert not recent.observe(11.5, 1)
    assert recent.observe(12.0, 3)


def test_window_counts_increases_within_its_span() -> None:
    window = Window(60.0)
    assert window.observe(0.0, 0) == 0
    assert window.observe(1.0, 2) == 2
    assert window.observe(30.0, 3) == 3
    assert window.observe(61.5, 3) == 1


@pytest.mark.parametrize(
    ("running", "streams", "connections", "expected"),
    [
        (False, [HealthStatus.HEALTHY], [HealthStatus.HEALTHY], HealthStatus.DOWN),
        (True, [HealthStatus.DOWN, HealthStatus.DOWN], [HealthStatus.DOWN], HealthStatus.DOWN),
        (True, [HealthStatus.DOWN, HealthStatus.STALE], [], HealthStatus.STALE),
        (True, [HealthStatus.HEALTHY, HealthStatus.STALE], [], HealthStatus.STALE),
        (True, [HealthStatus.HEALTHY, HealthStatus.DOWN], [], HealthStatus.DEGRADED),
        (True, [HealthStatus.DEGRADED], [HealthStatus.HEALTHY], HealthStatus.DEGRADED),
        (True, [HealthStatus.HEALTHY], [HealthStatus.DOWN], HealthStatus.DEGRADED),
        (True, [HealthStatus.HEALTHY], [HealthStatus.HEALTHY], HealthStatus.HEALTHY),
        (True, [], [], HealthStatus.HEALTHY),
    ],
)
def test_overall_status_table(
    running: bool,
    streams: list[HealthStatus],
    connections: list[HealthStatus],
    expected: HealthStatus,
) -> None:
    status, reason = overall_health(running, streams, connections)
    assert status is expected
    assert (reason is None) == (status is HealthStatus.HEALTHY)


def test_the_overall_rules_are_ordered_worst_first() -> None:
    statuses = [status for _, status, _ in OVERALL_RULES]
    order = list(HealthStatus)
    assert [order.index(s) for s in statuses] == sorted(
        (order.index(s) for s in statuses), reverse=True
    )


def test_connection_status() -> None:
    assert connection_status(ConnectionState.OPEN, False) is HealthStatus.HEALTHY
    assert connection_status(ConnectionState.RECONNECTING, True) is HealthStatus.DEGRADED
    assert connection_status(ConnectionState.CIRCUIT_OPEN, False) is HealthStatus.DOWN
    assert connection_status(None, False) is HealthStatus.DOWN


def test_lag_is_shifted_by_the_clock_offset() -> None:
    raw = LagStats(-4.99, -4.9, -4.8, 10)
    shifted = shift_lag(raw, 5.0)
    assert (shifted.p50, shifted.p99, shifted.max) == pytest.approx((0.01, 0.1, 0.2))
    assert shifted.samples == 10
    assert shift_lag(raw, None) is raw
    empty = LagStats(None, None, None, 0)
    assert shift_lag(empty, 1.0) is empty


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, -0.5])
def test_stale_after_must_be_a_positive_finite_number(value: float) -> None:
    with pytest.raises(ValueError, match="stale_after"):
        check_stale_after(value)


@pytest.mark.parametrize("value", ["1", True, [1]])
def test_stale_after_must_be_a_number(value: object) -> None:
    with pytest.raises(TypeError, match="stale_after"):
        check_stale_after(value)


def test_stale_after_accepts_none_and_numbers() -> None:
    assert check_stale_after(None) is None
    assert check_stale_after(2) == 2.0
    assert check_stale_after(0.25) == 0.25


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0},
        {"stale_floor": -1.0},
        {"lag_high": math.inf},
        {"learn_events": 0},
        {"reconnect_storm": 1.5},
        {"clock_sync": 0},
        {"resolve_after": math.nan},
    ],
)
def test_health_config_refuses_bad_thresholds(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        HealthConfig(**options)  # type: ignore[arg-type]


def test_health_config_refuses_wrong_types() -> None:
    with pytest.raises(TypeError):
        HealthConfig(stale_floor="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        HealthConfig(recover=1)  # type: ignore[arg-type]
    assert HealthConfig(clock_sync=None).clock_sync is None


def test_lag_stats_are_nearest_rank_percentiles() -> None:
    samples = [float(i) for i in range(1, 101)]  # 1..100
    stats = lag_stats(reversed(samples))
    assert (stats.p50, stats.p99, stats.max, stats.samples) == (50.0, 99.0, 100.0, 100)
    assert lag_stats([0.2]) == LagStats(0.2, 0.2, 0.2, 1)
    assert lag_stats([]) == LagStats(None, None, None, 0)


def test_a_stream_that_just_started_is_reported_stale_but_not_acted_on() -> None:
    w = watch("btcusdt@depth@100ms")
    w.observe(0.25, 1)  # one event: an idle book may look like this
    w.observe(2.0, 1)
    assert w.is_stale(2.0)
    assert w.status(2.0)[0] is HealthStatus.STALE
    assert w.recovery(2.0) is RecoveryAction.NOTHING  # its pace is not known yet
    never = watch("btcusdt@depth@100ms")  # nothing ever delivered: acted on (after 10 s)
    assert never.recovery(CONFIG.event_floor + 1) is RecoveryAction.RESUBSCRIBE
    told = watch("btcusdt@depth@100ms", stale_after=1.0)
    told.observe(0.25, 1)
    assert told.recovery(2.0) is RecoveryAction.RESUBSCRIBE


def test_a_long_silence_does_not_move_the_learned_interval() -> None:
    w = watch("btcusdt@depth@100ms")
    last = feed(w, 0.0, 5.0, 0.1)
    before = w.learned_interval()
    w.observe(last + 4.0, w.count + 1)  # a mute ended
    assert w.learned_interval() == before
