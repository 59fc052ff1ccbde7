"""The REST recovery rules: backfillable kinds, poll plans and their weights, poll pacing,
unfilled ranges."""

from __future__ import annotations

import pytest

from fastmd.core.recovery import (
    BACKFILL_ON_REQUEST,
    BACKFILLABLE,
    FALLBACK_SHARE,
    MIN_POLL_INTERVAL,
    needs_api_key,
    poll_interval,
    poll_plan,
    poll_weight,
    unfilled,
)
from fastmd.core.sequence import Gap, GapReason
from fastmd.core.streams import StreamKind, parse_stream


@pytest.mark.parametrize(
    ("venue", "stream", "weight"),
    [
        ("binance-spot", "btcusdt@aggTrade", 4), ("binance-spot", "btcusdt@trade", 25),
        ("binance-spot", "btcusdt@kline_1m", 2), ("binance-spot", "btcusdt@ticker", 2),
        ("binance-spot", "btcusdt@bookTicker", 5), ("binance-spot", "btcusdt@depth20", 5),
        ("binance-spot", "btcusdt@avgPrice", 2), ("binance-spot", "btcusdt@depth", 0),
        ("binance-usdm", "btcusdt@aggTrade", 20), ("binance-usdm", "btcusdt@markPrice", 1),
        ("binance-usdm", "btcusdt@depth20", 0), ("binance-usdm", "btcusdt@kline_1m", 1),
    ],
)  # fmt: skip
def test_poll_weight_prices_the_rest_round_that_stands_in(
    venue: str, stream: str, weight: int
) -> None:
    assert poll_weight(venue, parse_stream(stream, venue)) == weight  # type: ignore[arg-type]


def test_plans_name_the_request_and_its_limit() -> None:
    plan = poll_plan("binance-spot", parse_stream("btcusdt@depth10"))
    assert plan is not None
    assert (plan.endpoint, plan.limit, plan.weight) == ("depth", 10, 5)
    kline = poll_plan("binance-usdm", parse_stream("btcusdt@kline_1m", "binance-usdm"))
    assert kline is not None
    assert (kline.endpoint, kline.limit) == ("klines", 2)
    assert poll_plan("binance-spot", parse_stream("!miniTicker@arr")) is None
    assert poll_plan("binance-spot", parse_stream("btcusdt@depth@100ms")) is None


def test_backfillable_kinds() -> None:
    assert {StreamKind.AGG_TRADE, StreamKind.KLINE} == BACKFILLABLE
    assert {StreamKind.TRADE} == BACKFILL_ON_REQUEST  # historicalTrades, when asked


@pytest.mark.parametrize(
    ("status", "code", "needed"),
    [
        (401, None, True), (401, -2014, True), (400, -2014, True), (400, -2015, True),
        (None, None, False), (400, -1121, False), (429, -1003, False), (500, -1000, False),
        (418, -1003, False), (403, None, False),
    ],
)  # fmt: skip
def test_an_api_key_refusal_is_told_from_other_failures(
    status: int | None, code: int | None, needed: bool
) -> None:
    assert needs_api_key(status, code) is needed


def test_poll_interval_keeps_rounds_within_the_share() -> None:
    assert poll_interval(0, 6000) == MIN_POLL_INTERVAL
    assert poll_interval(4, 6000) == MIN_POLL_INTERVAL
    # 600 weight a round against 3,000 a minute: a round every 12 s
    assert poll_interval(600, 6000) == pytest.approx(600 * 60 / (6000 * FALLBACK_SHARE))
    assert poll_interval(10, 0) == 600.0  # no budget: as slow as one weight a minute allows


def test_unfilled_holes() -> None:
    gap = Gap("btcusdt@aggTrade", 10, 20, GapReason.RECONNECT)
    assert unfilled(gap, range(10, 20)) == []
    assert unfilled(gap, []) == [gap]
    assert unfilled(gap, [10, 11, 15, 16]) == [
        Gap("btcusdt@aggTrade", 12, 15, GapReason.RECONNECT),
        Gap("btcusdt@aggTrade", 17, 20, GapReason.RECONNECT),
    ]
    minute = 60_000
    klines = Gap("btcusdt@kline_1m", 0, 5 * minute, GapReason.RECONNECT, minute)
    holes = unfilled(klines, [minute, 2 * minute])
    assert [(h.expected, h.received, h.missing) for h in holes] == [
        (0, minute, 1),
        (3 * minute, 5 * minute, 2),
    ]


def test_kline_polling_rounds() -> None:
    from fastmd.core.recovery import kline_updates

    minute = 60_000
    assert kline_updates([], None) == []
    assert kline_updates([0, minute], None) == [(1, False)]  # first round: the open candle
    assert kline_updates([0, minute], minute) == [(1, False)]  # still the same candle
    # the candle open last round has closed: its final update first, then the new one
    assert kline_updates([minute, 2 * minute], minute) == [(0, True), (1, False)]
    assert kline_updates([2 * minute], minute) == [(0, False)]  # one bar: nothing to close
