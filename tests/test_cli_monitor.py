"""``fastmd monitor``: run as a user runs it (a subprocess whose stdout is a pipe: line mode),
in-process against a simulator the test drives (alerts firing and resolving), its metrics
endpoint, its usage errors, and the terminal view's fit."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from cli_helpers import REPO, WITHOUT_PROMETHEUS_CLIENT, fastmd_cli, python, render, repo_env

import fastmd
from fastmd.cli.monitor import Monitor, monitor_view, run, status_line, summary
from fastmd.cli.reports import Reachability
from fastmd.core.clock import LagStats
from fastmd.core.health import (
    Alert,
    AlertKind,
    ConnectionHealth,
    Health,
    HealthStatus,
    StreamHealth,
)
from fastmd.sim import Exchange

STATUS_LINE = re.compile(r"^\[ *\d+\.\d+s\] (HEALTHY|DEGRADED|STALE|DOWN) +streams (\d+) ", re.M)


def _summary_rows(out: str) -> dict[str, tuple[str, int]]:
    """``{stream: (status, events)}`` from the summary's table."""
    summary_text = out[out.index("fastmd monitor summary") :]
    rows = re.findall(r"^  (\S+@\S+) +(HEALTHY|DEGRADED|STALE|DOWN) +([\d,]+) ", summary_text, re.M)
    return {stream: (status, int(events.replace(",", ""))) for stream, status, events in rows}


def test_monitor_against_the_simulator_prints_health_lines_and_a_summary() -> None:
    result = fastmd_cli("monitor", "--symbols", "BTCUSDT,ETHUSDT", "--duration", "3")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "\x1b[" not in out  # line mode on a pipe
    lines = STATUS_LINE.findall(out)
    assert len(lines) >= 2, out
    assert all(int(count) == 8 for _, count in lines), out  # 4 streams of each symbol
    rows = _summary_rows(out)
    expected = {
        f"{symbol}@{kind}"
        for symbol in ("btcusdt", "ethusdt")
        for kind in ("trade", "kline_1m", "bookTicker", "depth@100ms")
    }
    assert set(rows) == expected, out
    assert all(events > 0 for _, events in rows.values()), out
    assert re.search(r"^connections:\n  #0 ws://127\.0\.0\.1:\d+\S* OPEN ", out, re.M), out
    assert re.search(r"^alerts: \d+ fired, \d+ resolved, \d+ firing now$", out, re.M), out
    assert re.search(r"^result: OK - [\d,]+ events; health \w+$", out, re.M), out


