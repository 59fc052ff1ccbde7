"""Single-pass decoding of Binance frames into typed events.

How one pass works: every stream the decoder knows gets its own :class:`Message` subclass,
tagged with the stream name (msgspec ``tag_field="stream"``) and typed with the stream's event.
The union of those classes is one msgspec decoder, so a combined frame
``{"stream": "btcusdt@trade", "data": {...}}`` is routed by its first key and the payload is
decoded straight into a ``Trade`` in the same pass; the stream name is never copied into a new
string. Streams are registered up front (:meth:`Decoder.register`, the client does this when it
subscribes) or learned from the first frame that names them.

Everything the fast path cannot take (unknown streams, raw payloads, control replies, bad input)
falls to a slower path that classifies the frame; bad input raises :class:`fastmd.DecodeError` with
its category, read from the frame itself (rules below, before ``_classify``), and a counter per
category is kept in :attr:`Decoder.error_counts`.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import lru_cache
from itertools import accumulate
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Literal, TypeAlias, Union

import msgspec
import msgspec.inspect as mi
from msgspec import UNSET, Raw, UnsetType, field
from typing_extensions import TypeVar

from fastmd.core import events as ev
from fastmd.core.streams import ARRAY_KINDS, Stream, StreamKind, Venue, parse_stream
from fastmd.errors import DecodeError, DecodeErrorCategory as Cat, InvalidState, StreamNameError

if TYPE_CHECKING:
    from fastmd.core.sbe import SbeDecoder

__all__ = ["Decoder", "Message", "PriceType"]

E = TypeVar("E", default=Any)

PriceType: TypeAlias = type[float] | type[str] | type[Decimal]
"""The number type of prices and quantities: ``float`` (default), ``str`` or ``Decimal``."""

Encoding: TypeAlias = Literal["json", "sbe"]

DEFAULT_MAX_FRAME_SIZE: Final = 4 * 1024 * 1024
DEFAULT_MAX_STREAMS: Final = 10_000
_OVERFLOW_ROUTES: Final = 1024


class Message(msgspec.Struct, Generic[E], frozen=True, gc=False, tag_field="stream"):
    """A decoded market-data frame: the ``stream`` it belongs to and its typed ``event``.

    ``msgspec.json.encode(message)`` writes Binance's combined-stream envelope back. Messages are
    made by :class:`Decoder` (each stream has its own subclass, which is how one decode pass routes
    the payload); use :meth:`Decoder.message` to build one by hand.
    """

    stream: ClassVar[str] = ""
    event: E = field(name="data")

    def __repr__(self) -> str:
        return f"Message(stream={self.stream!r}, event={self.event!r})"


_ERRORS: Final = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError, ValueError)


class _Probe(msgspec.Struct):
    """Just enough of an unknown frame to tell what it is; payloads stay undecoded (Raw)."""

    stream: str | UnsetType = UNSET
    data: Raw | UnsetType = UNSET
    e: str | UnsetType = UNSET
    id: Any = UNSET
    result: Raw | UnsetType = UNSET
    error: Raw | UnsetType = UNSET
    code: int | UnsetType = UNSET
    msg: str | UnsetType = UNSET


class _FlatControlError(msgspec.Struct):
    """The legacy flat error shape still in Binance's docs: ``{"code":0,"msg":...,"id":5}``."""

    code: int
    msg: str
    id: int | str | None = None


_probe_decoder: Final = msgspec.json.Decoder(_Probe)
_control_decoder: Final = msgspec.json.Decoder(ev.ControlReply)
_flat_control_decoder: Final = msgspec.json.Decoder(_FlatControlError)


# -- classifying bad input ------------------------------------------------------------------
#
# A frame that fails to decode is classified from the input alone, never from the wording or type
# of msgspec's exception (both change between msgspec releases). The rules, in order:
# 1. A frame that is not valid UTF-8 is INVALID_UTF8.
# 2. A frame that is not well-formed JSON (RFC 8259 as the standard library's parser reads it,
#    NaN and Infinity refused, and no \u escape that is half of a surrogate pair, which msgspec
#    refuses too) is TOO_DEEP when it nests more than _MAX_DEPTH arrays and objects, else NOT_JSON.
# 3. A well-formed frame is compared with the type it should have decoded to, in the order msgspec
#    reads it: an object's event tag first, then its keys in input order, then the keys it lacks.
#    The first difference gives UNKNOWN_EVENT, WRONG_TYPE, OUT_OF_RANGE or MISSING_FIELD.
# 4. When the comparison finds no difference (msgspec refused something it does not model), the
#    frame is TOO_DEEP when it nests more than _MAX_DEPTH levels, else WRONG_TYPE.
# Numbers are compared as written (their text), so no size or precision is lost before they are
# judged; msgspec's untyped decode would refuse some well-formed ones (over 4300 digits).

# How deeply a frame may nest before a failed decode is classed TOO_DEEP (docs/decoding.md says
# 256). msgspec follows nesting as deep as Python's recursion limit allows (about 1000 levels by
# default, fewer when called from deep in a stack), so a frame it gave up on for depth is always
# deeper than this; Binance frames nest 4 levels at most.
_MAX_DEPTH: Final = 256

