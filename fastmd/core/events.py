"""Typed Binance WebSocket events (spot and USD-M futures) and control replies.

Every event is a frozen msgspec Struct with readable attribute names; ``msgspec.field(name=...)``
maps them to Binance's one-letter wire keys, so ``msgspec.json.encode`` of an event writes the wire
shape back. Events are generic in their number type ``P``: ``float`` by default, ``str`` (the exact
decimal strings as sent) or ``decimal.Decimal`` in exact mode (see :class:`fastmd.Decoder`).

Conventions that keep events flowing when Binance changes things:

- unknown fields are ignored (futures payloads gain ``st``/``ps`` keys, for example);
- enum-like strings (order side, status, ...) are plain ``str``: a new value never drops an event;
- ids are bounded to int64 and non-negative, except where Binance uses ``-1`` as "none"
  (kline and ticker first/last trade ids, the aggTrade duplicate marker).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic

import msgspec
from msgspec import Meta, field
from typing_extensions import TypeVar

__all__ = [
    "AggTrade",
    "AssetIndex",
    "AvgPrice",
    "BlockTrade",
    "BookTicker",
    "CompositeIndex",
    "ContinuousKline",
    "ContinuousKlineData",
    "ContractInfo",
    "ControlError",
    "ControlReply",
    "DepthUpdate",
    "ForceOrder",
    "IndexComponent",
    "Kline",
    "KlineData",
    "LiquidationOrder",
    "MarkPrice",
    "MiniTicker",
    "NotionalBracket",
    "PartialDepth",
    "ReferencePrice",
    "ServerShutdown",
    "Ticker",
    "Ticker1d",
    "Ticker1h",
    "Ticker4h",
    "Trade",
    "WindowTicker",
]

P = TypeVar("P", default=float)
"""The number type of prices and quantities: float (default), str or Decimal."""

Id = Annotated[int, Meta(ge=0, le=2**63 - 1)]
"""A Binance id or sequence number: a non-negative int64."""
OptionalId = Annotated[int, Meta(ge=-1, le=2**63 - 1)]
"""An id where -1 means "none" (no trade in a kline or ticker window, aggTrade duplicate marker)."""
Millis = Annotated[int, Meta(ge=0, le=2**63 - 1)]
"""An epoch timestamp, milliseconds by default (microseconds with ``timeUnit=MICROSECOND``, and
always microseconds in events decoded from SBE frames)."""
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class Trade(msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="trade"):
    """One trade (``<symbol>@trade``).

    From SBE streams (``Decoder(encoding="sbe")``) one frame carries several trades, each its own
    event; ``event_time`` and ``trade_time`` are microseconds there, as Binance sends them.
    """

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    trade_id: Id = field(name="t")
    price: P = field(name="p")
    quantity: P = field(name="q")
    trade_time: Millis = field(name="T")
    is_buyer_maker: bool = field(name="m")


class AggTrade(
    msgspec.Struct,
    Generic[P],
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="e",
    tag="aggTrade",
):
    """One taker order filled at one price (``<symbol>@aggTrade``), spot and futures.

    ``first_trade_id == last_trade_id == -1`` marks a duplicate Binance invalidated: see
    :attr:`is_invalidated`. Futures ids in ``f``/``l`` are not contiguous across events.
    """

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    agg_trade_id: Id = field(name="a")
    price: P = field(name="p")
    quantity: P = field(name="q")
    first_trade_id: OptionalId = field(name="f")
    last_trade_id: OptionalId = field(name="l")
    trade_time: Millis = field(name="T")
    is_buyer_maker: bool = field(name="m")
    normal_quantity: P | None = field(default=None, name="nq")
    """Futures only: the quantity excluding RPI orders."""

    @property
    def is_invalidated(self) -> bool:
        """True for Binance's invalidated-duplicate marker (``f == l == -1``); not a real trade."""
        return self.first_trade_id == -1 and self.last_trade_id == -1


