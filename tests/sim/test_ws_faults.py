"""The WebSocket server's fault switches, as a client sees them on the wire (reliability.md §b)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from conftest import (
    MakeSim,
    WsSim,
    close_raw,
    nothing_arrives,
    raw_client,
    recv_json,
    request,
    server_closed,
)
from picows import WSMsgType
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from fastmd.sim.limits import SimLimits
from fastmd.sim.ws import OVERSIZED_BYTES

SPOT = SimLimits.for_venue("binance-spot")
FAST_PINGS = SPOT.with_(ping_interval=0.2, pong_timeout=0.5, max_incoming_per_second=100)


def _ids(frames: list[str]) -> list[int]:
    return [json.loads(f)["t"] for f in frames]


async def _drain(ws: object, within: float = 0.2) -> list[str]:
    frames: list[str] = []
    try:
        while True:
            frames.append(await asyncio.wait_for(ws.recv(), within))  # type: ignore[attr-defined]
    except TimeoutError:
        return frames


# -- drops -------------------------------------------------------------------------------------


async def test_drop_with_close_frame(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws, connect(sim.url("/ws")) as other:
        await sim.wait_for(lambda: len(sim.server.connections) == 2)
        first = sim.server.connections[0].id
        assert sim.server.drop(mode="close", code=4000, reason="bye", connection_id=first) == 1
        closed = await server_closed(ws)
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4000, "bye")
        assert (await request(other, {"method": "LIST_SUBSCRIPTIONS", "id": 1}))["id"] == 1
    assert sim.server.drop(connection_id=12345) == 0


async def test_drop_fin_is_a_close_without_close_frame(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        assert sim.server.drop(mode="fin") == 1
        closed = await server_closed(ws)
    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is None  # 1006: no close frame
    assert isinstance(closed.__cause__, EOFError)  # a clean TCP FIN


async def test_drop_rst_resets_the_connection(sim: WsSim) -> None:
    async with connect(sim.url("/ws/btcusdt@trade")) as ws:
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        assert sim.server.drop(mode="rst") == 1
        closed = await server_closed(ws)
    assert closed.rcvd is None
    assert isinstance(closed.__cause__, ConnectionResetError)
    await sim.wait_for(lambda: not sim.server.connections)
    assert sim.changes[-1] == set()


async def test_drop_rejects_unknown_modes(sim: WsSim) -> None:
    with pytest.raises(ValueError, match="drop mode"):
        sim.server.drop(mode="boom")  # type: ignore[arg-type]


# -- stall and half-open -----------------------------------------------------------------------


async def test_stall_keeps_pings_and_replies_but_sends_no_data(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=FAST_PINGS)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws/btcusdt@trade"), autoping=False) as ws,
    ):
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        sim.server.set_stall(True)
        sim.trades(count=3)
        await ws.ping(b"alive?")
        await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        seen: dict[aiohttp.WSMsgType, list[bytes | str]] = {}
        started = time.monotonic()
        while time.monotonic() - started < 0.45:  # longer than the ping interval
            try:
                msg = await ws.receive(timeout=0.05)
            except TimeoutError:
                continue
            seen.setdefault(msg.type, []).append(msg.data)
            if msg.type is aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
        assert seen[aiohttp.WSMsgType.PONG] == [b"alive?"]  # client pings answered
        assert aiohttp.WSMsgType.PING in seen  # server pings still sent
        assert seen[aiohttp.WSMsgType.TEXT] == ['{"result":["btcusdt@trade"],"id":1}']
        sim.server.set_stall(False)
        (payload,) = sim.trades()
        msg = await ws.receive(timeout=2)
        while msg.type is not aiohttp.WSMsgType.TEXT:
            msg = await ws.receive(timeout=2)
        assert json.loads(msg.data) == json.loads(payload)


async def test_stall_of_some_streams_and_one_connection(sim: WsSim) -> None:
    async with (
        connect(sim.url("/ws/btcusdt@trade/ethusdt@trade")) as a,
        connect(sim.url("/ws/btcusdt@trade")) as b,
    ):
        await sim.wait_for(lambda: len(sim.server.connections) == 2)
        a_id = next(c.id for c in sim.server.connections if c.path.count("@") == 2)
        sim.server.set_stall(True, connection_id=a_id, streams=frozenset({"btcusdt@trade"}))
        (btc,) = sim.trades("BTCUSDT")
        (eth,) = sim.trades("ETHUSDT")
        assert await recv_json(a) == json.loads(eth)  # only the stalled stream stops
        assert await recv_json(b) == json.loads(btc)  # only on the selected connection
        assert await nothing_arrives(a)
        sim.server.set_stall(False, connection_id=a_id, streams=frozenset({"btcusdt@trade"}))
        (btc,) = sim.trades("BTCUSDT")
        assert await recv_json(a) == json.loads(btc)
        assert not sim.server.faulty  # back on the fast path


async def test_stall_applies_to_connections_open_at_the_time(sim: WsSim) -> None:
    async with connect(sim.url("/ws/btcusdt@trade")) as old:
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        sim.server.set_stall(True)
        async with connect(sim.url("/ws/btcusdt@trade")) as new:
            await sim.wait_for(lambda: len(sim.server.connections) == 2)
            (payload,) = sim.trades()
            assert await recv_json(new) == json.loads(payload)
            assert await nothing_arrives(old)
        sim.server.set_stall(False)


async def test_half_open_sends_and_answers_nothing(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=FAST_PINGS)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws/btcusdt@trade"), autoping=False) as ws,
    ):
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        sim.server.set_half_open(True)
        sim.trades(count=2)
        await ws.ping(b"anyone?")
        await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.8)  # > ping interval + pong timeout: no close either
        (conn,) = sim.server.connections  # the socket stays open
        assert [kind for _, kind in conn.incoming][-2:] == ["ping", "text"]
        sim.server.set_half_open(False)
        (payload,) = sim.trades()
        msg = await ws.receive(timeout=2)
        while msg.type is not aiohttp.WSMsgType.TEXT:
            msg = await ws.receive(timeout=2)
        assert json.loads(msg.data) == json.loads(payload)


# -- sequence faults ---------------------------------------------------------------------------


async def test_skip_makes_a_trade_id_gap_for_everyone(sim: WsSim) -> None:
    async with (
        connect(sim.url("/ws/btcusdt@trade")) as raw,
        connect(sim.url("/stream?streams=btcusdt@trade")) as wrapped,
    ):
        await sim.wait_for(lambda: len(sim.server.connections) == 2)
        sent = sim.trades(count=2)
        sim.server.skip("btcusdt@trade", 2)
        sent += sim.trades(count=3)
        first = json.loads(sent[0])["t"]
        expected = [first, first + 1, first + 4]
        assert _ids(await _drain(raw)) == expected
        assert [json.loads(f)["data"]["t"] for f in await _drain(wrapped)] == expected
        assert not sim.server.faulty


async def test_duplicate_repeats_frames(sim: WsSim) -> None:
    async with (
        connect(sim.url("/ws/btcusdt@trade")) as raw,
        connect(sim.url("/stream?streams=btcusdt@trade")) as wrapped,
    ):
        await sim.wait_for(lambda: len(sim.server.connections) == 2)
        sim.server.duplicate("btcusdt@trade", 1)
        sent = sim.trades(count=2)
        first = json.loads(sent[0])["t"]
        raw_frames = await _drain(raw)
        assert _ids(raw_frames) == [first, first, first + 1]
        assert raw_frames[0] == raw_frames[1] == sent[0].decode()
        wrapped_frames = await _drain(wrapped)
        assert [json.loads(f)["data"]["t"] for f in wrapped_frames] == [first, first, first + 1]


# -- malformed frames --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["not_json", "invalid_utf8", "wrong_types", "oversized", "binary"])
async def test_malformed_frames_arrive(sim: WsSim, kind: str) -> None:
    transport, client = await raw_client(sim.url("/ws/btcusdt@trade"))
    try:
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        stream = "btcusdt@trade" if kind == "wrong_types" else None
        assert sim.server.inject(kind, stream=stream) == 1  # type: ignore[arg-type]
        msg_type, payload = await client.next()
    finally:
        await close_raw(transport)
    if kind == "binary":
        assert msg_type is WSMsgType.BINARY
        assert json.loads(payload)["e"] == "trade"
        return
    assert msg_type is WSMsgType.TEXT
    if kind == "not_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(payload)
    elif kind == "invalid_utf8":
        with pytest.raises(UnicodeDecodeError):
            payload.decode()
        assert json.loads(payload.decode("latin-1"))["e"] == "trade"  # bad bytes in a string
    elif kind == "wrong_types":
        event = json.loads(payload)
        assert event["e"] == "trade"
        assert event["s"] == "BTCUSDT"
        assert event["t"] == "x"
    else:
        assert len(payload) > OVERSIZED_BYTES
        assert json.loads(payload)["e"] == "trade"


async def test_malformed_frame_of_a_stream_is_wrapped_for_combined(sim: WsSim) -> None:
    transport, client = await raw_client(sim.url("/stream?streams=btcusdt@depth"))
    try:
        async with connect(sim.url("/ws/ethusdt@trade")) as unrelated:
            await sim.wait_for(lambda: len(sim.server.connections) == 2)
            assert sim.server.inject("wrong_types", stream="btcusdt@depth") == 1
            _, payload = await client.next()
            assert await nothing_arrives(unrelated)
    finally:
        await close_raw(transport)
    frame = json.loads(payload)
    assert frame["stream"] == "btcusdt@depth"
    assert frame["data"]["e"] == "depthUpdate"
    assert frame["data"]["U"] == "x"


async def test_websockets_client_rejects_invalid_utf8(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        sim.server.inject("invalid_utf8")
        closed = await server_closed(ws)
    assert closed.sent is not None
    assert closed.sent.code == 1007


# -- serverShutdown and refused upgrades --------------------------------------------------------


async def test_server_shutdown_then_close(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as raw, connect(sim.url("/stream")) as wrapped:
        await sim.wait_for(lambda: len(sim.server.connections) == 2)
        assert sim.server.shutdown(close_after=0.2, code=1012) == 2
        started = time.monotonic()
        event = await recv_json(raw)
        envelope = await recv_json(wrapped)
        closed = [await server_closed(raw), await server_closed(wrapped)]
        assert time.monotonic() - started >= 0.15
    assert event["e"] == "serverShutdown"
    assert isinstance(event["E"], int)
    assert envelope["stream"] == "!serverShutdown"
    assert envelope["data"]["e"] == "serverShutdown"
    assert [c.rcvd.code for c in closed if c.rcvd] == [1012, 1012]


async def test_server_shutdown_closes_at_once(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        assert sim.server.shutdown(close_after=0) == 1
        assert (await recv_json(ws))["e"] == "serverShutdown"
        closed = await server_closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001


@pytest.mark.parametrize(("status", "retry_after", "header"), [(503, None, None), (429, 7, "7"),
                                                               (418, 2.5, "3")])  # fmt: skip
async def test_refuse_upgrades(
    sim: WsSim, status: int, retry_after: float | None, header: str | None
) -> None:
    sim.server.set_refuse_upgrades(status, retry_after=retry_after)
    with pytest.raises(InvalidStatus) as info:
        async with connect(sim.url("/ws")):
            pass
    assert info.value.response.status_code == status
    assert info.value.response.headers.get("Retry-After") == header
    sim.server.set_refuse_upgrades(None)
    async with connect(sim.url("/ws")) as ws:
        assert (await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}))["id"] == 1


async def test_refuse_upgrades_needs_an_error_status(sim: WsSim) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        sim.server.set_refuse_upgrades(200)


# -- slow consumer -----------------------------------------------------------------------------


async def test_slow_consumer_is_aborted(make_sim: MakeSim) -> None:
    sim = await make_sim(max_write_buffer=1024 * 1024)
    payload = b'{"e":"trade","p":"' + b"1" * 65536 + b'"}'
    async with connect(sim.url("/ws/btcusdt@trade"), max_queue=1, max_size=None) as ws:
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        for _ in range(200):  # the client stops reading: its queue holds one frame
            for _ in range(10):
                sim.server.publish("btcusdt@trade", payload)
            await asyncio.sleep(0)
            if not sim.server.connections:
                break
        await sim.wait_for(lambda: not sim.server.connections)
        assert sim.changes[-1] == set()
        assert isinstance(await server_closed(ws), ConnectionClosed)
