"""The ``fastmd`` command, run as a user runs it: ``python -m fastmd ...`` in a subprocess whose
stdout is a pipe (so ``fastmd demo`` prints its line-based view, as in CI)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from cli_helpers import REPO, fastmd_cli, render, repo_env

import fastmd
import fastmd.cli
from fastmd.cli.reports import Reachability, Repeats, cause, fold_key
from fastmd.cli.state import Demo, demo_streams
from fastmd.cli.view import live_view
from fastmd.cli.watch import run as run_watch

DEMO_STREAMS = [
    f"{symbol}@{kind}"
    for symbol in ("btcusdt", "ethusdt", "bnbusdt")
    for kind in ("trade", "kline_1m", "bookTicker", "depth@100ms")
]


class Line(msgspec.Struct):
    """One line of ``fastmd watch``; the event stays raw until its type is known."""

    stream: str
    event: msgspec.Raw


def test_demo_reports_every_stream_and_every_gap_of_the_midway_drop() -> None:
    result = fastmd_cli("demo", "--duration", "4")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # Line mode: no terminal escape codes, a progress line a second, the injected fault.
    assert "\x1b[" not in out
    assert len(re.findall(r"^\[ *\d+\.\d+s\] \w+ +health \w+ +events \d+", out, re.M)) >= 3
    assert "fault injected: the simulator reset 1 connection(s) (TCP RST)" in out

    summary = out[out.index("fastmd demo summary") :]
    per_stream: dict[str, tuple[int, int]] = {}
    for stream in DEMO_STREAMS:
        match = re.search(rf"^  {re.escape(stream)} +([\d,]+) +(\d+) +(\d+)  (.*)$", summary, re.M)
        assert match is not None, f"{stream} missing from the summary"
        events, gaps = int(match[1].replace(",", "")), int(match[2])
        assert events > 0, f"no event on {stream}"
        per_stream[stream] = (events, gaps)
        if "@trade" in stream or "@depth" in stream:
            assert match[4].startswith("yes"), f"{stream}: ids not accounted for"

    count = re.search(r"^gaps reported: (\d+)$", summary, re.M)
    assert count is not None, "the summary must state the number of gaps, 0 included"
    reported = int(count[1])
    gap_lines = re.findall(
        r"^ +\d+\.\d+s (\S+): expected (\d+), received (\d+), (\d+) missing \((\w+)\)$",
        summary,
        re.M,
    )
    assert len(gap_lines) == reported == sum(gaps for _, gaps in per_stream.values())
    if reported:
        # The drop is the only fault: every gap is blamed on the reconnect, none is empty.
        for stream, expected, received, missing, reason in gap_lines:
            assert reason == "reconnect"
            assert int(received) - int(expected) == int(missing) > 0
            assert f"gap {stream}: expected {expected}, received {received}" in out
        assert re.search(r"^result: OK - \d+ gap\(s\), every one reported", summary, re.M)
    else:
        assert "result: OK - 0 gaps" in summary
    assert re.search(r"^reconnects: [1-9]", summary, re.M)
    assert "RECONNECTING at" in summary
    # The client's own verdict (client.health()) at the end, with why for each stream not
    # healthy.
    assert re.search(r"^health at the end: (HEALTHY|DEGRADED|STALE|DOWN)", summary, re.M)
    for label in ("duplicates dropped: ", "decode errors: 0", "status timeline: "):
        assert label in summary


def test_watch_prints_json_lines_of_fastmd_events() -> None:
    result = fastmd_cli("watch", "btcusdt@trade", "--count", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    trades = []
    for text in lines:
        line = msgspec.json.decode(text, type=Line)
        assert line.stream == "btcusdt@trade"
        trades.append(msgspec.json.decode(line.event, type=fastmd.Trade))
    assert {t.symbol for t in trades} == {"BTCUSDT"}
    ids = [t.trade_id for t in trades]
    assert ids == list(range(ids[0], ids[0] + 5))


def test_watch_exact_prices_round_trip_through_the_decoder() -> None:
    streams = ["ethusdt@depth5", "btcusdt@kline_1m", "btcusdt@aggTrade"]
    result = fastmd_cli("--loop", "asyncio", "watch", *streams, "--count", "6", "--price-type=str")
    assert result.returncode == 0, result.stderr
    decoder = fastmd.Decoder(price_type=str)
    decoder.register(streams)
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    for text in lines:
        line = msgspec.json.decode(text, type=Line)
        frame = b'{"stream":"%s","data":%s}' % (line.stream.encode(), bytes(line.event))
        message = decoder.decode(frame)
        assert message.stream in streams
        assert msgspec.json.encode(message.event) == bytes(line.event)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["watch", "BTCUSDT@trade"], "'BTCUSDT@trade': symbol 'BTCUSDT' is not lowercase"),
        (["watch", "btcusdt@trade", "btcusdt@nope"], "'btcusdt@nope': stream type 'nope'"),
        (["watch", "--venue", "binance-usdm", "btcusdt@trade"], "stream type 'trade'"),
    ],
)
def test_watch_rejects_bad_streams_with_exit_2(args: list[str], needle: str) -> None:
    result = fastmd_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: fastmd watch")
    assert "fastmd watch: error: argument STREAM: invalid stream name" in result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["demo", "--symbols", ""], "fastmd demo: error: argument --symbols: needs at least one"),
        (["demo", "--symbols", " , "], "argument --symbols: needs at least one symbol"),
        (["demo", "--symbols", "BTC-USDT"], "argument --symbols: 'BTC-USDT' is not a symbol"),
        (["sim", "--symbols", "BTC_250926"], "'BTC_250926' is not a symbol on binance-spot"),
        (["demo", "--duration", "-1"], "fastmd demo: error: argument --duration: must be > 0"),
        (["demo", "--duration", "nan"], "argument --duration: must be a finite number"),
        (["demo", "--duration", "soon"], "argument --duration: not a number: 'soon'"),
        (["demo", "--url", "http://127.0.0.1:1"], "argument --url: 'http://127.0.0.1:1' is not"),
        (["demo", "--rest-url", "http://x"], "argument --rest-url: needs --url"),
        (["watch"], "fastmd watch: error: the following arguments are required: STREAM"),
        (["watch", ""], "fastmd watch: error: argument STREAM: invalid stream name ''"),
        (["watch", "btcusdt@trade", "--count", "0"], "argument --count: must be >= 1, not 0"),
        (["watch", "btcusdt@trade", "--symbols", ""], "fastmd watch: error: argument --symbols"),
        (["sim", "--rate", "-5"], "fastmd sim: error: argument --rate: must be >= 0, not -5"),
        (["sim", "--port", "70000"], "argument --port: must be within 0..65535, not 70000"),
        (["sim", "--skip", "BTC@trade"], "argument --skip: invalid stream name 'BTC@trade'"),
        (["--log-level", "loud", "sim"], "fastmd: error: argument --log-level: 'loud' is not"),
        (["nope"], "fastmd: error: argument command: invalid choice: 'nope'"),
    ],
)
def test_bad_option_values_are_usage_errors_before_anything_starts(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        fastmd.cli.main(args)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: fastmd"), err
    assert error in err, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        fastmd.cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"fastmd {fastmd.__version__}\n"


UNREACHABLE = ["--url", "ws://127.0.0.1:1", "--rest-url", "http://127.0.0.1:1"]
"""Nothing listens on port 1: every connection is refused at once."""


def test_watch_gives_up_on_an_unreachable_exchange_with_the_cause_in_one_line() -> None:
    started = time.monotonic()
    result = fastmd_cli("watch", "btcusdt@trade", *UNREACHABLE, timeout=20)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stdout == ""
    # The circuit opens after 5 refused attempts (about 6 s): no point waiting the 10 s out.
    assert elapsed < 12, f"took {elapsed:.1f} s"
    assert re.fullmatch(
        r"fastmd watch: cannot reach ws://127\.0\.0\.1:1/stream: connection refused "
        r"\(\d+ attempts\); REST http://127\.0\.0\.1:1: connection refused\n",
        result.stderr,
    ), result.stderr


def test_watch_gives_up_on_a_server_that_never_answers() -> None:
    """A listening socket that never accepts: TCP connects, nothing else ever happens."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        target = ["--url", f"ws://127.0.0.1:{port}", "--rest-url", f"http://127.0.0.1:{port}"]
        started = time.monotonic()
        result = fastmd_cli("watch", "btcusdt@trade", *target, "--give-up-after", "1.5")
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 6, f"took {elapsed:.1f} s"
    assert (
        result.stderr
        == f"fastmd watch: cannot reach ws://127.0.0.1:{port}: no answer within 1.5 s\n"
    )


