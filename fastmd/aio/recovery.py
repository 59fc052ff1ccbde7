"""Getting lost data back: REST backfill of gaps, and REST polling while a connection is down.

Backfill: when an aggTrade stream (``a`` ids) or a kline stream (candle times) shows a gap, or a
trade stream (``t`` ids) subscribed with ``backfill=True``, the missing range is fetched from REST
(``aggTrades?fromId=``, ``klines?startTime=``, ``historicalTrades?fromId=``) and delivered, in
order, before the live events that arrived meanwhile (they wait in a buffer). Only what REST
cannot return is reported as a gap. Should ``historicalTrades`` want an API key (it does not on
Binance spot), trade gaps are reported from then on instead of being fetched.

Fallback: when a connection's circuit opens (or it failed ``fallback_after`` attempts in a row),
its streams are served by polling REST, through the same callbacks and in the same event types,
at an interval that keeps the polling within its share of the weight budget. When the socket is
back, polling stops; the sequencers drop what both delivered and report what neither did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from fastmd.aio.reporting import Reporter
from fastmd.aio.rest import RestClient
from fastmd.aio.routes import Route, RouteTable
from fastmd.aio.tasks import Tasks
from fastmd.core import convert
from fastmd.core.codec import Decoder
from fastmd.core.lifecycle import Severity
from fastmd.core.recovery import (
    BACKFILL_ON_REQUEST,
    BACKFILL_PAGE,
    BACKFILLABLE,
    PollPlan,
    kline_updates,
    needs_api_key,
    poll_interval,
    poll_plan,
    poll_weight,
    unfilled,
)
from fastmd.core.sequence import Gap
from fastmd.core.streams import StreamKind, Venue
from fastmd.errors import FastmdError, RestError

__all__: list[str] = []

logger = logging.getLogger(__name__)

RestAccess = Callable[[], RestClient | None]
"""The client's REST access, ``None`` before it started."""


_Item = TypeVar("_Item")


async def _by_id(
    gap: Gap,
    fetch: Callable[[int], Awaitable[Sequence[_Item]]],
    ident: Callable[[_Item], int],
    event: Callable[[_Item], Any],
) -> list[Any]:
    """The events ``gap`` lacks, as REST pages them by id from ``fromId`` (trades and aggTrades):
    ids from ``gap.expected`` up to ``gap.received``, exclusive."""
    found: list[Any] = []
    next_id = gap.expected
    while next_id < gap.received:
        page = await fetch(next_id)
        for item in page:
            if ident(item) >= gap.received:
                break
            if ident(item) >= next_id:  # a page starts at fromId, or later if REST lacks it
                found.append(event(item))
        if len(page) < BACKFILL_PAGE:
            break
        next_id = ident(page[-1]) + 1
    return found


