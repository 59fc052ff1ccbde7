"""The demo's state: what ``fastmd demo`` knows about each market and stream, fed by the
client's callbacks, gap and status listeners and error reports, and by :meth:`fastmd.Client.health`
snapshots: each stream's status, event count, last event, gaps and missing events are the
library's own (``client.health().streams``), not a count the demo keeps.

What the demo adds is an id ledger of the sequenced streams (trade ids, depth update ids), kept
from what its callbacks saw: every id between the first and the last seen was either delivered or
reported missing in a gap. That is the demo's proof that no loss was silent. The views
(:mod:`fastmd.cli.view`) only read this state.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

import fastmd
from fastmd.cli.reports import Reachability, Repeats, fold_key
from fastmd.core.streams import TRADE_KINDS, StreamKind, build_stream, parse_stream, trade_stream

if TYPE_CHECKING:
    from fastmd import Client, ErrorReport, Gap, Health, Metrics, Status, StreamHealth, Venue

__all__ = ["Demo", "GapSeen", "Market", "Rate", "StreamLedger", "demo_streams"]

logger = logging.getLogger(__name__)

_LEDGER_KINDS: Final = frozenset({*TRADE_KINDS.values(), StreamKind.DEPTH})
"""Streams whose ids run without a hole: the venue's stream of every trade (trade ids spot,
aggTrade ids USD-M) and depth diffs (update ids)."""


def demo_streams(symbol: str, venue: Venue) -> list[str]:
    """The streams ``fastmd demo`` subscribes for ``symbol`` on ``venue``: the one that carries
    every trade (:func:`fastmd.core.streams.trade_stream`), 1-minute klines, the book ticker and
    depth diffs at 100 ms, each built and checked by :mod:`fastmd.core.streams`."""
    return [
        trade_stream(symbol, venue),
        build_stream(StreamKind.KLINE, symbol, venue=venue, interval="1m"),
        build_stream(StreamKind.BOOK_TICKER, symbol, venue=venue),
        build_stream(StreamKind.DEPTH, symbol, venue=venue, speed="100ms"),
    ]


class Rate:
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
class StreamLedger:
    """The demo's id ledger of one stream (its health is the client's: :meth:`Demo.health_of`).

    Sequenced streams (trade ids, depth update ids) count the ids their callback saw and the ids
    reported missing through ``on_gap``: every id between the first and the last seen was either
    delivered or reported missing. That is the demo's proof that no loss was silent.
    """

    name: str
    symbol: str
    kind: StreamKind
    missing: int = 0
    """Ids reported missing through ``on_gap``."""
    first_id: int | None = None
    last_id: int | None = None
    ids: int = 0

    @property
    def sequenced(self) -> bool:
        return self.kind in _LEDGER_KINDS

    def record(self, first: int, last: int) -> None:
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
class Market:
    """Last price, trade rate and book top of one symbol."""

    symbol: str
    last_price: float | None = None
    trades: int = 0
    bid: float | None = None
    ask: float | None = None
    rate: Rate = field(default_factory=Rate)
    trades_per_second: float = 0.0


@dataclass(frozen=True)
class GapSeen:
    """A gap and when it was reported (seconds into the demo)."""

    at: float
    gap: Gap


class Demo:
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
        reach: Reachability,
    ) -> None:
        self.started = time.monotonic()
        self.source = source
        self.plain = plain
        self.reach = reach
        self.repeats = Repeats()
        self.failure: str | None = None
        """Why the demo gave up early (the exchange could not be reached), if it did."""
        self.last_error: str | None = None
        self.reports: dict[str, int] = {}
        """Error reports per code (gaps apart), shown or folded."""
        self.markets = {s: Market(s) for s in symbols}
        self.streams = {
            name: StreamLedger(name, s, parse_stream(name, venue).kind)
            for s in symbols
            for name in demo_streams(s, venue)
        }
        self.gaps: list[GapSeen] = []
        self.incidents: deque[tuple[float, str]] = deque(maxlen=8)
        self.timeline: list[tuple[float, str]] = []
        self.recoveries = 0
        self.subscription_errors: list[str] = []
        self.metrics: Metrics | None = None
        self.health: Health | None = None
        """The latest :meth:`fastmd.Client.health` snapshot (taken by :meth:`sample`)."""
        self.message_rate = Rate()
        self.events_rate = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str, *, incident: bool = True, fold: str | None = None) -> None:
        """Record a notable moment; in line mode it is printed at once. Gaps are not incidents
        of the live view: they have a table of their own. ``fold``: the key of a message that
        is held back if one like it was seen in the last 10 s (see :class:`Repeats`); error
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

    def callback(self, ledger: StreamLedger) -> Callable[[Any], None]:
        """The subscription callback of one stream (events are counted by the client)."""
        market = self.markets[ledger.symbol]
        is_trade = ledger.kind is StreamKind.TRADE

        def on_trade(event: Any) -> None:
            trade_id = event.trade_id if is_trade else event.agg_trade_id
            ledger.record(trade_id, trade_id)
            market.trades += 1
            market.last_price = event.price

        def on_depth(event: Any) -> None:
            ledger.record(event.first_update_id, event.final_update_id)

        def on_book(event: Any) -> None:
            market.bid, market.ask = event.bid_price, event.ask_price

        def on_kline(event: Any) -> None:
            if market.last_price is None:
                market.last_price = event.kline.close

        callbacks: dict[StreamKind, Callable[[Any], None]] = {
            StreamKind.TRADE: on_trade,
            StreamKind.AGG_TRADE: on_trade,
            StreamKind.DEPTH: on_depth,
            StreamKind.BOOK_TICKER: on_book,
            StreamKind.KLINE: on_kline,
        }
        return callbacks[ledger.kind]

    def dispatcher(self) -> Callable[[Any], None]:
        """One callback for every stream, routing each event to its stream's callback by event
        type and symbol (each demo stream has its own pair)."""
        events: dict[StreamKind, type] = {  # loads the event classes: on first use only
            StreamKind.TRADE: fastmd.Trade,
            StreamKind.AGG_TRADE: fastmd.AggTrade,
            StreamKind.KLINE: fastmd.Kline,
            StreamKind.BOOK_TICKER: fastmd.BookTicker,
            StreamKind.DEPTH: fastmd.DepthUpdate,
        }
        routes = {(events[h.kind], h.symbol): self.callback(h) for h in self.streams.values()}

        def dispatch(event: Any) -> None:
            callback = routes.get((type(event), event.symbol))
            if callback is not None:
                callback(event)

        return dispatch

    def on_gap(self, gap: Gap) -> None:
        missing = gap.missing
        self.gaps.append(GapSeen(self.elapsed(), gap))
        ledger = self.streams.get(gap.stream)
        if ledger is not None:
            ledger.missing += missing
        self.note(
            f"gap {gap.stream}: expected {gap.expected}, received {gap.received} "
            f"({missing} missing, reason {gap.reason.value})",
            incident=False,
        )

    def on_status(self, status: Status, metrics: Metrics) -> None:
        if status == "CONNECTED" and self.timeline and self.timeline[-1][1] == "RECONNECTING":
            self.recoveries += 1
        self.timeline.append((self.elapsed(), status.value))
        self.note(f"status {status.value}")

    def on_report(self, report: ErrorReport) -> None:
        """The client's error reporter: reports become incidents instead of log lines on stderr,
        which would tear the live view. Gaps come through :meth:`on_gap` already."""
        if report.code == "gap":
            return
        if report.code == "subscription_failed":
            self.subscription_errors.append(report.message)
        self.reports[report.code] = self.reports.get(report.code, 0) + 1
        self.last_error = f"{report.code}: {report.message}"
        text = f"{report.severity.value} {report.code}: {report.message[:160]}"
        self.note(text, fold=fold_key(report))

    # -- sampling -------------------------------------------------------------------------------

    def sample(self, client: Client) -> None:
        """Refresh metrics, health and rates (called by the view, 4 times a second)."""
        now = time.monotonic()
        self.metrics = client.metrics()
        self.health = client.health()
        for market in self.markets.values():
            market.trades_per_second = market.rate.sample(now, market.trades)
        self.events_rate = self.message_rate.sample(now, self.total_events)

    def health_of(self, name: str) -> StreamHealth | None:
        """The client's health of stream ``name`` in the latest snapshot (``None``: none yet)."""
        return self.health.streams.get(name) if self.health is not None else None

    def events_of(self, name: str) -> int:
        """Events of stream ``name`` delivered to its callback (the client's count: from the
        socket and from REST)."""
        health = self.health_of(name)
        return 0 if health is None else health.events + health.rest_events

    @property
    def total_events(self) -> int:
        """Events of the demo's streams, as of the latest health snapshot."""
        return sum(self.events_of(name) for name in self.streams)

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
    def unaccounted(self) -> list[StreamLedger]:
        return [h for h in self.streams.values() if h.accounted is False]
