"""Local order books: the snapshot-plus-diffs procedure of Binance, spot and USD-M futures.

Rules (binance-protocol.md §5). Both venues buffer diffs while the REST snapshot is fetched.

Spot:

1. A snapshot whose ``lastUpdateId`` is below the first buffered ``U`` is stale: fetch again.
2. Buffered diffs with ``u <= lastUpdateId`` are dropped.
3. The first applied diff must satisfy ``U <= lastUpdateId + 1 <= u``.
4. Every later diff must have ``U == previous u + 1``.

Futures:

1. Buffered diffs with ``u < lastUpdateId`` are dropped (``<``, not ``<=``).
2. The first applied diff must satisfy ``U <= lastUpdateId <= u`` (no ``+ 1``), or chain from
   the snapshot by ``pu == lastUpdateId`` (a snapshot taken exactly between two diffs).
3. Every later diff must have ``pu == previous u``.

Both: quantities are absolute, zero removes the level; a diff whose ``u`` is not past the book is
a duplicate and ignored; a break in the chain, a crossed book after applying a diff, or more than
``max_buffer`` buffered diffs throws the book away and starts again (that symbol only).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

__all__ = ["BookState", "BookUpdate"]

DEFAULT_MAX_BUFFER: Final = 10_000

SNAPSHOT_RETRY_DELAY: Final = 0.25
"""Seconds before the first retry of a snapshot."""
SNAPSHOT_MAX_DELAY: Final = 3.0
"""The longest wait between two snapshot attempts (unless the exchange asks for longer)."""


def snapshot_retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``attempt``-th snapshot request failed: doubling from
    :data:`SNAPSHOT_RETRY_DELAY` up to :data:`SNAPSHOT_MAX_DELAY`, and never less than the
    exchange's ``Retry-After``."""
    delay = min(SNAPSHOT_RETRY_DELAY * 2.0 ** (attempt - 1), SNAPSHOT_MAX_DELAY)
    return delay if retry_after is None else max(delay, retry_after)


