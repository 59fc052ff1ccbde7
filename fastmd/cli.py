"""The ``fastmd`` command line. The only place that configures logging and picks the event loop.

Commands:

- ``fastmd demo``: the main job. Starts the embedded simulator, subscribes a :class:`fastmd.Client`
  to trades, klines, book tickers and depth diffs, shows a live view, drops the connection midway
  and shows that every loss is reported, then prints a summary.
- ``fastmd watch STREAM...``: events as JSON lines on stdout.
- ``fastmd sim``: the exchange simulator on its own, for your bot.

Option values are checked before anything starts (argparse errors, exit 2). ``demo`` and
``watch`` give up, with the cause in one line, on an exchange that never answers (exit 1).
Sections below: event loop; error reports (shared by demo and watch); sim; demo state, views
and command; watch; arguments and ``main``. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import math
import os
import re
import signal
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from rich.box import Box
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from fastmd.aio.client import Client, Metrics, Status
    from fastmd.core.lifecycle import ErrorReport
    from fastmd.core.sequence import Gap
    from fastmd.core.streams import Venue

__all__ = ["main"]

logger = logging.getLogger(__name__)

VENUES: Final = ("binance-spot", "binance-usdm")
DEFAULT_SYMBOLS: Final = "BTCUSDT,ETHUSDT,BNBUSDT"
DEMO_KINDS: Final = {
    "binance-spot": ("trade", "kline_1m", "bookTicker", "depth@100ms"),
    # USD-M futures has no raw trade stream: aggTrade ids are its contiguous trade sequence.
    "binance-usdm": ("aggTrade", "kline_1m", "bookTicker", "depth@100ms"),
}
"""The streams ``fastmd demo`` subscribes per symbol, per venue."""
_EXIT_USAGE: Final = 2
GIVE_UP_AFTER: Final = 10.0
"""Seconds ``fastmd demo`` and ``fastmd watch`` wait for the exchange to answer at all."""


# -- event loop and signals -------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, int], loop_name: str) -> int:
    if loop_name == "uvloop":
        try:
            import uvloop
        except ImportError:
            coro.close()
            print("uvloop is not installed: pip install 'fastmd[uvloop]'", file=sys.stderr)
            return 2
        result: int = uvloop.run(coro)
        return result
    return asyncio.run(coro)


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


@contextlib.contextmanager
def _signals_set(event: asyncio.Event) -> Iterator[None]:
    """Set ``event`` on SIGINT/SIGTERM while the block runs, so Ctrl-C ends a command through its
    normal shutdown path (connections closed, summary printed) instead of a traceback."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, event.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _until_signalled(stop_after: float | None) -> None:
    stopped = asyncio.Event()
    with _signals_set(stopped):
        if stop_after is None:
            await stopped.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), stop_after)


def _quiet_leftovers() -> None:
    """Called when a command starts shutting down: a client task that then fails because its
    HTTP session closed under it is not news, and must not print "Task exception was never
    retrieved" on the user's screen. Such fastmd errors go to the log at INFO; anything else
    still reaches asyncio's default handler.

    (Works around the client's shared exchangeInfo fetch, which outlives a waiter cancelled by
    ``Client.close()`` and then fails with nobody to retrieve its error.)
    """
    from fastmd.errors import FastmdError

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, FastmdError):
            logger.info("after shutdown began: %s: %r", context.get("message"), error)
            return
        loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(handler)


def _every(seconds: float, action: Callable[[], object]) -> asyncio.Task[None]:
    async def repeat() -> None:
        while True:
            await asyncio.sleep(seconds)
            action()

    return asyncio.create_task(repeat())


# -- error reports: causes, repeats, reachability --------------------------------------------
#
# demo and watch give the client an error reporter of their own. What they need from the
# reports: the plain cause of a failed connection ("connection refused"), whether the exchange
# has answered at all (if not, they give up after --give-up-after seconds instead of retrying
# for ever), and a screen that shows each distinct message once rather than once a second.

_CONNECT_CODES: Final = frozenset({"connect_failed", "handshake_rejected", "tls_error"})
"""Report codes of a failed WebSocket connection attempt."""
_REST_CODES: Final = frozenset({"symbol_check_failed", "fallback_poll_failed", "backfill_failed"})
"""Report codes of a failed REST request."""
_UNREACHABLE_CODES: Final = _CONNECT_CODES | _REST_CODES | {"circuit_open", "fallback"}
"""What an exchange that does not answer at all produces."""
_NUMBERS: Final = re.compile(r"\d+(?:[.,]\d+)*")


def _cause(error: BaseException | None) -> str | None:
    """The plain reason at the bottom of ``error``'s chain ("connection refused", "host not
    found (...)", "TLS: ..."), or ``None`` if no OS or TLS error is in it."""
    seen: set[int] = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            return f"TLS: {current.reason or current}"
        if isinstance(current, OSError) and current.errno is not None:
            if isinstance(current, socket.gaierror) or current.errno < 0:
                return f"host not found ({str(current.strerror).lower()})"
            return os.strerror(current.errno).lower()
        current = current.__cause__ or current.__context__
    return None


