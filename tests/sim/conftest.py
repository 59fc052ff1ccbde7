"""Fixtures for the simulator's WebSocket server tests: a standalone ``WsServer`` fed by a
``Market``, driven by independent clients (``websockets``, aiohttp, picows' own client)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from fastmd.core.streams import Venue
from fastmd.sim.limits import SimLimits
from fastmd.sim.market import Market
from fastmd.sim.ws import WsServer


@dataclass
class WsSim:
    """A running ``WsServer`` with its market, on 127.0.0.1."""

    server: WsServer
    market: Market
    port: int
    changes: list[set[str]] = field(default_factory=list)

    def url(self, target: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{target}"

    def trades(self, symbol: str = "BTCUSDT", count: int = 1) -> list[bytes]:
        """Publish ``count`` trades of ``symbol`` with contiguous ids; returns the payloads."""
        payloads = self.market.flood_trades(symbol, count)
        stream = f"{symbol.lower()}@trade"
        for payload in payloads:
            self.server.publish(stream, payload)
        return payloads

    def run_market(self, steps: int) -> None:
        """Apply ``steps`` order-flow events and the timers, publishing every emission."""
        for _ in range(steps):
            for stream, payload in self.market.step():
                self.server.publish(stream, payload)
        for stream, payload in self.market.tick():
            self.server.publish(stream, payload)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 2.0) -> None:
        """Poll ``predicate`` until it holds (server-side state settles a loop turn later)."""
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.01)


MakeSim = Callable[..., Awaitable[WsSim]]

# Control-message tests send many requests back to back: they get a high incoming-frame limit.
RELAXED = 1000


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """Build and start a ``WsServer`` (stopped at teardown)."""
    sims: list[WsSim] = []

    async def make(
        venue: Venue = "binance-spot",
        limits: SimLimits | None = None,
        symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
        **options: Any,
    ) -> WsSim:
        if limits is None:
            limits = SimLimits.for_venue(venue).with_(max_incoming_per_second=RELAXED)
        market = Market(venue, symbols, seed=7, clock=time.time)
        changes: list[set[str]] = []

        def changed(streams: set[str]) -> None:
            changes.append(set(streams))
            market.set_active(streams)

        server = WsServer(
            venue=venue, limits=limits, on_streams_changed=changed, clock=time.time, **options
        )
        port = await server.start("127.0.0.1", 0)
        sim = WsSim(server, market, port, changes)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.server.stop()


@pytest.fixture
async def sim(make_sim: MakeSim) -> WsSim:
    """A spot server with a relaxed incoming-frame limit."""
    return await make_sim()


async def recv_json(ws: Any, within: float = 2.0) -> Any:
    """The next frame of a ``websockets`` client, decoded."""
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def request(ws: Any, message: Any, within: float = 2.0) -> Any:
    """Send a control message (a JSON-able object or raw text) and return the decoded reply."""
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return await recv_json(ws, within)


async def server_closed(ws: Any, within: float = 2.0) -> ConnectionClosed:
    """Read a ``websockets`` client until the server closes it; return the closure."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    except ConnectionClosed as closed:
        return closed


async def nothing_arrives(ws: Any, within: float = 0.2) -> bool:
    """Whether no frame arrives on a ``websockets`` client within ``within`` seconds."""
    try:
        await asyncio.wait_for(ws.recv(), within)
    except TimeoutError:
        return True
    return False


class RawListener:
    """Frames as picows' client sees them (no UTF-8 or size checks): ``(msg_type, payload)``;
    ``(None, b"")`` marks the disconnect."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[Any, bytes]] = asyncio.Queue()

    async def next(self, within: float = 2.0) -> tuple[Any, bytes]:
        return await asyncio.wait_for(self.frames.get(), within)


async def raw_client(url: str) -> tuple[Any, RawListener]:
    """Connect picows' own client (independent of fastmd) to ``url``."""
    from picows import WSListener, ws_connect

    collected = RawListener()

    class Listener(WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            collected.frames.put_nowait((frame.msg_type, frame.get_payload_as_bytes()))

        def on_ws_disconnected(self, transport: Any) -> None:
            collected.frames.put_nowait((None, b""))

    transport, _ = await ws_connect(Listener, url, max_frame_size=64 * 1024 * 1024)
    return transport, collected


async def close_raw(transport: Any) -> None:
    """Close a picows client connection and wait until it is gone."""
    transport.send_close()
    transport.disconnect()
    await transport.wait_disconnected()
