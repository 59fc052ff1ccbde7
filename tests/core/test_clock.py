"""The clock offset estimate (round-trip midpoint, robust to slow answers) and lag windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from fastmd.core.clock import ClockOffset, LagStats, LagWindow

NOW = 1_767_000_000.0  # a wall-clock time in 2026
offsets = st.floats(-3600, 3600, allow_nan=False)
delays = st.floats(0.0001, 0.5, allow_nan=False)


def _sample(clock: ClockOffset, start: float, offset: float, up: float, down: float) -> bool:
    """A request leaving at our ``start``, reaching the server after ``up`` and coming back
    after ``down``, against a server clock ``offset`` ahead of ours."""
    return clock.add(start, start + up + offset, start + up + down)


@given(offset=offsets, delays=st.lists(delays, min_size=1, max_size=30))
def test_symmetric_delays_give_the_offset_within_the_half_round_trip(
    offset: float, delays: list[float]
) -> None:
    clock = ClockOffset()
    for index, delay in enumerate(delays):
        assert _sample(clock, NOW + index, offset, delay, delay)
    assert clock.offset is not None
    assert clock.uncertainty is not None
    assert abs(clock.offset - offset) <= 1e-6
    assert clock.uncertainty <= max(delays) + 1e-6  # float resolution of a 2026 timestamp


@given(offset=offsets, trips=st.lists(st.tuples(delays, delays), min_size=1, max_size=30))
def test_asymmetric_delays_stay_within_the_reported_uncertainty(
    offset: float, trips: list[tuple[float, float]]
) -> None:
    clock = ClockOffset(window=8, best=3)
    for index, (up, down) in enumerate(trips):
        _sample(clock, NOW + index, offset, up, down)
    assert clock.offset is not None
    assert clock.uncertainty is not None
    assert abs(clock.offset - offset) <= clock.uncertainty + 1e-6


@given(
    offset=offsets,
    good=st.lists(st.floats(0.001, 0.02), min_size=5, max_size=10),
    outliers=st.lists(
        st.tuples(st.floats(1, 30), st.floats(0, 1), st.integers(0, 100)), min_size=1, max_size=6
    ),
)
def test_a_few_huge_round_trips_do_not_move_the_estimate(
    offset: float, good: list[float], outliers: list[tuple[float, float, int]]
) -> None:
    clean = ClockOffset(window=16, best=5)
    noisy = ClockOffset(window=16, best=5)
    sequence: list[tuple[float, float]] = [(delay, delay) for delay in good]
    for rtt, share_up, position in outliers:
        # A slow answer whose delay sits anywhere in the round trip: its midpoint is far off.
        sequence.insert(position % (len(sequence) + 1), (rtt * share_up, rtt * (1 - share_up)))
    for index, delay in enumerate(good):
        _sample(clean, NOW + index, offset, delay, delay)
    for index, (up, down) in enumerate(sequence):
        _sample(noisy, NOW + index, offset, up, down)
    assert noisy.offset == pytest.approx(clean.offset, abs=1e-9)
    assert noisy.uncertainty == pytest.approx(clean.uncertainty, abs=1e-9)
    assert noisy.offset is not None
    assert abs(noisy.offset - offset) <= 1e-6


def test_before_any_sample_nothing_is_known_and_lag_is_uncorrected() -> None:
    clock = ClockOffset()
    assert (clock.offset, clock.rtt, clock.uncertainty, clock.samples) == (None, None, None, 0)
    assert clock.lag(1_000_000, 1_000.25) == pytest.approx(0.25)
    assert clock.exchange_time(5.0) == 5.0


def test_lag_and_exchange_time_are_corrected_by_the_offset() -> None:
    clock = ClockOffset()
    # The exchange runs 2 s ahead: an event stamped 2.1 s after our 1000.0 arrives at our 1000.3.
    assert clock.add(1000.0, 1002.05, 1000.1)
    assert clock.offset == pytest.approx(2.0)
    assert clock.rtt == pytest.approx(0.1)
    assert clock.uncertainty == pytest.approx(0.05)
    assert clock.lag(1_002_100, 1000.3) == pytest.approx(0.2)
    assert clock.exchange_time(1000.0) == pytest.approx(1002.0)


@pytest.mark.parametrize(
    ("sent", "server", "received"),
    [
        (math.nan, NOW, NOW),
        (NOW, math.inf, NOW),
        (NOW, NOW, -math.inf),
        (NOW, -1.0, NOW + 1),
        (-5.0, NOW, NOW),
        (NOW + 1, NOW, NOW),  # answered before it was asked: our clock stepped back
    ],
)
def test_nonsense_samples_are_rejected_and_counted(
    sent: float, server: float, received: float
) -> None:
    clock = ClockOffset()
    assert clock.add(NOW, NOW + 1.0, NOW + 0.01)
    assert not clock.add(sent, server, received)
    assert (clock.accepted, clock.rejected, clock.samples) == (1, 1, 1)
    assert clock.offset == pytest.approx(0.995)


def test_the_window_is_bounded_and_follows_a_changed_clock() -> None:
    clock = ClockOffset(window=6, best=3)
    for index in range(6):
        _sample(clock, NOW + index, 1.0, 0.001, 0.001)
    assert clock.offset == pytest.approx(1.0)
    for index in range(6, 9):  # the exchange's clock was stepped by 0.5 s: half the window moved
        _sample(clock, NOW + index, 1.5, 0.002, 0.002)
    assert clock.offset == pytest.approx(1.0)  # the old samples have shorter round trips
    for index in range(9, 12):
        _sample(clock, NOW + index, 1.5, 0.002, 0.002)
    assert clock.samples == 6
    assert clock.offset == pytest.approx(1.5)
    clock.reset()
    assert (clock.offset, clock.samples, clock.accepted) == (None, 0, 0)


@pytest.mark.parametrize(("window", "best"), [(0, 1), (4, 0), (4, 5)])
def test_bad_configuration_is_a_value_error(window: int, best: int) -> None:
    with pytest.raises(ValueError, match="ClockOffset"):
        ClockOffset(window=window, best=best)


def _nearest_rank(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


@given(
    size=st.integers(1, 50),
    values=st.lists(st.floats(-1, 60, allow_nan=False), min_size=1, max_size=200),
)
def test_lag_window_percentiles_are_those_of_the_last_samples(
    size: int, values: list[float]
) -> None:
    window = LagWindow(size)
    for value in values:
        window.add(value)
    kept = values[-size:]
    assert len(window) == len(kept)
    assert list(window) == kept
    assert window.count == len(values)
    assert window.stats() == LagStats(
        _nearest_rank(kept, 0.5), _nearest_rank(kept, 0.99), max(kept), len(kept)
    )
    assert (window.p50, window.p99, window.max) == (
        _nearest_rank(kept, 0.5),
        _nearest_rank(kept, 0.99),
        max(kept),
    )


def test_lag_window_empty_non_finite_cache_and_clear() -> None:
    window = LagWindow(4)
    assert window.stats() == LagStats(None, None, None, 0)
    window.add(math.nan)
    window.add(math.inf)
    assert (len(window), window.count) == (0, 0)
    window.add(0.5)
    first = window.stats()
    assert first == LagStats(0.5, 0.5, 0.5, 1)
    assert window.stats() is first  # cached until the next add
    window.add(2.0)
    assert window.stats() == LagStats(0.5, 2.0, 2.0, 2)
    window.clear()
    assert window.stats() == LagStats(None, None, None, 0)
    assert window.count == 2
    with pytest.raises(ValueError, match="LagWindow"):
        LagWindow(0)


def test_p99_of_a_hundred_samples_is_the_99th() -> None:
    window = LagWindow(1000)
    for millis in range(1, 101):
        window.add(millis / 1000)
    assert window.stats() == LagStats(0.05, 0.099, 0.1, 100)


def test_combined_windows_give_the_overall_figures() -> None:
    first, second, empty = LagWindow(8), LagWindow(8), LagWindow(8)
    for value in (0.1, 0.2, 0.3):
        first.add(value)
    for value in (0.4, 5.0):
        second.add(value)
    assert LagWindow.combined([first, second, empty]) == LagStats(0.3, 5.0, 5.0, 5)
    assert LagWindow.combined([]) == LagStats(None, None, None, 0)
