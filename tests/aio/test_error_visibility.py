"""Errors a bot must notice reach it: stderr with no logging configured, `logging` when it is,
and ``client.on_error`` listeners in both cases."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from client_helpers import client_for, until

import fastmd
from fastmd import ErrorReport, Severity
from fastmd.sim import Exchange

# A bot that configured no logging: a callback raising on every third trade, and a subscription
# to an unlisted symbol that nobody awaits.
UNCONFIGURED_BOT = textwrap.dedent(
    """
    import asyncio

    import fastmd
    from fastmd.sim import Exchange


    async def main() -> None:
        async with Exchange(symbols=["BTCUSDT"], seed=3, rate=400) as ex:
            async with fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url) as client:
                seen = 0

                def on_trade(trade: fastmd.Trade) -> None:
                    nonlocal seen
                    seen += 1
                    if seen % 3 == 0:
                        raise ValueError(f"bot bug on trade {trade.trade_id}")

                client.subscribe("btcusdt@trade", on_trade)
                client.subscribe("nosuchusdt@trade", lambda event: None)  # never awaited
                while seen < 30:
                    await asyncio.sleep(0.02)
                print("callback_errors", client.metrics().callback_errors)


    asyncio.run(main())
    """
)


@pytest.fixture
async def ex() -> AsyncIterator[Exchange]:
    """A busy market, so callbacks run without publishing by hand."""
    async with Exchange(symbols=["BTCUSDT"], seed=2, rate=300) as exchange:
        yield exchange


def test_errors_reach_stderr_when_nothing_is_configured(tmp_path: Path) -> None:
    bot = tmp_path / "bot.py"
    bot.write_text(UNCONFIGURED_BOT)
    run = subprocess.run(
        [sys.executable, str(bot)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    errors = int(run.stdout.split()[-1])
    assert errors >= 9
    err = run.stderr
    # the raising callback, with its traceback
    assert "callback_error: callback of btcusdt@trade raised ValueError: bot bug" in err
    assert "Traceback (most recent call last)" in err
    assert "in on_trade" in err
    assert 'raise ValueError(f"bot bug on trade' in err
    # the failed subscription nobody awaited
    assert "subscription_failed" in err
    assert "nosuchusdt@trade: symbol is not listed" in err
    # rate limited: at most one line per code per second (the run lasts well under 5 s)
    assert err.count("callback_error:") < min(errors, 6)


async def test_errors_go_through_logging_when_configured(
    ex: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastmd")
    async with fastmd.Client(ws_url=ex.ws_url, rest_url=ex.rest_url) as client:

        def bad(event: object) -> None:
            raise RuntimeError("boom")

        await client.subscribe("btcusdt@trade", bad).wait_active(timeout=5)
        await until(lambda: client.metrics().callback_errors > 0, what="a callback error")
    records = [r for r in caplog.records if "callback_error" in r.getMessage()]
    assert records
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    cause = records[0].exc_info[1]
    assert isinstance(cause, fastmd.CallbackError)
    assert isinstance(cause.__cause__, RuntimeError)


async def test_on_error_receives_failed_subscriptions_and_raising_callbacks(ex: Exchange) -> None:
    seen: list[ErrorReport] = []
    client = client_for(ex)
    remove = client.on_error(seen.append)
    # a raising status listener is a callback error too, not a silent warning
    client.on_status(lambda status, metrics: 1 / 0)
    async with client:
        sub = client.subscribe("nosuchusdt@trade", lambda event: None)
        await until(lambda: any(r.code == "subscription_failed" for r in seen), what="failure")
        assert sub.state == "failed"
        failed = next(r for r in seen if r.code == "subscription_failed")
        assert failed.severity is Severity.ERROR
        assert isinstance(failed.error, fastmd.UnknownSymbolError)
        assert failed.context["stream"] == "nosuchusdt@trade"

        def bad(event: object) -> None:
            raise KeyError("k")

        await client.subscribe("btcusdt@trade", bad).wait_active(timeout=5)
        await until(lambda: any(r.code == "callback_error" for r in seen), what="callback")

        status_failure = next(r for r in seen if r.context.get("listener") == "status")
        assert isinstance(status_failure.error, fastmd.CallbackError)
        assert isinstance(status_failure.error.__cause__, ZeroDivisionError)

        remove()
        count = len(seen)
        with pytest.raises(fastmd.UnknownSymbolError):
            await client.subscribe("nosuchusdt@aggTrade", lambda event: None).wait_active(5)
        assert len(seen) == count


async def test_a_raising_error_listener_is_contained(ex: Exchange) -> None:
    async with client_for(ex) as client:
        calls = 0

        def bad_listener(report: ErrorReport) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("listener bug")

        client.on_error(bad_listener)
        client.subscribe("nosuchusdt@trade", lambda event: None)
        await until(lambda: calls > 0, what="the listener")
        assert client.metrics().callback_errors >= 1
        # the client goes on: a stream still subscribes and delivers
        trades: list[object] = []
        await client.subscribe("btcusdt@trade", trades.append).wait_active(5)
        await until(lambda: len(trades) > 0, what="a trade")
