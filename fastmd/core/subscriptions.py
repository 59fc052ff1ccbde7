"""Live subscriptions on one connection: batched SUBSCRIBE/UNSUBSCRIBE, acks, timeouts, retries.

Rules:

1. The channel reconciles what the user wants (``desired``) with what the server acknowledged
   (``active``): missing streams are subscribed, unwanted acknowledged streams unsubscribed.
2. Requests are batched: one SUBSCRIBE carries up to ``max_params`` streams, so a burst of 2,000
   subscriptions costs ten frames, not 2,000 (frames are what Binance rate-limits).
3. A stream is active only once its request is acknowledged (``{"result": null, "id": n}``).
4. An error reply fails every stream of its request; a request unanswered after ``ack_timeout`` is
   sent again, up to ``max_retries`` times, then its streams fail.
5. After a reconnect nothing is active and nothing is in flight: exactly the desired streams are
   requested again, batched. Nothing queued for the old socket is re-sent.
6. Ids are unsigned integers (futures rejects anything else) and never reused on a connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

from fastmd.core.events import ControlError, ControlReply

__all__ = [
    "CONTROL_FRAMES_PER_SECOND",
    "STREAMS_PER_CONNECTION",
    "ControlChannel",
    "Outcome",
]

DEFAULT_MAX_PARAMS: Final = 200

STREAMS_PER_CONNECTION: Final = {"binance-spot": 1024, "binance-usdm": 200}
"""Streams one connection may carry (binance-protocol.md: futures pages disagree, 200 is safe)."""
CONTROL_FRAMES_PER_SECOND: Final = {"binance-spot": 4, "binance-usdm": 8}
"""Frames a client sends in any second: below Binance's 5 and 10, since pongs count too."""

Method = Literal["SUBSCRIBE", "UNSUBSCRIBE"]


class _Request(msgspec.Struct):
    method: str
    params: list[str]
    id: int


_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _InFlight:
    method: Method
    streams: tuple[str, ...]
    sent_at: float
    tries: int = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a stream's request.

    Attributes:
        stream: the stream.
        method: ``"SUBSCRIBE"`` or ``"UNSUBSCRIBE"``.
        ok: whether the server acknowledged it.
        error: the server's error, or a ``ControlError(code=-1, ...)`` for a timeout.
    """

    stream: str
    method: Method
    ok: bool
    error: ControlError | None = None


@dataclass
class ControlChannel:
    """The subscription state of one connection (sans-I/O: returns frames, takes replies).

    Args:
        max_params: streams per request.
        ack_timeout: seconds before an unanswered request is sent again.
        max_retries: resends before its streams fail.
    """

    max_params: int = DEFAULT_MAX_PARAMS
    ack_timeout: float = 5.0
    max_retries: int = 2
    desired: set[str] = field(default_factory=set)
    active: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    _next_id: int = 1
    _in_flight: dict[int, _InFlight] = field(default_factory=dict)

    def want(self, streams: Iterable[str]) -> None:
        """Add streams to the desired set (failed ones get a new chance)."""
        for stream in streams:
            self.desired.add(stream)
            if stream in self.failed:
                self.failed.discard(stream)
                # A SUBSCRIBE given up after timeouts counts as possibly active; wanted again,
                # it is subscribed again (harmless if the server had it), not assumed active.
                self.active.discard(stream)

    def drop(self, streams: Iterable[str]) -> None:
        """Remove streams from the desired set."""
        for stream in streams:
            self.desired.discard(stream)
            self.failed.discard(stream)

    def _flying(self, method: Method) -> set[str]:
        return {s for req in self._in_flight.values() if req.method == method for s in req.streams}

    def requests(self, now: float) -> list[bytes]:
        """The frames to send now to reconcile ``desired`` with ``active``."""
        subscribing = self._flying("SUBSCRIBE")
        unsubscribing = self._flying("UNSUBSCRIBE")
        to_subscribe = sorted(self.desired - self.active - subscribing - self.failed)
        to_unsubscribe = sorted(self.active - self.desired - unsubscribing)
        frames = []
        for method, streams in (("SUBSCRIBE", to_subscribe), ("UNSUBSCRIBE", to_unsubscribe)):
            for start in range(0, len(streams), self.max_params):
                batch = tuple(streams[start : start + self.max_params])
                frames.append(self._issue(method, batch, now))  # type: ignore[arg-type]
        return frames

    def _issue(self, method: Method, streams: tuple[str, ...], now: float, tries: int = 1) -> bytes:
        request_id = self._next_id
        self._next_id += 1
        self._in_flight[request_id] = _InFlight(method, streams, now, tries)
        return _encode(_Request(method, list(streams), request_id))

    def owns(self, reply: ControlReply) -> bool:
        """Whether ``reply`` answers one of this channel's requests."""
        return isinstance(reply.id, int) and reply.id in self._in_flight

    def on_reply(self, reply: ControlReply) -> list[Outcome]:
        """Apply a reply; returns what it decided (nothing for replies to unknown ids)."""
        if not isinstance(reply.id, int):
            return []
        request = self._in_flight.pop(reply.id, None)
        if request is None:
            return []
        if reply.error is None:
            if request.method == "SUBSCRIBE":
                self.active.update(request.streams)
            else:
                self.active.difference_update(request.streams)
            return [Outcome(s, request.method, True) for s in request.streams]
        if request.method == "SUBSCRIBE":
            self.failed.update(request.streams)
        return [Outcome(s, request.method, False, reply.error) for s in request.streams]

    def poll(self, now: float) -> tuple[list[bytes], list[Outcome]]:
        """Resend timed-out requests, or fail them after ``max_retries`` resends."""
        frames: list[bytes] = []
        outcomes: list[Outcome] = []
        for request_id, request in list(self._in_flight.items()):
            if now - request.sent_at < self.ack_timeout:
                continue
            del self._in_flight[request_id]
            if request.tries <= self.max_retries:
                frames.append(self._issue(request.method, request.streams, now, request.tries + 1))
                continue
            error = ControlError(
                -1, f"no reply in {self.ack_timeout:g} s after {request.tries} tries"
            )
            if request.method == "SUBSCRIBE":
                self.failed.update(request.streams)
                # Only the replies may have been lost: count the streams as possibly active,
                # so that once dropped from the desired set they are unsubscribed for sure.
                self.active.update(request.streams)
            outcomes += [Outcome(s, request.method, False, error) for s in request.streams]
        return frames, outcomes

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has work to do next (``None``: nothing in flight)."""
        if not self._in_flight:
            return None
        return min(r.sent_at for r in self._in_flight.values()) + self.ack_timeout

    def reset(self) -> None:
        """The connection was replaced: nothing is active or in flight any more."""
        self.active.clear()
        self._in_flight.clear()

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._in_flight)

    def is_settled(self) -> bool:
        """Every desired stream acknowledged (or failed), nothing in flight."""
        return not self._in_flight and self.desired - self.failed <= self.active
