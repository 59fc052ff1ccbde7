"""The client's overall status, as a pure rule over what each shard of the pool is doing.

A shard is one pooled connection and the streams it carries. The status is the first rule of
:data:`STATUS_RULES` that holds:

1. ``CLOSED`` stays ``CLOSED``;
2. a shard whose streams are served by REST polling makes the client ``FALLBACK``;
3. a shard with streams whose connection was up and is down makes it ``RECONNECTING``;
4. a shard with streams and no open socket (a new shard still opening, or waiting for the
   connect budget) makes it ``CONNECTING``: a stream without a socket is never ``CONNECTED``;
5. a shard that has been up (or a client already ``CONNECTED`` whose streams all have an open
   socket, or that has no stream left) makes it ``CONNECTED``;
6. otherwise it is ``CONNECTING``.

A shard without streams (an idle connection kept for a while before it closes) never makes the
client ``RECONNECTING`` or ``CONNECTING``: nothing waits for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["Status"]


class Status(StrEnum):
    """The client's overall state."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    RECONNECTING = "RECONNECTING"
    FALLBACK = "FALLBACK"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class ShardView:
    """What the status rule needs to know of one shard.

    Attributes:
        polling: its streams are being served by REST polling.
        was_up: its connection has been open at least once.
        up: its connection is open now.
        streams: it carries streams (``False``: an idle connection about to close).
    """

    polling: bool
    was_up: bool
    up: bool
    streams: bool = True


_Rule = Callable[[Status, Sequence[ShardView]], bool]

STATUS_RULES: Final[tuple[tuple[_Rule, Status], ...]] = (
    (lambda previous, shards: previous is Status.CLOSED, Status.CLOSED),
    (lambda previous, shards: any(s.polling for s in shards), Status.FALLBACK),
    (
        lambda previous, shards: any(s.streams and s.was_up and not s.up for s in shards),
        Status.RECONNECTING,
    ),
    (lambda previous, shards: any(s.streams and not s.up for s in shards), Status.CONNECTING),
    (
        lambda previous, shards: previous is Status.CONNECTED or any(s.was_up for s in shards),
        Status.CONNECTED,
    ),
)
"""``(condition, status)`` in order; the first condition that holds gives the status."""


def overall_status(previous: Status, shards: Sequence[ShardView]) -> Status:
    """The client's status given its ``previous`` one and its shards (see the module rules)."""
    for holds, status in STATUS_RULES:
        if holds(previous, shards):
            return status
    return Status.CONNECTING