def stale_snapshot_delay(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th snapshot was older than the buffered diffs (the
    REST side lags the stream): growing by :data:`SNAPSHOT_RETRY_DELAY` a time, capped."""
    return min(SNAPSHOT_RETRY_DELAY * attempt, SNAPSHOT_MAX_DELAY)


class BookState(IntEnum):
    """State of a local order book."""

    SYNCING = 0
    """Waiting for the first snapshot; diffs are buffered."""
    SYNCED = 1
    """Snapshot plus every diff since: the book is right."""
    RESYNCING = 2
    """The book was thrown away (gap, crossed, stale snapshot); a new snapshot is under way."""


class ResyncReason:
    """Why a book was thrown away (values of ``BookSync.resync_reason``)."""

    GAP = "gap"
    CROSSED = "crossed"
    STALE_SNAPSHOT = "stale_snapshot"
    BUFFER_FULL = "buffer_full"
    RECONNECT = "reconnect"
    REQUESTED = "requested"


class Levels:
    """One side of a book: exact price keys, kept sorted ascending (best bid is the last).

    Reads of the best level do not sort: the price list is maintained by bisection on update.
    """

    __slots__ = ("_prices", "_quantities")

    def __init__(self) -> None:
        self._prices: list[Any] = []
        self._quantities: dict[Any, Any] = {}

    def set(self, price: Any, quantity: Any) -> None:
        quantities = self._quantities
        if quantity == 0:  # works for float, Decimal; str "0.000" is handled by the caller
            if quantities.pop(price, None) is not None:
                prices = self._prices
                del prices[bisect.bisect_left(prices, price)]
            return
        if price not in quantities:
            bisect.insort(self._prices, price)
        quantities[price] = quantity

    def clear(self) -> None:
        self._prices.clear()
        self._quantities.clear()

    def __len__(self) -> int:
        return len(self._prices)

    def lowest(self) -> tuple[Any, Any] | None:
        if not self._prices:
            return None
        price = self._prices[0]
        return price, self._quantities[price]

    def highest(self) -> tuple[Any, Any] | None:
        if not self._prices:
            return None
        price = self._prices[-1]
        return price, self._quantities[price]

    def ascending(self, n: int | None = None) -> list[tuple[Any, Any]]:
        prices = self._prices if n is None else self._prices[:n]
        return [(p, self._quantities[p]) for p in prices]

    def descending(self, n: int | None = None) -> list[tuple[Any, Any]]:
        prices = self._prices[::-1] if n is None else self._prices[: -n - 1 : -1]
        return [(p, self._quantities[p]) for p in prices]


def _number(value: Any) -> Any:
    """Book keys: exact strings become Decimals (ordering must be numeric); numbers stay."""
    if isinstance(value, str):
        from decimal import Decimal

        return Decimal(value)
    return value


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """What one applied diff changed: ``(price, quantity)`` per side, zero meaning removed."""

    update_id: int
    bids: Sequence[tuple[Any, Any]]
    asks: Sequence[tuple[Any, Any]]


class BookSync:
    """The sync state machine and the levels of one symbol's book (sans-I/O).

    Feed it with :meth:`on_diff` (every diff event, in order) and :meth:`on_snapshot`; read
    :attr:`needs_snapshot` to know when to fetch one.

    Args:
        symbol: the symbol (for messages).
        futures: USD-M rules instead of spot ones.
        max_buffer: diffs buffered while syncing before the attempt is abandoned.
    """

    def __init__(self, symbol: str, *, futures: bool, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        self.symbol = symbol
        self.futures = futures
        self.max_buffer = max_buffer
        self.state = BookState.SYNCING
        self.bids = Levels()
        self.asks = Levels()
        self.update_id = 0
        self.needs_snapshot = True
        self.resync_reason: str | None = None
        self.resyncs = 0
        self.applied = 0
        self.level_changes = 0
        self._buffer: list[Any] = []
        self._snapshot: Any = None

    # -- inputs -------------------------------------------------------------------------------

    def on_diff(self, event: Any) -> BookUpdate | None:
        """Take one diff; returns what changed when it was applied to a synced book."""
        if self.state is BookState.SYNCED:
            return self._apply_live(event)
        self._buffer.append(event)
        if len(self._buffer) > self.max_buffer:
            self._restart(ResyncReason.BUFFER_FULL)
            return None
        if self._snapshot is not None:
            return self._try_sync()
        return None

    def on_snapshot(self, snapshot: Any) -> BookUpdate | None:
        """Take a REST snapshot (``last_update_id``, ``bids``, ``asks``)."""
        self.needs_snapshot = False
        self._snapshot = snapshot
        return self._try_sync()

    def invalidate(self, reason: str) -> None:
        """Throw the book away and sync again (e.g. after a reconnect)."""
        self._restart(reason)

    # -- sync ---------------------------------------------------------------------------------

    def _try_sync(self) -> BookUpdate | None:
        snapshot = self._snapshot
        last = int(snapshot.last_update_id)
        buffer = self._buffer
        if not buffer:
            return None  # judge the snapshot against the first diff
        if self.futures:
            pending = [e for e in buffer if e.final_update_id >= last]
        else:
            pending = [e for e in buffer if e.final_update_id > last]
        if not pending:
            self._buffer = []
            return None  # the snapshot is ahead of every diff so far: wait for the next ones
        first = pending[0]
        if self.futures:
            # Binance's rule is U <= lastUpdateId <= u. A snapshot taken exactly between two
            # diffs has no such diff; the next one then chains from it by pu, which is exact.
            fits = (
                first.first_update_id <= last <= first.final_update_id
                or first.prev_final_update_id == last
            )
        else:
            fits = first.first_update_id <= last + 1 <= first.final_update_id
        if not fits:
            # Buffered diffs are contiguous from the subscription on, so a first pending diff
            # that starts past the snapshot means the snapshot is older than what we hold.
            self._restart(ResyncReason.STALE_SNAPSHOT)
            return None
        self.bids.clear()
        self.asks.clear()
        for price, quantity in snapshot.bids:
            self.bids.set(_number(price), _number(quantity))
        for price, quantity in snapshot.asks:
            self.asks.set(_number(price), _number(quantity))
        self.update_id = last
        self._snapshot = None
        self._buffer = []
        self.state = BookState.SYNCED
        self.resync_reason = None
        changed_bids: list[tuple[Any, Any]] = []
        changed_asks: list[tuple[Any, Any]] = []
        first_diff = True
        for event in pending:
            if not first_diff and not self._continues(event):
                self._restart(ResyncReason.GAP)
                return None
            first_diff = False
            self._apply(event, changed_bids, changed_asks)
            if self.state is not BookState.SYNCED:
                return None
        return BookUpdate(self.update_id, list(snapshot.bids) + changed_bids,
                          list(snapshot.asks) + changed_asks)  # fmt: skip

    def _continues(self, event: Any) -> bool:
        if self.futures:
            return bool(event.prev_final_update_id == self.update_id)
        return bool(event.first_update_id == self.update_id + 1)

    def _apply_live(self, event: Any) -> BookUpdate | None:
        if event.final_update_id <= self.update_id:
            return None  # duplicate or already in the snapshot
        if not self._continues(event):
            self._restart(ResyncReason.GAP)
            self._buffer.append(event)
            return None
        bids: list[tuple[Any, Any]] = []
        asks: list[tuple[Any, Any]] = []
        self._apply(event, bids, asks)
        if self.state is not BookState.SYNCED:
            return None
        return BookUpdate(self.update_id, bids, asks)

    def _apply(self, event: Any, bids: list[Any], asks: list[Any]) -> None:
        for price, quantity in event.bids:
            price, quantity = _number(price), _number(quantity)
            self.bids.set(price, quantity)
            bids.append((price, quantity))
        for price, quantity in event.asks:
            price, quantity = _number(price), _number(quantity)
            self.asks.set(price, quantity)
            asks.append((price, quantity))
        self.level_changes += len(event.bids) + len(event.asks)
        self.update_id = event.final_update_id
        self.applied += 1
        best_bid, best_ask = self.bids.highest(), self.asks.lowest()
        if best_bid is not None and best_ask is not None and best_bid[0] >= best_ask[0]:
            self._restart(ResyncReason.CROSSED)

    def _restart(self, reason: str) -> None:
        self.state = BookState.RESYNCING
        self.resync_reason = reason
        self.resyncs += 1
        self.needs_snapshot = True
        self._snapshot = None
        self._buffer = []
        self.bids.clear()
        self.asks.clear()

    @property
    def buffered(self) -> int:
        return len(self._buffer)
