"""The client's status and its listeners. The rule is
:func:`fastmd.core.status.overall_status`; this module keeps the current value and tells
``on_status`` listeners when it changes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from fastmd.aio.metrics import Metrics
from fastmd.aio.reporting import Reporter
from fastmd.core.status import ShardView, Status, overall_status

__all__: list[str] = []

StatusListener = Callable[[Status, Metrics], object]


class StatusBoard:
    """The current :class:`fastmd.Status`; listeners get ``(status, metrics)`` on each change.

    Args:
        metrics: takes the metrics snapshot listeners receive.
        reporter: where a raising listener is reported.
    """

    def __init__(self, metrics: Callable[[], Metrics], reporter: Reporter) -> None:
        self.status = Status.CONNECTING
        self._metrics = metrics
        self._reporter = reporter
        self._listeners: list[StatusListener] = []

    def on_status(self, callback: StatusListener) -> Callable[[], None]:
        """Call ``callback(status, metrics)`` on every change; returns a remover."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    def update(self, shards: Sequence[ShardView]) -> None:
        """Apply the status rule to the shards' current states."""
        self.set(overall_status(self.status, shards))

    def set(self, status: Status) -> None:
        if status is self.status:
            return
        self.status = status
        metrics = self._metrics()
        for listener in tuple(self._listeners):
            try:
                listener(status, metrics)
            except Exception as exc:
                self._reporter.callback_failed("a status listener", exc, listener="status")
