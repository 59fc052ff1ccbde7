"""The relay's wire format over NATS (version 1): subjects, messages, and the consumer's checks.

Sans-I/O: this module turns events into bytes and bytes into events and decides, from batch
headers alone, what a consumer lost or received twice. ``fastmd.relay`` publishes with it and
``fastmd.nats.Source`` reads with it; docs/nats.md is the specification for other languages.

Subjects (``<prefix>`` is ``fastmd`` by default):

- ``<prefix>.<venue>.ev.<stream token>``: batches of one stream's events;
- ``<prefix>.<venue>.gap.<stream token>``: a gap one relay saw on one stream;
- ``<prefix>.<venue>.health.<relay id>``: a relay's health, every second and on change.

A stream token is the stream name with each ``@`` turned into ``.`` (so
``fastmd.binance-spot.ev.btcusdt.>`` is every stream of BTCUSDT) and every character outside
``[A-Za-z0-9_!-]`` written ``%XX`` (hex of its UTF-8 bytes): ``btcusdt@depth@100ms`` is
``btcusdt.depth.100ms``; a ``.`` in a name would be ``%2E``.

Every message is one msgpack map (keys below). A batch's ``events`` are the events as fastmd
decoded them, each a map keyed by Binance's own field names (``{"e": "trade", "E": ..., "s":
..., "t": ..., "p": "42000.10", ...}``), prices and quantities as Binance's exact decimal
strings; all-market array streams carry one list of such maps per event.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from typing import Any, Final, Generic, Literal

import msgspec
from typing_extensions import TypeVar

from fastmd.core.health import HealthStatus
from fastmd.core.sequence import Gap, GapReason
from fastmd.errors import ProtocolError

__all__ = [
    "DEFAULT_PREFIX",
    "RELAY_SILENT_AFTER",
    "WIRE_VERSION",
    "Batch",
    "BatchSequencer",
    "GapMessage",
    "HealthMessage",
    "Verdict",
    "event_subject",
    "events_wildcard",
    "gap_subject",
    "gap_wildcard",
    "health_subject",
    "health_wildcard",
    "judge",
    "shard_of",
    "stream_of_token",
    "stream_token",
]

WIRE_VERSION: Final = 1
"""The version every message carries as ``v``; a reader refuses a version it does not know."""

DEFAULT_PREFIX: Final = "fastmd"
"""The first token of every subject."""

E = TypeVar("E", default=Any)

_SAFE: Final = re.compile(r"[A-Za-z0-9_!-]")
_PREFIX_OK: Final = re.compile(r"[A-Za-z0-9_-]+")


def stream_token(stream: str) -> str:
    """The subject tokens of ``stream``: ``btcusdt@depth@100ms`` -> ``btcusdt.depth.100ms``."""
    parts = []
    for part in stream.split("@"):
        if not part:
            raise ProtocolError(f"stream name {stream!r} has an empty part")
        parts.append(
            "".join(
                ch if _SAFE.fullmatch(ch) else "".join(f"%{b:02X}" for b in ch.encode())
                for ch in part
            )
        )
    return ".".join(parts)


def stream_of_token(token: str) -> str:
    """The stream name a subject's stream token stands for (inverse of :func:`stream_token`).

    Raises:
        ProtocolError: a malformed escape.
    """
    return "@".join(_unescape(part, token) for part in token.split("."))


def _unescape(part: str, token: str) -> str:
    pieces = re.split("((?:%[0-9A-Fa-f]{2})+)", part)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            try:
                out.append(bytes.fromhex(piece.replace("%", "")).decode())
            except UnicodeDecodeError:
                raise ProtocolError(f"subject token {token!r} has a malformed escape") from None
        elif "%" in piece or (not piece and len(pieces) == 1):
            raise ProtocolError(f"subject token {token!r} has a malformed escape or empty part")
        else:
            out.append(piece)
    return "".join(out)


def _check_prefix(prefix: str) -> str:
    if not _PREFIX_OK.fullmatch(prefix):
        raise ValueError(f"subject prefix must be letters, digits, '_' or '-', not {prefix!r}")
    return prefix


def event_subject(venue: str, stream: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``fastmd.<venue>.ev.<stream token>``: where the batches of ``stream`` go."""
    return f"{_check_prefix(prefix)}.{venue}.ev.{stream_token(stream)}"


