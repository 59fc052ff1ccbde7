"""The simulator's faults for stream health (issue 13), as a client sees them on the wire:

- ``faults.mute_stream``: one stream goes silent while the others on the same connection keep
  flowing, for every stream kind the simulator publishes, on both venues; clearing it resumes
  the stream; its scopes (every connection and later ones, one connection, until resubscribed)
  and its duration;
- ``Exchange(clock_skew=...)``: REST ``serverTime`` and the event times the streams carry are
  shifted by the skew.

The market moves only when told to (``rate=0``) on a settable wall clock, so a simulated second
costs a few milliseconds and every run sends the same frames.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from fastmd.sim import Exchange, SimLimits

SPOT_STREAMS = [
    "btcusdt@trade",
    "btcusdt@aggTrade",
    "btcusdt@blockTrade",
    "btcusdt@kline_1s",
    "btcusdt@miniTicker",
    "btcusdt@ticker",
    "btcusdt@ticker_1h",
    "btcusdt@bookTicker",
    "btcusdt@avgPrice",
    "btcusdt@referencePrice",
    "btcusdt@depth@100ms",
    "btcusdt@depth5@100ms",
    "!miniTicker@arr",
    "!ticker_1h@arr",
]
USDM_PUBLIC = ["btcusdt@bookTicker", "btcusdt@depth@100ms", "btcusdt@depth5@100ms", "!bookTicker"]
USDM_MARKET = [
    "btcusdt@aggTrade",
    "btcusdt@kline_1m",
    "btcusdt@miniTicker",
    "btcusdt@ticker",
    "btcusdt@markPrice@1s",
    "btcusdt@forceOrder",
    "!miniTicker@arr",
    "!ticker@arr",
    "!markPrice@arr@1s",
    "!forceOrder@arr",
]
# Published on some market orders only: within a few simulated seconds they may not appear.
RARE = {"btcusdt@blockTrade", "btcusdt@forceOrder", "!forceOrder@arr"}
STEP = 0.05  # simulated seconds per drive step


class Wall:
    """A settable wall clock (seconds)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Feed:
    """One combined-stream connection and the data frames it received, per stream."""

    def __init__(self, ws: ClientConnection, streams: list[str]) -> None:
        self.ws = ws
        self.streams = streams
        self.seen: Counter[str] = Counter()
        self.last: dict[str, Any] = {}
        self._ids = itertools.count(1)

    async def sync(self) -> None:
        """Read until the reply to a request sent now: every data frame the server wrote
        before it has then been counted (one connection keeps its order)."""
        rid = next(self._ids)
        await self.ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": rid}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
            if "stream" in message:
                self.seen[message["stream"]] += 1
                self.last[message["stream"]] = message["data"]
            elif message.get("id") == rid:
                return

    async def control(self, method: str, *streams: str) -> None:
        rid = next(self._ids)
        await self.ws.send(json.dumps({"method": method, "params": list(streams), "id": rid}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
            if "stream" in message:
                self.seen[message["stream"]] += 1
            elif message.get("id") == rid:
                assert message["result"] is None
                return


class Rig:
    def __init__(self, ex: Exchange, wall: Wall) -> None:
        self.ex = ex
        self.wall = wall
        self.feeds: list[Feed] = []

    async def feed(self, streams: list[str], path: str = "/stream") -> Feed:
        url = f"{self.ex.ws_url}{path}?streams={'/'.join(streams)}"
        ws = await connect(url, max_size=None)
        feed = Feed(ws, streams)
        self.feeds.append(feed)
        await feed.sync()  # subscribed once the server answers
        return feed

    async def drive(self, seconds: float, steps: int = 10) -> None:
        """Move the market ``seconds`` of simulated time, then read what it sent."""
        for _ in range(round(seconds / STEP)):
            self.wall.now += STEP
            self.ex.advance(steps)
        for feed in self.feeds:
            await feed.sync()

    def reset(self) -> None:
        for feed in self.feeds:
            feed.seen.clear()

    async def drive_until(self, feed: Feed, stream: str, cap: float = 60.0) -> bool:
        """Drive a simulated second at a time until ``feed`` got ``stream`` (at most ``cap``)."""
        for _ in range(round(cap)):
            if feed.seen[stream]:
                return True
            await self.drive(1.0)
        return bool(feed.seen[stream])


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    made: list[Rig] = []

    async def make(venue: str = "binance-spot", **options: Any) -> Rig:
        wall = Wall()
        limits = SimLimits.for_venue(venue).with_(max_incoming_per_second=1000)  # type: ignore[arg-type]
        ex = Exchange(venue, rate=0, seed=3, limits=limits, clock=wall, **options)  # type: ignore[arg-type]
        await ex.start()
        rig = Rig(ex, wall)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        for feed in rig.feeds:
            await feed.ws.close()
        await rig.ex.stop()


# -- mute_stream: every kind ------------------------------------------------------------------


async def _feeds(rig: Rig, venue: str) -> list[Feed]:
    if venue == "binance-spot":
        return [await rig.feed(SPOT_STREAMS)]
    return [
        await rig.feed(USDM_PUBLIC, "/public/stream"),
        await rig.feed(USDM_MARKET, "/market/stream"),
    ]


@pytest.mark.parametrize("venue", ["binance-spot", "binance-usdm"])
async def test_muting_one_stream_of_any_kind_leaves_the_others_flowing(
    make_rig: MakeRig, venue: str
) -> None:
    rig: Rig = await make_rig(venue)
    feeds = await _feeds(rig, venue)
    await rig.drive(4.0)
    for feed in feeds:  # without a fault, every stream flows
        for stream in feed.streams:
            assert await rig.drive_until(feed, stream), f"{stream} never published"
    for feed in feeds:
        for muted in feed.streams:
            fault = rig.ex.faults.mute_stream(muted)
            assert fault.active
            rig.reset()
            await rig.drive(4.0)
            assert feed.seen[muted] == 0, f"{muted} was muted"
            flowing = {s for s in feed.streams if s not in RARE and s != muted}
            assert {s for s in flowing if feed.seen[s]} == flowing, f"muting {muted}"
            fault.clear()
            assert not fault.active
            assert await rig.drive_until(feed, muted), f"{muted} did not resume"


# -- mute_stream: scopes -------------------------------------------------------------------------

WITNESS = "btcusdt@bookTicker"
TRADES = "btcusdt@trade"


async def test_a_mute_of_every_connection_survives_resubscription_and_new_connections(
    make_rig: MakeRig,
) -> None:
    rig: Rig = await make_rig()
    first = await rig.feed([TRADES, WITNESS])
    fault = rig.ex.faults.mute_stream(TRADES)
    await first.control("UNSUBSCRIBE", TRADES)
    await first.control("SUBSCRIBE", TRADES)
    second = await rig.feed([TRADES, WITNESS])  # e.g. the client's replacement connection
    await rig.drive(2.0)
    for feed in (first, second):
        assert (feed.seen[TRADES], feed.seen[WITNESS] > 0) == (0, True)
    rig.ex.faults.clear()  # clear() ends mutes too
    assert not fault.active
    rig.reset()
    await rig.drive(2.0)
    assert first.seen[TRADES] > 0
    assert second.seen[TRADES] > 0


async def test_a_mute_until_resubscribed_ends_per_connection_on_resubscription(
    make_rig: MakeRig,
) -> None:
    rig: Rig = await make_rig()
    first = await rig.feed([TRADES, WITNESS])
    second = await rig.feed([TRADES, WITNESS])
    rig.ex.faults.mute_stream(TRADES, until_resubscribed=True)
    await rig.drive(2.0)
    assert (first.seen[TRADES], second.seen[TRADES]) == (0, 0)
    await first.control("UNSUBSCRIBE", TRADES)
    await first.control("SUBSCRIBE", TRADES)
    third = await rig.feed([TRADES, WITNESS])  # a new connection subscribes anew
    rig.reset()
    await rig.drive(2.0)
    assert first.seen[TRADES] > 0
    assert third.seen[TRADES] > 0
    assert second.seen[TRADES] == 0  # it did not resubscribe
    assert second.seen[WITNESS] > 0


async def test_a_mute_of_one_connection_leaves_the_others(make_rig: MakeRig) -> None:
    rig: Rig = await make_rig()
    first = await rig.feed([TRADES, WITNESS])
    second = await rig.feed([TRADES, WITNESS])
    target = max(conn.id for conn in rig.ex.connections)
    fault = rig.ex.faults.mute_stream(TRADES, connection=target)
    await rig.drive(2.0)
    assert (first.seen[TRADES] > 0, second.seen[TRADES]) == (True, 0)
    assert second.seen[WITNESS] > 0
    await second.control("UNSUBSCRIBE", TRADES)
    await second.control("SUBSCRIBE", TRADES)
    rig.reset()
    await rig.drive(1.0)
    assert second.seen[TRADES] == 0  # not until_resubscribed: still muted
    fault.clear()
    await rig.drive(1.0)
    assert second.seen[TRADES] > 0


async def test_a_mute_with_a_duration_ends_by_itself(make_rig: MakeRig) -> None:
    rig: Rig = await make_rig()
    feed = await rig.feed([TRADES, WITNESS])
    fault = rig.ex.faults.mute_stream(TRADES, duration=0.05)
    await rig.drive(1.0)
    assert feed.seen[TRADES] == 0
    await asyncio.sleep(0.1)
    assert not fault.active
    await rig.drive(1.0)
    assert feed.seen[TRADES] > 0


async def test_muting_an_invalid_stream_name_is_a_value_error(
    make_rig: MakeRig,
) -> None:
    rig: Rig = await make_rig()
    with pytest.raises(ValueError, match="cannot mute 'BTCUSDT@trade'"):
        rig.ex.faults.mute_stream("BTCUSDT@trade")
    feed = await rig.feed([TRADES])
    await rig.drive(1.0)
    assert feed.seen[TRADES] > 0
    assert not rig.ex.ws.faulty  # nothing was left in force


# -- clock skew --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("venue", "path"), [("binance-spot", "/api/v3/time"), ("binance-usdm", "/fapi/v1/time")]
)
@pytest.mark.parametrize("skew", [7.25, -3.5])
async def test_a_skewed_clock_shifts_rest_server_time(
    make_rig: MakeRig, venue: str, path: str, skew: float
) -> None:
    rig: Rig = await make_rig(venue, clock_skew=skew)
    assert rig.ex.clock_skew == skew
    assert rig.ex.clock() == pytest.approx(rig.wall.now + skew)
    async with aiohttp.ClientSession() as session, session.get(rig.ex.rest_url + path) as answer:
        body = await answer.json()
    assert body["serverTime"] == int((rig.wall.now + skew) * 1000)


@pytest.mark.parametrize("skew", [7.25, -3.5])
async def test_a_skewed_clock_shifts_every_event_time(make_rig: MakeRig, skew: float) -> None:
    rig: Rig = await make_rig(clock_skew=skew)
    timed = [s for s in SPOT_STREAMS if s not in RARE and s != WITNESS]  # spot bookTicker: no E
    feed = await rig.feed(timed)
    for _ in range(40):  # one step at a time: each frame's times are those of its last step
        await rig.drive(STEP)
        now_ms = int((rig.wall.now + skew) * 1000)
        for stream, data in feed.last.items():
            events = data if isinstance(data, list) else [data]
            for event in events:
                if "lastUpdateId" in event:
                    continue  # spot partial depth carries no time
                stamp = event.get("E", event.get("t"))  # referencePrice: "t"
                assert stamp is not None, stream
                assert now_ms - 1000 * STEP <= stamp <= now_ms, stream
                if event.get("e") == "trade":
                    assert event["T"] == stamp
        feed.last.clear()
    assert set(feed.seen) == set(timed)


@pytest.mark.parametrize("skew", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_skew_is_a_value_error(skew: float) -> None:
    with pytest.raises(ValueError, match="clock_skew"):
        Exchange(clock_skew=skew)
