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
7. A stream has at most one request in flight. Every reply reconciles
   (:meth:`ControlChannel.answer`): the desired set is compared with the acknowledged one and
   the difference is requested, so an ``unsubscribe`` that crosses an unacknowledged SUBSCRIBE
   is unsubscribed once the SUBSCRIBE lands, and a ``subscribe`` that crosses an
   unacknowledged UNSUBSCRIBE is subscribed again.
8. An UNSUBSCRIBE refused or unanswered leaves its streams *unsure* (maybe still on the server):
   reported, not retried in a loop; the next audit settles them.
9. An audit (``LIST_SUBSCRIPTIONS``) waits until nothing is in flight, and new requests wait
   until it has left; its reply replaces the acknowledged set with the server's list, and the
   difference from the desired set is requested (:class:`SubscriptionAudit` says what it found).
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
    "SubscriptionAudit",
]

DEFAULT_MAX_PARAMS: Final = 200

STREAMS_PER_CONNECTION: Final = {"binance-spot": 1024, "binance-usdm": 200}
"""Streams one connection may carry (binance-protocol.md: futures pages disagree, 200 is safe)."""
CONTROL_FRAMES_PER_SECOND: Final = {"binance-spot": 4, "binance-usdm": 8}
"""Frames a client sends in any second: below Binance's 5 and 10, since pongs count too."""

Method = Literal["SUBSCRIBE", "UNSUBSCRIBE"]
_LIST: Final = "LIST_SUBSCRIPTIONS"


class _Request(msgspec.Struct):
    method: str
    params: list[str]
    id: int


class _Query(msgspec.Struct):
    method: str
    id: int


_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _InFlight:
    method: Method | Literal["LIST_SUBSCRIPTIONS"]
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


_EMPTY: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class SubscriptionAudit:
    """What a ``LIST_SUBSCRIPTIONS`` audit found, against what the client held as acknowledged,
    and what it requested to fix it (``client.audit_subscriptions()``; several connections'
    audits are merged with :meth:`merge`).

    Attributes:
        listed: the streams the server listed.
        unexpected: listed, though not acknowledged (an UNSUBSCRIBE that failed, or that the
            server did not apply): unsubscribed unless wanted.
        missing: acknowledged, though not listed: subscribed again if wanted.
        unsubscribed: the streams the audit sent an UNSUBSCRIBE for.
        resubscribed: the streams the audit sent a SUBSCRIBE for.
        connections: connections audited.
        error: why an audit failed (the server's error, or code -1: no reply, or the connection
            was lost); nothing was changed by it.
    """

    listed: frozenset[str] = _EMPTY
    unexpected: frozenset[str] = _EMPTY
    missing: frozenset[str] = _EMPTY
    unsubscribed: frozenset[str] = _EMPTY
    resubscribed: frozenset[str] = _EMPTY
    connections: int = 1
    error: ControlError | None = None

    @property
    def drift(self) -> bool:
        """The server's list differed from the acknowledged streams."""
        return bool(self.unexpected or self.missing)

    @staticmethod
    def merge(audits: Iterable[SubscriptionAudit]) -> SubscriptionAudit:
        """One audit for several connections (the first error, if any, is kept)."""
        audits = list(audits)
        return SubscriptionAudit(
            listed=frozenset().union(*(a.listed for a in audits)),
            unexpected=frozenset().union(*(a.unexpected for a in audits)),
            missing=frozenset().union(*(a.missing for a in audits)),
            unsubscribed=frozenset().union(*(a.unsubscribed for a in audits)),
            resubscribed=frozenset().union(*(a.resubscribed for a in audits)),
            connections=sum(a.connections for a in audits),
            error=next((a.error for a in audits if a.error is not None), None),
        )


