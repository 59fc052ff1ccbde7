"""Getting lost data back: REST backfill of gaps, and REST polling while a connection is down.

Backfill: when an aggTrade stream (``a`` ids) or a kline stream (candle times) shows a gap, the
missing range is fetched from REST (``aggTrades?fromId=``, ``klines?startTime=``) and delivered,
in order, before the live events that arrived meanwhile (they wait in a buffer). Only what REST
cannot return is reported as a gap.

Fallback: when a connection's circuit opens (or it failed ``fallback_after`` attempts in a row),
its streams are served by polling REST, through the same callbacks and in the same event types,
at an interval that keeps the polling within its share of the weight budget. When the socket is
back, polling stops; the sequencers drop what both delivered and report what neither did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from fastmd.core import convert
from fastmd.core.lifecycle import Severity
from fastmd.core.recovery import (
    BACKFILL_PAGE,
    BACKFILLABLE,
    PollPlan,
    poll_interval,
    poll_plan,
    poll_weight,
    unfilled,
)
from fastmd.core.sequence import Gap
from fastmd.core.streams import StreamKind
from fastmd.errors import FastmdError, RestError

if TYPE_CHECKING:
    from fastmd.aio.client import Client, _Route, _Slot

__all__: list[str] = []

logger = logging.getLogger(__name__)


class Backfiller:
    """Fills gaps of aggTrade and kline streams from REST (per route, one at a time)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.filled = 0
        """Events delivered from REST instead of being lost."""

    def takes(self, route: _Route, gap: Gap) -> bool:
        """Start filling ``gap`` if the stream can be backfilled; True if it was taken (the
        parts REST cannot return are reported later)."""
        kind = route.parsed.kind
        if not route.backfill or kind not in BACKFILLABLE:
            return False
        if route.buffer is not None or self._client._rest is None:
            return False  # one fill at a time; a gap during a fill is reported as it is
        route.buffer = deque()
        self._client._refresh_callbacks(route)
        self._client._spawn(self._fill(route, gap))
        return True

    async def _fill(self, route: _Route, gap: Gap) -> None:
        client = self._client
        delivered: list[Any] = []
        try:
            if route.parsed.kind is StreamKind.AGG_TRADE:
                delivered = await self._agg_trades(route, gap)
            else:
                delivered = await self._klines(route, gap)
        except FastmdError as error:
            client._report(
                Severity.WARNING, "backfill_failed", f"{route.name}: backfill failed: {error}",
                error, stream=route.name,
            )  # fmt: skip
        finally:
            buffered = route.buffer or deque()
            route.buffer = None
            client._refresh_callbacks(route)
            for event in delivered:
                client._call(route, event)
            self.filled += len(delivered)
            self._report_unfilled(route, gap, delivered)
            while buffered:  # the live events that waited, in their order
                client._call(route, buffered.popleft())

    async def _agg_trades(self, route: _Route, gap: Gap) -> list[Any]:
        rest = self._client.rest
        symbol = route.parsed.symbol or ""
        found: list[Any] = []
        next_id = gap.expected
        while next_id < gap.received:
            page = await rest.agg_trades(symbol, from_id=next_id, limit=BACKFILL_PAGE)
            for item in page:
                if item.agg_trade_id >= gap.received:
                    break
                found.append(convert.agg_trade_event(symbol.upper(), item))
            if len(page) < BACKFILL_PAGE or not page:
                break
            next_id = page[-1].agg_trade_id + 1
        return found

    async def _klines(self, route: _Route, gap: Gap) -> list[Any]:
        rest = self._client.rest
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

    def _report_unfilled(self, route: _Route, gap: Gap, delivered: list[Any]) -> None:
        if route.parsed.kind is StreamKind.AGG_TRADE:
            keys = [e.agg_trade_id for e in delivered]
        else:
            keys = [e.kline.start_time for e in delivered]
        for hole in unfilled(gap, keys):
            self._client._report_gap(hole)


class Poller:
    """Serves one slot's streams from REST while its connection is down."""

    def __init__(self, client: Client, slot: _Slot) -> None:
        self._client = client
        self._slot = slot
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
            self._task = self._client._spawn(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def interval(self) -> float:
        """Seconds between polling rounds: the round's weight within the fallback share."""
        client = self._client
        weight = sum(poll_weight(client.venue, route.parsed) for route in self._routes())
        return poll_interval(weight, client.rest.weights.budget)

    def _routes(self) -> list[_Route]:
        routes = self._client._routes
        return [routes[name] for name in sorted(self._slot.streams) if name in routes]

    async def _run(self) -> None:
        client = self._client
        while True:
            client._rest_delivery = True
            try:
                for route in self._routes():
                    try:
                        await self._poll(route)
                    except RestError as error:
                        client._report(
                            Severity.WARNING, "fallback_poll_failed",
                            f"{route.name}: REST poll failed: {error}", error, stream=route.name,
                        )  # fmt: skip
            finally:
                client._rest_delivery = False
            self.polls += 1
            await asyncio.sleep(self.interval())

    def _deliver(self, route: _Route, event: Any) -> None:
        if self._client._deliver(route, event):
            self.delivered += 1

    async def _poll(self, route: _Route) -> None:
        plan = poll_plan(self._client.venue, route.parsed)
        if plan is None:
            if route.name not in self._unserved:
                self._unserved.add(route.name)
                self._client._report(
                    Severity.WARNING, "fallback_unserved",
                    f"{route.name} has no REST equivalent: nothing is delivered until the socket "
                    "is back (the loss is reported as a gap when it returns)",
                    None, stream=route.name,
                )  # fmt: skip
            return
        for event in await self._fetch(route, plan):
            self._deliver(route, event)

    async def _fetch(self, route: _Route, plan: PollPlan) -> list[Any]:
        """The events that the REST request of ``plan`` gives for ``route``, oldest first."""
        rest = self._client.rest
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
            decoder = self._slot.decoder
            if decoder is None:
                return []
            return [convert.partial_depth_event(decoder.event_type(stream), depth)]
        if endpoint == "avgPrice":
            average = await rest.avg_price(symbol)
            return [convert.avg_price_event(upper, average, int(time.time() * 1000))]
        if endpoint == "premiumIndex":
            return [convert.mark_price_event(upper, await rest.premium_index(symbol))]
        raise AssertionError(f"no fetcher for the poll plan {plan}")

    async def _kline_updates(self, route: _Route, plan: PollPlan) -> list[Any]:
        """The open candle, preceded by the final update of the one that was open last round
        if it has closed since."""
        stream = route.parsed
        symbol = stream.symbol or ""
        upper = symbol.upper()
        interval = stream.interval or "1m"
        bars = await self._client.rest.klines(symbol, interval, limit=plan.limit or 2)
        if not bars:
            return []
        now = int(time.time() * 1000)
        previous = self._kline_starts.get(route.name)
        current = bars[-1]
        updates = []
        if len(bars) >= 2 and previous == bars[-2].open_time:
            updates.append(
                convert.kline_event(upper, interval, bars[-2], event_time=now, is_closed=True)
            )
        updates.append(
            convert.kline_event(upper, interval, current, event_time=now, is_closed=False)
        )
        self._kline_starts[route.name] = current.open_time
        return updates
