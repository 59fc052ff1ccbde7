"""``fastmd monitor [STREAM...]``: a live view of :meth:`fastmd.Client.health`: the overall
verdict, every stream (status, rate, last event, lag, gaps, why it is not healthy), every
connection (state, ping round trip, uptime, reconnects), and alerts as they fire and resolve.
Against the embedded simulator unless ``--url`` names an exchange; ``--prometheus-port`` serves
:class:`fastmd.prometheus.Collector` meanwhile. On a terminal the view redraws 4 times a second;
otherwise (a pipe, CI, ``--plain``) it prints a line a second and a line per alert edge; both end
with a plain-text summary."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

import fastmd
from fastmd.cli.common import EXIT_USAGE, cancel_all, describe_target, signals_set, start_target
from fastmd.cli.reports import Reachability, Repeats, fold_key, give_up_when_unreachable
from fastmd.cli.state import demo_streams
from fastmd.cli.view import compact_table, one_line, print_each_second, redraw_live

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from fastmd import Alert, ErrorReport, Health
    from fastmd.core.clock import LagStats
    from fastmd.core.health import StreamHealth
    from fastmd.sim import Exchange

__all__ = ["Monitor", "monitor_view", "run", "status_line", "summary"]

_COLOURS: Final = {"HEALTHY": "green", "DEGRADED": "yellow", "STALE": "bold red", "DOWN": "red"}
_TROUBLE: Final = {"DOWN": 3, "STALE": 3, "DEGRADED": 2, "HEALTHY": 0}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _lag(lag: LagStats | None) -> tuple[str, str]:
    if lag is None:
        return "-", "-"
    return _ms(lag.p50), _ms(lag.p99)


@dataclass(frozen=True)
class AlertSeen:
    """One alert edge and when it came (seconds into the monitor)."""

    at: float
    alert: Alert

    def text(self) -> str:
        alert = self.alert
        about = f" {alert.stream}" if alert.stream is not None else ""
        if alert.firing:
            return f"ALERT firing {alert.severity.value} {alert.kind.value}{about}: {alert.message}"
        return (
            f"ALERT resolved {alert.kind.value}{about} after {max(alert.at - alert.since, 0):.1f} s"
        )


class Monitor:
    """What ``fastmd monitor`` shows: the latest :class:`fastmd.Health` snapshot, the alert
    edges and error reports seen, and the counts for the summary. Listeners only record; the
    views format.

    Args:
        source: what is monitored (a line for the title and the summary).
        plain: where line mode prints alert edges and reports as they come (``None``: the
            live view shows them).
        clock: seconds, for the times shown (``time.monotonic``).
    """

    def __init__(
        self,
        source: str,
        *,
        plain: TextIO | None,
        reach: Reachability,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.plain = plain
        self.reach = reach
        self.clock = clock
        self.started = clock()
        self.health: Health | None = None
        self.alerts: deque[AlertSeen] = deque(maxlen=200)
        self.fired = 0
        self.resolved = 0
        self.delivered = 0
        """Events the monitor's own callback received."""
        self.reports: deque[tuple[float, str]] = deque(maxlen=20)
        self.subscription_errors: list[str] = []
        self.failure: str | None = None
        self._repeats = Repeats()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _say(self, at: float, text: str) -> None:
        if self.plain is not None:
            print(f"[{at:6.2f}s] {text}", file=self.plain, flush=True)

    def on_event(self, event: Any) -> None:
        """The subscription callback: counts (health does the rest)."""
        self.delivered += 1

    def on_alert(self, alert: Alert) -> None:
        """``client.on_alert``: keeps the edge and prints it in line mode."""
        seen = AlertSeen(self.elapsed(), alert)
        self.alerts.append(seen)
        if alert.firing:
            self.fired += 1
        else:
            self.resolved += 1
        self._say(seen.at, seen.text())

    def on_report(self, report: ErrorReport) -> None:
        """The client's error reporter: reports become lines of the view (each distinct one
        once in 10 s) instead of log lines on stderr that would tear it."""
        if report.code == "subscription_failed":
            self.subscription_errors.append(report.message)
        text = f"{report.severity.value} {report.code}: {report.message[:160]}"
        admitted = self._repeats.admit(text, fold_key(report))
        if admitted is not None:
            self.note(admitted)

    def note(self, text: str) -> None:
        """A line of the view's notes (printed at once in line mode)."""
        at = self.elapsed()
        self.reports.append((at, text))
        self._say(at, text)

    def sample(self, client: fastmd.Client) -> Health:
        """Take a :meth:`fastmd.Client.health` snapshot (no I/O)."""
        self.health = client.health()
        return self.health

    @property
    def firing(self) -> tuple[Alert, ...]:
        return self.health.alerts if self.health is not None else ()

    @property
    def ok(self) -> bool:
        """Events arrived, every stream was subscribed, and the monitor did not give up."""
        return self.failure is None and self.delivered > 0 and not self.subscription_errors


