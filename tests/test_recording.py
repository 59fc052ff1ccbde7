"""The real Binance spot recording (tests/data/binance-spot-2021-10-12) decodes completely."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from testdata import RECORDING

import fastmd
from fastmd import Decoder

SYMBOLS = ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR")


def _records() -> list[dict[str, Any]]:
    lines = (RECORDING / "stream.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _frames() -> list[tuple[dict[str, Any], bytes]]:
    """(the envelope as JSON, the frame re-encoded compactly)."""
    return [(r["msg"], json.dumps(r["msg"], separators=(",", ":")).encode()) for r in _records()]


EVENT_TYPES = {
    "depth": fastmd.DepthUpdate,
    "bookTicker": fastmd.BookTicker,
    "kline": fastmd.Kline,
    "aggTrade": fastmd.AggTrade,
}


def test_meta() -> None:
    meta = json.loads((RECORDING / "meta.json").read_text())
    assert meta["venue"] == "binance-spot"
    assert meta["frames"] == 265
    assert meta["snapshots"] == list(SYMBOLS)
    streams = meta["url"].split("streams=", 1)[1].split("/")
    assert len(streams) == 16
    for name in streams:
        assert fastmd.validate_stream(name) == name


def test_every_frame_decodes() -> None:
    decoder = Decoder()
    frames = _frames()
    assert len(frames) == 265
    expected = Counter(envelope["stream"] for envelope, _ in frames)
    got: Counter[str] = Counter()
    for envelope, frame in frames:
        message = decoder.decode(frame)
        assert isinstance(message, fastmd.Message)
        assert message.stream == envelope["stream"]
        got[message.stream] += 1
        data = envelope["data"]
        stream_type = envelope["stream"].split("@")[1].split("_")[0]
        event = message.event
        assert type(event) is EVENT_TYPES[stream_type]
        assert event.symbol == data["s"]
        assert event.symbol.lower() == envelope["stream"].split("@")[0]
        if stream_type == "depth":
            assert event.event_time == data["E"]
            assert (event.first_update_id, event.final_update_id) == (data["U"], data["u"])
            assert event.first_update_id <= event.final_update_id
            assert event.bids == [(float(p), float(q)) for p, q in data["b"]]
            assert event.asks == [(float(p), float(q)) for p, q in data["a"]]
        elif stream_type == "bookTicker":
            assert event.update_id == data["u"]
            assert (event.bid_price, event.ask_price) == (float(data["b"]), float(data["a"]))
            assert event.bid_price < event.ask_price
            assert event.event_time is None
        elif stream_type == "kline":
            assert event.kline.interval == "1m"
            assert event.kline.start_time == data["k"]["t"]
            assert event.kline.close_time == event.kline.start_time + 60_000 - 1
            assert event.kline.trade_count == data["k"]["n"]
        else:
            assert event.agg_trade_id == data["a"]
            assert event.price == float(data["p"])
            assert not event.is_invalidated
    assert got == expected
    assert sum(got.values()) == 265
    assert got["nknusdt@depth@100ms"] == 150
    assert got["nknusdt@bookTicker"] == 74
    assert sum(decoder.error_counts.values()) == 0
    assert set(expected) <= decoder.streams


def test_exact_mode_keeps_the_wire_text() -> None:
    decoder = Decoder(price_type=str)
    for envelope, frame in _frames():
        message = decoder.decode(frame)
        data = envelope["data"]
        if "U" in data:
            assert message.event.bids == [tuple(level) for level in data["b"]]
            assert message.event.asks == [tuple(level) for level in data["a"]]
        elif "A" in data:
            assert (message.event.bid_price, message.event.bid_quantity) == (data["b"], data["B"])
            assert (message.event.ask_price, message.event.ask_quantity) == (data["a"], data["A"])
        # re-encoding gives the payload back (modulo the tags and defaults it fills in)
        again = json.loads(msgspec.json.encode(message))
        assert again["stream"] == envelope["stream"]
        for key, value in data.items():
            if key not in ("M", "k"):
                assert again["data"][key] == value, key
    assert sum(decoder.error_counts.values()) == 0


def test_depth_diffs_are_contiguous_per_symbol() -> None:
    decoder = Decoder(price_type=Decimal)
    last: dict[str, int] = {}
    for _, frame in _frames():
        event = decoder.decode(frame).event
        if isinstance(event, fastmd.DepthUpdate):
            assert event.first_update_id <= event.final_update_id
            if event.symbol in last:
                assert event.first_update_id == last[event.symbol] + 1
            last[event.symbol] = event.final_update_id
    assert set(last) == set(SYMBOLS)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_snapshot_decodes(symbol: str) -> None:
    record = json.loads((RECORDING / "snapshots" / f"{symbol}.json").read_text())
    assert f"symbol={symbol}" in record["url"]
    raw = json.dumps(record["body"]).encode()
    snap = msgspec.json.decode(raw, type=fastmd.DepthSnapshot[float], strict=False)
    exact = msgspec.json.decode(raw, type=fastmd.DepthSnapshot[str])
    body = record["body"]
    assert snap.last_update_id == exact.last_update_id == body["lastUpdateId"]
    assert exact.bids == [tuple(level) for level in body["bids"]]
    assert exact.asks == [tuple(level) for level in body["asks"]]
    assert snap.bids == [(float(p), float(q)) for p, q in body["bids"]]
    assert len(snap.bids) > 0
    assert len(snap.asks) > 0
    assert [p for p, _ in snap.bids] == sorted((p for p, _ in snap.bids), reverse=True)
    assert [p for p, _ in snap.asks] == sorted(p for p, _ in snap.asks)
    assert snap.bids[0][0] < snap.asks[0][0]
    assert snap.event_time is None


def test_snapshot_ids() -> None:
    ids = {}
    for symbol in SYMBOLS:
        record = json.loads((RECORDING / "snapshots" / f"{symbol}.json").read_text())
        ids[symbol] = msgspec.json.decode(
            json.dumps(record["body"]), type=fastmd.DepthSnapshot[float], strict=False
        ).last_update_id
    assert ids == {
        "NKNUSDT": 499869752,
        "BLZETH": 281916627,
        "LRCBTC": 259345543,
        "RUNEEUR": 15602511,
    }
