"""A deterministic synthetic Binance market: one evolving limit order book per symbol.

Everything the simulator serves comes from the same books, so every stream agrees with every
other and with REST:

- trade ids are contiguous per symbol; aggTrade ids are contiguous and their ``f``/``l`` ranges
  cover the trades exactly;
- every book change takes the next update id; depth diffs carry contiguous ``U``/``u`` (futures
  ``pu`` = the previous diff's ``u``), in the same sequence as the REST depth ``lastUpdateId``;
- a bookTicker is the book's top at its ``u``; partial depth is the book's top N;
- klines and tickers aggregate the trades; futures mark prices follow the book.

The market has a past, as Binance does: :class:`_History` draws 1500 days of synthetic bars from
the seed on demand (a calendar tree whose children always add up to their parent), the last
minutes before the start are a tape of individual trades generated from those bars, and the
live market continues both: its first trade and aggTrade ids follow the past's last ones and its
opening price is the past's last price. Live bars are kept per second, minute, hour and day
(bounded; older fine bars are rebuilt from their parents), and every interval and ticker is
summed from them.

The market is sans-I/O: it has no timers of its own. The server calls :meth:`Market.step` to apply
one random order-flow event and :meth:`Market.tick` with the clock to emit the timer-driven
streams; both return ``(stream, payload)`` pairs of pre-encoded JSON for the streams in
:attr:`Market.active`. Randomness comes from one seeded ``random.Random``: same seed, same market.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

from fastmd.sim.venues import VENUE_STREAMS, Kind, SimStream, Venue

__all__ = ["Market", "SymbolSpec"]

Emission = tuple[str, bytes]

_MINUTE: Final = 60_000
_INTERVAL_MS: Final = {
    "1s": 1_000, "1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE, "1h": 60 * _MINUTE, "2h": 120 * _MINUTE, "4h": 240 * _MINUTE,
    "6h": 360 * _MINUTE, "8h": 480 * _MINUTE, "12h": 720 * _MINUTE, "1d": 1440 * _MINUTE,
    "3d": 3 * 1440 * _MINUTE, "1w": 7 * 1440 * _MINUTE,
}  # fmt: skip
_TZ_OFFSET_MS: Final = 8 * 60 * _MINUTE
_MAX_BARS: Final = 1500
_MAX_TRADES: Final = 20_000
_BOOK_LEVELS: Final = 200  # levels kept per side
_WINDOW_MS: Final = {"1h": 60 * _MINUTE, "4h": 240 * _MINUTE, "1d": 1440 * _MINUTE}


@dataclass(frozen=True)
class SymbolSpec:
    """Price grid and starting point of one simulated symbol.

    Prices and quantities are integers of ``10**-price_decimals`` and ``10**-quantity_decimals``;
    the simulator formats them as Binance does (spot: 8 decimals, futures: the symbol's own).
    """

    symbol: str
    base_asset: str
    quote_asset: str
    start_price: int
    price_decimals: int = 2
    quantity_decimals: int = 5


_KNOWN_QUOTES: Final = ("USDT", "USDC", "FDUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
_START_PRICES: Final = {"BTC": 6_000_000, "ETH": 300_000, "BNB": 60_000, "SOL": 15_000}


def default_spec(symbol: str) -> SymbolSpec:
    """A plausible spec for any symbol name (``BTCUSDT`` starts near 60,000, others near 100)."""
    symbol = symbol.upper()
    quote = next((q for q in _KNOWN_QUOTES if symbol.endswith(q) and q != symbol), "USDT")
    base = symbol[: -len(quote)] if symbol.endswith(quote) else symbol
    return SymbolSpec(symbol, base, quote, _START_PRICES.get(base, 10_000))


def _fmt(units: int, decimals: int, width: int) -> str:
    """Format an integer amount of 10**-decimals with ``width`` decimals, exactly."""
    scale = 10**decimals
    whole, frac = divmod(units, scale)
    if width == 0:
        return str(whole)
    text = f"{frac:0{decimals}d}" if decimals else ""
    return f"{whole}.{(text + '0' * width)[:width]}"


@dataclass(slots=True)
class _Bar:
    open_time: int
    close_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    quote_volume: int = 0  # in price*qty units
    taker_buy_volume: int = 0
    taker_buy_quote_volume: int = 0
    first_trade_id: int = -1
    last_trade_id: int = -1
    count: int = 0
    buy_count: int = 0  # trades whose taker bought


_OPEN_TIME: Final = attrgetter("open_time")
_CLOSE_TIME: Final = attrgetter("close_time")


def _join(earlier: _Bar, later: _Bar) -> _Bar:
    """One bar holding the trades of two consecutive bars (``earlier``'s times)."""
    return _Bar(
        earlier.open_time, earlier.close_time, earlier.open, max(earlier.high, later.high),
        min(earlier.low, later.low), later.close, earlier.volume + later.volume,
        earlier.quote_volume + later.quote_volume,
        earlier.taker_buy_volume + later.taker_buy_volume,
        earlier.taker_buy_quote_volume + later.taker_buy_quote_volume,
        earlier.first_trade_id, later.last_trade_id, earlier.count + later.count,
        earlier.buy_count + later.buy_count,
    )  # fmt: skip


@dataclass(slots=True)
class _Trade:
    trade_id: int
    price: int
    quantity: int
    time: int
    is_buyer_maker: bool


@dataclass(slots=True)
class _AggTrade:
    agg_id: int
    price: int
    quantity: int
    first_id: int
    last_id: int
    time: int
    is_buyer_maker: bool


@dataclass
class _DiffWindow:
    """Book changes accumulated for one depth-diff speed since its last emission."""

    interval_ms: int
    first_update_id: int = 0
    last_emitted_u: int = 0
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    next_due: int = 0


# -- history -----------------------------------------------------------------------------------

_SECOND: Final = 1000
_HOUR: Final = 60 * _MINUTE
_DAY: Final = 24 * _HOUR
# The history's calendar levels: seconds, minutes, hours, days, 32-day blocks and the whole past.
_SECONDS, _MINUTES, _HOURS, _DAYS, _BLOCKS, _ROOT = range(6)
_LEVEL_MS: Final = (_SECOND, _MINUTE, _HOUR, _DAY, 32 * _DAY)
HISTORY_DAYS: Final = 1500
"""Whole days of synthetic past before the day the market starts in (the symbol's listing)."""
BACKLOG: Final = 1000
"""The fewest trades and aggTrades the tape holds from before the start: a full page of each."""
# Live bars kept per level: an hour of seconds, two days of minutes, 100 days of hours, ~11 years
# of days. Older seconds, minutes and hours are rebuilt from their parents when asked for.
_KEEP_BARS: Final = (3600, 2880, 2400, 4000)
_SPLIT_CACHE: Final = 256  # divided nodes kept per market (each up to 60 children)
_SUM_CACHE: Final = 2048  # summed nodes kept per symbol

# A bar of the past: open, high, low, close, volume, taker-buy volume, trades, taker-buy trades,
# quote volume, taker-buy quote volume (prices, quantities and notionals in integer units).
Node = tuple[int, int, int, int, int, int, int, int, int, int]
_O, _H, _L, _C, _V, _VT, _N, _NB, _Q, _QT = range(10)


def _node(o: int, h: int, low: int, c: int, volume: int, buy_volume: int, trades: int,
          buys: int) -> Node:  # fmt: skip
    """A node whose notionals use one price inside the bar (the mean of its four prices)."""
    price = (o + h + low + c) // 4
    return (o, h, low, c, volume, buy_volume, trades, buys, volume * price, buy_volume * price)


def _bar_node(bar: _Bar) -> Node:
    return (
        bar.open, bar.high, bar.low, bar.close, bar.volume, bar.taker_buy_volume, bar.count,
        bar.buy_count, bar.quote_volume, bar.taker_buy_quote_volume,
    )  # fmt: skip


def _merge(nodes: Iterable[Node]) -> Node | None:
    """The nodes of consecutive spans as one (``None`` when none holds a trade)."""
    acc: Node | None = None
    for n in nodes:
        if not n[_N]:
            continue
        if acc is None:
            acc = n
            continue
        acc = (
            acc[_O], max(acc[_H], n[_H]), min(acc[_L], n[_L]), n[_C], acc[_V] + n[_V],
            acc[_VT] + n[_VT], acc[_N] + n[_N], acc[_NB] + n[_NB], acc[_Q] + n[_Q],
            acc[_QT] + n[_QT],
        )  # fmt: skip
    return acc


def _allocate(total: int, weights: list[float]) -> list[int]:
    """``total`` divided in proportion to ``weights`` (largest remainders): the parts add up to
    ``total`` exactly, and a zero weight gets nothing."""
    parts = [0] * len(weights)
    if total <= 0:
        return parts
    positive = [i for i, w in enumerate(weights) if w > 0]
    if not positive:
        raise ValueError(f"cannot allocate {total} without a positive weight")
    weight = sum(weights[i] for i in positive)
    shares: dict[int, float] = {}
    for i in positive:
        shares[i] = total * weights[i] / weight
        parts[i] = min(int(shares[i]), total)
    rest = total - sum(parts)
    order = sorted(positive, key=lambda i: parts[i] - shares[i])  # largest remainder first
    while rest > 0:
        for i in order[:rest]:
            parts[i] += 1
        rest = total - sum(parts)
    while rest < 0:  # float rounding: never by more than a unit or two
        i = max(positive, key=parts.__getitem__)
        parts[i] += rest
        rest = total - sum(parts)
    return parts


def _allocate_capped(total: int, weights: list[float], caps: list[int]) -> list[int]:
    """Like :func:`_allocate`, with no part above its cap (``total <= sum(caps)``)."""
    parts = [min(p, cap) for p, cap in zip(_allocate(total, weights), caps, strict=True)]
    rest = total - sum(parts)
    for i, cap in enumerate(caps):
        if rest <= 0:
            break
        more = min(cap - parts[i], rest)
        parts[i] += more
        rest -= more
    return parts


def _split(parent: Node, seconds: list[int], rng: random.Random, *, dense: bool) -> list[Node]:
    """Divide ``parent`` into consecutive children lasting ``seconds`` each, which add up to it
    exactly: the first child opens at the parent's open, the last closes at its close, the
    children's highs and lows reach the parent's and never pass them, and volumes, taker
    volumes and trade counts sum to the parent's.

    The parent's trades are laid out in order: the first is the open, the last the close, and
    the high and the low (when they are neither) are trades in between, placed where a Brownian
    bridge from open to close runs highest and lowest. A child's open and close are its first and
    last trade; a wick needs a trade of its own, so a child of one trade is flat and a child of
    two has no wicks. Children made this way can be divided again by the same rules.

    ``dense`` (the synthetic past) gives every child at least one trade per second it lasts;
    otherwise (rebuilding live bars) only the first child is sure to trade, and a child without
    trades is flat at the previous close, as Binance reports an interval with no trades.
    """
    o, h, low, c, volume, buy_volume, n, buys = parent[:8]
    k = len(seconds)
    if n == 0:
        return [_node(c, c, c, c, 0, 0, 0, 0)] * k
    jitter = [max(s, 1) * rng.lognormvariate(0.0, 0.6) for s in seconds]
    if dense:
        counts = [s + e for s, e in zip(seconds, _allocate(n - sum(seconds), jitter), strict=True)]
    else:
        counts = _allocate(n - 1, jitter)
        counts[0] += 1
    buy_counts = _allocate_capped(buys, [cnt * (0.5 + rng.random()) for cnt in counts], counts)
    sell_counts = [cnt - b for cnt, b in zip(counts, buy_counts, strict=True)]
    volume_weights = [cnt * (0.6 + 0.8 * rng.random()) for cnt in counts]
    buy_extra = _allocate(
        buy_volume - buys,
        [w if b else 0.0 for w, b in zip(volume_weights, buy_counts, strict=True)],
    )
    sell_extra = _allocate(
        volume - buy_volume - (n - buys),
        [w if s else 0.0 for w, s in zip(volume_weights, sell_counts, strict=True)],
    )
    # Every trade is at least one unit: a child's volume covers its count on both sides.
    buy_volumes = [b + e for b, e in zip(buy_counts, buy_extra, strict=True)]
    sell_volumes = [s + e for s, e in zip(sell_counts, sell_extra, strict=True)]

    # The trade positions each active child holds, and a bridge from open to close through
    # the boundaries between them (variance in proportion to the trades in between).
    active = [i for i in range(k) if counts[i]]
    m = len(active)
    firsts, lasts = [], []
    position = 0
    for i in active:
        firsts.append(position)
        position += counts[i]
        lasts.append(position - 1)
    scale = (h - low) / (1.5 * math.sqrt(n))
    bridge = []
    walk = 0.0
    for i in active:
        walk += rng.gauss(0.0, 1.0) * math.sqrt(counts[i])
        bridge.append(walk)
    lines = [o + (c - o) * (lasts[j] + 1) / n for j in range(m - 1)]
    bridge = [bridge[j] - walk * (lasts[j] + 1) / n for j in range(m - 1)]
    for b, line in zip(bridge, lines, strict=True):
        if b > 0:
            scale = min(scale, (h - line) / b)
        elif b < 0:
            scale = min(scale, (low - line) / b)
    xs = [min(h, max(low, round(line + scale * b))) for b, line in zip(bridge, lines, strict=True)]
    ends = [o, *xs, c]  # a child's default open is ends[j], its default close ends[j + 1]

    def place(extreme: Callable[..., int], taken: int) -> int:
        """A trade position for the high (``max``) or the low (``min``): inside the child where
        the bridge runs highest or lowest, else anywhere between the first and last trade."""
        best = extreme(range(m), key=lambda j: extreme(ends[j], ends[j + 1]))
        lo, hi = max(firsts[best], 1), min(lasts[best], n - 2)
        if lo > hi or lo == hi == taken:
            lo, hi = 1, n - 2  # the parent has room for both: n >= 3 for one, 4 for two
        while True:
            p = rng.randint(lo, hi)
            if p != taken:
                return p

    high_at = place(max, -1) if h > max(o, c) else -1
    low_at = place(min, high_at) if low < min(o, c) else -1

    def price_at(p: int, default: int) -> int:
        if p == 0:
            return o
        if p == n - 1:
            return c
        if p == high_at:
            return h
        if p == low_at:
            return low
        return default

    out: list[Node] = []
    previous = o
    j = 0
    for i in range(k):
        cnt = counts[i]
        if not cnt:
            out.append(_node(previous, previous, previous, previous, 0, 0, 0, 0))
            continue
        first, last = firsts[j], lasts[j]
        opening = price_at(first, previous)
        closing = opening if cnt == 1 else price_at(last, ends[j + 1])
        top, bottom = max(opening, closing), min(opening, closing)
        inner_high, inner_low = first < high_at < last, first < low_at < last
        if inner_high:
            top = h
        if inner_low:
            bottom = low
        free = max(cnt - 2, 0) - inner_high - inner_low  # trades left for wicks
        if free > 0:
            sigma = scale * math.sqrt(cnt) * 0.5
            up = free > 1 or rng.random() < 0.5
            if up:
                top = min(h, top + int(rng.random() ** 2 * sigma))
            if free > 1 or not up:
                bottom = max(low, bottom - int(rng.random() ** 2 * sigma))
        out.append(_node(opening, top, bottom, closing, buy_volumes[i] + sell_volumes[i],
                         buy_volumes[i], cnt, buy_counts[i]))  # fmt: skip
        previous = closing
        j += 1
    return out


_Group = tuple[int, int, bool, list[int]]  # time, price, is_buyer_maker, quantities


def _second_trades(node: Node, start: int, end: int, rng: random.Random) -> list[_Group]:
    """The trades of one second of the past, grouped as aggTrades (runs of one to three trades
    of one taker at one price and time): exactly the second's open, high, low, close, volume,
    taker-buy volume, count and taker-buy count."""
    o, h, low, c, volume, buy_volume, n, buys = node[:8]
    makers = [False] * buys + [True] * (n - buys)  # is_buyer_maker: False when the taker bought
    rng.shuffle(makers)
    runs: list[tuple[bool, int]] = []
    i = 0
    while i < n:
        size, most = 1, rng.randint(1, 3)
        while size < most and i + size < n and makers[i + size] == makers[i]:
            size += 1
        runs.append((makers[i], size))
        i += size
    need_high, need_low = h > max(o, c), low < min(o, c)
    if len(runs) < 1 + (o != c or need_high or need_low) + need_high + need_low:
        runs = [(maker, 1) for maker in makers]  # the second's prices need more aggTrades
    g = len(runs)
    pins = rng.sample(range(1, g - 1), need_high + need_low) if g > 2 else []
    high_at = pins[0] if need_high else -1
    low_at = pins[-1] if need_low else -1
    prices = [o] * g
    for i in range(1, g - 1):
        step = rng.choice((-1, 0, 0, 1))
        prices[i] = (
            h if i == high_at else low if i == low_at else min(h, max(low, prices[i - 1] + step))
        )
    prices[-1] = c
    buy_quantities = iter(
        [1 + e for e in _allocate(buy_volume - buys, [rng.random() + 0.1 for _ in range(buys)])]
    )
    sell_quantities = iter(
        [1 + e for e in _allocate(volume - buy_volume - (n - buys),
                                  [rng.random() + 0.1 for _ in range(n - buys)])]
    )  # fmt: skip
    times = sorted(rng.randrange(start, end) for _ in range(g))
    return [
        (t, p, maker, [next(sell_quantities if maker else buy_quantities) for _ in range(size)])
        for t, p, (maker, size) in zip(times, prices, runs, strict=True)
    ]


class _LRU:
    """A bounded mapping that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)


class _History:
    """The synthetic past of one symbol, from its listing (:data:`HISTORY_DAYS` whole days before
    the start day) to the market's start ``t0``, generated on demand from ``key``.

    The past is a calendar tree: the whole past, 32-day blocks, days, hours, minutes, seconds.
    The root is drawn from the key; each node is divided into its children by :func:`_split`
    with a generator seeded by the node's identity, so a bar is the same whichever order bars
    are asked in, nothing but small caches is kept, and every interval agrees with every other
    (quote volumes within a level; across levels they are each bar's volume times a price inside
    it, so they agree to a fraction of a percent). Every second of the past holds a trade. The
    root closes at the symbol's starting price: the live market opens where the past ends.
    """

    def __init__(self, key: str, spec: SymbolSpec, t0: int, first_id: int, cache: _LRU) -> None:
        self.key = key
        self.t0 = t0
        self.start = t0 - t0 % _DAY - HISTORY_DAYS * _DAY
        self.first_id = first_id
        self.cache = cache
        self._sums: dict[tuple[int, int, int], Node] = {}
        rng = random.Random(f"fastmd-history:{key}")
        seconds = -(-(t0 - self.start) // _SECOND)
        n = int(seconds * rng.uniform(3.0, 8.0))
        buys = n // 2 + rng.randrange(-(n // 50), n // 50 + 1)
        unit = 10 ** max(spec.quantity_decimals - 1, 0)  # a trade of about 0.1 on average
        buy_volume = max(buys, int(buys * unit * rng.uniform(0.9, 1.1)))
        sell_volume = max(n - buys, int((n - buys) * unit * rng.uniform(0.9, 1.1)))
        close = max(spec.start_price, 1)
        opening = max(int(close * math.exp(rng.gauss(0.0, 0.4))), 1)
        high = max(int(max(opening, close) * rng.uniform(1.2, 1.8)), max(opening, close) + 2)
        low = max(int(min(opening, close) * rng.uniform(0.3, 0.8)), 1)
        self.root = _node(opening, high, low, close, buy_volume + sell_volume, buy_volume, n, buys)
        self.end_id = first_id + n
        """The id after the past's last trade: the live market's first."""

    def _span(self, level: int, start: int) -> tuple[int, int]:
        if level == _ROOT:
            return self.start, self.t0
        return max(start, self.start), min(start + _LEVEL_MS[level], self.t0)

    def children(self, level: int, start: int) -> list[tuple[int, Node]]:
        """The children of the node at ``level`` opening at ``start``: ``(open time, node)``."""
        key = (self.key, level, start)
        kids: list[tuple[int, Node]] | None = self.cache.get(key)
        if kids is None:
            a, b = self._span(level, start)
            size = _LEVEL_MS[level - 1]
            starts = range(a - a % size, b, size)
            seconds = [-(-(min(s + size, b) - max(s, a)) // _SECOND) for s in starts]
            rng = random.Random(f"fastmd-history:{self.key}:{level}:{start}")
            nodes = _split(self.node(level, start), seconds, rng, dense=True)
            kids = list(zip(starts, nodes, strict=True))
            self.cache.put(key, kids)
        return kids

    def node(self, level: int, start: int) -> Node:
        """The node of ``level`` opening at ``start`` (a bucket start inside the past)."""
        if level == _ROOT:
            return self.root
        up = level + 1
        kids = self.children(up, self.start if up == _ROOT else start - start % _LEVEL_MS[up])
        return kids[(start - kids[0][0]) // _LEVEL_MS[level]][1]

    def nodes_between(self, a: int, b: int, base: int) -> list[Node]:
        """Nodes covering ``[a, b)`` (whole seconds) exactly, in time order: the largest
        calendar units that fit, each summed from ``base`` nodes when bigger than ``base`` (so
        its quote volume is what the ``base`` bars add up to), smaller ones at the edges."""
        a, b = max(a, self.start), min(b, self.t0)
        out = []
        t = a
        while t < b:
            level = _SECONDS
            while level < _DAYS:
                size = _LEVEL_MS[level + 1]
                if t % size or t + size > b:
                    break
                level += 1
            out.append(self.node(level, t) if level <= base else self._sum(level, t, base))
            t += _LEVEL_MS[level]
        return out

    def _sum(self, level: int, start: int, base: int) -> Node:
        key = (level, start, base)
        node = self._sums.get(key)
        if node is None:
            kids = self.children(level, start)
            parts = [k if level - 1 == base else self._sum(level - 1, s, base) for s, k in kids]
            merged = _merge(parts)
            assert merged is not None  # every second of the past trades
            if len(self._sums) >= _SUM_CACHE:
                self._sums.clear()
            node = self._sums[key] = merged
        return node

    def first_id_at(self, t: int) -> int:
        """The id of the first trade at or after ``t`` (a whole second)."""
        if t <= self.start:
            return self.first_id
        if t >= self.t0:
            return self.end_id
        trade_id = self.first_id
        level, start = _ROOT, self.start
        while level > _SECONDS:
            size = _LEVEL_MS[level - 1]
            for child_start, child in self.children(level, start):
                if child_start + size > t:
                    break
                trade_id += child[_N]
            level -= 1
            start = t - t % size
            if start == t:
                break
        return trade_id

    def close_before(self, t: int) -> int:
        """The price of the past's last trade before ``t``."""
        if t <= self.start:
            return self.root[_O]
        t = min(t, self.t0) - 1
        return self.node(_SECONDS, t - t % _SECOND)[_C]

    def tape(self, end_agg_id: int) -> tuple[int, list[_Trade], list[_AggTrade]]:
        """The trades of the last whole minutes before the start (at least :data:`BACKLOG`
        trades and aggTrades), made from the seconds they fall in; aggTrade ids end at
        ``end_agg_id - 1``. Returns where the tape starts (a minute), trades and aggTrades."""
        minutes: list[list[_Group]] = []
        trades = aggs = 0
        minute = (self.t0 - 1) - (self.t0 - 1) % _MINUTE
        while minute >= self.start and (trades < BACKLOG or aggs < BACKLOG):
            rng = random.Random(f"fastmd-history:{self.key}:tape:{minute}")
            groups = []
            for second, node in self.children(_MINUTES, minute):
                groups += _second_trades(node, second, min(second + _SECOND, self.t0), rng)
            minutes.append(groups)
            trades += sum(len(g[3]) for g in groups)
            aggs += len(groups)
            minute -= _MINUTE
        start = minute + _MINUTE
        trade_id = self.first_id_at(start)
        agg_id = end_agg_id - aggs
        tape: list[_Trade] = []
        agg_tape: list[_AggTrade] = []
        for t, price, maker, quantities in itertools.chain.from_iterable(reversed(minutes)):
            first = trade_id
            for quantity in quantities:
                tape.append(_Trade(trade_id, price, quantity, t, maker))
                trade_id += 1
            agg_tape.append(_AggTrade(agg_id, price, sum(quantities), first, trade_id - 1, t,
                                      maker))  # fmt: skip
            agg_id += 1
        assert trade_id == self.end_id
        return start, tape, agg_tape


def _base_level(interval: str, offset: int) -> int:
    """The calendar level an interval's bars are summed from."""
    if interval == "1s":
        return _SECONDS
    size = _INTERVAL_MS.get(interval, _DAY)  # 1M: days
    if size < _HOUR:
        return _MINUTES
    if size < _DAY or offset:  # UTC+8 days start on an hour
        return _HOURS
    return _DAYS


def _add_to_levels(levels: list[list[_Bar]], trade: _Trade) -> bool:
    """Count ``trade`` into its second, minute, hour and day bars; returns whether it opened a
    bar (only then can a level have grown)."""
    t, price, quantity = trade.time, trade.price, trade.quantity
    opened = False
    for level, bars in enumerate(levels):
        size = _LEVEL_MS[level]
        if bars and bars[-1].open_time + size > t:  # same bucket (or the clock stepped back)
            bar = bars[-1]
        else:
            start = t - t % size
            bar = _Bar(start, start + size - 1, price, price, price, price,
                       first_trade_id=trade.trade_id)  # fmt: skip
            bars.append(bar)
            opened = True
        if price > bar.high:
            bar.high = price
        elif price < bar.low:
            bar.low = price
        bar.close = price
        bar.volume += quantity
        bar.quote_volume += price * quantity
        if not trade.is_buyer_maker:
            bar.taker_buy_volume += quantity
            bar.taker_buy_quote_volume += price * quantity
            bar.buy_count += 1
        bar.last_trade_id = trade.trade_id
        bar.count += 1
    return opened


class _Book:
    """One symbol's order book and trade tape."""

    def __init__(
        self,
        spec: SymbolSpec,
        venue: Venue,
        rng: random.Random,
        now: int,
        *,
        seed: int,
        clock_ms: Callable[[], int],
        cache: _LRU,
    ) -> None:
        self.spec = spec
        self.venue = venue
        self.rng = rng
        self.now_ms = clock_ms
        self.lower = spec.symbol.lower()
        self.width = 8 if venue == "binance-spot" else None
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_prices: list[int] = []  # ascending; best bid is the last
        self.ask_prices: list[int] = []  # ascending; best ask is the first
        self.update_id = 1_000_000 + rng.randrange(1_000_000)
        first_trade_id = 1 + rng.randrange(100_000)  # the listing's first trade
        first_agg_id = 1 + rng.randrange(100_000)
        self.history = _History(f"{seed}:{spec.symbol}:{now}", spec, now, first_trade_id, cache)
        # The live ids continue the past's: its trades are counted, its aggTrades (never served
        # before the tape) taken as 0.55 a trade.
        self.next_trade_id = self.history.end_id
        self.next_agg_id = self.first_live_agg_id = first_agg_id + self.history.root[_N] * 11 // 20
        self.tape_start: int | None = None
        """Where the tape of individual past trades starts (a minute); ``None`` until the past
        is first needed (:meth:`ensure_history`)."""
        self.trades: deque[_Trade] = deque(maxlen=_MAX_TRADES)
        self.agg_trades: deque[_AggTrade] = deque(maxlen=_MAX_TRADES)
        self.bars: list[list[_Bar]] = [[] for _ in _KEEP_BARS]
        """Bars of the traded (tape and live) trades per second, minute, hour and day."""
        self._let_go = [0] * len(_KEEP_BARS)  # per level: bars opening before this were dropped
        self._past: dict[tuple[int, int, int], tuple[Node | None, int]] = {}  # see _past_part
        self._closes: dict[int, int] = {}  # see price_before
        self.last_price = spec.start_price
        self.last_trade_quantity = 0
        self.prev_top: tuple[int, int, int, int] | None = None
        self.diffs: dict[str | None, _DiffWindow] = {}
        self.last_force_order = 0
        self._seed_book(now)

    # -- formatting ------------------------------------------------------------------------

    def price(self, units: int) -> str:
        d = self.spec.price_decimals
        return _fmt(units, d, self.width if self.width is not None else d)

    def qty(self, units: int) -> str:
        d = self.spec.quantity_decimals
        return _fmt(units, d, self.width if self.width is not None else d)

    def notional(self, price: int, quantity: int) -> str:
        d = self.spec.price_decimals + self.spec.quantity_decimals
        return _fmt(price * quantity, d, self.width if self.width is not None else 8)

    # -- book ------------------------------------------------------------------------------

    def _seed_book(self, now: int) -> None:
        mid = self.spec.start_price
        for i in range(1, _BOOK_LEVELS + 1):
            self._set("b", mid - i, self.random_qty())
            self._set("a", mid + i, self.random_qty())
        self.prev_top = self.top()

    def random_qty(self) -> int:
        """A random order size, in the symbol's integer quantity units."""
        scale: int = 10 ** max(self.spec.quantity_decimals - 3, 0)
        return self.rng.randrange(1, 200) * scale

    def _set(self, side: str, price: int, quantity: int) -> None:
        levels, prices = (
            (self.bids, self.bid_prices) if side == "b" else (self.asks, self.ask_prices)
        )
        if quantity <= 0:
            if levels.pop(price, None) is not None:
                del prices[bisect.bisect_left(prices, price)]
        else:
            if price not in levels:
                bisect.insort(prices, price)
            levels[price] = quantity
        for window in self.diffs.values():
            (window.bids if side == "b" else window.asks)[price] = max(quantity, 0)

    def _bump(self) -> None:
        """Every book change takes the next update id."""
        self.update_id += 1
        for window in self.diffs.values():
            if not window.first_update_id:
                window.first_update_id = self.update_id

    def best_bid(self) -> int:
        return self.bid_prices[-1]

    def best_ask(self) -> int:
        return self.ask_prices[0]

    def top(self) -> tuple[int, int, int, int]:
        bid, ask = self.best_bid(), self.best_ask()
        return bid, self.bids[bid], ask, self.asks[ask]

    def levels(self, side: str, n: int) -> list[tuple[int, int]]:
        if side == "b":
            return [(p, self.bids[p]) for p in reversed(self.bid_prices[-n:])]
        return [(p, self.asks[p]) for p in self.ask_prices[:n]]

    def levels_json(self, side: str, n: int) -> str:
        return ",".join(f'["{self.price(p)}","{self.qty(q)}"]' for p, q in self.levels(side, n))

    def _replenish(self) -> None:
        # Keep both sides deep: a taker order must always find liquidity.
        while len(self.bid_prices) < _BOOK_LEVELS // 2:
            self._set("b", self.bid_prices[0] - 1 if self.bid_prices else self.best_ask() - 1,
                      self.random_qty())  # fmt: skip
        while len(self.ask_prices) < _BOOK_LEVELS // 2:
            self._set("a", self.ask_prices[-1] + 1 if self.ask_prices else self.best_bid() + 1,
                      self.random_qty())  # fmt: skip

    # -- order flow ------------------------------------------------------------------------

    def limit_order(self) -> None:
        side = "b" if self.rng.random() < 0.5 else "a"
        offset = self.rng.randrange(0, 20)
        spread = self.best_ask() - self.best_bid()
        if spread > 1 and self.rng.random() < 0.4:
            offset = -self.rng.randrange(0, min(spread - 1, 5))  # improve the quote
        if side == "b":
            price = min(self.best_bid() + 1 - offset, self.best_ask() - 1)
            current = self.bids.get(price, 0)
        else:
            price = max(self.best_ask() - 1 + offset, self.best_bid() + 1)
            current = self.asks.get(price, 0)
        self._bump()
        self._set(side, price, current + self.random_qty())

    def cancel(self) -> None:
        side = "b" if self.rng.random() < 0.5 else "a"
        prices = self.bid_prices if side == "b" else self.ask_prices
        window = prices[-30:] if side == "b" else prices[:30]
        price = self.rng.choice(window)
        levels = self.bids if side == "b" else self.asks
        remaining = levels[price] - self.random_qty()
        self._bump()
        self._set(side, price, remaining)
        self._replenish()

    def market_order(self, now: int) -> tuple[list[_Trade], list[_AggTrade]]:
        """A taker order sweeping the opposite side; one aggTrade per price level it fills."""
        buy = self.rng.random() < 0.5
        wanted = self.random_qty() * self.rng.randrange(1, 4)
        trades: list[_Trade] = []
        aggs: list[_AggTrade] = []
        self._bump()
        while wanted > 0:
            price = self.best_ask() if buy else self.best_bid()
            levels = self.asks if buy else self.bids
            filled = min(wanted, levels[price])
            wanted -= filled
            first = self.next_trade_id
            # The level is several maker orders: split the fill into 1-3 trades.
            parts = min(self.rng.randrange(1, 4), filled)
            chunk, extra = divmod(filled, parts)
            for i in range(parts):
                quantity = chunk + (extra if i == parts - 1 else 0)
                trade = _Trade(self.next_trade_id, price, quantity, now, not buy)
                self.next_trade_id += 1
                trades.append(trade)
                self.trades.append(trade)
                self._record(trade)
            agg = _AggTrade(self.next_agg_id, price, filled, first, self.next_trade_id - 1, now,
                            not buy)  # fmt: skip
            self.next_agg_id += 1
            aggs.append(agg)
            self.agg_trades.append(agg)
            self._set("a" if buy else "b", price, levels[price] - filled)
            self.last_price = price
            self.last_trade_quantity = trades[-1].quantity
            if (buy and not self.ask_prices) or (not buy and not self.bid_prices):
                self._replenish()
        self._replenish()
        return trades, aggs

    # -- aggregation -----------------------------------------------------------------------

    def _record(self, trade: _Trade) -> None:
        if not _add_to_levels(self.bars, trade):
            return  # no level grew: nothing to trim
        for level, bars in enumerate(self.bars):
            keep = _KEEP_BARS[level]
            if len(bars) > 2 * keep:  # trimmed in bulk: amortized O(1) a trade
                cut = len(bars) - keep
                self._let_go[level] = bars[cut - 1].open_time + _LEVEL_MS[level]
                del bars[:cut]

    def ensure_history(self) -> None:
        """Put the tape of past trades before the live ones (once, when first needed)."""
        if self.tape_start is not None:
            return
        start, trades, aggs = self.history.tape(self.first_live_agg_id)
        self.tape_start = start
        room = _MAX_TRADES - len(self.trades)  # live trades first: the past yields room
        if room > 0:
            self.trades.extendleft(reversed(trades[-room:]))
        room = _MAX_TRADES - len(self.agg_trades)
        if room > 0:
            self.agg_trades.extendleft(reversed(aggs[-room:]))
        past_levels: list[list[_Bar]] = [[] for _ in _KEEP_BARS]
        for trade in trades:
            _add_to_levels(past_levels, trade)
        for level, (past_bars, live_bars) in enumerate(zip(past_levels, self.bars, strict=True)):
            if past_bars and live_bars and past_bars[-1].open_time == live_bars[0].open_time:
                live_bars[0] = _join(past_bars.pop(), live_bars[0])
            # Live bars let go before the past was first needed are rebuilt from their parents,
            # and so are the past's bars as old as them.
            past_bars = [bar for bar in past_bars if bar.open_time >= self._let_go[level]]
            self.bars[level] = past_bars + live_bars
        if self.next_trade_id == self.history.end_id:  # nothing traded live yet
            self.last_trade_quantity = trades[-1].quantity

    def _stored(self, level: int, a: int, b: int) -> list[_Bar]:
        """The traded bars of ``level`` opening in ``[a, b)``, rebuilt from their parents where
        they were let go (bars without trades are absent)."""
        out: list[_Bar] = []
        let_go = self._let_go[level]
        if a < let_go and level < _DAYS:
            up = _LEVEL_MS[level + 1]
            until = min(b, let_go)
            for parent in self._stored(level + 1, a - a % up, until):
                out += [
                    kid for kid in self._rebuilt(level + 1, parent) if a <= kid.open_time < until
                ]
        bars = self.bars[level]
        lo = bisect.bisect_left(bars, max(a, let_go), key=_OPEN_TIME)
        hi = bisect.bisect_left(bars, b, key=_OPEN_TIME)
        out += bars[lo:hi]
        return out

    def _rebuilt(self, level: int, parent: _Bar) -> list[_Bar]:
        """The traded children of a let-go live bar, drawn to add up to it (:func:`_split`)."""
        key = (self.history.key, "live", level, parent.open_time)
        kids: list[_Bar] | None = self.history.cache.get(key)
        if kids is None:
            assert self.tape_start is not None
            size = _LEVEL_MS[level - 1]
            a, b = max(parent.open_time, self.tape_start), parent.close_time + 1
            starts = range(a - a % size, b, size)
            rng = random.Random(f"fastmd-live:{key}")
            nodes = _split(_bar_node(parent), [size // _SECOND] * len(starts), rng, dense=False)
            kids = []
            trade_id = parent.first_trade_id
            for start, n in zip(starts, nodes, strict=True):
                if n[_N]:
                    kids.append(self._bar(start, start + size - 1, n, trade_id))
                    trade_id += n[_N]
            self.history.cache.put(key, kids)
        return kids

    @staticmethod
    def _bar(open_time: int, close_time: int, n: Node, first_id: int) -> _Bar:
        return _Bar(
            open_time, close_time, n[_O], n[_H], n[_L], n[_C], n[_V], n[_Q], n[_VT], n[_QT],
            first_id, first_id + n[_N] - 1, n[_N], n[_NB],
        )  # fmt: skip

    def _past_part(self, a: int, b: int, base: int) -> tuple[Node | None, int]:
        """The past's trades in ``[a, b)`` before the tape, summed from ``base`` nodes, and the
        id of the first. Timers ask for the same span every push (a window opens on a minute, a
        candle stays open): the last few answers are kept per symbol."""
        assert self.tape_start is not None
        history = self.history
        lo, hi = max(a, history.start), min(b, self.tape_start)
        if lo >= hi:
            return None, -1
        key = (lo, hi, base)
        part = self._past.get(key)
        if part is None:
            node = _merge(history.nodes_between(lo, hi, base))
            part = (node, history.first_id_at(lo) if node is not None else -1)
            if len(self._past) >= 16:
                self._past.clear()
            self._past[key] = part
        return part

    def _range_bar(self, a: int, b: int, base: int) -> _Bar | None:
        """Every trade in ``[a, b)`` (bounds on ``base`` units) as one bar, ``None`` if none: the
        past summed from ``base`` nodes up to the tape, then the traded ``base`` bars."""
        acc: _Bar | None = None
        node, first_id = self._past_part(a, b, base)
        if node is not None:
            acc = self._bar(a, b - 1, node, first_id)
        for bar in self._stored(base, a, b):
            acc = _join(acc, bar) if acc is not None else dataclasses.replace(bar)
        return acc

    def bar(self, interval: str, start: int, offset: int = 0) -> _Bar | None:
        """The ``interval`` bar opening at ``start`` (``offset``: UTC+8), ``None`` if no trade."""
        self.ensure_history()
        end = bucket_end(start, interval, offset)
        bar = self._range_bar(start, end + 1, _base_level(interval, offset))
        if bar is not None:
            bar.open_time, bar.close_time = start, end
        return bar

    def price_before(self, t: int) -> int:
        """The price of the last trade before ``t``."""
        assert self.tape_start is not None
        if t > self.tape_start:
            latest: _Bar | None = None
            for bars in self.bars:
                i = bisect.bisect_left(bars, t, key=_CLOSE_TIME)  # bars[i - 1] ends before t
                if i and (latest is None or bars[i - 1].close_time > latest.close_time):
                    latest = bars[i - 1]
            if latest is not None:
                return latest.close
        t = min(t, self.tape_start)
        price = self._closes.get(t)
        if price is None:  # windows ask for the same minute every push: keep a few answers
            if len(self._closes) >= 16:
                self._closes.clear()
            price = self._closes[t] = self.history.close_before(t)
        return price

    def kline_page(
        self,
        interval: str,
        *,
        limit: int,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> list[_Bar]:
        """Klines as Binance selects them (binance-protocol.md §7): the newest ``limit`` bars;
        with ``start_time`` the oldest opening at or after it; with ``end_time`` none opening
        after it. Bars run from the listing to the current one; one without trades is flat at
        the previous close."""
        self.ensure_history()
        now = self.now_ms()
        first = bucket_start(self.history.start, interval)
        last = bucket_start(now, interval)
        if start_time is not None:
            if start_time > now:
                return []
            opening = bucket_start(start_time, interval)
            first = max(
                first, opening if opening == start_time else _next_bucket(opening, interval)
            )
        if end_time is not None:
            last = min(last, bucket_start(min(end_time, now), interval))
        opens: list[int] = []
        if start_time is not None:
            t = first
            while t <= last and len(opens) < limit:
                opens.append(t)
                t = _next_bucket(t, interval)
        else:
            t = last
            while t >= first and len(opens) < limit:
                opens.append(t)
                t = bucket_start(t - 1, interval)
            opens.reverse()
        bars: list[_Bar] = []
        for open_time in opens:
            bar = self.bar(interval, open_time)
            if bar is None:
                price = bars[-1].close if bars else self.price_before(open_time)
                bar = _Bar(open_time, bucket_end(open_time, interval), price, price, price, price)
            bars.append(bar)
        return bars

    def ensure_bars(self, interval: str) -> list[_Bar]:
        """The newest bars of ``interval`` (a full page of 1500), oldest first; for inspection."""
        return self.kline_page(interval, limit=_MAX_BARS)

    def window_stats(self, now: int, window_ms: int) -> dict[str, Any]:
        """Rolling-window statistics, summed from the 1-minute bars (as the 1m klines are): the
        window opens on the minute boundary at or before ``now - window_ms`` (as Binance's
        window tickers do)."""
        self.ensure_history()
        since = now - window_ms
        since -= since % _MINUTE
        total = self._range_bar(since, now + 1, _MINUTES)
        prev_close = self.price_before(since)
        if total is None:
            price = self.last_price
            return {
                "open": price, "high": price, "low": price, "close": price, "volume": 0,
                "quote": 0, "first": -1, "last": -1, "count": 0, "open_time": since,
                "prev_close": prev_close, "last_qty": 0,
            }  # fmt: skip
        return {
            "open": total.open, "high": total.high, "low": total.low, "close": total.close,
            "volume": total.volume, "quote": total.quote_volume, "first": total.first_trade_id,
            "last": total.last_trade_id, "count": total.count, "open_time": since,
            "prev_close": prev_close,
            "last_qty": self.last_trade_quantity,
        }  # fmt: skip


def _next_bucket(start: int, interval: str) -> int:
    return bucket_end(start, interval) + 1


def bucket_start(time_ms: int, interval: str, offset: int = 0) -> int:
    """The open time of the ``interval`` bucket holding ``time_ms`` (UTC, or UTC+8 with offset)."""
    if interval == "1M":
        import datetime as dt

        moment = dt.datetime.fromtimestamp((time_ms + offset) / 1000, dt.UTC)
        start = dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC)
        return int(start.timestamp() * 1000) - offset
    size = _INTERVAL_MS[interval]
    if interval == "1w":  # weeks start on Monday; the epoch was a Thursday
        shifted = time_ms + offset + 3 * 1440 * _MINUTE
        return shifted - shifted % size - 3 * 1440 * _MINUTE - offset
    return time_ms + offset - (time_ms + offset) % size - offset


def bucket_end(start: int, interval: str, offset: int = 0) -> int:
    """The close time (inclusive) of the bucket opening at ``start``."""
    if interval == "1M":
        import datetime as dt

        moment = dt.datetime.fromtimestamp((start + offset) / 1000, dt.UTC)
        year, month = (
            (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        )
        nxt = int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp() * 1000) - offset
        return nxt - 1
    return start + _INTERVAL_MS[interval] - 1


class Market:
    """The synthetic market of a simulated exchange.

    Args:
        venue: ``"binance-spot"`` or ``"binance-usdm"``: decides shapes, streams and cadences.
        symbols: the listed symbols (any case); unknown symbols get a plausible default spec.
        seed: the random seed; the same seed replays the same market.
        clock: wall-clock time in seconds (``time.time``); event times are its milliseconds.
        specs: optional explicit :class:`SymbolSpec` per symbol.
    """

    def __init__(
        self,
        venue: Venue,
        symbols: Iterable[str],
        *,
        seed: int = 0,
        clock: Callable[[], float],
        specs: Iterable[SymbolSpec] = (),
    ) -> None:
        self.venue: Venue = venue
        self.streams = VENUE_STREAMS[venue]
        """The venue's stream table (names, parameters, cadences): :mod:`fastmd.sim.venues`."""
        self.clock = clock
        self.rng = random.Random(seed)
        explicit = {spec.symbol.upper(): spec for spec in specs}
        names = [s.upper() for s in symbols] or list(explicit)
        now = self.now_ms()
        cache = _LRU(_SPLIT_CACHE)  # the past's divided nodes, shared by every symbol
        self.books: dict[str, _Book] = {
            name: _Book(
                explicit.get(name) or default_spec(name),
                venue,
                self.rng,
                now,
                seed=seed,
                clock_ms=self.now_ms,
                cache=cache,
            )
            for name in names
        }
        self._order = list(self.books.values())
        self.active: set[str] = set()
        """The streams someone is subscribed to; only these are encoded and emitted."""
        self._active_sorted: list[str] = []
        self._kline_open: dict[str, int] = {}
        self._parsed: dict[str, SimStream] = {}
        self._due: dict[str, int] = {}
        self._changed_minis: set[str] = set()
        self._changed_window: dict[str, set[str]] = {"1h": set(), "4h": set(), "1d": set()}
        self.started_ms = now

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def symbols(self) -> list[str]:
        return list(self.books)

    def book(self, symbol: str) -> _Book | None:
        return self.books.get(symbol.upper())

    # -- subscriptions ---------------------------------------------------------------------

    def set_active(self, streams: Iterable[str]) -> None:
        """Tell the market which streams have subscribers (names already validated)."""
        self.active = set(streams)
        self._active_sorted = sorted(self.active)
        for name in self.active:
            if name not in self._parsed:
                parsed = self.streams.parse(name)
                if parsed is None:
                    raise ValueError(f"{name!r} is not a stream of {self.venue}")
                self._parsed[name] = parsed
        for name, stream in self._parsed.items():
            if name not in self.active:
                continue
            book = self.book(stream.symbol or "")
            if stream.kind is not Kind.DEPTH or book is None or stream.speed in book.diffs:
                continue
            assert stream.cadence_ms is not None  # every depth stream has its cadence
            book.diffs[stream.speed] = _DiffWindow(stream.cadence_ms, last_emitted_u=book.update_id)

    # -- order flow ------------------------------------------------------------------------

    def step(self) -> list[Emission]:
        """Apply one random order-flow event to a random symbol; return the real-time emissions
        (trade, aggTrade, bookTicker, blockTrade, forceOrder) for active streams."""
        book = self.rng.choice(self._order)
        now = self.now_ms()
        roll = self.rng.random()
        out: list[Emission] = []
        if roll < 0.55:
            book.limit_order()
        elif roll < 0.8:
            book.cancel()
        else:
            trades, aggs = book.market_order(now)
            self._emit_trades(book, trades, aggs, now, out)
        self._emit_book_ticker(book, now, out)
        self._changed_minis.add(book.spec.symbol)
        for changed in self._changed_window.values():
            changed.add(book.spec.symbol)
        return out

    def _emit_trades(
        self, book: _Book, trades: list[_Trade], aggs: list[_AggTrade], now: int,
        out: list[Emission],
    ) -> None:  # fmt: skip
        sym, lower = book.spec.symbol, book.lower
        spot = self.venue == "binance-spot"
        name = f"{lower}@trade"
        if spot and name in self.active:
            for t in trades:
                out.append((name, (
                    f'{{"e":"trade","E":{now},"s":"{sym}","t":{t.trade_id},'
                    f'"p":"{book.price(t.price)}","q":"{book.qty(t.quantity)}","T":{t.time},'
                    f'"m":{"true" if t.is_buyer_maker else "false"},"M":true}}'
                ).encode()))  # fmt: skip
        name = f"{lower}@aggTrade"
        if name in self.active:
            for a in aggs:
                tail = '"M":true}' if spot else f'"nq":"{book.qty(a.quantity)}"}}'
                out.append((name, (
                    f'{{"e":"aggTrade","E":{now},"s":"{sym}","a":{a.agg_id},'
                    f'"p":"{book.price(a.price)}","q":"{book.qty(a.quantity)}","f":{a.first_id},'
                    f'"l":{a.last_id},"T":{a.time},'
                    f'"m":{"true" if a.is_buyer_maker else "false"},{tail}'
                ).encode()))  # fmt: skip
        name = f"{lower}@blockTrade"
        if spot and name in self.active and trades and self.rng.random() < 0.05:
            t = trades[0]
            out.append((name, (
                f'{{"e":"blockTrade","E":{now},"s":"{sym}","t":{t.trade_id},'
                f'"p":"{book.price(t.price)}","q":"{book.qty(t.quantity)}","T":{t.time},'
                f'"m":{"true" if t.is_buyer_maker else "false"}}}'
            ).encode()))  # fmt: skip
        if not spot and aggs and now - book.last_force_order >= 1000 and self.rng.random() < 0.1:
            book.last_force_order = now
            a = aggs[-1]
            payload = (
                f'{{"e":"forceOrder","E":{now},"o":{{"s":"{sym}",'
                f'"S":"{"SELL" if a.is_buyer_maker else "BUY"}","o":"LIMIT","f":"IOC",'
                f'"q":"{book.qty(a.quantity)}","p":"{book.price(a.price)}",'
                f'"ap":"{book.price(a.price)}","X":"FILLED","l":"{book.qty(a.quantity)}",'
                f'"z":"{book.qty(a.quantity)}","T":{now}}}}}'
            ).encode()
            for name in (f"{lower}@forceOrder", "!forceOrder@arr"):
                if name in self.active:
                    out.append((name, payload))

    def _emit_book_ticker(self, book: _Book, now: int, out: list[Emission]) -> None:
        top = book.top()
        if top == book.prev_top:
            return
        book.prev_top = top
        name = f"{book.lower}@bookTicker"
        if name not in self.active and "!bookTicker" not in self.active:
            return
        bid, bid_qty, ask, ask_qty = top
        head = "" if self.venue == "binance-spot" else '"e":"bookTicker",'
        tail = "" if self.venue == "binance-spot" else f',"E":{now},"T":{now}'
        payload = (
            f'{{{head}"u":{book.update_id},"s":"{book.spec.symbol}","b":"{book.price(bid)}",'
            f'"B":"{book.qty(bid_qty)}","a":"{book.price(ask)}","A":"{book.qty(ask_qty)}"{tail}}}'
        ).encode()
        if name in self.active:
            out.append((name, payload))
        if "!bookTicker" in self.active:
            out.append(("!bookTicker", payload))

    # -- timers ----------------------------------------------------------------------------

    def tick(self) -> list[Emission]:
        """Emit every timer-driven stream that is due at the clock's current time."""
        now = self.now_ms()
        out: list[Emission] = []
        for book in self._order:
            for speed, window in book.diffs.items():
                if now >= window.next_due:
                    window.next_due = now - now % window.interval_ms + window.interval_ms
                    self._emit_diff(book, speed, window, now, out)
        for name in self._active_sorted:
            stream = self._parsed[name]
            if stream.kind is Kind.DEPTH:
                continue
            cadence = stream.cadence_ms
            if cadence is None:
                continue
            due = self._due.get(name, 0)
            if now < due:
                continue
            self._due[name] = now - now % cadence + cadence
            if stream.kind is Kind.KLINE:
                out.extend((name, payload) for payload in self._kline_payloads(name, stream, now))
                continue
            payload = self._timed_payload(stream, now)
            if payload is not None:
                out.append((name, payload))
        return out

    def _emit_diff(
        self, book: _Book, speed: str | None, window: _DiffWindow, now: int, out: list[Emission]
    ) -> None:
        if not window.first_update_id:
            return
        name = f"{book.lower}@depth" + (f"@{speed}" if speed else "")
        first, last = window.first_update_id, book.update_id
        bids = ",".join(
            f'["{book.price(p)}","{book.qty(q)}"]'
            for p, q in sorted(window.bids.items(), reverse=True)
        )
        asks = ",".join(
            f'["{book.price(p)}","{book.qty(q)}"]' for p, q in sorted(window.asks.items())
        )
        prev = window.last_emitted_u
        window.first_update_id = 0
        window.last_emitted_u = last
        window.bids.clear()
        window.asks.clear()
        if name not in self.active:
            return
        if self.venue == "binance-spot":
            head = f'{{"e":"depthUpdate","E":{now},"s":"{book.spec.symbol}","U":{first},"u":{last},'
        else:
            head = (
                f'{{"e":"depthUpdate","E":{now},"T":{now},"s":"{book.spec.symbol}","U":{first},'
                f'"u":{last},"pu":{prev},'
            )
        out.append((name, f'{head}"b":[{bids}],"a":[{asks}]}}'.encode()))

    def _timed_payload(self, stream: SimStream, now: int) -> bytes | None:
        kind = stream.kind
        if stream.symbol is None:
            return self._all_market_payload(stream, now)
        book = self.book(stream.symbol)
        if book is None:
            return None  # unknown but well-formed symbols are acknowledged and stay silent
        sym = book.spec.symbol
        if kind is Kind.PARTIAL_DEPTH:
            n = stream.levels or 5
            if self.venue == "binance-spot":
                return (
                    f'{{"lastUpdateId":{book.update_id},"bids":[{book.levels_json("b", n)}],'
                    f'"asks":[{book.levels_json("a", n)}]}}'
                ).encode()
            return (
                f'{{"e":"depthUpdate","E":{now},"T":{now},"s":"{sym}","U":{book.update_id},'
                f'"u":{book.update_id},"pu":{book.update_id - 1},'
                f'"b":[{book.levels_json("b", n)}],"a":[{book.levels_json("a", n)}]}}'
            ).encode()
        if kind is Kind.MINI_TICKER:
            return self._mini_ticker(book, now).encode()
        if kind is Kind.TICKER:
            return self._ticker(book, now).encode()
        if kind is Kind.WINDOW_TICKER:
            assert stream.window is not None
            return self._window_ticker(book, stream.window, now).encode()
        if kind is Kind.AVG_PRICE:
            return (
                f'{{"e":"avgPrice","E":{now},"s":"{sym}","i":"5m",'
                f'"w":"{self.avg_price(book, now)}","T":{self._last_trade_time(book, now)}}}'
            ).encode()
        if kind is Kind.REFERENCE_PRICE:
            return (
                f'{{"e":"referencePrice","s":"{sym}","r":"{self._mid(book)}","t":{now}}}'.encode()
            )
        if kind is Kind.MARK_PRICE:
            return self._mark_price(book, now).encode()
        return None

    def _all_market_payload(self, stream: SimStream, now: int) -> bytes | None:
        kind = stream.kind
        if kind is Kind.ALL_MINI_TICKERS:
            changed = [b for b in self._order if b.spec.symbol in self._changed_minis]
            self._changed_minis.clear()
            items = [self._mini_ticker(b, now) for b in changed]
        elif kind is Kind.ALL_WINDOW_TICKERS:
            assert stream.window is not None
            marks = self._changed_window[stream.window]
            changed = [b for b in self._order if b.spec.symbol in marks]
            marks.clear()
            items = [self._window_ticker(b, stream.window, now) for b in changed]
        elif kind is Kind.ALL_TICKERS:
            items = [self._ticker(b, now) for b in self._order]
        elif kind is Kind.ALL_MARK_PRICES:
            items = [self._mark_price(b, now) for b in self._order]
        else:
            return None
        if not items:
            return None
        return ("[" + ",".join(items) + "]").encode()

    # -- payload builders ------------------------------------------------------------------

    def _kline_payloads(self, name: str, stream: SimStream, now: int) -> list[bytes]:
        """The open candle's update; first the final (``x: true``) update of the candle that
        closed since the last push, as Binance sends it."""
        book = self.book(stream.symbol or "")
        if book is None or stream.interval is None:
            return []
        interval = stream.interval
        offset = _TZ_OFFSET_MS if stream.timezone else 0
        start = bucket_start(now, interval, offset)
        out = []
        previous = self._kline_open.get(name)
        if previous is not None and previous != start:
            closed = book.bar(interval, previous, offset)
            if closed is not None:
                out.append(self._kline_payload(book, interval, closed, True, now))
        self._kline_open[name] = start
        bar = book.bar(interval, start, offset)
        if bar is None:
            price = book.last_price
            bar = _Bar(start, bucket_end(start, interval, offset), price, price, price, price)
        out.append(self._kline_payload(book, interval, bar, False, now))
        return out

    def _kline_payload(
        self, book: _Book, interval: str, bar: _Bar, is_closed: bool, now: int
    ) -> bytes:
        closed = "true" if is_closed else "false"
        return (
            f'{{"e":"kline","E":{now},"s":"{book.spec.symbol}","k":{{"t":{bar.open_time},'
            f'"T":{bar.close_time},"s":"{book.spec.symbol}","i":"{interval}",'
            f'"f":{bar.first_trade_id},"L":{bar.last_trade_id},"o":"{book.price(bar.open)}",'
            f'"c":"{book.price(bar.close)}","h":"{book.price(bar.high)}",'
            f'"l":"{book.price(bar.low)}","v":"{book.qty(bar.volume)}","n":{bar.count},'
            f'"x":{closed},"q":"{book.notional(1, bar.quote_volume)}",'
            f'"V":"{book.qty(bar.taker_buy_volume)}",'
            f'"Q":"{book.notional(1, bar.taker_buy_quote_volume)}","B":"0"}}}}'
        ).encode()

    def _mini_ticker(self, book: _Book, now: int) -> str:
        s = book.window_stats(now, 1440 * _MINUTE)
        p = book.price
        return (
            f'{{"e":"24hrMiniTicker","E":{now},"s":"{book.spec.symbol}","c":"{p(s["close"])}",'
            f'"o":"{p(s["open"])}","h":"{p(s["high"])}","l":"{p(s["low"])}",'
            f'"v":"{book.qty(s["volume"])}","q":"{book.notional(1, s["quote"])}"}}'
        )

    def _change_fields(self, book: _Book, s: dict[str, Any]) -> str:
        change = s["close"] - s["open"]
        sign = "-" if change < 0 else ""
        percent = abs(change) * 100_000 // s["open"] if s["open"] else 0
        weighted = s["quote"] // s["volume"] if s["volume"] else s["close"]
        return (
            f'"p":"{sign}{book.price(abs(change))}","P":"{sign}{_fmt(percent, 3, 3)}",'
            f'"w":"{book.price(weighted)}"'
        )

    def _ticker(self, book: _Book, now: int) -> str:
        s = book.window_stats(now, 1440 * _MINUTE)
        p, q = book.price, book.qty
        extra = ""
        if self.venue == "binance-spot":
            bid, bid_qty, ask, ask_qty = book.top()
            extra = (
                f'"x":"{p(s["prev_close"])}","b":"{p(bid)}","B":"{q(bid_qty)}",'
                f'"a":"{p(ask)}","A":"{q(ask_qty)}",'
            )
        return (
            f'{{"e":"24hrTicker","E":{now},"s":"{book.spec.symbol}",{self._change_fields(book, s)},'
            f'{extra}"c":"{p(s["close"])}","Q":"{q(s["last_qty"])}","o":"{p(s["open"])}",'
            f'"h":"{p(s["high"])}","l":"{p(s["low"])}","v":"{q(s["volume"])}",'
            f'"q":"{book.notional(1, s["quote"])}","O":{s["open_time"]},"C":{now},'
            f'"F":{s["first"]},"L":{s["last"]},"n":{s["count"]}}}'
        )

    def _window_ticker(self, book: _Book, window: str, now: int) -> str:
        s = book.window_stats(now, _WINDOW_MS[window])
        p = book.price
        open_time = s["open_time"] - s["open_time"] % _MINUTE
        return (
            f'{{"e":"{window}Ticker","E":{now},"s":"{book.spec.symbol}",'
            f'{self._change_fields(book, s)},"o":"{p(s["open"])}","h":"{p(s["high"])}",'
            f'"l":"{p(s["low"])}","c":"{p(s["close"])}","v":"{book.qty(s["volume"])}",'
            f'"q":"{book.notional(1, s["quote"])}","O":{open_time},"C":{now},"F":{s["first"]},'
            f'"L":{s["last"]},"n":{s["count"]}}}'
        )

    def _mark_price(self, book: _Book, now: int) -> str:
        mid = self._mid(book)
        next_funding = now - now % (480 * _MINUTE) + 480 * _MINUTE
        return (
            f'{{"e":"markPriceUpdate","E":{now},"s":"{book.spec.symbol}","p":"{mid}",'
            f'"i":"{book.price(book.last_price)}","P":"{mid}","r":"0.00010000",'
            f'"T":{next_funding}}}'
        )

    def _mid(self, book: _Book) -> str:
        return book.price((book.best_bid() + book.best_ask()) // 2)

    def avg_price(self, book: _Book, now: int) -> str:
        s = book.window_stats(now, 5 * _MINUTE)
        return book.price(s["quote"] // s["volume"] if s["volume"] else book.last_price)

    def _last_trade_time(self, book: _Book, now: int) -> int:
        book.ensure_history()
        return book.trades[-1].time if book.trades else now

    # -- REST views ------------------------------------------------------------------------

    def depth(self, book: _Book, limit: int) -> bytes:
        """``GET depth``: the book's top ``limit`` levels at its current update id."""
        head = f'{{"lastUpdateId":{book.update_id},'
        if self.venue == "binance-usdm":
            now = self.now_ms()
            head += f'"E":{now},"T":{now},'
        return (
            f'{head}"bids":[{book.levels_json("b", limit)}],'
            f'"asks":[{book.levels_json("a", limit)}]}}'
        ).encode()

    def recent_trades(self, book: _Book, limit: int) -> bytes:
        """``GET trades``: the newest ``limit`` trades, oldest first."""
        return self.historical_trades(book, limit=limit)

    def historical_trades(self, book: _Book, *, limit: int, from_id: int | None = None) -> bytes:
        """``GET historicalTrades``: ``limit`` trades from ``from_id`` on (the newest without
        it). The tape reaches :data:`BACKLOG` trades or more before the start; ids older than
        the oldest trade it holds are not served (a page asked from there starts at it)."""
        book.ensure_history()
        tape = book.trades
        if from_id is None:
            return self._trades_json(book, list(tape)[-limit:])
        first = bisect.bisect_left(tape, from_id, key=attrgetter("trade_id"))
        return self._trades_json(book, list(itertools.islice(tape, first, first + limit)))

    @staticmethod
    def _trades_json(book: _Book, items: list[_Trade]) -> bytes:
        return ("[" + ",".join(
            f'{{"id":{t.trade_id},"price":"{book.price(t.price)}","qty":"{book.qty(t.quantity)}",'
            f'"quoteQty":"{book.notional(t.price, t.quantity)}","time":{t.time},'
            f'"isBuyerMaker":{"true" if t.is_buyer_maker else "false"},"isBestMatch":true}}'
            for t in items
        ) + "]").encode()  # fmt: skip

    def agg_trades(
        self,
        book: _Book,
        *,
        limit: int,
        from_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> bytes:
        """``GET aggTrades`` with Binance's selection rules (fromId, or a time range, or newest),
        from the tape (the past's last minutes, then everything live)."""
        book.ensure_history()
        items = list(book.agg_trades)
        if from_id is not None:
            items = [a for a in items if a.agg_id >= from_id][:limit]
        elif start_time is not None or end_time is not None:
            items = [
                a for a in items
                if (start_time is None or a.time >= start_time)
                and (end_time is None or a.time <= end_time)
            ]  # fmt: skip
            items = items[:limit] if start_time is not None else items[-limit:]
        else:
            items = items[-limit:]
        tail = ',"M":true}' if self.venue == "binance-spot" else "}"
        return ("[" + ",".join(
            f'{{"a":{a.agg_id},"p":"{book.price(a.price)}","q":"{book.qty(a.quantity)}",'
            f'"f":{a.first_id},"l":{a.last_id},"T":{a.time},'
            f'"m":{"true" if a.is_buyer_maker else "false"}{tail}'
            for a in items
        ) + "]").encode()  # fmt: skip

    def klines(
        self,
        book: _Book,
        interval: str,
        *,
        limit: int,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> bytes:
        """``GET klines``: the past's bars, then the traded ones, oldest first
        (:meth:`_Book.kline_page`)."""
        bars = book.kline_page(interval, limit=limit, start_time=start_time, end_time=end_time)
        return ("[" + ",".join(
            f'[{b.open_time},"{book.price(b.open)}","{book.price(b.high)}","{book.price(b.low)}",'
            f'"{book.price(b.close)}","{book.qty(b.volume)}",{b.close_time},'
            f'"{book.notional(1, b.quote_volume)}",{b.count},"{book.qty(b.taker_buy_volume)}",'
            f'"{book.notional(1, b.taker_buy_quote_volume)}","0"]'
            for b in bars
        ) + "]").encode()  # fmt: skip

    def ticker_24h(self, book: _Book, *, mini: bool = False, window_ms: int | None = None) -> str:
        """One ``ticker/24hr`` object (FULL or MINI), or a rolling-window ``ticker`` object."""
        now = self.now_ms()
        s = book.window_stats(now, window_ms or 1440 * _MINUTE)
        p, q = book.price, book.qty
        body = (
            f'"openPrice":"{p(s["open"])}","highPrice":"{p(s["high"])}",'
            f'"lowPrice":"{p(s["low"])}","lastPrice":"{p(s["close"])}",'
            f'"volume":"{q(s["volume"])}","quoteVolume":"{book.notional(1, s["quote"])}",'
            f'"openTime":{s["open_time"]},"closeTime":{now},"firstId":{s["first"]},'
            f'"lastId":{s["last"]},"count":{s["count"]}'
        )
        if mini:
            return f'{{"symbol":"{book.spec.symbol}",{body}}}'
        change = s["close"] - s["open"]
        sign = "-" if change < 0 else ""
        percent = abs(change) * 100_000 // s["open"] if s["open"] else 0
        weighted = s["quote"] // s["volume"] if s["volume"] else s["close"]
        head = (
            f'"symbol":"{book.spec.symbol}","priceChange":"{sign}{p(abs(change))}",'
            f'"priceChangePercent":"{sign}{_fmt(percent, 3, 3)}",'
            f'"weightedAvgPrice":"{p(weighted)}",'
        )
        if window_ms is not None:
            return f"{{{head}{body}}}"
        if self.venue == "binance-usdm":  # futures has lastQty but no prev close or book fields
            return f'{{{head}"lastQty":"{q(s["last_qty"])}",{body}}}'
        bid, bid_qty, ask, ask_qty = book.top()
        return (
            f'{{{head}"prevClosePrice":"{p(s["prev_close"])}","lastQty":"{q(s["last_qty"])}",'
            f'"bidPrice":"{p(bid)}","bidQty":"{q(bid_qty)}","askPrice":"{p(ask)}",'
            f'"askQty":"{q(ask_qty)}",{body}}}'
        )

    def ticker_price(self, book: _Book) -> str:
        return f'{{"symbol":"{book.spec.symbol}","price":"{book.price(book.last_price)}"}}'

    def book_ticker(self, book: _Book) -> str:
        bid, bid_qty, ask, ask_qty = book.top()
        return (
            f'{{"symbol":"{book.spec.symbol}","bidPrice":"{book.price(bid)}",'
            f'"bidQty":"{book.qty(bid_qty)}","askPrice":"{book.price(ask)}",'
            f'"askQty":"{book.qty(ask_qty)}"}}'
        )

    def avg_price_body(self, book: _Book) -> bytes:
        now = self.now_ms()
        return (
            f'{{"mins":5,"price":"{self.avg_price(book, now)}",'
            f'"closeTime":{self._last_trade_time(book, now)}}}'
        ).encode()

    def premium_index(self, book: _Book) -> str:
        now = self.now_ms()
        mid = self._mid(book)
        next_funding = now - now % (480 * _MINUTE) + 480 * _MINUTE
        return (
            f'{{"symbol":"{book.spec.symbol}","markPrice":"{mid}",'
            f'"indexPrice":"{book.price(book.last_price)}","estimatedSettlePrice":"{mid}",'
            f'"lastFundingRate":"0.00010000","interestRate":"0.00010000",'
            f'"nextFundingTime":{next_funding},"time":{now}}}'
        )

    def exchange_info(self, symbols: Iterable[str] | None = None) -> bytes:
        wanted = [s.upper() for s in symbols] if symbols is not None else list(self.books)
        spot = self.venue == "binance-spot"
        items = []
        for name in wanted:
            book = self.books[name]
            spec = book.spec
            tick = book.price(1)
            step = book.qty(1)
            precision = (
                '"baseAssetPrecision":8,"quotePrecision":8,"quoteAssetPrecision":8,'
                if spot
                else f'"pricePrecision":{spec.price_decimals},'
                f'"quantityPrecision":{spec.quantity_decimals},"contractType":"PERPETUAL",'
            )
            items.append(
                f'{{"symbol":"{spec.symbol}","status":"TRADING","baseAsset":"{spec.base_asset}",'
                f'"quoteAsset":"{spec.quote_asset}",{precision}'
                f'"orderTypes":["LIMIT","MARKET"],"filters":['
                f'{{"filterType":"PRICE_FILTER","minPrice":"{tick}","maxPrice":"1000000.00000000",'
                f'"tickSize":"{tick}"}},{{"filterType":"LOT_SIZE","minQty":"{step}",'
                f'"maxQty":"9000.00000000","stepSize":"{step}"}}],"permissions":["SPOT"]}}'
            )
        weight_limit = 6000 if spot else 2400
        limits = (
            '{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,'
            f'"limit":{weight_limit}}},'
            '{"rateLimitType":"RAW_REQUESTS","interval":"MINUTE","intervalNum":5,"limit":300000}'
        )
        return (
            f'{{"timezone":"UTC","serverTime":{self.now_ms()},"rateLimits":[{limits}],'
            f'"exchangeFilters":[],"symbols":[{",".join(items)}]}}'
        ).encode()

    def valid_interval(self, interval: str) -> bool:
        return interval in self.streams.kline_intervals

    # -- flood -----------------------------------------------------------------------------

    def flood_trades(self, symbol: str, count: int) -> list[bytes]:
        """``count`` pre-encoded trade payloads for ``symbol`` with contiguous trade ids, for
        benchmarks: no book change, no aggregation, only the trade tape's ids advance."""
        book = self.books[symbol.upper()]
        now = self.now_ms()
        price, quantity = book.price(book.last_price), book.qty(book.random_qty())
        start = book.next_trade_id
        book.next_trade_id += count
        sym = book.spec.symbol
        return [
            f'{{"e":"trade","E":{now},"s":"{sym}","t":{i},"p":"{price}","q":"{quantity}",'
            f'"T":{now},"m":true,"M":true}}'.encode()
            for i in range(start, start + count)
        ]
