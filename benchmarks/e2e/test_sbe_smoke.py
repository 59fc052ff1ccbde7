"""Smoke test of the SBE end-to-end benchmark (benchmarks/e2e/sbe.py): its three wire forms carry
the same trades (decoded by fastmd's own decoders), their sizes are what docs/benchmarks.md
quotes, and one server + client pair per form runs to completion with every trade and no gap.
Correctness only: no timing is asserted."""

from __future__ import annotations

import pytest

import fastmd
from benchmarks.e2e import sbe as bench


def _payload(frame: bytes) -> bytes:
    size = frame[1] & 0x7F
    offset = 2 if size < 126 else 4 if size == 126 else 10
    return frame[offset:]


def test_the_wire_forms_carry_the_same_trades() -> None:
    first, count = bench.FIRST_TRADE_ID, 8
    json_decoder = fastmd.Decoder()
    sbe_decoder = fastmd.Decoder(encoding="sbe")
    from_json = [json_decoder.decode(_payload(f)).event for f in bench.json_frames(first, count)]
    for per_frame in (1, 4):
        frames = bench.sbe_frames(first, count, per_frame)
        assert all(f[0] == 0x82 for f in frames)  # binary frames
        events = [m.event for f in frames for m in sbe_decoder.decode(_payload(f))]
        assert len(frames) == count // per_frame
        assert [(e.trade_id, e.price, e.quantity, e.is_buyer_maker) for e in events] == [
            (e.trade_id, e.price, e.quantity, e.is_buyer_maker) for e in from_json
        ]
    assert len(bench.sbe_frames(first, 1, 1)[0]) == 2 + 65  # binance-protocol.md §8: 65 bytes


@pytest.mark.parametrize("kind", sorted(bench.KINDS))
def test_one_pair_per_form_delivers_every_trade(kind: str) -> None:
    result = bench.run_pair(kind, warmup=100, messages=2_000, timeout=60)
    assert result["complete"]
    assert result["received"] == 2_100
    assert (result["gaps"], result["decode_errors"]) == (0, 0)
    assert result["last_price"] == 67012.34
    assert result["socket_bytes"] >= result["server"]["wire_bytes"]