_UNREADABLE: Final = frozenset({Cat.INVALID_UTF8, Cat.NOT_JSON, Cat.TOO_DEEP})
# a JSON string, escapes and all; an unclosed one runs to the end
_STRING: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKETS: Final = bytes(set(range(256)) - set(b"[]{}"))
_NESTING: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_ESCAPE: Final = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_NON_FINITE: Final = frozenset({"nan", "-nan", "inf", "-inf", "infinity", "-infinity"})
_FLOAT_MAX: Final = sys.float_info.max
_Mismatch: TypeAlias = tuple[Cat, str, str]  # category, path, what is wrong


class _Number:
    """A JSON number as written; ``integer`` when it has no fraction and no exponent."""

    __slots__ = ("integer", "text")

    def __init__(self, text: str, integer: bool) -> None:
        self.text = text
        self.integer = integer

    def exact(self) -> Decimal | None:
        """The number's value, or None when its exponent is beyond what Decimal can hold."""
        try:
            return Decimal(self.text)
        except ArithmeticError:
            return None


def _int_literal(text: str) -> _Number:
    return _Number(text, True)


def _float_literal(text: str) -> _Number:
    return _Number(text, False)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(data: bytes) -> bool:
    """Whether arrays and objects nest more than ``_MAX_DEPTH`` levels deep in ``data`` (brackets
    inside strings do not count). Reads in chunks and stops at the first level past the limit, so
    a hostile frame of nothing but ``[`` costs little."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), 4096):
        chunk = brackets[start : start + 4096]
        levels = list(accumulate(map(_NESTING.__getitem__, chunk), initial=depth))
        if max(levels) > _MAX_DEPTH:
            return True
        depth = levels[-1]
    return False


def _lone_surrogate(text: str) -> bool:
    """Whether a string of ``text`` (well-formed JSON) has a ``\\u`` escape that is half of a
    UTF-16 surrogate pair without its other half: no Unicode character, and msgspec refuses it."""
    if "\\u" not in text:
        return False
    awaiting = -1  # where an escaped high surrogate ended, while its low half is due
    for escape in _ESCAPE.finditer(text):
        unit = int(escape[1], 16) if escape[1] else -1
        low = 0xDC00 <= unit <= 0xDFFF
        if awaiting >= 0 or low:
            if not (low and escape.start() == awaiting):
                return True
            awaiting = -1
        elif 0xD800 <= unit <= 0xDBFF:
            awaiting = escape.end()
    return awaiting >= 0


@lru_cache(maxsize=256)
def _type_info(expected: Any) -> mi.Type:
    return mi.type_info(expected)


def _classify(
    frame: bytes | bytearray | memoryview, expected: Any, exc: BaseException, *, strict: bool
) -> tuple[Cat, str]:
    """Why ``frame`` does not decode to ``expected``, and a readable detail, by the rules above.

    ``exc`` (the error msgspec raised) is only quoted, when nothing more specific is found.
    """
    data = bytes(frame)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Cat.INVALID_UTF8, f"Invalid UTF-8 at byte {bad.start}"
    try:
        value = json.loads(
            text,
            parse_int=_int_literal,
            parse_float=_float_literal,
            parse_constant=_refuse_constant,
        )
    except (ValueError, RecursionError) as bad:
        return _too_deep_or(data, Cat.NOT_JSON, f"Malformed JSON: {bad}")
    if _lone_surrogate(text):
        return Cat.NOT_JSON, "Malformed JSON: a \\u escape is half of a surrogate pair"
    found = _mismatch(value, _type_info(expected), not strict, "$")
    if found is not None:
        category, path, what = found
        return category, f"{what} - at `{path}`"
    return _too_deep_or(data, Cat.WRONG_TYPE, f"A value does not convert (msgspec: {exc})")


def _too_deep_or(data: bytes, category: Cat, detail: str) -> tuple[Cat, str]:
    if _too_deep(data):
        return Cat.TOO_DEEP, f"Arrays and objects nest more than {_MAX_DEPTH} levels deep"
    return category, detail


_EXPECTED_NAMES: Final[dict[type[mi.Type], str]] = {
    mi.IntType: "int",
    mi.FloatType: "float",
    mi.DecimalType: "decimal",
    mi.StrType: "str",
    mi.BoolType: "bool",
    mi.NoneType: "null",
    mi.StructType: "object",
    mi.DictType: "object",
    mi.ListType: "array",
    mi.VarTupleType: "array",
}


def _expected_name(info: mi.Type) -> str:
    if isinstance(info, mi.UnionType):
        return " | ".join(dict.fromkeys(_expected_name(t) for t in info.types))
    if isinstance(info, mi.TupleType):
        return f"array of length {len(info.item_types)}"
    return _EXPECTED_NAMES.get(type(info), type(info).__name__)


def _kind(value: Any) -> str:
    if isinstance(value, _Number):
        return "int" if value.integer else "float"
    names = {type(None): "null", bool: "bool", str: "str", list: "array", dict: "object"}
    return names[type(value)]


def _wrong(info: mi.Type, value: Any, path: str) -> _Mismatch:
    return Cat.WRONG_TYPE, path, f"Expected `{_expected_name(info)}`, got `{_kind(value)}`"


def _mismatch(value: Any, info: mi.Type, lax: bool, path: str) -> _Mismatch | None:
    """The first way ``value`` (parsed JSON) differs from the msgspec type ``info``, or None.

    ``lax`` is msgspec's ``strict=False``: numeric strings for numbers, ``"true"`` for bools.
    """
    if isinstance(info, mi.StructType):
        return _struct_mismatch(value, info, lax, path)
    if isinstance(info, mi.UnionType):
        return _union_mismatch(value, info, lax, path)
    if isinstance(info, mi.IntType | mi.FloatType):
        return _number_mismatch(value, info, lax, path)
    if isinstance(info, mi.ListType | mi.VarTupleType | mi.TupleType):
        if not isinstance(value, list) or (
            isinstance(info, mi.TupleType) and len(value) != len(info.item_types)
        ):
            return _wrong(info, value, path)
        types = info.item_types if isinstance(info, mi.TupleType) else [info.item_type] * len(value)
        for i, (item, item_type) in enumerate(zip(value, types, strict=True)):
            found = _mismatch(item, item_type, lax, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(info, mi.StrType):
        ok = isinstance(value, str)
    elif isinstance(info, mi.DecimalType):
        ok = isinstance(value, _Number) or (
            isinstance(value, str) and _Number(value, False).exact() is not None
        )
    elif isinstance(info, mi.BoolType):
        ok = isinstance(value, bool) or (lax and _lax_bool(value))
    elif isinstance(info, mi.NoneType):
        ok = value is None or (lax and isinstance(value, str) and value.lower() == "null")
    elif isinstance(info, mi.DictType):
        ok = isinstance(value, dict)
    else:
        return None  # Any, Raw, and types no frame uses: no opinion
    return None if ok else _wrong(info, value, path)


def _struct_mismatch(value: Any, info: mi.StructType, lax: bool, path: str) -> _Mismatch | None:
    if not isinstance(value, dict):
        return _wrong(info, value, path)
    if info.tag_field is not None and info.tag_field in value:
        found = _tag_mismatch(value[info.tag_field], [info], f"{path}.{info.tag_field}")
        if found is not None:
            return found
    fields = {f.encode_name: f for f in info.fields}
    for key, item in value.items():
        field_info = fields.get(key)
        if field_info is not None:
            found = _mismatch(item, field_info.type, lax, f"{path}.{key}")
            if found is not None:
                return found
    for field_info in info.fields:
        if field_info.required and field_info.encode_name not in value:
            name = field_info.encode_name
            return Cat.MISSING_FIELD, path, f"Object missing required field `{name}`"
    return None


def _tag_mismatch(tag: Any, structs: list[mi.StructType], path: str) -> _Mismatch | None:
    if any(tag == s.tag for s in structs):
        return None
    if not isinstance(tag, str):
        return Cat.WRONG_TYPE, path, f"Expected `str`, got `{_kind(tag)}`"
    tags = ", ".join(repr(s.tag) for s in structs[:3]) + (", ..." if len(structs) > 3 else "")
    return Cat.UNKNOWN_EVENT, path, f"Unknown event type {_shorten(repr(tag))}, expected {tags}"


def _union_mismatch(value: Any, info: mi.UnionType, lax: bool, path: str) -> _Mismatch | None:
    structs = [t for t in info.types if isinstance(t, mi.StructType)]
    tag_field = structs[0].tag_field if structs else None
    if isinstance(value, dict) and len(structs) > 1 and tag_field is not None:
        # a tagged union: the tag alone picks the struct
        if tag_field not in value:
            return Cat.MISSING_FIELD, path, f"Object missing required field `{tag_field}`"
        chosen = [s for s in structs if s.tag == value[tag_field]]
        if not chosen:
            return _tag_mismatch(value[tag_field], structs, f"{path}.{tag_field}")
        return _struct_mismatch(value, chosen[0], lax, path)
    found = [_mismatch(value, t, lax, path) for t in info.types]
    if None in found:
        return None
    # the member that got furthest into the value explains best; then a specific category
    best = max(
        (f for f in found if f is not None),
        key=lambda f: (len(f[1]), f[0] is not Cat.WRONG_TYPE),
    )
    if best[0] is Cat.WRONG_TYPE and best[1] == path:
        return _wrong(info, value, path)
    return best


def _lax_number(value: str) -> _Number | None:
    match = _JSON_NUMBER.fullmatch(value)
    return None if match is None else _Number(value, not (match[1] or match[2]))


def _lax_bool(value: Any) -> bool:
    """msgspec's lax bools: ``"true"``/``"false"`` in any case, and 0 or 1 as an int or a
    numeric string."""
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return True
        value = _lax_number(value)
    return isinstance(value, _Number) and value.integer and value.exact() in (0, 1)


def _number_mismatch(
    value: Any, info: mi.IntType | mi.FloatType, lax: bool, path: str
) -> _Mismatch | None:
    is_int = isinstance(info, mi.IntType)
    number = value if isinstance(value, _Number) else None
    if lax and isinstance(value, str):
        number = _lax_number(value)
        if number is None and not is_int and value.lower() in _NON_FINITE:
            return None
    if number is None or (is_int and not lax and not number.integer):
        return _wrong(info, value, path)
    exact = number.exact()
    if exact is not None and is_int and exact != exact.to_integral_value():
        return _wrong(info, value, path)  # lax mode takes only integral floats for ints
    if exact is not None and _within(exact, info) and (is_int or exact.copy_abs() <= _FLOAT_MAX):
        return None
    return Cat.OUT_OF_RANGE, path, f"Expected {_range(info)}, got {_shorten(number.text)}"


def _within(exact: Decimal, info: mi.IntType | mi.FloatType) -> bool:
    return (
        (info.gt is None or exact > info.gt)
        and (info.ge is None or exact >= info.ge)
        and (info.lt is None or exact < info.lt)
        and (info.le is None or exact <= info.le)
    )


def _range(info: mi.IntType | mi.FloatType) -> str:
    limits = ((">", info.gt), (">=", info.ge), ("<", info.lt), ("<=", info.le))
    shown = " and ".join(f"{op} {limit}" for op, limit in limits if limit is not None)
    return f"`{_expected_name(info)}` {shown or 'within its range'}"


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


_KIND_EVENTS: Final[dict[StreamKind, Any]] = {
    StreamKind.TRADE: ev.Trade,
    StreamKind.AGG_TRADE: ev.AggTrade,
    StreamKind.BLOCK_TRADE: ev.BlockTrade,
    StreamKind.KLINE: ev.Kline,
    StreamKind.MINI_TICKER: ev.MiniTicker,
    StreamKind.TICKER: ev.Ticker,
    StreamKind.BOOK_TICKER: ev.BookTicker,
    StreamKind.AVG_PRICE: ev.AvgPrice,
    StreamKind.REFERENCE_PRICE: ev.ReferencePrice,
    StreamKind.DEPTH: ev.DepthUpdate,
    StreamKind.MARK_PRICE: ev.MarkPrice,
    StreamKind.FORCE_ORDER: ev.ForceOrder,
    StreamKind.ALL_BOOK_TICKERS: ev.BookTicker,
    StreamKind.ALL_FORCE_ORDERS: ev.ForceOrder,
    StreamKind.CONTINUOUS_KLINE: ev.ContinuousKline,
    StreamKind.COMPOSITE_INDEX: ev.CompositeIndex,
    StreamKind.RPI_DEPTH: ev.DepthUpdate,
}
_PLAIN_EVENTS: Final[dict[StreamKind, Any]] = {
    StreamKind.ALL_CONTRACT_INFO: ev.ContractInfo,  # no price: not generic in P
}
_ARRAY_EVENTS: Final[dict[StreamKind, Any]] = {
    StreamKind.ALL_MINI_TICKERS: ev.MiniTicker,
    StreamKind.ALL_TICKERS: ev.Ticker,
    StreamKind.ALL_MARK_PRICES: ev.MarkPrice,
    StreamKind.ALL_ASSET_INDEXES: ev.AssetIndex,
}
_WINDOW_EVENTS: Final[dict[str | None, Any]] = {
    "1h": ev.Ticker1h,
    "4h": ev.Ticker4h,
    "1d": ev.Ticker1d,
}


def event_class(stream: Stream, venue: Venue = "binance-spot") -> type | None:
    """The event class one frame of ``stream`` decodes to on ``venue`` (unparameterised:
    ``fastmd.BookTicker``, not ``BookTicker[float]``), or ``None`` for all-market streams that
    deliver lists and for ``!serverShutdown``."""
    kind = stream.kind
    if kind is StreamKind.PARTIAL_DEPTH:
        return ev.DepthUpdate if venue == "binance-usdm" else ev.PartialDepth
    if kind is StreamKind.WINDOW_TICKER:
        cls: type = _WINDOW_EVENTS[stream.window]
        return cls
    if kind in ARRAY_KINDS or kind is StreamKind.SERVER_SHUTDOWN:
        return None
    found: type | None = _KIND_EVENTS.get(kind) or _PLAIN_EVENTS.get(kind)
    return found


def partial_depth_type(symbol: str, price_type: PriceType) -> Any:
    """The :class:`fastmd.PartialDepth` subclass that spot partial depth of ``symbol`` decodes
    to, with prices and quantities of ``price_type``.

    Spot partial depth has no symbol in its payload: a subclass per symbol carries it as a class
    attribute, so filling it costs nothing per frame. The JSON and SBE decoders both use it.
    """
    number: Any = price_type
    levels = list[tuple[number, number]]
    return msgspec.defstruct(
        "PartialDepth",
        [("bids", levels), ("asks", levels)],
        bases=(ev.PartialDepth,),
        namespace={"symbol": symbol.upper(), "__module__": ev.__name__},
        frozen=True,
        gc=False,
    )


# Raw (unwrapped) payloads that carry their event type; used when no stream is known.
_TAGGED_EVENTS: Final = (
    ev.Trade, ev.AggTrade, ev.BlockTrade, ev.Kline, ev.MiniTicker, ev.Ticker, ev.Ticker1h,
    ev.Ticker4h, ev.Ticker1d, ev.BookTicker, ev.AvgPrice, ev.ReferencePrice, ev.DepthUpdate,
    ev.MarkPrice, ev.ForceOrder, ev.ContinuousKline, ev.CompositeIndex,
)  # fmt: skip
_TAGGED_PLAIN_EVENTS: Final = (ev.ServerShutdown, ev.ContractInfo)  # not generic in P
_SHUTDOWN_STREAM: Final = "!serverShutdown"


class Decoder:
    """Decodes Binance frames of one venue into :class:`Message` objects (or control replies).

    Build one per connection (or per recording) and reuse it: its msgspec decoders are built once
    and rebuilt only when new streams are registered.

    Args:
        venue: ``"binance-spot"`` or ``"binance-usdm"``; decides the stream grammar and shapes.
        price_type: ``float`` (default), or ``str``/``Decimal`` for exact prices and quantities.
            In float mode numbers are converted inside msgspec's single pass, which also accepts
            numeric strings where Binance sends integers (``"t": "5"``); exact modes are strict.
        max_frame_size: frames longer than this (bytes) are rejected before any parsing.
        max_streams: how many distinct streams get a fast-path route; frames of further streams
            still decode, on the slower path.
        encoding: ``"json"`` (default), or ``"sbe"`` for Binance spot's binary (SBE) market data
            (``binance-spot`` only; see docs/sbe.md and :mod:`fastmd.core.sbe`). An SBE decoder's
            :meth:`decode` takes one binary frame and returns a list of :class:`Message`; the text
            frames of an SBE connection (control replies, ``serverShutdown``) go to
            :meth:`decode_json`.
    """

    def __init__(
        self,
        venue: Venue = "binance-spot",
        *,
        price_type: PriceType = float,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        encoding: Encoding = "json",
    ) -> None:
        if venue not in ("binance-spot", "binance-usdm"):
            raise ValueError(f"unknown venue {venue!r}; allowed: 'binance-spot', 'binance-usdm'")
        if encoding not in ("json", "sbe"):
            raise ValueError(f"unknown encoding {encoding!r}; allowed: 'json', 'sbe'")
        if encoding == "sbe" and venue != "binance-spot":
            raise ValueError(f"encoding='sbe' is spot market data only, not {venue!r}")
        if price_type not in (float, str, Decimal):
            raise ValueError(f"price_type must be float, str or Decimal, not {price_type!r}")
        if max_frame_size <= 0 or max_streams <= 0:
            raise ValueError("max_frame_size and max_streams must be positive")
        self.venue: Venue = venue
        self.price_type = price_type
        self.max_frame_size = max_frame_size
        self.max_streams = max_streams
        self.encoding: Encoding = encoding
        self.error_counts: Counter[Cat] = Counter()
        """Errors raised so far, per :class:`fastmd.DecodeErrorCategory` (both encodings)."""
        self._sbe: SbeDecoder | None = None
        self.fast_decode_sbe: Callable[[bytes | bytearray | memoryview], list[Message[Any]]]
        """On an SBE decoder: :meth:`decode_sbe` without the ``max_frame_size`` check, for hot
        paths whose transport already caps frame size (the C decoder's own entry point when it
        is built); raises :class:`fastmd.DecodeError`, counted. On a JSON decoder it raises
        :class:`fastmd.InvalidState`, as :meth:`decode_sbe` does."""
        if encoding == "sbe":
            from fastmd.core.sbe import SbeDecoder  # imports this module: loaded on demand

            self._sbe = SbeDecoder(
                price_type=price_type,
                max_frame_size=max_frame_size,
                max_streams=max_streams,
                error_counts=self.error_counts,
            )
            self.fast_decode_sbe = self._sbe.fast_decode
        else:
            self.fast_decode_sbe = self.decode_sbe
        self._strict = price_type is not float
        self._classes: dict[str, type[Message[Any]]] = {}
        self._payload_decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._overflow: OrderedDict[str, tuple[type[Message[Any]], msgspec.json.Decoder[Any]]]
        self._overflow = OrderedDict()
        self._routed: frozenset[str] = frozenset()  # the streams the fast decoder covers
        self._slow_since_build = 0
        tagged: tuple[Any, ...] = (
            *(t[price_type] for t in _TAGGED_EVENTS),
            *_TAGGED_PLAIN_EVENTS,
        )
        self._tagged_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            Union[tagged],  # noqa: UP007
            strict=self._strict,
        )
        self.fast_decode: Any = None
        """The single msgspec pass over combined frames of the registered streams, for hot
        paths whose transport already caps frame size: it raises msgspec's own errors (or
        UnicodeDecodeError/RecursionError); hand those to :meth:`recover`. Rebuilt when streams
        are registered, so read the attribute at each call rather than keeping it."""
        self._register(_SHUTDOWN_STREAM)
        self._rebuild()

    # -- public API -------------------------------------------------------------------------

    def decode(self, frame: bytes | bytearray | memoryview, stream: str | None = None) -> Any:
        """Decode one text frame (JSON) or, on an ``encoding="sbe"`` decoder, one binary frame.

        Args:
            frame: the frame's payload, as ``bytes`` or a ``memoryview`` (not copied).
            stream: the stream of a raw (unwrapped) frame, when the connection knows it. Needed for
                payloads that do not say it (spot partial depth); combined frames need none. SBE
                frames name their stream: ``stream`` must be ``None`` there.

        Returns:
            JSON: a :class:`Message`, or a :class:`fastmd.ControlReply` for replies to control
            requests. ``!serverShutdown`` arrives as a Message whose event is
            :class:`fastmd.ServerShutdown`. SBE: a ``list`` of :class:`Message`, as
            :meth:`decode_sbe`.

        Raises:
            DecodeError: the frame is not a valid frame of this venue; ``category`` says why.
        """
        if self._sbe is None and stream is None and len(frame) <= self.max_frame_size:
            try:
                return self.fast_decode(frame)
            except _ERRORS as exc:
                return self._decode_slow(frame, exc)
        if self._sbe is not None:
            if stream is not None:
                raise ValueError("SBE frames name their stream: pass no stream=")
            return self._sbe.decode(frame)
        return self.decode_json(frame, stream)

    def decode_sbe(self, frame: bytes | bytearray | memoryview) -> list[Message[Any]]:
        """Decode one binary SBE frame (``encoding="sbe"`` decoders only) into its messages, in
        wire order: one per trade of a ``<symbol>@trade`` frame (none when its group is empty),
        one for ``@bestBidAsk``, ``@depth`` and ``@depth20`` frames. Rules and number
        conversions: :mod:`fastmd.core.sbe`.

        Raises:
            DecodeError: the frame is not a valid message of Binance's spot stream schema;
                ``category`` says why (``truncated``, ``unknown_template``...). Counted in
                :attr:`error_counts`.
            InvalidState: the decoder was built with ``encoding="json"``.
        """
        if self._sbe is None:
            raise InvalidState("decode_sbe needs a decoder built with encoding='sbe'")
        return self._sbe.decode(frame)

    def decode_json(self, frame: bytes | bytearray | memoryview, stream: str | None = None) -> Any:
        """Decode one JSON text frame, whatever the decoder's encoding (an SBE connection's
        control replies and ``serverShutdown`` are JSON text); arguments, result and errors as
        :meth:`decode` on a JSON decoder."""
        if stream is None and len(frame) <= self.max_frame_size:
            try:
                return self.fast_decode(frame)
            except _ERRORS as exc:
                return self._decode_slow(frame, exc)
        if len(frame) > self.max_frame_size:
            raise self._error(
                f"frame of {len(frame)} bytes exceeds max_frame_size={self.max_frame_size}",
                Cat.OVERSIZED,
                stream,
            )
        assert stream is not None
        return self._decode_raw(frame, stream)

    def recover(self, frame: bytes | bytearray | memoryview, error: Exception) -> Any:
        """Finish decoding a frame that :attr:`fast_decode` raised ``error`` on: learn a new
        stream, route a control reply or a raw payload, or raise the classified error.

        Raises:
            DecodeError: as :meth:`decode`.
        """
        if len(frame) > self.max_frame_size:
            raise self._error(
                f"frame of {len(frame)} bytes exceeds max_frame_size={self.max_frame_size}",
                Cat.OVERSIZED,
            )
        return self._decode_slow(frame, error)

    def reject_binary(self, frame: bytes | bytearray | memoryview) -> DecodeError:
        """Count a binary frame received on a JSON connection and return the error to report."""
        return self._error(f"binary frame of {len(frame)} bytes on a JSON stream", Cat.BINARY_FRAME)

    def register(self, streams: Iterable[str]) -> None:
        """Give ``streams`` a fast-path route now rather than on their first frame.

        Raises:
            StreamNameError: a name is not a valid stream of this venue (none is registered then).
        """
        names = list(streams)
        for name in names:
            parse_stream(name, self.venue)
        for name in names:
            self._register(name)
        self._rebuild()

    def message(self, stream: str, event: Any) -> Message[Any]:
        """Wrap ``event`` as the :class:`Message` of ``stream``, as decoding would.

        Raises:
            StreamNameError: ``stream`` is not a valid stream of this venue.
        """
        return self._route(stream)[0](event)

    @property
    def streams(self) -> frozenset[str]:
        """The streams this decoder has a fast-path route for; ``!serverShutdown`` is always
        one of them and does not count toward ``max_streams``."""
        return frozenset(self._classes)

    # -- routes -----------------------------------------------------------------------------

    def event_type(self, stream: Stream) -> Any:
        """The event type frames of ``stream`` decode to, for this decoder's number type."""
        kind, p = stream.kind, self.price_type
        if kind is StreamKind.SERVER_SHUTDOWN:
            return ev.ServerShutdown
        if kind in _PLAIN_EVENTS:
            return _PLAIN_EVENTS[kind]
        if kind is StreamKind.PARTIAL_DEPTH:
            if self.venue == "binance-usdm":
                return ev.DepthUpdate[p]  # type: ignore[valid-type]
            return partial_depth_type(stream.symbol or "", self.price_type)
        if kind is StreamKind.WINDOW_TICKER:
            return _WINDOW_EVENTS[stream.window][p]
        if kind is StreamKind.ALL_WINDOW_TICKERS:
            return list[_WINDOW_EVENTS[stream.window][p]]  # type: ignore[misc]
        if kind in _ARRAY_EVENTS:
            return list[_ARRAY_EVENTS[kind][p]]  # type: ignore[misc]
        return _KIND_EVENTS[kind][p]

    def _register(self, name: str) -> None:
        if name not in self._classes:
            self._route(name)

    def _route(self, name: str) -> tuple[type[Message[Any]], msgspec.json.Decoder[Any]]:
        """The message class of ``name`` and the decoder of its payload, created on first use.

        Up to ``max_streams`` streams are kept for good (and join the fast path); routes of
        further streams live in a small LRU, so memory stays bounded whatever a peer sends.
        """
        known = self._classes.get(name)
        if known is not None:
            return known, self._payload_decoders[name]
        overflow = self._overflow.get(name)
        if overflow is not None:
            self._overflow.move_to_end(name)
            return overflow
        event_type = self.event_type(parse_stream(name, self.venue))
        cls: Any = msgspec.defstruct(
            "Message",
            [("event", event_type, field(name="data"))],
            bases=(Message,),
            tag=name,
            namespace={"stream": name, "__module__": __name__},
            frozen=True,
            gc=False,
        )
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(event_type, strict=self._strict)
        if len(self._classes) < self.max_streams + 1:  # + the built-in !serverShutdown route
            self._classes[name] = cls
            self._payload_decoders[name] = decoder
        else:
            self._overflow[name] = (cls, decoder)
            if len(self._overflow) > _OVERFLOW_ROUTES:
                self._overflow.popitem(last=False)
        return cls, decoder

    def _rebuild(self) -> None:
        classes: tuple[Any, ...] = tuple(self._classes.values())
        self.fast_decode = msgspec.json.Decoder(
            Union[classes],  # noqa: UP007
            strict=self._strict,
        ).decode
        self._routed = frozenset(self._classes)
        self._slow_since_build = 0

    def _maybe_rebuild(self) -> None:
        # Learning streams one frame at a time must not cost a rebuild per frame: rebuild once
        # the slow path has been taken about as often as the union is large.
        self._slow_since_build += 1
        pending = len(self._classes) - len(self._routed)
        if pending and self._slow_since_build > len(self._routed) // 16:
            self._rebuild()

    # -- slow paths -------------------------------------------------------------------------

    def _error(self, message: str, category: Cat, stream: str | None = None) -> DecodeError:
        self.error_counts[category] += 1
        return DecodeError(message, category, stream=stream)

    def _wrap(
        self,
        exc: BaseException,
        frame: bytes | bytearray | memoryview,
        expected: Any,
        stream: str | None = None,
        what: str = "frame",
        *,
        strict: bool,
    ) -> DecodeError:
        """The counted error for ``frame``, which msgspec refused (``exc``) to decode as
        ``expected``; the category comes from the frame (see the rules above), not from ``exc``."""
        category, detail = _classify(frame, expected, exc, strict=strict)
        return self._report(category, detail, exc, stream, what)

    def _report(
        self,
        category: Cat,
        detail: str,
        exc: BaseException,
        stream: str | None = None,
        what: str = "frame",
    ) -> DecodeError:
        where = f" of stream {stream!r}" if stream else ""
        error = self._error(f"{category.value}: {what}{where}: {detail}", category, stream)
        error.__cause__ = exc
        return error

    def _probe(self, frame: bytes | bytearray | memoryview) -> _Probe:
        try:
            return _probe_decoder.decode(frame)
        except _ERRORS as inner:
            category, detail = _classify(frame, _Probe, inner, strict=True)
            if category not in _UNREADABLE:
                # Well-formed, but not an object whose stream, event type or request id has the
                # usual type (a raw array stream, a bare value): it needs its stream.
                category = Cat.UNROUTABLE
                detail = f"not a JSON object that names its stream; pass stream= ({detail})"
            raise self._report(category, detail, inner) from inner

    def _decode_slow(self, frame: bytes | bytearray | memoryview, exc: BaseException) -> Any:
        probe = self._probe(frame)
        if not isinstance(probe.stream, UnsetType):
            return self._decode_envelope(frame, probe, probe.stream, exc)
        if _is_control(probe):
            return self._decode_control(frame, probe)
        if not isinstance(probe.e, UnsetType):
            return self._decode_tagged(frame)
        raise self._error(
            "unroutable: payload names no stream and no event type; pass stream=",
            Cat.UNROUTABLE,
        ) from exc

    def _decode_envelope(
        self,
        frame: bytes | bytearray | memoryview,
        probe: _Probe,
        name: str,
        exc: BaseException,
    ) -> Message[Any]:
        if isinstance(probe.data, UnsetType):
            raise self._error(f"unroutable: envelope of {name!r} has no data", Cat.UNROUTABLE, name)
        if name in self._routed:  # the fast path knew the stream: the payload is bad
            cls = self._classes[name]
            raise self._wrap(exc, frame, cls, name, "payload", strict=self._strict) from exc
        try:
            cls, decoder = self._route(name)
        except StreamNameError as bad:
            raise self._error(f"unknown_stream: {bad}", Cat.UNKNOWN_STREAM, name) from bad
        self._maybe_rebuild()
        try:
            event = decoder.decode(probe.data)
        except _ERRORS as inner:
            raise self._wrap(inner, frame, cls, name, "payload", strict=self._strict) from inner
        return cls(event)

    def _decode_control(
        self, frame: bytes | bytearray | memoryview, probe: _Probe
    ) -> ev.ControlReply:
        if isinstance(probe.code, UnsetType):
            try:
                return _control_decoder.decode(frame)
            except _ERRORS as exc:
                error = self._wrap(exc, frame, ev.ControlReply, None, "control reply", strict=True)
                raise error from exc
        try:
            flat = _flat_control_decoder.decode(frame)
        except _ERRORS as exc:
            error = self._wrap(exc, frame, _FlatControlError, None, "control reply", strict=True)
            raise error from exc
        return ev.ControlReply(id=flat.id, error=ev.ControlError(code=flat.code, msg=flat.msg))

    def _decode_tagged(self, frame: bytes | bytearray | memoryview) -> Message[Any]:
        try:
            event = self._tagged_decoder.decode(frame)
        except _ERRORS as exc:
            expected = self._tagged_decoder.type
            raise self._wrap(exc, frame, expected, strict=self._strict) from exc
        if isinstance(event, ev.ServerShutdown):
            return self._route(_SHUTDOWN_STREAM)[0](event)
        name = _stream_of(event)
        try:
            return self._route(name)[0](event)
        except StreamNameError as bad:
            raise self._error(
                f"unroutable: payload's symbol makes no valid stream name: {bad}", Cat.UNROUTABLE
            ) from bad

    def _decode_raw(self, frame: bytes | bytearray | memoryview, stream: str) -> Any:
        try:
            cls, decoder = self._route(stream)
        except StreamNameError as bad:
            raise self._error(f"unknown_stream: {bad}", Cat.UNKNOWN_STREAM, stream) from bad
        try:
            return cls(decoder.decode(frame))
        except _ERRORS as exc:
            # Control replies and serverShutdown share raw connections with data.
            try:
                probe = _probe_decoder.decode(frame)
            except _ERRORS:
                probe = None
            if probe is not None and _is_control(probe):
                return self._decode_control(frame, probe)
            if probe is not None and probe.e == ev.ServerShutdown.__struct_config__.tag:
                return self._decode_tagged(frame)
            expected = decoder.type
            raise self._wrap(exc, frame, expected, stream, "payload", strict=self._strict) from exc


