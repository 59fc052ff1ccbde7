"""Request weights and snapshot sizing (binance-protocol.md §6, §7), with plain values."""

from __future__ import annotations

import pytest

from fastmd.core.weights import (
    ban_seconds,
    depth_limits,
    depth_weight,
    request_weight,
    seconds_to_minute_turn,
    snapshot_size,
)


@pytest.mark.parametrize(
    ("venue", "limit", "weight"),
    [
        ("binance-spot", 5, 5), ("binance-spot", 100, 5), ("binance-spot", 101, 25),
        ("binance-spot", 500, 25), ("binance-spot", 1000, 50), ("binance-spot", 5000, 250),
        ("binance-usdm", 50, 2), ("binance-usdm", 100, 5), ("binance-usdm", 500, 10),
        ("binance-usdm", 1000, 20),
    ],
)  # fmt: skip
def test_depth_weight_follows_the_venue_tiers(venue: str, limit: int, weight: int) -> None:
    assert depth_weight(venue, limit) == weight  # type: ignore[arg-type]


def test_request_weight_defaults_and_symbol_scope() -> None:
    assert request_weight("binance-spot", "depth", {}) == 5  # default limit 100
    assert request_weight("binance-usdm", "depth", {}) == 10  # default limit 500
    assert request_weight("binance-spot", "depth", {"limit": "junk"}) == 5
    assert request_weight("binance-spot", "ticker/24hr", {"symbol": "BTCUSDT"}) == 2
    assert request_weight("binance-spot", "ticker/24hr", {}) == 80
    assert request_weight("binance-spot", "ticker/24hr", {"symbols": ",".join("A" * 21)}) == 40
    assert request_weight("binance-usdm", "ticker/bookTicker", {}) == 5
    assert request_weight("binance-usdm", "klines", {"limit": "1500"}) == 10
    assert request_weight("binance-spot", "exchangeInfo", {}) == 20


def test_depth_limits_per_venue() -> None:
    assert depth_limits("binance-spot") == (100, 500, 1000, 5000)
    assert depth_limits("binance-usdm") == (100, 500, 1000)


def test_snapshot_size_halves_an_equal_share_of_the_free_weight() -> None:
    assert snapshot_size("binance-spot", None, 3000, 1) == 5000  # 250 <= 3000 / 1 / 2
    assert snapshot_size("binance-spot", None, 3000, 24) == 1000  # 50 <= 62.5 < 250
    assert snapshot_size("binance-spot", None, 100, 1) == 1000  # 50 <= 50: the bound is inclusive
    assert snapshot_size("binance-spot", None, 90, 1) == 500  # 25 <= 45 < 50
    assert snapshot_size("binance-spot", None, 0, 1) == 100  # nothing fits: the smallest
    assert snapshot_size("binance-spot", None, -40, 0) == 100  # overspent window, no books yet


def test_snapshot_size_never_exceeds_the_wanted_depth() -> None:
    assert snapshot_size("binance-spot", 20, 6000, 1) == 100  # the smallest still covers 20
    assert snapshot_size("binance-spot", 500, 6000, 1) == 500
    assert snapshot_size("binance-spot", 700, 6000, 1) == 500
    assert snapshot_size("binance-usdm", None, 2400, 1) == 1000  # futures tops out at 1000
    assert snapshot_size("binance-usdm", None, 2400, 100) == 500  # 10 <= 12 < 20


def test_ban_seconds_only_for_the_stop_statuses() -> None:
    assert ban_seconds(429, 12.0) == 12.0
    assert ban_seconds(418, None) == 60.0  # Retry-After left out: a minute
    assert ban_seconds(418, 0.0) == 0.0  # an explicit zero is honoured
    assert ban_seconds(500, 30.0) is None
    assert ban_seconds(400, None) is None


def test_seconds_to_minute_turn_counts_to_the_next_wall_clock_minute() -> None:
    assert seconds_to_minute_turn(1_700_000_040.0) == 60.0  # on the turn: a full minute
    assert seconds_to_minute_turn(1_700_000_085.5) == pytest.approx(14.5)


def test_headroom_rules() -> None:
    from fastmd.core.weights import near_limit, usable_weight

    assert usable_weight(6000) == 5400
    assert usable_weight(1) == 1
    assert not near_limit(None, 250, 6000)  # unknown use: not near
    assert not near_limit(5000, 250, 6000)  # 5250 <= 5400
    assert near_limit(5200, 250, 6000)  # 5450 > 5400


def test_near_limit_is_past_the_usable_weight() -> None:
    from fastmd.core.weights import near_limit, usable_weight

    for limit in (1, 2, 7, 1199, 1200, 6000):
        usable = usable_weight(limit)
        assert not near_limit(usable - 1, 1, limit)
        assert near_limit(usable, 1, limit)
