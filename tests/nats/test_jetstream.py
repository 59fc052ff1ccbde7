"""``--jetstream``: the relay's messages kept by the server; a late consumer replays them."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import NatsServer, by_stream, recorded_events, until
from testdata import RECORDING

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'fastmd[nats]'")

from fastmd.core.sequence import Gap
from fastmd.nats import Source
from fastmd.relay import Relay
from fastmd.sim import Exchange

pytestmark = pytest.mark.timeout(60)


async def test_a_late_consumer_replays_everything_retained_then_follows_live(
    jetstream_server: NatsServer,
) -> None:
    expected = by_stream(recorded_events())
    streams = sorted(expected)
    url = jetstream_server.url
    async with (
        Exchange(replay=RECORDING, replay_speed=None, replay_autostart=False) as ex,
        Relay(streams, nats=url, ws_url=ex.ws_url, rest_url=ex.rest_url, jetstream=True,
              retention=60.0) as relay,
    ):  # fmt: skip
        await relay.wait_connected(5)
        await until(lambda: relay.client.status == "CONNECTED")
        await asyncio.sleep(0.3)
        ex.start_replay()
        await ex.wait_replayed()
        await until(lambda: relay.stats.published == sum(map(len, expected.values())))
        middle = datetime.now(UTC)
        got: dict[str, list[Any]] = defaultdict(list)
        gaps: list[Gap] = []
        async with Source(url, replay_from=1) as late:  # started after everything was sent
            late.on_gap(gaps.append)
            for stream in streams:
                await late.subscribe(stream, got[stream].append).wait_active(5)
            await until(lambda: sum(map(len, got.values())) >= relay.stats.published)
            await asyncio.sleep(0.2)
        assert dict(got) == dict(expected)
        assert gaps == []
        after: list[Any] = []
        async with Source(url, replay_from=middle) as later:  # nothing retained after `middle`
            await later.subscribe(streams[0], after.append).wait_active(5)
            await asyncio.sleep(0.3)
        assert after == []


async def test_replay_options_are_checked() -> None:
    with pytest.raises(ValueError, match="sequence"):
        Source(replay_from=0)
    with pytest.raises(ValueError, match="aware"):
        Source(replay_from=datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="replay_from"):
        Source(replay_from="1")  # type: ignore[arg-type]
