"""Order-book benchmarks: applying depth diffs (level changes per second) and reading the top.

Two inputs: the real recorded session (4 books, 177 diffs) and a synthetic NKN-like stream of
5,000 diffs from the simulator's market (BTCUSDT, ~4-20 level changes each). Each body also
checks its result, so the CI smoke run (``--benchmark-disable``) is a correctness test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import fastmd
from benchmarks.frames import load_recording
from fastmd.core.book import BookState, BookSync
from fastmd.sim.market import Market

pytestmark = pytest.mark.benchmark(group="book")

# The full snapshots live with the recording in the tests' data (tests/data/README.md).
RECORDING = Path(__file__).resolve().parents[1] / "tests" / "data" / "binance-spot-2021-10-12"


def _recorded_diffs() -> tuple[list[Any], dict[str, Any]]:
    decoder = fastmd.Decoder()
    diffs = [
        event
        for frame in load_recording()
        if isinstance(event := decoder.decode(frame).event, fastmd.DepthUpdate)
    ]
    snapshots = {}
    for file in (RECORDING / "snapshots").glob("*.json"):
        body = json.dumps(json.loads(file.read_text())["body"]).encode()
        snapshots[file.stem] = msgspec.json.decode(
            body, type=fastmd.DepthSnapshot[float], strict=False
        )
    return diffs, snapshots


def _synthetic_diffs(count: int = 5000) -> tuple[list[Any], Any]:
    now = [1_700_000_000.0]
    market = Market("binance-spot", ["BTCUSDT"], seed=4, clock=lambda: now[0])
    market.set_active(["btcusdt@depth@100ms"])
    snapshot = msgspec.json.decode(
        market.depth(market.books["BTCUSDT"], 5000),
        type=fastmd.DepthSnapshot[float],
        strict=False,
    )
    decoder = fastmd.Decoder()
    diffs = []
    while len(diffs) < count:
        now[0] += 0.02
        market.step()
        for stream, payload in market.tick():
            diffs.append(decoder.decode(payload, stream=stream).event)
    return diffs, snapshot


RECORDED, SNAPSHOTS = _recorded_diffs()
SYNTHETIC, SYNTHETIC_SNAPSHOT = _synthetic_diffs()


def _replay_recorded() -> dict[str, BookSync]:
    books = {symbol: BookSync(symbol, futures=False) for symbol in SNAPSHOTS}
    for diff in RECORDED:
        book = books[diff.symbol]
        book.on_diff(diff)
        if book.needs_snapshot:
            book.on_snapshot(SNAPSHOTS[diff.symbol])
    return books


def test_apply_recorded_diffs(bench: Any) -> None:
    books = bench(_replay_recorded)
    assert all(b.state is BookState.SYNCED and b.resyncs == 0 for b in books.values())
    changes = sum(b.level_changes for b in books.values())
    bench.extra_info.update(diffs=len(RECORDED), level_changes=changes)


def _apply_synthetic() -> BookSync:
    book = BookSync("BTCUSDT", futures=False)
    book.on_snapshot(SYNTHETIC_SNAPSHOT)
    for diff in SYNTHETIC:
        book.on_diff(diff)
    return book


def test_apply_synthetic_diffs(bench: Any) -> None:
    book = bench(_apply_synthetic)
    assert book.state is BookState.SYNCED
    assert book.resyncs == 0
    bench.extra_info.update(
        diffs=len(SYNTHETIC), level_changes=book.level_changes, levels=len(book.bids)
    )


def test_best_bid_and_ask_read(bench: Any) -> None:
    book = _apply_synthetic()

    def top() -> Any:
        return book.bids.highest(), book.asks.lowest()

    bid, ask = bench(top)
    assert bid is not None
    assert ask is not None
    assert bid[0] < ask[0]
    bench.extra_info.update(levels_per_side=len(book.bids))


def test_top_10_read(bench: Any) -> None:
    book = _apply_synthetic()
    bids = bench(book.bids.descending, 10)
    assert len(bids) == 10
    assert bids == sorted(bids, reverse=True)