def test_watch_refuses_a_symbol_the_simulator_does_not_list_once() -> None:
    """The simulator lists --symbols only; the client's exchangeInfo check refuses the rest, as
    it would on Binance (which acknowledges such a stream and then sends nothing)."""
    result = fastmd_cli("watch", "--symbols", "BTCUSDT", "btcusd@trade")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "fastmd watch: btcusd@trade: symbol is not listed by the exchange "
        "(the simulator lists BTCUSDT; see --symbols)\n"
    )


def test_watch_stops_every_stream_when_one_is_refused_and_says_so() -> None:
    result = fastmd_cli("watch", "--symbols", "BTCUSDT", "btcusdt@trade", "btcusd@trade")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "fastmd watch: btcusd@trade: symbol is not listed by the exchange "
        "(the simulator lists BTCUSDT; see --symbols)",
        "fastmd watch: stopping every stream: fix or drop the refused one",
    ]


def test_demo_stops_early_when_nothing_answers_and_names_the_cause() -> None:
    started = time.monotonic()
    result = fastmd_cli("demo", *UNREACHABLE, timeout=25)
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert elapsed < 12, f"took {elapsed:.1f} s of the 20 s demo"
    cause = (
        r"cannot reach ws://127\.0\.0\.1:1/stream: connection refused \(\d+ attempts\); "
        r"REST http://127\.0\.0\.1:1: connection refused"
    )
    assert re.search(rf"^\[ *\d+\.\d+s\] giving up: {cause}$", out, re.M), out
    assert re.search(rf"^result: FAILED - {cause}$", out, re.M), out
    # Each kind of failure is shown once, not once per stream and second.
    live = out[: out.index("fastmd demo summary")]
    for code in ("connect_failed", "fallback_poll_failed", "fallback_unserved"):
        assert len(re.findall(rf"^\[.*\] \w+ {code}: ", live, re.M)) <= 1, live
    assert re.search(r"^error reports: .*connect_failed \d+", out, re.M)
    assert result.stderr == ""


