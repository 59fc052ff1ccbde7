"""The simulator's WebSocket server against binance-protocol.md: paths, control messages, limits,
ping/pong, lifetime and futures routing, driven by independent clients (websockets, aiohttp)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from pathlib import Path

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
from websockets.exceptions import InvalidStatus

from fastmd.sim.limits import SimLimits

SPOT = SimLimits.for_venue("binance-spot")
USDM = SimLimits.for_venue("binance-usdm")
FAST_PINGS = {"ping_interval": 0.2, "pong_timeout": 0.5}


# -- paths and the combined property ---------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "combined", "streams"),
    [
        ("/ws", False, []),
        ("/ws/btcusdt@trade", False, ["btcusdt@trade"]),
        ("/ws/btcusdt@trade/ethusdt@aggTrade", False, ["btcusdt@trade", "ethusdt@aggTrade"]),
        ("/ws/btcusdt%40trade", False, ["btcusdt@trade"]),
        ("/ws/btcusdt@kline_1m@+08:00", False, ["btcusdt@kline_1m@+08:00"]),
        ("/stream", True, []),
        ("/stream?streams=btcusdt@trade/ethusdt@depth", True, ["btcusdt@trade", "ethusdt@depth"]),
        ("/stream?streams=btcusdt%40trade%2Fethusdt%40depth%40100ms", True,
         ["btcusdt@trade", "ethusdt@depth@100ms"]),
        ("/stream?streams=btcusdt@trade&timeUnit=millisecond", True, ["btcusdt@trade"]),
    ],
)  # fmt: skip
async def test_path_forms(sim: WsSim, target: str, combined: bool, streams: list[str]) -> None:
    async with connect(sim.url(target)) as ws:
        listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        assert listed == {"result": streams, "id": 1}
        prop = await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2})
        assert prop == {"result": combined, "id": 2}
        (conn,) = sim.server.connections
        assert conn.path == target
        assert conn.combined is combined
        assert conn.subscriptions == set(streams)
        assert conn.remote[0] == "127.0.0.1"
        assert abs(conn.opened_at - time.time()) < 5
        assert sim.changes == ([set(streams)] if streams else [])


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/", 404),
        ("/foo", 404),
        ("/public/ws/btcusdt@bookTicker", 404),  # routed paths are futures-only
        ("/stream/btcusdt@trade", 404),
        ("/ws/BTCUSDT@trade", 400),  # symbols are lowercase in stream names
        ("/ws/btcusdt@nope", 400),
        ("/stream?streams=btcusdt@trade/btcusdt@kline_2s", 400),
        ("/ws/btcusdt@trade?timeUnit=MICROSECOND", 400),  # not simulated: refused, not ignored
        ("/ws/" + "/".join(f"s{i}usdt@trade" for i in range(400)), 400),  # URL too long
    ],
)
async def test_refused_targets(make_sim: MakeSim, target: str, status: int) -> None:
    sim = await make_sim(limits=SPOT.with_(max_url_length=2000))
    with pytest.raises(InvalidStatus) as info:
        async with connect(sim.url(target)):
            pass
    assert info.value.response.status_code == status
    assert sim.server.connections == []


async def test_url_stream_count_is_limited(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT.with_(max_streams_per_connection=2))
    with pytest.raises(InvalidStatus) as info:
        async with connect(sim.url("/stream?streams=btcusdt@trade/ethusdt@trade/bnbusdt@trade")):
            pass
    assert info.value.response.status_code == 400


async def test_publish_raw_and_combined(sim: WsSim) -> None:
    async with (
        connect(sim.url("/ws/btcusdt@trade")) as raw,
        connect(sim.url("/stream?streams=btcusdt@trade")) as wrapped,
        connect(sim.url("/ws/ethusdt@trade")) as other,
    ):
        (payload,) = sim.trades("BTCUSDT")
        assert await asyncio.wait_for(raw.recv(), 2) == payload.decode()
        frame = await asyncio.wait_for(wrapped.recv(), 2)
        assert frame == '{"stream":"btcusdt@trade","data":' + payload.decode() + "}"
        assert json.loads(frame)["data"]["t"] == json.loads(payload)["t"]
        assert await nothing_arrives(other)


async def test_set_property_switches_the_wire_shape(sim: WsSim) -> None:
    async with connect(sim.url("/ws/btcusdt@trade")) as ws:
        (first,) = sim.trades()
        assert await recv_json(ws) == json.loads(first)
        reply = await request(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5})
        assert reply == {"result": None, "id": 5}
        assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) == {
            "result": True,
            "id": 2,
        }
        (second,) = sim.trades()
        assert await recv_json(ws) == {"stream": "btcusdt@trade", "data": json.loads(second)}
        await request(ws, {"method": "SET_PROPERTY", "params": ["combined", False], "id": 6})
        (third,) = sim.trades()
        assert await recv_json(ws) == json.loads(third)
        assert sim.server.connections[0].combined is False


async def test_stream_path_set_property_false_sends_bare_events(sim: WsSim) -> None:
    async with connect(sim.url("/stream?streams=btcusdt@trade")) as ws:
        await request(ws, {"method": "SET_PROPERTY", "params": ["combined", False], "id": 1})
        (payload,) = sim.trades()
        assert await recv_json(ws) == json.loads(payload)


# -- control messages --------------------------------------------------------------------------


async def test_documented_control_replies_are_exact(sim: WsSim, samples_dir: Path) -> None:
    control = json.loads((samples_dir / "ws-control.json").read_text())
    async with connect(sim.url("/ws")) as ws:
        for name in ("subscribe", "unsubscribe", "list", "set_property", "get_property"):
            await ws.send(json.dumps(control[f"{name}_request"]))
            reply = await asyncio.wait_for(ws.recv(), 2)
            assert json.loads(reply) == control[f"{name}_response"]
            assert reply == json.dumps(control[f"{name}_response"], separators=(",", ":"))
        assert sim.server.connections[0].subscriptions == {"btcusdt@aggTrade"}


async def test_subscribe_and_unsubscribe_drive_the_market(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
        assert sim.changes[-1] == {"btcusdt@trade"}
        assert sim.market.active == {"btcusdt@trade"}
        (payload,) = sim.trades()
        assert await recv_json(ws) == json.loads(payload)
        await request(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 2})
        assert sim.changes[-1] == set()
        sim.trades()
        assert await nothing_arrives(ws)
    await sim.wait_for(lambda: not sim.server.connections)


async def test_union_of_subscriptions_across_connections(sim: WsSim) -> None:
    async with connect(sim.url("/ws/btcusdt@trade")) as a:
        async with connect(sim.url("/ws/btcusdt@trade/ethusdt@trade")):
            await sim.wait_for(lambda: len(sim.server.connections) == 2)
            assert sim.changes[-1] == {"btcusdt@trade", "ethusdt@trade"}
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        assert sim.changes[-1] == {"btcusdt@trade"}
        await request(a, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
        assert sim.changes[-1] == set()


async def test_unknown_symbol_is_acked_and_silent(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        reply = await request(
            ws, {"method": "SUBSCRIBE", "params": ["xrpxrp@trade", "btcusdt@trade"], "id": 1}
        )
        assert reply == {"result": None, "id": 1}
        assert sim.market.active == {"xrpxrp@trade", "btcusdt@trade"}
        sim.run_market(2000)  # the market has no XRPXRP book: it emits nothing for it
        sim.trades("BTCUSDT")
        symbols = set()
        try:
            while True:
                symbols.add((await recv_json(ws, 0.2))["s"])
        except TimeoutError:
            pass
        assert symbols == {"BTCUSDT"}


@pytest.mark.parametrize(
    ("message", "code", "msg"),
    [
        ({"method": "SET_PROPERTY", "params": ["id", True], "id": 5}, 0, "Unknown property"),
        ({"method": "GET_PROPERTY", "params": ["speed"], "id": 5}, 0, "Unknown property"),
        ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 5}, 1,
         "Invalid value type: expected Boolean"),
        ({"method": "SET_PROPERTY", "params": ["combined"], "id": 5}, 1,
         "Invalid value type: expected Boolean"),
        ({"method": "SET_PROPERTY", "params": [1, True], "id": 5}, 2,
         "Invalid request: property name must be a string"),
        ({"method": "GET_PROPERTY", "id": 5}, 2,
         "Invalid request: property name must be a string"),
        ({"method": "GET_PROPERTY", "params": "combined", "id": 5}, 2,
         "Invalid request: property name must be a string"),
        ({"method": "GET_PROPERTY", "params": ["combined", True], "id": 5}, 2,
         "Invalid request: too many parameters"),
        ({"method": "SET_PROPERTY", "params": ["combined", True, 1], "id": 5}, 2,
         "Invalid request: too many parameters"),
        ({"method": "LIST_SUBSCRIPTIONS", "params": ["btcusdt@trade"], "id": 5}, 2,
         "Invalid request: too many parameters"),
        ({"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@bogus"], "id": 5}, 2,
         "Invalid request: invalid stream"),
        ({"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 5}, 2,
         "Invalid request: invalid stream"),
        ({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 5}, 2,
         "Invalid request: invalid stream"),
        ({"method": "UNSUBSCRIBE", "params": [7], "id": 5}, 2,
         "Invalid request: invalid stream"),
    ],
)  # fmt: skip
async def test_error_replies(sim: WsSim, message: dict[str, object], code: int, msg: str) -> None:
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, message)
        assert reply == {"error": {"code": code, "msg": msg}, "id": 5}
        # An invalid request subscribes nothing, not even its valid streams.
        listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 6})
        assert listed == {"result": [], "id": 6}
        assert sim.server.connections[0].combined is False


@pytest.mark.parametrize("method", ["subscribe", "Subscribe", "LIST", "PING", "SUBSCRIBEX"])
async def test_unknown_method_is_an_unknown_variant(sim: WsSim, method: str) -> None:
    raw = json.dumps({"method": method, "params": [], "id": 1}, separators=(",", ":"))
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, raw)
    column = len('{"method":"') + len(method) + 1
    assert reply == {
        "error": {
            "code": 2,
            "msg": f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
            "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 "
            f"column {column}",
        },
        "id": None,
    }


async def test_missing_method(sim: WsSim) -> None:
    raw = '{"params":["btcusdt@aggTrade","btcusdt@depth","btcusdt@trade"],"id":1}'
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, raw)
    assert reply == {
        "error": {
            "code": 2,
            "msg": f"Invalid request: missing field `method` at line 1 column {len(raw)}",
        },
        "id": None,
    }


@pytest.mark.parametrize(
    ("raw", "line", "column"),
    [
        ("hello", 1, 1),
        ("", 1, 1),
        ('{"method":"SUBSCRIBE",', 1, 23),
        ('{\n  "method": SUBSCRIBE}', 2, 13),
        ('{"method":"LIST_SUBSCRIPTIONS","id":NaN}', 1, 1),
    ],
)
async def test_invalid_json(sim: WsSim, raw: str, line: int, column: int) -> None:
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, raw)
    assert reply == {
        "error": {
            "code": 3,
            "msg": f"Invalid JSON: expected value at line {line} column {column}",
        },
        "id": None,
    }


@pytest.mark.parametrize("raw", ["[1]", '"SUBSCRIBE"', "3"])
async def test_request_must_be_an_object(sim: WsSim, raw: str) -> None:
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, raw)
    assert reply == {
        "error": {"code": 2, "msg": "Invalid request: request must be a JSON object"},
        "id": None,
    }


async def test_invalid_utf8_request_is_invalid_json(sim: WsSim) -> None:
    transport, client = await raw_client(sim.url("/ws"))
    try:
        transport.send(WSMsgType.TEXT, b'{"method":"LIST\xffSUBSCRIPTIONS","id":1}')
        msg_type, payload = await client.next()
    finally:
        await close_raw(transport)
    assert msg_type is WSMsgType.TEXT
    assert json.loads(payload) == {
        "error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 16"},
        "id": None,
    }


@pytest.mark.parametrize(
    ("request_id", "ok"),
    [
        (1, True),
        (0, True),
        (-5, True),
        (2**63 - 1, True),
        (-(2**63), True),
        (2**63, False),
        (None, True),
        ("abc123", True),
        (str(uuid.uuid4()), True),  # the official SDK's ids
        ("a" * 36, True),
        ("a" * 37, False),
        ("has space", False),
        ("ünï", False),
        (1.5, False),
        (True, False),
        ([1], False),
    ],
)
async def test_spot_request_ids(sim: WsSim, request_id: object, ok: bool) -> None:
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": request_id})
    if ok:
        assert reply == {"result": [], "id": request_id}
    else:
        assert reply == {
            "error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
            "id": None,
        }


@pytest.mark.parametrize(
    ("request_id", "ok"),
    [
        (1, True),
        (0, True),
        (2**64 - 1, True),
        (2**64, False),
        (-1, False),
        (None, False),
        ("1", False),
        (str(uuid.uuid4()), False),  # futures rejects the SDK's uuid ids (id_strict_int)
        (1.0, False),
    ],
)
async def test_futures_request_ids(make_sim: MakeSim, request_id: object, ok: bool) -> None:
    sim = await make_sim("binance-usdm")
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, {"method": "SUBSCRIBE", "params": [], "id": request_id})
    if ok:
        assert reply == {"result": None, "id": request_id}
    else:
        assert reply["error"] == {
            "code": 2,
            "msg": "Invalid request: request ID must be an unsigned integer",
        }


async def test_missing_id_is_refused(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        reply = await request(ws, {"method": "LIST_SUBSCRIPTIONS"})
    assert reply["error"]["code"] == 2
    assert reply["error"]["msg"] == "Invalid request: request ID must be an unsigned integer"


async def test_stream_limit_refuses_the_whole_subscribe(make_sim: MakeSim) -> None:
    sim = await make_sim(
        limits=SPOT.with_(max_incoming_per_second=100, max_streams_per_connection=3)
    )
    async with connect(sim.url("/ws/btcusdt@trade")) as ws:
        ok = await request(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 1})
        assert ok == {"result": None, "id": 1}
        many = ["btcusdt@depth", "ethusdt@depth"]
        reply = await request(ws, {"method": "SUBSCRIBE", "params": many, "id": 2})
        assert reply["id"] == 2
        assert reply["error"]["code"] == 2
        assert "3 streams per connection" in reply["error"]["msg"]
        listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert listed["result"] == ["btcusdt@trade", "ethusdt@trade"]
        # Re-subscribing what is there already does not count again; one more still fits.
        again = ["btcusdt@trade", "ethusdt@trade", "btcusdt@depth"]
        assert await request(ws, {"method": "SUBSCRIBE", "params": again, "id": 4}) == {
            "result": None,
            "id": 4,
        }


async def test_fragmented_control_message(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        await ws.send(iter(['{"method":"LIST_', 'SUBSCRIPTIONS","id":9}']))
        assert await recv_json(ws) == {"result": [], "id": 9}


# -- limits ------------------------------------------------------------------------------------


async def test_incoming_rate_limit_closes_with_1008(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT)
    async with connect(sim.url("/ws")) as ws:
        for i in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        replies = [await recv_json(ws) for _ in range(5)]
        closed = await server_closed(ws)
    assert [r["id"] for r in replies] == [0, 1, 2, 3, 4]
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1008
    assert closed.rcvd.reason == "Too many requests"


async def test_pings_and_pongs_count_toward_the_rate_limit(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws"), autoping=False) as ws,
    ):
        for _ in range(3):
            await ws.ping(b"p")
            await ws.pong(b"q")
        pongs = 0
        while True:
            msg = await ws.receive(timeout=2)
            if msg.type is aiohttp.WSMsgType.PONG:
                pongs += 1
            if msg.type is aiohttp.WSMsgType.CLOSE:
                break
        assert (msg.data, msg.extra) == (1008, "Too many requests")
        assert pongs == 3  # the sixth frame, an (unsolicited) pong, closed the connection


async def test_paced_client_stays_connected(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT)
    async with connect(sim.url("/ws")) as ws:
        for i in range(6):  # 4 frames/s for 1.5 s, mixing pings and control messages
            if i % 2:
                await ws.ping()
            else:
                assert (await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": i}))["id"] == i
            await asyncio.sleep(0.25)
        (conn,) = sim.server.connections
        kinds = [kind for _, kind in conn.incoming]
        assert kinds == ["text", "ping"] * 3
        times = [t for t, _ in conn.incoming]
        assert all(later - earlier > 0.2 for earlier, later in itertools.pairwise(times))
        assert (await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 9}))["id"] == 9


async def test_connection_attempt_limit_answers_429(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT.with_(max_connection_attempts=3, attempts_window=30.0))
    for _ in range(2):
        async with connect(sim.url("/ws")):
            pass
    with pytest.raises(InvalidStatus):
        async with connect(sim.url("/nowhere")):  # refused attempts count too
            pass
    with pytest.raises(InvalidStatus) as info:
        async with connect(sim.url("/ws")):
            pass
    response = info.value.response
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 30


async def test_connection_attempts_window_slides(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT.with_(max_connection_attempts=1, attempts_window=0.3))
    async with connect(sim.url("/ws")):
        pass
    with pytest.raises(InvalidStatus):
        async with connect(sim.url("/ws")):
            pass
    await asyncio.sleep(0.35)
    async with connect(sim.url("/ws")) as ws:
        assert (await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}))["id"] == 1


# -- ping / pong -------------------------------------------------------------------------------


async def _next_ping(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    while True:
        msg = await ws.receive(timeout=1.0)
        assert msg.type is not aiohttp.WSMsgType.CLOSE, (msg.data, msg.extra)
        if msg.type is aiohttp.WSMsgType.PING:
            return bytes(msg.data)


async def test_server_pings_with_payload_and_answered_pongs_keep_alive(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT.with_(**FAST_PINGS))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws"), autoping=False) as ws,
    ):
        payloads = []
        started = time.monotonic()
        while time.monotonic() - started < 1.1:  # longer than two pong timeouts
            payload = await _next_ping(ws)
            payloads.append(payload)
            await ws.pong(payload)
        assert len(payloads) >= 4
        assert all(payloads)
        assert len(set(payloads)) == len(payloads)
        assert not ws.closed


async def test_no_pong_closes(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT.with_(**FAST_PINGS))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws"), autoping=False) as ws,
    ):
        started = time.monotonic()
        while True:
            msg = await ws.receive(timeout=2)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                break
        assert msg.data == 1008
        assert msg.extra == "Pong timeout"
        assert time.monotonic() - started >= 0.6  # first ping at 0.2 s, then 0.5 s


async def test_pong_must_echo_the_ping_payload(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT.with_(**FAST_PINGS))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws"), autoping=False) as ws,
    ):
        while True:
            msg = await ws.receive(timeout=2)
            if msg.type is aiohttp.WSMsgType.PING:
                await ws.pong(b"not-" + msg.data)
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                break
        assert (msg.data, msg.extra) == (1008, "Pong timeout")


@pytest.mark.parametrize(("venue", "kept_alive"), [("binance-spot", False), ("binance-usdm", True)])
async def test_unsolicited_pongs(make_sim: MakeSim, venue: str, kept_alive: bool) -> None:
    limits = SimLimits.for_venue(venue).with_(**FAST_PINGS)  # type: ignore[arg-type]
    sim = await make_sim(venue, limits=limits)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws"), autoping=False) as ws,
    ):
        closed = None
        started = next_pong = time.monotonic()
        while time.monotonic() - started < 1.2:
            if time.monotonic() >= next_pong:
                await ws.pong(b"")  # unsolicited, 4 per second: within the rate limit
                next_pong += 0.25
            try:
                msg = await ws.receive(timeout=max(next_pong - time.monotonic(), 0.001))
            except TimeoutError:
                continue
            if msg.type is aiohttp.WSMsgType.CLOSE:
                closed = (msg.data, msg.extra)
                break
        if kept_alive:
            assert closed is None
        else:
            assert closed == (1008, "Pong timeout")


async def test_client_pings_are_answered_with_the_payload(sim: WsSim) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.url("/ws"), autoping=False) as ws,
    ):
        await ws.ping(b"hello")
        msg = await ws.receive(timeout=2)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"hello")
        assert [kind for _, kind in sim.server.connections[0].incoming] == ["ping"]


async def test_client_close_is_answered(sim: WsSim) -> None:
    async with connect(sim.url("/ws")) as ws:
        await ws.close(4321, "done")
        assert ws.close_code == 4321  # the server echoed the code
    await sim.wait_for(lambda: not sim.server.connections)


# -- lifetime ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/ws", "/stream"])
async def test_lifetime_sends_server_shutdown_then_closes_1001(
    make_sim: MakeSim, target: str
) -> None:
    sim = await make_sim(limits=SPOT.with_(connection_lifetime=0.5, shutdown_notice=0.2))
    async with connect(sim.url(target)) as ws:
        opened = time.monotonic()
        event = await recv_json(ws)
        noticed = time.monotonic()
        closed = await server_closed(ws)
        ended = time.monotonic()
    data = event["data"] if target == "/stream" else event
    if target == "/stream":
        assert event["stream"] == "!serverShutdown"
    assert data["e"] == "serverShutdown"
    assert abs(data["E"] / 1000 - time.time()) < 5
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert noticed - opened >= 0.2  # lifetime 0.5 s minus notice 0.2 s
    assert ended - noticed >= 0.1


async def test_lifetime_without_notice_just_closes(make_sim: MakeSim) -> None:
    sim = await make_sim(limits=SPOT.with_(connection_lifetime=0.3))
    async with connect(sim.url("/ws")) as ws:
        closed = await server_closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001


# -- futures routing ---------------------------------------------------------------------------


async def test_futures_routing(make_sim: MakeSim) -> None:
    sim = await make_sim("binance-usdm")
    book = '{"e":"bookTicker","u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1","E":1,"T":1}'
    mark = '{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1","i":"1","P":"1","r":"0","T":1}'
    async with (
        connect(sim.url("/market/ws/btcusdt@markPrice/btcusdt@bookTicker")) as market,
        connect(sim.url("/public/stream?streams=btcusdt@markPrice/btcusdt@bookTicker")) as public,
        connect(sim.url("/ws")) as unrouted,
    ):
        reply = await request(
            unrouted,
            {"method": "SUBSCRIBE", "params": ["btcusdt@markPrice", "btcusdt@bookTicker"], "id": 1},
        )
        assert reply == {"result": None, "id": 1}  # ACKed even where it will stay silent
        assert sim.changes[-1] == {"btcusdt@markPrice", "btcusdt@bookTicker"}
        sim.server.publish("btcusdt@markPrice", mark.encode())
        sim.server.publish("btcusdt@bookTicker", book.encode())
        assert await recv_json(market) == json.loads(mark)  # /market: markPrice only
        assert await recv_json(public) == {"stream": "btcusdt@bookTicker", "data": json.loads(book)}
        assert await recv_json(unrouted) == json.loads(book)  # unrouted counts as /public
        for ws in (market, public, unrouted):
            assert await nothing_arrives(ws, 0.1)
        listed = await request(unrouted, {"method": "LIST_SUBSCRIPTIONS", "id": 2})
        assert listed["result"] == ["btcusdt@markPrice", "btcusdt@bookTicker"]
        assert {c.route for c in sim.server.connections} == {"market", "public", None}


async def test_futures_only_routed_silent_subscriptions_do_not_activate_the_market(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim("binance-usdm")
    async with connect(sim.url("/public/ws/btcusdt@aggTrade")) as ws:
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {
            "result": ["btcusdt@aggTrade"],
            "id": 1,
        }
        assert sim.market.active == set()


async def test_futures_stream_names_are_checked_per_venue(make_sim: MakeSim) -> None:
    sim = await make_sim("binance-usdm")
    async with connect(sim.url("/market/ws")) as ws:
        reply = await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1})
        assert reply["error"] == {"code": 2, "msg": "Invalid request: invalid stream"}
        reply = await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1s"], "id": 2})
        assert reply["error"]["code"] == 2


# -- lifecycle ---------------------------------------------------------------------------------


async def test_stop_closes_everything_with_1001_and_is_idempotent(make_sim: MakeSim) -> None:
    sim = await make_sim()
    tasks_before = asyncio.all_tasks()
    async with connect(sim.url("/ws/btcusdt@trade")) as ws:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)  # never upgrades
        await sim.wait_for(lambda: len(sim.server.connections) == 1)
        await sim.server.stop()
        closed = await server_closed(ws)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert sim.server.connections == []
    assert sim.changes[-1] == set()
    await sim.server.stop()
    assert asyncio.all_tasks() <= tasks_before | {asyncio.current_task()}
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", sim.port)
