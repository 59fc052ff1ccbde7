"""The wire format (fastmd.core.wire), sans-I/O: subjects, round trips, batch checks."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings, strategies as st
from testdata import RECORDING

import fastmd
from fastmd.core import wire
from fastmd.core.sequence import Gap, GapReason
from fastmd.core.streams import parse_stream


@pytest.mark.parametrize(
    ("stream", "token"),
    [
        ("btcusdt@trade", "btcusdt.trade"),
        ("btcusdt@depth@100ms", "btcusdt.depth.100ms"),
        ("!miniTicker@arr", "!miniTicker.arr"),
        ("a.b@c", "a%2Eb.c"),
    ],
)
def test_stream_tokens(stream: str, token: str) -> None:
    assert wire.stream_token(stream) == token
    assert wire.stream_of_token(token) == stream


@settings(deadline=None)  # a loaded machine must not fail a property
@given(st.lists(st.text(min_size=1), min_size=1, max_size=4))
def test_stream_tokens_round_trip_and_hold_no_subject_metacharacters(parts: list[str]) -> None:
    parts = [p.replace("@", "") or "x" for p in parts]
    name = "@".join(parts)
    token = wire.stream_token(name)
    assert not any(ch in token for ch in " *>\t\r\n")
    assert token.count(".") == len(parts) - 1
    assert wire.stream_of_token(token) == name


def test_subjects_and_wildcards() -> None:
    assert (
        wire.event_subject("binance-spot", "btcusdt@trade")
        == "fastmd.binance-spot.ev.btcusdt.trade"
    )
    assert (
        wire.gap_subject("binance-usdm", "btcusdt@aggTrade", "x")
        == "x.binance-usdm.gap.btcusdt.aggTrade"
    )
    assert (
        wire.health_subject("binance-spot", "host.a-w0") == "fastmd.binance-spot.health.host%2Ea-w0"
    )
    assert wire.events_wildcard("binance-spot") == "fastmd.binance-spot.ev.>"
    with pytest.raises(ValueError, match="prefix"):
        wire.event_subject("binance-spot", "btcusdt@trade", "a.b")
    with pytest.raises(fastmd.ProtocolError):
        wire.stream_of_token("btc%ZZ")
    with pytest.raises(fastmd.ProtocolError):
        wire.stream_token("btcusdt@@trade")


def test_shards_are_stable_and_disjoint() -> None:
    streams = [f"s{i}usdt@trade" for i in range(100)]
    shards = [wire.shard_of(s, 3) for s in streams]
    assert shards == [wire.shard_of(s, 3) for s in streams]
    assert set(shards) == {0, 1, 2}
    assert wire.shard_of("btcusdt@trade", 1) == 0
    with pytest.raises(ValueError, match="workers"):
        wire.shard_of("btcusdt@trade", 0)


def _recorded() -> list[tuple[str, bytes]]:
    frames = []
    for line in (RECORDING / "stream.jsonl").read_text().splitlines():
        frames.append(
            (json.loads(line)["msg"]["stream"], json.dumps(json.loads(line)["msg"]).encode())
        )
    return frames


@pytest.mark.parametrize("price_type", [float, str])
def test_batches_round_trip_every_recorded_event(price_type: type) -> None:
    relay_side = fastmd.Decoder("binance-spot", price_type=str)
    consumer = fastmd.Decoder("binance-spot", price_type=price_type)
    for stream, frame in _recorded():
        event = relay_side.decode(frame).event
        data = wire.encode(
            wire.Batch(v=1, venue="binance-spot", stream=stream, relay="r", epoch=7, seq=3,
                       first=10, n=2, sent=5, events=[event, event])
        )  # fmt: skip
        decoded = wire.batch_decoder(consumer.event_type(parse_stream(stream))).decode(data)
        expected = consumer.decode(frame).event
        assert decoded.events == [expected, expected]
        assert (decoded.epoch, decoded.seq, decoded.first, decoded.n) == (7, 3, 10, 2)


def test_batches_are_plain_msgpack_maps_keyed_by_binance_fields() -> None:
    stream, frame = _recorded()[0]
    event = fastmd.Decoder("binance-spot", price_type=str).decode(frame).event
    data = wire.encode(
        wire.Batch(v=1, venue="binance-spot", stream=stream, relay="r", epoch=1, seq=1,
                   first=1, n=1, sent=0, events=[event])
    )  # fmt: skip
    plain = msgspec.msgpack.decode(data)
    assert plain["v"] == 1
    assert plain["stream"] == stream
    payload = json.loads(frame)["data"]
    assert {k: plain["events"][0][k] for k in ("e", "E", "s", "U", "u", "b", "a")} == {
        k: payload[k] for k in ("e", "E", "s", "U", "u", "b", "a")
    }


def test_unknown_versions_are_refused() -> None:
    wire.check_version(1)
    with pytest.raises(fastmd.ProtocolError, match="version 2"):
        wire.check_version(2)


def test_gap_messages_read_as_gaps() -> None:
    message = wire.GapMessage(
        v=1, venue="binance-spot", stream="btcusdt@trade", relay="r", epoch=1,
        origin="exchange", reason="server_skip", expected=5, received=9,
    )  # fmt: skip
    decoded = wire.gap_decoder.decode(wire.encode(message))
    assert decoded.to_gap() == Gap("btcusdt@trade", 5, 9, GapReason.SERVER_SKIP)
    assert decoded.to_gap().missing == 4
    odd = msgspec.structs.replace(message, reason="something_new")
    assert odd.to_gap().reason is GapReason.SERVER_SKIP


def test_batch_sequencer_in_order_duplicates_and_losses() -> None:
    check = wire.BatchSequencer("s")
    assert check.check(1, 5, 100, 10) == wire.Verdict(True)  # joins late: nothing before
    assert check.check(1, 6, 110, 10) == wire.Verdict(True)
    assert check.check(1, 6, 110, 10) == wire.Verdict(False)  # the same batch again
    assert check.check(1, 4, 90, 10) == wire.Verdict(False)
    lost = check.check(1, 8, 130, 5)  # batch 7 (10 events) lost on the way
    assert lost == wire.Verdict(True, Gap("s", 120, 130, GapReason.OVERFLOW))
    assert lost.gap is not None
    assert lost.gap.missing == 10
    dropped = check.check(1, 9, 140, 1)  # in order, but the relay dropped 135..139
    assert dropped.gap == Gap("s", 135, 140, GapReason.OVERFLOW)


def test_batch_sequencer_reconnects_and_restarts() -> None:
    check = wire.BatchSequencer("s")
    check.check(1, 1, 1, 10)
    check.mark_reconnect()
    assert check.check(1, 2, 11, 10).gap == Gap("s", 11, 11, GapReason.RECONNECT)  # none missed
    check.mark_reconnect()
    assert check.check(1, 5, 51, 10).gap == Gap("s", 21, 51, GapReason.RECONNECT)
    assert check.check(1, 6, 61, 1) == wire.Verdict(True)
    restarted = check.check(2, 1, 1, 3)
    assert restarted == wire.Verdict(True, None, restarted=True)
    assert check.check(1, 7, 62, 1) == wire.Verdict(True, None, restarted=True)  # old epoch back
