"""The sliding-window pacer never allows more than the budget in any window."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from fastmd.core.pacing import Pacer


def test_fifth_send_waits_for_the_window() -> None:
    pacer = Pacer(4, 1.0, min_interval=0.0)
    for t in (0.0, 0.1, 0.2, 0.3):
        assert pacer.delay(t) == 0
        pacer.record(t)
    assert pacer.delay(0.4) == pytest.approx(0.6)
    assert pacer.delay(1.0) == 0
    assert pacer.in_window(1.0) == 3


def test_sends_are_spaced_so_network_delay_cannot_bunch_them() -> None:
    pacer = Pacer(4, 1.0)  # min_interval defaults to window / max: 0.25 s
    assert pacer.delay(0.0) == 0
    pacer.record(0.0)
    assert pacer.delay(0.1) == pytest.approx(0.15)
    assert pacer.delay(0.25) == 0
    now = 0.25
    for _ in range(10):  # a sender that waits as told sends exactly every 0.25 s
        pacer.record(now)
        now += pacer.delay(now)
        assert pacer.in_window(now) <= 4
    assert now == pytest.approx(2.75)


@given(st.lists(st.floats(0, 0.5), min_size=1, max_size=200), st.integers(1, 6))
def test_any_window_holds_at_most_the_budget(gaps: list[float], budget: int) -> None:
    pacer = Pacer(budget, 1.0)
    sent: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        now += pacer.delay(now)  # a sender that waits as told
        pacer.record(now)
        sent.append(now)
    for i, start in enumerate(sent):
        inside = [t for t in sent[i:] if t < start + 1.0 - 1e-9]
        assert len(inside) <= budget


def test_invalid() -> None:
    with pytest.raises(ValueError, match="Pacer"):
        Pacer(0)
