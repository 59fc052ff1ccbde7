"""Selective updates: which events a subscription with ``only_changes`` or ``throttle`` is given.

Rules:

1. ``only_changes`` compares an event with the last one *delivered* on the subscription, on the
   fields that matter for its stream kind (:data:`DEFAULT_FIELDS`) or on the fields the user
   names. The first event is always delivered; so is a kline's closing update.
2. Events of ``!bookTicker`` (every symbol on one stream) are compared per symbol.
3. ``only_changes=True`` is refused for kinds without defaults (trades, aggTrades, depth diffs,
   liquidations: every event is a new fact) and both options for array streams (an array holds
   only the symbols that changed, so comparing or conflating arrays would lose symbols).
4. ``throttle`` gives at most one delivery per interval, always of the newest event: the first
   event after a quiet interval goes at once (leading edge); later ones wait and only the newest
   goes when the interval ends (trailing edge), so the last value is never held back longer than
   one interval. Refused for streams whose events are not snapshots of state (:data:`UNTHROTTLED`).
5. Sequence checks run before either rule: gaps and duplicates are found and reported on every
   frame; skipped and conflated events are counted apart, never as gaps.

A comparison reads attributes of two existing events: nothing is allocated per event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from fastmd.core.codec import event_class
from fastmd.core.streams import ARRAY_KINDS, Stream, StreamKind, Venue

__all__: list[str] = []

DEFAULT_FIELDS: Final[dict[StreamKind, tuple[str, ...]]] = {
    # Binance sends a book ticker only when the top's price or quantity moves: comparing all
    # four fields would skip nothing.
    StreamKind.BOOK_TICKER: ("bid_price", "ask_price"),
    StreamKind.ALL_BOOK_TICKERS: ("bid_price", "ask_price"),
    StreamKind.TICKER: ("last_price",),
    StreamKind.WINDOW_TICKER: ("last_price",),
    StreamKind.MINI_TICKER: ("close",),
    StreamKind.KLINE: ("kline.close", "kline.is_closed"),
    StreamKind.CONTINUOUS_KLINE: ("kline.close", "kline.is_closed"),
    StreamKind.COMPOSITE_INDEX: ("price",),
    StreamKind.MARK_PRICE: ("mark_price",),
    StreamKind.PARTIAL_DEPTH: ("bids", "asks"),
    StreamKind.AVG_PRICE: ("price",),
    StreamKind.REFERENCE_PRICE: ("price",),
}
"""The fields ``only_changes=True`` compares, per stream kind."""

UNTHROTTLED: Final = frozenset(
    {
        StreamKind.TRADE,
        StreamKind.AGG_TRADE,
        StreamKind.BLOCK_TRADE,
        StreamKind.DEPTH,
        StreamKind.RPI_DEPTH,
        StreamKind.FORCE_ORDER,
        StreamKind.ALL_FORCE_ORDERS,
        StreamKind.ALL_CONTRACT_INFO,
    }
)
"""Kinds whose events are facts, not snapshots of state: conflating them would lose data."""

_PER_SYMBOL: Final = frozenset({StreamKind.ALL_BOOK_TICKERS, StreamKind.ALL_CONTRACT_INFO})


def _field_names(cls: type) -> set[str]:
    return {f.name for f in msgspec.structs.fields(cls)}


def _check_field(cls: type, path: str, stream: str) -> None:
    owner = cls
    for part in path.split("."):
        names = _field_names(owner)
        if part not in names:
            properties = {n for n in dir(owner) if isinstance(getattr(owner, n, None), property)}
            if part in properties:
                return
            raise ValueError(
                f"only_changes: {stream} events have no field {path!r}; "
                f"fields: {', '.join(sorted(_field_names(cls)))}"
            )
        field = next(f for f in msgspec.structs.fields(owner) if f.name == part)
        nested = getattr(field.type, "__origin__", field.type)
        if isinstance(nested, type) and issubclass(nested, msgspec.Struct):
            owner = nested


def change_fields(
    stream: Stream, name: str, venue: Venue, only_changes: bool | Sequence[str]
) -> tuple[str, ...] | None:
    """The fields a subscription to ``stream`` compares (``None``: it compares nothing).

    Raises:
        ValueError: ``only_changes`` is not ``False``, ``True`` or a non-empty sequence of the
            event's attribute names (dotted for nested ones, as ``kline.close``), or the stream
            has no default fields, or delivers arrays.
        TypeError: ``only_changes`` is neither a bool nor a sequence of strings.
    """
    if only_changes is False:
        return None
    if stream.kind in ARRAY_KINDS:
        raise ValueError(
            f"only_changes is not offered for {name}: its arrays hold only the symbols that "
            "changed; subscribe the per-symbol streams instead"
        )
    if only_changes is True:
        fields = DEFAULT_FIELDS.get(stream.kind)
        if fields is None:
            raise ValueError(
                f"only_changes=True has no default for {name} ({stream.kind.value}): every "
                "event is a new fact; name the fields to compare, e.g. only_changes=('price',)"
            )
        return fields
    if isinstance(only_changes, str) or not isinstance(only_changes, Sequence):
        raise TypeError(
            f"only_changes must be True, False or a sequence of field names, not {only_changes!r}"
        )
    fields = tuple(only_changes)
    if not fields or not all(isinstance(f, str) for f in fields):
        raise TypeError(f"only_changes needs at least one field name (str), not {only_changes!r}")
    cls = event_class(stream, venue)
    if cls is None:
        raise ValueError(f"only_changes is not offered for {name}")
    for path in fields:
        _check_field(cls, path, name)
    return fields


def check_throttle(stream: Stream, name: str, throttle: float | None) -> float | None:
    """The throttle interval of a subscription to ``stream`` (``None``: no throttle).

    Raises:
        ValueError: the stream's events are not snapshots of state, or it delivers arrays, or
            the interval is not a positive finite number of seconds.
    """
    interval = throttle_seconds(throttle)
    if interval is None:
        return None
    if stream.kind in UNTHROTTLED:
        raise ValueError(
            f"throttle is not offered for {name}: {stream.kind.value} events are facts, not "
            "snapshots of state, and conflating them would lose data"
        )
    if stream.kind in ARRAY_KINDS:
        raise ValueError(
            f"throttle is not offered for {name}: its arrays hold only the symbols that "
            "changed; subscribe the per-symbol streams instead"
        )
    return interval


def throttle_seconds(throttle: object) -> float | None:
    """``throttle`` as an interval in seconds (``None``: no throttle), whatever it throttles.

    Raises:
        TypeError: not a number (nor ``None``).
        ValueError: not a positive finite number.
    """
    if throttle is None:
        return None
    if isinstance(throttle, bool) or not isinstance(throttle, (int, float)):
        raise TypeError(f"throttle must be seconds (a number) or None, not {throttle!r}")
    if not 0 < throttle < float("inf"):
        raise ValueError(f"throttle must be a positive number of seconds, not {throttle!r}")
    return float(throttle)


def comparer(fields: tuple[str, ...]) -> Callable[[Any, Any], bool]:
    """``changed(last, event)``: whether ``event`` differs from ``last`` on ``fields`` (a
    kline's closing update always differs), written out for the common shapes."""
    if fields == ("kline.close", "kline.is_closed"):

        def kline_changed(last: Any, event: Any) -> bool:
            k = event.kline
            if k.is_closed:
                return True  # the closing update is always delivered
            previous = last.kline
            return bool(
                k.close != previous.close
                or previous.is_closed
                or k.start_time != previous.start_time
            )

        return kline_changed
    if len(fields) == 1 and "." not in fields[0]:
        (name,) = fields

        def one_changed(last: Any, event: Any) -> bool:
            return bool(getattr(last, name) != getattr(event, name))

        return one_changed
    if len(fields) == 2 and "." not in fields[0] + fields[1]:
        first, second = fields

        def two_changed(last: Any, event: Any) -> bool:
            return bool(
                getattr(last, first) != getattr(event, first)
                or getattr(last, second) != getattr(event, second)
            )

        return two_changed
    paths = tuple(tuple(path.split(".")) for path in fields)

    def read(event: Any, path: tuple[str, ...]) -> Any:
        for part in path:
            event = getattr(event, part)
        return event

    def any_changed(last: Any, event: Any) -> bool:
        for path in paths:  # noqa: SIM110 -- any() over a generator allocates per event
            if read(last, path) != read(event, path):
                return True
        return False

    return any_changed


def per_symbol(stream: Stream) -> bool:
    """Whether ``stream`` carries several symbols' states, compared and conflated per symbol."""
    return stream.kind in _PER_SYMBOL


def change_gate(
    fields: tuple[str, ...], callback: Callable[[Any], object]
) -> tuple[Callable[[Any], None], Callable[[], int]]:
    """``callback`` behind ``only_changes`` on one single-symbol stream, as one closure, and a
    function that counts what it skipped. The comparison is written into the closure for one
    or two plain fields, so a skipped frame costs one call and the reads, less than a delivered
    one; other shapes use :func:`comparer`."""
    last: Any = None
    skipped = 0

    def count() -> int:
        return skipped

    plain = all("." not in name for name in fields)
    if plain and len(fields) == 1:
        (name,) = fields

        def gate_one(event: Any) -> None:
            nonlocal last, skipped
            if last is not None and getattr(last, name) == getattr(event, name):
                skipped += 1
                return
            last = event
            callback(event)

        return gate_one, count
    if plain and len(fields) == 2:
        first, second = fields

        def gate_two(event: Any) -> None:
            nonlocal last, skipped
            if (
                last is not None
                and getattr(last, first) == getattr(event, first)
                and getattr(last, second) == getattr(event, second)
            ):
                skipped += 1
                return
            last = event
            callback(event)

        return gate_two, count
    changed = comparer(fields)

    def gate(event: Any) -> None:
        nonlocal last, skipped
        if last is not None and not changed(last, event):
            skipped += 1
            return
        last = event
        callback(event)

    return gate, count


class ChangeFilter:
    """Passes an event only when its compared fields differ from the last one passed.

    Args:
        fields: the fields to compare (:func:`change_fields`).
        by_symbol: compare each event with the last one of its own symbol (``!bookTicker``).
    """

    __slots__ = ("_last", "_per_symbol", "changed", "fields", "skipped")

    def __init__(self, fields: tuple[str, ...], *, by_symbol: bool = False) -> None:
        self.fields = fields
        self.changed = comparer(fields)
        """The comparison, ``changed(last, event)``."""
        self._last: Any = None
        self._per_symbol: dict[str, Any] | None = {} if by_symbol else None
        self.skipped = 0
        """Events not passed because nothing compared had changed."""

    @property
    def by_symbol(self) -> bool:
        """Whether events are compared with the last one of their own symbol."""
        return self._per_symbol is not None

    def passes(self, event: Any) -> bool:
        """Whether ``event`` is delivered (it then becomes the one compared against)."""
        by_symbol = self._per_symbol
        last = self._last if by_symbol is None else by_symbol.get(event.symbol)
        if last is None or self.changed(last, event):
            if by_symbol is None:
                self._last = event
            else:
                by_symbol[event.symbol] = event
            return True
        self.skipped += 1
        return False


class Throttle:
    """At most one delivery per ``interval``, always of the newest event (sans-I/O: the caller
    gives the time and runs :meth:`due` when :attr:`deadline` comes).

    With ``by_symbol`` (``!bookTicker``) the newest event of each symbol is kept.
    """

    __slots__ = ("_pending", "_per_symbol", "conflated", "deadline", "interval", "last_sent")

    def __init__(self, interval: float, *, by_symbol: bool = False) -> None:
        self.interval = interval
        self.last_sent = float("-inf")
        self.deadline: float | None = None
        """When the held events are due; ``None`` when nothing is held."""
        self._pending: Any = None
        self._per_symbol: dict[str, Any] | None = {} if by_symbol else None
        self.conflated = 0
        """Events replaced by a newer one before their turn came."""

    def offer(self, event: Any, now: float) -> bool:
        """Take ``event`` at ``now``. True: deliver it now (leading edge). False: it is held
        until :attr:`deadline`, replacing an older held event (of its symbol)."""
        if self.deadline is None and now - self.last_sent >= self.interval:
            self.last_sent = now
            return True
        by_symbol = self._per_symbol
        if by_symbol is None:
            if self._pending is not None:
                self.conflated += 1
            self._pending = event
        else:
            if event.symbol in by_symbol:
                self.conflated += 1
                del by_symbol[event.symbol]  # re-inserted last: delivered in arrival order
            by_symbol[event.symbol] = event
        if self.deadline is None:
            self.deadline = self.last_sent + self.interval
        return False

    def due(self, now: float) -> list[Any]:
        """The held events to deliver now (trailing edge); empty before :attr:`deadline`."""
        if self.deadline is None or now < self.deadline:
            return []
        self.deadline = None
        self.last_sent = now
        if self._per_symbol is None:
            event, self._pending = self._pending, None
            return [event]
        events = list(self._per_symbol.values())
        self._per_symbol.clear()
        return events

    def drop(self) -> int:
        """Forget the held events (the subscription ended); returns how many."""
        held = (1 if self._pending is not None else 0) + len(self._per_symbol or ())
        self._pending = None
        if self._per_symbol is not None:
            self._per_symbol.clear()
        self.deadline = None
        return held
