"""relay -> real nats-server -> Source, end to end: the simulator feeds the relay's client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import NatsServer, by_stream, recorded_events, until
from testdata import RECORDING

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'fastmd[nats]'")

import fastmd
from fastmd.core.sequence import Gap, GapReason
from fastmd.nats import Source
from fastmd.relay import Relay
from fastmd.sim import Exchange

pytestmark = pytest.mark.timeout(60)


async def test_every_replayed_event_arrives_once_in_order_at_two_consumers(
    nats_server: NatsServer,
) -> None:
    recorded = recorded_events()
    expected = by_stream(recorded)
    streams = sorted(expected)
    got: list[dict[str, list[Any]]] = [defaultdict(list), defaultdict(list)]
    gaps: list[Gap] = []
    async with (
        Exchange(replay=RECORDING, replay_speed=None, replay_autostart=False) as ex,
        Source(nats_server.url) as first,
        Source(nats_server.url) as second,
    ):
        for source, sink in zip((first, second), got, strict=True):
            source.on_gap(gaps.append)
            for stream in streams:
                await source.subscribe(stream, sink[stream].append).wait_active(5)
        async with Relay(streams, nats=nats_server.url, ws_url=ex.ws_url, rest_url=ex.rest_url,
                         batch_size=7) as relay:  # fmt: skip
            await relay.wait_connected(5)
            await until(lambda: relay.client.status == "CONNECTED")
            await asyncio.sleep(0.3)  # every stream acknowledged by the simulator
            ex.start_replay()
            assert await ex.wait_replayed() == len(recorded)
            total = len(recorded)
            await until(lambda: all(sum(map(len, g.values())) >= total for g in got))
            await asyncio.sleep(0.2)  # nothing more may come
            assert relay.stats.published == total
            assert relay.stats.dropped == 0
        health = first.health()
    assert gaps == []
    for sink in got:
        assert dict(sink) == dict(expected)
    assert sum(s.events for s in health.streams.values()) == len(recorded)
    assert all(s.duplicates == 0 for s in health.streams.values())


@contextlib.asynccontextmanager
async def _consumer(url: str, stream: str) -> AsyncIterator[tuple[list[Any], list[Gap]]]:
    """A Source subscribed (and active) on ``stream``: the events it got and the gaps it saw."""
    got: list[Any] = []
    gaps: list[Gap] = []
    async with Source(url) as source:
        source.on_gap(gaps.append)
        await source.subscribe(stream, got.append).wait_active(5)
        yield got, gaps


def _trade_ids(events: list[Any]) -> list[int]:
    return [e.trade_id for e in events]


async def test_a_nats_outage_is_reported_and_brings_no_duplicates(
    nats_server: NatsServer,
) -> None:
    streams = ["btcusdt@trade", "ethusdt@trade"]
    got: dict[str, list[Any]] = defaultdict(list)
    gaps: list[Gap] = []
    async with (
        Exchange("binance-spot", ["BTCUSDT", "ETHUSDT"], rate=3000.0) as ex,
        Relay(streams, nats=nats_server.url, ws_url=ex.ws_url, rest_url=ex.rest_url,
              max_buffered=200) as relay,
        Source(nats_server.url) as source,
    ):  # fmt: skip
        source.on_gap(gaps.append)
        for stream in streams:
            await source.subscribe(stream, got[stream].append).wait_active(5)
        await until(lambda: all(len(got[s]) > 20 for s in streams))
        nats_server.stop()
        await until(lambda: not relay.nats_connected and not source.health().connected)
        await asyncio.sleep(0.5)  # the exchange goes on: the relay buffers, then drops
        nats_server.start()
        await until(lambda: relay.nats_connected and source.health().connected, 15)
        before = {s: len(got[s]) for s in streams}
        await until(lambda: all(len(got[s]) > before[s] + 20 for s in streams))
        assert relay.stats.outages >= 1
        assert relay.stats.dropped > 0
    reported = {gap.stream for gap in gaps if gap.reason is GapReason.RECONNECT}
    assert reported == set(streams)
    for stream in streams:
        ids = _trade_ids(got[stream])
        assert ids == sorted(set(ids)), "a duplicate or a reordering"
        missing = sum(g.missing for g in gaps if g.stream == stream)
        assert missing > 0  # the relay dropped events while NATS was away, and said so


async def _worker_pids(stderr: asyncio.StreamReader, count: int) -> dict[int, int]:
    pids: dict[int, int] = {}
    while len(pids) < count:
        line = (await stderr.readline()).decode()
        assert line, "fastmd relay ended"
        found = re.search(r"worker (\d+) pid (\d+)", line)
        if found:
            pids[int(found.group(1))] = int(found.group(2))
    return pids


async def test_a_killed_relay_worker_is_restarted_and_its_restart_reported(
    nats_server: NatsServer,
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"]
    streams = [f"{s.lower()}@trade" for s in symbols]
    got: dict[str, list[Any]] = defaultdict(list)
    gaps: list[Gap] = []
    async with (
        Exchange("binance-spot", symbols, rate=400.0) as ex,
        Source(nats_server.url) as source,
    ):
        source.on_gap(gaps.append)
        for stream in streams:
            await source.subscribe(stream, got[stream].append).wait_active(5)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastmd", "relay", *streams, "--nats", nats_server.url,
            "--url", ex.ws_url, "--rest-url", ex.rest_url, "--workers", "2",
            "--relay-id", "test", stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stderr is not None
        try:
            pids = await asyncio.wait_for(_worker_pids(process.stderr, 2), 15)
            await until(lambda: all(len(got[s]) > 5 for s in streams), 20)
            relays = source.health().relays
            await until(lambda: {"test-w0", "test-w1"} <= set(source.health().relays), 5)
            relays = source.health().relays
            owned = {s: r for r in relays.values() for s in r.streams}
            assert set(owned) == set(streams)  # disjoint shards cover every stream
            epoch = relays["test-w0"].epoch
            os.kill(pids[0], signal.SIGKILL)
            killed = [s for s, r in owned.items() if r.relay == "test-w0"]
            await until(lambda: source.health().relays["test-w0"].epoch != epoch, 20)
            await until(lambda: {g.stream for g in gaps} >= set(killed), 20)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 15)
    assert {g.reason for g in gaps} == {GapReason.RECONNECT}
    assert {g.stream for g in gaps} == set(killed)
    for stream in streams:
        ids = _trade_ids(got[stream])
        assert ids == sorted(set(ids))


SLOW_CONSUMER = """
import asyncio, json, sys, time
from fastmd.nats import Source

