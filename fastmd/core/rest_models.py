"""Typed responses of Binance's public REST market-data endpoints (spot ``/api/v3`` and USD-M
``/fapi/v1``). Field names are Binance's own, in snake_case; number fields follow the decoder's
number type ``P`` like the WebSocket events do. Unknown fields are ignored."""

from __future__ import annotations

from typing import Any, Generic

import msgspec
from msgspec import field

from fastmd.core.events import Count, Id, Millis, OptionalId, P

__all__ = [
    "DepthSnapshot",
    "ExchangeInfo",
    "KlineBar",
    "PremiumIndex",
    "RateLimit",
    "RestAggTrade",
    "RestAvgPrice",
    "RestBookTicker",
    "RestErrorBody",
    "RestTicker",
    "RestTrade",
    "ServerTime",
    "SymbolFilter",
    "SymbolInfo",
    "TickerPrice",
]


class DepthSnapshot(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """``GET /api/v3/depth`` and ``GET /fapi/v1/depth``. Futures adds ``E`` and ``T``."""

    last_update_id: Id = field(name="lastUpdateId")
    bids: list[tuple[P, P]]
    asks: list[tuple[P, P]]
    event_time: Millis | None = field(default=None, name="E")
    transaction_time: Millis | None = field(default=None, name="T")


class RestTrade(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """An item of ``GET /api/v3/trades`` (and ``historicalTrades``)."""

    id: Id
    price: P
    quantity: P = field(name="qty")
    quote_quantity: P = field(name="quoteQty")
    time: Millis
    is_buyer_maker: bool = field(name="isBuyerMaker")
    is_best_match: bool | None = field(default=None, name="isBestMatch")


class RestAggTrade(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """An item of ``GET /api/v3/aggTrades`` and ``GET /fapi/v1/aggTrades`` (wire letters as in the
    ``aggTrade`` stream)."""

    agg_trade_id: Id = field(name="a")
    price: P = field(name="p")
    quantity: P = field(name="q")
    first_trade_id: OptionalId = field(name="f")
    last_trade_id: OptionalId = field(name="l")
    trade_time: Millis = field(name="T")
    is_buyer_maker: bool = field(name="m")


class KlineBar(msgspec.Struct, Generic[P], frozen=True, gc=False, array_like=True):
    """One row of ``GET /api/v3/klines`` / ``/fapi/v1/klines`` (a 12-element JSON array)."""

    open_time: Millis
    open: P
    high: P
    low: P
    close: P
    volume: P
    close_time: Millis
    quote_volume: P
    trade_count: Count
    taker_buy_volume: P
    taker_buy_quote_volume: P
    ignore: str = "0"


class RestTicker(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """``GET /api/v3/ticker/24hr`` (FULL or MINI), the rolling-window ``/api/v3/ticker`` and the
    futures ``/fapi/v1/ticker/24hr``. Fields absent from a shape are ``None``."""

    symbol: str
    open_price: P = field(name="openPrice")
    high_price: P = field(name="highPrice")
    low_price: P = field(name="lowPrice")
    last_price: P = field(name="lastPrice")
    volume: P
    quote_volume: P = field(name="quoteVolume")
    open_time: Millis = field(name="openTime")
    close_time: Millis = field(name="closeTime")
    first_id: OptionalId = field(name="firstId")
    last_id: OptionalId = field(name="lastId")
    count: Count
    price_change: P | None = field(default=None, name="priceChange")
    price_change_percent: P | None = field(default=None, name="priceChangePercent")
    weighted_avg_price: P | None = field(default=None, name="weightedAvgPrice")
    prev_close_price: P | None = field(default=None, name="prevClosePrice")
    last_qty: P | None = field(default=None, name="lastQty")
    bid_price: P | None = field(default=None, name="bidPrice")
    bid_qty: P | None = field(default=None, name="bidQty")
    ask_price: P | None = field(default=None, name="askPrice")
    ask_qty: P | None = field(default=None, name="askQty")


class TickerPrice(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """``GET /api/v3/ticker/price``."""

    symbol: str
    price: P


class RestBookTicker(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """``GET /api/v3/ticker/bookTicker``."""

    symbol: str
    bid_price: P = field(name="bidPrice")
    bid_qty: P = field(name="bidQty")
    ask_price: P = field(name="askPrice")
    ask_qty: P = field(name="askQty")


class RestAvgPrice(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """``GET /api/v3/avgPrice``."""

    mins: Count
    price: P
    close_time: Millis | None = field(default=None, name="closeTime")


class ServerTime(msgspec.Struct, frozen=True, gc=False):
    """``GET /api/v3/time``."""

    server_time: Millis = field(name="serverTime")


class PremiumIndex(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """``GET /fapi/v1/premiumIndex`` (futures mark price and funding)."""

    symbol: str
    mark_price: P = field(name="markPrice")
    index_price: P = field(name="indexPrice")
    estimated_settle_price: P = field(name="estimatedSettlePrice")
    last_funding_rate: P = field(name="lastFundingRate")
    next_funding_time: Millis = field(name="nextFundingTime")
    time: Millis
    interest_rate: P | None = field(default=None, name="interestRate")


class RateLimit(msgspec.Struct, frozen=True):
    """An entry of ``exchangeInfo.rateLimits``."""

    rate_limit_type: str = field(name="rateLimitType")
    interval: str
    interval_num: int = field(name="intervalNum")
    limit: int


class SymbolFilter(msgspec.Struct, frozen=True):
    """A symbol filter. Every filter type decodes (unknown ones too); the fields a type does not
    have are ``None``. Numbers stay exact decimal strings: they are rules, not market data."""

    filter_type: str = field(name="filterType")
    min_price: str | None = field(default=None, name="minPrice")
    max_price: str | None = field(default=None, name="maxPrice")
    tick_size: str | None = field(default=None, name="tickSize")
    min_qty: str | None = field(default=None, name="minQty")
    max_qty: str | None = field(default=None, name="maxQty")
    step_size: str | None = field(default=None, name="stepSize")
    min_notional: str | None = field(default=None, name="minNotional")
    max_notional: str | None = field(default=None, name="maxNotional")
    limit: int | None = None
    max_num_orders: int | None = field(default=None, name="maxNumOrders")
    max_num_algo_orders: int | None = field(default=None, name="maxNumAlgoOrders")


class SymbolInfo(msgspec.Struct, frozen=True):
    """An entry of ``exchangeInfo.symbols``."""

    symbol: str
    status: str
    base_asset: str = field(name="baseAsset")
    quote_asset: str = field(name="quoteAsset")
    base_asset_precision: int | None = field(default=None, name="baseAssetPrecision")
    quote_precision: int | None = field(default=None, name="quotePrecision")
    quote_asset_precision: int | None = field(default=None, name="quoteAssetPrecision")
    price_precision: int | None = field(default=None, name="pricePrecision")
    quantity_precision: int | None = field(default=None, name="quantityPrecision")
    order_types: list[str] = field(default_factory=list, name="orderTypes")
    filters: list[SymbolFilter] = field(default_factory=list)
    permissions: list[str] = field(default_factory=list)
    contract_type: str | None = field(default=None, name="contractType")

    def filter(self, filter_type: str) -> SymbolFilter | None:
        """The filter of ``filter_type`` (``"PRICE_FILTER"``, ``"LOT_SIZE"``...), if any."""
        for item in self.filters:
            if item.filter_type == filter_type:
                return item
        return None


class ExchangeInfo(msgspec.Struct, frozen=True):
    """``GET /api/v3/exchangeInfo`` and ``GET /fapi/v1/exchangeInfo``."""

    timezone: str
    server_time: Millis = field(name="serverTime")
    rate_limits: list[RateLimit] = field(default_factory=list, name="rateLimits")
    exchange_filters: list[Any] = field(default_factory=list, name="exchangeFilters")
    symbols: list[SymbolInfo] = field(default_factory=list)

    def symbol(self, name: str) -> SymbolInfo | None:
        """The entry of ``name`` (any case), if listed."""
        wanted = name.upper()
        for info in self.symbols:
            if info.symbol == wanted:
                return info
        return None


class RestErrorBody(msgspec.Struct, frozen=True):
    """Binance's REST error body: ``{"code": -1121, "msg": "Invalid symbol."}``."""

    code: int
    msg: str