def _is_control(probe: _Probe) -> bool:
    """Replies to control requests: ``result``/``error`` with ``id``, or the flat legacy
    ``{"code", "msg"}`` shape (with or without ``id``)."""
    return (
        not isinstance(probe.id, UnsetType)
        or not isinstance(probe.result, UnsetType)
        or not isinstance(probe.error, UnsetType)
        or (not isinstance(probe.code, UnsetType) and not isinstance(probe.msg, UnsetType))
    )


def _stream_of(event: Any) -> str:
    """The stream a raw payload came from, as far as its fields tell (speeds cannot be known,
    nor that a depthUpdate came from ``@rpiDepth@500ms``)."""
    if isinstance(event, ev.ContractInfo):
        return "!contractInfo"
    if isinstance(event, ev.ContinuousKline):
        contract = f"{event.pair.lower()}_{event.contract_type.lower()}"
        return f"{contract}@continuousKline_{event.kline.interval}"
    symbol = event.symbol.lower()
    if isinstance(event, ev.Kline):
        return f"{symbol}@kline_{event.kline.interval}"
    if isinstance(event, ev.WindowTicker):
        return f"{symbol}@ticker_{event.window}"
    kinds: dict[type, str] = {
        ev.Trade: "trade",
        ev.AggTrade: "aggTrade",
        ev.BlockTrade: "blockTrade",
        ev.MiniTicker: "miniTicker",
        ev.Ticker: "ticker",
        ev.BookTicker: "bookTicker",
        ev.AvgPrice: "avgPrice",
        ev.ReferencePrice: "referencePrice",
        ev.DepthUpdate: "depth",
        ev.MarkPrice: "markPrice",
        ev.ForceOrder: "forceOrder",
        ev.CompositeIndex: "compositeIndex",
    }
    return f"{symbol}@{kinds[type(event)]}"
