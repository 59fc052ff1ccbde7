"""Binance spot SBE market data: binary frames into the same typed events as the JSON streams.

Binance serves spot market data as SBE (Simple Binary Encoding) frames on
``wss://stream-sbe.binance.com``: schema ``spot_stream`` (``schemaId`` 1, version 0,
little-endian). Each binary frame holds one message: an 8-byte header (``blockLength``,
``templateId``, ``schemaId``, ``version``, all u16), a fixed root block, repeating groups, and the
symbol as a ``varString8`` (u8 length, UTF-8 bytes). There is no envelope: the template and the
symbol name the stream.

=========  =========================  ==============================================
template   stream                     events (one frame gives)
=========  =========================  ==============================================
10000      ``<symbol>@trade``         one :class:`fastmd.Trade` per entry of ``trades``
10001      ``<symbol>@bestBidAsk``    one :class:`fastmd.BookTicker` (``event_time`` set)
10002      ``<symbol>@depth20``       one :class:`fastmd.PartialDepth` (``event_time`` set)
10003      ``<symbol>@depth``         one :class:`fastmd.DepthUpdate`
=========  =========================  ==============================================

Times are microseconds, as Binance sends them. Prices and quantities are ``mantissa x
10^exponent``: ``float`` values are the correctly rounded value of that exact decimal (what
``float(Decimal(mantissa).scaleb(exponent))`` gives), ``str`` values are the exact decimal
written with ``-exponent`` fraction digits (``"0.01000000"``, the way the JSON streams write it),
``Decimal`` values are ``Decimal`` of that string.

Rules (the SBE standard's, for forward compatibility, and this module's own):

- the root block is skipped by the header's ``blockLength`` and group entries are stepped by their
  group's ``blockLength``, so fields a newer schema appends are ignored; either length shorter than
  this schema's is ``block_too_short``; bytes after the symbol are ignored for the same reason;
- ``schemaId`` other than 1 is ``schema_mismatch``, a version other than 0 ``unknown_version``, an
  unknown ``templateId`` ``unknown_template``; checked in that order, after the header fits;
- every length and count is checked against the bytes left before anything is read or allocated
  (``truncated``), so a hostile frame never reads past its end and allocates at most in
  proportion to its size;
- a symbol that is not UTF-8 is ``invalid_utf8``; one that makes no valid stream name
  (empty, not letters and digits) is ``unroutable``;
- ids and times must be non-negative (``out_of_range``) and ``isBuyerMaker`` 0 or 1
  (``wrong_type``), checked in wire order once the frame's structure and symbol are known good.

Two implementations give identical results (tested over the same generated frames): the C
extension ``fastmd._sbe`` (built by ``pip install -e .``) and the pure-Python one here, used when
the extension is not importable or when the environment variable ``FASTMD_PURE_PYTHON`` is set to
a non-empty value other than ``0`` when the decoder is built.
"""

from __future__ import annotations

import importlib
import os
import struct
from collections import Counter, OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import msgspec
from msgspec import field

from fastmd.core import events as ev
from fastmd.core.codec import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STREAMS,
    Message,
    PriceType,
    partial_depth_type,
)
from fastmd.core.streams import validate_symbol
from fastmd.errors import DecodeError, DecodeErrorCategory as Cat, StreamNameError

__all__ = [
    "HEADER_SIZE",
    "ROOT_SIZES",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "STREAM_SUFFIXES",
    "TEMPLATE_BEST_BID_ASK",
    "TEMPLATE_DEPTH_DIFF",
    "TEMPLATE_DEPTH_SNAPSHOT",
    "TEMPLATE_TRADES",
    "SbeDecoder",
    "compiled_available",
]

SCHEMA_ID: Final = 1
"""The ``schemaId`` of Binance's spot market-data stream schema (``stream_1_0.xml``)."""
SCHEMA_VERSION: Final = 0
"""The schema version this decoder reads; frames of other versions are ``unknown_version``."""
HEADER_SIZE: Final = 8

TEMPLATE_TRADES: Final = 10000
TEMPLATE_BEST_BID_ASK: Final = 10001
TEMPLATE_DEPTH_SNAPSHOT: Final = 10002
TEMPLATE_DEPTH_DIFF: Final = 10003