def test_repeats_fold_messages_that_differ_only_in_numbers() -> None:
    now = [0.0]
    repeats = Repeats(interval=10.0, clock=lambda: now[0])
    assert repeats.admit("circuit open for another 29.0 s") == "circuit open for another 29.0 s"
    assert repeats.admit("circuit open for another 28.0 s") is None
    assert repeats.admit("something else") == "something else"
    assert repeats.admit("btcusdt@trade: poll failed", key="poll") == "btcusdt@trade: poll failed"
    assert repeats.admit("ethusdt@trade: poll failed", key="poll") is None
    now[0] = 10.0
    assert repeats.admit("circuit open for another 19.0 s") == (
        "circuit open for another 19.0 s (+1 similar)"
    )


def test_reports_of_one_kind_about_different_streams_fold_into_one() -> None:
    """docs/cli.md: a failing REST poll comes once a second for every stream in fallback, and
    is shown once; a failed subscription names a missing stream, and each is shown."""
    warning = fastmd.Severity.WARNING

    def report(code: str, stream: str) -> fastmd.ErrorReport:
        return fastmd.ErrorReport(warning, code, f"{stream}: failed", None, {"stream": stream})

    repeats = Repeats(interval=10.0, clock=lambda: 0.0)
    shown = [
        repeats.admit(r.message, fold_key(r))
        for r in (
            report("fallback_poll_failed", "btcusdt@trade"),
            report("fallback_poll_failed", "ethusdt@trade"),
            report("subscription_failed", "btcusdt@trade"),
            report("subscription_failed", "ethusdt@trade"),
        )
    ]
    assert shown == [
        "btcusdt@trade: failed",
        None,
        "btcusdt@trade: failed",
        "ethusdt@trade: failed",
    ]
    no_stream = fastmd.ErrorReport(warning, "fallback", "ws://x: polling", None, {})
    assert fold_key(no_stream) == "fallback: ws://x: polling"


def test_ctrl_c_before_the_command_started_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md's exit code 130."""
    import fastmd.cli.entry

    async def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(fastmd.cli.entry._COMMANDS, "sim", interrupted)
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)  # no handler left behind
    assert fastmd.cli.main(["--loop", "asyncio", "sim"]) == 130


