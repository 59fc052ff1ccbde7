"""Per-stream sequence checks: detect every loss, drop every duplicate.

Rules, per stream kind:

- trade: ``trade_id`` must be the previous + 1;
- aggTrade: ``agg_trade_id`` must be the previous + 1 (futures ``f``/``l`` are not contiguous and
  are not checked);
- diff depth: spot ``first_update_id`` must be the previous ``final_update_id`` + 1, futures
  (and USD-M RPI depth) ``prev_final_update_id`` must equal the previous ``final_update_id``;
- kline and continuous-contract kline: a candle whose start is more than one interval after the
  last one means lost candles;
- everything else (tickers, book ticker, partial depth, mark price...) has no sequence to break
  but a monotonic key (update id or event time) that drops duplicates;
- streams where many symbols interleave (``!bookTicker``, ``!forceOrder@arr``, and
  ``<symbol>@forceOrder`` alike, ``!contractInfo``) keep that key per symbol: ``update_id``
  for book tickers; liquidations and contract info carry no id, so an event equal to one of the
  symbol's last few is a repeat.

An event whose key is not past the last delivered one is a duplicate (the overlap of a
make-before-break handover, a server replay): it is dropped and counted, never delivered twice.
A jump is reported as a :class:`Gap`; the event itself is delivered and becomes the new base.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from fastmd.core.streams import ARRAY_KINDS, Stream, StreamKind

__all__ = ["Gap", "GapReason"]

_INTERVAL_MS: Final = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000,
    "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000,
    "1w": 604_800_000, "1M": 31 * 86_400_000,
}  # fmt: skip


RECENT_MEMORY: Final = 16
"""Events remembered per symbol to tell a repeat from a new one on streams without an id
(liquidations: at most one a second per symbol, so 16 seconds or more, longer than a handover's
overlap; contract info, pushed on change)."""


class GapReason(StrEnum):
    """Why data was lost."""

    SERVER_SKIP = "server_skip"
    """The exchange's own sequence jumped while the connection stayed up."""
    RECONNECT = "reconnect"
    """Events were missed while a connection was down."""
    OVERFLOW = "overflow"
    """A bounded queue was full and its policy dropped events."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A detected loss on one stream.

    Attributes:
        stream: the stream name.
        expected: the id (or time, for klines) that should have come next.
        received: the id (or time) that came instead.
        reason: why (:class:`GapReason`).
    """

    stream: str
    expected: int
    received: int
    reason: GapReason
    step: int = field(default=1, compare=False)
    """The distance between consecutive keys: 1 for ids, the interval in ms for klines."""

    @property
    def missing(self) -> int:
        """How many ids were lost (candles, for klines)."""
        return max((self.received - self.expected) // self.step, 0)


GapSink = Callable[[Gap], None]


_NO_MARK: Final = -2  # below every key: "no reconnect since the last delivered event"


class Sequencer:
    """Checks one stream's events in order. ``check(event)`` returns True to deliver it.

    The in-order path of ``check`` is the hot path of every frame: it reads and writes only
    ``last``. Whether a gap is due to a reconnect is decided when the gap is found: if no event
    was delivered since :meth:`mark_reconnect`, ``last`` still equals the key it recorded.
    """

    __slots__ = ("duplicates", "last", "marked_at", "sink", "stream")

    def __init__(self, stream: str, sink: GapSink) -> None:
        self.stream = stream
        self.sink = sink
        self.last = -1
        self.duplicates = 0
        self.marked_at = _NO_MARK

    def mark_reconnect(self) -> None:
        """A reconnect happened: a jump right after it is blamed on it, not on the server."""
        self.marked_at = self.last

    def _gap(self, expected: int, received: int, step: int = 1) -> None:
        reconnect = self.marked_at == self.last
        self.marked_at = _NO_MARK
        reason = GapReason.RECONNECT if reconnect else GapReason.SERVER_SKIP
        self.sink(Gap(self.stream, expected, received, reason, step))

    def check(self, event: Any) -> bool:  # pragma: no cover - every stream has a subclass
        raise NotImplementedError


class _Ids(Sequencer):
    """Ids that must go up by exactly one. Each subclass reads its id field as a plain
    attribute in ``check`` (a third of the cost of ``getattr(event, name)`` on this per-frame
    path) and hands anything out of order to :meth:`_out_of_order`."""

    __slots__ = ()

    def _out_of_order(self, key: int) -> bool:
        last = self.last
        if key <= last:
            self.duplicates += 1
            return False
        self._gap(last + 1, key)
        self.last = key
        return True


class _TradeIds(_Ids):
    """``trade_id`` must go up by exactly one."""

    __slots__ = ()

    def check(self, event: Any) -> bool:
        key: int = event.trade_id
        last = self.last
        if key == last + 1 or last < 0:
            self.last = key
            return True
        return self._out_of_order(key)


class _AggTradeIds(_Ids):
    """``agg_trade_id`` must go up by exactly one (futures ``f``/``l`` are not checked)."""

    __slots__ = ()

    def check(self, event: Any) -> bool:
        key: int = event.agg_trade_id
        last = self.last
        if key == last + 1 or last < 0:
            self.last = key
            return True
        return self._out_of_order(key)


class _SpotDepth(Sequencer):
    """Spot diffs: ``U`` must be the previous ``u`` + 1."""

    __slots__ = ()

    def check(self, event: Any) -> bool:
        last = self.last
        final: int = event.final_update_id
        if last >= 0 and final <= last:
            self.duplicates += 1
            return False
        first: int = event.first_update_id
        if last >= 0 and first != last + 1:
            self._gap(last + 1, first)
        self.last = final
        return True


class _FuturesDepth(Sequencer):
    """Futures diffs: ``pu`` must equal the previous ``u``."""

    __slots__ = ()

    def check(self, event: Any) -> bool:
        last = self.last
        final: int = event.final_update_id
        if last >= 0 and final <= last:
            self.duplicates += 1
            return False
        previous = event.prev_final_update_id
        if last >= 0 and previous is not None and previous != last:
            self._gap(last, previous)
        self.last = final
        return True


class _Klines(Sequencer):
    """Candles: updates of the open candle repeat; a skipped candle period is a gap. Duplicates
    are updates not newer than the last delivered one by (event time, candle start): the final
    update of a candle and the first of the next one share their event time."""

    __slots__ = ("interval_ms", "last_key")

    def __init__(self, stream: str, sink: GapSink, interval: str) -> None:
        super().__init__(stream, sink)
        self.interval_ms = _INTERVAL_MS.get(interval, 60_000)
        self.last_key = (-1, -1)

    def check(self, event: Any) -> bool:
        start: int = event.kline.start_time
        key = (event.event_time, start)
        if key <= self.last_key:
            self.duplicates += 1
            return False
        self.last_key = key
        last = self.last
        # 1M candles have uneven lengths: only a step back or repeat is checked for them
        if last >= 0 and start > last + self.interval_ms and self.interval_ms < 2_419_200_000:
            self._gap(last + self.interval_ms, start, self.interval_ms)
        self.last = max(start, last)
        return True


class _Monotonic(Sequencer):
    """No sequence, only a key that must grow: drops replays and handover overlaps."""

    __slots__ = ("key",)

    def __init__(self, stream: str, sink: GapSink, key: Callable[[Any], int]) -> None:
        super().__init__(stream, sink)
        self.key = key

    def check(self, event: Any) -> bool:
        key = self.key(event)
        if key <= self.last:
            self.duplicates += 1
            return False
        self.last = key
        return True


class _BookTickersBySymbol(Sequencer):
    """``!bookTicker``: symbols interleave on one stream, each with its own order-book update
    id, so ``update_id`` must grow per symbol. One dict lookup and, in order, one store of an
    existing key: nothing is allocated per event."""

    __slots__ = ("lasts",)

    def __init__(self, stream: str, sink: GapSink) -> None:
        super().__init__(stream, sink)
        self.lasts: dict[str, int] = {}

    def check(self, event: Any) -> bool:
        key: int = event.update_id
        lasts = self.lasts
        symbol: str = event.symbol
        if key > lasts.get(symbol, -1):
            lasts[symbol] = key
            return True
        self.duplicates += 1
        return False


class _RecentBySymbol(Sequencer):
    """Events with no id, pushed per symbol on change (liquidations, contract info). The key is
    the event itself: per symbol the last :data:`RECENT_MEMORY` events are kept, and an event
    equal to one of them (same time, same fields) is a repeat. So is one older than all of them
    once the memory is full: it is from before what is remembered, and only a replay brings such
    an event back. A new event is never dropped, even one that arrives after a newer one (a
    handover's new connection may run ahead of the old one by a few frames); it is delivered
    then, late. ``symbol_of`` says where an event's symbol is."""

    __slots__ = ("recent", "symbol_of")

    def __init__(self, stream: str, sink: GapSink, symbol_of: Callable[[Any], str]) -> None:
        super().__init__(stream, sink)
        self.symbol_of = symbol_of
        self.recent: dict[str, deque[Any]] = {}

    def check(self, event: Any) -> bool:
        symbol = self.symbol_of(event)
        recent = self.recent.get(symbol)
        if recent is None:
            recent = self.recent[symbol] = deque(maxlen=RECENT_MEMORY)
        elif event in recent or (
            len(recent) == RECENT_MEMORY and event.event_time < recent[0].event_time
        ):
            self.duplicates += 1
            return False
        recent.append(event)
        return True


def _order_symbol(event: Any) -> str:
    """``<symbol>@forceOrder`` and ``!forceOrder@arr``: the symbol is inside the order."""
    symbol: str = event.order.symbol
    return symbol


def _symbol(event: Any) -> str:
    symbol: str = event.symbol
    return symbol


def _event_time(event: Any) -> int:
    return int(event.event_time)


def _array_time(events: Any) -> int:
    return max((int(e.event_time) for e in events), default=-1) if events else -1


def sequencer_for(stream: Stream, name: str, sink: GapSink, *, futures: bool) -> Sequencer | None:
    """The checker of ``stream`` (``None`` for streams with nothing to check)."""
    kind = stream.kind
    if kind is StreamKind.TRADE:
        return _TradeIds(name, sink)
    if kind is StreamKind.AGG_TRADE:
        return _AggTradeIds(name, sink)
    if kind is StreamKind.DEPTH:
        return _FuturesDepth(name, sink) if futures else _SpotDepth(name, sink)
    if kind is StreamKind.RPI_DEPTH:
        return _FuturesDepth(name, sink)
    if kind in (StreamKind.KLINE, StreamKind.CONTINUOUS_KLINE):
        return _Klines(name, sink, stream.interval or "1m")
    if kind is StreamKind.BOOK_TICKER:
        return _Monotonic(name, sink, lambda e: int(e.update_id))
    if kind is StreamKind.PARTIAL_DEPTH:
        if futures:
            return _Monotonic(name, sink, lambda e: int(e.final_update_id))
        return _Monotonic(name, sink, lambda e: int(e.last_update_id))
    if kind is StreamKind.REFERENCE_PRICE:
        return _Monotonic(name, sink, lambda e: int(e.engine_time))
    if kind in ARRAY_KINDS:
        return _Monotonic(name, sink, _array_time)
    if kind is StreamKind.ALL_BOOK_TICKERS:
        return _BookTickersBySymbol(name, sink)
    if kind in (StreamKind.FORCE_ORDER, StreamKind.ALL_FORCE_ORDERS):
        return _RecentBySymbol(name, sink, _order_symbol)
    if kind is StreamKind.ALL_CONTRACT_INFO:
        return _RecentBySymbol(name, sink, _symbol)
    if kind is StreamKind.SERVER_SHUTDOWN:
        return None
    return _Monotonic(name, sink, _event_time)