def _streams(health: Health | None) -> list[StreamHealth]:
    return list(health.streams.values()) if health is not None else []


def _counts(streams: list[StreamHealth]) -> str:
    tally: dict[str, int] = {}
    for stream in streams:
        tally[stream.status.value] = tally.get(stream.status.value, 0) + 1
    order = ("HEALTHY", "DEGRADED", "STALE", "DOWN")
    return ", ".join(f"{tally[s]} {s.lower()}" for s in order if s in tally) or "none"


def status_line(monitor: Monitor) -> str:
    """The line a second of line mode: the verdict, streams by status, events, connections,
    ping, lag, alerts firing, and the streams not healthy (with why)."""
    health = monitor.health
    if health is None:
        return f"[{monitor.elapsed():6.2f}s] (no snapshot yet)"
    streams = _streams(health)
    rate = sum(s.rate for s in streams)
    events = sum(s.events + s.rest_events for s in streams)
    connections = health.connections
    open_ = sum(c.state is fastmd.ConnectionState.OPEN for c in connections)
    rtts = [c.rtt for c in connections if c.rtt is not None]
    _, p99 = _lag(health.lag)
    line = (
        f"[{monitor.elapsed():6.2f}s] {health.status.value:<8} streams {len(streams)} "
        f"({_counts(streams)})  events {events:,} ({rate:,.0f}/s)  "
        f"connections {open_}/{len(connections)} open  rtt {_ms(max(rtts) if rtts else None)}  "
        f"lag p99 {p99}  alerts {len(health.alerts)}"
    )
    troubled = [s for s in streams if s.status is not fastmd.HealthStatus.HEALTHY]
    if troubled:
        shown = "; ".join(f"{s.stream} {s.status.value} ({s.reason})" for s in troubled[:5])
        more = f"; +{len(troubled) - 5} more" if len(troubled) > 5 else ""
        line += f"  not healthy: {shown}{more}"
    return line


def summary(monitor: Monitor, *, duration: float) -> str:
    """The plain-text report printed when the monitor ends."""
    health = monitor.health
    lines = [f"fastmd monitor summary: {duration:.1f} s against {monitor.source}", ""]
    status = health.status.value if health is not None else "DOWN"
    reason = f" ({health.reason})" if health is not None and health.reason else ""
    lines.append(f"health: {status}{reason}")
    lines.append("")
    lines.append(
        f"  {'stream':<28}{'status':<10}{'events':>9}{'rate/s':>9}{'last event':>12}"
        f"{'lag p50':>12}{'lag p99':>12}{'gaps':>6}{'missing':>9}  reason"
    )
    for s in _streams(health):
        p50, p99 = _lag(s.lag)
        lines.append(
            f"  {s.stream:<28}{s.status.value:<10}{s.events + s.rest_events:>9,}{s.rate:>9,.1f}"
            f"{_age(s.last_event_age):>12}{p50:>12}{p99:>12}{s.gaps:>6}{s.missing:>9}"
            f"  {s.reason or ''}".rstrip()
        )
    lines.append("")
    lines.append("connections:")
    for index, c in enumerate(health.connections if health is not None else ()):
        state = c.state.name if c.state is not None else "-"
        lines.append(
            f"  #{index} {c.url} {state} ({c.status.value}) rtt {_ms(c.rtt)} "
            f"uptime {c.uptime:.1f} s reconnects {c.reconnects} streams {len(c.streams)}"
        )
    if health is not None and health.clock_offset is not None:
        lines.append(f"clock offset to the exchange: {health.clock_offset * 1000:+.2f} ms")
    lines.append("")
    firing = monitor.firing
    lines.append(
        f"alerts: {monitor.fired} fired, {monitor.resolved} resolved, {len(firing)} firing now"
    )
    for seen in list(monitor.alerts)[-20:]:
        lines.append(f"  {seen.at:6.2f}s {seen.text()}")
    for error in monitor.subscription_errors:
        lines.append(f"subscription failed: {error}")
    lines.append("")
    if monitor.failure is not None:
        lines.append(f"result: FAILED - {monitor.failure}")
    elif monitor.delivered == 0:
        lines.append("result: FAILED - no event received")
    elif monitor.subscription_errors:
        lines.append(f"result: FAILED - {len(monitor.subscription_errors)} stream(s) refused")
    else:
        lines.append(f"result: OK - {monitor.delivered:,} events; health {status}")
    return "\n".join(lines)


# -- the live view ----------------------------------------------------------------------------