def test_loop_uvloop_without_uvloop_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--loop uvloop`` where uvloop is not installed: exit 2 with the install hint; the
    command never starts."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)  # no handler left behind
    assert fastmd.cli.main(["--loop", "uvloop", "sim"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "uvloop is not installed: pip install 'fastmd[uvloop]'\n"


def test_cause_is_the_plain_os_reason_at_the_bottom_of_the_chain() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")
    error = fastmd.ConnectError("cannot connect")
    error.__cause__ = refused
    assert cause(error) == "connection refused"
    unknown = socket.gaierror(-2, "Name or service not known")
    assert cause(unknown) == "host not found (name or service not known)"
    assert cause(fastmd.FastmdTimeoutError("no connection within 10 s")) is None


def busy_demo() -> Demo:
    """A demo's state at its busiest: every stream live, big numbers, many gaps and incidents."""
    symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    source = "simulator ws://127.0.0.1:43811 (binance-spot, seed 0, 300 events/s)"
    demo = Demo("binance-spot", symbols, source, plain=None, reach=Reachability(10))
    for i, market in enumerate(demo.markets.values()):
        market.last_price, market.bid, market.ask = 60_000.02 / (i + 1), 59_999.97, 60_000.02
        market.trades_per_second = 1_234.0
    for ledger in demo.streams.values():
        ledger.record(1, 1_234_567)
    gaps: dict[str, list[fastmd.Gap]] = {stream: [] for stream in demo.streams}
    for i in range(12):
        stream = DEMO_STREAMS[i % len(DEMO_STREAMS)]
        gap = fastmd.Gap(stream, 12_345_678_901, 12_345_679_001, fastmd.GapReason.RECONNECT)
        demo.on_gap(gap)
        gaps[stream].append(gap)
        demo.streams[stream].ids -= gap.missing  # every id delivered or reported
    # The client's health of each stream: what the views show beside the demo's ledgers.
    demo.health = health_snapshot(
        {stream: (fastmd.HealthStatus.HEALTHY, 1_234_567, found) for stream, found in gaps.items()}
    )
    for i in range(8):
        demo.note(f"warning disconnected: ws://127.0.0.1:43811/stream closed ({i}); " * 3)
    demo.metrics = fastmd.Metrics(
        status=fastmd.Status.RECONNECTING, connections=(), streams=12, messages=12_345_678,
        message_rate_1s=12_345.0, message_rate_10s=12_345.0,
        latency=fastmd.LatencyStats(0.01234, 0.01234, 0.12345, 100), uptime=20.0, reconnects=12,
        handovers=3, errors=5, gaps=12, duplicates_dropped=1_234, decode_errors=12,
        callback_errors=0, callback_time_mean=0.0, callback_time_max=0.0, slow_callbacks=0,
        overflow_dropped=0, backfilled=1_234, book_resyncs=0,
    )  # fmt: skip
    demo.events_rate = 123_456.0
    return demo


def health_snapshot(
    streams: dict[str, tuple[fastmd.HealthStatus, int, list[fastmd.Gap]]],
) -> fastmd.Health:
    """A ``client.health()`` snapshot with these streams' status, events and gaps."""
    table = {
        name: fastmd.StreamHealth(
            stream=name, status=status, reason=None if status == "HEALTHY" else "silent",
            last_event_age=0.1 if events else None, rate=100.0, events=events, rest_events=0,
            gaps=len(found), missing=sum(g.missing for g in found), lag=None,
            expected_interval=None, stale_after=None, connection=None,
        )
        for name, (status, events, found) in streams.items()
    }  # fmt: skip
    worst = max((s.status for s in table.values()), key=list(fastmd.HealthStatus).index)
    return fastmd.Health(status=worst, reason=None, streams=table, connections=())


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 24), (80, 12), (100, 40)])
def test_live_view_fits_the_terminal(width: int, height: int) -> None:
    from rich.cells import cell_len

    lines = render(live_view(busy_demo(), 20.0, width, height), width, height)
    assert len(lines) <= height - 1, "\n".join(lines)  # the last line stays free for the cursor
    assert max(cell_len(line) for line in lines) <= width, "\n".join(lines)
    assert lines[0].startswith("fastmd demo")
    assert lines[1].startswith(
        "status RECONNECTING   health HEALTHY   events 14,814,804 (123,456/s)   gaps 12"
    )
    if width >= 160:  # one status line at 160 columns, even with numbers this large
        assert "decode errors 12" in lines[1], lines[1]
        assert lines[2] == "", "\n".join(lines)
    elif width == 80:  # two at 80; pairs are never split
        assert lines[2].startswith("reconnects 12   ping RTT"), "\n".join(lines)
        assert lines[3] == "" or lines[3].startswith(("symbol", "gaps")), "\n".join(lines)
    text = "\n".join(lines)
    assert "gaps reported: 12" in text, text
    if height >= 24:
        assert "BNBUSDT" in text, text
        assert re.search(r"^\+\d+ more: ", text, re.M), text


