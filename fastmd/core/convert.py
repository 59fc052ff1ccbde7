"""REST responses as WebSocket events: the fallback and the backfill deliver REST data through
the same callbacks, so it must arrive in the same types as the stream's own events.

Conversions keep ids and times (so the sequencers can order and de-duplicate them) and say what
the REST answer does not carry: ``event_time`` is the REST item's own time where it has one.
"""

from __future__ import annotations

from typing import Any

from fastmd.core import events as ev
from fastmd.core.rest_models import (
    DepthSnapshot,
    KlineBar,
    PremiumIndex,
    RestAggTrade,
    RestAvgPrice,
    RestTicker,
    RestTrade,
)

__all__ = [
    "agg_trade_event",
    "avg_price_event",
    "book_ticker_event",
    "kline_event",
    "mark_price_event",
    "mini_ticker_event",
    "partial_depth_event",
    "rest_ticker",
    "ticker_event",
    "trade_event",
]


def agg_trade_event(symbol: str, item: RestAggTrade[Any]) -> ev.AggTrade[Any]:
    """An ``aggTrades`` item as the ``aggTrade`` event it was."""
    return ev.AggTrade(
        event_time=item.trade_time,
        symbol=symbol,
        agg_trade_id=item.agg_trade_id,
        price=item.price,
        quantity=item.quantity,
        first_trade_id=item.first_trade_id,
        last_trade_id=item.last_trade_id,
        trade_time=item.trade_time,
        is_buyer_maker=item.is_buyer_maker,
    )


def trade_event(symbol: str, item: RestTrade[Any]) -> ev.Trade[Any]:
    """A ``trades`` item as the ``trade`` event it was."""
    return ev.Trade(
        event_time=item.time,
        symbol=symbol,
        trade_id=item.id,
        price=item.price,
        quantity=item.quantity,
        trade_time=item.time,
        is_buyer_maker=item.is_buyer_maker,
    )


def kline_event(
    symbol: str, interval: str, bar: KlineBar[Any], *, event_time: int, is_closed: bool
) -> ev.Kline[Any]:
    """A ``klines`` row as a ``kline`` event (``first/last trade id`` are unknown: -1)."""
    return ev.Kline(
        event_time=event_time,
        symbol=symbol,
        kline=ev.KlineData(
            start_time=bar.open_time,
            close_time=bar.close_time,
            symbol=symbol,
            interval=interval,
            first_trade_id=-1,
            last_trade_id=-1,
            open=bar.open,
            close=bar.close,
            high=bar.high,
            low=bar.low,
            volume=bar.volume,
            trade_count=bar.trade_count,
            is_closed=is_closed,
            quote_volume=bar.quote_volume,
            taker_buy_volume=bar.taker_buy_volume,
            taker_buy_quote_volume=bar.taker_buy_quote_volume,
        ),
    )


def ticker_event(item: RestTicker[Any]) -> ev.Ticker[Any]:
    """A full ``ticker/24hr`` answer as a ``24hrTicker`` event (event time: its close time).

    Raises:
        ValueError: the answer is the MINI shape (it lacks the change fields).
    """
    if (
        item.price_change is None
        or item.price_change_percent is None
        or item.weighted_avg_price is None
        or item.last_qty is None
    ):
        raise ValueError("a 24hrTicker event needs the FULL ticker/24hr shape")
    return ev.Ticker(
        event_time=item.close_time,
        symbol=item.symbol,
        price_change=item.price_change,
        price_change_percent=item.price_change_percent,
        weighted_avg_price=item.weighted_avg_price,
        last_price=item.last_price,
        last_quantity=item.last_qty,
        open=item.open_price,
        high=item.high_price,
        low=item.low_price,
        volume=item.volume,
        quote_volume=item.quote_volume,
        open_time=item.open_time,
        close_time=item.close_time,
        first_trade_id=item.first_id,
        last_trade_id=item.last_id,
        trade_count=item.count,
        prev_close_price=item.prev_close_price,
        best_bid_price=item.bid_price,
        best_bid_quantity=item.bid_qty,
        best_ask_price=item.ask_price,
        best_ask_quantity=item.ask_qty,
    )