class Backfiller:
    """Fills gaps of trade, aggTrade and kline streams from REST (per route, one at a time).

    Args:
        routes: the route table (its buffer holds live events while a fill runs).
        rest: the client's REST access.
        tasks: where fills run.
        reporter: where failed fills are reported.
        report_gap: reports what a fill could not recover.
    """

    def __init__(
        self,
        routes: RouteTable,
        rest: RestAccess,
        tasks: Tasks,
        reporter: Reporter,
        report_gap: Callable[[Gap], None],
    ) -> None:
        self._routes = routes
        self._rest = rest
        self._tasks = tasks
        self._reporter = reporter
        self._report_gap = report_gap
        self.filled = 0
        """Events delivered from REST instead of being lost."""
        self.trades_public = True
        """Whether ``historicalTrades`` answers without an API key (until it says otherwise:
        then trade gaps are reported, not fetched)."""

    def takes(self, route: Route, gap: Gap) -> bool:
        """Start filling ``gap`` if the stream can be backfilled; True if it was taken (the
        parts REST cannot return are reported later)."""
        kind = route.parsed.kind
        if not route.backfill or (kind not in BACKFILLABLE and kind not in BACKFILL_ON_REQUEST):
            return False
        if kind is StreamKind.TRADE and not self.trades_public:
            return False
        rest = self._rest()
        if route.buffer is not None or rest is None:
            return False  # one fill at a time; a gap during a fill is reported as it is
        self._routes.hold(route)
        self._tasks.spawn(self._fill(rest, route, gap))
        return True

    async def _fill(self, rest: RestClient, route: Route, gap: Gap) -> None:
        routes = self._routes
        delivered: list[Any] = []
        kind = route.parsed.kind
        try:
            if kind is StreamKind.TRADE or kind is StreamKind.AGG_TRADE:
                delivered = await self._trades(rest, route, gap)
            else:
                delivered = await self._klines(rest, route, gap)
        except RestError as error:
            if kind is StreamKind.TRADE and needs_api_key(error.status, error.code):
                self.trades_public = False
                self._reporter.report(
                    Severity.WARNING, "backfill_unavailable",
                    f"{route.name}: historicalTrades wants an API key here: trade gaps are "
                    f"reported from now on, not filled ({error})",
                    error, stream=route.name,
                )  # fmt: skip
            else:
                self._failed(route, error)
        except FastmdError as error:
            self._failed(route, error)
        finally:
            buffered = routes.release(route)
            for event in delivered:
                routes.call(route, event, "rest")
            self.filled += len(delivered)
            self._report_unfilled(route, gap, delivered)
            while buffered:  # the live events that waited, in their order
                routes.call(route, buffered.popleft(), "ws")

    def _failed(self, route: Route, error: FastmdError) -> None:
        self._reporter.report(
            Severity.WARNING, "backfill_failed", f"{route.name}: backfill failed: {error}",
            error, stream=route.name,
        )  # fmt: skip

    async def _trades(self, rest: RestClient, route: Route, gap: Gap) -> list[Any]:
        symbol = route.parsed.symbol or ""
        if route.parsed.kind is StreamKind.TRADE:
            return await _by_id(
                gap,
                lambda start: rest.historical_trades(symbol, from_id=start, limit=BACKFILL_PAGE),
                lambda item: item.id,
                lambda item: convert.trade_event(symbol.upper(), item),
            )
        return await _by_id(
            gap,
            lambda start: rest.agg_trades(symbol, from_id=start, limit=BACKFILL_PAGE),
            lambda item: item.agg_trade_id,
            lambda item: convert.agg_trade_event(symbol.upper(), item),
        )

    async def _klines(self, rest: RestClient, route: Route, gap: Gap) -> list[Any]:
        symbol = route.parsed.symbol or ""
        interval = route.parsed.interval or "1m"
        bars = await rest.klines(
            symbol,
            interval,
            start_time=gap.expected,
            end_time=gap.received - 1,
            limit=BACKFILL_PAGE,
        )
        return [
            convert.kline_event(
                symbol.upper(), interval, bar, event_time=bar.close_time, is_closed=True
            )
            for bar in bars
            if gap.expected <= bar.open_time < gap.received
        ]

    def _report_unfilled(self, route: Route, gap: Gap, delivered: list[Any]) -> None:
        kind = route.parsed.kind
        if kind is StreamKind.TRADE:
            keys = [e.trade_id for e in delivered]
        elif kind is StreamKind.AGG_TRADE:
            keys = [e.agg_trade_id for e in delivered]
        else:
            keys = [e.kline.start_time for e in delivered]
        for hole in unfilled(gap, keys):
            self._report_gap(hole)


class PolledShard(Protocol):
    """What the poller needs of the shard whose streams it serves."""

    url: str
    streams: set[str]
    decoder: Decoder | None


