"""The stream names of Binance's SBE market-data endpoint (binance-protocol.md §8).

``wss://stream-sbe.binance.com`` serves four spot streams per symbol, with the same
``/ws/<stream>``, ``/stream?streams=`` paths and live SUBSCRIBE as the JSON streams:

==========================  ===========================================  =======================
name                        events                                       sequence rule
==========================  ===========================================  =======================
``<symbol>@trade``          :class:`fastmd.Trade` (several per frame)    trade ids contiguous
``<symbol>@bestBidAsk``     :class:`fastmd.BookTicker`                   update ids increase;
                                                                         auto-culled: skipped
                                                                         ids are no gap
``<symbol>@depth``          :class:`fastmd.DepthUpdate`                  ``U`` = previous ``u``+1
``<symbol>@depth20``        :class:`fastmd.PartialDepth`                 update ids increase
==========================  ===========================================  =======================

Each name parses to the :class:`fastmd.core.streams.Stream` of the JSON stream that carries the
same events (``@bestBidAsk`` -> the book-ticker kind), so sequencing, selective updates and books
treat them alike; no speed suffix is accepted (Binance's SBE depth streams have none).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from fastmd.core.streams import Stream, StreamKind, validate_symbol
from fastmd.errors import StreamNameError

__all__ = ["SBE_STREAM_TYPES", "in_microseconds", "parse_sbe_stream"]

_TIME_FIELDS: Final = ("event_time", "trade_time", "transaction_time")

SBE_STREAM_TYPES: Final[dict[str, Stream]] = {
    "trade": Stream(StreamKind.TRADE),
    "bestBidAsk": Stream(StreamKind.BOOK_TICKER),
    "depth": Stream(StreamKind.DEPTH),
    "depth20": Stream(StreamKind.PARTIAL_DEPTH, levels=20),
}
"""What follows ``<symbol>@`` on the SBE endpoint, and the kind of stream each one is."""


def parse_sbe_stream(name: str) -> Stream:
    """The parsed SBE stream ``name`` (lowercase symbol, one of :data:`SBE_STREAM_TYPES`).

    Raises:
        StreamNameError: not a stream of Binance's SBE endpoint; the message says what is
            allowed.
    """
    if not isinstance(name, str):
        raise StreamNameError(f"a stream name is a str, not {type(name).__name__}")
    symbol, at, tail = name.partition("@")
    template = SBE_STREAM_TYPES.get(tail) if at else None
    if template is None:
        allowed = ", ".join(f"<symbol>@{t}" for t in SBE_STREAM_TYPES)
        raise StreamNameError(
            f"invalid SBE stream name {name!r}: Binance's SBE endpoint serves {allowed}"
        )
    if not symbol:
        raise StreamNameError(f"invalid SBE stream name {name!r}: no symbol before '@'")
    if symbol != symbol.lower():
        raise StreamNameError(f"invalid SBE stream name {name!r}: the symbol must be lowercase")
    validate_symbol(symbol, "binance-spot")
    return Stream(template.kind, symbol=symbol, levels=template.levels)


def in_microseconds(event: Any) -> Any:
    """``event`` (decoded from REST, in milliseconds) with its event, trade and transaction times
    in microseconds, as the SBE streams give them: what an SBE client delivers for the trades it
    backfills and the events its REST fallback polls. Times that are ``None`` stay ``None``;
    other events are returned as they are."""
    changes = {
        name: value * 1000
        for name in _TIME_FIELDS
        if isinstance(value := getattr(event, name, None), int)
    }
    return msgspec.structs.replace(event, **changes) if changes else event
