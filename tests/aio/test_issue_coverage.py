"""Behaviours an issue names that no other test pinned down.

Issue 16: a recording plays back through the same client "deterministically": the repository's
recorded session, replayed twice as fast as possible, delivers the same events in the same order
both times, and exactly the events the offline reader decodes from it."""

from __future__ import annotations

import asyncio
from typing import Any

from client_helpers import until
from testdata import SESSION

import fastmd
import fastmd.replay
from fastmd.sim import Exchange


async def _replay_once() -> list[tuple[str, Any]]:
    """Every (stream, event) a client receives from one fast replay of SESSION."""
    streams = list(fastmd.replay.manifest(SESSION)["streams"])
    delivered: list[tuple[str, Any]] = []
    async with (
        Exchange(replay=SESSION, replay_speed=None, replay_autostart=False) as ex,
        fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url) as client,
    ):
        subs = [
            client.subscribe(s, lambda event, s=s: delivered.append((s, event))) for s in streams
        ]
        for sub in subs:
            await sub.wait_active(5)
        ex.start_replay()
        frames = await asyncio.wait_for(ex.wait_replayed(), 10)
        await until(lambda: len(delivered) >= frames, 5.0, f"{frames} events")
        await asyncio.sleep(0.1)  # nothing more arrives
    return delivered


async def test_replaying_the_repository_session_twice_delivers_the_same_events() -> None:
    offline = [(m.stream, m.event) for m in fastmd.replay.events(SESSION)]
    assert len(offline) == 265
    first = await _replay_once()
    second = await _replay_once()
    assert first == offline
    assert second == first
