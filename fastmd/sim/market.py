"""A deterministic synthetic Binance market: one evolving limit order book per symbol.

Everything the simulator serves comes from the same books, so every stream agrees with every
other and with REST:

- trade ids are contiguous per symbol; aggTrade ids are contiguous and their ``f``/``l`` ranges
  cover the trades exactly;
- every book change takes the next update id; depth diffs carry contiguous ``U``/``u`` (futures
  ``pu`` = the previous diff's ``u``), in the same sequence as the REST depth ``lastUpdateId``;
- a bookTicker is the book's top at its ``u``; partial depth is the book's top N;
- klines and tickers aggregate the trades; futures mark prices follow the book.

The market is sans-I/O: it has no timers of its own. The server calls :meth:`Market.step` to apply
one random order-flow event and :meth:`Market.tick` with the clock to emit the timer-driven
streams; both return ``(stream, payload)`` pairs of pre-encoded JSON for the streams in
:attr:`Market.active`. Randomness comes from one seeded ``random.Random``: same seed, same market.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from fastmd.core.streams import (
    SPOT_KLINE_INTERVALS,
    USDM_KLINE_INTERVALS,
    Stream,
    StreamKind,
    Venue,
    parse_stream,
)

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

# Push cadences (ms) of the timer-driven streams, per venue (binance-protocol.md §1.3, §6).
_SPOT_DEPTH_SPEEDS: Final = {None: 1000, "100ms": 100}
_USDM_DEPTH_SPEEDS: Final = {None: 250, "100ms": 100, "500ms": 500}


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


@dataclass
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


@dataclass
class _Trade:
    trade_id: int
    price: int
    quantity: int
    time: int
    is_buyer_maker: bool


@dataclass
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


class _Book:
    """One symbol's order book and trade tape."""

    def __init__(self, spec: SymbolSpec, venue: Venue, rng: random.Random, now: int) -> None:
        self.spec = spec
        self.venue = venue
        self.rng = rng
        self.lower = spec.symbol.lower()
        self.width = 8 if venue == "binance-spot" else None
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_prices: list[int] = []  # ascending; best bid is the last
        self.ask_prices: list[int] = []  # ascending; best ask is the first
        self.update_id = 1_000_000 + rng.randrange(1_000_000)
        self.next_trade_id = 1 + rng.randrange(100_000)
        self.next_agg_id = 1 + rng.randrange(100_000)
        self.trades: deque[_Trade] = deque(maxlen=_MAX_TRADES)
        self.agg_trades: deque[_AggTrade] = deque(maxlen=_MAX_TRADES)
        self.bars: dict[str, deque[_Bar]] = {}
        self.tz_bars: dict[str, deque[_Bar]] = {}
        self.last_price = spec.start_price
        self.last_trade_quantity = 0
        self.prev_top: tuple[int, int, int, int] | None = None
        self.diffs: dict[str | None, _DiffWindow] = {}
        self.last_force_order = 0
        self.ensure_bars("1m")  # tickers aggregate the 1-minute bars
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
            self._set("b", mid - i, self._random_qty())
            self._set("a", mid + i, self._random_qty())
        self.prev_top = self.top()

    def _random_qty(self) -> int:
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
                      self._random_qty())  # fmt: skip
        while len(self.ask_prices) < _BOOK_LEVELS // 2:
            self._set("a", self.ask_prices[-1] + 1 if self.ask_prices else self.best_bid() + 1,
                      self._random_qty())  # fmt: skip

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
        self._set(side, price, current + self._random_qty())

    def cancel(self) -> None:
        side = "b" if self.rng.random() < 0.5 else "a"
        prices = self.bid_prices if side == "b" else self.ask_prices
        window = prices[-30:] if side == "b" else prices[:30]
        price = self.rng.choice(window)
        levels = self.bids if side == "b" else self.asks
        remaining = levels[price] - self._random_qty()
        self._bump()
        self._set(side, price, remaining)
        self._replenish()

    def market_order(self, now: int) -> tuple[list[_Trade], list[_AggTrade]]:
        """A taker order sweeping the opposite side; one aggTrade per price level it fills."""
        buy = self.rng.random() < 0.5
        wanted = self._random_qty() * self.rng.randrange(1, 4)
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
                self._record_bar(trade)
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

    def _record_bar(self, trade: _Trade) -> None:
        for interval, bars in self.bars.items():
            self._add_to_bars(bars, interval, trade, 0)
        for interval, bars in self.tz_bars.items():
            self._add_to_bars(bars, interval, trade, _TZ_OFFSET_MS)

    def _add_to_bars(self, bars: deque[_Bar], interval: str, trade: _Trade, offset: int) -> None:
        start = bucket_start(trade.time, interval, offset)
        if not bars or bars[-1].open_time != start:
            end = bucket_end(start, interval, offset)
            bars.append(_Bar(start, end, trade.price, trade.price, trade.price, trade.price))
        bar = bars[-1]
        bar.high = max(bar.high, trade.price)
        bar.low = min(bar.low, trade.price)
        bar.close = trade.price
        bar.volume += trade.quantity
        bar.quote_volume += trade.price * trade.quantity
        if not trade.is_buyer_maker:
            bar.taker_buy_volume += trade.quantity
            bar.taker_buy_quote_volume += trade.price * trade.quantity
        if bar.first_trade_id < 0:
            bar.first_trade_id = trade.trade_id
        bar.last_trade_id = trade.trade_id
        bar.count += 1

    def ensure_bars(self, interval: str, timezone: bool = False) -> deque[_Bar]:
        table = self.tz_bars if timezone else self.bars
        bars = table.get(interval)
        if bars is None:
            bars = table[interval] = deque(maxlen=_MAX_BARS)
            offset = _TZ_OFFSET_MS if timezone else 0
            for trade in self.trades:  # rebuild from the tape we still hold
                self._add_to_bars(bars, interval, trade, offset)
        return bars

    def window_stats(self, now: int, window_ms: int) -> dict[str, Any]:
        """Rolling-window statistics from the 1-minute bars: the window opens on the minute
        boundary at or before ``now - window_ms`` (as Binance's window tickers do)."""
        since = now - window_ms
        since -= since % _MINUTE
        bars = [bar for bar in self.bars["1m"] if bar.open_time >= since and bar.count]
        if not bars:
            price = self.last_price
            return {
                "open": price, "high": price, "low": price, "close": price, "volume": 0,
                "quote": 0, "first": -1, "last": -1, "count": 0, "open_time": since,
                "prev_close": price, "last_qty": 0,
            }  # fmt: skip
        return {
            "open": bars[0].open,
            "high": max(bar.high for bar in bars),
            "low": min(bar.low for bar in bars),
            "close": bars[-1].close,
            "volume": sum(bar.volume for bar in bars),
            "quote": sum(bar.quote_volume for bar in bars),
            "first": bars[0].first_trade_id,
            "last": bars[-1].last_trade_id,
            "count": sum(bar.count for bar in bars),
            "open_time": since,
            "prev_close": bars[0].open,
            "last_qty": self.last_trade_quantity,
        }


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
        self.clock = clock
        self.rng = random.Random(seed)
        explicit = {spec.symbol.upper(): spec for spec in specs}
        names = [s.upper() for s in symbols] or list(explicit)
        now = self.now_ms()
        self.books: dict[str, _Book] = {
            name: _Book(explicit.get(name) or default_spec(name), venue, self.rng, now)
            for name in names
        }
        self._order = list(self.books.values())
        self.active: set[str] = set()
        """The streams someone is subscribed to; only these are encoded and emitted."""
        self._active_sorted: list[str] = []
        self._kline_open: dict[str, int] = {}
        self._parsed: dict[str, Stream] = {}
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
                self._parsed[name] = parse_stream(name, self.venue)
        for name, stream in self._parsed.items():
            if name not in self.active:
                continue
            book = self.book(stream.symbol or "")
            if stream.kind is StreamKind.DEPTH and book is not None:
                table = _SPOT_DEPTH_SPEEDS if self.venue == "binance-spot" else _USDM_DEPTH_SPEEDS
                if stream.speed not in book.diffs:
                    book.diffs[stream.speed] = _DiffWindow(
                        table[stream.speed], last_emitted_u=book.update_id
                    )
            if stream.kind is StreamKind.KLINE and book is not None and stream.interval:
                book.ensure_bars(stream.interval, timezone=bool(stream.timezone))

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
            if stream.kind is StreamKind.DEPTH:
                continue
            cadence = self._cadence(stream)
            if cadence is None:
                continue
            due = self._due.get(name, 0)
            if now < due:
                continue
            self._due[name] = now - now % cadence + cadence
            if stream.kind is StreamKind.KLINE:
                out.extend((name, payload) for payload in self._kline_payloads(name, stream, now))
                continue
            payload = self._timed_payload(stream, now)
            if payload is not None:
                out.append((name, payload))
        return out

    def _cadence(self, stream: Stream) -> int | None:
        spot = self.venue == "binance-spot"
        kind = stream.kind
        if kind is StreamKind.KLINE:
            if not spot:
                return 250
            return 1000 if stream.interval == "1s" else 2000
        if kind is StreamKind.PARTIAL_DEPTH:
            speeds = {None: 1000 if spot else 250, "100ms": 100, "500ms": 500}
            return speeds[stream.speed]
        if kind in (StreamKind.MINI_TICKER, StreamKind.TICKER):
            return 1000 if spot else 2000
        if kind is StreamKind.MARK_PRICE or kind is StreamKind.ALL_MARK_PRICES:
            return 1000 if stream.speed == "1s" else 3000
        if kind in (
            StreamKind.WINDOW_TICKER, StreamKind.AVG_PRICE, StreamKind.REFERENCE_PRICE,
            StreamKind.ALL_MINI_TICKERS, StreamKind.ALL_TICKERS, StreamKind.ALL_WINDOW_TICKERS,
        ):  # fmt: skip
            return 1000
        return None  # real-time streams and serverShutdown

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

    def _timed_payload(self, stream: Stream, now: int) -> bytes | None:
        kind = stream.kind
        if stream.symbol is None:
            return self._all_market_payload(stream, now)
        book = self.book(stream.symbol)
        if book is None:
            return None  # unknown but well-formed symbols are acknowledged and stay silent
        sym = book.spec.symbol
        if kind is StreamKind.PARTIAL_DEPTH:
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
        if kind is StreamKind.MINI_TICKER:
            return self._mini_ticker(book, now).encode()
        if kind is StreamKind.TICKER:
            return self._ticker(book, now).encode()
        if kind is StreamKind.WINDOW_TICKER:
            assert stream.window is not None
            return self._window_ticker(book, stream.window, now).encode()
        if kind is StreamKind.AVG_PRICE:
            return (
                f'{{"e":"avgPrice","E":{now},"s":"{sym}","i":"5m",'
                f'"w":"{self.avg_price(book, now)}","T":{self._last_trade_time(book, now)}}}'
            ).encode()
        if kind is StreamKind.REFERENCE_PRICE:
            return (
                f'{{"e":"referencePrice","s":"{sym}","r":"{self._mid(book)}","t":{now}}}'.encode()
            )
        if kind is StreamKind.MARK_PRICE:
            return self._mark_price(book, now).encode()
        return None

    def _all_market_payload(self, stream: Stream, now: int) -> bytes | None:
        kind = stream.kind
        if kind is StreamKind.ALL_MINI_TICKERS:
            changed = [b for b in self._order if b.spec.symbol in self._changed_minis]
            self._changed_minis.clear()
            items = [self._mini_ticker(b, now) for b in changed]
        elif kind is StreamKind.ALL_WINDOW_TICKERS:
            assert stream.window is not None
            marks = self._changed_window[stream.window]
            changed = [b for b in self._order if b.spec.symbol in marks]
            marks.clear()
            items = [self._window_ticker(b, stream.window, now) for b in changed]
        elif kind is StreamKind.ALL_TICKERS:
            items = [self._ticker(b, now) for b in self._order]
        elif kind is StreamKind.ALL_MARK_PRICES:
            items = [self._mark_price(b, now) for b in self._order]
        else:
            return None
        if not items:
            return None
        return ("[" + ",".join(items) + "]").encode()

    # -- payload builders ------------------------------------------------------------------

    def _kline_payloads(self, name: str, stream: Stream, now: int) -> list[bytes]:
        """The open candle's update; first the final (``x: true``) update of the candle that
        closed since the last push, as Binance sends it."""
        book = self.book(stream.symbol or "")
        if book is None or stream.interval is None:
            return []
        interval, tz = stream.interval, bool(stream.timezone)
        bars = book.ensure_bars(interval, timezone=tz)
        offset = _TZ_OFFSET_MS if tz else 0
        start = bucket_start(now, interval, offset)
        out = []
        previous = self._kline_open.get(name)
        if previous is not None and previous != start:
            closed = next((b for b in bars if b.open_time == previous), None)
            if closed is not None:
                out.append(self._kline_payload(book, interval, closed, True, now))
        self._kline_open[name] = start
        bar = bars[-1] if bars and bars[-1].open_time == start else None
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
        items = list(book.trades)[-limit:]
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
        """``GET aggTrades`` with Binance's selection rules (fromId, or a time range, or newest)."""
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
        """``GET klines``: bars aggregated from the trade tape, oldest first."""
        bars = list(book.ensure_bars(interval))
        if start_time is not None or end_time is not None:
            bars = [
                b for b in bars
                if (start_time is None or b.open_time >= start_time)
                and (end_time is None or b.open_time <= end_time)
            ]  # fmt: skip
            bars = bars[:limit] if start_time is not None else bars[-limit:]
        else:
            bars = bars[-limit:]
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
        intervals = SPOT_KLINE_INTERVALS if self.venue == "binance-spot" else USDM_KLINE_INTERVALS
        return interval in intervals

    # -- flood -----------------------------------------------------------------------------

    def flood_trades(self, symbol: str, count: int) -> list[bytes]:
        """``count`` pre-encoded trade payloads for ``symbol`` with contiguous trade ids, for
        benchmarks: no book change, no aggregation, only the trade tape's ids advance."""
        book = self.books[symbol.upper()]
        now = self.now_ms()
        price, quantity = book.price(book.last_price), book.qty(book._random_qty())
        start = book.next_trade_id
        book.next_trade_id += count
        sym = book.spec.symbol
        return [
            f'{{"e":"trade","E":{now},"s":"{sym}","t":{i},"p":"{price}","q":"{quantity}",'
            f'"T":{now},"m":true,"M":true}}'.encode()
            for i in range(start, start + count)
        ]
