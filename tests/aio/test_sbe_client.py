"""``fastmd.Client(encoding="sbe")`` against the simulator's SBE endpoint (``Exchange(sbe=True)``):
every stream end to end, the ``X-MBX-APIKEY`` header (401 without it: a typed error, reported,
never retried, the key never logged), gaps on a dropped depth diff and none on culled
bestBidAsk updates, handovers, order books synced from ``@depth`` (also matching Binance's
recorded session at its 26 bookTicker checkpoints), and the construction refusals."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from decimal import Decimal
from typing import Any

import pytest
from book_checks import BookTickerCheck
from client_helpers import quiet, until
from testdata import RECORDING

import fastmd
from fastmd.sim import Exchange

KEY = "sim-ed25519-key-0123456789"


def sbe_client(ex: Exchange, **options: Any) -> fastmd.Client:
    options.setdefault("error_reporter", quiet)
    options.setdefault("api_key", KEY)
    return fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url, encoding="sbe", **options)


# -- construction -------------------------------------------------------------------------------


def test_sbe_needs_an_api_key_and_spot() -> None:
    with pytest.raises(ValueError, match="api_key"):
        fastmd.Client(encoding="sbe")
    with pytest.raises(ValueError, match="spot"):
        fastmd.Client("binance-usdm", encoding="sbe", api_key=KEY)
    with pytest.raises(ValueError, match="encoding"):
        fastmd.Client(encoding="protobuf", api_key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        fastmd.Client(encoding="sbe", api_key="  ")
    client = fastmd.Client(encoding="sbe", api_key=KEY)
    assert client.ws_url == "wss://stream-sbe.binance.com:9443"
    assert client.encoding == "sbe"
    assert KEY not in repr(client)
    assert KEY not in repr(vars(client))


async def test_json_only_stream_names_are_refused_on_an_sbe_client() -> None:
    async with Exchange(sbe=True, rate=0) as ex, sbe_client(ex) as client:
        for name in ("btcusdt@bookTicker", "btcusdt@depth@100ms", "btcusdt@aggTrade"):
            with pytest.raises(fastmd.StreamNameError, match="SBE"):
                client.subscribe(name, lambda e: None)
        assert ex.connections == []  # nothing was subscribed


# -- streams ------------------------------------------------------------------------------------


async def test_every_stream_delivers_typed_events_of_the_simulated_market() -> None:
    async with Exchange(sbe=True, rate=400, seed=7, api_keys=[KEY]) as ex, sbe_client(ex) as client:
        got: dict[str, list[Any]] = {}
        names = ["btcusdt@trade", "btcusdt@bestBidAsk", "btcusdt@depth", "btcusdt@depth20"]
        subs = [client.subscribe(n, got.setdefault(n, []).append) for n in names]
        for sub in subs:
            await sub.wait_active(5)
        await until(lambda: all(len(got[n]) >= 3 for n in names), timeout=10)
        trades = got["btcusdt@trade"]
        assert all(type(t) is fastmd.Trade for t in trades)
        ids = [t.trade_id for t in trades]
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # several per frame, none lost
        now_us = time.time() * 1e6
        assert all(abs(t.event_time - now_us) < 60e6 for t in trades)  # microseconds
        book = ex.market.books["BTCUSDT"]
        tape = {t.trade_id: t for t in book.trades}
        for trade in trades:
            sim = tape[trade.trade_id]
            assert trade.price == float(book.price(sim.price))
            assert trade.quantity == float(book.qty(sim.quantity))
            assert trade.is_buyer_maker == sim.is_buyer_maker
        tickers = got["btcusdt@bestBidAsk"]
        assert all(type(t) is fastmd.BookTicker and t.event_time for t in tickers)
        assert all(a.update_id < b.update_id for a, b in itertools.pairwise(tickers))
        diffs = got["btcusdt@depth"]
        assert all(type(d) is fastmd.DepthUpdate for d in diffs)
        for a, b in itertools.pairwise(diffs):
            assert b.first_update_id == a.final_update_id + 1
        depth20 = got["btcusdt@depth20"]
        assert all(len(d.bids) == len(d.asks) == 20 for d in depth20)
        metrics = client.metrics()
        assert (metrics.gaps, metrics.decode_errors, metrics.callback_errors) == (0, 0, 0)
        health = client.health()
        assert set(health.streams) == set(names)
        assert health.streams["btcusdt@trade"].events >= len(trades)  # counted per trade
        assert all(health.streams[n].events > 0 for n in names)


async def test_lag_of_microsecond_event_times_is_in_seconds() -> None:
    """SBE events carry microsecond times: the lag samples read them as such (read as
    milliseconds, the lag would be minus the epoch times a thousand)."""
    async with Exchange(sbe=True, rate=400, api_keys=[KEY]) as ex, sbe_client(ex) as client:
        trades = "btcusdt@trade"
        client.subscribe(trades, lambda e: None)

        def sampled() -> bool:
            lag = client.health().streams[trades].lag
            return lag is not None and lag.samples >= 5

        await until(sampled, timeout=10)
        lag = client.health().streams[trades].lag
        assert lag is not None
        assert lag.p50 is not None
        assert lag.p99 is not None
        assert -0.5 < lag.p50 < 1.0
        assert lag.p99 < 2.0


async def test_decimal_prices_are_exact() -> None:
    async with Exchange(sbe=True, rate=300, seed=2) as ex, sbe_client(ex, price_type=Decimal) as c:
        trades: list[Any] = []
        await c.subscribe("btcusdt@trade", trades.append).wait_active(5)
        await until(lambda: len(trades) >= 3)
        book = ex.market.books["BTCUSDT"]
        tape = {t.trade_id: t for t in book.trades}
        for trade in trades:
            assert trade.price == Decimal(book.price(tape[trade.trade_id].price))
            assert isinstance(trade.quantity, Decimal)


# -- the API key --------------------------------------------------------------------------------


async def test_refused_key_is_a_typed_error_reported_once_and_never_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    reports: list[fastmd.ErrorReport] = []
    async with (
        Exchange(sbe=True, rate=100, api_keys=["another-key"]) as ex,
        sbe_client(ex, error_reporter=reports.append) as client,
    ):
        sub = client.subscribe("btcusdt@trade", lambda e: None)
        with pytest.raises(fastmd.SubscriptionError, match="401") as info:
            await sub.wait_active(5)
        assert info.value.code == 401
        await asyncio.sleep(1.0)  # a retry loop would have tried again by now
        refused = [r for r in reports if r.code == "authentication_failed"]
        assert len(refused) == 1
        assert isinstance(refused[0].error, fastmd.AuthenticationError)
        assert isinstance(refused[0].error, fastmd.HandshakeError)
        assert refused[0].error.status == 401
        assert refused[0].severity is fastmd.Severity.CRITICAL
        assert client.connections == []
        assert ex.connections == []
    text = caplog.text + "".join(repr(r) + str(r.error) for r in reports)
    assert KEY not in text


async def test_a_403_to_a_keyed_upgrade_is_an_authentication_error() -> None:
    reports: list[fastmd.ErrorReport] = []
    async with Exchange(sbe=True, rate=0) as ex, sbe_client(ex, error_reporter=reports.append) as c:
        ex.faults.refuse_upgrades(403)
        sub = c.subscribe("btcusdt@trade", lambda e: None)
        with pytest.raises(fastmd.SubscriptionError, match="403"):
            await sub.wait_active(5)
        (report,) = [r for r in reports if r.code == "authentication_failed"]
        assert isinstance(report.error, fastmd.AuthenticationError)
        ex.faults.clear()
        again = c.subscribe("btcusdt@trade", lambda e: None)  # a new subscribe tries again
        await again.wait_active(5)


async def test_the_key_is_sent_on_every_upgrade_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Exchange(sbe=True, rate=200, api_keys=[KEY]) as ex, sbe_client(ex) as client:
        trades: list[Any] = []
        await client.subscribe("btcusdt@trade", trades.append).wait_active(5)
        ex.faults.drop_connections(mode="rst")  # the reconnect's upgrade carries it again
        await until(lambda: client.metrics().reconnects >= 1 and client.status.name == "CONNECTED")
        count = len(trades)
        await until(lambda: len(trades) > count)
        await client.force_reconnect()  # a handover's new connection too
        count = len(trades)
        await until(lambda: len(trades) > count)
    assert KEY not in caplog.text


async def test_a_bare_connection_stops_at_a_refused_upgrade_and_opens_with_the_key() -> None:
    async with Exchange(sbe=True, rate=0, api_keys=[KEY]) as ex:
        reports: list[fastmd.ErrorReport] = []
        url = ex.ws_url + "/ws/btcusdt@trade"
        refused = fastmd.Connection(url, error_reporter=reports.append)
        assert not await refused.connect(timeout=3)
        assert refused.state is fastmd.ConnectionState.CLOSED  # stopped, not retrying
        assert [r.code for r in reports] == ["authentication_failed"]
        keyed = fastmd.Connection(url, extra_headers={"X-MBX-APIKEY": KEY}, error_reporter=quiet)
        assert await keyed.connect(timeout=3)
        await keyed.close()
        await refused.close()


# -- sequencing, handovers, faults --------------------------------------------------------------


async def test_culled_best_bid_ask_updates_are_no_gap_but_a_dropped_diff_is() -> None:
    gaps: list[Any] = []
    async with Exchange(sbe=True, rate=400, seed=4) as ex, sbe_client(ex) as client:
        client.on_gap(gaps.append)
        tickers: list[Any] = []
        diffs: list[Any] = []
        await client.subscribe("btcusdt@bestBidAsk", tickers.append).wait_active(5)
        await client.subscribe("btcusdt@depth", diffs.append).wait_active(5)
        await until(lambda: len(tickers) >= 5 and len(diffs) >= 2)
        ex.faults.skip("btcusdt@bestBidAsk", 5)  # what Binance's auto-culling looks like
        count = len(tickers)
        await until(lambda: len(tickers) > count + 5)
        assert gaps == []
        ex.faults.skip("btcusdt@depth")
        await until(lambda: bool(gaps))
        (gap,) = gaps
        assert gap.stream == "btcusdt@depth"
        assert gap.reason is fastmd.GapReason.SERVER_SKIP


async def test_server_shutdown_hands_over_without_loss() -> None:
    gaps: list[Any] = []
    async with Exchange(sbe=True, rate=300, seed=9) as ex, sbe_client(ex) as client:
        client.on_gap(gaps.append)
        trades: list[Any] = []
        await client.subscribe("btcusdt@trade", trades.append).wait_active(5)
        await until(lambda: len(trades) >= 3)
        ex.faults.server_shutdown(close_after=1.0)
        await until(lambda: client.metrics().handovers == 1)
        count = len(trades)
        await until(lambda: len(trades) > count + 3)
        ids = [t.trade_id for t in trades]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert gaps == []


async def test_a_malformed_binary_frame_is_a_counted_decode_error_and_the_socket_stays() -> None:
    async with Exchange(sbe=True, rate=300) as ex, sbe_client(ex) as client:
        trades: list[Any] = []
        await client.subscribe("btcusdt@trade", trades.append).wait_active(5)
        assert ex.faults.malformed("binary") == 1  # a JSON event in a binary frame
        await until(lambda: client.metrics().decode_errors == 1)
        count = len(trades)
        await until(lambda: len(trades) > count)
        assert client.metrics().reconnects == 0


async def test_events_served_from_rest_have_the_streams_microseconds() -> None:
    """While the socket cannot be kept up, the REST fallback serves trades and best bid/ask
    with times in microseconds, like the SBE streams (REST itself says milliseconds)."""
    backoff = fastmd.Backoff(initial_delay=0.05, max_delay=0.1, max_attempts=None)
    async with (
        Exchange(sbe=True, rate=300, seed=3) as ex,
        sbe_client(ex, fallback_after=1, backoff=backoff) as client,
    ):
        seen: list[tuple[str, Any]] = []
        names = ["btcusdt@trade", "btcusdt@bestBidAsk"]
        sub = client.subscribe(names, lambda e: seen.append((client.event_source, e)))
        await sub.wait_active(5)
        ex.faults.refuse_upgrades(503)
        ex.faults.drop_connections()
        await until(lambda: any(src == "rest" and type(e) is fastmd.Trade for src, e in seen),
                    timeout=15)  # fmt: skip
        now_us = time.time() * 1e6
        for source, event in seen:  # polled trades may be minutes old: the order of magnitude
            times = [event.event_time] + ([event.trade_time] if type(event) is fastmd.Trade else [])
            for value in times:
                if value is not None:
                    assert now_us / 10 < value < now_us * 10, (source, event)


# -- order books --------------------------------------------------------------------------------


async def test_order_book_syncs_from_sbe_depth_diffs() -> None:
    async with Exchange(sbe=True, rate=400, seed=5) as ex, sbe_client(ex) as client:
        book = await client.order_book("btcusdt", timeout=5)
        assert _streams(ex) == {"btcusdt@depth"}
        ex.faults.skip("btcusdt@depth")
        await until(lambda: book.resyncs == 1 and book.synced, timeout=10)
        ex.rate = 0  # the market stops; its last diff window closes within 100 ms
        sim = ex.market.books["BTCUSDT"]

        def tops() -> tuple[Any, Any]:
            bid, ask = sim.best_bid(), sim.best_ask()
            return (
                (float(sim.price(bid)), float(sim.qty(sim.bids[bid]))),
                (float(sim.price(ask)), float(sim.qty(sim.asks[ask]))),
            )

        await until(lambda: book.update_id == sim.update_id)
        assert (book.best_bid(), book.best_ask()) == tops()
        assert book.bids(20) == [
            (float(sim.price(p)), float(sim.qty(q))) for p, q in sim.levels("b", 20)
        ]


def _streams(ex: Exchange) -> set[str]:
    """What the client subscribed, as the simulator's connections hold it."""
    return {stream for conn in ex.connections for stream in conn.subscriptions}


async def test_recorded_session_over_sbe_matches_26_book_tickers() -> None:
    symbols = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]
    async with (
        Exchange(replay=RECORDING, replay_speed=10.0, replay_autostart=False, sbe=True) as ex,
        sbe_client(ex, price_type=str) as client,
    ):
        checks = BookTickerCheck()
        tickers = client.subscribe([f"{s.lower()}@bestBidAsk" for s in symbols], checks.on_ticker)
        await tickers.wait_active(5)
        pending = [asyncio.ensure_future(client.order_book(s, timeout=10)) for s in symbols]
        await asyncio.sleep(0.2)  # the books exist and have asked for their snapshots
        checks.watch(client.books)
        assert set(checks.books) == set(symbols)
        await until(lambda: {f"{s.lower()}@depth" for s in symbols} <= _streams(ex))
        ex.start_replay()
        await asyncio.gather(*pending)
        await ex.wait_replayed()
        await asyncio.sleep(0.2)
        assert len(checks.checked) == 26
        assert all(book.resyncs == 0 for book in checks.books.values())
        assert client.metrics().gaps == 0
        assert client.metrics().decode_errors == 0