def test_live_view_shows_everything_when_there_is_room() -> None:
    lines = render(live_view(busy_demo(), 20.0, 160, 60), 160, 60)
    text = "\n".join(lines)
    assert all(stream in text for stream in DEMO_STREAMS), text
    assert "more" not in text
    assert "gaps reported: 12 (2 earlier not shown)" in text  # the latest 10


def test_live_view_puts_the_streams_in_trouble_first() -> None:
    demo = busy_demo()
    assert demo.health is not None
    streams = dict(demo.health.streams)
    streams["bnbusdt@bookTicker"] = dataclasses.replace(
        streams["bnbusdt@bookTicker"], status=fastmd.HealthStatus.STALE, reason="silent for 9 s"
    )
    demo.health = dataclasses.replace(demo.health, streams=streams)
    lines = render(live_view(demo, 20.0, 80, 24), 80, 24)
    text = "\n".join(lines)
    assert re.search(r"^bnbusdt@bookTicker +STALE ", text, re.M), text
    assert re.search(r"\+\d+ more: \d+ with gaps", text), text


def test_live_view_in_a_real_terminal() -> None:
    """``fastmd demo`` in tmux at 80x24: the screen holds the whole view, nothing scrolls."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    session = f"fastmd-test-{os.getpid()}"
    env = f"PYTHONPATH={REPO}"
    command = f"cd {REPO} && {env} {sys.executable} -m fastmd demo --duration 4; sleep 10"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True
    )
    try:
        time.sleep(3.0)  # after the drop at 2 s: gaps and incidents are on screen
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
            check=True,
        ).stdout.rstrip("\n").split("\n")  # fmt: skip
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    shown = "\n".join(screen)
    assert screen[0].startswith("fastmd demo"), shown  # one line, nothing scrolled
    assert screen[1].startswith("status "), shown
    assert len(screen) <= 23, shown
    # rich crops a view taller than the terminal and ends it with "...": every section shows
    assert not any(line.strip() == "..." for line in screen), shown
    for section in ("symbol", "stream", "gaps reported: "):
        assert any(line.startswith(section) for line in screen), shown


@pytest.mark.parametrize(
    ("venue", "example", "rest"),
    [
        ("binance-spot", "/stream?streams=ethusdt@trade ", "/api/v3/time"),
        # USD-M futures: no trade stream, and aggTrade is served on the /market route
        ("binance-usdm", "/market/stream?streams=ethusdt@aggTrade ", "/fapi/v1/time"),
    ],
)
def test_sim_prints_its_urls_and_stops(venue: str, example: str, rest: str) -> None:
    result = fastmd_cli("sim", "--venue", venue, "--symbols", "ETHUSDT", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"ws_url=ws://127\.0\.0\.1:\d+ rest_url=http://127\.0\.0\.1:\d+", result.stdout
    )
    assert example in result.stdout
    assert re.search(r"http://127\.0\.0\.1:\d+" + re.escape(rest) + r"\n", result.stdout)
    assert result.stdout.rstrip().endswith("simulator stopped")


@pytest.mark.parametrize(
    ("venue", "trades"), [("binance-spot", "btcusdt@trade"), ("binance-usdm", "btcusdt@aggTrade")]
)
def test_demo_streams_follow_the_venue_rules(venue: fastmd.Venue, trades: str) -> None:
    """The demo takes every trade from the venue's trade stream (fastmd.core.streams) and keeps
    an id ledger for it and for the depth diffs only."""
    streams = demo_streams("BTCUSDT", venue)
    assert streams == [trades, "btcusdt@kline_1m", "btcusdt@bookTicker", "btcusdt@depth@100ms"]
    assert streams[0] == fastmd.trade_stream("BTCUSDT", venue)
    demo = Demo(venue, ["BTCUSDT"], "test", plain=None, reach=Reachability(10))
    assert list(demo.streams) == streams
    assert [h.name for h in demo.streams.values() if h.sequenced] == [trades, streams[3]]


def test_usage_errors_exit_2_from_the_command_line() -> None:
    result = fastmd_cli("demo", "--symbols", "")
    assert result.returncode == 2
    assert "fastmd demo: error: argument --symbols" in result.stderr
    assert fastmd_cli("nope").returncode == 2


def test_demo_and_watch_against_an_external_exchange() -> None:
    """``--url``/``--rest-url``: no embedded simulator and no fault injection (a ``fastmd sim``
    process stands in for the real exchange)."""
    with subprocess.Popen(
        [sys.executable, "-m", "fastmd", "sim", "--rate", "300", "--duration", "20"],
        stdout=subprocess.PIPE,
        text=True,
        env=repo_env(),
        cwd=REPO,
    ) as sim:
        try:
            assert sim.stdout is not None
            urls = re.search(r"ws_url=(\S+) rest_url=(\S+)", sim.stdout.readline())
            assert urls is not None
            target = ["--url", urls[1], "--rest-url", urls[2]]
            demo = fastmd_cli("demo", *target, "--duration", "2")
            assert demo.returncode == 0, demo.stdout + demo.stderr
            assert f"against {urls[1]} (binance-spot)" in demo.stdout
            assert "fault injected" not in demo.stdout
            assert "gaps reported: 0" in demo.stdout
            watch = fastmd_cli("watch", *target, "ethusdt@aggTrade", "--count", "3")
            assert watch.returncode == 0, watch.stderr
            events = [msgspec.json.decode(text, type=Line) for text in watch.stdout.splitlines()]
            assert [e.stream for e in events] == ["ethusdt@aggTrade"] * 3
        finally:
            sim.terminate()  # SIGTERM: the simulator stops cleanly
            assert sim.wait(timeout=10) == 0


def cli_imports(path: Path) -> tuple[set[str], list[str]]:
    """The fastmd modules one source file imports (type-only imports included), and its uses
    of a leading-underscore name that is not its own: ``from m import _x``, ``obj._x`` on
    anything but ``self``."""
    import ast

    modules: set[str] = set()
    private: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.startswith("fastmd"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastmd"):
            modules.add(node.module)
            for alias in node.names:
                if node.module == "fastmd.cli":  # from fastmd.cli import demo: a submodule
                    modules.add(f"fastmd.cli.{alias.name}")
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append(f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value
            if not node.attr.startswith("__") and not (
                isinstance(owner, ast.Name) and owner.id == "self"
            ):
                private.append(ast.unparse(node))
    return modules, private


def test_cli_modules_form_no_cycle_and_share_no_private_name() -> None:
    """fastmd/cli/: a module uses another's names only if they have no leading underscore, no
    import (type-only ones included) closes a cycle, and the asyncio shell (fastmd.aio) is
    reached through the public ``fastmd`` names only."""
    graph: dict[str, set[str]] = {}
    problems: list[str] = []
    for path in sorted((REPO / "fastmd" / "cli").glob("*.py")):
        name = "fastmd.cli" if path.stem == "__init__" else f"fastmd.cli.{path.stem}"
        modules, private = cli_imports(path)
        problems += [f"{name}: {use}" for use in private]
        problems += [f"{name} imports {m}" for m in modules if m.startswith("fastmd.aio")]
        graph[name] = {m for m in modules if m.startswith("fastmd.cli")} - {name}
    assert problems == []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        assert state.get(module) != "open", "import cycle: " + " -> ".join([*path, module])
        if module not in state:
            state[module] = "open"
            for dependency in sorted(graph.get(module, set())):
                visit(dependency, [*path, module])
            state[module] = "done"

    for module in sorted(graph):
        visit(module, [])
    assert graph["fastmd.cli.common"] == set()


class CancelledAtStart(argparse.Namespace):
    """``fastmd watch``'s arguments; reading ``--count`` cancels the running command. It stands in
    for a Ctrl-C that comes before the command's own handler is installed: ``asyncio.run`` then
    cancels the command, which sees it at its first wait."""

    @property
    def count(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return None


async def test_watch_cancelled_during_its_start_ends_quietly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = CancelledAtStart(
        streams=["btcusdt@trade"], price_type="float", give_up_after=10.0, venue="binance-spot",
        url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1", symbols=["BTCUSDT"], seed=0,
        rate=50.0, ack_wait=10.0,
    )  # fmt: skip
    with pytest.raises(asyncio.CancelledError):
        await run_watch(args)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await asyncio.sleep(0.1)
    # A waiter left running would take the client's closing for a removed subscription.
    assert capsys.readouterr() == ("", "")