class _Repeats:
    """Lets each distinct message through once, then at most once per ``interval`` seconds with
    the number held back in between. Messages that differ only in their numbers (attempt
    counts, seconds left, ids) count as the same message, and so do those given the same
    ``key`` (see :func:`_fold_key`)."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, text: str, key: str | None = None) -> str | None:
        """``text`` (with "(+N similar)" if some were held back) or ``None``: hold it back."""
        key = _NUMBERS.sub("#", text if key is None else key)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        held = self._held.pop(key, 0)
        return f"{text} (+{held} similar)" if held else text


def _fold_key(report: ErrorReport) -> str:
    """What makes a report the same as another for :class:`_Repeats`: its code, if it is about
    one stream (a failing REST poll comes for every stream in fallback, once a second), else
    its text. Subscription failures are the exception: each names a stream that is missing."""
    if "stream" in report.context and report.code != "subscription_failed":
        return report.code
    return f"{report.code}: {report.message}"


class _Reachability:
    """Whether the exchange has answered at all, and if not, why.

    Fed with the client's error reports and status changes. The exchange counts as reached once
    a WebSocket connection opened (status CONNECTED) or an event arrived (REST fallback polls
    deliver events too); until then, the last connection failure is the cause.

    Args:
        give_up_after: seconds after which an exchange that has not answered is given up.
    """

    def __init__(self, give_up_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.give_up_after = give_up_after
        self._clock = clock
        self.started = clock()
        self.reached = False
        self.circuit_open = False
        self.attempts = 0
        self.ws_url: str | None = None
        self.rest_url: str | None = None
        self.ws_cause: str | None = None
        self.rest_cause: str | None = None

    def target(self, ws_url: str, rest_url: str) -> None:
        """The URLs the client uses (its own defaults when none were given)."""
        self.ws_url = self.ws_url or ws_url
        self.rest_url = rest_url

    def report(self, report: ErrorReport) -> None:
        if report.code in _CONNECT_CODES:
            self.attempts = int(report.context.get("attempt", self.attempts + 1))
            self.ws_url = str(report.context.get("url", self.ws_url))
            self.ws_cause = _cause(report.error) or str(report.error or report.message)
        elif report.code == "circuit_open":
            self.circuit_open = True
        elif report.code in _REST_CODES:
            # The first plain cause is the one to keep: later polls fail with "REST circuit
            # open for another 29 s", which says nothing about why.
            self.rest_cause = self.rest_cause or _cause(report.error)

    def on_status(self, status: Status, metrics: Metrics) -> None:
        if status == "CONNECTED":
            self.reached = True

    def hopeless(self) -> bool:
        """Nothing answered within ``give_up_after`` seconds, or the connection's circuit opened
        first (it then makes no attempt for minutes)."""
        if self.reached:
            return False
        return self.circuit_open or self._clock() - self.started >= self.give_up_after

    def explain(self) -> str:
        """One line: what could not be reached and why."""
        if self.ws_cause is None:
            line = f"cannot reach {self.ws_url}: no answer within {self.give_up_after:g} s"
        else:
            plural = "s" if self.attempts != 1 else ""
            line = f"cannot reach {self.ws_url}: {self.ws_cause} ({self.attempts} attempt{plural})"
        if self.rest_cause is not None:
            line += f"; REST {self.rest_url}: {self.rest_cause}"
        return line


async def _until_unreachable(
    reach: _Reachability, delivered: Callable[[], bool], stop: asyncio.Event
) -> str | None:
    """Return why the exchange cannot be reached once it is :meth:`~_Reachability.hopeless`, or
    ``None`` as soon as it answers (``delivered()``: an event arrived) or ``stop`` is set."""
    while not stop.is_set():
        if delivered():
            reach.reached = True
        if reach.reached:
            return None
        if reach.hopeless():
            return reach.explain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return None


# -- fastmd sim -------------------------------------------------------------------------------


async def _sim(args: argparse.Namespace) -> int:
    from fastmd.sim import Exchange, SimLimits

    venue = args.venue
    limits = SimLimits.for_venue(venue)
    overrides = {
        "ping_interval": args.ping_interval,
        "pong_timeout": args.pong_timeout,
        "connection_lifetime": args.lifetime,
        "max_incoming_per_second": args.max_incoming,
        "max_streams_per_connection": args.max_streams,
        "rest_weight_per_minute": args.rest_weight,
    }
    limits = limits.with_(**{k: v for k, v in overrides.items() if v is not None})
    exchange = Exchange(
        venue,
        args.symbols,
        args.seed,
        host=args.host,
        port=args.port,
        rest_port=args.rest_port,
        rate=args.rate,
        limits=limits,
        replay=args.replay,
        replay_speed=None if args.replay_speed == 0 else args.replay_speed,
    )
    tasks: list[asyncio.Task[None]] = []
    async with exchange as ex:
        print(
            f"fastmd simulator ({ex.venue}) ws_url={ex.ws_url} rest_url={ex.rest_url}", flush=True
        )
        print(f"  try: {ex.ws_url}/stream?streams=btcusdt@trade   {ex.rest_url}/api/v3/time")
        faults = ex.faults
        if args.drop_every:
            mode, code = args.drop_mode, args.drop_code
            tasks.append(
                _every(args.drop_every, lambda: faults.drop_connections(mode=mode, code=code))
            )
        if args.shutdown_every:
            tasks.append(
                _every(args.shutdown_every, lambda: faults.server_shutdown(close_after=1.0))
            )
        for stream in args.skip or ():
            tasks.append(_every(args.skip_every, functools.partial(faults.skip, stream)))
        if args.refuse_upgrades:
            faults.refuse_upgrades(args.refuse_upgrades, retry_after=args.retry_after)
        if args.rest_error:
            faults.rest_error(args.rest_error, retry_after=args.retry_after)
        if args.rest_delay:
            faults.rest_delay(args.rest_delay)
        try:
            await _until_signalled(args.duration)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    print("simulator stopped", flush=True)
    return 0


# -- fastmd demo: state -----------------------------------------------------------------------


class _Rate:
    """Events per second over the last second, from counter samples taken by the view."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=16)

    def sample(self, now: float, count: int) -> float:
        """Record ``count`` at ``now`` and return the rate over about the last second."""
        self._samples.append((now, count))
        old_t, old_count = self._samples[0]
        for t, c in self._samples:
            if now - t < 1.0:
                break
            old_t, old_count = t, c
        return (count - old_count) / (now - old_t) if now > old_t else 0.0


