"""Per-stream sequencers: in order, gaps (exact expected/received), duplicates, the reconnect
reason, for every stream kind; and a property: whatever arrives, delivered ids strictly increase
and every lost range is reported exactly once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from fastmd.core.events import (
    AggTrade,
    BookTicker,
    ContinuousKline,
    ContinuousKlineData,
    ContractInfo,
    DepthUpdate,
    ForceOrder,
    Kline,
    KlineData,
    LiquidationOrder,
    MiniTicker,
    PartialDepth,
    Trade,
)
from fastmd.core.sequence import RECENT_MEMORY, Gap, GapReason, Sequencer, sequencer_for
from fastmd.core.streams import Venue, parse_stream

SKIP, RECONNECT = GapReason.SERVER_SKIP, GapReason.RECONNECT


def make(name: str, *, futures: bool = False) -> tuple[Sequencer, list[Gap]]:
    gaps: list[Gap] = []
    venue: Venue = "binance-usdm" if futures else "binance-spot"
    sequencer = sequencer_for(parse_stream(name, venue), name, gaps.append, futures=futures)
    assert sequencer is not None
    return sequencer, gaps


def trade(trade_id: int) -> Trade:
    return Trade(
        event_time=1_700_000_000_000 + trade_id, symbol="BTCUSDT", trade_id=trade_id,
        price=1.0, quantity=1.0, trade_time=1_700_000_000_000, is_buyer_maker=False,
    )  # fmt: skip


def agg(agg_id: int) -> AggTrade:
    return AggTrade(
        event_time=1_700_000_000_000 + agg_id, symbol="BTCUSDT", agg_trade_id=agg_id,
        price=1.0, quantity=1.0, first_trade_id=agg_id * 10, last_trade_id=agg_id * 10 + 3,
        trade_time=1_700_000_000_000, is_buyer_maker=True,
    )  # fmt: skip


def diff(first: int, final: int, prev: int | None = None) -> DepthUpdate:
    return DepthUpdate(
        event_time=1_700_000_000_000 + final, symbol="BTCUSDT", first_update_id=first,
        final_update_id=final, bids=[], asks=[], prev_final_update_id=prev,
    )  # fmt: skip


def kline(start: int, event_time: int, interval_ms: int = 60_000, closed: bool = False) -> Kline:
    data = KlineData(
        start_time=start, close_time=start + interval_ms - 1, symbol="BTCUSDT", interval="1m",
        first_trade_id=-1, last_trade_id=-1, open=1.0, close=1.0, high=1.0, low=1.0, volume=0.0,
        trade_count=0, is_closed=closed, quote_volume=0.0, taker_buy_volume=0.0,
        taker_buy_quote_volume=0.0,
    )  # fmt: skip
    return Kline(event_time=event_time, symbol="BTCUSDT", kline=data)


def run(sequencer: Sequencer, events: list[Any]) -> list[Any]:
    return [event for event in events if sequencer.check(event)]


# -- trade and aggTrade ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event", "key"),
    [
        ("btcusdt@trade", trade, "trade_id"),
        ("btcusdt@aggTrade", agg, "agg_trade_id"),
    ],
)
class TestContiguousIds:
    def test_in_order(self, name: str, event: Callable[[int], Any], key: str) -> None:
        sequencer, gaps = make(name)
        delivered = run(sequencer, [event(i) for i in range(100, 150)])
        assert [getattr(e, key) for e in delivered] == list(range(100, 150))
        assert gaps == []
        assert sequencer.duplicates == 0

    def test_gap_is_exact(self, name: str, event: Callable[[int], Any], key: str) -> None:
        sequencer, gaps = make(name)
        delivered = run(sequencer, [event(i) for i in (5, 6, 10, 11, 20)])
        assert [getattr(e, key) for e in delivered] == [5, 6, 10, 11, 20]
        assert gaps == [Gap(name, 7, 10, SKIP), Gap(name, 12, 20, SKIP)]
        assert [g.missing for g in gaps] == [3, 8]

    def test_duplicates_dropped(self, name: str, event: Callable[[int], Any], key: str) -> None:
        sequencer, gaps = make(name)
        delivered = run(sequencer, [event(i) for i in (1, 2, 2, 3, 1, 3, 4)])
        assert [getattr(e, key) for e in delivered] == [1, 2, 3, 4]
        assert sequencer.duplicates == 3
        assert gaps == []

    def test_reconnect_reason(self, name: str, event: Callable[[int], Any], key: str) -> None:
        sequencer, gaps = make(name)
        run(sequencer, [event(1), event(2)])
        sequencer.mark_reconnect()
        run(sequencer, [event(9), event(10), event(13)])
        assert gaps == [Gap(name, 3, 9, RECONNECT), Gap(name, 11, 13, SKIP)]

    def test_reconnect_without_loss_reports_nothing_and_clears_the_reason(
        self, name: str, event: Callable[[int], Any], key: str
    ) -> None:
        sequencer, gaps = make(name)
        run(sequencer, [event(1)])
        sequencer.mark_reconnect()
        run(sequencer, [event(2), event(5)])
        assert gaps == [Gap(name, 3, 5, SKIP)]

    def test_first_event_is_the_base(
        self, name: str, event: Callable[[int], Any], key: str
    ) -> None:
        sequencer, gaps = make(name)
        sequencer.mark_reconnect()  # a reconnect before anything arrived loses nothing known
        assert run(sequencer, [event(10**12)]) == [event(10**12)]
        assert gaps == []


# -- diff depth ------------------------------------------------------------------------------------


def test_spot_depth_in_order_gap_duplicate_and_reconnect() -> None:
    name = "btcusdt@depth@100ms"
    sequencer, gaps = make(name)
    events = [diff(100, 104), diff(105, 105), diff(106, 110)]
    assert run(sequencer, events) == events
    assert gaps == []
    assert not sequencer.check(diff(105, 105))  # a replay
    assert not sequencer.check(diff(106, 110))
    assert sequencer.duplicates == 2
    assert sequencer.check(diff(115, 120))  # 111..114 lost
    assert gaps == [Gap(name, 111, 115, SKIP)]
    assert gaps[0].missing == 4
    sequencer.mark_reconnect()
    assert sequencer.check(diff(130, 131))
    assert gaps[-1] == Gap(name, 121, 130, RECONNECT)
    assert sequencer.check(diff(132, 140))
    assert len(gaps) == 2


def test_futures_depth_checks_pu_against_the_previous_u() -> None:
    name = "btcusdt@depth@100ms"
    sequencer, gaps = make(name, futures=True)
    # Futures U is not necessarily previous u + 1; only pu matters.
    events = [diff(100, 104, 99), diff(103, 107, 104), diff(109, 120, 107)]
    assert run(sequencer, events) == events
    assert gaps == []
    assert not sequencer.check(diff(103, 107, 104))
    assert sequencer.duplicates == 1
    assert sequencer.check(diff(130, 140, 125))  # the events ending at 121..125 were lost
    assert gaps == [Gap(name, 120, 125, SKIP)]
    sequencer.mark_reconnect()
    assert sequencer.check(diff(150, 160, 145))
    assert gaps[-1] == Gap(name, 140, 145, RECONNECT)
    assert sequencer.check(diff(161, 170, 160))
    assert len(gaps) == 2


def test_spot_depth_sequencer_ignores_pu_and_futures_checks_it() -> None:
    spot, futures = make("btcusdt@depth")[0], make("btcusdt@depth", futures=True)[0]
    assert type(spot) is not type(futures)


# -- klines ---------------------------------------------------------------------------------------


MINUTE = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE


def test_kline_updates_of_the_open_candle_and_the_next_candle() -> None:
    sequencer, gaps = make("btcusdt@kline_1m")
    events = [
        kline(T0, T0 + 2_000),
        kline(T0, T0 + 4_000),
        kline(T0, T0 + MINUTE + 1, closed=True),
        kline(T0 + MINUTE, T0 + MINUTE + 2),
        kline(T0 + MINUTE, T0 + MINUTE + 2_000),
    ]
    assert run(sequencer, events) == events
    assert gaps == []
    assert sequencer.duplicates == 0


def test_kline_lost_candles_are_a_gap_in_time() -> None:
    name = "btcusdt@kline_1m"
    sequencer, gaps = make(name)
    run(sequencer, [kline(T0, T0 + 1_000), kline(T0 + 3 * MINUTE, T0 + 3 * MINUTE + 5)])
    assert gaps == [Gap(name, T0 + MINUTE, T0 + 3 * MINUTE, SKIP)]
    sequencer.mark_reconnect()
    run(sequencer, [kline(T0 + 5 * MINUTE, T0 + 5 * MINUTE + 5)])
    assert gaps[-1] == Gap(name, T0 + 4 * MINUTE, T0 + 5 * MINUTE, RECONNECT)


def test_kline_interval_is_taken_from_the_stream() -> None:
    name = "btcusdt@kline_1s"
    sequencer, gaps = make(name)
    base = T0
    run(sequencer, [kline(base + i * 1000, base + i * 1000 + 1, 1000) for i in (0, 1, 2, 5)])
    assert gaps == [Gap(name, base + 3000, base + 5000, SKIP)]


def test_kline_replays_are_dropped() -> None:
    sequencer, gaps = make("btcusdt@kline_1m")
    first, second = kline(T0, T0 + 1_000), kline(T0, T0 + 2_000)
    assert run(sequencer, [first, second, second, first]) == [first, second]
    assert sequencer.duplicates == 2
    assert gaps == []


def test_kline_close_and_next_open_with_the_same_event_time_are_both_delivered() -> None:
    sequencer, _ = make("btcusdt@kline_1m")
    now = T0 + MINUTE + 3
    events = [
        kline(T0, T0 + 1_000),
        kline(T0, now, closed=True),  # the final update of the candle that closed
        kline(T0 + MINUTE, now),  # the new candle, same push
    ]
    assert run(sequencer, events) == events
    assert sequencer.duplicates == 0


def test_kline_gap_missing_counts_candles() -> None:
    sequencer, gaps = make("btcusdt@kline_1m")
    run(sequencer, [kline(T0, T0 + 1_000), kline(T0 + 3 * MINUTE, T0 + 3 * MINUTE + 5)])
    (gap,) = gaps
    assert gap.missing == 2


# -- monotonic keys (no sequence to break) ---------------------------------------------------------


def book_ticker(update_id: int) -> BookTicker:
    return BookTicker(
        update_id=update_id, symbol="BTCUSDT", bid_price=1.0, bid_quantity=1.0, ask_price=2.0,
        ask_quantity=1.0,
    )  # fmt: skip


def mini_ticker(event_time: int) -> MiniTicker:
    return MiniTicker(
        event_time=event_time, symbol="BTCUSDT", close=1.0, open=1.0, high=1.0, low=1.0,
        volume=1.0, quote_volume=1.0,
    )  # fmt: skip


def partial(last_update_id: int) -> PartialDepth:
    return PartialDepth(last_update_id=last_update_id, bids=[], asks=[])


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("btcusdt@bookTicker", book_ticker),
        ("btcusdt@miniTicker", mini_ticker),
        ("btcusdt@depth5", partial),
    ],
)
def test_monotonic_keys_drop_replays_and_never_report_gaps(
    name: str, event: Callable[[int], Any]
) -> None:
    sequencer, gaps = make(name)
    keys = [10, 11, 11, 15, 12, 100, 100, 101]
    delivered = run(sequencer, [event(k) for k in keys])
    assert delivered == [event(k) for k in (10, 11, 15, 100, 101)]
    assert sequencer.duplicates == 3
    sequencer.mark_reconnect()
    assert sequencer.check(event(500))
    assert gaps == []  # no sequence: a jump is not a loss


def test_only_server_shutdown_has_no_sequencer() -> None:
    def sequencer(name: str) -> Sequencer | None:
        return sequencer_for(parse_stream(name, "binance-usdm"), name, lambda gap: None,
                             futures=True)  # fmt: skip

    assert sequencer("!serverShutdown") is None
    for name in ("!bookTicker", "!forceOrder@arr", "btcusdt@forceOrder", "!contractInfo",
                 "!assetIndex@arr", "btcusdt@rpiDepth@500ms", "defiusdt@compositeIndex",
                 "btcusdt_perpetual@continuousKline_1m"):  # fmt: skip
        assert sequencer(name) is not None, name


# -- per symbol: !bookTicker, forceOrder, !forceOrder@arr ------------------------------------------


def quote(symbol: str, update_id: int) -> BookTicker:
    return BookTicker(
        update_id=update_id, symbol=symbol, bid_price=1.0, bid_quantity=1.0, ask_price=2.0,
        ask_quantity=1.0, event_time=1_700_000_000_000, transaction_time=1_700_000_000_000,
    )  # fmt: skip


def liquidation(symbol: str, event_time: int, quantity: float = 1.0) -> ForceOrder:
    order = LiquidationOrder(
        symbol=symbol, side="SELL", order_type="LIMIT", time_in_force="IOC",
        original_quantity=quantity, price=10.0, average_price=10.0, status="FILLED",
        last_filled_quantity=quantity, filled_quantity=quantity, trade_time=event_time,
    )  # fmt: skip
    return ForceOrder(event_time=event_time, order=order)


def test_all_book_tickers_keep_one_update_id_per_symbol() -> None:
    sequencer, gaps = make("!bookTicker", futures=True)
    # symbols interleave, each with its own update ids (ETH's are far below BTC's)
    events = [quote("BTCUSDT", 900), quote("ETHUSDT", 40), quote("BTCUSDT", 905),
              quote("ETHUSDT", 41), quote("SOLUSDT", 7)]  # fmt: skip
    assert run(sequencer, events) == events
    # a handover's overlap repeats some of them, in their order, mixed with new ones
    again = [quote("BTCUSDT", 905), quote("ETHUSDT", 40), quote("ETHUSDT", 41),
             quote("ETHUSDT", 44), quote("SOLUSDT", 7), quote("BTCUSDT", 910)]  # fmt: skip
    assert run(sequencer, again) == [quote("ETHUSDT", 44), quote("BTCUSDT", 910)]
    assert sequencer.duplicates == 4
    sequencer.mark_reconnect()
    assert sequencer.check(quote("ETHUSDT", 1_000))  # a jump is no loss: there is no sequence
    assert gaps == []


def test_liquidations_repeat_by_symbol_time_and_content() -> None:
    for name in ("!forceOrder@arr", "btcusdt@forceOrder"):
        sequencer, gaps = make(name, futures=True)
        events = [liquidation("BTCUSDT", 1_000), liquidation("ETHUSDT", 900),
                  liquidation("BTCUSDT", 2_000), liquidation("ETHUSDT", 1_900)]  # fmt: skip
        assert run(sequencer, events) == events
        repeats = [liquidation("BTCUSDT", 2_000), liquidation("ETHUSDT", 900),
                   liquidation("BTCUSDT", 1_000)]  # fmt: skip
        assert run(sequencer, repeats) == []
        assert sequencer.duplicates == 3
        # the same time with other content is another liquidation, and so is a late one
        other, late = liquidation("BTCUSDT", 2_000, quantity=3.0), liquidation("BTCUSDT", 1_500)
        assert run(sequencer, [other, late, other, late]) == [other, late]
        assert gaps == []


def test_liquidations_older_than_the_memory_are_repeats() -> None:
    sequencer, _ = make("!forceOrder@arr", futures=True)
    times = [1_000 * i for i in range(1, RECENT_MEMORY + 3)]
    assert len(run(sequencer, [liquidation("BTCUSDT", t) for t in times])) == len(times)
    oldest_kept = times[-RECENT_MEMORY]
    assert not sequencer.check(liquidation("BTCUSDT", times[0]))  # forgotten, and older
    assert not sequencer.check(liquidation("BTCUSDT", oldest_kept))  # remembered
    assert sequencer.check(liquidation("BTCUSDT", oldest_kept + 1))  # not seen: delivered
    assert sequencer.check(liquidation("ETHUSDT", times[0]))  # another symbol


def contract_info(symbol: str, event_time: int, status: str = "TRADING") -> ContractInfo:
    return ContractInfo(
        event_time=event_time, symbol=symbol, pair=symbol, contract_type="PERPETUAL",
        delivery_time=4133404800000, onboard_time=1569398400000, status=status,
    )  # fmt: skip


def test_contract_info_repeats_by_symbol_and_content() -> None:
    sequencer, gaps = make("!contractInfo", futures=True)
    events = [contract_info("BTCUSDT", 10), contract_info("ETHUSDT", 10),
              contract_info("BTCUSDT", 10, "SETTLING")]  # fmt: skip
    assert run(sequencer, events) == events  # same time, other content: another change
    assert run(sequencer, list(reversed(events))) == []
    assert sequencer.duplicates == 3
    assert gaps == []


# -- the USD-M streams of issue 12: continuous klines, RPI depth, asset indexes ----------------


def continuous(start: int, event_time: int) -> ContinuousKline:
    data = ContinuousKlineData(
        start_time=start, close_time=start + MINUTE - 1, interval="1m", first_update_id=1,
        last_update_id=2, open=1.0, close=1.0, high=1.0, low=1.0, volume=0.0, trade_count=0,
        is_closed=False, quote_volume=0.0, taker_buy_volume=0.0, taker_buy_quote_volume=0.0,
    )  # fmt: skip
    return ContinuousKline(
        event_time=event_time, pair="BTCUSDT", contract_type="PERPETUAL", kline=data
    )


def test_continuous_klines_are_sequenced_like_klines() -> None:
    name = "btcusdt_perpetual@continuousKline_1m"
    sequencer, gaps = make(name, futures=True)
    events = [continuous(T0, T0 + 1), continuous(T0, T0 + 2), continuous(T0 + MINUTE, T0 + 3)]
    assert run(sequencer, [*events, events[1]]) == events
    assert sequencer.duplicates == 1
    assert sequencer.check(continuous(T0 + 4 * MINUTE, T0 + 4 * MINUTE + 1))
    assert gaps == [Gap(name, T0 + 2 * MINUTE, T0 + 4 * MINUTE, SKIP, MINUTE)]
    assert gaps[0].missing == 2


def test_rpi_depth_chains_by_pu_like_futures_diffs() -> None:
    name = "btcusdt@rpiDepth@500ms"
    sequencer, gaps = make(name, futures=True)
    events = [diff(100, 104, 99), diff(105, 107, 104), diff(109, 120, 107)]
    assert run(sequencer, [*events, events[1]]) == events
    assert sequencer.duplicates == 1
    assert sequencer.check(diff(130, 140, 125))
    assert gaps == [Gap(name, 120, 125, SKIP)]


def test_asset_index_arrays_and_composite_index_go_by_event_time() -> None:
    arrays, _ = make("!assetIndex@arr", futures=True)
    assert arrays.check([mini_ticker(5), mini_ticker(9)])
    assert not arrays.check([mini_ticker(9)])
    assert arrays.check([mini_ticker(10)])
    index, _ = make("defiusdt@compositeIndex", futures=True)
    assert [index.check(mini_ticker(t)) for t in (1, 2, 2, 1, 3)] == [True, True, False, False,
                                                                       True]  # fmt: skip


@st.composite
def overlapping_feeds(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """What an old and a new connection deliver around a make-before-break handover: one feed
    of (symbol, key) in order, keys growing per symbol; the new connection joins at some point
    of it, the old one leaves later, and the two are read interleaved, each in its own order,
    the new one at most a few frames ahead of the old one."""
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    picks = draw(st.lists(st.sampled_from(symbols), min_size=1, max_size=60))
    keys = {s: draw(st.integers(0, 10**9)) for s in symbols}
    feed = []
    for symbol in picks:
        keys[symbol] += draw(st.integers(1, 5))
        feed.append((symbol, keys[symbol]))
    join = draw(st.integers(0, len(feed)))
    leave = draw(st.integers(join, len(feed)))
    ahead = draw(st.integers(0, 8))
    old, new = 0, join  # the next feed index each connection delivers
    arrived = []
    while old < leave or new < len(feed):
        can_new = new < len(feed) and (old >= leave or new < old + ahead)
        if old < leave and (not can_new or draw(st.booleans())):
            arrived.append(feed[old])
            old += 1
        else:
            arrived.append(feed[new])
            new += 1
    return feed, arrived


@settings(max_examples=300, deadline=None)
@given(overlapping_feeds())
def test_property_book_ticker_overlaps_deliver_nothing_twice_and_the_latest_quote(
    case: tuple[list[tuple[str, int]], list[tuple[str, int]]],
) -> None:
    feed, arrived = case
    sequencer, gaps = make("!bookTicker", futures=True)
    delivered = [(e.symbol, e.update_id) for e in run(sequencer, [quote(*a) for a in arrived])]
    assert len(delivered) == len(set(delivered))  # nothing twice
    for symbol in {s for s, _ in feed}:
        mine = [u for s, u in delivered if s == symbol]
        assert mine == sorted(mine)  # never an older quote after a newer one
        assert mine[-1] == max(u for s, u in feed if s == symbol)  # the latest one shown
    assert sequencer.duplicates == len(arrived) - len(delivered)
    assert gaps == []


@settings(max_examples=300, deadline=None)
@given(overlapping_feeds())
def test_property_liquidation_overlaps_deliver_each_one_exactly_once(
    case: tuple[list[tuple[str, int]], list[tuple[str, int]]],
) -> None:
    feed, arrived = case
    sequencer, gaps = make("!forceOrder@arr", futures=True)
    ms = 1_000  # one liquidation a second per symbol at most, as Binance pushes them
    events = [liquidation(symbol, key * ms) for symbol, key in arrived]
    delivered = [(e.symbol, e.event_time // ms) for e in run(sequencer, events)]
    assert sorted(delivered) == sorted(set(feed))  # every one, once
    assert sequencer.duplicates == len(arrived) - len(delivered)
    assert gaps == []


# -- property: drops, repeats and late arrivals ----------------------------------------------------


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, list[int]]:
    """Ids from a contiguous run: some never arrive, some arrive again, some arrive late."""
    start = draw(st.integers(0, 10**9))
    steps = draw(
        st.lists(
            st.tuples(st.integers(0, 4), st.lists(st.integers(0, 10**6), max_size=3)),
            min_size=1,
            max_size=80,
        )
    )
    out: list[int] = []
    for i, (roll, earlier) in enumerate(steps, start=start):
        if roll == 0 and out:
            continue  # lost
        out.append(i)
        out += [start + r % (i - start + 1) for r in earlier]  # repeats and late arrivals
    return start, out


def assert_losses_reported_once(delivered: list[int], gaps: list[Gap], first: int) -> None:
    assert delivered == sorted(set(delivered))  # strictly increasing: nothing twice
    lost = set(range(first, delivered[-1] + 1)) - set(delivered)
    reported: list[int] = [i for gap in gaps for i in range(gap.expected, gap.received)]
    assert len(reported) == len(set(reported))  # no range reported twice
    assert set(reported) == lost
    assert all(gap.received > gap.expected for gap in gaps)


@settings(max_examples=300, deadline=None)
@given(arrivals(), st.sampled_from(["btcusdt@trade", "btcusdt@aggTrade"]))
def test_property_contiguous_ids(case: tuple[int, list[int]], name: str) -> None:
    _, ids = case
    sequencer, gaps = make(name)
    build = trade if name.endswith("@trade") else agg
    key = "trade_id" if name.endswith("@trade") else "agg_trade_id"
    delivered = [getattr(e, key) for e in run(sequencer, [build(i) for i in ids])]
    assert_losses_reported_once(delivered, gaps, ids[0])
    assert sequencer.duplicates == len(ids) - len(delivered)


@settings(max_examples=300, deadline=None)
@given(arrivals(), st.booleans())
def test_property_depth(case: tuple[int, list[int]], futures: bool) -> None:
    # Each id n stands for the diff covering update ids [10n, 10n + 9].
    _, windows = case
    sequencer, gaps = make("btcusdt@depth@100ms", futures=futures)
    events = [diff(10 * n, 10 * n + 9, 10 * n - 1 if futures else None) for n in windows]
    delivered = [e.final_update_id // 10 for e in run(sequencer, events)]
    assert delivered == sorted(set(delivered))
    lost_updates = {
        u for n in set(range(windows[0], delivered[-1] + 1)) - set(delivered)
        for u in range(10 * n, 10 * n + 10)
    }  # fmt: skip
    # Spot reports [expected, received) of update ids; futures the pu it expected and got.
    if futures:
        reported = [u for g in gaps for u in range(g.expected + 1, g.received + 1)]
    else:
        reported = [u for g in gaps for u in range(g.expected, g.received)]
    assert len(reported) == len(set(reported))
    assert set(reported) == lost_updates
    assert sequencer.duplicates == len(windows) - len(delivered)
