"""``fastmd.prometheus.Collector`` scraped by a real Prometheus server (Debian's ``prometheus``
package, started here on 127.0.0.1), its exposition linted by ``promtool check metrics``, its
cardinality cap, the optional import, and the Grafana dashboard's queries against the names the
collector exports.

Without ``prometheus``/``promtool`` on PATH the server tests skip, except under ``CI``, where
they fail: ``.ci/run`` installs the package."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cli_helpers import REPO, WITHOUT_PROMETHEUS_CLIENT, python
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

import fastmd
import fastmd.prometheus
from fastmd.prometheus import METRIC_NAMES, OTHER_STREAMS, Collector
from fastmd.sim import Exchange

DASHBOARD = REPO / "docs" / "grafana" / "fastmd-dashboard.json"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
TRADES = [f"{s.lower()}@trade" for s in SYMBOLS]


def _tool(name: str) -> str:
    """The path of a Prometheus tool; skipped without it, failed without it under CI."""
    path = shutil.which(name)
    if path is None:
        reason = (
            f"{name} is not installed (Debian package 'prometheus': apt-get install prometheus)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}")
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def prometheus_server(tmp_path: Path, target: str) -> Iterator[str]:
    """A Prometheus server scraping ``target`` (host:port) every second; yields its base URL.
    Its port comes from a free-port probe; a lost race (the port taken meanwhile) is retried."""
    binary = _tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: fastmd\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    for attempt in range(3):
        port = _free_port()
        log = (tmp_path / f"prometheus-{attempt}.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / f'tsdb-{attempt}'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(0.3)
            if process.poll() is not None and attempt < 2:
                continue  # did not start (the probed port was taken meanwhile): try another
            yield f"http://127.0.0.1:{port}"
            return
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            log.close()
    pytest.fail("prometheus did not start: " + (tmp_path / "prometheus-2.log").read_text())


async def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll the coroutine function ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"{what} within {timeout:g} s (last: {last!r})")


async def _query(session: aiohttp.ClientSession, base: str, expr: str) -> dict[str, float]:
    """An instant query's vector as ``{stream or '': value}``."""
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return {
        item["metric"].get("stream", ""): float(item["value"][1]) for item in body["data"]["result"]
    }


async def _promtool_accepts(promtool: str, exposition: bytes) -> None:
    """``promtool check metrics`` lints the exposition: exit 0 and nothing to say."""
    process = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(exposition), 30)
    assert process.returncode == 0, output.decode()
    assert output.strip() == b"", output.decode()


