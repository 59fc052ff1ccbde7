"""Heartbeat and data-silence decisions, driven by a fake clock."""

from __future__ import annotations

import pytest

from fastmd import Heartbeat
from fastmd.core.liveness import Liveness, LivenessAction as Act


def test_pings_on_schedule_and_measures_round_trip() -> None:
    live = Liveness(Heartbeat(interval=30, timeout=5), None, now=0.0)
    assert live.poll(29.9, 0, 0) is Act.NOTHING
    assert live.poll(30.0, 0, 0) is Act.SEND_PING
    payload = live.ping_payload(30.0, frames_total=0)
    assert live.awaiting_pong
    assert live.on_pong(b"bogus", 30.1) is None
    assert live.on_pong(payload, 30.25) == pytest.approx(0.25)
    assert not live.awaiting_pong
    assert live.poll(59.9, 0, 1) is Act.NOTHING
    assert live.poll(60.0, 0, 1) is Act.SEND_PING


def test_no_pong_and_no_data_is_dead() -> None:
    live = Liveness(Heartbeat(interval=1, timeout=1), None, now=0.0)
    assert live.poll(1.0, 0, 0) is Act.SEND_PING
    live.ping_payload(1.0, frames_total=7)
    assert live.poll(1.99, 0, 7) is Act.NOTHING
    assert live.poll(2.0, 0, 7, socket_idle=1.5) is Act.DEAD
    assert live.next_deadline(1.5) == pytest.approx(2.0)


def test_data_counts_as_liveness_without_pong() -> None:
    live = Liveness(Heartbeat(interval=1, timeout=1), None, now=0.0)
    live.ping_payload(1.0, frames_total=3)
    assert live.poll(2.5, 10, 4) is not Act.DEAD  # frames arrived since the ping
    assert not live.awaiting_pong


def test_bytes_still_arriving_count_as_liveness() -> None:
    # A large frame trickling in completes no frame, but the socket saw bytes 0.2 s ago.
    live = Liveness(Heartbeat(interval=1, timeout=1), None, now=0.0)
    live.ping_payload(1.0, frames_total=3)
    assert live.poll(2.5, 0, 3, socket_idle=0.2) is not Act.DEAD


def test_stale_data_while_pings_succeed() -> None:
    live = Liveness(Heartbeat(interval=1, timeout=1), stale_after=5.0, now=0.0)
    assert live.poll(3.0, 1, 1) is Act.SEND_PING  # a data frame arrived by t=3
    payload = live.ping_payload(3.0, 1)
    assert live.on_pong(payload, 3.01) is not None
    assert live.poll(7.9, 1, 2) is Act.SEND_PING
    live.on_pong(live.ping_payload(7.9, 2), 7.95)
    assert live.poll(8.0, 1, 3) is Act.STALE  # no data frame since t=3
    assert Liveness(Heartbeat(), None, 0.0).poll(10_000, 0, 0) is Act.SEND_PING


def test_invalid_heartbeat() -> None:
    with pytest.raises(ValueError, match="Heartbeat"):
        Heartbeat(interval=0)