class Poller:
    """Serves one shard's streams from REST while its connection is down."""

    def __init__(
        self,
        venue: Venue,
        shard: PolledShard,
        routes: RouteTable,
        rest: RestClient,
        tasks: Tasks,
        reporter: Reporter,
    ) -> None:
        self._venue = venue
        self._shard = shard
        self._routes = routes
        self._rest = rest
        self._tasks = tasks
        self._reporter = reporter
        self._task: asyncio.Task[None] | None = None
        self._unserved: set[str] = set()
        self._kline_starts: dict[str, int] = {}
        self.polls = 0
        self.delivered = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = self._tasks.spawn(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def interval(self) -> float:
        """Seconds between polling rounds: the round's weight within the fallback share."""
        weight = sum(poll_weight(self._venue, route.parsed) for route in self._served())
        return poll_interval(weight, self._rest.weights.budget)

    def _served(self) -> list[Route]:
        get = self._routes.get
        return [route for name in sorted(self._shard.streams) if (route := get(name)) is not None]

    async def _run(self) -> None:
        while True:
            for route in self._served():
                try:
                    await self._poll(route)
                except RestError as error:
                    self._reporter.report(
                        Severity.WARNING, "fallback_poll_failed",
                        f"{route.name}: REST poll failed: {error}", error, stream=route.name,
                    )  # fmt: skip
            self.polls += 1
            await asyncio.sleep(self.interval())

    async def _poll(self, route: Route) -> None:
        plan = poll_plan(self._venue, route.parsed)
        if plan is None:
            if route.name not in self._unserved:
                self._unserved.add(route.name)
                self._reporter.report(
                    Severity.WARNING, "fallback_unserved",
                    f"{route.name} has no REST equivalent: nothing is delivered until the socket "
                    "is back (the loss is reported as a gap when it returns)",
                    None, stream=route.name,
                )  # fmt: skip
            return
        for event in await self._fetch(route, plan):
            if self._routes.deliver(route, event, "rest"):
                self.delivered += 1

    async def _fetch(self, route: Route, plan: PollPlan) -> list[Any]:
        """The events that the REST request of ``plan`` gives for ``route``, oldest first."""
        rest = self._rest
        stream = route.parsed
        symbol = stream.symbol or ""
        upper = symbol.upper()
        sequencer = route.sequencer
        last = sequencer.last if sequencer is not None else -1
        endpoint = plan.endpoint
        if endpoint == "aggTrades":
            page = await rest.agg_trades(
                symbol, from_id=last + 1 if last >= 0 else None, limit=plan.limit or BACKFILL_PAGE
            )
            return [convert.agg_trade_event(upper, item) for item in page]
        if endpoint == "trades":
            trades = await rest.recent_trades(symbol, limit=plan.limit or 500)
            return [convert.trade_event(upper, t) for t in trades if t.id > last]
        if endpoint == "klines":
            return await self._kline_updates(route, plan)
        if endpoint == "ticker/24hr":
            ticker = await rest.ticker_24h(symbol)
            if stream.kind is StreamKind.TICKER:
                return [convert.ticker_event(ticker)]
            return [convert.mini_ticker_event(ticker)]
        if endpoint == "depth":
            depth = await rest.depth(symbol, plan.limit or 20)
            if stream.kind is StreamKind.BOOK_TICKER:
                quote = convert.book_ticker_event(upper, depth)
                return [quote] if quote is not None else []
            decoder = self._shard.decoder
            if decoder is None:
                return []
            return [convert.partial_depth_event(decoder.event_type(stream), depth)]
        if endpoint == "avgPrice":
            average = await rest.avg_price(symbol)
            return [convert.avg_price_event(upper, average, int(time.time() * 1000))]
        if endpoint == "premiumIndex":
            return [convert.mark_price_event(upper, await rest.premium_index(symbol))]
        raise AssertionError(f"no fetcher for the poll plan {plan}")

    async def _kline_updates(self, route: Route, plan: PollPlan) -> list[Any]:
        """The open candle, preceded by the final update of the one that was open last round
        if it has closed since."""
        stream = route.parsed
        symbol = stream.symbol or ""
        upper = symbol.upper()
        interval = stream.interval or "1m"
        bars = await self._rest.klines(symbol, interval, limit=plan.limit or 2)
        now = int(time.time() * 1000)
        rounds = kline_updates([bar.open_time for bar in bars], self._kline_starts.get(route.name))
        if bars:
            self._kline_starts[route.name] = bars[-1].open_time
        return [
            convert.kline_event(upper, interval, bars[i], event_time=now, is_closed=closed)
            for i, closed in rounds
        ]


class Fallback:
    """Switches shards to REST polling and back (the pool calls it as connections come and go).

    Args:
        enabled: the client's ``fallback`` option; when off, :meth:`enter` does nothing.
    """

    def __init__(
        self,
        venue: Venue,
        routes: RouteTable,
        rest: RestAccess,
        tasks: Tasks,
        reporter: Reporter,
        *,
        enabled: bool,
    ) -> None:
        self._venue = venue
        self._routes = routes
        self._rest = rest
        self._tasks = tasks
        self._reporter = reporter
        self.enabled = enabled
        self._pollers: dict[int, Poller] = {}

    def enter(self, shard: PolledShard) -> None:
        """Serve ``shard``'s streams by REST polling until :meth:`leave`."""
        rest = self._rest()
        if not self.enabled or rest is None:
            return
        poller = self._pollers.get(id(shard))
        if poller is None:
            poller = self._pollers[id(shard)] = Poller(
                self._venue, shard, self._routes, rest, self._tasks, self._reporter
            )
        if not poller.running:
            self._reporter.report(
                Severity.WARNING, "fallback", f"{shard.url}: serving its streams by REST polling",
                None,
            )  # fmt: skip
            poller.start()

    def leave(self, shard: PolledShard) -> None:
        """``shard``'s socket is back: stop polling it."""
        poller = self._pollers.get(id(shard))
        if poller is not None and poller.running:
            poller.stop()
            logger.info("%s: back on the socket, REST polling stopped", shard.url)

    def forget(self, shard: PolledShard) -> None:
        """``shard`` is gone: stop and drop its poller."""
        poller = self._pollers.pop(id(shard), None)
        if poller is not None:
            poller.stop()

    def polling(self, shard: PolledShard) -> bool:
        """Whether ``shard``'s streams are being polled now."""
        poller = self._pollers.get(id(shard))
        return poller is not None and poller.running
