"""The public surface of fastmd.nats, fastmd.relay and the relay CLI: bad input, unsubscribing,
event streams, health, and an ``import fastmd`` that loads no NATS client."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from typing import Any

import msgspec
import pytest
from conftest import NatsServer, until

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'fastmd[nats]'")

import fastmd
import fastmd.core.wire
import fastmd.nats
import fastmd.relay
from fastmd.cli import main
from fastmd.nats import Source
from fastmd.relay import Relay
from fastmd.sim import Exchange

pytestmark = pytest.mark.timeout(60)


def test_import_fastmd_loads_no_nats_client() -> None:
    code = (
        "import sys, fastmd, fastmd.core.wire; fastmd.Client; fastmd.Gap\n"
        "assert 'nats' not in sys.modules, 'nats imported'\n"
        "assert fastmd.nats.Source and fastmd.relay.Relay  # loaded on use\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", [fastmd.nats, fastmd.relay, fastmd.core.wire])
def test_public_names_exist_and_have_docstrings(module: Any) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value):
            assert value.__doc__, f"{module.__name__}.{name} has no docstring"


async def test_bad_input_is_refused_with_typed_errors() -> None:
    with pytest.raises(ValueError, match="servers"):
        Source([])
    with pytest.raises(ValueError, match="prefix"):
        Source(prefix="a.b")
    with pytest.raises(ValueError, match="pending_limit"):
        Source(pending_limit=0)
    source = Source("nats://127.0.0.1:1")
    with pytest.raises(fastmd.InvalidState, match="not started"):
        source.subscribe("btcusdt@trade", print)
    with pytest.raises(fastmd.StreamNameError):
        Relay(["BTCUSDT@trade"])
    with pytest.raises(ValueError, match="at least one"):
        Relay([])
    with pytest.raises(ValueError, match="batch_size"):
        Relay(["btcusdt@trade"], batch_size=0)
    with pytest.raises(ValueError, match="max_buffered"):
        Relay(["btcusdt@trade"], batch_size=10, max_buffered=5)
    with pytest.raises(ValueError, match="batch_delay"):
        Relay(["btcusdt@trade"], batch_delay=0)


async def test_misuse_of_a_started_source(nats_server: NatsServer) -> None:
    async with Source(nats_server.url) as source:
        with pytest.raises(fastmd.StreamNameError):
            source.subscribe("BTCUSDT@trade", print)
        with pytest.raises(fastmd.StreamNameError):
            source.subscribe([], print)
        with pytest.raises(TypeError, match="callable"):
            source.subscribe("btcusdt@trade", "print")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            source.on_gap(42)  # type: ignore[arg-type]
    with pytest.raises(fastmd.InvalidState, match="closed"):
        source.subscribe("btcusdt@trade", print)


async def test_an_unreachable_nats_is_reported_not_raised() -> None:
    reports: list[fastmd.ErrorReport] = []
    source = Source("nats://127.0.0.1:1", error_reporter=reports.append)
    await source.start(timeout=0.5)
    sub = source.subscribe("btcusdt@trade", print)
    await until(lambda: any(r.code == "nats_unreachable" for r in reports))
    assert sub.state == "pending"
    assert not source.health().connected
    assert source.health().status is fastmd.HealthStatus.DOWN
    await source.close()
    assert sub.state == "closed"


async def test_stream_unsubscribe_and_health(nats_server: NatsServer) -> None:
    async with (
        Exchange("binance-spot", ["BTCUSDT"], rate=500.0) as ex,
        Relay(["btcusdt@trade", "btcusdt@bookTicker"], nats=nats_server.url, ws_url=ex.ws_url,
              rest_url=ex.rest_url, relay_id="r1", health_interval=0.1) as relay,
        Source(nats_server.url) as source,
    ):  # fmt: skip
        trades: list[Any] = []
        sub = source.subscribe("btcusdt@trade", trades.append)
        await sub.wait_active(5)
        events = source.stream("btcusdt@bookTicker", maxsize=100)
        first = await asyncio.wait_for(anext(aiter(events)), 10)
        assert isinstance(first, fastmd.BookTicker)
        await until(lambda: len(trades) > 3)
        assert all(isinstance(t, fastmd.Trade) for t in trades)
        sub.unsubscribe()
        count = len(trades)
        await asyncio.sleep(0.3)
        assert len(trades) == count  # nothing after unsubscribe
        await until(lambda: "r1" in source.health().relays)
        said = source.health().relays["r1"]
        assert said.epoch == relay.epoch
        assert said.streams == ["btcusdt@trade", "btcusdt@bookTicker"]
        assert said.status == "CONNECTED"
        assert "client" in said.detail  # the client's own health report travels along
        health = source.health()
        assert health.connected
        assert health.status in (fastmd.HealthStatus.HEALTHY, fastmd.HealthStatus.DEGRADED)
        assert health.streams["btcusdt@bookTicker"].relay == "r1"
        assert health.streams["btcusdt@bookTicker"].events >= 1
        assert relay.stats.events >= relay.stats.published > 0


def test_cli_relay_checks_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["relay", "btcusdt@trade"], "--nats"),
        (["relay", "BTCUSDT@trade", "--nats", "nats://127.0.0.1:4222"], "STREAM"),
        (["relay", "btcusdt@trade", "--nats", "http://x"], "--nats"),
        (["relay", "btcusdt@trade", "--nats", "nats://h:1", "--workers", "0"], "--workers"),
        (["relay", "btcusdt@trade", "--nats", "nats://h:1", "--batch-size", "100",
          "--max-buffered", "10"], "--max-buffered"),
        (["relay", "btcusdt@trade", "--nats", "nats://h:1", "--prefix", "a.b"], "--prefix"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


async def test_cli_relay_publishes_the_simulator_without_url(nats_server: NatsServer) -> None:
    async with Source(nats_server.url) as source:
        got: list[Any] = []
        await source.subscribe("btcusdt@trade", got.append).wait_active(5)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastmd", "relay", "btcusdt@trade", "--nats", nats_server.url,
            "--rate", "300", stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await until(lambda: len(got) > 3 and bool(source.health().relays), 20)
        finally:
            process.terminate()
            _, err = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0
        assert b"published in" in err  # the closing summary
        assert set(source.health().relays) == {socket.gethostname()}  # the default relay id


@pytest.mark.parametrize("module", ["nats.py", "relay.py", "core/wire.py", "cli/relay.py"])
def test_no_private_reach_ins(module: str) -> None:
    import ast
    from pathlib import Path

    import test_architecture

    path = Path(fastmd.__file__).resolve().parent / module
    assert test_architecture._reach_ins(ast.parse(path.read_text())) == []


async def test_a_relay_without_nats_bounds_its_buffer_and_never_blocks_the_client() -> None:
    async with Exchange("binance-spot", ["BTCUSDT"], rate=2000.0) as ex:
        relay = Relay(["btcusdt@trade"], nats="nats://127.0.0.1:1", ws_url=ex.ws_url,
                      rest_url=ex.rest_url, batch_size=10, max_buffered=50)  # fmt: skip
        async with asyncio.timeout(20):
            await relay.start()
            await until(lambda: relay.stats.dropped > 100)  # the client kept receiving
            stats = relay.stats
            assert stats.buffered == 50  # bounded: the rest dropped and counted
            assert stats.events == stats.buffered + stats.dropped
            assert stats.published == 0
            assert not relay.nats_connected
            await relay.close()  # promptly, with NATS still away


def _said(relay: str, streams: list[str], status: str = "CONNECTED", client: str = "HEALTHY"):
    from fastmd.core.wire import HealthMessage

    return HealthMessage(
        v=1, venue="binance-spot", relay=relay, epoch=1, status=status, streams=streams,
        events=0, batches=0, dropped=0, buffered=0, gaps=0, outages=0, sent=0,
        detail={"client": {"status": client}},
    )  # fmt: skip


def test_the_source_status_rules() -> None:
    from fastmd.core.health import HealthStatus as H
    from fastmd.nats import RELAY_SILENT_AFTER, judge

    a = "btcusdt@trade"
    ok = {"r": _said("r", [a])}
    assert judge(True, [a], ok, {"r": 100.0}, 101.0) == (H.HEALTHY, None)
    assert judge(False, [a], ok, {"r": 100.0}, 101.0)[0] is H.DOWN
    assert judge(True, [], {}, {}, 0.0) == (H.HEALTHY, None)
    status, reason = judge(True, [a], {}, {}, 0.0)
    assert status is H.DEGRADED
    assert reason is not None
    assert "no relay" in reason
    late = 100.0 + RELAY_SILENT_AFTER + 1
    assert judge(True, [a], ok, {"r": 100.0}, late)[0] is H.STALE
    assert judge(True, [a], {"r": _said("r", [a], "stopping")}, {"r": 100.0}, 101.0)[0] is H.STALE
    assert judge(True, [a], {"r": _said("r", [a], "RECONNECTING")}, {"r": 1.0}, 2.0)[0] is (
        H.DEGRADED
    )
    assert judge(True, [a], {"r": _said("r", [a], client="STALE")}, {"r": 1.0}, 2.0)[0] is (
        H.DEGRADED
    )
    two = {"r": _said("r", [a], "stopping"), "s": _said("s", [a])}  # one good publisher
    assert judge(True, [a], two, {"r": 1.0, "s": 1.0}, 2.0) == (H.HEALTHY, None)


async def test_a_relay_starts_once(nats_server: NatsServer) -> None:
    async with Exchange("binance-spot", ["BTCUSDT"]) as ex:
        relay = Relay(["btcusdt@trade"], nats=nats_server.url, ws_url=ex.ws_url,
                      rest_url=ex.rest_url, client_options={"price_type": float})  # fmt: skip
        async with relay:
            with pytest.raises(fastmd.InvalidState, match="once"):
                await relay.start()
            assert relay.client.price_type is str  # exact prices on the wire, whatever asked
        await relay.close()  # idempotent


async def test_unreadable_messages_are_counted_and_skipped(nats_server: NatsServer) -> None:
    import nats

    from fastmd.core import wire

    gaps: list[fastmd.Gap] = []
    async with Source(nats_server.url) as source:
        source.on_gap(gaps.append)
        sub = source.subscribe("btcusdt@trade", print)
        await sub.wait_active(5)
        nc = await nats.connect(nats_server.url)
        try:
            good = wire.GapMessage(
                v=wire.WIRE_VERSION, venue="binance-spot", stream="btcusdt@trade", relay="r1",
                epoch=1, origin="exchange", reason="server_skip", expected=5, received=9,
            )  # fmt: skip
            future = msgspec.structs.replace(good, v=wire.WIRE_VERSION + 1)
            await nc.publish(wire.gap_subject("binance-spot", "btcusdt@trade"), b"\xc1junk")
            await nc.publish(wire.health_subject("binance-spot", "r1"), b"\xc1junk")
            await nc.publish(wire.event_subject("binance-spot", "btcusdt@trade"), b"\xc1junk")
            await nc.publish(wire.gap_subject("binance-spot", "btcusdt@trade"), wire.encode(future))
            await nc.publish(wire.gap_subject("binance-spot", "btcusdt@trade"), wire.encode(good))
            await nc.flush()
        finally:
            await nc.close()
        await until(lambda: len(gaps) == 1)
        assert source.health().decode_errors == 4  # junk gap, junk health, junk batch, v2 gap
        assert (gaps[0].expected, gaps[0].received) == (5, 9)  # the good one still arrives
        assert source.health().connected
