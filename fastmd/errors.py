"""The fastmd error tree.

Every error fastmd raises derives from :class:`FastmdError`; errors of the libraries underneath
(msgspec, picows, aiohttp) only ever appear as ``__cause__``::

    FastmdError
    ├── StreamNameError (also ValueError)   a stream name that Binance would not accept
    ├── ProtocolError                       a venue or wire violation detected by the core
    │   └── DecodeError                     a frame that cannot become a typed event
    │                                       (``category`` says why)
    ├── ConnectError                        a connection attempt failed (the OS error is the cause)
    │   ├── HandshakeError                  the HTTP upgrade was refused (status, Retry-After)
    │   │   └── AuthenticationError             ... for its API key (401/403): never retried
    │   └── TLSError                        certificate or TLS failure: a configuration problem
    ├── ConnectionClosed                    the socket closed (``code``, ``reason``)
    ├── FastmdTimeoutError (also TimeoutError)  an operation ran out of time
    ├── RestError                           a REST request failed (status, code, Retry-After)
    │   └── RestTimeoutError                    ... ran out of time (also FastmdTimeoutError)
    ├── SubscriptionError                   a stream was refused or never acknowledged
    │   └── UnknownSymbolError                  ... its symbol is not listed by the exchange
    ├── StreamOverflow                      a ``client.stream()`` consumer fell too far behind
    ├── BookNotSynced                       a local order book read while it is not in sync
    ├── CallbackError                       a user callback raised (``__cause__`` is its error)
    ├── RecordingError                      a recording (``fastmd.record``) cannot be written
    │                                       or read
    │   ├── RecordingNotFound                   ... no such folder, or no manifest in it
    │   └── RecordingCorrupt                    ... a damaged manifest or chunk
    │       └── RecordingTruncated                  ... the last chunk is cut short
    └── InvalidState                        API misuse, e.g. connecting a closed connection

Network faults are never raised into user code: they arrive through events (``error``,
``disconnect``...) carrying these exception objects. Only API misuse and bad input raise.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AuthenticationError",
    "BookNotSynced",
    "CallbackError",
    "ConnectError",
    "ConnectionClosed",
    "DecodeError",
    "DecodeErrorCategory",
    "FastmdError",
    "FastmdTimeoutError",
    "HandshakeError",
    "InvalidState",
    "ProtocolError",
    "RecordingCorrupt",
    "RecordingError",
    "RecordingNotFound",
    "RecordingTruncated",
    "RestError",
    "RestTimeoutError",
    "StreamNameError",
    "StreamOverflow",
    "SubscriptionError",
    "TLSError",
    "UnknownSymbolError",
]


class FastmdError(Exception):
    """Root of every error raised by fastmd."""


class StreamNameError(FastmdError, ValueError):
    """A stream name that does not follow Binance's grammar for the venue.

    The message names the offending part and the values that would have been accepted.
    """


class ProtocolError(FastmdError):
    """The peer sent something the protocol does not allow."""


class DecodeErrorCategory(StrEnum):
    """Why a frame could not be decoded. Counted per category by :class:`fastmd.Decoder`."""

    NOT_JSON = "not_json"
    """Not JSON at all, truncated JSON, or trailing garbage."""
    INVALID_UTF8 = "invalid_utf8"
    """Bytes that are not valid UTF-8 where text was required."""
    TOO_DEEP = "too_deep"
    """Nesting deeper than the decoder accepts."""
    WRONG_TYPE = "wrong_type"
    """A field of the wrong JSON type, or a value that does not convert (``"p": "abc"``)."""
    MISSING_FIELD = "missing_field"
    """A required field is absent."""
    OUT_OF_RANGE = "out_of_range"
    """A number outside the range the field allows (negative or over-large ids)."""
    UNKNOWN_EVENT = "unknown_event"
    """An event type (``e``) the venue does not define."""
    UNKNOWN_STREAM = "unknown_stream"
    """A stream name that is not a valid stream of the venue."""
    UNROUTABLE = "unroutable"
    """A well-formed frame that cannot be tied to a stream (a payload without one, no stream=)."""
    BINARY_FRAME = "binary_frame"
    """A binary WebSocket frame on a JSON connection."""
    OVERSIZED = "oversized"
    """A frame larger than the decoder's ``max_frame_size``; rejected before decoding."""
    TRUNCATED = "truncated"
    """A binary (SBE) frame that ends before the lengths it declares: header, block, group or
    symbol cut short, or a group count larger than the frame can hold."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """A binary (SBE) frame of another schema: its header's ``schemaId`` is not the venue's."""
    UNKNOWN_VERSION = "unknown_version"
    """A binary (SBE) frame of a schema version this fastmd does not know."""
    UNKNOWN_TEMPLATE = "unknown_template"
    """A binary (SBE) frame whose ``templateId`` names no message of the schema."""
    BLOCK_TOO_SHORT = "block_too_short"
    """A binary (SBE) frame whose root block or group entries are shorter than the schema's."""