@dataclass
class _StreamHealth:
    """What the demo knows about one stream.

    Sequenced streams (trade ids, depth update ids) keep an id ledger: every id between the first
    and the last seen was either delivered or reported missing in a gap. That is the demo's proof
    that no loss was silent.
    """

    name: str
    symbol: str
    kind: str
    events: int = 0
    last_at: float | None = None
    gaps: int = 0
    missing: int = 0
    first_id: int | None = None
    last_id: int | None = None
    ids: int = 0

    @property
    def sequenced(self) -> bool:
        return self.kind in ("trade", "aggTrade", "depth@100ms")

    def ledger(self, first: int, last: int) -> None:
        """Count ids ``first..last`` as delivered."""
        if self.first_id is None:
            self.first_id = first
        self.last_id = last
        self.ids += last - first + 1

    @property
    def accounted(self) -> bool | None:
        """Whether every id of the range seen was delivered or reported (``None``: no ids)."""
        if not self.sequenced or self.first_id is None or self.last_id is None:
            return None
        return self.ids + self.missing == self.last_id - self.first_id + 1


@dataclass
class _Market:
    """Last price, trade rate and book top of one symbol."""

    symbol: str
    last_price: float | None = None
    trades: int = 0
    bid: float | None = None
    ask: float | None = None
    rate: _Rate = field(default_factory=_Rate)
    trades_per_second: float = 0.0


@dataclass(frozen=True)
class _GapSeen:
    at: float
    gap: Gap
    missing: int


class _Demo:
    """The demo's state, fed by client callbacks, gap and status listeners and error reports.

    Callbacks run inside the client's frame handler, so they only update counters; all formatting
    happens in the view's own timer.
    """

    def __init__(
        self,
        venue: Venue,
        symbols: list[str],
        source: str,
        *,
        plain: TextIO | None,
        reach: _Reachability,
    ) -> None:
        self.started = time.monotonic()
        self.source = source
        self.plain = plain
        self.reach = reach
        self.repeats = _Repeats()
        self.failure: str | None = None
        """Why the demo gave up early (the exchange could not be reached), if it did."""
        self.last_error: str | None = None
        self.reports: dict[str, int] = {}
        """Error reports per code (gaps apart), shown or folded."""
        self.markets = {s: _Market(s) for s in symbols}
        self.streams = {
            f"{s.lower()}@{kind}": _StreamHealth(f"{s.lower()}@{kind}", s, kind)
            for s in symbols
            for kind in DEMO_KINDS[venue]
        }
        self.gaps: list[_GapSeen] = []
        self.incidents: deque[tuple[float, str]] = deque(maxlen=8)
        self.timeline: list[tuple[float, str]] = []
        self.recoveries = 0
        self.subscription_errors: list[str] = []
        self.metrics: Metrics | None = None
        self.message_rate = _Rate()
        self.events_rate = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str, *, incident: bool = True, fold: str | None = None) -> None:
        """Record a notable moment; in line mode it is printed at once. Gaps are not incidents
        of the live view: they have a table of their own. ``fold``: the key of a message that
        is held back if one like it was seen in the last 10 s (see :class:`_Repeats`); error
        reports repeat, gaps and status changes are news each time."""
        at = self.elapsed()
        if fold is not None:
            admitted = self.repeats.admit(text, fold)
            if admitted is None:
                logger.info("%s", text)
                return
            text = admitted
        if incident:
            self.incidents.append((at, text))
        logger.info("%s", text)
        if self.plain is not None:
            print(f"[{at:6.2f}s] {text}", file=self.plain, flush=True)

    # -- client hooks (called from the frame handler: keep them cheap) ------------------------

    def callback(self, health: _StreamHealth) -> Callable[[Any], None]:
        """The subscription callback of one stream."""
        market = self.markets[health.symbol]
        clock = time.monotonic
        is_trade = health.kind == "trade"

        def on_trade(event: Any) -> None:
            health.events += 1
            health.last_at = clock()
            trade_id = event.trade_id if is_trade else event.agg_trade_id
            health.ledger(trade_id, trade_id)
            market.trades += 1
            market.last_price = event.price

        def on_depth(event: Any) -> None:
            health.events += 1
            health.last_at = clock()
            health.ledger(event.first_update_id, event.final_update_id)

        def on_book(event: Any) -> None:
            health.events += 1
            health.last_at = clock()
            market.bid, market.ask = event.bid_price, event.ask_price

        def on_kline(event: Any) -> None:
            health.events += 1
            health.last_at = clock()
            if market.last_price is None:
                market.last_price = event.kline.close

        callbacks: dict[str, Callable[[Any], None]] = {
            "trade": on_trade,
            "aggTrade": on_trade,
            "depth@100ms": on_depth,
            "bookTicker": on_book,
            "kline_1m": on_kline,
        }
        return callbacks[health.kind]

    def dispatcher(self) -> Callable[[Any], None]:
        """One callback for every stream, routing each event to its stream's callback by event
        type and symbol (each demo stream has its own pair)."""
        import fastmd

        classes: dict[str, type] = {
            "trade": fastmd.Trade,
            "aggTrade": fastmd.AggTrade,
            "kline_1m": fastmd.Kline,
            "bookTicker": fastmd.BookTicker,
            "depth@100ms": fastmd.DepthUpdate,
        }
        routes = {(classes[h.kind], h.symbol): self.callback(h) for h in self.streams.values()}

        def dispatch(event: Any) -> None:
            callback = routes.get((type(event), event.symbol))
            if callback is not None:
                callback(event)

        return dispatch

    def on_gap(self, gap: Gap) -> None:
        missing = gap.missing
        self.gaps.append(_GapSeen(self.elapsed(), gap, missing))
        health = self.streams.get(gap.stream)
        if health is not None:
            health.gaps += 1
            health.missing += missing
        self.note(
            f"gap {gap.stream}: expected {gap.expected}, received {gap.received} "
            f"({missing} missing, reason {gap.reason.value})",
            incident=False,
        )

    def on_status(self, status: Status, metrics: Metrics) -> None:
        self.reach.on_status(status, metrics)
        if status == "CONNECTED" and self.timeline and self.timeline[-1][1] == "RECONNECTING":
            self.recoveries += 1
        self.timeline.append((self.elapsed(), status.value))
        self.note(f"status {status.value}")

    def on_report(self, report: ErrorReport) -> None:
        """The client's error reporter: reports become incidents instead of log lines on stderr,
        which would tear the live view. Gaps come through :meth:`on_gap` already."""
        self.reach.report(report)
        if report.code == "gap":
            return
        if report.code == "subscription_failed":
            self.subscription_errors.append(report.message)
        self.reports[report.code] = self.reports.get(report.code, 0) + 1
        self.last_error = f"{report.code}: {report.message}"
        text = f"{report.severity.value} {report.code}: {report.message[:160]}"
        self.note(text, fold=_fold_key(report))

    # -- sampling -------------------------------------------------------------------------------

    def sample(self, client: Client) -> None:
        """Refresh metrics and rates (called by the view, 4 times a second)."""
        now = time.monotonic()
        self.metrics = client.metrics()
        for market in self.markets.values():
            market.trades_per_second = market.rate.sample(now, market.trades)
        self.events_rate = self.message_rate.sample(now, self.total_events)

    @property
    def total_events(self) -> int:
        return sum(h.events for h in self.streams.values())

    @property
    def reconnects(self) -> int:
        """Reconnects so far. ``Metrics.reconnects`` sums the live connections only (a handover
        restarts it), so the status timeline's recoveries are counted too."""
        reported = self.metrics.reconnects if self.metrics is not None else 0
        return max(reported, self.recoveries)

    @property
    def ok(self) -> bool:
        """Events arrived, every stream was subscribed, and no id went unaccounted for."""
        return bool(self.total_events and not self.subscription_errors and not self.unaccounted)

    @property
    def unaccounted(self) -> list[_StreamHealth]:
        return [h for h in self.streams.values() if h.accounted is False]