class BlockTrade(
    msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="blockTrade"
):
    """A block trade (``<symbol>@blockTrade``, spot)."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    block_trade_id: Id = field(name="t")
    price: P = field(name="p")
    quantity: P = field(name="q")
    trade_time: Millis = field(name="T")
    is_buyer_maker: bool = field(name="m")


class KlineData(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """The candle inside a :class:`Kline` event (the wire's ``k`` object)."""

    start_time: Millis = field(name="t")
    close_time: Millis = field(name="T")
    symbol: str = field(name="s")
    interval: str = field(name="i")
    first_trade_id: OptionalId = field(name="f")
    last_trade_id: OptionalId = field(name="L")
    open: P = field(name="o")
    close: P = field(name="c")
    high: P = field(name="h")
    low: P = field(name="l")
    volume: P = field(name="v")
    trade_count: Count = field(name="n")
    is_closed: bool = field(name="x")
    quote_volume: P = field(name="q")
    taker_buy_volume: P = field(name="V")
    taker_buy_quote_volume: P = field(name="Q")


class Kline(msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="kline"):
    """A candle update (``<symbol>@kline_<interval>``); ``kline.is_closed`` marks the final one."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    kline: KlineData[P] = field(name="k")


class MiniTicker(
    msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="24hrMiniTicker"
):
    """Rolling 24 h mini ticker (``<symbol>@miniTicker``, items of ``!miniTicker@arr``)."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    close: P = field(name="c")
    open: P = field(name="o")
    high: P = field(name="h")
    low: P = field(name="l")
    volume: P = field(name="v")
    quote_volume: P = field(name="q")


class Ticker(
    msgspec.Struct,
    Generic[P],
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="e",
    tag="24hrTicker",
):
    """Rolling 24 h ticker (``<symbol>@ticker``). Futures omits the prev-close and book fields."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    price_change: P = field(name="p")
    price_change_percent: P = field(name="P")
    weighted_avg_price: P = field(name="w")
    last_price: P = field(name="c")
    last_quantity: P = field(name="Q")
    open: P = field(name="o")
    high: P = field(name="h")
    low: P = field(name="l")
    volume: P = field(name="v")
    quote_volume: P = field(name="q")
    open_time: Millis = field(name="O")
    close_time: Millis = field(name="C")
    first_trade_id: OptionalId = field(name="F")
    last_trade_id: OptionalId = field(name="L")
    trade_count: Count = field(name="n")
    prev_close_price: P | None = field(default=None, name="x")
    best_bid_price: P | None = field(default=None, name="b")
    best_bid_quantity: P | None = field(default=None, name="B")
    best_ask_price: P | None = field(default=None, name="a")
    best_ask_quantity: P | None = field(default=None, name="A")


class WindowTicker(msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e"):
    """Rolling-window ticker (``<symbol>@ticker_<1h|4h|1d>``); concrete types are
    :class:`Ticker1h`, :class:`Ticker4h` and :class:`Ticker1d`.

    ``open_time`` falls on a minute boundary and ``close_time`` is the update time, so the window
    can be up to 59,999 ms wider than its name.
    """

    window: ClassVar[str] = ""
    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    price_change: P = field(name="p")
    price_change_percent: P = field(name="P")
    open: P = field(name="o")
    high: P = field(name="h")
    low: P = field(name="l")
    last_price: P = field(name="c")
    weighted_avg_price: P = field(name="w")
    volume: P = field(name="v")
    quote_volume: P = field(name="q")
    open_time: Millis = field(name="O")
    close_time: Millis = field(name="C")
    first_trade_id: OptionalId = field(name="F")
    last_trade_id: OptionalId = field(name="L")
    trade_count: Count = field(name="n")


class Ticker1h(WindowTicker[P], frozen=True, gc=False, tag="1hTicker"):
    """1 h rolling-window ticker."""

    window: ClassVar[str] = "1h"


class Ticker4h(WindowTicker[P], frozen=True, gc=False, tag="4hTicker"):
    """4 h rolling-window ticker."""

    window: ClassVar[str] = "4h"


class Ticker1d(WindowTicker[P], frozen=True, gc=False, tag="1dTicker"):
    """1 d rolling-window ticker."""

    window: ClassVar[str] = "1d"


class BookTicker(
    msgspec.Struct,
    Generic[P],
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="e",
    tag="bookTicker",
):
    """Best bid and ask (``<symbol>@bookTicker``).

    Spot payloads carry no ``e``, ``E`` or ``T``: ``event_time`` and ``transaction_time`` are
    ``None`` there. ``update_id`` is the order-book update id the quote belongs to.

    The spot SBE stream ``<symbol>@bestBidAsk`` delivers this event too, with ``event_time`` set,
    in microseconds (as Binance sends it), and no ``transaction_time``.
    """

    update_id: Id = field(name="u")
    symbol: str = field(name="s")
    bid_price: P = field(name="b")
    bid_quantity: P = field(name="B")
    ask_price: P = field(name="a")
    ask_quantity: P = field(name="A")
    event_time: Millis | None = field(default=None, name="E")
    transaction_time: Millis | None = field(default=None, name="T")


class AvgPrice(msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="avgPrice"):
    """Average price over ``interval`` (``<symbol>@avgPrice``, spot)."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    interval: str = field(name="i")
    price: P = field(name="w")
    last_trade_time: Millis = field(name="T")


class ReferencePrice(
    msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="referencePrice"
):
    """Reference price (``<symbol>@referencePrice``, spot). ``price`` is ``None`` when Binance has
    none; the event has no ``E``, only the engine time."""

    symbol: str = field(name="s")
    price: P | None = field(name="r")
    engine_time: Millis = field(name="t")


class PartialDepth(msgspec.Struct, Generic[P], frozen=True, gc=False, omit_defaults=True):
    """Top-N book snapshot (spot ``<symbol>@depth<N>[@100ms]``).

    The payload has no symbol, event type or time: the decoder fills ``symbol`` (uppercase, like
    every other event) from the stream name, as a class attribute of a per-symbol subclass.
    Bids are best first (descending), asks ascending. ``event_time`` is set only by the spot SBE
    stream ``<symbol>@depth20`` (microseconds, as Binance sends it); JSON payloads have none.
    """

    symbol: ClassVar[str] = ""
    last_update_id: Id = field(name="lastUpdateId")
    bids: list[tuple[P, P]]
    asks: list[tuple[P, P]]
    event_time: Millis | None = field(default=None, name="E")


class DepthUpdate(
    msgspec.Struct,
    Generic[P],
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="e",
    tag="depthUpdate",
):
    """Order-book diff (``<symbol>@depth[@speed]``); also the shape of futures partial depth.

    Quantities are absolute; a zero quantity removes the level. ``prev_final_update_id`` (``pu``)
    is set on futures only: it must equal the previous event's ``final_update_id``. From the spot
    SBE stream ``<symbol>@depth``, ``event_time`` is in microseconds (as Binance sends it).
    """

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    first_update_id: Id = field(name="U")
    final_update_id: Id = field(name="u")
    bids: list[tuple[P, P]] = field(name="b")
    asks: list[tuple[P, P]] = field(name="a")
    transaction_time: Millis | None = field(default=None, name="T")
    prev_final_update_id: Id | None = field(default=None, name="pu")


class MarkPrice(
    msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="markPriceUpdate"
):
    """Mark price and funding (``<symbol>@markPrice[@1s]``, futures).

    ``next_funding_time`` (the wire's ``T``) is not a transaction time.
    """

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    mark_price: P = field(name="p")
    index_price: P = field(name="i")
    estimated_settle_price: P = field(name="P")
    funding_rate: P = field(name="r")
    next_funding_time: Millis = field(name="T")


class LiquidationOrder(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """The order inside a :class:`ForceOrder` event (the wire's ``o`` object)."""

    symbol: str = field(name="s")
    side: str = field(name="S")
    order_type: str = field(name="o")
    time_in_force: str = field(name="f")
    original_quantity: P = field(name="q")
    price: P = field(name="p")
    average_price: P = field(name="ap")
    status: str = field(name="X")
    last_filled_quantity: P = field(name="l")
    filled_quantity: P = field(name="z")
    trade_time: Millis = field(name="T")


class ForceOrder(
    msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="forceOrder"
):
    """A liquidation (``<symbol>@forceOrder``, ``!forceOrder@arr``, futures)."""

    event_time: Millis = field(name="E")
    order: LiquidationOrder[P] = field(name="o")

    @property
    def symbol(self) -> str:
        """The liquidated symbol (the payload carries it inside the order)."""
        return self.order.symbol


class ContinuousKlineData(msgspec.Struct, Generic[P], frozen=True, gc=False):
    """The candle inside a :class:`ContinuousKline` event (the wire's ``k`` object): a kline's
    figures, without a symbol, and with order-book update ids where a kline has trade ids."""

    start_time: Millis = field(name="t")
    close_time: Millis = field(name="T")
    interval: str = field(name="i")
    first_update_id: OptionalId = field(name="f")
    last_update_id: OptionalId = field(name="L")
    open: P = field(name="o")
    close: P = field(name="c")
    high: P = field(name="h")
    low: P = field(name="l")
    volume: P = field(name="v")
    trade_count: Count = field(name="n")
    is_closed: bool = field(name="x")
    quote_volume: P = field(name="q")
    taker_buy_volume: P = field(name="V")
    taker_buy_quote_volume: P = field(name="Q")


class ContinuousKline(
    msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="continuous_kline"
):
    """A candle of a pair's continuous contract (``<pair>_<contract type>@continuousKline_<i>``,
    USD-M): the perpetual, or whichever delivery contract is the current or next quarter.
    ``kline.is_closed`` marks a candle's final update."""

    event_time: Millis = field(name="E")
    pair: str = field(name="ps")
    contract_type: str = field(name="ct")
    kline: ContinuousKlineData[P] = field(name="k")


class IndexComponent(msgspec.Struct, Generic[P], frozen=True, gc=False, omit_defaults=True):
    """One asset of a :class:`CompositeIndex` (an item of the wire's ``c`` list)."""

    base_asset: str = field(name="b")
    weight_in_quantity: P = field(name="w")
    weight_in_percentage: P = field(name="W")
    quote_asset: str | None = field(default=None, name="q")
    index_price: P | None = field(default=None, name="i")


class CompositeIndex(
    msgspec.Struct,
    Generic[P],
    frozen=True,
    gc=False,
    omit_defaults=True,
    tag_field="e",
    tag="compositeIndex",
):
    """A composite index's price and composition (``<symbol>@compositeIndex``, USD-M, every
    second), for index symbols such as ``DEFIUSDT``."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    price: P = field(name="p")
    composition: list[IndexComponent[P]] = field(name="c")
    component: str | None = field(default=None, name="C")
    """What the weights are of: ``"baseAsset"``."""


class NotionalBracket(msgspec.Struct, frozen=True, gc=False):
    """One notional bracket of a :class:`ContractInfo` (an item of the wire's ``bks``). Binance
    sends these as JSON numbers: they are ``float`` (and ``int``) whatever the number type."""

    bracket: int = field(name="bs")
    notional_floor: float = field(name="bnf")
    notional_cap: float = field(name="bnc")
    maintenance_margin_ratio: float = field(name="mmr")
    maintenance_amount: float = field(name="cf")
    """Binance's "auxiliary number for quick calculation": maintenance margin is notional x
    ``maintenance_margin_ratio`` - this."""
    min_leverage: int = field(name="mi")
    max_leverage: int = field(name="ma")


class ContractInfo(
    msgspec.Struct, frozen=True, gc=False, omit_defaults=True, tag_field="e", tag="contractInfo"
):
    """A contract listed, settled or changed (``!contractInfo``, USD-M, pushed on change). Not
    generic: it has no price. ``brackets`` is set only when the notional brackets changed."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    pair: str = field(name="ps")
    contract_type: str = field(name="ct")
    delivery_time: Millis = field(name="dt")
    onboard_time: Millis = field(name="ot")
    status: str = field(name="cs")
    brackets: list[NotionalBracket] | None = field(default=None, name="bks")


class AssetIndex(
    msgspec.Struct, Generic[P], frozen=True, gc=False, tag_field="e", tag="assetIndexUpdate"
):
    """An asset's index price and the rates Multi-Assets mode values it at (items of
    ``!assetIndex@arr``, USD-M, every second)."""

    event_time: Millis = field(name="E")
    symbol: str = field(name="s")
    index_price: P = field(name="i")
    bid_buffer: P = field(name="b")
    ask_buffer: P = field(name="a")
    bid_rate: P = field(name="B")
    ask_rate: P = field(name="A")
    auto_exchange_bid_buffer: P = field(name="q")
    auto_exchange_ask_buffer: P = field(name="g")
    auto_exchange_bid_rate: P = field(name="Q")
    auto_exchange_ask_rate: P = field(name="G")


class ServerShutdown(msgspec.Struct, frozen=True, gc=False, tag_field="e", tag="serverShutdown"):
    """Binance is about to close this connection: reconnect now (``!serverShutdown``)."""

    event_time: Millis = field(name="E")


class ControlError(msgspec.Struct, frozen=True, gc=False):
    """The error of a rejected control request: ``code`` 0-3 and Binance's message."""

    code: int
    msg: str


class ControlReply(msgspec.Struct, frozen=True, gc=False):
    """The reply to a SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY or GET_PROPERTY.

    ``result`` is ``None`` for commands, the list of streams for LIST_SUBSCRIPTIONS and the
    property value for GET_PROPERTY. ``error`` is set when the request was rejected; ``id`` is
    ``None`` when the server could not parse the request.
    """

    id: int | str | None
    result: Any = None
    error: ControlError | None = None

    @property
    def ok(self) -> bool:
        """True when the request was accepted."""
        return self.error is None
