"""SBE frames for the tests: the recorded Binance session (``tests/data/binance-spot-2021-10-12``)
re-encoded as Binance's SBE stream would carry it, and a small reader of the four templates
written from binance-protocol.md §8 (independent of fastmd's decoder, to check the simulator's
encoder and, the other way round, the decoder against it).

The recording's JSON frames map to SBE templates as the simulator's SBE endpoint serves them
(:class:`fastmd.sim.sbe.SbeTranscoder`): ``aggTrade`` -> ``@trade`` (10000, the aggTrade id as
the trade id), ``bookTicker`` -> ``@bestBidAsk`` (10001; the recording's spot bookTicker has no
event time, so the frame's receive time is used), ``depth@100ms`` -> ``@depth`` (10003);
``kline_1m`` has no SBE stream. Exponents come from each message's decimal strings.
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from testdata import RECORDING

from fastmd.sim.sbe import SbeStreams, SbeTranscoder


@dataclass(frozen=True)
class RecordedFrame:
    """One recorded JSON event and its SBE frame."""

    json_stream: str
    sbe_stream: str
    data: dict[str, Any]
    frame: bytes


def recorded_sbe_frames() -> list[RecordedFrame]:
    """Every recorded frame that has an SBE stream, in recorded order, one SBE frame each."""
    out: list[RecordedFrame] = []
    for line in (RECORDING / "stream.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        envelope = record["msg"]
        stream, data = envelope["stream"], envelope["data"]
        sbe_stream = SbeStreams.sbe_stream(stream)
        if sbe_stream is None:
            continue
        transcoder = SbeTranscoder(functools.partial(round, record["ts"] * 1_000_000))
        payload = json.dumps(data, separators=(",", ":")).encode()
        ((got_stream, frame),) = transcoder.transcode([(stream, payload)])
        assert got_stream == sbe_stream
        out.append(RecordedFrame(stream, sbe_stream, data, frame))
    return out


# -- an independent reader (struct, §8 offsets) -----------------------------------------------


def _dec(mantissa: int, exponent: int) -> Decimal:
    return Decimal(mantissa).scaleb(exponent)


def read_frame(frame: bytes) -> dict[str, Any]:
    """The fields of one SBE frame as exact Decimals, read by §8's offsets and block lengths."""
    block, template, schema, version = struct.unpack_from("<HHHH", frame, 0)
    assert (schema, version) == (1, 0)
    root = 8
    pos = root + block
    out: dict[str, Any] = {"template": template}
    if template == 10000:
        et, tt, pe, qe = struct.unpack_from("<qqbb", frame, root)
        entry_block, count = struct.unpack_from("<HI", frame, pos)
        pos += 6
        trades = []
        for _ in range(count):
            tid, p, q, m = struct.unpack_from("<qqqB", frame, pos)
            trades.append((tid, _dec(p, pe), _dec(q, qe), bool(m)))
            pos += entry_block
        out.update(event_time=et, transact_time=tt, trades=trades)
    elif template == 10001:
        et, uid, pe, qe, bp, bq, ap, aq = struct.unpack_from("<qqbbqqqq", frame, root)
        out.update(
            event_time=et, update_id=uid, bid=(_dec(bp, pe), _dec(bq, qe)),
            ask=(_dec(ap, pe), _dec(aq, qe)),
        )  # fmt: skip
    elif template in (10002, 10003):
        if template == 10002:
            et, uid, pe, qe = struct.unpack_from("<qqbb", frame, root)
            out.update(event_time=et, update_id=uid)
        else:
            et, first, last, pe, qe = struct.unpack_from("<qqqbb", frame, root)
            out.update(event_time=et, first_update_id=first, last_update_id=last)
        for side in ("bids", "asks"):
            entry_block, count = struct.unpack_from("<HH", frame, pos)
            pos += 4
            levels = []
            for _ in range(count):
                p, q = struct.unpack_from("<qq", frame, pos)
                levels.append((_dec(p, pe), _dec(q, qe)))
                pos += entry_block
            out[side] = levels
    else:
        raise AssertionError(f"unknown template {template}")
    length = frame[pos]
    out["symbol"] = frame[pos + 1 : pos + 1 + length].decode()
    assert pos + 1 + length == len(frame), "trailing bytes"
    return out
