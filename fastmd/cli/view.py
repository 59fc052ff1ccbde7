"""What ``fastmd demo`` shows: the live view on a terminal (fitted to its size), the progress
line a second otherwise, and the summary at the end. Everything here reads the demo's state
(:class:`fastmd.cli.state.Demo`: its id ledgers, and the client's health snapshot for each
stream's status, events, last event, gaps and missing events) and changes nothing in it but its
samples."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastmd.cli.common import wait_until_set
from fastmd.cli.state import Demo

if TYPE_CHECKING:
    from rich.box import Box
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from fastmd import Client

__all__ = [
    "compact_table",
    "live_view",
    "one_line",
    "plain_view",
    "print_each_second",
    "progress_line",
    "redraw_live",
    "rich_view",
    "summary",
]


def _price(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.2f}"
    return f"{value:,.4f}" if value >= 1 else f"{value:.8g}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


@dataclass(frozen=True)
class _StreamRow:
    """One stream as the views show it: the client's health of it and the demo's id ledger."""

    name: str
    status: str
    events: int
    age: float | None
    gaps: int
    missing: int
    accounted: bool | None


def _rows(demo: Demo) -> list[_StreamRow]:
    rows = []
    for name, ledger in demo.streams.items():
        health = demo.health_of(name)
        rows.append(
            _StreamRow(
                name, health.status.value if health is not None else "-",
                demo.events_of(name), health.last_event_age if health is not None else None,
                health.gaps if health is not None else 0,
                health.missing if health is not None else 0, ledger.accounted,
            )
        )  # fmt: skip
    return rows


def progress_line(demo: Demo) -> str:
    """One line of the non-terminal view (printed once a second)."""
    m = demo.metrics
    status = m.status.value if m is not None else "CONNECTING"
    health = demo.health.status.value if demo.health is not None else "-"
    trades = " ".join(
        f"{s.lower()} {mk.trades_per_second:.0f}/s @ {_price(mk.last_price)}"
        for s, mk in demo.markets.items()
    )
    rtt = _ms(m.latency.last) if m is not None else "-"
    dups = m.duplicates_dropped if m is not None else 0
    return (
        f"[{demo.elapsed():6.2f}s] {status:<12} health {health:<8} events {demo.total_events} "
        f"({demo.events_rate:.0f}/s)  trades: {trades}  gaps {len(demo.gaps)}  "
        f"dups {dups}  reconnects {demo.reconnects}  rtt {rtt}"
    )


# The live view fits the terminal: the title and the status line(s) always show; below them
# each section (markets, streams, gaps, incidents) keeps at least a few rows or is dropped,
# least important first, and the rows left are dealt out between them. No line wraps: cells
# and lines too long for the width end in an ellipsis.


@dataclass(eq=False)
class _Section:
    """One section of the live view.

    ``fixed`` lines (title, header, rule) come with any rows; ``least`` rows are the fewest worth
    showing, ``want`` the most it has; ``render(rows)`` draws it in ``fixed + rows`` lines.
    ``rank`` orders the dropping: the highest rank goes first.
    """

    fixed: int
    least: int
    want: int
    rank: int
    render: Callable[[int], RenderableType]


def _fit(sections: list[_Section], height: int) -> list[RenderableType]:
    """``sections`` drawn in at most ``height`` lines: with a blank line above each when there
    is room, without otherwise; then without the least important sections until the rest fit;
    the rows left are dealt out one at a time, so every section grows evenly."""
    from rich.text import Text

    kept = [s for s in sections if s.fixed or s.want]
    spacing = 1
    while kept:
        need = sum(s.fixed + s.least + spacing for s in kept)
        if need <= height:
            break
        if spacing:
            spacing = 0
        else:
            kept.remove(max(kept, key=lambda s: s.rank))
    rows = {s: s.least for s in kept}
    left = height - sum(s.fixed + s.least + spacing for s in kept)
    while left > 0 and any(rows[s] < s.want for s in kept):
        for section in sorted(kept, key=lambda s: s.rank):
            if left > 0 and rows[section] < section.want:
                rows[section] += 1
                left -= 1
    out: list[RenderableType] = []
    for section in kept:
        if spacing:
            out.append(Text())
        out.append(section.render(rows[section]))
    return out


def one_line(*parts: str | tuple[str, str]) -> Text:
    """One line of text that never wraps: too long for the width, it ends in an ellipsis."""
    from rich.text import Text

    text = Text.assemble(*parts)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def compact_table(
    style: Box, title: str | None, columns: Sequence[str], left: Sequence[str]
) -> Table:
    """A compact table of one-line rows: no blank edge lines, cells cut with an ellipsis rather
    than wrapped (a wrapped row would throw the height budget off)."""
    from rich.table import Table

    table = Table(
        box=style, title=title, title_justify="left", show_edge=False, pad_edge=False,
        collapse_padding=True,
    )  # fmt: skip
    for column in columns:
        table.add_column(
            column, justify="left" if column in left else "right", no_wrap=True,
            overflow="ellipsis",
        )  # fmt: skip
    return table


def _status_lines(demo: Demo, width: int) -> list[Text]:
    """The client's health as "key value" pairs, packed into lines of ``width`` without
    splitting a pair: one line on a wide terminal (120 columns or more), two on a narrow one.
    Pairs that do not fit are left out, those with nothing to say (a zero) first, then the least
    important (all of them are in the summary)."""
    from rich.text import Text

    m = demo.metrics
    status = m.status.value if m is not None else "CONNECTING"
    colour = {"CONNECTED": "green", "CLOSED": "red", "FALLBACK": "red"}.get(status, "yellow")
    verdict = demo.health.status.value if demo.health is not None else "-"
    tint = {"HEALTHY": "green", "DEGRADED": "yellow"}.get(verdict, "red")
    pairs: list[tuple[str, Text]] = [
        ("status", Text(status, style=f"bold {colour}")),
        ("health", Text(verdict, style=f"bold {tint}")),
        ("events", Text(f"{demo.total_events:,} ({demo.events_rate:,.0f}/s)")),
        ("gaps", Text(str(len(demo.gaps)), style="bold yellow" if demo.gaps else "")),
        ("reconnects", Text(str(demo.reconnects))),
        ("ping RTT", Text(f"{_ms(m.latency.last)} (p99 {_ms(m.latency.p99)})" if m else "-")),
        ("decode errors", Text(str(m.decode_errors if m else 0))),
        ("duplicates", Text(f"{m.duplicates_dropped if m else 0:,}")),
        ("backfilled", Text(f"{m.backfilled if m else 0:,}")),
        ("handovers", Text(str(m.handovers if m else 0))),
    ]
    most = 1 if width >= 120 else 2
    while True:
        lines = _pack(pairs, width)
        if len(lines) <= most or len(pairs) <= 2:
            return lines
        zeros = [i for i, (_, value) in enumerate(pairs) if i >= 2 and value.plain == "0"]
        del pairs[zeros[-1] if zeros else -1]


def _pack(pairs: list[tuple[str, Text]], width: int) -> list[Text]:
    """``pairs`` as "key value   key value" lines of at most ``width`` cells, none split."""
    separator = "   "
    lines: list[Text] = [one_line()]
    for key, value in pairs:
        line = lines[-1]
        size = len(key) + 1 + len(value)
        if line and len(line) + len(separator) + size > width:
            line = one_line()
            lines.append(line)
        line.append((separator if line else "") + key + " ", style="dim")
        line.append_text(value)
    return lines


def _markets_section(demo: Demo) -> _Section:
    from rich import box
    from rich.console import Group

    def render(rows: int) -> RenderableType:
        columns = ("symbol", "last price", "trades/s", "bid", "ask", "spread")
        table = compact_table(box.SIMPLE_HEAD, None, columns, left=("symbol",))
        markets = list(demo.markets.values())
        shown = markets if rows >= len(markets) else markets[: rows - 1]
        for mk in shown:
            spread = _price(mk.ask - mk.bid) if mk.bid is not None and mk.ask is not None else "-"
            table.add_row(
                mk.symbol, _price(mk.last_price), f"{mk.trades_per_second:.0f}",
                _price(mk.bid), _price(mk.ask), spread,
            )  # fmt: skip
        if len(shown) < len(markets):
            return Group(table, one_line((f"+{len(markets) - len(shown)} more", "dim")))
        return table

    count = len(demo.markets)
    return _Section(fixed=2, least=min(count, 3), want=count, rank=1, render=render)


def _trouble(row: _StreamRow) -> int:
    """How much a stream needs to be seen: ids unaccounted for, not healthy or no event yet,
    gaps."""
    if row.accounted is False:
        return 3
    if row.status != "HEALTHY" or row.events == 0:
        return 2
    return 1 if row.gaps else 0


def _more_streams(hidden: list[_StreamRow]) -> str:
    """The last row of a cut streams table: how many are not shown, and what is up with them."""
    troubles = {
        "ids unaccounted": sum(h.accounted is False for h in hidden),
        "not healthy": sum(h.status != "HEALTHY" for h in hidden),
        "with gaps": sum(h.gaps > 0 for h in hidden),
    }
    said = ", ".join(f"{n} {what}" for what, n in troubles.items() if n)
    return f"+{len(hidden)} more: {said or 'all fine'}"


def _streams_section(demo: Demo) -> _Section:
    from rich import box
    from rich.console import Group
    from rich.text import Text

    def render(rows: int) -> RenderableType:
        columns = ("stream", "health", "events", "last event", "gaps", "missing", "ids ok")
        table = compact_table(box.SIMPLE_HEAD, None, columns, left=("stream", "health"))
        streams = _rows(demo)
        if rows < len(streams):  # the streams in trouble first, the rest in order
            chosen = sorted(streams, key=_trouble, reverse=True)[: rows - 1]
            shown = [h for h in streams if h in chosen]
        else:
            shown = streams
        for h in shown:
            ledger = {None: Text("n/a", style="dim"), True: Text("yes", style="green"),
                      False: Text("NO", style="bold red")}[h.accounted]  # fmt: skip
            tint = {"HEALTHY": "green", "DEGRADED": "yellow", "-": "dim"}.get(h.status, "bold red")
            table.add_row(
                h.name, Text(h.status, style=tint), f"{h.events:,}", _age(h.age),
                Text(str(h.gaps), style="yellow" if h.gaps else ""), str(h.missing), ledger,
            )  # fmt: skip
        hidden = [h for h in streams if h not in shown]
        if hidden:  # a line of its own: in the table, it would widen the first column
            return Group(table, one_line((_more_streams(hidden), "dim")))
        return table

    count = len(demo.streams)
    return _Section(fixed=2, least=min(count, 3), want=count, rank=2, render=render)


def _gaps_section(demo: Demo) -> _Section:
    from rich import box

    def render(rows: int) -> RenderableType:
        shown = demo.gaps[len(demo.gaps) - rows :] if rows else []
        earlier = len(demo.gaps) - len(shown)
        title = f"gaps reported: {len(demo.gaps)}"
        if earlier:
            title += f" ({earlier} earlier not shown)"
        if not demo.gaps:
            return one_line((title, "bold"))
        columns = ("at", "stream", "expected", "received", "missing", "reason")
        table = compact_table(box.SIMPLE_HEAD, title, columns, left=("stream", "reason"))
        for seen in shown:
            gap = seen.gap
            table.add_row(
                f"{seen.at:.2f} s", gap.stream, str(gap.expected), str(gap.received),
                str(gap.missing), gap.reason.value,
            )  # fmt: skip
        return table

    count = len(demo.gaps)
    fixed = 3 if count else 1
    # The gaps are the demo's point: in a small terminal, they stay when the markets go.
    return _Section(fixed=fixed, least=min(count, 2), want=min(count, 10), rank=0, render=render)


def _incidents_section(demo: Demo) -> _Section:
    from rich.console import Group

    incidents = list(demo.incidents)

    def render(rows: int) -> RenderableType:
        lines = [one_line((f"{at:6.2f} s  {text}", "dim")) for at, text in incidents[-rows:]]
        return Group(*lines)

    count = len(incidents)
    return _Section(fixed=0, least=min(count, 2), want=min(count, 5), rank=3, render=render)


def live_view(demo: Demo, duration: float, width: int = 80, height: int = 24) -> RenderableType:
    """The terminal view in ``width`` x ``height``: title, client health, markets, per-stream
    health, the latest gaps and incidents (see :func:`_fit`)."""
    from rich.console import Group

    title = one_line(
        ("fastmd demo", "bold"), f"  {demo.elapsed():4.1f} / {duration:g} s  ", (demo.source, "dim")
    )
    top = [title, *_status_lines(demo, width)]
    sections = [
        _markets_section(demo),
        _streams_section(demo),
        _gaps_section(demo),
        _incidents_section(demo),
    ]
    # The last line stays free: a terminal scrolls when the cursor ends a full screen.
    return Group(*top, *_fit(sections, height - 1 - len(top)))


def summary(demo: Demo, *, duration: float) -> str:
    """The plain-text report printed when the demo ends."""
    m = demo.metrics
    lines = [f"fastmd demo summary: {duration:.1f} s against {demo.source}", ""]
    lines.append("events per stream:")
    lines.append(f"  {'stream':<24}{'events':>9}{'gaps':>6}{'missing':>9}  ids accounted")
    rows = _rows(demo)
    for h in rows:
        accounted = h.accounted
        if h.events == 0:
            ledger = "n/a (no event)"
        elif accounted is None:
            ledger = "n/a (no id sequence; duplicates dropped by key)"
        else:
            ledger = "yes: every id delivered or reported missing" if accounted else "NO"
        lines.append(f"  {h.name:<24}{h.events:>9,}{h.gaps:>6}{h.missing:>9}  {ledger}")
    lines.append(f"  {'total':<24}{demo.total_events:>9,}")
    if demo.health is not None:
        health = demo.health
        reason = f" ({health.reason})" if health.reason else ""
        lines.append(f"health at the end: {health.status.value}{reason}")
        for h in rows:
            stream = health.streams.get(h.name)
            if stream is not None and stream.reason is not None:
                lines.append(f"  {h.name}: {stream.status.value}, {stream.reason}")
    lines.append("")
    lines.append(f"gaps reported: {len(demo.gaps)}")
    for seen in demo.gaps[:50]:
        gap = seen.gap
        lines.append(
            f"  {seen.at:6.2f}s {gap.stream}: expected {gap.expected}, received {gap.received}, "
            f"{gap.missing} missing ({gap.reason.value})"
        )
    if len(demo.gaps) > 50:
        lines.append(f"  ... and {len(demo.gaps) - 50} more")
    lines.append(f"duplicates dropped: {m.duplicates_dropped if m else 0}")
    lines.append(f"recovered from REST (backfilled): {m.backfilled if m else 0}")
    lines.append(f"reconnects: {demo.reconnects}   handovers: {m.handovers if m else 0}")
    lines.append(
        f"decode errors: {m.decode_errors if m else 0}   "
        f"callback errors: {m.callback_errors if m else 0}"
    )
    if m is not None:
        lines.append(
            f"latency (ping RTT): last {_ms(m.latency.last)}, mean {_ms(m.latency.mean)}, "
            f"p99 {_ms(m.latency.p99)} over {m.latency.samples} samples"
        )
    lines.append(
        "status timeline: " + " -> ".join(f"{status} at {at:.2f}s" for at, status in demo.timeline)
    )
    if demo.reports:
        counts = sorted(demo.reports.items(), key=lambda item: -item[1])
        lines.append("error reports: " + ", ".join(f"{code} {n}" for code, n in counts))
    for error in demo.subscription_errors:
        lines.append(f"subscription failed: {error}")
    lines.append("")
    silent = demo.unaccounted
    if demo.failure is not None:
        lines.append(f"result: FAILED - {demo.failure}")
    elif demo.total_events == 0:
        why = demo.reach.explain() if not demo.reach.reached else demo.last_error
        lines.append("result: FAILED - no event received" + (f"; {why}" if why else ""))
    elif demo.subscription_errors:
        lines.append(f"result: FAILED - {len(demo.subscription_errors)} stream(s) not subscribed")
    elif silent:
        names = ", ".join(h.name for h in silent)
        lines.append(f"result: FAILED - ids neither delivered nor reported on {names}")
    elif demo.gaps:
        lines.append(f"result: OK - {len(demo.gaps)} gap(s), every one reported; no silent loss")
    else:
        lines.append("result: OK - 0 gaps; no loss")
    return "\n".join(lines)


async def print_each_second(
    sample: Callable[[], object], line: Callable[[], str], stop: asyncio.Event
) -> None:
    """Line mode until ``stop``: ``sample()`` now, then each second ``sample()`` and print
    ``line()``."""
    sample()
    while not stop.is_set():
        await wait_until_set(stop, 1.0)
        sample()
        print(line(), flush=True)


async def redraw_live(
    sample: Callable[[], object], render: Callable[[int, int], RenderableType], stop: asyncio.Event
) -> None:
    """The live terminal view until ``stop``: ``sample()`` and ``render(width, height)`` 4 times
    a second from the event loop (not from rich's refresh thread, which would read the client and
    the counters while callbacks change them; the client is not thread-safe), fitted to the
    terminal's size at each redraw."""
    from rich.console import Console
    from rich.live import Live

    console = Console()

    def view() -> RenderableType:
        width, height = console.size
        return render(width, height)

    sample()
    with Live(view(), console=console, auto_refresh=False, transient=False) as live:
        while not stop.is_set():
            await wait_until_set(stop, 0.25)
            sample()
            live.update(view(), refresh=True)


async def plain_view(demo: Demo, client: Client, stop: asyncio.Event) -> None:
    """Line mode for pipes and CI: a progress line a second (incidents print as they happen)."""
    await print_each_second(lambda: demo.sample(client), lambda: progress_line(demo), stop)


async def rich_view(demo: Demo, client: Client, stop: asyncio.Event, duration: float) -> None:
    """The live terminal view, redrawn 4 times a second, fitted to the terminal's size."""
    await redraw_live(
        lambda: demo.sample(client), lambda w, h: live_view(demo, duration, w, h), stop
    )