@dataclass
class ControlChannel:
    """The subscription state of one connection (sans-I/O: returns frames, takes replies).

    The driver sends what :meth:`requests` returns after changing the desired set, what
    :meth:`answer` returns for every reply and what :meth:`poll` returns on its clock.

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
    unsure: set[str] = field(default_factory=set)
    """Streams whose UNSUBSCRIBE was refused or never answered: maybe still on the server, kept
    in ``active`` and left to the next audit (never re-sent in a loop)."""
    _next_id: int = 1
    _in_flight: dict[int, _InFlight] = field(default_factory=dict)
    _audit_wanted: bool = False
    _audit: SubscriptionAudit | None = None

    def want(self, streams: Iterable[str]) -> None:
        """Add streams to the desired set (failed ones get a new chance)."""
        for stream in streams:
            self.desired.add(stream)
            if stream in self.failed or stream in self.unsure:
                self.failed.discard(stream)
                self.unsure.discard(stream)
                # A SUBSCRIBE given up after timeouts, or an UNSUBSCRIBE that failed, leaves the
                # stream possibly active; wanted again, it is subscribed again (harmless if the
                # server had it), not assumed active.
                self.active.discard(stream)

    def drop(self, streams: Iterable[str]) -> None:
        """Remove streams from the desired set."""
        for stream in streams:
            self.desired.discard(stream)
            self.failed.discard(stream)

    def audit(self) -> None:
        """Ask the server for its list (``LIST_SUBSCRIPTIONS``) once nothing is in flight; the
        result comes from :meth:`take_audit` after the reply."""
        self._audit_wanted = True

    def _busy(self) -> set[str]:
        return {s for req in self._in_flight.values() for s in req.streams}

    def requests(self, now: float) -> list[bytes]:
        """The frames to send now to reconcile ``desired`` with ``active``."""
        frames = []
        if self._audit_wanted:
            if self._in_flight:
                return []  # the audit waits for the replies; new requests wait for the audit
            self._audit_wanted = False
            frames.append(self._issue(_LIST, (), now))
        busy = self._busy()
        to_subscribe = sorted(self.desired - self.active - self.failed - busy)
        to_unsubscribe = sorted(self.active - self.desired - self.unsure - busy)
        for method, streams in (("SUBSCRIBE", to_subscribe), ("UNSUBSCRIBE", to_unsubscribe)):
            for start in range(0, len(streams), self.max_params):
                batch = tuple(streams[start : start + self.max_params])
                frames.append(self._issue(method, batch, now))  # type: ignore[arg-type]
        return frames

    def _issue(
        self,
        method: Method | Literal["LIST_SUBSCRIPTIONS"],
        streams: tuple[str, ...],
        now: float,
        tries: int = 1,
    ) -> bytes:
        request_id = self._next_id
        self._next_id += 1
        self._in_flight[request_id] = _InFlight(method, streams, now, tries)
        if method == _LIST:
            return _encode(_Query(method, request_id))
        return _encode(_Request(method, list(streams), request_id))

    def owns(self, reply: ControlReply) -> bool:
        """Whether ``reply`` answers one of this channel's requests."""
        return isinstance(reply.id, int) and reply.id in self._in_flight

    def answer(self, reply: ControlReply, now: float) -> tuple[list[bytes], list[Outcome]]:
        """Apply a reply and reconcile: the frames to send now, and what the reply decided."""
        outcomes = self.on_reply(reply)
        return self.requests(now), outcomes

    def on_reply(self, reply: ControlReply) -> list[Outcome]:
        """Apply a reply; returns what it decided (nothing for replies to unknown ids). Send
        :meth:`requests` afterwards (or use :meth:`answer`), or crossings stay unreconciled."""
        if not isinstance(reply.id, int):
            return []
        request = self._in_flight.pop(reply.id, None)
        if request is None:
            return []
        method = request.method
        if method == _LIST:
            self._listed(reply)
            return []
        if reply.error is None:
            if method == "SUBSCRIBE":
                self.active.update(request.streams)
            else:
                self.active.difference_update(request.streams)
                self.unsure.difference_update(request.streams)
            return [Outcome(s, method, True) for s in request.streams]
        self._refused(method, request.streams, possibly_applied=False)
        return [Outcome(s, method, False, reply.error) for s in request.streams]

    def _refused(self, method: Method, streams: tuple[str, ...], *, possibly_applied: bool) -> None:
        if method == "SUBSCRIBE":
            # (a stream dropped meanwhile is not failed: nobody waits for it)
            self.failed.update(s for s in streams if s in self.desired)
            if possibly_applied:
                # Only the replies may have been lost: count the streams as possibly active,
                # so that once dropped from the desired set they are unsubscribed for sure.
                self.active.update(streams)
            return
        # An UNSUBSCRIBE refused or unanswered: the stream may still be on the server. Still
        # wanted (subscribed again meanwhile): make sure with a SUBSCRIBE; unwanted: the next
        # audit tells.
        for stream in streams:
            if stream in self.desired:
                self.active.discard(stream)
            elif stream in self.active:
                self.unsure.add(stream)

    def _listed(self, reply: ControlReply) -> None:
        result = reply.result
        if reply.error is not None or not isinstance(result, list):
            error = reply.error or ControlError(
                -1, f"unexpected LIST_SUBSCRIPTIONS result {result!r}"
            )
            self._audit = SubscriptionAudit(error=error)
            return
        listed = frozenset(s for s in result if isinstance(s, str))
        believed = self.active
        unexpected = listed - believed
        missing = believed - listed
        unsure = self.unsure
        busy = self._busy()
        self.active = set(listed)
        self.unsure = set()
        self._audit = SubscriptionAudit(
            listed=listed,
            unexpected=frozenset(unexpected),
            missing=frozenset(missing),
            unsubscribed=frozenset((listed - self.desired - busy) & (unexpected | unsure)),
            resubscribed=frozenset((missing & self.desired) - self.failed - busy),
        )

    def take_audit(self) -> SubscriptionAudit | None:
        """The result of the last audit, once (``None``: no new result)."""
        audit, self._audit = self._audit, None
        return audit

    def poll(self, now: float) -> tuple[list[bytes], list[Outcome]]:
        """Resend timed-out requests, or fail them after ``max_retries`` resends; the frames
        include what reconciles the state the failures left."""
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
            method = request.method
            if method == _LIST:
                self._audit = SubscriptionAudit(error=error)
                continue
            self._refused(method, request.streams, possibly_applied=True)
            outcomes += [Outcome(s, method, False, error) for s in request.streams]
        if outcomes:
            frames += self.requests(now)
        return frames, outcomes

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has work to do next (``None``: nothing in flight)."""
        if not self._in_flight:
            return None
        return min(r.sent_at for r in self._in_flight.values()) + self.ack_timeout

    def reset(self) -> None:
        """The connection was replaced: nothing is active or in flight any more."""
        self.active.clear()
        self.unsure.clear()
        self._in_flight.clear()
        self._audit_wanted = False

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._in_flight)

    def confirmed(self, stream: str) -> bool:
        """The server acknowledged ``stream`` and nothing undoes it or puts it in doubt."""
        return (
            stream in self.active
            and stream not in self.unsure
            and not any(stream in r.streams for r in self._in_flight.values())
        )

    def expects(self, stream: str) -> bool:
        """Frames of ``stream`` may arrive: acknowledged, or a request about it is in flight.
        Not for an unsure stream: its frames show that its failed UNSUBSCRIBE left it subscribed."""
        if any(stream in r.streams for r in self._in_flight.values()):
            return True
        return stream in self.active and stream not in self.unsure

    def is_settled(self) -> bool:
        """Every desired stream acknowledged (or failed), nothing unwanted left to unsubscribe,
        no audit waiting and nothing in flight."""
        return (
            not self._in_flight
            and not self._audit_wanted
            and self.desired - self.failed <= self.active
            and self.active - self.desired <= self.unsure
        )
