"""fastmd: an embeddable, high-throughput Binance market-data client.

Public names are imported lazily (PEP 562): ``import fastmd`` loads nothing heavy and nothing
optional; ``fastmd.Decoder`` loads the codec on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# No NullHandler on the "fastmd" logger: without one, an application that configured no logging
# still sees fastmd's warnings and errors on stderr (logging.lastResort), as it sees asyncio's.

# public name -> module that defines it (each name is in exactly one module's __all__)
_EXPORTS: dict[str, str] = {}
_MODULE_ALL: dict[str, tuple[str, ...]] = {
    "fastmd.errors": (
        "AuthenticationError",
        "BookNotSynced", "CallbackError", "ConnectError", "ConnectionClosed", "DecodeError",
        "DecodeErrorCategory", "FastmdError", "FastmdTimeoutError", "HandshakeError",
        "InvalidState", "ProtocolError", "RecordingCorrupt", "RecordingError",
        "RecordingNotFound", "RecordingTruncated", "RestError", "RestTimeoutError",
        "StreamNameError",
        "StreamOverflow", "SubscriptionError", "TLSError", "UnknownSymbolError",
    ),
    "fastmd.core.streams": (
        "CONTRACT_TYPES", "SPOT_KLINE_INTERVALS", "TRADE_KINDS", "USDM_KLINE_INTERVALS",
        "Stream", "StreamKind", "Venue", "build_stream", "futures_route", "parse_stream",
        "trade_stream", "validate_stream", "validate_symbol",
    ),
    "fastmd.core.events": (
        "AggTrade", "AssetIndex", "AvgPrice", "BlockTrade", "BookTicker", "CompositeIndex",
        "ContinuousKline", "ContinuousKlineData", "ContractInfo", "ControlError", "ControlReply",
        "DepthUpdate", "ForceOrder", "IndexComponent", "Kline", "KlineData", "LiquidationOrder",
        "MarkPrice", "MiniTicker", "NotionalBracket", "PartialDepth", "ReferencePrice",
        "ServerShutdown", "Ticker", "Ticker1d", "Ticker1h", "Ticker4h", "Trade", "WindowTicker",
    ),
    "fastmd.core.rest_models": (
        "DepthSnapshot", "ExchangeInfo", "KlineBar", "PremiumIndex", "RateLimit", "RestAggTrade",
        "RestAvgPrice", "RestBookTicker", "RestErrorBody", "RestTicker", "RestTrade",
        "ServerTime", "SymbolFilter", "SymbolInfo", "TickerPrice",
    ),
    "fastmd.core.codec": ("Decoder", "Message", "PriceType"),
    "fastmd.core.backoff": ("Backoff",),
    "fastmd.core.breaker": ("CircuitBreakerPolicy", "CircuitState"),
    "fastmd.core.liveness": ("Heartbeat",),
    "fastmd.core.lifecycle": ("ConnectionState", "ErrorReport", "ErrorReporter", "Severity"),
    "fastmd.core.stats": ("ConnectionStats", "LatencyStats"),
    "fastmd.aio.connection": ("Connection",),
    "fastmd.aio.reporting": ("LoggingReporter",),
    "fastmd.core.status": ("Status",),
    "fastmd.core.health": (
        "Alert", "AlertKind", "ConnectionHealth", "Health", "HealthConfig", "HealthStatus",
        "StreamHealth",
    ),
    "fastmd.core.subscriptions": (
        "CONTROL_FRAMES_PER_SECOND", "STREAMS_PER_CONNECTION", "ControlChannel", "Outcome",
        "SubscriptionAudit",
    ),
    "fastmd.aio.client": ("Client",),
    "fastmd.aio.subscriptions": ("EventStream", "Subscription"),
    "fastmd.aio.metrics": ("Metrics",),
    "fastmd.core.sequence": ("Gap", "GapReason"),
    "fastmd.core.book": ("BookState", "BookUpdate"),
    "fastmd.aio.book": ("BookSnapshot", "OrderBook"),
    "fastmd.aio.rest": ("RestClient", "RestTimeouts"),
    "fastmd.aio.market": ("CacheTTLs", "MarketData", "Result"),
    "fastmd.aio.record": ("RecordingStats", "record"),
}  # fmt: skip
for _module, _names in _MODULE_ALL.items():
    for _name in _names:
        _EXPORTS[_name] = _module

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # explicit "as" re-exports: mypy --strict users see the public names
    from fastmd.aio.book import (
        BookSnapshot as BookSnapshot,
        OrderBook as OrderBook,
    )
    from fastmd.aio.client import (
        Client as Client,
    )
    from fastmd.aio.connection import (
        Connection as Connection,
    )
    from fastmd.aio.market import (
        CacheTTLs as CacheTTLs,
        MarketData as MarketData,
        Result as Result,
    )
    from fastmd.aio.metrics import (
        Metrics as Metrics,
    )
    from fastmd.aio.record import (
        RecordingStats as RecordingStats,
        record as record,
    )
    from fastmd.aio.reporting import (
        LoggingReporter as LoggingReporter,
    )
    from fastmd.aio.rest import (
        RestClient as RestClient,
        RestTimeouts as RestTimeouts,
    )
    from fastmd.aio.subscriptions import (
        EventStream as EventStream,
        Subscription as Subscription,
    )
    from fastmd.core.backoff import (
        Backoff as Backoff,
    )
    from fastmd.core.book import (
        BookState as BookState,
        BookUpdate as BookUpdate,
    )
    from fastmd.core.breaker import (
        CircuitBreakerPolicy as CircuitBreakerPolicy,
        CircuitState as CircuitState,
    )
    from fastmd.core.codec import (
        Decoder as Decoder,
        Message as Message,
        PriceType as PriceType,
    )
    from fastmd.core.events import (
        AggTrade as AggTrade,
        AssetIndex as AssetIndex,
        AvgPrice as AvgPrice,
        BlockTrade as BlockTrade,
        BookTicker as BookTicker,
        CompositeIndex as CompositeIndex,
        ContinuousKline as ContinuousKline,
        ContinuousKlineData as ContinuousKlineData,
        ContractInfo as ContractInfo,
        ControlError as ControlError,
        ControlReply as ControlReply,
        DepthUpdate as DepthUpdate,
        ForceOrder as ForceOrder,
        IndexComponent as IndexComponent,
        Kline as Kline,
        KlineData as KlineData,
        LiquidationOrder as LiquidationOrder,
        MarkPrice as MarkPrice,
        MiniTicker as MiniTicker,
        NotionalBracket as NotionalBracket,
        PartialDepth as PartialDepth,
        ReferencePrice as ReferencePrice,
        ServerShutdown as ServerShutdown,
        Ticker as Ticker,
        Ticker1d as Ticker1d,
        Ticker1h as Ticker1h,
        Ticker4h as Ticker4h,
        Trade as Trade,
        WindowTicker as WindowTicker,
    )
    from fastmd.core.health import (
        Alert as Alert,
        AlertKind as AlertKind,
        ConnectionHealth as ConnectionHealth,
        Health as Health,
        HealthConfig as HealthConfig,
        HealthStatus as HealthStatus,
        StreamHealth as StreamHealth,
    )
    from fastmd.core.lifecycle import (
        ConnectionState as ConnectionState,
        ErrorReport as ErrorReport,
        ErrorReporter as ErrorReporter,
        Severity as Severity,
    )
    from fastmd.core.liveness import (
        Heartbeat as Heartbeat,
    )
    from fastmd.core.rest_models import (
        DepthSnapshot as DepthSnapshot,
        ExchangeInfo as ExchangeInfo,
        KlineBar as KlineBar,
        PremiumIndex as PremiumIndex,
        RateLimit as RateLimit,
        RestAggTrade as RestAggTrade,
        RestAvgPrice as RestAvgPrice,
        RestBookTicker as RestBookTicker,
        RestErrorBody as RestErrorBody,
        RestTicker as RestTicker,
        RestTrade as RestTrade,
        ServerTime as ServerTime,
        SymbolFilter as SymbolFilter,
        SymbolInfo as SymbolInfo,
        TickerPrice as TickerPrice,
    )
    from fastmd.core.sequence import (
        Gap as Gap,
        GapReason as GapReason,
    )
    from fastmd.core.stats import (
        ConnectionStats as ConnectionStats,
        LatencyStats as LatencyStats,
    )
    from fastmd.core.status import (
        Status as Status,
    )
    from fastmd.core.streams import (
        CONTRACT_TYPES as CONTRACT_TYPES,
        SPOT_KLINE_INTERVALS as SPOT_KLINE_INTERVALS,
        TRADE_KINDS as TRADE_KINDS,
        USDM_KLINE_INTERVALS as USDM_KLINE_INTERVALS,
        Stream as Stream,
        StreamKind as StreamKind,
        Venue as Venue,
        build_stream as build_stream,
        futures_route as futures_route,
        parse_stream as parse_stream,
        trade_stream as trade_stream,
        validate_stream as validate_stream,
        validate_symbol as validate_symbol,
    )
    from fastmd.core.subscriptions import (
        CONTROL_FRAMES_PER_SECOND as CONTROL_FRAMES_PER_SECOND,
        STREAMS_PER_CONNECTION as STREAMS_PER_CONNECTION,
        ControlChannel as ControlChannel,
        Outcome as Outcome,
        SubscriptionAudit as SubscriptionAudit,
    )
    from fastmd.errors import (
        AuthenticationError as AuthenticationError,
        BookNotSynced as BookNotSynced,
        CallbackError as CallbackError,
        ConnectError as ConnectError,
        ConnectionClosed as ConnectionClosed,
        DecodeError as DecodeError,
        DecodeErrorCategory as DecodeErrorCategory,
        FastmdError as FastmdError,
        FastmdTimeoutError as FastmdTimeoutError,
        HandshakeError as HandshakeError,
        InvalidState as InvalidState,
        ProtocolError as ProtocolError,
        RecordingCorrupt as RecordingCorrupt,
        RecordingError as RecordingError,
        RecordingNotFound as RecordingNotFound,
        RecordingTruncated as RecordingTruncated,
        RestError as RestError,
        RestTimeoutError as RestTimeoutError,
        StreamNameError as StreamNameError,
        StreamOverflow as StreamOverflow,
        SubscriptionError as SubscriptionError,
        TLSError as TLSError,
        UnknownSymbolError as UnknownSymbolError,
    )


def __getattr__(name: str) -> Any:
    if name == "sim":  # the simulator is a submodule; it loads asyncio, picows and aiohttp
        return importlib.import_module("fastmd.sim")
    if name in ("nats", "relay"):  # NATS fan-out (docs/nats.md): loaded on use, needs nats-py
        return importlib.import_module(f"fastmd.{name}")
    if name == "replay":  # a submodule too: fastmd.replay.events(DIR) after a bare import fastmd
        return importlib.import_module("fastmd.replay")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastmd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
