"""The order-book sync procedure (sans-I/O), spot and futures, and the recorded-session check."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from testdata import RECORDING

import fastmd
from fastmd.core.book import BookState, BookSync, Levels, ResyncReason


def spot_diff(first: int, final: int, bids: Any = (), asks: Any = ()) -> fastmd.DepthUpdate[float]:
    return fastmd.DepthUpdate(1, "BTCUSDT", first, final, list(bids), list(asks))


def futures_diff(
    first: int, final: int, prev: int, bids: Any = (), asks: Any = ()
) -> fastmd.DepthUpdate[float]:
    return fastmd.DepthUpdate(1, "BTCUSDT", first, final, list(bids), list(asks), 1, prev)


def snapshot(last: int, bids: Any, asks: Any) -> fastmd.DepthSnapshot[float]:
    return fastmd.DepthSnapshot(last, list(bids), list(asks))


BIDS = [(100.0, 1.0), (99.0, 2.0)]
ASKS = [(101.0, 1.5), (102.0, 3.0)]


def test_spot_sync_drops_old_diffs_and_applies_the_rest() -> None:
    book = BookSync("BTCUSDT", futures=False)
    assert book.state is BookState.SYNCING
    assert book.needs_snapshot
    book.on_diff(spot_diff(8, 10, bids=[(100.0, 9.0)]))  # u <= lastUpdateId: dropped
    book.on_diff(spot_diff(11, 13, bids=[(100.0, 5.0)], asks=[(101.0, 0.0)]))  # U <= 12+1 <= u
    update = book.on_snapshot(snapshot(12, BIDS, ASKS))
    assert book.state is BookState.SYNCED
    assert book.update_id == 13
    assert update is not None
    assert update.update_id == 13
    assert book.bids.descending() == [(100.0, 5.0), (99.0, 2.0)]
    assert book.asks.ascending() == [(102.0, 3.0)]  # zero removed the level
    # later diffs must chain U == previous u + 1
    live = book.on_diff(spot_diff(14, 14, asks=[(101.5, 1.0)]))
    assert live is not None
    assert live.asks == [(101.5, 1.0)]
    assert book.asks.lowest() == (101.5, 1.0)


def test_spot_first_diff_straddling_the_snapshot() -> None:
    book = BookSync("X", futures=False)
    book.on_snapshot(snapshot(12, BIDS, ASKS))
    assert book.state is BookState.SYNCING  # no diff yet: the snapshot waits for one
    book.on_diff(spot_diff(13, 15))
    assert book.state is BookState.SYNCED
    assert book.update_id == 15


def test_spot_gap_throws_the_book_away() -> None:
    book = BookSync("X", futures=False)
    book.on_diff(spot_diff(13, 14))
    book.on_snapshot(snapshot(13, BIDS, ASKS))
    assert book.state is BookState.SYNCED
    assert book.on_diff(spot_diff(16, 17)) is None  # 15 is missing
    assert book.state is BookState.RESYNCING
    assert book.resync_reason == ResyncReason.GAP
    assert book.needs_snapshot
    assert book.bids.highest() is None  # never stale levels
    book.on_snapshot(snapshot(16, BIDS, ASKS))  # the kept diff 16-17 straddles it
    assert book.state is BookState.SYNCED
    assert book.update_id == 17


def test_spot_stale_snapshot_is_refetched() -> None:
    book = BookSync("X", futures=False)
    book.on_diff(spot_diff(20, 22))
    book.on_snapshot(snapshot(15, BIDS, ASKS))  # older than the first buffered diff
    assert book.state is BookState.RESYNCING
    assert book.resync_reason == ResyncReason.STALE_SNAPSHOT
    assert book.needs_snapshot
    book.on_diff(spot_diff(23, 24))
    book.on_snapshot(snapshot(23, BIDS, ASKS))
    assert book.state is BookState.SYNCED
    assert book.update_id == 24


def test_duplicate_diff_is_ignored() -> None:
    book = BookSync("X", futures=False)
    book.on_diff(spot_diff(11, 12, bids=[(100.0, 7.0)]))
    book.on_snapshot(snapshot(11, BIDS, ASKS))
    assert book.on_diff(spot_diff(11, 12, bids=[(100.0, 99.0)])) is None
    assert book.state is BookState.SYNCED
    assert book.bids.highest() == (100.0, 7.0)


def test_crossed_book_resyncs() -> None:
    book = BookSync("X", futures=False)
    book.on_diff(spot_diff(11, 11))
    book.on_snapshot(snapshot(10, BIDS, ASKS))
    book.on_diff(spot_diff(12, 12, bids=[(101.0, 1.0)]))  # bid at the best ask
    assert book.state is BookState.RESYNCING
    assert book.resync_reason == ResyncReason.CROSSED


def test_buffer_overflow_abandons_the_attempt() -> None:
    book = BookSync("X", futures=False, max_buffer=3)
    for i in range(4):
        book.on_diff(spot_diff(10 + i, 10 + i))
    assert book.resync_reason == ResyncReason.BUFFER_FULL
    assert book.buffered == 0


def test_futures_rules_differ_from_spot() -> None:
    book = BookSync("X", futures=True)
    book.on_diff(futures_diff(5, 9, prev=4))  # u < lastUpdateId: dropped
    book.on_diff(futures_diff(10, 12, prev=9, bids=[(100.0, 4.0)]))  # U <= 10 <= u (no +1)
    book.on_snapshot(snapshot(10, BIDS, ASKS))
    assert book.state is BookState.SYNCED
    assert book.update_id == 12
    assert book.bids.highest() == (100.0, 4.0)
    # continuity is pu == previous u, even though U is not previous u + 1
    assert book.on_diff(futures_diff(15, 16, prev=12)) is not None
    assert book.state is BookState.SYNCED
    book.on_diff(futures_diff(20, 21, prev=18))
    assert book.state is BookState.RESYNCING
    assert book.resync_reason == ResyncReason.GAP


def test_futures_snapshot_older_than_the_diffs_is_refetched() -> None:
    book = BookSync("X", futures=True)
    book.on_diff(futures_diff(20, 25, prev=19))
    book.on_snapshot(snapshot(15, BIDS, ASKS))
    assert book.resync_reason == ResyncReason.STALE_SNAPSHOT


def test_exact_price_levels_keep_numeric_order() -> None:
    levels = Levels()
    for price in ("0.00010000", "0.0001", "9.5", "10.25", "0.00009999"):
        levels.set(Decimal(price), Decimal(1))
    assert [str(p) for p, _ in levels.ascending()] == ["0.00009999", "0.00010000", "9.5", "10.25"]
    levels.set(Decimal("0.0001000"), Decimal("0.000"))  # zero, whatever its spelling
    assert len(levels) == 3
    assert levels.descending(2) == [(Decimal("10.25"), 1), (Decimal("9.5"), 1)]


def _recorded(price_type: type) -> tuple[list[Any], dict[str, Any]]:
    decoder = fastmd.Decoder(price_type=price_type)
    events = [
        decoder.decode(json.dumps(json.loads(line)["msg"]).encode()).event
        for line in (RECORDING / "stream.jsonl").read_text().splitlines()
    ]
    snapshots = {}
    for file in (RECORDING / "snapshots").glob("*.json"):
        body = json.dumps(json.loads(file.read_text())["body"]).encode()
        snapshots[file.stem] = msgspec.json.decode(
            body, type=fastmd.DepthSnapshot[price_type], strict=price_type is not float
        )
    return events, snapshots


@pytest.mark.parametrize("price_type", [float, str, Decimal])
def test_recorded_session_matches_all_26_book_tickers(price_type: type) -> None:
    """Each book syncs from its recorded snapshot with no gap afterwards, and at every
    bookTicker whose u is the final u of an applied diff, the top of the book equals it."""
    events, snapshots = _recorded(price_type)
    books = {symbol: BookSync(symbol, futures=False) for symbol in snapshots}
    waiting: dict[tuple[str, int], Any] = {}  # bookTickers that arrived before their diff
    checked = []

    def number(value: Any) -> Any:
        return Decimal(value) if isinstance(value, str) else value

    def check(book: BookSync, ticker: Any) -> None:
        assert book.bids.highest() == (number(ticker.bid_price), number(ticker.bid_quantity))
        assert book.asks.lowest() == (number(ticker.ask_price), number(ticker.ask_quantity))
        checked.append(ticker.update_id)

    for event in events:
        if isinstance(event, fastmd.DepthUpdate):
            book = books[event.symbol]
            book.on_diff(event)
            if book.needs_snapshot:
                book.on_snapshot(snapshots[event.symbol])
            ticker = waiting.pop((event.symbol, book.update_id), None)
            if ticker is not None and book.state is BookState.SYNCED:
                check(book, ticker)
        elif isinstance(event, fastmd.BookTicker):
            book = books[event.symbol]
            if book.state is BookState.SYNCED and event.update_id == book.update_id:
                check(book, event)
            else:
                waiting[(event.symbol, event.update_id)] = event
    assert len(checked) == 26
    assert all(b.state is BookState.SYNCED and b.resyncs == 0 for b in books.values())


def test_futures_snapshot_between_two_diffs_chains_by_pu() -> None:
    book = BookSync("X", futures=True)
    book.on_snapshot(snapshot(30, BIDS, ASKS))
    book.on_diff(futures_diff(31, 33, prev=30, bids=[(100.0, 2.0)]))
    assert book.state is BookState.SYNCED
    assert book.update_id == 33
    other = BookSync("X", futures=True)
    other.on_snapshot(snapshot(30, BIDS, ASKS))
    other.on_diff(futures_diff(31, 33, prev=29))  # neither straddles nor chains: stale
    assert other.resync_reason == ResyncReason.STALE_SNAPSHOT


def test_snapshot_retry_schedule() -> None:
    from fastmd.core.book import (
        SNAPSHOT_MAX_DELAY,
        snapshot_retry_delay,
        stale_snapshot_delay,
    )

    assert [snapshot_retry_delay(n) for n in (1, 2, 3, 4, 5, 9)] == [
        0.25, 0.5, 1.0, 2.0, SNAPSHOT_MAX_DELAY, SNAPSHOT_MAX_DELAY,
    ]  # fmt: skip
    assert snapshot_retry_delay(1, retry_after=30.0) == 30.0  # the exchange's word wins
    assert snapshot_retry_delay(5, retry_after=0.0) == SNAPSHOT_MAX_DELAY
    assert [stale_snapshot_delay(n) for n in (1, 2, 4, 40)] == [0.25, 0.5, 1.0, SNAPSHOT_MAX_DELAY]
