"""close() under a backlog and after cancellation; misuse from another thread or with
non-callable callbacks fails before it changes anything (issue 12, items 5 and 6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from client_helpers import client_for, client_tasks, server_subs, until

import fastmd
from fastmd.sim import Exchange


@pytest.fixture
async def ex() -> AsyncIterator[Exchange]:
    async with Exchange(symbols=["BTCUSDT", "ETHUSDT"], seed=3, rate=0) as exchange:
        yield exchange


async def test_close_stops_callbacks_at_once_and_returns_fast_with_a_backlog(
    ex: Exchange,
) -> None:
    client = client_for(ex)
    await client.start()
    calls = 0

    def slow(event: Any) -> None:
        nonlocal calls
        calls += 1
        time.sleep(0.005)  # 5 ms a trade: 5,000 trades are 25 s of work

    await client.subscribe("btcusdt@trade", slow).wait_active(5)
    flood = asyncio.ensure_future(ex.flood("BTCUSDT", 5000))
    await until(lambda: calls > 0, what="the first callbacks")
    started = time.monotonic()
    at_close = calls
    await client.close()
    elapsed = time.monotonic() - started
    assert calls - at_close <= 1  # at most the one running when close() was called
    assert elapsed < 1.5, elapsed
    assert client.status is fastmd.Status.CLOSED
    flood.cancel()
    await asyncio.gather(flood, return_exceptions=True)
    assert client_tasks() == []


async def test_a_cancelled_close_still_closes_everything(ex: Exchange) -> None:
    client = client_for(ex)
    await client.start()
    await client.subscribe("btcusdt@trade", lambda e: None).wait_active(5)
    closing = asyncio.ensure_future(client.close())
    await asyncio.sleep(0)  # close() has begun
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await asyncio.wait_for(client.close(), 5)  # waits for the first one, does not skip it
    assert client.status is fastmd.Status.CLOSED
    assert client.connections == [] or all(
        c.state is fastmd.ConnectionState.CLOSED for c in client.connections
    )
    await until(lambda: not ex.connections, what="the server to see the close")
    assert client_tasks() == []


async def test_calls_from_another_thread_fail_before_changing_anything(ex: Exchange) -> None:
    async with client_for(ex) as client:
        sub = client.subscribe("btcusdt@trade", lambda e: None)
        await sub.wait_active(5)
        with pytest.raises(fastmd.InvalidState, match="thread"):
            await asyncio.to_thread(sub.unsubscribe)
        assert sub.state == "active"
        with pytest.raises(fastmd.InvalidState, match="thread"):
            await asyncio.to_thread(client.subscribe, "ethusdt@trade", print)
        with pytest.raises(fastmd.InvalidState, match="thread"):
            await asyncio.to_thread(asyncio.run, client.close())
        assert client.status is not fastmd.Status.CLOSED
        await asyncio.sleep(0.2)
        assert server_subs(ex) == {"btcusdt@trade"}  # the server still has what was wanted
        assert client.metrics().streams == 1

        # The explicit way: hand the call to the client's loop.
        await asyncio.to_thread(client.call_soon_threadsafe, sub.unsubscribe)
        await until(lambda: sub.state == "closed", what="the unsubscribe")
        await until(lambda: not server_subs(ex), what="the UNSUBSCRIBE")


async def test_non_callable_callbacks_are_refused(ex: Exchange) -> None:
    async with client_for(ex) as client:
        for bad in (None, 42, "print"):
            with pytest.raises(TypeError, match="callable"):
                client.subscribe("btcusdt@trade", bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="callable"):
                client.on_gap(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="callable"):
                client.on_status(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="callable"):
                client.on_error(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="callable"):
                client.call_soon_threadsafe(bad)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert client.metrics().streams == 0
        assert ex.connections == []