def test_a_muted_stream_goes_stale_fires_an_alert_and_resolves_when_it_flows_again() -> None:
    """--mute: the simulator stops sending one stream while the other flows on the same socket;
    the monitor shows it STALE with why, the stale alert fires, and resolves once it flows."""
    depth, quotes = "btcusdt@depth@100ms", "btcusdt@bookTicker"
    result = fastmd_cli(
        "monitor", depth, quotes, "--symbols", "BTCUSDT", "--mute", depth, "--mute-at", "1",
        "--mute-for", "3", "--duration", "7",
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"fault injected: the simulator mutes {depth} for 3 s" in out
    assert re.search(
        rf"^\[ *[\d.]+s\] STALE +.*not healthy: {re.escape(depth)} STALE \(", out, re.M
    )
    fired = re.search(rf"^\[ *([\d.]+)s\] ALERT firing warning stream_stale {depth}: ", out, re.M)
    resolved = re.search(rf"^\[ *([\d.]+)s\] ALERT resolved stream_stale {depth} after ", out, re.M)
    assert fired is not None, out
    assert resolved is not None, out
    assert 1.0 < float(fired[1]) < float(resolved[1]), out
    assert f"stream_stale {quotes}" not in out, out


def test_monitor_gives_up_on_an_unreachable_exchange_with_the_cause() -> None:
    result = fastmd_cli(
        "monitor", "btcusdt@trade", "--url", "ws://127.0.0.1:1", "--rest-url",
        "http://127.0.0.1:1", "--give-up-after", "2",
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert re.search(
        r"^\[ *[\d.]+s\] giving up: cannot reach ws://127\.0\.0\.1:1/stream", out, re.M
    )
    assert re.search(r"^  btcusdt@trade +DOWN +0 ", out, re.M), out
    assert re.search(
        r"^result: FAILED - cannot reach ws://127\.0\.0\.1:1/stream: connection refused", out, re.M
    ), out


def _args(exchange: Exchange, streams: list[str], **options: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "streams": streams, "venue": "binance-spot", "url": exchange.ws_url,
        "rest_url": exchange.rest_url, "symbols": ["BTCUSDT", "ETHUSDT"], "seed": 0,
        "rate": 0.0, "give_up_after": 10.0, "duration": 6.0, "plain": True,
        "stale_after": None, "prometheus_port": None, "prometheus_host": "127.0.0.1",
        "mute": None, "mute_at": 2.0, "mute_for": 5.0,
    }  # fmt: skip
    values.update(options)
    return argparse.Namespace(**values)


async def test_monitor_shows_an_alert_fire_and_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    """btcusdt@trade stays silent past --stale-after while ethusdt@trade trades: a stale alert
    fires for it; its trades flowing resolve it. No stale alert fires for ethusdt@trade."""
    async with Exchange("binance-spot", ["BTCUSDT", "ETHUSDT"], seed=3, rate=0) as exchange:
        args = _args(exchange, ["btcusdt@trade", "ethusdt@trade"], stale_after=1.0)
        command = asyncio.create_task(run(args))
        trading = {"ETHUSDT"}

        async def trade() -> None:
            while True:
                for symbol in sorted(trading):
                    await exchange.flood(symbol, 5)
                await asyncio.sleep(0.1)

        trader = asyncio.create_task(trade())
        out = ""

        async def printed(pattern: str, start: int, timeout: float) -> None:
            nonlocal out
            deadline = time.monotonic() + timeout
            while not re.search(pattern, out[start:], re.M):
                assert time.monotonic() < deadline, f"no {pattern!r} in:\n{out}"
                await asyncio.sleep(0.1)
                out += capsys.readouterr().out

        try:
            await printed(r"ALERT firing \w+ stream_stale btcusdt@trade", 0, 5)
            flowing = len(out)
            trading.add("BTCUSDT")  # its trades flow again
            await printed(r"ALERT resolved stream_stale btcusdt@trade after \d", flowing, 4)
            assert await command == 0
        finally:
            trader.cancel()
            await asyncio.gather(trader, return_exceptions=True)
        out += capsys.readouterr().out
    assert "stream_stale ethusdt@trade" not in out, out
    assert re.search(r"^alerts: [1-9]\d* fired, [1-9]\d* resolved, ", out, re.M), out
    assert _summary_rows(out)["ethusdt@trade"][1] > 0


def test_monitor_serves_prometheus_metrics_while_it_runs() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fastmd", "monitor", "btcusdt@trade", "--symbols", "BTCUSDT",
         "--duration", "4", "--prometheus-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=repo_env(), cwd=REPO,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            found = re.search(r"Prometheus metrics at (http://127\.0\.0\.1:\d+/metrics)", line)
            if found:
                url = found[1]
                break
        assert url is not None, "the metrics URL was not printed"
        time.sleep(1.0)  # trades flow
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    events = re.search(r'^fastmd_events_total\{stream="btcusdt@trade"\} (\S+)$', text, re.M)
    assert events is not None, text
    assert float(events[1]) > 0
    assert "# HELP fastmd_stream_healthy " in text
    assert "result: OK" in rest


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["monitor", "BTCUSDT@trade"], "argument STREAM: invalid stream name"),
        (["monitor", "--prometheus-port", "70000"], "argument --prometheus-port: must be within"),
        (["monitor", "--rest-url", "http://127.0.0.1:1"], "argument --rest-url: needs --url"),
        (["monitor", "--duration", "0"], "argument --duration: must be > 0"),
        (["monitor", "--stale-after", "nan"], "argument --stale-after: must be a finite number"),
        (["monitor", "--mute", "btcusdt@nope"], "argument --mute: invalid stream name"),
        (
            ["monitor", "--mute", "btcusdt@trade", "--url", "ws://127.0.0.1:1"],
            "argument --mute: needs the simulator (no --url)",
        ),
    ],
)
def test_monitor_usage_errors_exit_2_before_anything_starts(args: list[str], needle: str) -> None:
    result = fastmd_cli(*args, timeout=20)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr, result.stderr