def gap_subject(venue: str, stream: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``fastmd.<venue>.gap.<stream token>``: where the relays' gaps of ``stream`` go."""
    return f"{_check_prefix(prefix)}.{venue}.gap.{stream_token(stream)}"


def health_subject(venue: str, relay: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``fastmd.<venue>.health.<relay id>``: where a relay publishes its health."""
    return f"{_check_prefix(prefix)}.{venue}.health.{stream_token(relay)}"


def events_wildcard(venue: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Every stream's batches on ``venue``: ``fastmd.<venue>.ev.>``."""
    return f"{_check_prefix(prefix)}.{venue}.ev.>"


def gap_wildcard(venue: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Every gap message on ``venue``: ``fastmd.<venue>.gap.>``."""
    return f"{_check_prefix(prefix)}.{venue}.gap.>"


def health_wildcard(venue: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Every relay's health on ``venue``: ``fastmd.<venue>.health.*``."""
    return f"{_check_prefix(prefix)}.{venue}.health.*"


def shard_of(stream: str, workers: int) -> int:
    """The worker (0..workers-1) that owns ``stream``: a hash stable across runs and hosts."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers!r}")
    return zlib.crc32(stream.encode()) % workers


class Batch(msgspec.Struct, Generic[E], kw_only=True, frozen=True):
    """One message on an events subject.

    Attributes:
        v: the wire version (:data:`WIRE_VERSION`).
        venue: ``binance-spot`` or ``binance-usdm``.
        stream: the stream name (``btcusdt@trade``).
        relay: the publishing relay's id (stable across its restarts: host and worker).
        epoch: changes each time the relay (re)starts; sequences restart with it.
        seq: this stream's batch number within the epoch: 1, 2, 3... A jump is a lost batch.
        first: the position of the first event within the epoch (1-based, counts every event
            the relay received, so events the relay had to drop leave a hole between batches).
        n: the number of events.
        sent: the relay's wall clock when it published the batch, ns since the Unix epoch.
        events: the events, oldest first.
    """

    v: int
    venue: str
    stream: str
    relay: str
    epoch: int
    seq: int
    first: int
    n: int
    sent: int
    events: list[E]


class GapMessage(msgspec.Struct, kw_only=True, frozen=True):
    """One message on a gap subject: a loss one relay saw on one stream.

    ``origin`` is ``"exchange"`` for a gap of the exchange's own sequence that the relay's
    client found (``expected``/``received`` are exchange ids, or times for klines), or
    ``"relay"`` for events the relay itself dropped because NATS was slow or away
    (``expected``/``received`` are batch positions: the events in between were dropped).
    """

    v: int
    venue: str
    stream: str
    relay: str
    epoch: int
    origin: Literal["exchange", "relay"]
    reason: str
    expected: int
    received: int
    step: int = 1
    sent: int = 0

    def to_gap(self) -> Gap:
        """The message as a :class:`fastmd.Gap` (an unknown reason reads as ``server_skip``)."""
        try:
            reason = GapReason(self.reason)
        except ValueError:
            reason = GapReason.SERVER_SKIP
        return Gap(self.stream, self.expected, self.received, reason, max(self.step, 1))


class HealthMessage(msgspec.Struct, kw_only=True, frozen=True):
    """One message on a health subject: a relay's state.

    Attributes:
        status: the relay's client status (``healthy``, ``degraded``, ``down``...) or
            ``stopping`` when the relay closes.
        nats: whether the relay's NATS connection is up (it always is when this arrives,
            but the message counts the outages).
        streams: the streams this relay publishes.
        events: events received from the exchange since the epoch began.
        batches: batches published.
        dropped: events dropped because NATS was slow or away.
        buffered: events waiting to be published.
        gaps: exchange gaps the relay's client reported.
        outages: NATS disconnects seen.
        detail: free-form fields (the client's own health report, when it has one).
    """

    v: int
    venue: str
    relay: str
    epoch: int
    status: str
    streams: list[str]
    events: int
    batches: int
    dropped: int
    buffered: int
    gaps: int
    outages: int
    sent: int
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class Verdict(msgspec.Struct, frozen=True, gc=False):
    """What :meth:`BatchSequencer.check` decided about one batch.

    Attributes:
        deliver: hand its events on (``False``: a duplicate, dropped).
        gap: what was lost before it, if anything.
        restarted: it is the first batch of a new relay epoch (what was missed across the
            restart is not in the headers: exchange ids tell).
    """

    deliver: bool
    gap: Gap | None = None
    restarted: bool = False


_DUPLICATE: Final = Verdict(False)
_IN_ORDER: Final = Verdict(True)


class BatchSequencer:
    """Checks one stream's batch headers, in arrival order.

    Within one relay epoch, ``seq`` must grow by one and ``first`` must continue where the
    previous batch ended. A ``seq`` at or below the last one is a duplicate (dropped). A jump in
    ``seq`` is a lost batch (``reconnect`` if the consumer's NATS connection went down since
    :meth:`mark_reconnect`, otherwise ``overflow``: a slow consumer whose messages NATS
    dropped; no batch is empty, so a lost batch always leaves a hole in ``first``). A hole in
    ``first`` with ``seq`` in order is events the relay dropped (``overflow``). The first batch
    after a reconnect always gives a ``reconnect`` gap, even when ``missing`` is 0: the
    consumer learns that it was away and that nothing was lost. Gap positions are the relay's
    event positions, so ``gap.missing`` is the
    exact number of events lost. A new epoch is a relay restart.
    """

    __slots__ = ("epoch", "next", "reconnected", "seq", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.epoch: int | None = None
        self.seq = 0
        self.next = 1
        self.reconnected = False

    def mark_reconnect(self) -> None:
        """The consumer's NATS connection was lost and is back: a jump next is blamed on it."""
        self.reconnected = True

    def check(self, epoch: int, seq: int, first: int, count: int) -> Verdict:
        """Decide about a batch from its header."""
        if epoch == self.epoch:
            if seq <= self.seq:
                return _DUPLICATE
            gap = None
            if self.reconnected:  # told even when nothing was missed (missing == 0)
                gap = Gap(self.stream, self.next, max(first, self.next), GapReason.RECONNECT)
            elif first > self.next:
                gap = Gap(self.stream, self.next, first, GapReason.OVERFLOW)
            self.reconnected = False
            self.seq = seq
            self.next = first + count
            return _IN_ORDER if gap is None else Verdict(True, gap)
        restarted = self.epoch is not None
        self.epoch = epoch
        self.seq = seq
        self.next = first + count
        self.reconnected = False
        return Verdict(True, None, restarted) if restarted else _IN_ORDER


_encoder: Final = msgspec.msgpack.Encoder()


def encode(message: Batch[Any] | GapMessage | HealthMessage) -> bytes:
    """The msgpack bytes of one message."""
    return _encoder.encode(message)


def batch_decoder(event_type: Any) -> msgspec.msgpack.Decoder[Batch[Any]]:
    """A reusable decoder of batches whose events are ``event_type`` (prices are converted
    from the wire's decimal strings to the event type's number type)."""
    return msgspec.msgpack.Decoder(Batch[event_type], strict=False)


gap_decoder: Final = msgspec.msgpack.Decoder(GapMessage)
health_decoder: Final = msgspec.msgpack.Decoder(HealthMessage)


def check_version(version: int) -> None:
    """Raise :class:`fastmd.ProtocolError` for a wire version this reader does not know."""
    if version != WIRE_VERSION:
        raise ProtocolError(
            f"wire version {version} is not supported (this reader: {WIRE_VERSION})"
        )


RELAY_SILENT_AFTER: Final = 5.0
"""Seconds without a health message after which a relay counts as gone (it sends one a
second)."""


def judge(
    connected: bool,
    streams: Iterable[str],
    relays: dict[str, HealthMessage],
    heard: dict[str, float],
    now: float,
) -> tuple[HealthStatus, str | None]:
    """The overall status of a source, worst first: ``DOWN`` when its NATS connection is down;
    ``STALE`` when a subscribed stream's relay has been silent for :data:`RELAY_SILENT_AFTER`
    seconds or said it is stopping; ``DEGRADED`` when no relay publishes a subscribed stream, or
    its relay's client is not connected or not healthy; else ``HEALTHY``. ``heard`` holds when
    each relay's last health message arrived, on the clock that gives ``now``."""
    if not connected:
        return HealthStatus.DOWN, "the NATS connection is down"
    order = list(HealthStatus)
    worst: tuple[HealthStatus, str | None] = (HealthStatus.HEALTHY, None)
    for name in streams:
        found: tuple[HealthStatus, str | None] = (HealthStatus.HEALTHY, None)
        owners = [r for r in relays.values() if name in r.streams]
        if not owners:
            found = HealthStatus.DEGRADED, f"{name}: no relay says it publishes it"
        for relay in owners:
            silent = now - heard.get(relay.relay, -math.inf)
            client = relay.detail.get("client")
            client_status = client.get("status") if isinstance(client, dict) else None
            if silent > RELAY_SILENT_AFTER:
                found = HealthStatus.STALE, f"{name}: relay {relay.relay} silent for {silent:.0f} s"
            elif relay.status == "stopping":
                found = HealthStatus.STALE, f"{name}: relay {relay.relay} stopped"
            elif relay.status != "CONNECTED":
                found = HealthStatus.DEGRADED, f"{name}: relay {relay.relay} is {relay.status}"
            elif client_status not in (None, "HEALTHY"):
                found = (
                    HealthStatus.DEGRADED,
                    f"{name}: relay {relay.relay}'s client is {client_status}",
                )
            else:
                found = (HealthStatus.HEALTHY, None)
                break  # one healthy publisher is enough
        if order.index(found[0]) > order.index(worst[0]):
            worst = found
    return worst