class DecodeError(ProtocolError):
    """A frame that cannot be decoded into a typed event.

    Attributes:
        category: why, as a :class:`DecodeErrorCategory`.
        stream: the stream the frame belonged to, when known.
    """

    def __init__(
        self, message: str, category: DecodeErrorCategory, *, stream: str | None = None
    ) -> None:
        super().__init__(message)
        self.category = category
        self.stream = stream


class ConnectError(FastmdError):
    """A connection attempt failed (refused, unreachable, reset during the handshake...)."""


class HandshakeError(ConnectError):
    """The server refused the WebSocket upgrade.

    Attributes:
        status: the HTTP status (429 and 418 mean rate-limited or banned).
        retry_after: the ``Retry-After`` header in seconds, when sent.
    """

    def __init__(self, message: str, *, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthenticationError(HandshakeError):
    """The server refused the WebSocket upgrade for its credentials: HTTP 401, or 403 to an
    upgrade that carried an API key (Binance's SBE streams need an Ed25519 key in
    ``X-MBX-APIKEY``). Retrying cannot fix it, so the connection stops trying and reports it
    (the key itself is never part of the message)."""


class TLSError(ConnectError):
    """A TLS failure (unknown CA, wrong host, expired certificate): fixing it needs a
    configuration change, so the connection opens its circuit instead of retrying fast."""


class ConnectionClosed(FastmdError):
    """The WebSocket closed.

    Attributes:
        code: the close code received (1006 when the socket died without a close frame).
        reason: the close reason received.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class FastmdTimeoutError(FastmdError, TimeoutError):
    """An operation ran out of time (connect, handshake, acknowledgement...)."""


class CallbackError(FastmdError):
    """A user callback raised; the original error is ``__cause__``. The socket stays up."""


class InvalidState(FastmdError):
    """The object cannot do that in its current state (e.g. connecting a closed connection)."""


class RestError(FastmdError):
    """A REST request failed.

    Attributes:
        status: the HTTP status (``None`` when no response arrived).
        code: Binance's error code (-1121 invalid symbol, -1003 rate limit...), when sent.
        retry_after: the ``Retry-After`` header in seconds (429 and 418), when sent.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class BookNotSynced(FastmdError):
    """The local order book is not in sync (yet, or any more): reading it would give stale or
    wrong levels."""


class RestTimeoutError(RestError, FastmdTimeoutError):
    """A REST request ran out of time (also a ``TimeoutError``)."""


class SubscriptionError(FastmdError):
    """A subscription failed: the server refused it or never acknowledged it.

    Attributes:
        stream: the stream concerned.
        code: the server's control error code (-1 for a timeout).
    """

    def __init__(self, message: str, *, stream: str, code: int | None = None) -> None:
        super().__init__(message)
        self.stream = stream
        self.code = code


class UnknownSymbolError(SubscriptionError):
    """The stream is well formed but its symbol is not listed by the exchange (Binance would
    acknowledge it and send nothing)."""


class StreamOverflow(FastmdError):
    """An event stream (``client.stream(...)``) with the ``"disconnect"`` policy fell too far
    behind."""


class RecordingError(FastmdError):
    """A recording (docs/recording.md) cannot be written or read.

    Attributes:
        path: the folder or file concerned.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class RecordingNotFound(RecordingError):
    """The folder does not exist or holds no ``manifest.json``."""


class RecordingCorrupt(RecordingError):
    """A manifest or chunk is damaged: not JSON, another format version, corrupt compressed
    data, a bad record, a chunk the manifest lists that is missing."""


class RecordingTruncated(RecordingCorrupt):
    """The last chunk ends in the middle (the open chunk of a recorder that was killed). Raised
    after every record before the cut was delivered.

    Attributes:
        records: how many records were read before the cut (all chunks).
    """

    def __init__(self, message: str, *, path: str, records: int) -> None:
        super().__init__(message, path=path)
        self.records = records
