"""The simulator's REST server: request-weight windows, 429/418 bans and the injected faults.

Time is the injected clock: windows and bans move with it, no test sleeps for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest

import fastmd
from fastmd.core.streams import Venue
from fastmd.sim.limits import SimLimits
from fastmd.sim.market import Market
from fastmd.sim.rest import RestServer

MINUTE_START = 1_700_000_040.0  # a whole minute (1_700_000_040 = 28_333_334 * 60)
ADDRESS = "127.0.0.1"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def error(self) -> tuple[int, str]:
        err = msgspec.json.decode(self.body, type=fastmd.RestErrorBody)
        return err.code, err.msg

    @property
    def weight(self) -> int:
        return int(self.headers["X-MBX-USED-WEIGHT-1M"])


@dataclass
class Harness:
    server: RestServer
    clock: FakeClock
    http: aiohttp.ClientSession
    prefix: str

    async def get(self, path: str, params: Any = None, **kwargs: Any) -> Reply:
        url = path if path.startswith("/") else self.prefix + path
        async with self.http.get(url, params=params, **kwargs) as response:
            return Reply(response.status, response.headers, await response.read())


Factory = Callable[..., Any]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    """Start servers on demand (``await make(venue, **limit_changes)``); all stop at teardown."""
    started: list[tuple[RestServer, aiohttp.ClientSession]] = []

    async def factory(venue: Venue = "binance-spot", **changes: Any) -> Harness:
        clock = FakeClock(MINUTE_START - 120)
        market = Market(venue, ["BTCUSDT", "ETHUSDT"], seed=3, clock=clock)
        for _ in range(500):
            clock.now += 0.1
            market.step()
        clock.now = MINUTE_START + 10  # ten seconds into a fresh minute window
        limits = SimLimits.for_venue(venue).with_(**changes)
        server = RestServer(venue=venue, market=market, limits=limits, clock=clock)
        port = await server.start("127.0.0.1", 0)
        http = aiohttp.ClientSession(f"http://127.0.0.1:{port}")
        started.append((server, http))
        prefix = "/api/v3/" if venue == "binance-spot" else "/fapi/v1/"
        return Harness(server, clock, http, prefix)

    yield factory
    for server, http in started:
        await http.close()
        await server.stop()


DEPTH = {"symbol": "BTCUSDT"}  # spot weight 5


# -- weight window ---------------------------------------------------------------------------


async def test_used_weight_header_accumulates_per_window(make: Factory) -> None:
    h = await make()
    weights = [(await h.get("depth", DEPTH)).weight for _ in range(3)]
    assert weights == [5, 10, 15]
    assert h.server.used_weight(ADDRESS) == 15
    assert h.server.used_weight("10.0.0.1") == 0
    h.clock.now += 49.999  # still the same minute
    assert (await h.get("ping")).weight == 16
    h.clock.now = MINUTE_START + 60  # the next minute: a fresh window
    assert h.server.used_weight(ADDRESS) == 0
    reply = await h.get("ping")
    assert (reply.weight, reply.headers["X-MBX-USED-WEIGHT"]) == (1, "1")


async def test_429_past_the_limit_with_retry_after(make: Factory) -> None:
    h = await make(rest_weight_per_minute=50)
    for _ in range(10):
        assert (await h.get("depth", DEPTH)).status == 200
    reply = await h.get("depth", DEPTH)
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "50"  # seconds to the next minute
    assert reply.weight == 55  # charged before the check
    assert reply.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert reply.error() == (
        -1003,
        "Too much request weight used; current limit is 50 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    )
    h.clock.now += 30.5
    assert (await h.get("ping")).headers["Retry-After"] == "20"  # rounded up
    h.clock.now = MINUTE_START + 60
    reply = await h.get("depth", DEPTH)
    assert (reply.status, reply.weight) == (200, 5)


async def test_exchange_info_advertises_the_enforced_limit(make: Factory) -> None:
    h = await make(rest_weight_per_minute=50)
    info = msgspec.json.decode((await h.get("exchangeInfo")).body, type=fastmd.ExchangeInfo)
    weight = next(r for r in info.rate_limits if r.rate_limit_type == "REQUEST_WEIGHT")
    assert weight.limit == 50


async def test_ban_after_repeated_429s_and_escalation(make: Factory) -> None:
    h = await make(rest_weight_per_minute=50, rest_ban_after_429s=3, rest_ban_seconds=120.0)
    for _ in range(10):
        await h.get("depth", DEPTH)
    statuses = [(await h.get("depth", DEPTH)).status for _ in range(3)]
    assert statuses == [429, 429, 429]
    start = h.clock.now
    reply = await h.get("depth", DEPTH)
    assert reply.status == 418
    assert reply.headers["Retry-After"] == "120"
    until = int((start + 120) * 1000)
    assert reply.error() == (
        -1003,
        f"Way too much request weight used; IP banned until {until}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
    )
    # During the ban everything is 418, even in a new minute and for weightless paths.
    h.clock.now += 70
    reply = await h.get("ping")
    assert (reply.status, reply.headers["Retry-After"]) == (418, "50")
    assert reply.error()[1] == msgspec.json.decode((await h.get("time")).body)["msg"]
    h.clock.now = start + 120
    assert (await h.get("depth", DEPTH)).status == 200
    # A second offence: the ban doubles.
    for _ in range(14):
        await h.get("depth", DEPTH)
    reply = await h.get("depth", DEPTH)
    assert (reply.status, reply.headers["Retry-After"]) == (418, "240")
    h.clock.now += 240
    for _ in range(15):
        await h.get("depth", DEPTH)
    assert (await h.get("depth", DEPTH)).headers["Retry-After"] == "480"


async def test_ban_with_zero_tolerance_and_the_three_day_cap(make: Factory) -> None:
    h = await make(rest_weight_per_minute=5, rest_ban_after_429s=0, rest_ban_seconds=100_000.0)
    for expected in ("100000", "200000", "259200"):  # doubling, capped at 3 days
        assert (await h.get("depth", DEPTH)).status == 200
        reply = await h.get("ping")
        assert (reply.status, reply.headers["Retry-After"]) == (418, expected)
        h.clock.now += int(expected)


async def test_futures_rate_limit_messages(make: Factory) -> None:
    h = await make("binance-usdm", rest_weight_per_minute=10, rest_ban_after_429s=1)
    for _ in range(5):
        assert (await h.get("depth", {"symbol": "BTCUSDT", "limit": "5"})).status == 200
    reply = await h.get("depth", {"symbol": "BTCUSDT", "limit": "5"})
    assert reply.status == 429
    assert reply.error() == (
        -1003,
        f"Too many requests; current limit of IP({ADDRESS}) is 10 requests per minute. "
        "Please use the websocket for live updates to avoid polling the API.",
    )
    reply = await h.get("ping")
    assert reply.status == 418
    until = int((h.clock.now + 120) * 1000)
    assert reply.error()[1] == (
        f"Way too many requests; IP({ADDRESS}) banned until {until}. "
        "Please use the websocket for live updates to avoid bans."
    )


# -- injected errors -------------------------------------------------------------------------


async def test_error_fault_429_with_count(make: Factory) -> None:
    h = await make()
    h.server.set_error(429, count=2)
    for _ in range(2):
        reply = await h.get("depth", DEPTH)
        assert reply.status == 429
        assert reply.headers["Retry-After"] == "50"
        assert reply.error()[0] == -1003
        assert "6000 request weight per 1 MINUTE" in reply.error()[1]
    reply = await h.get("depth", DEPTH)
    assert reply.status == 200
    assert reply.weight == 5  # injected answers charge nothing


async def test_error_fault_418_with_retry_after(make: Factory) -> None:
    h = await make()
    h.server.set_error(418, retry_after=30)
    for _ in range(2):
        reply = await h.get("ping")
        assert (reply.status, reply.headers["Retry-After"]) == (418, "30")
        until = int((h.clock.now + 30) * 1000)
        assert reply.error()[1].startswith(
            f"Way too much request weight used; IP banned until {until}."
        )
    h.server.set_error(None)
    assert (await h.get("ping")).status == 200
    h.server.set_error(418)
    assert (await h.get("ping")).headers["Retry-After"] == "120"  # rest_ban_seconds
    h.server.set_error(429, retry_after=0.25)
    assert (await h.get("ping")).headers["Retry-After"] == "0.25"


async def test_error_fault_5xx_and_paths(make: Factory) -> None:
    h = await make()
    h.server.set_error(500)
    for _ in range(3):
        reply = await h.get("time")
        assert reply.status == 500
        assert reply.error() == (-1000, "An unknown error occurred while processing the request.")
        assert "X-MBX-USED-WEIGHT-1M" in reply.headers
    h.server.set_error(None)
    assert (await h.get("time")).status == 200
    h.server.set_error(503, path="/api/v3/depth")
    assert (await h.get("ping")).status == 200
    reply = await h.get("depth", DEPTH)
    assert reply.status == 503
    assert reply.error() == (
        -1008,
        "Server is currently overloaded with other requests. Please try again in a few minutes.",
    )
    h.server.set_error(502, path="ticker/price", count=1)  # a bare endpoint name
    assert (await h.get("ticker/price")).status == 502
    assert (await h.get("ticker/price")).status == 200
    assert (await h.get("depth", DEPTH)).status == 200  # the new fault replaced the old one
    with pytest.raises(ValueError, match="status"):
        h.server.set_error(200)
    with pytest.raises(ValueError, match="count"):
        h.server.set_error(500, count=0)


# -- delay and timeout -----------------------------------------------------------------------


async def test_delay_fault(make: Factory) -> None:
    h = await make()
    h.server.set_delay(0.3)
    began = time.monotonic()
    reply = await h.get("ping")
    assert reply.status == 200
    assert time.monotonic() - began >= 0.25
    h.server.set_delay(None)
    began = time.monotonic()
    assert (await h.get("ping")).status == 200
    assert time.monotonic() - began < 0.25
    with pytest.raises(ValueError, match="delay"):
        h.server.set_delay(-1)


async def test_timeout_fault_then_cleared(make: Factory) -> None:
    h = await make()
    h.server.set_timeout(True)
    with pytest.raises(asyncio.TimeoutError):
        await h.get("ping", timeout=aiohttp.ClientTimeout(total=0.3))
    pending = asyncio.create_task(h.get("depth", DEPTH))
    await asyncio.sleep(0.1)
    assert not pending.done()
    h.server.set_timeout(False)
    reply = await asyncio.wait_for(pending, 5)
    assert reply.status == 503
    assert reply.error()[0] == -1007
    assert (await h.get("ping")).status == 200
    assert h.server.requests == 3


async def test_stop_answers_pending_requests_and_is_idempotent(make: Factory) -> None:
    h = await make()
    h.server.set_timeout(True)
    pending = asyncio.create_task(h.get("ping"))
    delayed_server = await make()
    delayed_server.server.set_delay(30)
    delayed = asyncio.create_task(delayed_server.get("ping"))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    await h.server.stop()
    await delayed_server.server.stop()
    assert time.monotonic() - began < 5
    assert (await asyncio.wait_for(pending, 5)).status == 503
    assert (await asyncio.wait_for(delayed, 5)).status == 200  # the delay ends with the server
    await h.server.stop()  # idempotent
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.get("ping")
