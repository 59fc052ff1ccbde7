"""fastmd.aio.clock.ClockSync against the simulator's REST server time: the offset of a skewed
exchange clock (spot and USD-M), the burst then periodic refresh (intervals injected: the test
waits tens of milliseconds, not minutes), failures counted and reported once per episode, the
last estimate kept, and lag corrected by the offset on a real subscription."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

import fastmd
from fastmd import CircuitBreakerPolicy, ErrorReport
from fastmd.aio.clock import ClockSync
from fastmd.aio.reporting import Reporter
from fastmd.aio.rest import RestClient, RestTimeouts
from fastmd.aio.tasks import Tasks
from fastmd.core.clock import ClockOffset
from fastmd.core.streams import Venue
from fastmd.sim import Exchange

PATIENT = CircuitBreakerPolicy(failure_threshold=1000, cooldown=0.1)
# Binance's serverTime is whole milliseconds: truncating it can move a sample by up to 1 ms.
MILLISECOND = 0.001


@dataclass
class Rig:
    ex: Exchange
    rest: RestClient
    reporter: Reporter
    tasks: Tasks
    reports: list[ErrorReport]
    task_errors: list[BaseException]

    def sync(self, **options: Any) -> ClockSync:
        return ClockSync(self.rest, self.reporter, self.tasks, **options)

    def codes(self) -> list[str]:
        return [report.code for report in self.reports]


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    opened: list[tuple[Exchange, aiohttp.ClientSession, Tasks]] = []

    async def make(skew: float = 0.0, venue: Venue = "binance-spot", timeout: float = 10.0) -> Rig:
        ex = Exchange(venue, rate=0, clock_skew=skew)
        await ex.start()
        session = aiohttp.ClientSession()
        rest = RestClient(
            session,
            ex.rest_url,
            venue,
            timeouts=RestTimeouts(total=timeout),
            circuit_breaker=PATIENT,  # the failure tests fail more requests than the default allows
        )
        reports: list[ErrorReport] = []
        task_errors: list[BaseException] = []
        tasks = Tasks(task_errors.append)
        opened.append((ex, session, tasks))
        return Rig(ex, rest, Reporter(reports.append), tasks, reports, task_errors)

    yield make
    for ex, session, tasks in opened:
        await tasks.cancel_all()
        await session.close()
        await ex.stop()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("venue", ["binance-spot", "binance-usdm"])
@pytest.mark.parametrize("skew", [2.5, -1.75, 0.0])
async def test_one_measurement_finds_the_exchange_clock_skew(
    make_rig: MakeRig, venue: Venue, skew: float
) -> None:
    rig: Rig = await make_rig(skew, venue)
    sync = rig.sync(spacing=0.0)
    assert sync.offset is None
    assert await sync.measure()
    assert sync.offset is not None
    assert sync.uncertainty is not None
    assert sync.rtt is not None
    assert abs(sync.offset - skew) <= sync.uncertainty + MILLISECOND + 1e-6
    assert sync.uncertainty < 0.25  # loopback
    assert (sync.measurements, sync.failures, sync.estimator.samples) == (1, 0, 5)
    assert rig.rest.requests == 5
    assert sync.last_sync is not None
    assert rig.reports == []


async def test_a_burst_at_start_then_a_refresh_every_interval(
    make_rig: MakeRig,
) -> None:
    rig: Rig = await make_rig(0.5)
    sync = rig.sync(interval=0.05, burst=3, spacing=0.0)
    sync.start()
    sync.start()  # idempotent: one task
    assert sync.running
    assert len(rig.tasks) == 1
    await until(lambda: sync.measurements >= 3)
    assert rig.rest.requests >= 9
    assert sync.estimator.samples == min(rig.rest.requests, 16)  # the estimator's window
    assert sync.uncertainty is not None
    assert sync.offset == pytest.approx(0.5, abs=sync.uncertainty + MILLISECOND)
    await sync.close()
    assert not sync.running
    assert len(rig.tasks) == 0
    requests = rig.rest.requests
    await asyncio.sleep(0.15)
    assert rig.rest.requests == requests  # stopped: nothing more is sent
    assert rig.task_errors == []


async def test_failures_are_counted_reported_once_per_episode_and_the_estimate_is_kept(
    make_rig: MakeRig,
) -> None:
    rig: Rig = await make_rig(1.0)
    sync = rig.sync(burst=2, spacing=0.0)
    assert await sync.measure()
    kept = sync.offset
    fault = rig.ex.faults.rest_error(503, path="/api/v3/time")
    for _ in range(3):
        assert not await sync.measure()  # never raises
    assert sync.failures == 6
    assert sync.offset == kept
    assert rig.codes() == ["clock_sync_failed"]
    report = rig.reports[0]
    assert isinstance(report.error, fastmd.RestError)
    assert report.error.status == 503
    assert kept is not None
    assert f"keeping {kept:+.3f} s" in report.message
    fault.clear()
    assert await sync.measure()  # the episode is over...
    rig.ex.faults.rest_error(503, path="/api/v3/time")
    assert not await sync.measure()
    assert not await sync.measure()
    assert rig.codes() == ["clock_sync_failed"] * 2  # ...and the next one is reported again
    assert sync.measurements == 2


async def test_a_failure_before_any_estimate_says_lag_is_uncorrected(
    make_rig: MakeRig,
) -> None:
    rig: Rig = await make_rig(timeout=0.2)
    rig.ex.faults.rest_timeout()
    sync = rig.sync(burst=1)
    assert not await sync.measure()
    assert sync.offset is None
    assert rig.codes() == ["clock_sync_failed"]
    assert isinstance(rig.reports[0].error, fastmd.RestTimeoutError)
    assert "uncorrected" in rig.reports[0].message


async def test_after_a_failure_the_task_retries_at_the_retry_interval(
    make_rig: MakeRig,
) -> None:
    rig: Rig = await make_rig(-3.0)
    fault = rig.ex.faults.rest_error(500, path="/api/v3/time")
    sync = rig.sync(interval=3600.0, retry_interval=0.02, burst=1)
    sync.start()
    await until(lambda: sync.failures >= 3)
    assert sync.offset is None
    fault.clear()
    await until(lambda: sync.measurements == 1)
    assert sync.offset == pytest.approx(-3.0, abs=0.25)
    failures = sync.failures
    await asyncio.sleep(0.1)
    assert (sync.measurements, sync.failures) == (1, failures)  # now waits the full interval
    assert rig.codes() == ["clock_sync_failed"]
    sync.stop()
    sync.stop()
    assert rig.task_errors == []


async def test_nonsense_server_times_are_rejected(make_rig: MakeRig) -> None:
    rig: Rig = await make_rig()
    steps = iter([10.0, 9.0])  # our clock steps back between sending and receiving
    sync = rig.sync(burst=1, clock=lambda: next(steps))
    assert not await sync.measure()
    assert sync.failures == 1
    assert sync.estimator.rejected == 1
    assert rig.codes() == ["clock_sync_failed"]


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0.0},
        {"interval": float("inf")},
        {"retry_interval": -1.0},
        {"burst": 0},
        {"spacing": -0.1},
    ],
)
async def test_bad_options_are_value_errors(make_rig: MakeRig, options: dict[str, float]) -> None:
    rig: Rig = await make_rig()
    with pytest.raises(ValueError, match="ClockSync"):
        rig.sync(**options)


async def test_a_shared_estimator_is_fed(make_rig: MakeRig) -> None:
    rig: Rig = await make_rig(0.25)
    estimator = ClockOffset(window=4, best=2)
    sync = ClockSync(rig.rest, rig.reporter, rig.tasks, burst=6, spacing=0.0, estimator=estimator)
    assert await sync.measure()
    assert sync.estimator is estimator
    assert estimator.samples == 4
    assert estimator.offset == sync.offset


async def test_lag_on_a_skewed_exchange_is_corrected_by_the_offset(
    make_rig: MakeRig,
) -> None:
    """The exchange's clock runs 3 s ahead: uncorrected, its trades seem to arrive 3 s before
    they happened; corrected by the measured offset, the lag is the loopback's few ms."""
    skew = 3.0
    rig: Rig = await make_rig(skew)
    sync = rig.sync(spacing=0.0)
    assert await sync.measure()
    seen: list[tuple[float, int]] = []
    async with fastmd.Client(
        rig.ex.venue, ws_url=rig.ex.ws_url, rest_url=rig.ex.rest_url
    ) as client:
        sub = client.subscribe("btcusdt@trade", lambda e: seen.append((time.time(), e.event_time)))
        await sub.wait_active()
        while len(seen) < 20:
            rig.ex.advance(20)
            await asyncio.sleep(0.01)
    raw = [arrived - event / 1000 for arrived, event in seen]
    corrected = [sync.lag(event, arrived) for arrived, event in seen]
    assert max(raw) < -skew + 0.5  # uncorrected: "before it happened"
    assert sync.uncertainty is not None
    bound = sync.uncertainty + MILLISECOND
    # Corrected, every lag is the real delivery time (event times are whole ms: up to 1 ms more).
    assert min(corrected) >= -bound
    assert max(corrected) < 0.5
