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
its category, and a counter per category is kept in :attr:`Decoder.error_counts`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar, Final, Generic, TypeAlias, Union

import msgspec
from msgspec import UNSET, Raw, UnsetType, field
from typing_extensions import TypeVar

from fastmd.core import events as ev
from fastmd.core.streams import Stream, StreamKind, Venue, parse_stream
from fastmd.errors import DecodeError, DecodeErrorCategory as Cat, StreamNameError

__all__ = ["Decoder", "Message", "PriceType"]

E = TypeVar("E", default=Any)

PriceType: TypeAlias = type[float] | type[str] | type[Decimal]
"""The number type of prices and quantities: ``float`` (default), ``str`` or ``Decimal``."""

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


def _categorize(exc: BaseException) -> Cat:
    if isinstance(exc, UnicodeDecodeError):
        return Cat.INVALID_UTF8
    if isinstance(exc, RecursionError):
        return Cat.TOO_DEEP
    if isinstance(exc, msgspec.ValidationError):
        # msgspec: "<problem> - at `$.path`"; the problem may quote the input, so match its start
        head, _, path = str(exc).rpartition(" - at ")
        if not head:
            head, path = path, ""
        if head.startswith("Object missing required field"):
            return Cat.MISSING_FIELD
        if head.startswith("Invalid value") and path.endswith(".e`"):
            return Cat.UNKNOWN_EVENT
        if head == "Number out of range" or (
            head.startswith("Expected `int` ") and ("=" in head or "<" in head or ">" in head)
        ):
            return Cat.OUT_OF_RANGE
        return Cat.WRONG_TYPE
    if isinstance(exc, msgspec.DecodeError) and "too deep" in str(exc):
        return Cat.TOO_DEEP
    return Cat.NOT_JSON


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
}
_ARRAY_EVENTS: Final[dict[StreamKind, Any]] = {
    StreamKind.ALL_MINI_TICKERS: ev.MiniTicker,
    StreamKind.ALL_TICKERS: ev.Ticker,
    StreamKind.ALL_MARK_PRICES: ev.MarkPrice,
}
_WINDOW_EVENTS: Final[dict[str | None, Any]] = {
    "1h": ev.Ticker1h,
    "4h": ev.Ticker4h,
    "1d": ev.Ticker1d,
}
# Raw (unwrapped) payloads that carry their event type; used when no stream is known.
_TAGGED_EVENTS: Final = (
    ev.Trade, ev.AggTrade, ev.BlockTrade, ev.Kline, ev.MiniTicker, ev.Ticker, ev.Ticker1h,
    ev.Ticker4h, ev.Ticker1d, ev.BookTicker, ev.AvgPrice, ev.ReferencePrice, ev.DepthUpdate,
    ev.MarkPrice, ev.ForceOrder,
)  # fmt: skip
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
    """

    def __init__(
        self,
        venue: Venue = "binance-spot",
        *,
        price_type: PriceType = float,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        if venue not in ("binance-spot", "binance-usdm"):
            raise ValueError(f"unknown venue {venue!r}; allowed: 'binance-spot', 'binance-usdm'")
        if price_type not in (float, str, Decimal):
            raise ValueError(f"price_type must be float, str or Decimal, not {price_type!r}")
        if max_frame_size <= 0 or max_streams <= 0:
            raise ValueError("max_frame_size and max_streams must be positive")
        self.venue: Venue = venue
        self.price_type = price_type
        self.max_frame_size = max_frame_size
        self.max_streams = max_streams
        self.error_counts: Counter[Cat] = Counter()
        """Errors raised so far, per :class:`fastmd.DecodeErrorCategory`."""
        self._strict = price_type is not float
        self._classes: dict[str, type[Message[Any]]] = {}
        self._payload_decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._overflow: OrderedDict[str, tuple[type[Message[Any]], msgspec.json.Decoder[Any]]]
        self._overflow = OrderedDict()
        self._routed: frozenset[str] = frozenset()  # the streams the fast decoder covers
        self._slow_since_build = 0
        tagged: tuple[Any, ...] = (*(t[price_type] for t in _TAGGED_EVENTS), ev.ServerShutdown)
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
        """Decode one text frame.

        Args:
            frame: the frame's payload, as ``bytes`` or a ``memoryview`` (not copied).
            stream: the stream of a raw (unwrapped) frame, when the connection knows it. Needed for
                payloads that do not say it (spot partial depth); combined frames need none.

        Returns:
            a :class:`Message`, or a :class:`fastmd.ControlReply` for replies to control requests.
            ``!serverShutdown`` arrives as a Message whose event is :class:`fastmd.ServerShutdown`.

        Raises:
            DecodeError: the frame is not a valid frame of this venue; ``category`` says why.
        """
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
        if kind is StreamKind.PARTIAL_DEPTH:
            if self.venue == "binance-usdm":
                return ev.DepthUpdate[p]  # type: ignore[valid-type]
            return self._partial_depth_type(stream.symbol or "")
        if kind is StreamKind.WINDOW_TICKER:
            return _WINDOW_EVENTS[stream.window][p]
        if kind is StreamKind.ALL_WINDOW_TICKERS:
            return list[_WINDOW_EVENTS[stream.window][p]]  # type: ignore[misc]
        if kind in _ARRAY_EVENTS:
            return list[_ARRAY_EVENTS[kind][p]]  # type: ignore[misc]
        return _KIND_EVENTS[kind][p]

    def _partial_depth_type(self, symbol: str) -> Any:
        # Spot partial depth has no symbol in its payload: a subclass per symbol carries it as a
        # class attribute, so filling it costs nothing per frame.
        number: Any = self.price_type
        levels = list[tuple[number, number]]
        return msgspec.defstruct(
            "PartialDepth",
            [("bids", levels), ("asks", levels)],
            bases=(ev.PartialDepth,),
            namespace={"symbol": symbol.upper(), "__module__": ev.__name__},
            frozen=True,
            gc=False,
        )

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

    def _wrap(self, exc: BaseException, stream: str | None, what: str = "frame") -> DecodeError:
        category = _categorize(exc)
        where = f" of stream {stream!r}" if stream else ""
        error = self._error(f"{category.value}: {what}{where}: {exc}", category, stream)
        error.__cause__ = exc
        return error

    def _probe(self, frame: bytes | bytearray | memoryview, exc: BaseException) -> _Probe:
        try:
            return _probe_decoder.decode(frame)
        except msgspec.ValidationError:
            # Valid JSON but not an object (a raw array stream, a bare value): needs its stream.
            try:
                msgspec.json.decode(frame, type=Raw)
            except _ERRORS as inner:
                raise self._wrap(inner, None) from inner
            raise self._error(
                "unroutable: a frame that is not a JSON object needs stream= to be decoded",
                Cat.UNROUTABLE,
            ) from exc
        except _ERRORS as inner:
            raise self._wrap(inner, None) from inner

    def _decode_slow(self, frame: bytes | bytearray | memoryview, exc: BaseException) -> Any:
        probe = self._probe(frame, exc)
        if not isinstance(probe.stream, UnsetType):
            return self._decode_envelope(probe, probe.stream, exc)
        if _is_control(probe):
            return self._decode_control(frame, probe)
        if not isinstance(probe.e, UnsetType):
            return self._decode_tagged(frame)
        raise self._error(
            "unroutable: payload names no stream and no event type; pass stream=",
            Cat.UNROUTABLE,
        ) from exc

    def _decode_envelope(self, probe: _Probe, name: str, exc: BaseException) -> Message[Any]:
        if isinstance(probe.data, UnsetType):
            raise self._error(f"unroutable: envelope of {name!r} has no data", Cat.UNROUTABLE, name)
        if name in self._routed:
            raise self._wrap(exc, name, "payload")  # the fast path knew the stream: data is bad
        try:
            cls, decoder = self._route(name)
        except StreamNameError as bad:
            raise self._error(f"unknown_stream: {bad}", Cat.UNKNOWN_STREAM, name) from bad
        self._maybe_rebuild()
        try:
            event = decoder.decode(probe.data)
        except _ERRORS as inner:
            raise self._wrap(inner, name, "payload") from inner
        return cls(event)

    def _decode_control(
        self, frame: bytes | bytearray | memoryview, probe: _Probe
    ) -> ev.ControlReply:
        if isinstance(probe.code, UnsetType):
            try:
                return _control_decoder.decode(frame)
            except _ERRORS as exc:
                raise self._wrap(exc, None, "control reply") from exc
        try:
            flat = _flat_control_decoder.decode(frame)
        except _ERRORS as exc:
            raise self._wrap(exc, None, "control reply") from exc
        return ev.ControlReply(id=flat.id, error=ev.ControlError(code=flat.code, msg=flat.msg))

    def _decode_tagged(self, frame: bytes | bytearray | memoryview) -> Message[Any]:
        try:
            event = self._tagged_decoder.decode(frame)
        except _ERRORS as exc:
            raise self._wrap(exc, None) from exc
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
                raise self._wrap(exc, stream, "payload") from exc
            if _is_control(probe):
                return self._decode_control(frame, probe)
            if probe.e == ev.ServerShutdown.__struct_config__.tag:
                return self._decode_tagged(frame)
            raise self._wrap(exc, stream, "payload") from exc


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
    """The stream a raw payload came from, as far as its fields tell (speeds cannot be known)."""
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
    }
    return f"{symbol}@{kinds[type(event)]}"
