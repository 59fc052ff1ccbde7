"""Connection states, their legal transitions, close-frame rules and error reports.

Rules:

1. A connection moves only along ``TRANSITIONS``; anything else is a bug (``InvalidState``).
2. Every close the user did not ask for leads to a reconnect, whatever the code: 1000 and 1001
   are not terminal on Binance (they come with upgrades and the 24 h limit).
3. A close frame is valid only with no payload, or a 2-byte code that may be sent on the wire
   (1000-1003, 1007-1014, 3000-4999) followed by UTF-8; anything else is a protocol error (1002).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from fastmd.errors import InvalidState

__all__ = ["ConnectionState", "ErrorReport", "ErrorReporter", "Severity"]


class ConnectionState(IntEnum):
    """Where a :class:`fastmd.Connection` is in its life."""

    IDLE = 0
    """Created; :meth:`~fastmd.Connection.connect` not called yet."""
    CONNECTING = 1
    """A connection attempt (TCP, TLS, HTTP upgrade) is under way."""
    OPEN = 2
    """The socket is open; frames flow."""
    RECONNECTING = 3
    """Waiting out a backoff delay before the next attempt."""
    CIRCUIT_OPEN = 4
    """Too many consecutive failures: no attempt until the cooldown has passed."""
    CLOSED = 5
    """Closed by the user (or, with ``auto_reconnect=False``, by the peer). Final."""


TRANSITIONS: Mapping[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.IDLE: frozenset(
        {ConnectionState.CONNECTING, ConnectionState.RECONNECTING, ConnectionState.CLOSED}
    ),
    ConnectionState.CONNECTING: frozenset(
        {
            ConnectionState.OPEN,
            ConnectionState.RECONNECTING,
            ConnectionState.CIRCUIT_OPEN,
            ConnectionState.CLOSED,
        }
    ),
    ConnectionState.OPEN: frozenset(
        {ConnectionState.RECONNECTING, ConnectionState.CONNECTING, ConnectionState.CLOSED}
    ),
    ConnectionState.RECONNECTING: frozenset(
        {ConnectionState.CONNECTING, ConnectionState.CIRCUIT_OPEN, ConnectionState.CLOSED}
    ),
    ConnectionState.CIRCUIT_OPEN: frozenset({ConnectionState.CONNECTING, ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset(),
}


def check_transition(old: ConnectionState, new: ConnectionState) -> ConnectionState:
    """Return ``new`` if ``old -> new`` is legal.

    Raises:
        InvalidState: the transition is not in ``TRANSITIONS``.
    """
    if new is not old and new not in TRANSITIONS[old]:
        raise InvalidState(f"illegal connection transition {old.name} -> {new.name}")
    return new


def _sendable(code: int) -> bool:
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int, str, str | None]:
    """Parse a close frame's payload into ``(code, reason, problem)``.

    ``problem`` is ``None`` for a valid close frame; otherwise it says why the frame breaks
    RFC 6455 and the connection must answer 1002. An empty payload means 1005 (no code).
    """
    if not payload:
        return 1005, "", None
    if len(payload) == 1:
        return 1002, "", "close frame with a 1-byte payload"
    code = int.from_bytes(payload[:2], "big")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return code, "", "close reason is not valid UTF-8"
    if not _sendable(code):
        return code, reason, f"close code {code} may not be sent on the wire"
    return code, reason, None


class Severity(StrEnum):
    """How bad a reported error is."""

    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """One error, as given to the error reporter and to ``error`` listeners.

    Attributes:
        severity: how bad it is.
        code: a stable machine-readable code (``"connect_failed"``, ``"listener_error"``...).
        message: a human-readable sentence.
        error: the exception, when there is one (a fastmd error; foreign errors are its cause).
        context: details (url, attempt, close code...).
    """

    severity: Severity
    code: str
    message: str
    error: BaseException | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


ErrorReporter = Callable[[ErrorReport], None]
"""Receives every :class:`ErrorReport` (the seed's error-tracking channel)."""