def mini_ticker_event(item: RestTicker[Any]) -> ev.MiniTicker[Any]:
    """A ``ticker/24hr`` answer as a ``24hrMiniTicker`` event (event time: its close time)."""
    return ev.MiniTicker(
        event_time=item.close_time,
        symbol=item.symbol,
        close=item.last_price,
        open=item.open_price,
        high=item.high_price,
        low=item.low_price,
        volume=item.volume,
        quote_volume=item.quote_volume,
    )


def book_ticker_event(symbol: str, depth: DepthSnapshot[Any]) -> ev.BookTicker[Any] | None:
    """The top of a depth snapshot as a ``bookTicker`` event (its ``u`` is the snapshot's
    ``lastUpdateId``, so quotes stay ordered); ``None`` when a side is empty."""
    if not depth.bids or not depth.asks:
        return None
    (bid, bid_qty), (ask, ask_qty) = depth.bids[0], depth.asks[0]
    return ev.BookTicker(
        update_id=depth.last_update_id,
        symbol=symbol,
        bid_price=bid,
        bid_quantity=bid_qty,
        ask_price=ask,
        ask_quantity=ask_qty,
        event_time=depth.event_time,
        transaction_time=depth.transaction_time,
    )


def partial_depth_event(event_type: Any, depth: DepthSnapshot[Any]) -> Any:
    """A depth snapshot as the partial-depth event of a stream whose decoder type is
    ``event_type`` (spot ``PartialDepth`` subclass carrying the symbol)."""
    return event_type(last_update_id=depth.last_update_id, bids=depth.bids, asks=depth.asks)


def avg_price_event(symbol: str, item: RestAvgPrice[Any], now_ms: int) -> ev.AvgPrice[Any]:
    """An ``avgPrice`` answer as the ``avgPrice`` event; its time is the answer's ``closeTime``
    (``now_ms`` when the answer has none)."""
    stamp = item.close_time or now_ms
    return ev.AvgPrice(
        event_time=stamp,
        symbol=symbol,
        interval=f"{item.mins}m",
        price=item.price,
        last_trade_time=stamp,
    )


def mark_price_event(symbol: str, item: PremiumIndex[Any]) -> ev.MarkPrice[Any]:
    """A ``premiumIndex`` answer as the ``markPriceUpdate`` event (same time and figures)."""
    return ev.MarkPrice(
        event_time=item.time,
        symbol=symbol,
        mark_price=item.mark_price,
        index_price=item.index_price,
        estimated_settle_price=item.estimated_settle_price,
        funding_rate=item.last_funding_rate,
        next_funding_time=item.next_funding_time,
    )


def rest_ticker(event: ev.Ticker[Any]) -> RestTicker[Any]:
    """A ``24hrTicker`` event as the full ``ticker/24hr`` answer it equals: the inverse of
    :func:`ticker_event` (the event time is not a field of the answer; ``client.market`` makes
    it the Result's ``ts``)."""
    return RestTicker(
        symbol=event.symbol,
        open_price=event.open,
        high_price=event.high,
        low_price=event.low,
        last_price=event.last_price,
        volume=event.volume,
        quote_volume=event.quote_volume,
        open_time=event.open_time,
        close_time=event.close_time,
        first_id=event.first_trade_id,
        last_id=event.last_trade_id,
        count=event.trade_count,
        price_change=event.price_change,
        price_change_percent=event.price_change_percent,
        weighted_avg_price=event.weighted_avg_price,
        prev_close_price=event.prev_close_price,
        last_qty=event.last_quantity,
        bid_price=event.best_bid_price,
        bid_qty=event.best_bid_quantity,
        ask_price=event.best_ask_price,
        ask_qty=event.best_ask_quantity,
    )