def _exposition(collector: Collector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in an exposition."""
    found: dict[str, float] = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        found[match[1] or ""] = float(match[2])
    return found


class Seen:
    """What the test's own callbacks and gap listener saw, per stream."""

    def __init__(self, client: fastmd.Client) -> None:
        self.events: Counter[str] = Counter()
        self.gaps: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()
        client.on_gap(self.on_gap)

    def callback(self, stream: str) -> Callable[[Any], None]:
        def count(event: Any) -> None:
            self.events[stream] += 1

        return count

    def on_gap(self, gap: fastmd.Gap) -> None:
        self.gaps[gap.stream] += 1
        self.missing[gap.stream] += gap.missing


@contextlib.asynccontextmanager
async def _traded_client() -> AsyncIterator[tuple[fastmd.Client, Seen]]:
    """A client on a simulator, and what its callbacks saw once ``_traded`` ran on it."""
    async with (
        Exchange("binance-spot", SYMBOLS, seed=7, rate=0) as exchange,
        fastmd.Client(ws_url=exchange.ws_url, rest_url=exchange.rest_url) as client,
    ):
        seen = Seen(client)
        await _traded(exchange, client, seen)
        yield client, seen


async def _traded(exchange: Exchange, client: fastmd.Client, seen: Seen) -> None:
    """Trades on every stream, and a gap of 5 on ethusdt@trade (frames skipped by the
    simulator); returns once the callbacks saw every frame sent."""
    subs = [client.subscribe(stream, seen.callback(stream)) for stream in TRADES]
    await asyncio.gather(*(sub.wait_active(10) for sub in subs))
    sent = {stream: 0 for stream in TRADES}
    for symbol, count in zip(SYMBOLS, (300, 120, 40), strict=True):
        sent[f"{symbol.lower()}@trade"] += await exchange.flood(symbol, count)
    exchange.faults.skip("ethusdt@trade", 5)
    sent["ethusdt@trade"] += await exchange.flood("ETHUSDT", 30) - 5

    async def delivered() -> bool:
        return dict(seen.events) == sent

    await _until(delivered, 10, "every frame delivered")
    assert seen.gaps["ethusdt@trade"] == 1
    assert seen.missing["ethusdt@trade"] == 5


async def test_prometheus_scrapes_what_the_callbacks_saw(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    async with _traded_client() as (client, seen):
        registry = CollectorRegistry()
        registry.register(Collector(client))
        server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        try:
            target = f"127.0.0.1:{server.server_port}"
            with prometheus_server(tmp_path, target) as base:
                async with aiohttp.ClientSession() as session:

                    async def scraped() -> dict[str, float]:
                        try:
                            up = await _query(session, base, 'up{job="fastmd"}')
                        except aiohttp.ClientError:
                            return {}  # not listening yet
                        return up if up.get("") == 1.0 else {}

                    await _until(scraped, 30, "Prometheus scraped the collector")
                    # A scrape taken from Prometheus' own thread of requests: the values are
                    # what the callbacks counted, stream by stream.
                    for metric, expected in (
                        ("fastmd_events_total", seen.events),
                        ("fastmd_gaps_total", seen.gaps),
                        ("fastmd_missing_events_total", seen.missing),
                    ):

                        async def matches(metric: str = metric) -> dict[str, float]:
                            return await _query(session, base, metric)

                        values = await _until(matches, 10, f"{metric} scraped")
                        want = {stream: float(expected[stream]) for stream in TRADES}
                        assert values == want, metric
                    healthy = await _query(session, base, "fastmd_stream_healthy")
                    assert set(healthy) == set(TRADES)
                    assert set(healthy.values()) <= {0.0, 1.0}
                    ages = await _query(session, base, "fastmd_stream_last_event_age_seconds")
                    assert set(ages) == set(TRADES)
                    assert all(0 <= a < 60 for a in ages.values())
                    status = await _query(session, base, "fastmd_health_status == 1")
                    assert len(status) == 1
                    reconnects = await _query(session, base, "fastmd_reconnects_total")
                    assert reconnects == {"": 0.0}
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
        await _promtool_accepts(promtool, generate_latest(registry))


async def test_streams_past_max_streams_are_summed_into_other() -> None:
    async with _traded_client() as (client, seen):
        text = _exposition(Collector(client, max_streams=1))
        events = _samples(text, "fastmd_events_total")
        first = TRADES[0]
        assert events == {
            f'{{stream="{first}"}}': float(seen.events[first]),
            f'{{stream="{OTHER_STREAMS}"}}': float(sum(seen.events[s] for s in TRADES[1:])),
        }
        missing = _samples(text, "fastmd_missing_events_total")
        assert missing[f'{{stream="{OTHER_STREAMS}"}}'] == 5.0
        assert _samples(text, "fastmd_streams_aggregated") == {"": 2.0}
        ages = _samples(text, "fastmd_stream_last_event_age_seconds")
        assert set(ages) == {f'{{stream="{first}"}}', f'{{stream="{OTHER_STREAMS}"}}'}
        assert set(_samples(text, "fastmd_stream_healthy").values()) <= {0.0, 1.0}
        assert sum(_samples(text, "fastmd_streams").values()) == 3.0  # every stream counted
        summed = [client.health().streams[s] for s in TRADES[1:]]
        other = f'{{stream="{OTHER_STREAMS}"}}'
        assert _samples(text, "fastmd_gaps_total")[other] == float(sum(s.gaps for s in summed))
        assert _samples(text, "fastmd_rest_events_total")[other] == float(
            sum(s.rest_events for s in summed)
        )
        lag_max = _samples(text, "fastmd_stream_lag_max_seconds")
        assert lag_max[other] == max(s.lag.max for s in summed if s.lag and s.lag.max is not None)
        assert _samples(text, "fastmd_connection_up") == {'{connection="0"}': 1.0}
        quiet = _exposition(Collector(client, per_connection=False))
        assert "fastmd_connection_" not in quiet
        everything = _exposition(Collector(client, max_streams=0))
        assert _samples(everything, "fastmd_events_total") == {
            f'{{stream="{OTHER_STREAMS}"}}': float(sum(seen.events.values()))
        }


async def test_exposition_passes_promtool_and_names_only_known_metrics() -> None:
    promtool = _tool("promtool")
    async with _traded_client() as (client, _):
        collector = Collector(client)
        text = _exposition(collector)
        families = list(collector.collect())
    names = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    assert names == METRIC_NAMES
    assert len(names) == len(families)
    assert all(f.documentation for f in families)
    await _promtool_accepts(promtool, text.encode())


async def test_a_scrape_waits_for_a_blocked_loop_at_most_snapshot_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A scrape from another thread takes its snapshot on the client's loop; a loop blocked
    past ``snapshot_timeout`` gives an empty scrape and a warning, and the late snapshot is
    never taken. A free loop answers the same thread at once."""
    async with (
        Exchange("binance-spot", SYMBOLS, seed=7, rate=0) as exchange,
        fastmd.Client(ws_url=exchange.ws_url, rest_url=exchange.rest_url) as client,
    ):
        collector = Collector(client, snapshot_timeout=0.2)
        scrapes: list[list[Any]] = []
        scraper = threading.Thread(target=lambda: scrapes.append(list(collector.collect())))
        scraper.start()
        time.sleep(0.6)  # noqa: ASYNC251 - the loop is blocked on purpose
        scraper.join(5)
        assert scrapes == [[]]
        assert "did not take a snapshot within 0.2 s" in caplog.text
        free = await asyncio.to_thread(lambda: list(collector.collect()))
        assert {family.name for family in free} >= {"fastmd_events", "fastmd_health_status"}


async def test_decode_errors_are_counted_by_category() -> None:
    async with (
        Exchange("binance-spot", SYMBOLS, seed=7, rate=0) as exchange,
        fastmd.Client(ws_url=exchange.ws_url, rest_url=exchange.rest_url) as client,
    ):
        collector = Collector(client)
        await client.subscribe(TRADES[0], lambda event: None).wait_active(10)
        sent = {"not_json": 2, "wrong_types": 1}
        for kind, count in sent.items():
            for _ in range(count):
                assert exchange.faults.malformed(kind, stream=TRADES[0]) == 1  # type: ignore[arg-type]

        async def counted() -> bool:
            return client.metrics().decode_errors == 3

        await _until(counted, 10, "three decode errors")
        decode = _samples(_exposition(collector), "fastmd_decode_errors_total")
        collector.close()  # stops listening: later errors are not counted
        assert exchange.faults.malformed("not_json", stream=TRADES[0]) == 1

        async def fourth() -> bool:
            return client.metrics().decode_errors == 4

        await _until(fourth, 10, "a fourth decode error")
        assert _samples(_exposition(collector), "fastmd_decode_errors_total") == decode
    assert decode['{category="not_json"}'] == 2.0
    assert decode['{category="wrong_type"}'] == 1.0
    assert sum(decode.values()) == 3.0
    assert set(decode) == {f'{{category="{c.value}"}}' for c in fastmd.DecodeErrorCategory}


def test_a_client_not_started_is_down_with_no_stream() -> None:
    text = _exposition(Collector(fastmd.Client()))
    assert _samples(text, "fastmd_health_status")['{status="DOWN"}'] == 1.0
    assert _samples(text, "fastmd_health_status")['{status="HEALTHY"}'] == 0.0
    assert sum(_samples(text, "fastmd_health_status").values()) == 1.0
    client_status = _samples(text, "fastmd_client_status")
    assert set(client_status) == {f'{{status="{s.value}"}}' for s in fastmd.Status}
    assert client_status['{status="CONNECTING"}'] == 1.0  # not started yet
    assert sum(client_status.values()) == 1.0
    assert _samples(text, "fastmd_events_total") == {}
    assert _samples(text, "fastmd_streams_aggregated") == {"": 0.0}


def test_bad_arguments_are_value_errors() -> None:
    client = fastmd.Client()
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="max_streams"):
            Collector(client, max_streams=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="snapshot_timeout"):
        Collector(client, snapshot_timeout=0)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return python("-c", code, timeout=60)


def test_import_fastmd_does_not_import_prometheus_client() -> None:
    result = _python("import sys, fastmd; fastmd.Client; print('prometheus_client' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_prometheus_client_the_import_error_names_the_extra() -> None:
    blocker = WITHOUT_PROMETHEUS_CLIENT + (
        "try:\n"
        "    import fastmd.prometheus\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )  # fmt: skip
    result = _python(blocker)
    assert result.returncode == 0, result.stderr
    assert "pip install 'fastmd[prometheus]'" in result.stdout


def _dashboard_metric_names(dashboard: dict[str, Any]) -> set[str]:
    """Every ``fastmd_*`` name in the dashboard's PromQL expressions (panels, rows' panels,
    templating queries)."""
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    exprs.append(value)
                elif isinstance(value, dict) and key == "query":
                    walk(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    assert exprs, "the dashboard has no PromQL expression"
    return {name for expr in exprs for name in re.findall(r"\bfastmd_[a-z0-9_]+", expr)}


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"]
    assert dashboard["panels"]
    used = _dashboard_metric_names(dashboard)
    histogram_parts = {f"{n}{s}" for n in METRIC_NAMES for s in ("_bucket", "_sum", "_count")}
    unknown = used - METRIC_NAMES - histogram_parts
    assert not unknown, f"the dashboard queries metrics the collector does not export: {unknown}"
    for required in (
        "fastmd_events_total",
        "fastmd_gaps_total",
        "fastmd_stream_healthy",
        "fastmd_stream_last_event_age_seconds",
    ):
        assert required in used, f"no panel shows {required}"


def test_the_dashboard_check_sees_unknown_names() -> None:
    dashboard = {"panels": [{"targets": [{"expr": "rate(fastmd_nonsense_total[1m])"}]}]}
    assert _dashboard_metric_names(dashboard) == {"fastmd_nonsense_total"}
