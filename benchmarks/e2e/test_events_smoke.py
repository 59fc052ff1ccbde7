"""Smoke test of the per-event-type end-to-end benchmark (benchmarks/e2e/events.py): its frames
are clean streams for fastmd (no gap, no duplicate), every client decodes them to the right
event, and one two-process run completes. Correctness only: nothing here is timed."""

from __future__ import annotations

import fastmd
from benchmarks.e2e import events


def test_frames_are_clean_streams() -> None:
    for event, (stream, _) in events.EVENTS.items():
        decoder = fastmd.Decoder()
        decoder.register([stream])
        payloads = events.frames(event, 3)
        decoded = [decoder.decode(memoryview(p)) for p in payloads]
        assert all(m.stream == stream for m in decoded), event
        assert all(isinstance(m.event, events.event_type(event)) for m in decoded), event
        assert all(m.event.symbol == events.SYMBOL for m in decoded), event
        bare = events.envelope_decoder(event)
        assert [bare(p).data for p in payloads] == [m.event for m in decoded], event
        assert len(set(payloads)) == 3, f"{event}: frames must differ (sequence keys advance)"


def test_frames_pass_fastmd_sequence_checks() -> None:
    from fastmd.core.sequence import sequencer_for
    from fastmd.core.streams import parse_stream

    for event, (stream, _) in events.EVENTS.items():
        gaps: list[object] = []
        sequencer = sequencer_for(parse_stream(stream), stream, gaps.append, futures=False)
        decoder = fastmd.Decoder()
        decoder.register([stream])
        for payload in events.frames(event, 5):
            message = decoder.decode(memoryview(payload))
            if sequencer is not None:
                assert sequencer.check(message.event), f"{event}: dropped as a duplicate"
        assert gaps == [], event


def test_one_run_end_to_end() -> None:
    result = events.run_pair("fastmd", "trade", warmup=100, messages=400, timeout=60.0)
    assert result["complete"]
    assert result["received"] == 500
    assert result["gaps"] == 0
    assert result["duplicates"] == 0
