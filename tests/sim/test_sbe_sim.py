"""The simulator's SBE endpoint (``Exchange(sbe=True)``, fastmd/sim/sbe.py) against
binance-protocol.md §8: the encoder's layouts and sizes, the same market as binary frames on the
four SBE streams, control messages as JSON text, the ``X-MBX-APIKEY`` header, and faults. Frames
are read with the independent struct reader of tests/sbe_frames.py, not with fastmd's decoder."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from picows.picows import WSInvalidStatusError  # type: ignore[attr-defined]
from sbe_frames import read_frame, recorded_sbe_frames

from fastmd.sim import Exchange
from fastmd.sim.sbe import (
    SbeStreams,
    decimal_exponent,
    encode_best_bid_ask,
    encode_depth_diff,
    encode_depth_snapshot,
    encode_trades,
    mantissa,
)

KEY = {"X-MBX-APIKEY": "test-ed25519-key"}
ALL = ("btcusdt@trade", "btcusdt@bestBidAsk", "btcusdt@depth", "btcusdt@depth20")


class Frames(WSListener):
    def __init__(self) -> None:
        self.frames: list[tuple[WSMsgType, bytes]] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.frames.append((frame.msg_type, frame.get_payload_as_bytes()))

    def binary(self) -> list[bytes]:
        return [p for t, p in self.frames if t is WSMsgType.BINARY]

    def texts(self) -> list[Any]:
        return [json.loads(p) for t, p in self.frames if t is WSMsgType.TEXT]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def connect(url: str, headers: dict[str, str] | None = KEY) -> tuple[WSTransport, Frames]:
    listener = Frames()
    transport, _ = await ws_connect(lambda: listener, url, extra_headers=headers)
    return transport, listener


# -- the encoder ------------------------------------------------------------------------------


def test_sizes_and_offsets_match_the_protocol_notes() -> None:
    bba = encode_best_bid_ask("BTCUSDT", 1_700_000_000_000_001, 42, -2, -8, (6_701_234, 1_200_000),
                              (6_701_235, 300))  # fmt: skip
    assert len(bba) == 66
    assert struct.unpack_from("<HHHH", bba) == (50, 10001, 1, 0)
    assert struct.unpack_from("<q", bba, 8 + 8)[0] == 42  # bookUpdateId @8
    assert bba[8 + 50] == 7
    assert bba[-7:] == b"BTCUSDT"
    one = encode_trades("BTCUSDT", 1, 2, -2, -8, [(7, 6_701_234, 1_200_000, True)])
    assert len(one) == 65
    assert struct.unpack_from("<HI", one, 8 + 18) == (25, 1)
    levels = [(100 + i, 1) for i in range(20)]
    assert len(encode_depth_snapshot("BTCUSDT", 1, 2, -2, -8, levels, levels)) == 682
    diff = encode_depth_diff("BTCUSDT", 1, 10, 12, -2, -8, levels[:1], [])
    assert struct.unpack_from("<HHHH", diff) == (26, 10003, 1, 0)
    assert struct.unpack_from("<qqbb", diff, 16) == (10, 12, -2, -8)


def test_padded_blocks_are_declared_and_read_by_block_length() -> None:
    frame = encode_trades("ETHUSDT", 5, 6, -2, -3, [(1, 250, 7, False), (2, 251, 8, True)],
                          root_padding=6, entry_padding=3)  # fmt: skip
    assert struct.unpack_from("<H", frame)[0] == 24
    got = read_frame(frame)
    assert got["trades"] == [(1, Decimal("2.50"), Decimal("0.007"), False),
                             (2, Decimal("2.51"), Decimal("0.008"), True)]  # fmt: skip
    assert got["symbol"] == "ETHUSDT"


def test_decimals_are_exact() -> None:
    assert decimal_exponent(["0.35130000", "0.3475", "12"]) == -4
    assert mantissa("0.35130000", -4) == 3513
    assert mantissa("67012.34000000", -2) == 6_701_234
    assert mantissa("-1.5", -1) == -15
    with pytest.raises(ValueError, match="does not fit"):
        mantissa("0.001", -2)
    with pytest.raises(ValueError, match="int8"):
        encode_trades("X", 0, 0, -200, 0, [])


def test_stream_names() -> None:
    streams = SbeStreams()
    assert streams.parse("btcusdt@bestBidAsk") is not None
    assert streams.parse("btcusdt@depth20") is not None
    for bad in ("BTCUSDT@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms", "btcusdt@depth5",
                "@trade", "btcusdt@aggTrade"):  # fmt: skip
        assert streams.parse(bad) is None, bad
    assert SbeStreams.market_stream("btcusdt@depth") == "btcusdt@depth@100ms"
    assert SbeStreams.market_stream("btcusdt@trade", recorded=True) == "btcusdt@aggTrade"
    assert SbeStreams.sbe_stream("btcusdt@bookTicker") == "btcusdt@bestBidAsk"


def test_recorded_session_encodes_every_mapped_frame_exactly() -> None:
    frames = recorded_sbe_frames()
    kinds = {f.sbe_stream.split("@")[1] for f in frames}
    assert kinds == {"trade", "bestBidAsk", "depth"}
    for f in frames:
        got = read_frame(f.frame)
        assert got["symbol"] == f.data["s"]
        if f.sbe_stream.endswith("@depth"):
            assert (got["first_update_id"], got["last_update_id"]) == (f.data["U"], f.data["u"])
            assert got["event_time"] == f.data["E"] * 1000
            assert got["bids"] == [(Decimal(p), Decimal(q)) for p, q in f.data["b"]]
            assert got["asks"] == [(Decimal(p), Decimal(q)) for p, q in f.data["a"]]
        elif f.sbe_stream.endswith("@bestBidAsk"):
            assert got["update_id"] == f.data["u"]
            assert got["bid"] == (Decimal(f.data["b"]), Decimal(f.data["B"]))
            assert got["ask"] == (Decimal(f.data["a"]), Decimal(f.data["A"]))
        else:
            assert got["trades"] == [(f.data["a"], Decimal(f.data["p"]), Decimal(f.data["q"]),
                                      f.data["m"])]  # fmt: skip
            assert got["transact_time"] == f.data["T"] * 1000


# -- the endpoint -----------------------------------------------------------------------------


async def test_upgrade_needs_the_api_key_header() -> None:
    async with Exchange(sbe=True, rate=0, api_keys=["good"]) as ex:
        for headers in (None, {"X-MBX-APIKEY": ""}, {"X-MBX-APIKEY": "wrong"}):
            with pytest.raises(WSInvalidStatusError) as info:
                await connect(ex.ws_url + "/ws/btcusdt@trade", headers)
            assert info.value.response.status == 401
        for name in ("X-MBX-APIKEY", "x-mbx-apikey", "X-Mbx-Apikey"):  # header names: any case
            transport, _ = await connect(ex.sbe_url + "/ws/btcusdt@trade", {name: "good"})
            transport.disconnect()


async def test_sbe_is_spot_only_and_json_exchanges_have_no_sbe_url() -> None:
    with pytest.raises(ValueError, match="spot"):
        Exchange("binance-usdm", sbe=True)
    async with Exchange(rate=0) as ex:
        with pytest.raises(RuntimeError, match="sbe=True"):
            _ = ex.sbe_url


async def test_every_stream_serves_the_same_market_as_binary_frames() -> None:
    async with Exchange(sbe=True, rate=400, seed=3) as ex:
        url = ex.ws_url + "/stream?streams=" + "/".join(ALL)
        transport, frames = await connect(url)
        await until(lambda: {struct.unpack_from("<H", f, 2)[0] for f in frames.binary()}
                    == {10000, 10001, 10002, 10003})  # fmt: skip
        book = ex.market.books["BTCUSDT"]
        decoded = [read_frame(f) for f in frames.binary()]
        assert all(d["symbol"] == "BTCUSDT" for d in decoded)
        # trades: contiguous ids, several trades share a frame, microsecond times
        ids = [t[0] for d in decoded if d["template"] == 10000 for t in d["trades"]]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        now_us = time.time() * 1e6
        assert all(abs(d["event_time"] - now_us) < 60e6 for d in decoded)
        # diffs chain: each first id follows the previous last id
        diffs = [d for d in decoded if d["template"] == 10003]
        for a, b in itertools.pairwise(diffs):
            assert b["first_update_id"] == a["last_update_id"] + 1
        snapshots = [d for d in decoded if d["template"] == 10002]
        assert all(len(s["bids"]) == len(s["asks"]) == 20 for s in snapshots)
        # exponents follow the symbol's tick and step sizes: prices on a 0.01 grid
        assert all(p == p.quantize(Decimal("0.01")) for s in snapshots for p, _ in s["bids"])
        assert book.update_id >= diffs[-1]["last_update_id"]
        transport.disconnect()


async def test_control_messages_stay_json_text() -> None:
    async with Exchange(sbe=True, rate=0) as ex:
        transport, frames = await connect(ex.ws_url + "/ws")
        transport.send(WSMsgType.TEXT, b'{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
        transport.send(WSMsgType.TEXT, b'{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],'
                       b'"id":2}')  # fmt: skip
        transport.send(WSMsgType.TEXT, b'{"method":"LIST_SUBSCRIPTIONS","id":3}')
        await until(lambda: len(frames.texts()) == 3)
        replies = frames.texts()
        assert replies[0] == {"result": None, "id": 1}
        assert replies[1]["error"]["code"] == 2  # JSON-only stream: invalid on the SBE endpoint
        assert replies[2] == {"result": ["btcusdt@trade"], "id": 3}
        ex.advance(50)
        await until(lambda: bool(frames.binary()))
        ex.faults.server_shutdown(close_after=5)
        await until(lambda: any(t.get("e") == "serverShutdown" for t in frames.texts()))
        transport.disconnect()


async def test_faults_skip_a_depth_diff_and_drop_connections() -> None:
    async with Exchange(sbe=True, rate=0, seed=5) as ex:
        transport, frames = await connect(ex.ws_url + "/ws/btcusdt@depth")
        await until(lambda: bool(ex.connections and ex.connections[0].subscriptions))
        for _ in range(3):
            ex.advance(20)
            await asyncio.sleep(0.11)
            ex.advance(0)
        ex.faults.skip("btcusdt@depth")
        for _ in range(4):
            ex.advance(20)
            await asyncio.sleep(0.11)
            ex.advance(0)
        await until(lambda: len(frames.binary()) >= 5)
        diffs = [read_frame(f) for f in frames.binary()]
        breaks = sum(
            1 for a, b in itertools.pairwise(diffs)
            if b["first_update_id"] != a["last_update_id"] + 1
        )  # fmt: skip
        assert breaks == 1
        assert ex.faults.drop_connections() == 1
        await until(lambda: transport.is_disconnected)


async def test_flood_sends_one_trade_a_frame() -> None:
    async with Exchange(sbe=True, rate=0) as ex:
        transport, frames = await connect(ex.ws_url + "/ws/btcusdt@trade")
        await until(lambda: bool(ex.connections and ex.connections[0].subscriptions))
        assert await ex.flood("BTCUSDT", 500, batch=100) == 500
        await until(lambda: len(frames.binary()) == 500)
        ids = [read_frame(f)["trades"][0][0] for f in frames.binary()]
        assert ids == list(range(ids[0], ids[0] + 500))
        assert {len(f) for f in frames.binary()} == {65}
        transport.disconnect()


# -- the recorded session through fastmd's SBE decoder ----------------------------------------


@pytest.mark.parametrize("pure_python", [False, True])
@pytest.mark.parametrize("price_type", [float, str, Decimal])
def test_recorded_frames_decode_to_what_their_json_decodes_to(
    monkeypatch: pytest.MonkeyPatch, pure_python: bool, price_type: Any
) -> None:
    """The simulator's encoder against fastmd's decoder (C and Python): every recorded event,
    SBE-encoded, decodes to the JSON event's values (exact as Decimal and str, equal floats)."""
    import fastmd

    if pure_python:
        monkeypatch.setenv("FASTMD_PURE_PYTHON", "1")
    sbe = fastmd.Decoder(encoding="sbe", price_type=price_type)
    frames = recorded_sbe_frames()
    assert len(frames) > 100
    for f in frames:
        (message,) = sbe.decode(f.frame)
        event = message.event
        assert message.stream == f.sbe_stream
        assert event.symbol == f.data["s"]

        def same(value: Any, text: str) -> bool:
            return Decimal(str(value)) == Decimal(text) if price_type is not float else (
                value == float(text)
            )  # fmt: skip

        if f.sbe_stream.endswith("@trade"):
            assert event.trade_id == f.data["a"]
            assert (event.event_time, event.trade_time) == (f.data["E"] * 1000, f.data["T"] * 1000)
            assert same(event.price, f.data["p"])
            assert same(event.quantity, f.data["q"])
            assert event.is_buyer_maker is f.data["m"]
        elif f.sbe_stream.endswith("@bestBidAsk"):
            assert event.update_id == f.data["u"]
            assert same(event.bid_price, f.data["b"])
            assert same(event.ask_quantity, f.data["A"])
        else:
            assert (event.first_update_id, event.final_update_id) == (f.data["U"], f.data["u"])
            for got, sent in ((event.bids, f.data["b"]), (event.asks, f.data["a"])):
                assert len(got) == len(sent)
                for (price, qty), (text_price, text_qty) in zip(got, sent, strict=True):
                    assert same(price, text_price)
                    assert same(qty, text_qty)
    assert sbe.error_counts.total() == 0


# -- fastmd sim --sbe -------------------------------------------------------------------------


async def test_the_cli_serves_sbe_with_its_api_keys() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastmd", "sim", "--sbe", "--api-key", "cli-key", "--rate", "300",
        "--duration", "20", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        ws_url = first.split("ws_url=")[1].split()[0]
        with pytest.raises(WSInvalidStatusError) as info:
            await connect(ws_url + "/ws/btcusdt@trade", {"X-MBX-APIKEY": "other-key"})
        assert info.value.response.status == 401
        transport, frames = await connect(
            ws_url + "/ws/btcusdt@bestBidAsk", {"X-MBX-APIKEY": "cli-key"}
        )
        await until(lambda: bool(frames.binary()), timeout=10)
        assert read_frame(frames.binary()[0])["template"] == 10001
        transport.disconnect()
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--api-key", "k"], "--api-key: needs --sbe"),
        (["--sbe", "--venue", "binance-usdm"], "binance-spot only"),
        (["--sbe", "--skip", "btcusdt@bookTicker"], "invalid SBE stream name"),
    ],
)
def test_the_cli_refuses_sbe_options_that_cannot_work(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fastmd", "sim", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr
