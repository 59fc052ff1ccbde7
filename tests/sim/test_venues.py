"""The simulator's own stream tables (``fastmd.sim.venues``) against the client's rules
(``fastmd.core.streams``): each side parses every name of a large generated set by itself, and
they must agree. The simulator imports none of the client's rules, so a wrong rule on either side
is a failing test that names the stream."""

from __future__ import annotations

import ast
import asyncio
import itertools
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given, settings, strategies as st

import fastmd.core.streams
import fastmd.sim
from fastmd.core.streams import futures_route, parse_stream
from fastmd.errors import StreamNameError
from fastmd.sim import Exchange
from fastmd.sim.venues import SPOT, USDM, VENUE_STREAMS, VENUES, Kind, Venue

SIM = Path(fastmd.sim.__file__).resolve().parent

View = tuple[
    str, str | None, str | None, str | None, int | None, str | None, str | None, str | None,
    str | None,
]  # fmt: skip


def client_view(name: str, venue: Venue) -> View | None:
    """What the client makes of ``name``: kind, parameters and USD-M route; ``None``: refused."""
    try:
        stream = parse_stream(name, venue)
    except StreamNameError:
        return None
    route = futures_route(stream) if venue == "binance-usdm" else None
    return (stream.kind.name, stream.symbol, stream.interval, stream.window, stream.levels,
            stream.speed, stream.timezone, route, stream.contract_type)  # fmt: skip


def sim_view(name: str, venue: Venue) -> View | None:
    """What the simulator's server makes of ``name``, the same way."""
    stream = VENUE_STREAMS[venue].parse(name)
    if stream is None:
        return None
    return (stream.kind.name, stream.symbol, stream.interval, stream.window, stream.levels,
            stream.speed, stream.timezone, stream.route, stream.contract_type)  # fmt: skip


def disagreements(names: list[str]) -> list[tuple[Venue, str, View | None, View | None]]:
    found = []
    for venue in VENUES:
        for name in names:
            client, sim = client_view(name, venue), sim_view(name, venue)
            if client != sim:
                found.append((venue, name, client, sim))
    return found


# -- a generated set: every stream type of both venues, with good and bad parameters ------------

# Written out from Binance's documentation (and its near misses), not taken from either side.
INTERVALS = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
    "1M", "2m", "1S", "1H", "1y", "01m", "", "1m ",
)  # fmt: skip
WINDOWS = ("1h", "4h", "1d", "2h", "1w", "1H", "")
LEVELS = ("5", "10", "20", "0", "1", "15", "05", "50", "100", "", "x")
TYPES = (
    "trade", "aggTrade", "blockTrade", "miniTicker", "ticker", "bookTicker", "avgPrice",
    "referencePrice", "markPrice", "forceOrder", "compositeIndex", "rpiDepth", "Trade",
    "AGGTRADE", "kline", "", "trade ", "continuousKline", "continuousKline_", "CompositeIndex",
    "rpiDepth5", "continuousKline1m",
    *(f"kline_{interval}" for interval in INTERVALS),
    *(f"continuousKline_{interval}" for interval in INTERVALS),
    *(f"ticker_{window}" for window in WINDOWS),
    *(f"depth{levels}" for levels in LEVELS),
)  # fmt: skip
SUFFIXES = (
    "", "@", "@100ms", "@500ms", "@250ms", "@1000ms", "@1s", "@3s", "@+08:00", "@+8", "@-08:00",
    "@+08:00@100ms", "@arr", "@100ms@100ms", "@@100ms", "@100MS",
)  # fmt: skip
SYMBOLS = (
    "btcusdt", "bnbbtc", "1000pepeusdt", "btcusdt_250926", "éthusdt", "币安usdt", "BTCUSDT",
    "btcUSDT", "", "btc-usdt", "btc usdt", "btc/usdt", "btcusdt!", "_", "btc_", "ǆ", "ǅ", "²",
    "btc.usdt",
    # continuous-contract klines: <pair>_<contract type>, and near misses
    "btcusdt_perpetual", "btcusdt_current_quarter", "btcusdt_next_quarter",
    "btcusdt_tradifi_perpetual", "éthusdt_perpetual", "_perpetual", "btcusdt_PERPETUAL",
    "btcusdt_perp", "btcusdt_quarter", "btc_usdt_perpetual", "btcusdt_250926_perpetual",
    "btcusdt_perpetual_", "btcusdt__perpetual", "btcusdtperpetual", "btcusdt-perpetual",
)  # fmt: skip
ALL_MARKET = (
    "miniTicker", "ticker", "bookTicker", "markPrice", "forceOrder", "serverShutdown", "trade",
    "MiniTicker", "", "contractInfo", "assetIndex", "ContractInfo",
    *(f"ticker_{window}" for window in WINDOWS),
)  # fmt: skip
ALL_SUFFIXES = ("", "@arr", "@arr@1s", "@arr@3s", "@1s", "@arr@", "@arr@100ms", "@ARR", "@arr ")


def generated() -> list[str]:
    names = [f"{s}@{t}{x}" for s, t, x in itertools.product(SYMBOLS, TYPES, SUFFIXES)]
    names += [f"!{t}{x}" for t, x in itertools.product(ALL_MARKET, ALL_SUFFIXES)]
    names += ["", "!", "@", "btcusdt", "btcusdt@", "!!miniTicker@arr", "btcusdt@!miniTicker@arr",
              "btcusdt@@trade", "@trade", " btcusdt@trade", "btcusdt@trade/ethusdt@trade",
              ]  # fmt: skip
    return names


def test_the_generated_set_is_large_and_holds_every_stream_the_simulator_serves() -> None:
    names = set(generated())
    for table in (SPOT, USDM):
        served = {f"btcusdt@{tail}" for tail in table.tails} | set(table.all_market)
        assert served <= names, sorted(served - names)
    assert len(names) > 15_000


def test_simulator_and_client_agree_on_every_generated_stream() -> None:
    names = generated()
    assert disagreements(names) == []
    valid = {venue: sum(sim_view(n, venue) is not None for n in names) for venue in VENUES}
    assert valid["binance-spot"] > 300, valid  # not vacuous
    assert valid["binance-usdm"] > 300, valid


FRAGMENTS = (
    "btcusdt", "ethbtc", "_", "!", "@", "trade", "aggTrade", "kline_", "ticker", "_1h", "_4h",
    "depth", "5", "10", "20", "@100ms", "@500ms", "@1s", "@+08:00", "@arr", "1m", "1s", "1M",
    "miniTicker", "bookTicker", "markPrice", "forceOrder", "serverShutdown", "avgPrice", "B", "é",
    "-", "", "continuousKline_", "perpetual", "_perpetual", "next_quarter", "rpiDepth",
    "compositeIndex", "contractInfo", "assetIndex",
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join) | st.text(max_size=12))
def test_simulator_and_client_agree_on_random_names(name: str) -> None:
    assert disagreements([name]) == []


def test_a_wrong_client_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the client to believe USD-M had 1-second klines, the simulator would not follow."""
    wrong = ("1s", *fastmd.core.streams.USDM_KLINE_INTERVALS)
    monkeypatch.setattr(fastmd.core.streams, "USDM_KLINE_INTERVALS", wrong)
    assert client_view("btcusdt@kline_1s", "binance-usdm") is not None
    found = {(venue, name) for venue, name, _, _ in disagreements(generated())}
    assert ("binance-usdm", "btcusdt@kline_1s") in found
    assert USDM.parse("btcusdt@kline_1s") is None


# -- what the tables say, besides the grammar -----------------------------------------------


def test_routes_cadences_and_kinds() -> None:
    routes = {
        (USDM, "btcusdt@depth5@500ms"): "public",
        (USDM, "!bookTicker"): "public",
        (USDM, "btcusdt@rpiDepth@500ms"): "public",
        (USDM, "btcusdt@aggTrade"): "market",
        (USDM, "!markPrice@arr@1s"): "market",
        (USDM, "btcusdt_perpetual@continuousKline_1m"): "market",
        (USDM, "defiusdt@compositeIndex"): "market",
        (USDM, "!contractInfo"): "market",
        (USDM, "!assetIndex@arr"): "market",
        (SPOT, "btcusdt@depth"): None,
    }
    for (table, name), route in routes.items():
        stream = table.parse(name)
        assert stream is not None, name
        assert stream.route == route, name
    cadences = {
        ("binance-spot", "btcusdt@kline_1s"): 1000,
        ("binance-spot", "btcusdt@kline_1m"): 2000,
        ("binance-spot", "btcusdt@depth"): 1000,
        ("binance-spot", "btcusdt@depth20@100ms"): 100,
        ("binance-spot", "btcusdt@ticker_4h"): 1000,
        ("binance-spot", "btcusdt@trade"): None,
        ("binance-usdm", "btcusdt@kline_1m"): 250,
        ("binance-usdm", "btcusdt@depth"): 250,
        ("binance-usdm", "btcusdt@ticker"): 2000,
        ("binance-usdm", "btcusdt@markPrice"): 3000,
        ("binance-usdm", "!markPrice@arr@1s"): 1000,
        ("binance-usdm", "!bookTicker"): None,
        ("binance-usdm", "btcusdt_next_quarter@continuousKline_1h"): 250,
        ("binance-usdm", "defiusdt@compositeIndex"): 1000,
        ("binance-usdm", "btcusdt@rpiDepth@500ms"): 500,
        ("binance-usdm", "!contractInfo"): None,
        ("binance-usdm", "!assetIndex@arr"): 1000,
    }
    for (venue, name), cadence in cadences.items():
        stream = VENUE_STREAMS[venue].parse(name)
        assert stream is not None, (venue, name)
        assert stream.cadence_ms == cadence, (venue, name)
    kinds = {
        s.kind
        for table in (SPOT, USDM)
        for s in (*table.tails.values(), *table.all_market.values())
    }
    assert kinds == set(Kind)
    assert USDM.kline_intervals == SPOT.kline_intervals[1:]
    assert "1s" not in USDM.kline_intervals
    continuous = USDM.parse("btcusdt_current_quarter@continuousKline_4h")
    assert continuous is not None
    assert (continuous.symbol, continuous.contract_type, continuous.interval) == (
        "btcusdt", "current_quarter", "4h"
    )  # fmt: skip
    assert SPOT.parse("btcusdt_perpetual@continuousKline_1m") is None


# -- independence: the simulator imports none of the client's rules -------------------------


def _fastmd_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name == "fastmd" or name.startswith("fastmd.")]


@pytest.mark.parametrize("path", sorted(SIM.glob("*.py")), ids=lambda p: p.name)
def test_the_simulator_imports_only_itself(path: Path) -> None:
    """No ``fastmd.core`` (stream rules, subscriptions, weights, events), ``fastmd.aio`` or
    ``fastmd.errors``: the server knows Binance by itself."""
    outside = [name for name in _fastmd_imports(path) if not name.startswith("fastmd.sim.")]
    assert outside == []


def test_the_import_check_sees_them(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import fastmd.core.streams\nfrom fastmd.aio import pool\n"
        "from fastmd.sim.ws import WsServer\nfrom . import market\nimport json\n"
    )
    assert _fastmd_imports(sample) == [
        "fastmd.core.streams",
        "fastmd.aio.pool",
        "fastmd.sim.ws.WsServer",
    ]


async def test_accepted_unpublished_streams_are_acknowledged_and_stay_silent() -> None:
    """docs/simulator.md: USD-M's continuous klines, composite index, RPI depth, !contractInfo
    and !assetIndex@arr are acknowledged like Binance, on their route, and nothing is sent on
    them (while a published stream on the same connection flows)."""
    silent = [
        "btcusdt_perpetual@continuousKline_1m", "btcusdt@compositeIndex", "btcusdt@rpiDepth@500ms",
        "!contractInfo", "!assetIndex@arr",
    ]  # fmt: skip
    by_route: dict[str, list[str]] = {
        "public": ["btcusdt@bookTicker"],
        "market": ["btcusdt@aggTrade"],
    }
    for name in silent:
        stream = USDM.parse(name)
        assert stream is not None, name
        assert stream.route is not None, name
        by_route[stream.route].append(name)
    async with (
        Exchange("binance-usdm", ["BTCUSDT"], seed=3, rate=0) as ex,
        aiohttp.ClientSession() as http,
    ):
        for route, names in by_route.items():
            async with http.ws_connect(f"{ex.ws_url}/{route}/stream") as ws:
                await ws.send_json({"method": "SUBSCRIBE", "params": names, "id": 1})
                assert await ws.receive_json(timeout=5) == {"result": None, "id": 1}
                seen: set[str] = set()
                for _ in range(40):  # past every cadence of the silent streams (500 ms, 250 ms)
                    ex.advance(20)
                    await asyncio.sleep(0.025)
                    try:
                        while True:
                            seen.add((await ws.receive_json(timeout=0.005))["stream"])
                    except TimeoutError:
                        pass
                assert seen == {names[0]}, route  # only the published stream
                await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
                while (reply := await ws.receive_json(timeout=5)).get("id") != 2:
                    pass
                assert sorted(reply["result"]) == sorted(names)