async def main():
    gaps = []
    async with Source(sys.argv[1], pending_limit=16) as source:
        source.on_gap(gaps.append)
        await source.subscribe(sys.argv[2], lambda event: time.sleep(0.005)).wait_active(5)
        print("ready", flush=True)
        deadline = time.monotonic() + float(sys.argv[3])
        while not gaps and time.monotonic() < deadline:  # until it fell behind
            await asyncio.sleep(0.05)
    print(json.dumps([[g.reason, g.missing] for g in gaps]), flush=True)

asyncio.run(main())
"""


async def test_a_slow_consumer_slows_neither_the_relay_nor_other_consumers(
    nats_server: NatsServer,
) -> None:
    stream = "btcusdt@trade"
    async with (
        Exchange("binance-spot", ["BTCUSDT"], rate=3000.0) as ex,
        _consumer(nats_server.url, stream) as (got, gaps),
    ):
        slow = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SLOW_CONSUMER, nats_server.url, stream, "15",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert slow.stdout is not None
        assert (await asyncio.wait_for(slow.stdout.readline(), 15)).strip() == b"ready"
        async with Relay([stream], nats=nats_server.url, ws_url=ex.ws_url,
                         rest_url=ex.rest_url) as relay:  # fmt: skip
            out, _ = await asyncio.wait_for(slow.communicate(), 30)
            stats = relay.stats
    slow_gaps = json.loads(out.decode().strip().splitlines()[-1])
    assert slow_gaps
    assert {reason for reason, _ in slow_gaps} == {"overflow"}
    assert sum(missing for _, missing in slow_gaps) > 0
    assert gaps == []  # the other consumer lost nothing
    assert stats.dropped == 0
    assert stats.published > 1000
    ids = _trade_ids(got)
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # every trade, in order
    assert len(ids) >= stats.published - stats.buffered - 100


async def test_an_exchange_gap_the_relay_sees_reaches_the_consumer_with_exchange_ids(
    nats_server: NatsServer,
) -> None:
    stream = "btcusdt@trade"
    async with (
        Exchange("binance-spot", ["BTCUSDT"], rate=1000.0) as ex,
        Relay([stream], nats=nats_server.url, ws_url=ex.ws_url, rest_url=ex.rest_url) as relay,
        _consumer(nats_server.url, stream) as (got, gaps),
    ):
        await until(lambda: len(got) > 5)
        ex.faults.skip(stream, 3)
        await until(lambda: len(gaps) >= 1)
        await asyncio.sleep(0.2)
        assert relay.stats.gaps == 1
    assert len(gaps) == 1  # once: the consumer does not report it again from the event ids
    (gap,) = gaps
    assert gap.reason is GapReason.SERVER_SKIP
    assert gap.missing == 3
    ids = _trade_ids(got)
    assert gap.expected in range(ids[0], ids[-1])
    assert gap.received in ids
    assert gap.expected not in ids


async def test_usdm_futures_streams_cross_the_hop(nats_server: NatsServer) -> None:
    streams = ["btcusdt@aggTrade", "btcusdt@markPrice@1s", "btcusdt@depth@100ms"]
    got: dict[str, list[Any]] = defaultdict(list)
    gaps: list[Gap] = []
    async with (
        Exchange("binance-usdm", ["BTCUSDT"], rate=500.0) as ex,
        Relay(streams, nats=nats_server.url, venue="binance-usdm", ws_url=ex.ws_url,
              rest_url=ex.rest_url) as relay,
        Source(nats_server.url, venue="binance-usdm", price_type=str) as source,
    ):  # fmt: skip
        source.on_gap(gaps.append)
        direct: dict[str, list[Any]] = defaultdict(list)
        for stream in streams:
            await source.subscribe(stream, got[stream].append).wait_active(5)
        async with fastmd.Client("binance-usdm", ws_url=ex.ws_url, rest_url=ex.rest_url,
                                 price_type=str) as client:  # fmt: skip
            for stream in streams:
                client.subscribe(stream, direct[stream].append)
            await until(lambda: all(len(direct[s]) > 2 and len(got[s]) > 2 for s in streams), 15)
            assert relay.venue == "binance-usdm"
    assert gaps == []
    for stream in streams:
        assert type(got[stream][0]) is type(direct[stream][0])
        # the same events (the relay's client and this one joined at different moments)
        common = [e for e in got[stream] if e in direct[stream]]
        assert common, stream
