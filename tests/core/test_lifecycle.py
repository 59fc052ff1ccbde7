"""Connection state transitions, close-frame validation and stats helpers."""

from __future__ import annotations

import pytest

from fastmd import ConnectionState as S, InvalidState
from fastmd.core.lifecycle import check_transition, parse_close_payload
from fastmd.core.stats import LatencyTracker, RateMeter


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.IDLE, S.CONNECTING),
        (S.CONNECTING, S.OPEN),
        (S.OPEN, S.RECONNECTING),
        (S.RECONNECTING, S.CONNECTING),
        (S.CONNECTING, S.CIRCUIT_OPEN),
        (S.CIRCUIT_OPEN, S.CONNECTING),
        (S.OPEN, S.CLOSED),
        (S.CLOSED, S.CLOSED),
    ],
)
def test_legal(old: S, new: S) -> None:
    assert check_transition(old, new) is new


@pytest.mark.parametrize(
    ("old", "new"),
    [(S.CLOSED, S.CONNECTING), (S.IDLE, S.OPEN), (S.CIRCUIT_OPEN, S.OPEN), (S.OPEN, S.IDLE)],
)
def test_illegal(old: S, new: S) -> None:
    with pytest.raises(InvalidState, match=f"{old.name} -> {new.name}"):
        check_transition(old, new)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "", None)),
        (b"\x03\xe8", (1000, "", None)),
        (b"\x03\xe9going away", (1001, "going away", None)),
        (b"\x0f\xa0custom", (4000, "custom", None)),
    ],
)
def test_valid_close_frames(payload: bytes, expected: tuple[int, str, None]) -> None:
    assert parse_close_payload(payload) == expected


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\x03", "1-byte"),
        (b"\x03\xe7", "999"),
        (b"\x03\xec", "1004"),
        (b"\x03\xed", "1005"),
        (b"\x03\xee", "1006"),
        (b"\x03\xf7", "1015"),
        (b"\x13\x88", "5000"),
        (b"\x03\xe8\xff\xfe", "UTF-8"),
    ],
)
def test_invalid_close_frames(payload: bytes, problem: str) -> None:
    _, _, found = parse_close_payload(payload)
    assert found is not None
    assert problem in found


def test_rate_meter_and_latency() -> None:
    meter = RateMeter()
    for second in range(12):
        meter.sample(float(second), second * 100)
    assert meter.rate(12.0, 1200, 1.0) == pytest.approx(100)
    assert meter.rate(12.0, 1300, 10.0) == pytest.approx(110)
    assert RateMeter().rate(1.0, 5, 1.0) == 0
    latency = LatencyTracker(size=200)
    assert latency.snapshot().last is None
    for ms in range(1, 201):
        latency.add(ms / 1000)
    snap = latency.snapshot()
    assert snap.last == pytest.approx(0.2)
    assert snap.mean == pytest.approx(0.1005)
    assert snap.p99 == pytest.approx(0.198)
    assert snap.samples == 200
