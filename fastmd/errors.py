"""The fastmd error tree.

Every error fastmd raises derives from :class:`FastmdError`; errors of the libraries underneath
(msgspec, picows, aiohttp) only ever appear as ``__cause__``::

    FastmdError
    ├── StreamNameError (also ValueError)   a stream name that Binance would not accept
    └── ProtocolError                       a venue or wire violation detected by the core
        └── DecodeError                     a frame that cannot become a typed event
                                            (``category`` says why)
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DecodeError",
    "DecodeErrorCategory",
    "FastmdError",
    "ProtocolError",
    "StreamNameError",
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