# -- fastmd demo: views -----------------------------------------------------------------------


def _price(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.2f}"
    return f"{value:,.4f}" if value >= 1 else f"{value:.8g}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _age(health: _StreamHealth) -> str:
    if health.last_at is None:
        return "-"
    return f"{time.monotonic() - health.last_at:.1f} s"


def _progress_line(demo: _Demo) -> str:
    """One line of the non-terminal view (printed once a second)."""
    m = demo.metrics
    status = m.status.value if m is not None else "CONNECTING"
    trades = " ".join(
        f"{s.lower()} {mk.trades_per_second:.0f}/s @ {_price(mk.last_price)}"
        for s, mk in demo.markets.items()
    )
    rtt = _ms(m.latency.last) if m is not None else "-"
    dups = m.duplicates_dropped if m is not None else 0
    return (
        f"[{demo.elapsed():6.2f}s] {status:<12} events {demo.total_events} "
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


def _line(*parts: str | tuple[str, str]) -> Text:
    """One line of text that never wraps: too long for the width, it ends in an ellipsis."""
    from rich.text import Text

    text = Text.assemble(*parts)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _table(style: Box, title: str | None, columns: Sequence[str], left: Sequence[str]) -> Table:
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


def _status_lines(demo: _Demo, width: int) -> list[Text]:
    """The client's health as "key value" pairs, packed into lines of ``width`` without
    splitting a pair: one line on a wide terminal (120 columns or more), two on a narrow one.
    Pairs that do not fit are left out, those with nothing to say (a zero) first, then the least
    important (all of them are in the summary)."""
    from rich.text import Text

    m = demo.metrics
    status = m.status.value if m is not None else "CONNECTING"
    colour = {"CONNECTED": "green", "CLOSED": "red", "FALLBACK": "red"}.get(status, "yellow")
    pairs: list[tuple[str, Text]] = [
        ("status", Text(status, style=f"bold {colour}")),
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
    lines: list[Text] = [_line()]
    for key, value in pairs:
        line = lines[-1]
        size = len(key) + 1 + len(value)
        if line and len(line) + len(separator) + size > width:
            line = _line()
            lines.append(line)
        line.append((separator if line else "") + key + " ", style="dim")
        line.append_text(value)
    return lines


def _markets_section(demo: _Demo) -> _Section:
    from rich import box
    from rich.console import Group

    def render(rows: int) -> RenderableType:
        columns = ("symbol", "last price", "trades/s", "bid", "ask", "spread")
        table = _table(box.SIMPLE_HEAD, None, columns, left=("symbol",))
        markets = list(demo.markets.values())
        shown = markets if rows >= len(markets) else markets[: rows - 1]
        for mk in shown:
            spread = _price(mk.ask - mk.bid) if mk.bid is not None and mk.ask is not None else "-"
            table.add_row(
                mk.symbol, _price(mk.last_price), f"{mk.trades_per_second:.0f}",
                _price(mk.bid), _price(mk.ask), spread,
            )  # fmt: skip
        if len(shown) < len(markets):
            return Group(table, _line((f"+{len(markets) - len(shown)} more", "dim")))
        return table

    count = len(demo.markets)
    return _Section(fixed=2, least=min(count, 3), want=count, rank=1, render=render)


def _trouble(health: _StreamHealth) -> int:
    """How much a stream needs to be seen: ids unaccounted for, no event yet, gaps."""
    if health.accounted is False:
        return 3
    if health.events == 0:
        return 2
    return 1 if health.gaps else 0


def _more_streams(hidden: list[_StreamHealth]) -> str:
    """The last row of a cut streams table: how many are not shown, and what is up with them."""
    troubles = {
        "ids unaccounted": sum(h.accounted is False for h in hidden),
        "silent": sum(h.events == 0 for h in hidden),
        "with gaps": sum(h.gaps > 0 for h in hidden),
    }
    said = ", ".join(f"{n} {what}" for what, n in troubles.items() if n)
    return f"+{len(hidden)} more: {said or 'all fine'}"


def _streams_section(demo: _Demo) -> _Section:
    from rich import box
    from rich.console import Group
    from rich.text import Text

    def render(rows: int) -> RenderableType:
        columns = ("stream", "events", "last event", "gaps", "missing", "ids accounted")
        table = _table(box.SIMPLE_HEAD, None, columns, left=("stream",))
        streams = list(demo.streams.values())
        if rows < len(streams):  # the streams in trouble first, the rest in order
            chosen = sorted(streams, key=_trouble, reverse=True)[: rows - 1]
            shown = [h for h in streams if h in chosen]
        else:
            shown = streams
        for h in shown:
            ledger = {None: Text("n/a", style="dim"), True: Text("yes", style="green"),
                      False: Text("NO", style="bold red")}[h.accounted]  # fmt: skip
            table.add_row(
                h.name, f"{h.events:,}", _age(h),
                Text(str(h.gaps), style="yellow" if h.gaps else ""), str(h.missing), ledger,
            )  # fmt: skip
        hidden = [h for h in streams if h not in shown]
        if hidden:  # a line of its own: in the table, it would widen the first column
            return Group(table, _line((_more_streams(hidden), "dim")))
        return table

    count = len(demo.streams)
    return _Section(fixed=2, least=min(count, 3), want=count, rank=2, render=render)


def _gaps_section(demo: _Demo) -> _Section:
    from rich import box

    def render(rows: int) -> RenderableType:
        shown = demo.gaps[len(demo.gaps) - rows :] if rows else []
        earlier = len(demo.gaps) - len(shown)
        title = f"gaps reported: {len(demo.gaps)}"
        if earlier:
            title += f" ({earlier} earlier not shown)"
        if not demo.gaps:
            return _line((title, "bold"))
        columns = ("at", "stream", "expected", "received", "missing", "reason")
        table = _table(box.SIMPLE_HEAD, title, columns, left=("stream", "reason"))
        for seen in shown:
            gap = seen.gap
            table.add_row(
                f"{seen.at:.2f} s", gap.stream, str(gap.expected), str(gap.received),
                str(seen.missing), gap.reason.value,
            )  # fmt: skip
        return table

    count = len(demo.gaps)
    fixed = 3 if count else 1
    # The gaps are the demo's point: in a small terminal, they stay when the markets go.
    return _Section(fixed=fixed, least=min(count, 2), want=min(count, 10), rank=0, render=render)


def _incidents_section(demo: _Demo) -> _Section:
    from rich.console import Group

    incidents = list(demo.incidents)

    def render(rows: int) -> RenderableType:
        lines = [_line((f"{at:6.2f} s  {text}", "dim")) for at, text in incidents[-rows:]]
        return Group(*lines)

    count = len(incidents)
    return _Section(fixed=0, least=min(count, 2), want=min(count, 5), rank=3, render=render)


def _live_view(demo: _Demo, duration: float, width: int = 80, height: int = 24) -> RenderableType:
    """The terminal view in ``width`` x ``height``: title, client health, markets, per-stream
    health, the latest gaps and incidents (see :func:`_fit`)."""
    from rich.console import Group

    title = _line(
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


def _summary(demo: _Demo, *, duration: float) -> str:
    """The plain-text report printed when the demo ends."""
    m = demo.metrics
    lines = [f"fastmd demo summary: {duration:.1f} s against {demo.source}", ""]
    lines.append("events per stream:")
    lines.append(f"  {'stream':<24}{'events':>9}{'gaps':>6}{'missing':>9}  ids accounted")
    for h in demo.streams.values():
        accounted = h.accounted
        if h.events == 0:
            ledger = "n/a (no event)"
        elif accounted is None:
            ledger = "n/a (no id sequence; duplicates dropped by key)"
        else:
            ledger = "yes: every id delivered or reported missing" if accounted else "NO"
        lines.append(f"  {h.name:<24}{h.events:>9,}{h.gaps:>6}{h.missing:>9}  {ledger}")
    lines.append(f"  {'total':<24}{demo.total_events:>9,}")
    lines.append("")
    lines.append(f"gaps reported: {len(demo.gaps)}")
    for seen in demo.gaps[:50]:
        gap = seen.gap
        lines.append(
            f"  {seen.at:6.2f}s {gap.stream}: expected {gap.expected}, received {gap.received}, "
            f"{seen.missing} missing ({gap.reason.value})"
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


# -- fastmd demo: the command -----------------------------------------------------------------


async def _demo(args: argparse.Namespace) -> int:
    import fastmd
    from fastmd.sim import Exchange

    symbols: list[str] = args.symbols
    plain = args.plain or not sys.stdout.isatty()
    duration: float = args.duration
    async with contextlib.AsyncExitStack() as stack:
        exchange: Exchange | None = None
        if args.url is None:
            exchange = Exchange(args.venue, symbols, args.seed, rate=args.rate)
            await stack.enter_async_context(exchange)
            ws_url, rest_url = exchange.ws_url, exchange.rest_url
            source = f"simulator {ws_url} ({args.venue}, seed {args.seed}, {args.rate:g} events/s)"
        else:
            ws_url, rest_url = args.url, args.rest_url
            source = f"{ws_url} ({args.venue})"
        reach = _Reachability(args.give_up_after)
        demo = _Demo(args.venue, symbols, source, plain=sys.stdout if plain else None, reach=reach)
        client = fastmd.Client(
            args.venue,
            ws_url=ws_url,
            rest_url=rest_url,
            # A ping a second: the view shows a live round trip; Binance allows 5 frames/s.
            heartbeat=fastmd.Heartbeat(interval=1.0, timeout=5.0),
            error_reporter=demo.on_report,
        )
        reach.target(client.ws_url, client.rest_url)
        demo.timeline.append((demo.elapsed(), client.status.value))
        client.on_gap(demo.on_gap)
        client.on_status(demo.on_status)
        await stack.enter_async_context(client)
        if plain:
            print(f"fastmd demo: {source}, {duration:g} s", flush=True)
        # One subscribe() call for every stream: one symbol check and one batched SUBSCRIBE.
        # Separate calls would each fetch exchangeInfo and, once the connection is open, each
        # send a SUBSCRIBE of their own; a burst of those can pass Binance's 5 frames/s.
        # Failures of single streams arrive through the error reporter.
        client.subscribe(list(demo.streams), demo.dispatcher())

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        timers = [loop.call_later(duration, stop.set)]
        if exchange is not None and not args.no_fault:
            faults = exchange.faults

            def inject() -> None:
                dropped = faults.drop_connections(mode="rst")
                demo.note(f"fault injected: the simulator reset {dropped} connection(s) (TCP RST)")

            timers.append(loop.call_later(duration / 2, inject))

        async def give_up() -> None:
            verdict = await _until_unreachable(reach, lambda: demo.total_events > 0, stop)
            if verdict is not None:
                demo.failure = verdict
                demo.note(f"giving up: {verdict}")
                stop.set()

        watchdog = asyncio.create_task(give_up())
        with _signals_set(stop):
            if plain:
                await _plain_view(demo, client, stop)
            else:
                await _rich_view(demo, client, stop, duration)
        _quiet_leftovers()
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        for timer in timers:  # after Ctrl-C, no fault on a stopping simulator
            timer.cancel()
        demo.sample(client)
        elapsed = demo.elapsed()
    if demo.timeline[-1][1] != "CLOSED":
        demo.timeline.append((elapsed, "CLOSED"))
    print(_summary(demo, duration=elapsed), flush=True)
    return 0 if demo.ok else 1


async def _plain_view(demo: _Demo, client: Client, stop: asyncio.Event) -> None:
    """Line mode for pipes and CI: a progress line a second (incidents print as they happen)."""
    demo.sample(client)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        demo.sample(client)
        print(_progress_line(demo), flush=True)


async def _rich_view(demo: _Demo, client: Client, stop: asyncio.Event, duration: float) -> None:
    """The live terminal view, redrawn 4 times a second from the event loop (not from rich's
    refresh thread, which would read the counters while callbacks change them), fitted to the
    terminal's size at each redraw."""
    from rich.console import Console
    from rich.live import Live

    console = Console()

    def view() -> RenderableType:
        width, height = console.size
        return _live_view(demo, duration, width, height)

    demo.sample(client)
    with Live(view(), console=console, auto_refresh=False, transient=False) as live:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
            demo.sample(client)
            live.update(view(), refresh=True)


# -- fastmd watch -----------------------------------------------------------------------------


class _WatchErrors:
    """The error reporter of ``fastmd watch``: reports become lines on stderr, each distinct one
    once (see :class:`_Repeats`); every report is also logged at INFO (``--log-level INFO``).

    Until the exchange has answered, reports are held back: if it never does, the one give-up
    line says it all; once it does, held reports that still matter (a failed symbol check) are
    printed and failed connection attempts are forgotten.
    """

    def __init__(self, reach: _Reachability, out: TextIO) -> None:
        self._reach = reach
        self._out = out
        self._repeats = _Repeats()
        self._held: list[ErrorReport] = []

    def __call__(self, report: ErrorReport) -> None:
        logger.info("%s: %s", report.code, report.message)
        self._reach.report(report)
        if report.code == "subscription_failed":
            return  # said by the subscription's own waiter, with what happens next
        if not self._reach.reached and report.code in _UNREACHABLE_CODES:
            self._held.append(report)
            return
        self._print(report)

    def release(self) -> None:
        """The exchange answered: print what was held back, except failed connections."""
        held, self._held = self._held, []
        for report in held:
            if report.code not in _CONNECT_CODES and report.code != "circuit_open":
                self._print(report)

    def say(self, text: str) -> None:
        print(f"fastmd watch: {text}", file=self._out, flush=True)

    def _print(self, report: ErrorReport) -> None:
        text = f"{report.severity.value} {report.code}: {report.message}"
        line = self._repeats.admit(text, _fold_key(report))
        if line is not None:
            self.say(line)


async def _watch(args: argparse.Namespace) -> int:
    import msgspec

    import fastmd
    from fastmd.sim import Exchange

    streams: list[str] = list(dict.fromkeys(args.streams))
    price_type = {"float": float, "str": str}[args.price_type]
    reach = _Reachability(args.give_up_after)
    errors = _WatchErrors(reach, sys.stderr)
    async with contextlib.AsyncExitStack() as stack:
        if args.url is None:
            # The simulator lists --symbols and nothing else, as an exchange lists its markets:
            # a stream of any other symbol is refused by the client's symbol check below.
            exchange = Exchange(args.venue, args.symbols, args.seed, rate=args.rate)
            await stack.enter_async_context(exchange)
            ws_url, rest_url = exchange.ws_url, exchange.rest_url
            listed = f" (the simulator lists {', '.join(args.symbols)}; see --symbols)"
        else:
            ws_url, rest_url = args.url, args.rest_url
            listed = ""
        client = fastmd.Client(
            args.venue,
            ws_url=ws_url,
            rest_url=rest_url,
            price_type=price_type,
            error_reporter=errors,
        )
        reach.target(client.ws_url, client.rest_url)
        client.on_status(reach.on_status)
        await stack.enter_async_context(client)

        stop = asyncio.Event()
        out = sys.stdout.buffer
        encode = msgspec.json.Encoder().encode
        state = {"written": 0, "exit": 0}
        limit: int | None = args.count

        def printer(name: str) -> Callable[[Any], None]:
            prefix = b'{"stream":' + encode(name) + b',"event":'

            def write(event: Any) -> None:
                if stop.is_set():
                    return
                try:
                    out.write(prefix + encode(event) + b"}\n")
                except BrokenPipeError:  # the reader went away (| head): stop quietly
                    _silence_stdout()
                    stop.set()
                    return
                state["written"] += 1
                if limit is not None and state["written"] >= limit:
                    stop.set()

            return write

        async def settle(sub: fastmd.Subscription) -> None:
            try:
                await sub.wait_active(args.ack_wait)
            except fastmd.FastmdTimeoutError:
                if reach.reached:  # otherwise the give-up line will say why
                    errors.say(
                        f"{', '.join(sub.streams)} not acknowledged within {args.ack_wait:g} s; "
                        "still trying (Ctrl-C to stop)"
                    )
            except fastmd.FastmdError as exc:
                # A refused stream stops them all: a typo must not go unnoticed in a pipe.
                unknown = isinstance(exc, fastmd.UnknownSymbolError)
                errors.say(f"{exc}{listed if unknown else ''}")
                if state["exit"] == 0 and len(streams) > 1:
                    errors.say("stopping every stream: fix or drop the refused one")
                state["exit"] = max(state["exit"], _EXIT_USAGE if unknown else 1)
                stop.set()

        async def give_up() -> None:
            verdict = await _until_unreachable(reach, lambda: state["written"] > 0, stop)
            if verdict is None:
                errors.release()
                return
            errors.say(verdict)
            state["exit"] = 1
            stop.set()

        subs = [client.subscribe(name, printer(name)) for name in streams]
        tasks = [asyncio.create_task(settle(sub)) for sub in subs]
        tasks.append(asyncio.create_task(give_up()))
        with _signals_set(stop):
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
                # Flushing on a timer rather than per event keeps a write syscall off the hot
                # path; a reader still sees lines within 0.1 s.
                _flush(out, stop)
        _quiet_leftovers()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _flush(out, stop)
    return state["exit"]


def _flush(out: Any, stop: asyncio.Event) -> None:
    try:
        out.flush()
    except BrokenPipeError:
        _silence_stdout()
        stop.set()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on a closed
    pipe (the usual recipe of the Python documentation, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# -- arguments --------------------------------------------------------------------------------
#
# Every option value is checked here, before anything starts: a bad one is an argparse error
# naming the option (exit 2). Checks that need two options at once (streams and --venue) run in
# _check_args, right after parsing, and end the same way.


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def _int_within(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"within {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    return convert


_count = _int_within(1)
_port = _int_within(0, 65535)
_http_status = _int_within(100, 599)


def _symbol_list(text: str) -> list[str]:
    """``--symbols``: comma-separated symbols, uppercased and deduplicated; letters, digits and
    ``_`` (USD-M delivery contracts: BTCUSDT_250926); non-ASCII letters are legal on Binance."""
    symbols = list(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not symbols:
        raise argparse.ArgumentTypeError("needs at least one symbol, e.g. BTCUSDT,ETHUSDT")
    for symbol in symbols:
        bad = next((c for c in symbol if not (c.isalnum() or c == "_")), None)
        if bad is not None:
            raise argparse.ArgumentTypeError(
                f"{symbol!r} is not a symbol: {bad!r} is not a letter, digit or '_'"
            )
    return symbols


def _url(*schemes: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() not in schemes or not rest.strip("/"):
            allowed = " or ".join(f"{s}://HOST[:PORT]" for s in schemes)
            raise argparse.ArgumentTypeError(f"{text!r} is not a URL of the form {allowed}")
        return text

    return convert


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a level: DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return level


def _add_target(parser: argparse.ArgumentParser, *, rate: float) -> None:
    """Options choosing between the embedded simulator and a real exchange."""
    parser.add_argument("--venue", choices=VENUES, default="binance-spot")
    parser.add_argument(
        "--url", metavar="WS_URL", type=_url("ws", "wss"),
        help="a real exchange's WebSocket base URL (no simulator)",
    )  # fmt: skip
    parser.add_argument(
        "--rest-url", metavar="REST_URL", type=_url("http", "https"),
        help="its REST base URL (default: the venue's)",
    )  # fmt: skip
    parser.add_argument(
        "--symbols", type=_symbol_list, default=DEFAULT_SYMBOLS, metavar="SYMBOLS",
        help=f"comma-separated symbols the simulator lists (default {DEFAULT_SYMBOLS})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="simulator market seed")
    parser.add_argument(
        "--rate", type=_non_negative, default=rate,
        help=f"simulator order-flow events/s ({rate:g})",
    )  # fmt: skip
    parser.add_argument(
        "--give-up-after", type=_positive, default=GIVE_UP_AFTER, metavar="S",
        help="exit when neither the WebSocket nor any event got through within S seconds, or "
        f"when the connection's circuit opens first (default {GIVE_UP_AFTER:g})",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    from fastmd import __version__

    parser = argparse.ArgumentParser(prog="fastmd", description="fastmd: Binance market data.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=None)
    parser.add_argument(
        "--log-level", type=_log_level, default="WARNING", help="DEBUG, INFO, WARNING..."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="live view of fastmd against the embedded simulator, with a connection drop",
        description="Subscribe to trades, 1m klines, book tickers and depth diffs, show a live "
        "view, drop the connection at half time (simulator only) and print a summary.",
    )
    _add_target(demo, rate=300.0)
    demo.add_argument("--duration", type=_positive, default=20.0, help="seconds (default 20)")
    demo.add_argument("--no-fault", action="store_true", help="do not drop the connection")
    demo.add_argument("--plain", action="store_true", help="line-based progress even on a terminal")

    watch = sub.add_parser(
        "watch",
        help="print events of STREAMs as JSON lines",
        description='Print {"stream": ..., "event": ...} JSON lines, one per event.',
    )
    watch.add_argument("streams", nargs="+", metavar="STREAM", help="e.g. btcusdt@trade")
    _add_target(watch, rate=50.0)
    watch.add_argument("--count", type=_count, help="stop after N events")
    watch.add_argument(
        "--price-type", choices=("float", "str"), default="float",
        help="prices as JSON numbers, or as Binance's exact decimal strings",
    )  # fmt: skip
    watch.add_argument(
        "--ack-wait", type=_positive, default=10.0, help="seconds before a slow-ack warning"
    )

    sim = sub.add_parser("sim", help="run the exchange simulator until Ctrl-C")
    sim.add_argument("--venue", choices=VENUES, default="binance-spot")
    sim.add_argument("--symbols", type=_symbol_list, default=DEFAULT_SYMBOLS, metavar="SYMBOLS")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_port, default=0, help="WebSocket port (0: any free port)")
    sim.add_argument("--rest-port", type=_port, default=0, help="REST port (0: any free port)")
    sim.add_argument("--rate", type=_non_negative, default=50.0, help="order-flow events/s")
    sim.add_argument("--replay", metavar="DIR", help="serve a recording instead of the market")
    sim.add_argument(
        "--replay-speed", type=_non_negative, default=1.0, help="1 = recorded pace, 0 = max"
    )
    sim.add_argument("--duration", type=_positive, default=None, help="stop after S seconds")
    limits = sim.add_argument_group("limits (Binance's values by default)")
    limits.add_argument("--ping-interval", type=_positive)
    limits.add_argument("--pong-timeout", type=_positive)
    limits.add_argument("--lifetime", type=_positive, help="connection lifetime in seconds")
    limits.add_argument("--max-incoming", type=_count, help="incoming frames per second")
    limits.add_argument("--max-streams", type=_count, help="streams per connection")
    limits.add_argument("--rest-weight", type=_count, help="REST weight per minute")
    faults = sim.add_argument_group("faults")
    faults.add_argument("--drop-every", type=_positive, metavar="S", help="drop all connections")
    faults.add_argument("--drop-mode", choices=("close", "fin", "rst"), default="close")
    faults.add_argument("--drop-code", type=_int_within(1000, 4999), default=1001)
    faults.add_argument("--shutdown-every", type=_positive, metavar="S", help="serverShutdown")
    faults.add_argument("--skip", action="append", metavar="STREAM", help="skip frames of STREAM")
    faults.add_argument("--skip-every", type=_positive, default=5.0, metavar="S")
    faults.add_argument("--refuse-upgrades", type=_http_status, metavar="STATUS")
    faults.add_argument("--rest-error", type=_http_status, metavar="STATUS")
    faults.add_argument("--rest-delay", type=_positive, metavar="S")
    faults.add_argument("--retry-after", type=_non_negative, metavar="S")
    for command in (demo, watch, sim):
        command.set_defaults(command_parser=command)
    return parser


def _check_streams(streams: Sequence[str], venue: Venue) -> str | None:
    """The first invalid stream name's error message, or ``None``."""
    from fastmd.core.streams import parse_stream
    from fastmd.errors import StreamNameError

    for name in streams:
        try:
            parse_stream(name, venue)
        except StreamNameError as exc:
            return str(exc)
    return None


def _check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with options that are only wrong together, or ``None``."""
    if args.command == "watch":
        problem = _check_streams(args.streams, args.venue)
        if problem is not None:
            return f"argument STREAM: {problem}"
    if args.command == "sim" and args.skip:
        problem = _check_streams(args.skip, args.venue)
        if problem is not None:
            return f"argument --skip: {problem}"
    if args.command in ("demo", "watch") and args.rest_url and not args.url:
        return "argument --rest-url: needs --url (the simulator has its own REST URL)"
    return None


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]]] = {
    "demo": _demo,
    "watch": _watch,
    "sim": _sim,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastmd`` command."""
    args = _parser().parse_args(argv)
    problem = _check_args(args)
    if problem is not None:
        args.command_parser.error(problem)  # usage and the problem on stderr, exit 2
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    command = _COMMANDS[args.command]
    try:
        return _run(command(args), args.loop or _default_loop())
    except KeyboardInterrupt:  # Ctrl-C before the command installed its own handler
        return 130
    except (OSError, ValueError) as exc:
        print(f"fastmd {args.command}: {exc}", file=sys.stderr)
        return 1