def _cell(text: str, status: str | None = None) -> Text:
    from rich.text import Text

    return Text(text, style=_COLOURS.get(status or "", ""))


def _table(columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
    from rich import box

    return compact_table(box.SIMPLE_HEAD, None, columns, left)


def _streams_table(shown: list[StreamHealth], width: int) -> Table:
    """The streams' table. Narrower terminals drop the columns the summary repeats (lag p50 and
    missing under 130 columns; rate and lag p99 too under 100); the other columns keep their
    width and the reason, last, is cut with an ellipsis."""
    rows: list[dict[str, str | Text]] = []
    for s in shown:
        p50, p99 = _lag(s.lag)
        rows.append(
            {
                "stream": s.stream, "status": _cell(s.status.value, s.status.value),
                "events": f"{s.events + s.rest_events:,}", "rate/s": f"{s.rate:,.1f}",
                "last event": _age(s.last_event_age), "lag p50": p50, "lag p99": p99,
                "gaps": _cell(str(s.gaps), "DEGRADED" if s.gaps else None),
                "missing": str(s.missing), "reason": s.reason or "",
            }
        )  # fmt: skip
    columns = ["stream", "status", "events", "rate/s", "last event", "lag p50", "lag p99", "gaps"]
    columns += ["missing", "reason"]
    if width < 130:
        columns = [c for c in columns if c not in ("lag p50", "missing")]
    if width < 100:
        columns = [c for c in columns if c not in ("rate/s", "lag p99")]
    table = _table(tuple(columns), left=("stream", "status", "reason"))
    for column in table.columns[:-1]:  # all but the reason keep their width
        header = str(column.header)
        column.min_width = max([len(header), *(len(str(row[header])) for row in rows)])
    # The reason gets what is left: rich shrinks every column alike when a table is too wide,
    # which would squeeze the numbers away to leave room for a long reason.
    taken = sum(c.min_width or 0 for c in table.columns[:-1]) + 2 * (len(columns) - 1)
    table.columns[-1].max_width = max(width - taken - 1, len("reason"))
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    return table


def _stream_rows(streams: list[StreamHealth], rows: int) -> tuple[list[StreamHealth], int]:
    """The streams to show in ``rows`` rows, those in trouble first (then in order), and how
    many are left out."""
    if rows >= len(streams):
        return streams, 0
    keep = max(rows - 1, 0)  # the last row says how many are left out
    chosen = sorted(streams, key=lambda s: _TROUBLE[s.status.value], reverse=True)[:keep]
    return [s for s in streams if s in chosen], len(streams) - keep


def monitor_view(
    monitor: Monitor, duration: float | None, width: int = 80, height: int = 24
) -> RenderableType:
    """The terminal view in at most ``height - 1`` lines: title, verdict, streams (those in
    trouble first when they do not all fit), connections, and the latest alert edges and
    reports."""
    from rich.console import Group

    health = monitor.health
    until = f" / {duration:g} s" if duration is not None else ""
    parts: list[RenderableType] = [
        one_line(
            ("fastmd monitor", "bold"),
            f"  {monitor.elapsed():4.1f}{until}  ",
            (monitor.source, "dim"),
        ),
    ]
    if health is None:
        parts.append(one_line("waiting for the first snapshot"))
        return Group(*parts)
    status = health.status.value
    streams = _streams(health)
    parts.append(
        one_line(
            ("health ", "dim"),
            (status, _COLOURS[status]),
            (f" ({health.reason})" if health.reason else "", "dim"),
            ("   streams ", "dim"),
            _counts(streams),
            ("   alerts firing ", "dim"),
            (str(len(health.alerts)), "bold red" if health.alerts else ""),
        )
    )
    events = list(monitor.alerts)
    notes = [(seen.at, seen.text()) for seen in events] + list(monitor.reports)
    notes.sort(key=lambda note: note[0])
    connections = health.connections
    budget = height - 1 - len(parts)
    # Fixed lines: a header and rule per table, a title for the notes, blank separators.
    connection_rows = min(len(connections), 4)
    note_rows = min(len(notes), 5)
    fixed = 2 + (2 + 1 if connection_rows else 0) + (1 + 1 if note_rows else 0)
    stream_rows = max(budget - fixed - connection_rows - note_rows, 0)
    if stream_rows < min(len(streams), 3):  # the streams matter most: the others give way
        note_rows = max(note_rows - (min(len(streams), 3) - stream_rows), 0)
        fixed = 2 + (3 if connection_rows else 0) + (2 if note_rows else 0)
        stream_rows = max(budget - fixed - connection_rows - note_rows, 0)
    shown, hidden = _stream_rows(streams, stream_rows)
    parts.append(_streams_table(shown, width))
    if hidden:
        parts.append(one_line((f"+{hidden} more streams (all listed in the summary)", "dim")))
    if connection_rows:
        conns = _table(
            ("connection", "state", "ping RTT", "uptime", "reconnects", "streams"),
            left=("connection", "state"),
        )
        for index, c in enumerate(connections[:connection_rows]):
            state = c.state.name if c.state is not None else "-"
            conns.add_row(
                f"#{index} {c.url}", _cell(state, c.status.value), _ms(c.rtt),
                f"{c.uptime:.1f} s", str(c.reconnects), str(len(c.streams)),
            )  # fmt: skip
        parts.append(one_line())
        parts.append(conns)
    if note_rows:
        parts.append(one_line())
        title = f"alerts: {monitor.fired} fired, {monitor.resolved} resolved"
        parts.append(one_line((title, "bold")))
        parts.extend(one_line((f"{at:6.2f} s  {text}", "dim")) for at, text in notes[-note_rows:])
    return Group(*parts)


# -- the command ------------------------------------------------------------------------------


@contextlib.contextmanager
def _serving(client: fastmd.Client, host: str, port: int, out: TextIO) -> Iterator[None]:
    """Serve :class:`fastmd.prometheus.Collector` over HTTP while the block runs."""
    from prometheus_client import CollectorRegistry, start_http_server

    from fastmd.prometheus import Collector

    registry = CollectorRegistry()
    collector = Collector(client)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    print(
        f"fastmd monitor: Prometheus metrics at http://{host}:{server.server_port}/metrics",
        file=out, flush=True,
    )  # fmt: skip
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        collector.close()


async def run(args: argparse.Namespace) -> int:
    """Show the client's health until ``--duration`` or Ctrl-C; exit 0 if events came and
    every stream was subscribed, 1 otherwise, 2 when ``--prometheus-port`` is given without
    ``prometheus-client`` installed."""
    if args.prometheus_port is not None:
        try:
            importlib.import_module("fastmd.prometheus")  # the extra, before anything starts
        except ImportError as exc:
            print(f"fastmd monitor: {exc}", file=sys.stderr)
            return EXIT_USAGE
    plain = args.plain or not sys.stdout.isatty()
    duration: float | None = args.duration
    streams: list[str] = list(dict.fromkeys(args.streams)) or [
        name for symbol in args.symbols for name in demo_streams(symbol, args.venue)
    ]
    async with contextlib.AsyncExitStack() as stack:
        exchange, ws_url, rest_url = await start_target(stack, args)
        source = describe_target(args, ws_url, simulated=exchange is not None)
        reach = Reachability(args.give_up_after)
        monitor = Monitor(source, plain=sys.stdout if plain else None, reach=reach)
        client = fastmd.Client(
            args.venue,
            ws_url=ws_url,
            rest_url=rest_url,
            heartbeat=fastmd.Heartbeat(interval=1.0, timeout=5.0),  # a live round trip
            error_reporter=monitor.on_report,
        )
        reach.watch(client)
        client.on_alert(monitor.on_alert)
        await stack.enter_async_context(client)
        if args.prometheus_port is not None:
            stack.enter_context(
                _serving(client, args.prometheus_host, args.prometheus_port, sys.stdout)
            )
        if plain:
            until = f", {duration:g} s" if duration is not None else ""
            print(f"fastmd monitor: {source}, {len(streams)} streams{until}", flush=True)
        client.subscribe(streams, monitor.on_event, stale_after=args.stale_after)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        timers = [loop.call_later(duration, stop.set)] if duration is not None else []
        if exchange is not None:
            for name in args.mute or ():
                timers.append(loop.call_later(args.mute_at, _mute, exchange, name, args, monitor))

        watchdog = asyncio.create_task(
            give_up_when_unreachable(reach, lambda: monitor.delivered > 0, stop, monitor)
        )
        try:
            with signals_set(stop):
                if plain:
                    await print_each_second(
                        lambda: monitor.sample(client), lambda: status_line(monitor), stop
                    )
                else:
                    await redraw_live(
                        lambda: monitor.sample(client),
                        lambda width, height: monitor_view(monitor, duration, width, height),
                        stop,
                    )
        finally:
            for timer in timers:  # after Ctrl-C, no fault on a stopping simulator
                timer.cancel()
            await cancel_all([watchdog])
        monitor.sample(client)
        elapsed = monitor.elapsed()
    print(summary(monitor, duration=elapsed), flush=True)
    return 0 if monitor.ok else 1


def _mute(exchange: Exchange, stream: str, args: argparse.Namespace, monitor: Monitor) -> None:
    exchange.faults.mute_stream(stream, args.mute_for)
    monitor.note(f"fault injected: the simulator mutes {stream} for {args.mute_for:g} s")