STREAM_SUFFIXES: Final[dict[int, str]] = {
    TEMPLATE_TRADES: "@trade",
    TEMPLATE_BEST_BID_ASK: "@bestBidAsk",
    TEMPLATE_DEPTH_SNAPSHOT: "@depth20",
    TEMPLATE_DEPTH_DIFF: "@depth",
}
"""What follows the lowercase symbol in the stream name of each template."""

ROOT_SIZES: Final[dict[int, int]] = {
    TEMPLATE_TRADES: 18,
    TEMPLATE_BEST_BID_ASK: 50,
    TEMPLATE_DEPTH_SNAPSHOT: 18,
    TEMPLATE_DEPTH_DIFF: 26,
}
"""The root block size of each template in schema version 0 (a frame may declare more)."""

TRADE_ENTRY_SIZE: Final = 25
LEVEL_ENTRY_SIZE: Final = 16
_OVERFLOW_ROUTES: Final = 1024
_INT53: Final = 2**53

_HEADER: Final = struct.Struct("<HHHH")
_TRADES_ROOT: Final = struct.Struct("<qqbb")
_BEST_BID_ASK_ROOT: Final = struct.Struct("<qqbbqqqq")
_SNAPSHOT_ROOT: Final = struct.Struct("<qqbb")
_DIFF_ROOT: Final = struct.Struct("<qqqbb")
_GROUP: Final = struct.Struct("<HI")
_GROUP16: Final = struct.Struct("<HH")
_TRADE: Final = struct.Struct("<qqqB")
_LEVEL: Final = struct.Struct("<qq")

# 10**k is an exact double up to k = 22: a mantissa below 2**53 (also exact) divided or multiplied
# by it is then one IEEE operation, hence correctly rounded. Anything else takes exact integers.
_EXACT_POWERS: Final = tuple(float(10**k) for k in range(23))


def _float(mantissa: int, exponent: int) -> float:
    if -_INT53 < mantissa < _INT53:
        if -22 <= exponent < 0:
            return mantissa / _EXACT_POWERS[-exponent]
        if 0 <= exponent <= 22:
            return mantissa * _EXACT_POWERS[exponent]
    if exponent < 0:
        divisor: int = 10**-exponent
        return mantissa / divisor  # int / int: correctly rounded
    return float(mantissa * 10**exponent)  # int -> float: correctly rounded


def _str(mantissa: int, exponent: int) -> str:
    if exponent >= 0:
        return str(mantissa * 10**exponent)
    digits = str(abs(mantissa)).rjust(1 - exponent, "0")
    text = f"{digits[:exponent]}.{digits[exponent:]}"
    return "-" + text if mantissa < 0 else text


def _decimal(mantissa: int, exponent: int) -> Decimal:
    return Decimal(_str(mantissa, exponent))


_NUMBERS: Final[dict[Any, Callable[[int, int], Any]]] = {
    float: _float,
    str: _str,
    Decimal: _decimal,
}
_PRICE_MODES: Final[dict[Any, int]] = {float: 0, str: 1, Decimal: 2}


def compiled_available() -> bool:
    """Whether the C extension ``fastmd._sbe`` is importable (built by ``pip install -e .``)."""
    return _load_compiled() is not None


def _load_compiled() -> Any:
    try:
        return importlib.import_module("fastmd._sbe")
    except ImportError:
        return None


def _pure_python_requested() -> bool:
    return os.environ.get("FASTMD_PURE_PYTHON", "") not in ("", "0")


Route = tuple[str, type[Message[Any]], Any]
"""What a template and a symbol resolve to: the event's symbol string, the message class of the
stream and the event class."""