def test_prometheus_port_without_the_extra_exits_2_with_the_install_hint() -> None:
    code = WITHOUT_PROMETHEUS_CLIENT + (
        "from fastmd.cli.entry import main\n"
        "sys.exit(main(['monitor', '--prometheus-port', '0', '--duration', '1']))\n"
    )
    result = python("-c", code, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'fastmd[prometheus]'" in result.stderr
    assert "fastmd monitor summary" not in result.stdout  # nothing started


# -- the view, from a snapshot built by hand ------------------------------------------------


def _stream(name: str, status: HealthStatus, reason: str | None = None) -> StreamHealth:
    return StreamHealth(
        stream=name, status=status, reason=reason, last_event_age=0.2, rate=123.4,
        events=1_234_567, rest_events=0, gaps=2, missing=17,
        lag=LagStats(0.0012, 0.0034, 0.01, 100), expected_interval=0.1, stale_after=1.5,
        connection="ws://127.0.0.1:40000/stream",
    )  # fmt: skip


def busy_monitor(streams: int = 40) -> Monitor:
    monitor = Monitor(
        "simulator ws://127.0.0.1:40000 (binance-spot, seed 0, 300 events/s)",
        plain=None, reach=Reachability(10),
    )  # fmt: skip
    names = [f"sym{i:03d}usdt@depth@100ms" for i in range(streams)]
    table = {name: _stream(name, HealthStatus.HEALTHY) for name in names}
    stale = names[-1]
    reason = "silent for 3.2 s, expected every 0.1 s; resubscribed, then its connection replaced"
    table[stale] = _stream(stale, HealthStatus.STALE, reason)
    alert = Alert(AlertKind.STREAM_STALE, True, stale, fastmd.Severity.WARNING,
                  f"{stale} is stale", 1_000.0, 1_000.0)  # fmt: skip
    monitor.health = Health(
        status=HealthStatus.STALE, reason="a stream is stale", streams=table,
        connections=(
            ConnectionHealth("ws://127.0.0.1:40000/stream", fastmd.ConnectionState.OPEN,
                             HealthStatus.HEALTHY, 0.0004, 12.0, 1, tuple(names)),
        ),
        lag=LagStats(0.001, 0.003, 0.01, 1000), clock_offset=0.002, alerts=(alert,),
    )  # fmt: skip
    monitor.on_alert(alert)
    monitor.delivered = 1
    return monitor


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 30), (160, 50), (80, 12), (200, 80)])
def test_the_view_fits_the_terminal_and_shows_the_stale_stream(width: int, height: int) -> None:
    from rich.cells import cell_len

    lines = render(monitor_view(busy_monitor(), 10.0, width, height), width, height)
    text = "\n".join(lines)
    assert len(lines) <= height - 1, text
    assert max(cell_len(line) for line in lines) <= width, text
    assert lines[0].startswith("fastmd monitor"), text
    assert lines[1].startswith("health STALE"), text
    assert "sym039usdt@depth@100ms" in text, text  # in trouble: shown first when cut
    # A long reason is cut, never the numbers: every column the width allows is there.
    header = next(line for line in lines if line.startswith("stream "))
    wanted = ["status", "events", "last event", "gaps", "reason"]
    wanted += ["rate/s", "lag p99"] if width >= 100 else []
    wanted += ["lag p50", "missing"] if width >= 130 else []
    assert all(f" {name}" in header for name in wanted), header
    assert re.search(r"^sym039usdt@depth@100ms +STALE +1,234,567 ", text, re.M), text
    if height >= 24:
        assert "#0 ws://127.0.0.1:40000" in text, text
        assert "ALERT firing warning stream_stale sym039usdt@depth@100ms" in text, text
    if height < 41:
        assert re.search(r"^\+\d+ more streams", text, re.M), text


def test_status_line_and_summary_name_the_stream_in_trouble() -> None:
    monitor = busy_monitor(3)
    line = status_line(monitor)
    assert " STALE    streams 3 (2 healthy, 1 stale) " in line, line
    assert "not healthy: sym002usdt@depth@100ms STALE (silent for 3.2 s" in line, line
    text = summary(monitor, duration=10.0)
    assert "health: STALE (a stream is stale)" in text, text
    assert re.search(r"^  sym002usdt@depth@100ms +STALE +1,234,567 ", text, re.M), text
    assert "alerts: 1 fired, 0 resolved, 1 firing now" in text, text
    assert "clock offset to the exchange: +2.00 ms" in text, text


def test_the_view_in_a_real_terminal() -> None:
    """``fastmd monitor`` in tmux (100x30 asked) with a muted stream: the screen holds the whole
    view (nothing scrolled), the muted stream shows its status with the number columns."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    session = f"fastmd-monitor-test-{os.getpid()}"
    command = (
        # COLUMNS and LINES from the test's environment would override the window's size
        f"cd {REPO} && unset COLUMNS LINES && PYTHONPATH={REPO} {sys.executable} -m fastmd "
        "monitor --duration 6 --mute btcusdt@depth@100ms --mute-at 0.5 --mute-for 4; sleep 10"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True
    )
    try:
        screen: list[str] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # until the stale alert is on screen
            time.sleep(0.5)
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
                check=True,
            ).stdout.rstrip("\n").split("\n")  # fmt: skip
            if any("ALERT firing" in line for line in screen):
                break
        size = subprocess.run(
            ["tmux", "display-message", "-p", "-t", session, "#{window_width}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    shown = "\n".join(screen)
    assert screen[0].startswith("fastmd monitor"), shown
    assert screen[1].startswith("health "), shown
    assert len(screen) <= 29, shown
    header = next(line for line in screen if line.startswith("stream "))
    # tmux may keep its own window size: the columns are those of the width it gave
    wanted = ("events", "rate/s", "lag p99", "gaps") if int(size) >= 100 else ("events", "gaps")
    assert all(f" {name}" in header for name in wanted), shown
    assert re.search(r"^btcusdt@depth@100ms +(STALE|DEGRADED) +\d", shown, re.M), shown
    assert "ALERT firing warning stream_stale btcusdt@depth@100ms" in shown, shown
