"""Liveness of one connection: client pings, pong matching, dead-link and silent-data decisions.

Rules:

1. A ping goes out every ``Heartbeat.interval`` seconds while the link is open; its payload is a
   sequence number, so a pong is matched to its ping and the round trip measured.
2. At ``timeout`` after a ping, the link is dead only if neither the pong nor any incoming byte
   arrived since the ping: data counts as liveness, so a server that is busy (or slow to pong)
   is not dropped, and a large frame still arriving is not mistaken for silence.
3. Data silence: if ``stale_after`` is set and no data frame arrived for that long while pings
   still succeed, the link is stale (the server forgot our streams): reconnect.

The shell feeds counters and times in; :meth:`Liveness.poll` answers what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Heartbeat"]


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """Client heartbeat settings.

    Attributes:
        interval: seconds between client pings (each measures the round trip).
        timeout: seconds after a ping within which a pong, or any incoming data, must arrive.
    """

    interval: float = 30.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("Heartbeat needs interval > 0 and timeout > 0")


class LivenessAction(IntEnum):
    """What :meth:`Liveness.poll` asks the shell to do."""

    NOTHING = 0
    SEND_PING = 1
    DEAD = 2
    STALE = 3


class Liveness:
    """Ping scheduling and dead/stale decisions for one open connection.

    Args:
        heartbeat: ping interval and timeout.
        stale_after: seconds of data silence that make the link stale; ``None`` disables it.
        now: the time the connection opened.
    """

    def __init__(self, heartbeat: Heartbeat, stale_after: float | None, now: float) -> None:
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self._next_ping = now + heartbeat.interval
        self._outstanding: tuple[int, float, int] | None = None  # (seq, sent_at, frames_then)
        self._seq = 0
        self._last_data_at = now
        self._frames_seen = 0

    @property
    def awaiting_pong(self) -> bool:
        return self._outstanding is not None

    def ping_payload(self, now: float, frames_total: int) -> bytes:
        """Register a ping sent at ``now`` (``frames_total``: frames of any type received so far);
        returns its payload."""
        self._seq += 1
        self._outstanding = (self._seq, now, frames_total)
        self._next_ping = now + self.heartbeat.interval
        return str(self._seq).encode()

    def on_pong(self, payload: bytes, now: float) -> float | None:
        """A pong arrived; returns the round trip in seconds if it answers our ping."""
        outstanding = self._outstanding
        if outstanding is None or payload != str(outstanding[0]).encode():
            return None
        self._outstanding = None
        return now - outstanding[1]

    def poll(
        self,
        now: float,
        data_frames: int,
        frames_total: int,
        socket_idle: float | None = None,
    ) -> LivenessAction:
        """Decide at ``now``.

        Args:
            now: the clock.
            data_frames: data frames received so far.
            frames_total: frames of any type received so far.
            socket_idle: seconds since the socket last received any byte, when the platform
                tells (Linux ``TCP_INFO``); a frame still arriving counts as activity.
        """
        if data_frames != self._frames_seen:
            self._frames_seen = data_frames
            self._last_data_at = now
        outstanding = self._outstanding
        if outstanding is not None and now >= outstanding[1] + self.heartbeat.timeout:
            since_ping = now - outstanding[1]
            bytes_since_ping = socket_idle is not None and socket_idle < since_ping
            if frames_total == outstanding[2] and not bytes_since_ping:
                return LivenessAction.DEAD
            self._outstanding = None  # data arrived since the ping: alive, even without a pong
        if self.stale_after is not None and now - self._last_data_at >= self.stale_after:
            return LivenessAction.STALE
        if self._outstanding is None and now >= self._next_ping:
            return LivenessAction.SEND_PING
        return LivenessAction.NOTHING

    def next_deadline(self, now: float) -> float:
        """When :meth:`poll` should be called next."""
        deadlines = [self._next_ping]
        if self._outstanding is not None:
            deadlines.append(self._outstanding[1] + self.heartbeat.timeout)
        if self.stale_after is not None:
            deadlines.append(self._last_data_at + self.stale_after)
        return max(min(deadlines), now + 0.001)