class SbeDecoder:
    """Decodes Binance spot SBE frames (one binary frame at a time) into :class:`Message` lists.

    :class:`fastmd.Decoder` with ``encoding="sbe"`` wraps one of these; use that. Build one per
    connection and reuse it: stream routes are created once per stream and kept.

    Args:
        price_type: ``float`` (default), ``str`` or ``Decimal``: see the module's rules.
        max_frame_size: frames longer than this (bytes) are ``oversized``, before any parsing.
        max_streams: how many streams keep their route for good; further streams share a small
            LRU, so memory stays bounded whatever symbols a peer sends.
        compiled: ``None`` (default) uses the C extension when importable and
            ``FASTMD_PURE_PYTHON`` is not set; ``True`` requires it (ImportError otherwise);
            ``False`` uses the pure-Python implementation.
        error_counts: the counter errors are counted in (per category); a new one by default.
    """

    def __init__(
        self,
        *,
        price_type: PriceType = float,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        compiled: bool | None = None,
        error_counts: Counter[Cat] | None = None,
    ) -> None:
        if price_type not in _NUMBERS:
            raise ValueError(f"price_type must be float, str or Decimal, not {price_type!r}")
        if max_frame_size <= 0 or max_streams <= 0:
            raise ValueError("max_frame_size and max_streams must be positive")
        self.price_type = price_type
        self.max_frame_size = max_frame_size
        self.max_streams = max_streams
        self.error_counts: Counter[Cat] = Counter() if error_counts is None else error_counts
        """Errors raised so far, per :class:`fastmd.DecodeErrorCategory`."""
        self._number = _NUMBERS[price_type]
        # routes kept for good, one table per template (indexed by templateId - 10000), then
        # an LRU shared by all templates
        self._routes: tuple[dict[bytes, Route], ...] = ({}, {}, {}, {})
        self._overflow: OrderedDict[tuple[int, bytes], Route] = OrderedDict()
        module = None
        if compiled is None:
            module = None if _pure_python_requested() else _load_compiled()
        elif compiled:
            module = _load_compiled()
            if module is None:
                raise ImportError("the C extension fastmd._sbe is not built (pip install -e .)")
        self._compiled: Any = None
        if module is not None:
            self._compiled = module.Decoder(
                self._route, self._error, _PRICE_MODES[price_type], Decimal
            )
        self.compiled: bool = module is not None
        """True when frames are decoded by the C extension, False for the pure-Python one."""
        self.fast_decode: Callable[[bytes | bytearray | memoryview], list[Message[Any]]] = (
            self._compiled.decode if self._compiled is not None else self._decode_buffer
        )
        """:meth:`decode` without the ``max_frame_size`` check, for hot paths whose transport
        already caps frame size: the C extension's entry point itself when it is in use."""

    def decode(self, frame: bytes | bytearray | memoryview) -> list[Message[Any]]:
        """Decode one binary frame into its messages, in wire order (several for a trades frame,
        none for a trades frame with an empty group).

        Raises:
            DecodeError: the frame is not a valid message of the schema; ``category`` says why.
        """
        if len(frame) > self.max_frame_size:
            raise self._error(
                "oversized",
                f"frame of {len(frame)} bytes exceeds max_frame_size={self.max_frame_size}",
            )
        return self.fast_decode(frame)

    def _decode_buffer(self, frame: bytes | bytearray | memoryview) -> list[Message[Any]]:
        return self._decode(frame if type(frame) is bytes else bytes(frame))

    # -- shared by both implementations -------------------------------------------------------

    def _error(self, category: str, detail: str, stream: str | None = None) -> DecodeError:
        """The counted error of ``category`` (a :class:`DecodeErrorCategory` value)."""
        cat = Cat(category)
        self.error_counts[cat] += 1
        where = f" (stream {stream!r})" if stream else ""
        return DecodeError(f"{cat.value}: {detail}{where}", cat, stream=stream)

    def _route(self, template: int, raw_symbol: bytes) -> Route:
        """The route of ``template``'s stream for the frame's symbol bytes, created on first use.

        Raises:
            DecodeError: the symbol is not UTF-8, or makes no valid stream name.
        """
        table = self._routes[template - TEMPLATE_TRADES]
        known = table.get(raw_symbol)
        if known is not None:
            return known
        key = (template, raw_symbol)
        known = self._overflow.get(key)
        if known is not None:
            self._overflow.move_to_end(key)
            return known
        try:
            symbol = raw_symbol.decode("utf-8")
        except UnicodeDecodeError as bad:
            error = self._error(
                "invalid_utf8", f"symbol {raw_symbol!r}: invalid UTF-8 at byte {bad.start}"
            )
            raise error from bad
        try:
            validate_symbol(symbol, "binance-spot")
        except StreamNameError as bad:
            raise self._error("unroutable", f"the frame's symbol makes no stream: {bad}") from bad
        route = self._new_route(template, symbol)
        if sum(map(len, self._routes)) < self.max_streams:
            table[raw_symbol] = route
        else:
            self._overflow[key] = route
            if len(self._overflow) > _OVERFLOW_ROUTES:
                self._overflow.popitem(last=False)
        return route

    def _new_route(self, template: int, symbol: str) -> Route:
        name = symbol.lower() + STREAM_SUFFIXES[template]
        number: Any = self.price_type
        event_cls: Any
        event_type: Any
        if template == TEMPLATE_TRADES:
            event_cls, event_type = ev.Trade, ev.Trade[number]
        elif template == TEMPLATE_BEST_BID_ASK:
            event_cls, event_type = ev.BookTicker, ev.BookTicker[number]
        elif template == TEMPLATE_DEPTH_DIFF:
            event_cls, event_type = ev.DepthUpdate, ev.DepthUpdate[number]
        else:
            event_cls = event_type = partial_depth_type(symbol, self.price_type)
        message_cls: Any = msgspec.defstruct(
            "Message",
            [("event", event_type, field(name="data"))],
            bases=(Message,),
            tag=name,
            namespace={"stream": name, "__module__": Message.__module__},
            frozen=True,
            gc=False,
        )
        return symbol, message_cls, event_cls

    # -- the pure-Python implementation ---------------------------------------------------------

    def _decode(self, view: bytes) -> list[Message[Any]]:
        size = len(view)
        if size < HEADER_SIZE:
            raise self._error(
                "truncated", f"frame of {size} bytes is shorter than the 8-byte message header"
            )
        block_length, template, schema_id, version = _HEADER.unpack_from(view)
        if schema_id != SCHEMA_ID:
            raise self._error(
                "schema_mismatch", f"schemaId {schema_id} is not Binance's spot stream schema 1"
            )
        if version != SCHEMA_VERSION:
            raise self._error(
                "unknown_version",
                f"schema 1 version {version} is not known (this fastmd reads version 0)",
            )
        root_size = ROOT_SIZES.get(template)
        if root_size is None:
            raise self._error("unknown_template", f"templateId {template} is not a stream event")
        if block_length < root_size:
            raise self._error(
                "block_too_short",
                f"root block of {block_length} bytes; template {template} needs {root_size}",
            )
        position = HEADER_SIZE + block_length
        if position > size:
            raise self._error(
                "truncated", f"root block of {block_length} bytes runs past the frame's {size}"
            )
        groups: list[tuple[int, int, int]] = []  # (first entry's offset, entry length, count)
        if template == TEMPLATE_TRADES:
            position = self._group(view, position, _GROUP, TRADE_ENTRY_SIZE, groups)
        elif template != TEMPLATE_BEST_BID_ASK:
            position = self._group(view, position, _GROUP16, LEVEL_ENTRY_SIZE, groups)
            position = self._group(view, position, _GROUP16, LEVEL_ENTRY_SIZE, groups)
        if position >= size:
            raise self._error("truncated", f"the symbol's length byte is past the frame's {size}")
        length = view[position]
        position += 1
        if position + length > size:
            raise self._error(
                "truncated", f"symbol of {length} bytes runs past the frame's {size} bytes"
            )
        raw_symbol = view[position : position + length]
        route = self._routes[template - TEMPLATE_TRADES].get(raw_symbol)
        symbol, message_cls, event_cls = route or self._route(template, raw_symbol)
        stream: str = message_cls.stream
        number = self._number
        if template == TEMPLATE_TRADES:
            event_time, transact_time, price_exp, qty_exp = _TRADES_ROOT.unpack_from(view, 8)
            if event_time < 0 or transact_time < 0:
                self._negative(stream, ("eventTime", event_time), ("transactTime", transact_time))
            offset, step, count = groups[0]
            messages: list[Message[Any]] = []
            for at in range(offset, offset + step * count, step):
                trade_id, price, qty, maker = _TRADE.unpack_from(view, at)
                if trade_id < 0:
                    self._negative(stream, ("trade id", trade_id))
                if maker > 1:
                    raise self._error("wrong_type", f"isBuyerMaker is {maker}, not 0 or 1", stream)
                event = event_cls(
                    event_time,
                    symbol,
                    trade_id,
                    number(price, price_exp),
                    number(qty, qty_exp),
                    transact_time,
                    maker == 1,
                )
                messages.append(message_cls(event))
            return messages
        if template == TEMPLATE_BEST_BID_ASK:
            event_time, update_id, price_exp, qty_exp, bid, bid_qty, ask, ask_qty = (
                _BEST_BID_ASK_ROOT.unpack_from(view, 8)
            )
            if event_time < 0 or update_id < 0:
                self._negative(stream, ("eventTime", event_time), ("bookUpdateId", update_id))
            event = event_cls(
                update_id,
                symbol,
                number(bid, price_exp),
                number(bid_qty, qty_exp),
                number(ask, price_exp),
                number(ask_qty, qty_exp),
                event_time,
            )
            return [message_cls(event)]
        if template == TEMPLATE_DEPTH_SNAPSHOT:
            event_time, update_id, price_exp, qty_exp = _SNAPSHOT_ROOT.unpack_from(view, 8)
            if event_time < 0 or update_id < 0:
                self._negative(stream, ("eventTime", event_time), ("bookUpdateId", update_id))
            bids = self._levels(view, groups[0], price_exp, qty_exp)
            asks = self._levels(view, groups[1], price_exp, qty_exp)
            return [message_cls(event_cls(update_id, bids, asks, event_time))]
        event_time, first_id, last_id, price_exp, qty_exp = _DIFF_ROOT.unpack_from(view, 8)
        if event_time < 0 or first_id < 0 or last_id < 0:
            self._negative(
                stream,
                ("eventTime", event_time),
                ("firstBookUpdateId", first_id),
                ("lastBookUpdateId", last_id),
            )
        bids = self._levels(view, groups[0], price_exp, qty_exp)
        asks = self._levels(view, groups[1], price_exp, qty_exp)
        event = event_cls(event_time, symbol, first_id, last_id, bids, asks)
        return [message_cls(event)]

    def _group(
        self,
        view: bytes,
        position: int,
        header: struct.Struct,
        entry_size: int,
        groups: list[tuple[int, int, int]],
    ) -> int:
        """Check the group at ``position`` fits the frame; note it in ``groups``; its end."""
        size = len(view)
        if position + header.size > size:
            raise self._error(
                "truncated", f"group header at byte {position} runs past the frame's {size}"
            )
        step: int
        count: int
        step, count = header.unpack_from(view, position)
        position += header.size
        if step < entry_size:
            raise self._error(
                "block_too_short", f"group entries of {step} bytes; the schema's are {entry_size}"
            )
        if step * count > size - position:
            raise self._error(
                "truncated",
                f"group of {count} entries of {step} bytes runs past the frame's {size} bytes",
            )
        groups.append((position, step, count))
        return position + step * count

    def _negative(self, stream: str, *values: tuple[str, int]) -> None:
        """Raise the error of the first negative one of ``values`` (ids and times)."""
        for name, value in values:
            if value < 0:
                raise self._error("out_of_range", f"{name} is negative ({value})", stream)

    def _levels(
        self, view: bytes, group: tuple[int, int, int], price_exp: int, qty_exp: int
    ) -> list[tuple[Any, Any]]:
        offset, step, count = group
        if step == LEVEL_ENTRY_SIZE:
            pairs: Any = _LEVEL.iter_unpack(view[offset : offset + step * count])
        else:
            pairs = (
                _LEVEL.unpack_from(view, at) for at in range(offset, offset + step * count, step)
            )
        number = self._number
        if number is _float and -22 <= price_exp <= 0 and -22 <= qty_exp <= 0:
            # _float inlined for the usual exponents: the same exact divisions, same results
            price_scale, qty_scale = _EXACT_POWERS[-price_exp], _EXACT_POWERS[-qty_exp]
            low, high = -_INT53, _INT53
            return [
                (
                    price / price_scale if low < price < high else _float(price, price_exp),
                    qty / qty_scale if low < qty < high else _float(qty, qty_exp),
                )
                for price, qty in pairs
            ]
        return [(number(price, price_exp), number(qty, qty_exp)) for price, qty in pairs]
