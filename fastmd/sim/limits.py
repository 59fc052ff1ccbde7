"""The venue limits the simulator enforces, each configurable (binance-protocol.md §3-§7)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from fastmd.sim.venues import Venue

__all__ = ["SimLimits"]


@dataclass(frozen=True, kw_only=True)
class SimLimits:
    """Limits of one simulated venue. Durations are seconds.

    Use :meth:`for_venue` for Binance's values, then ``dataclasses.replace`` (or
    :meth:`with_`) to shorten what a test needs short.

    Attributes:
        max_incoming_per_second: frames a client may send per second (text, ping and pong all
            count); one more closes the connection with 1008.
        max_streams_per_connection: subscriptions per connection; a SUBSCRIBE past it is refused.
        ping_interval: how often the server pings.
        pong_timeout: how long after a ping the server waits for the pong before closing.
        unsolicited_pong_keeps_alive: whether a pong that answers no ping counts (futures: yes).
        connection_lifetime: a connection is closed this long after it opened (24 h).
        shutdown_notice: ``serverShutdown`` is sent this long before a planned close.
        max_connection_attempts: upgrades allowed per client address per ``attempts_window``;
            further upgrades are refused with HTTP 429.
        attempts_window: the window of ``max_connection_attempts``.
        rest_weight_per_minute: REST request weight per client address per minute; past it 429
            with ``Retry-After``, and 418 (a ban) for clients that keep going.
        rest_ban_after_429s: how many requests answered 429 before the client is banned (418).
        rest_ban_seconds: the first ban's length; each further ban doubles it.
        max_url_length: longest accepted WebSocket request target.
        close_code_on_rate_limit: close code used when the incoming-frame limit is exceeded.
        id_rule: which control-request ids are accepted: spot takes int64, alphanumeric strings
            of at most 36 characters and null; futures only unsigned integers.
    """

    max_incoming_per_second: int
    max_streams_per_connection: int
    ping_interval: float
    pong_timeout: float
    unsolicited_pong_keeps_alive: bool
    connection_lifetime: float = 24 * 3600.0
    shutdown_notice: float = 0.0
    max_connection_attempts: int = 300
    attempts_window: float = 300.0
    rest_weight_per_minute: int
    rest_ban_after_429s: int = 10
    rest_ban_seconds: float = 120.0
    max_url_length: int = 8000
    close_code_on_rate_limit: int = 1008
    id_rule: Literal["spot", "futures"]

    @classmethod
    def for_venue(cls, venue: Venue) -> SimLimits:
        """Binance's own limits for ``venue``."""
        if venue == "binance-spot":
            return cls(
                max_incoming_per_second=5,
                max_streams_per_connection=1024,
                ping_interval=20.0,
                pong_timeout=60.0,
                unsolicited_pong_keeps_alive=False,
                rest_weight_per_minute=6000,
                id_rule="spot",
            )
        return cls(
            max_incoming_per_second=10,
            max_streams_per_connection=200,
            ping_interval=180.0,
            pong_timeout=600.0,
            unsolicited_pong_keeps_alive=True,
            rest_weight_per_minute=2400,
            id_rule="futures",
        )

    def with_(self, **changes: object) -> SimLimits:
        """A copy with ``changes`` applied (``limits.with_(ping_interval=0.2)``)."""
        return replace(self, **changes)  # type: ignore[arg-type]
