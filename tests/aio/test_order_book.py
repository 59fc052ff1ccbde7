"""Local order books through fastmd.Client against the simulator: they equal the simulator's own
book, resync one symbol at a time, and match Binance's recorded session at all 26 checkpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from book_checks import BookTickerCheck
from client_helpers import quiet, until
from testdata import RECORDING

import fastmd
from fastmd.sim import Exchange, SimLimits


def simulator_levels(ex: Exchange, symbol: str) -> tuple[list[Any], list[Any]]:
    book = ex.market.books[symbol]
    bids = [(float(book.price(p)), float(book.qty(q))) for p, q in book.levels("b", 10_000)]
    asks = [(float(book.price(p)), float(book.qty(q))) for p, q in book.levels("a", 10_000)]
    return bids, asks


async def test_book_equals_the_simulators_book() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=3, rate=0) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url, error_reporter=quiet) as client,
    ):
        pending = asyncio.ensure_future(client.order_book("btcusdt", timeout=5))
        while not pending.done():  # the market moves only when told to (rate=0)
            ex.advance(5)
            await asyncio.sleep(0.05)
        book = await pending
        assert book.state is fastmd.BookState.SYNCED
        assert book.update_id == ex.market.books["BTCUSDT"].update_id
        updates: list[int] = []
        book.on_update(lambda b, update_id: updates.append(update_id))
        for _ in range(30):
            ex.advance(20)  # order flow, then the 100 ms diff timer
            await asyncio.sleep(0.11)
            ex.advance(0)
        target = ex.market.books["BTCUSDT"].update_id
        await until(lambda: book.update_id == target)
        bids, asks = simulator_levels(ex, "BTCUSDT")
        assert book.bids() == bids
        assert book.asks() == asks
        assert book.best_bid() == bids[0]
        assert book.best_ask() == asks[0]
        assert book.bids(5) == bids[:5]
        assert updates
        assert updates[-1] == target
        assert book.last_update is not None
        last = book.last_update
        assert last.update_id == target
        assert last.bids or last.asks  # the diff's changed levels
        levels = {"bids": dict(bids), "asks": dict(asks)}
        for side, changes in (("bids", last.bids), ("asks", last.asks)):
            for price, quantity in changes:  # each change is what the book now holds there
                assert levels[side].get(price, 0) == quantity
        copy = book.snapshot()
        assert copy.update_id == target
        assert copy.bids == bids
        assert await client.order_book("BTCUSDT") is book  # one book per symbol
        assert client.metrics().gaps == 0


async def test_skipped_diff_resyncs_only_that_symbol() -> None:
    async with (
        Exchange(symbols=["BTCUSDT", "ETHUSDT"], seed=5, rate=400) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url, error_reporter=quiet) as client,
    ):
        btc = await client.order_book("btcusdt", timeout=5)
        eth = await client.order_book("ethusdt", timeout=5)
        ex.faults.skip("btcusdt@depth@100ms")
        await until(lambda: btc.resyncs == 1 and btc.synced)
        assert eth.resyncs == 0
        gaps = client.metrics().gaps
        assert gaps >= 1
        await asyncio.sleep(0.3)
        assert btc.synced
        assert eth.synced


async def test_unsynced_book_refuses_reads_or_flags_them() -> None:
    async with (
        Exchange(symbols=["BTCUSDT", "ETHUSDT"], seed=5, rate=300) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url, error_reporter=quiet) as client,
    ):
        strict = await client.order_book("btcusdt", timeout=5)
        loose = await client.order_book("ethusdt", strict=False, timeout=5)
        delay = ex.faults.rest_delay(0.5)  # keep the resync pending for a while
        ex.faults.skip("btcusdt@depth@100ms")
        ex.faults.skip("ethusdt@depth@100ms")
        await until(lambda: not strict.synced and not loose.synced)
        with pytest.raises(fastmd.BookNotSynced, match="BTCUSDT"):
            strict.best_bid()
        with pytest.raises(fastmd.BookNotSynced):
            strict.bids(5)
        assert loose.bids(5) == []  # thrown away, never stale; the flag says so
        assert loose.synced is False
        delay.clear()
        await strict.wait_synced(timeout=5)
        assert strict.best_bid() is not None


async def test_duplicate_diff_is_ignored_by_the_book() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=6, rate=300) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url, error_reporter=quiet) as client,
    ):
        book = await client.order_book("btcusdt", timeout=5)
        ex.faults.duplicate("btcusdt@depth@100ms", 3)
        await until(lambda: client.metrics().duplicates_dropped >= 3)
        assert book.resyncs == 0
        assert book.synced


async def test_reconnect_resyncs_and_stays_right() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=8, rate=300) as ex,
        fastmd.Client(
            ws_url=ex.ws_url,
            rest_url=ex.rest_url,
            backoff=fastmd.Backoff(initial_delay=0.15, max_delay=0.3),
            error_reporter=quiet,
        ) as client,
    ):
        book = await client.order_book("btcusdt", timeout=5)
        # Keep the link down for a few diff periods, so diffs are surely lost (a reconnect
        # that loses none keeps the book: its update-id chain proves nothing is missing).
        ex.faults.refuse_upgrades(503, duration=0.4)
        ex.faults.drop_connections(mode="rst")
        await until(lambda: book.resyncs >= 1 and book.synced, timeout=10)
        ex.rate = 0  # freeze the market, then compare level for level
        await asyncio.sleep(0.3)
        ex.advance(0)
        target = ex.market.books["BTCUSDT"].update_id
        await until(lambda: book.update_id == target)
        bids, asks = simulator_levels(ex, "BTCUSDT")
        assert (book.bids(), book.asks()) == (bids, asks)


async def test_many_books_resync_within_the_weight_budget() -> None:
    symbols = [f"C{i}USDT" for i in range(24)]
    limits = SimLimits.for_venue("binance-spot").with_(rest_weight_per_minute=1200)
    reports: list[fastmd.ErrorReport] = []
    async with (
        Exchange(symbols=symbols, seed=2, rate=200, limits=limits) as ex,
        fastmd.Client(
            ws_url=ex.ws_url,
            rest_url=ex.rest_url,
            rest_weight_budget=600,
            backoff=fastmd.Backoff(initial_delay=0.15, max_delay=0.3),
            error_reporter=reports.append,
        ) as client,
    ):
        books = await asyncio.gather(*(client.order_book(s, timeout=15) for s in symbols))
        ex.faults.refuse_upgrades(503, duration=0.4)
        ex.faults.drop_connections(mode="rst")
        # Books whose symbol changed during the outage lost diffs and resync; one that did not
        # change lost nothing, and its unbroken update-id chain proves it.
        await until(lambda: sum(b.resyncs for b in books) >= 20, timeout=20)
        await until(lambda: all(b.synced for b in books), timeout=20)
        rejected = [r for r in reports if r.code == "snapshot_failed"]
        assert rejected == []  # no 429 (or anything else) from the exchange
        spent = ex.rest.used_weight("127.0.0.1")
        assert spent <= 1200


async def test_recorded_session_through_the_simulator_matches_26_book_tickers() -> None:
    symbols = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]
    streams = [f"{s.lower()}@bookTicker" for s in symbols]
    async with (
        Exchange(replay=RECORDING, replay_speed=10.0, replay_autostart=False) as ex,
        fastmd.Client(
            ws_url=ex.ws_url, rest_url=ex.rest_url, price_type=str, error_reporter=quiet
        ) as client,
    ):
        checks = BookTickerCheck()
        tickers = client.subscribe(streams, checks.on_ticker)
        diffs = client.subscribe([f"{s.lower()}@depth@100ms" for s in symbols], lambda e: None)
        await tickers.wait_active(5)
        await diffs.wait_active(5)
        pending = [asyncio.ensure_future(client.order_book(s, timeout=10)) for s in symbols]
        await asyncio.sleep(0.2)  # the books exist and have asked for their snapshots
        checks.watch(client.books)
        assert set(checks.books) == set(symbols)
        ex.start_replay()
        await asyncio.gather(*pending)
        await ex.wait_replayed()
        await asyncio.sleep(0.2)
        assert len(checks.checked) == 26
        assert all(book.resyncs == 0 for book in checks.books.values())
        assert client.metrics().gaps == 0


async def test_futures_book_uses_the_public_route_and_pu_chain() -> None:
    async with (
        Exchange("binance-usdm", symbols=["BTCUSDT"], seed=9, rate=300) as ex,
        fastmd.Client(
            "binance-usdm", ws_url=ex.ws_url, rest_url=ex.rest_url, error_reporter=quiet
        ) as client,
    ):
        book = await client.order_book("btcusdt", timeout=5)
        assert [conn.url for conn in client.connections] == [f"{ex.ws_url}/public/stream"]
        ex.faults.skip("btcusdt@depth@100ms")
        await until(lambda: book.resyncs == 1 and book.synced)
        ex.rate = 0
        await asyncio.sleep(0.3)
        ex.advance(0)
        target = ex.market.books["BTCUSDT"].update_id
        await until(lambda: book.update_id == target)
        assert (book.bids(), book.asks()) == simulator_levels(ex, "BTCUSDT")


async def test_stale_snapshot_is_refetched() -> None:
    async with (
        Exchange(symbols=["BTCUSDT"], seed=10, rate=300) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url, error_reporter=quiet) as client,
    ):
        ex.faults.stale_snapshot("BTCUSDT")  # captured now: older than what the book will buffer
        await asyncio.sleep(0.3)  # the market moves on
        book = await client.order_book("btcusdt", timeout=5)
        assert book.synced
        assert book.snapshots_fetched == 2  # the stale one, then a fresh one
        assert book.resyncs == 1
        ex.rate = 0
        await asyncio.sleep(0.3)
        ex.advance(0)
        target = ex.market.books["BTCUSDT"].update_id
        await until(lambda: book.update_id == target)
        assert (book.bids(), book.asks()) == simulator_levels(ex, "BTCUSDT")


def test_snapshot_size_leaves_room_for_a_resync_of_every_book() -> None:
    from fastmd.aio.book import BookKeeper
    from fastmd.aio.reporting import Reporter
    from fastmd.aio.tasks import Tasks

    def unused(*args: object) -> Any:
        raise AssertionError("sizing a snapshot needs no I/O")

    keeper = BookKeeper(
        "binance-spot",
        subscribe=unused,
        rest=unused,
        weight_limit=lambda: None,
        tasks=Tasks(unused),
        reporter=Reporter(),
        weight_budget=3000,
    )

    class FakeBook:
        depth = None

    keeper.books = {"ONE": FakeBook()}  # type: ignore[dict-item]
    assert keeper.snapshot_limit(FakeBook()) == 5000  # 250 <= 3000 / 1 / 2  # type: ignore[arg-type]
    keeper.books = {f"S{i}": FakeBook() for i in range(24)}  # type: ignore[misc]
    assert keeper.snapshot_limit(FakeBook()) == 1000  # 50 <= 3000 / 24 / 2 = 62.5 < 250  # type: ignore[arg-type]
    keeper.weights.record(time.monotonic(), 2900)
    assert keeper.snapshot_limit(FakeBook()) == 100  # nothing fits: the smallest  # type: ignore[arg-type]
