"""The rules of getting lost data back from REST: which streams a backfill can fill, which REST
request stands in for each stream while its socket is down (one plan, from which the request and
its weight both come), how often to poll, and what a fill leaves unfilled.

The asyncio shell (:mod:`fastmd.aio.recovery`) runs the requests; everything it decides with comes
from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from fastmd.core.sequence import Gap
from fastmd.core.streams import Stream, StreamKind, Venue
from fastmd.core.weights import depth_weight, request_weight

__all__ = [
    "BACKFILLABLE",
    "BACKFILL_ON_REQUEST",
    "BACKFILL_PAGE",
    "FALLBACK_SHARE",
    "MIN_POLL_INTERVAL",
    "PollPlan",
    "kline_updates",
    "needs_api_key",
    "poll_interval",
    "poll_plan",
    "poll_weight",
    "unfilled",
]

BACKFILLABLE: Final = frozenset({StreamKind.AGG_TRADE, StreamKind.KLINE})
"""Stream kinds whose gaps REST fills unless a subscription says ``backfill=False``: aggTrades
by id (``aggTrades?fromId=``), klines by time (``klines?startTime=``)."""

BACKFILL_ON_REQUEST: Final = frozenset({StreamKind.TRADE})
"""Stream kinds whose gaps REST fills when a subscription asks (``backfill=True``): trades by id
(``historicalTrades?fromId=``; on spot its security type is NONE, no API key; weight 25 a page
of 1000, six times an aggTrades page). USD-M has no raw trade stream."""

BACKFILL_PAGE: Final = 1000
"""Items per backfill request (the historicalTrades, aggTrades and klines maximum)."""

FALLBACK_SHARE: Final = 0.5
"""The part of the REST weight budget that fallback polling may spend."""

MIN_POLL_INTERVAL: Final = 1.0
"""Seconds between two polling rounds at the least."""


@dataclass(frozen=True, slots=True)
class PollPlan:
    """The REST request that stands in for one stream while its socket is down.

    Attributes:
        endpoint: the path after the venue's prefix (``aggTrades``, ``klines``...).
        params: the request's parameters besides the symbol (``limit``).
        weight: what one such request costs on the venue.
    """

    endpoint: str
    params: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1

    @property
    def limit(self) -> int | None:
        """The ``limit`` parameter, if the plan sets one."""
        text = self.params.get("limit")
        return int(text) if text is not None else None


_PLANS: Final[dict[StreamKind, tuple[str, dict[str, str]]]] = {
    StreamKind.AGG_TRADE: ("aggTrades", {"limit": "1000"}),
    StreamKind.TRADE: ("trades", {"limit": "1000"}),
    StreamKind.KLINE: ("klines", {"limit": "2"}),  # the open candle and the one just closed
    StreamKind.TICKER: ("ticker/24hr", {}),
    StreamKind.MINI_TICKER: ("ticker/24hr", {}),
    StreamKind.BOOK_TICKER: ("depth", {"limit": "5"}),  # the top of a small snapshot
    StreamKind.AVG_PRICE: ("avgPrice", {}),
    StreamKind.MARK_PRICE: ("premiumIndex", {}),
}


def poll_plan(venue: Venue, stream: Stream) -> PollPlan | None:
    """The REST request that stands in for ``stream`` on ``venue``; ``None`` when REST cannot
    serve it (diff depth, partial depth on futures, all-market streams...)."""
    if stream.symbol is None:
        return None
    if stream.kind is StreamKind.PARTIAL_DEPTH:
        if venue != "binance-spot":
            return None
        levels = stream.levels or 20
        return PollPlan("depth", {"limit": str(levels)}, depth_weight(venue, levels))
    plan = _PLANS.get(stream.kind)
    if plan is None or (stream.kind is StreamKind.MARK_PRICE and venue != "binance-usdm"):
        return None
    endpoint, params = plan
    # A symbol is always sent: it decides the weight of the ticker endpoints.
    return PollPlan(endpoint, params, request_weight(venue, endpoint, {**params, "symbol": "x"}))


def poll_weight(venue: Venue, stream: Stream) -> int:
    """The weight of one REST round that stands in for ``stream`` (0: REST cannot serve it)."""
    plan = poll_plan(venue, stream)
    return plan.weight if plan is not None else 0


def poll_interval(round_weight: int, budget: float) -> float:
    """Seconds between polling rounds, so that rounds of ``round_weight`` stay within
    :data:`FALLBACK_SHARE` of a ``budget`` of weight per minute (at least
    :data:`MIN_POLL_INTERVAL`)."""
    share = budget * FALLBACK_SHARE
    return max(MIN_POLL_INTERVAL, round_weight * 60.0 / max(share, 1.0))


def unfilled(gap: Gap, filled: Iterable[int]) -> list[Gap]:
    """What a backfill of ``gap`` left missing, given the keys it recovered (ids, or candle open
    times for klines; ascending, within ``[gap.expected, gap.received)``): one gap per hole."""
    holes = []
    expected = gap.expected
    for key in filled:
        if key > expected:
            holes.append(Gap(gap.stream, expected, key, gap.reason, gap.step))
        expected = key + gap.step
    if expected < gap.received:
        holes.append(Gap(gap.stream, expected, gap.received, gap.reason, gap.step))
    return holes


# How an endpoint says it wants an API key: HTTP 401, or Binance's -2014 (API-key format
# invalid) and -2015 (invalid API-key, IP, or permissions for action).
_KEY_REQUIRED_STATUSES: Final = frozenset({401})
_KEY_REQUIRED_CODES: Final = frozenset({-2014, -2015})


def needs_api_key(status: int | None, code: int | None) -> bool:
    """Whether a REST refusal with ``status`` and Binance ``code`` means the endpoint wants an
    API key (a deployment where ``historicalTrades`` is not public): a backfill from it cannot
    succeed by retrying."""
    return status in _KEY_REQUIRED_STATUSES or code in _KEY_REQUIRED_CODES


def kline_updates(open_times: Sequence[int], previous_open: int | None) -> list[tuple[int, bool]]:
    """Which of the newest REST candles (their open times, oldest first) a polling round
    delivers, as ``(index, closed)``: the open candle, preceded by the final update of the one
    that was open last round (``previous_open``) if it has closed since."""
    if not open_times:
        return []
    updates = []
    if len(open_times) >= 2 and open_times[-2] == previous_open:
        updates.append((len(open_times) - 2, True))
    updates.append((len(open_times) - 1, False))
    return updates
