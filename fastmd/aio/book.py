"""``fastmd.OrderBook``: a live local order book kept by the snapshot-and-diffs procedure.

The rules live in :mod:`fastmd.core.book`; this module feeds it the diff stream (through the
client's subscription, so the sequencer's gap and duplicate checks run first), fetches REST
snapshots within the weight budget, and tells listeners what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from fastmd.aio.reporting import Reporter
from fastmd.aio.rest import RestClient
from fastmd.aio.tasks import Tasks
from fastmd.core.book import (
    BookState,
    BookSync,
    BookUpdate,
    snapshot_retry_delay,
    stale_snapshot_delay,
)
from fastmd.core.lifecycle import Severity
from fastmd.core.pacing import WeightWindow
from fastmd.core.streams import Venue
from fastmd.core.weights import (
    DEFAULT_WEIGHT_LIMIT,
    ban_seconds,
    depth_weight,
    near_limit,
    seconds_to_minute_turn,
    snapshot_size,
)
from fastmd.errors import (
    BookNotSynced,
    FastmdError,
    FastmdTimeoutError,
    InvalidState,
    RestError,
)

if TYPE_CHECKING:
    from fastmd.aio.subscriptions import Subscription

__all__ = ["BookSnapshot", "OrderBook"]

logger = logging.getLogger(__name__)

DEFAULT_DIFF_STREAM: Final = "@depth@100ms"
"""What follows ``<symbol>`` in the diff stream a JSON client's books sync from."""
SBE_DIFF_STREAM: Final = "@depth"
"""... and an SBE client's (Binance's SBE ``<symbol>@depth``: every 50 ms or faster)."""


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A copy of a book at one update id: bids best first, asks best first."""

    symbol: str
    update_id: int
    bids: list[tuple[Any, Any]]
    asks: list[tuple[Any, Any]]


class OrderBook:
    """A live local order book of one symbol (``await client.order_book("btcusdt")``).

    Reads raise :class:`fastmd.BookNotSynced` while the book is not in sync, unless the book was
    made with ``strict=False``: then they return the (possibly stale) levels and
    :attr:`synced` says whether to trust them.

    Prices are the decoder's numbers (floats by default: Binance's prices, at most 8 decimals,
    map to distinct floats, so distinct price strings never share a level; ``Decimal`` keys in
    exact modes).
    """

    def __init__(self, keeper: BookKeeper, symbol: str, *, depth: int | None, strict: bool) -> None:
        self.symbol = symbol.upper()
        self.depth = depth
        self.strict = strict
        self._keeper = keeper
        self._sync = BookSync(self.symbol, futures=keeper.venue == "binance-usdm")
        self._listeners: list[Callable[[OrderBook, int], object]] = []
        self._synced = asyncio.Event()
        self._fetching: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._closed = False
        self.last_update: BookUpdate | None = None
        """The levels the last applied diff (or snapshot) changed."""
        self.snapshots_fetched = 0

    # -- reads --------------------------------------------------------------------------------

    @property
    def state(self) -> BookState:
        """SYNCING, SYNCED or RESYNCING."""
        return self._sync.state

    @property
    def synced(self) -> bool:
        return self._sync.state is BookState.SYNCED

    @property
    def update_id(self) -> int:
        """The book's last applied update id (the snapshot's ``lastUpdateId`` or a diff's
        ``u``)."""
        return self._sync.update_id

    @property
    def resyncs(self) -> int:
        """How many times the book was thrown away and synced again."""
        return self._sync.resyncs

    def _check(self) -> None:
        if self.strict and self._sync.state is not BookState.SYNCED:
            reason = self._sync.resync_reason or "not synced yet"
            raise BookNotSynced(f"{self.symbol} book is {self._sync.state.name} ({reason})")

    def best_bid(self) -> tuple[Any, Any] | None:
        """``(price, quantity)`` of the best bid, ``None`` if the side is empty.

        Raises:
            BookNotSynced: the book is not in sync (``strict`` books).
        """
        self._check()
        return self._sync.bids.highest()

    def best_ask(self) -> tuple[Any, Any] | None:
        """``(price, quantity)`` of the best ask, ``None`` if the side is empty.

        Raises:
            BookNotSynced: the book is not in sync (``strict`` books).
        """
        self._check()
        return self._sync.asks.lowest()

    def bids(self, n: int | None = None) -> list[tuple[Any, Any]]:
        """The best ``n`` bids (all when ``None``), best first.

        Raises:
            BookNotSynced: the book is not in sync (``strict`` books).
        """
        self._check()
        return self._sync.bids.descending(self._limit(n))

    def asks(self, n: int | None = None) -> list[tuple[Any, Any]]:
        """The best ``n`` asks (all when ``None``), best first.

        Raises:
            BookNotSynced: the book is not in sync (``strict`` books).
        """
        self._check()
        return self._sync.asks.ascending(self._limit(n))

    def _limit(self, n: int | None) -> int | None:
        if self.depth is None:
            return n
        return self.depth if n is None else min(n, self.depth)

    def snapshot(self) -> BookSnapshot:
        """A copy of the whole book.

        Raises:
            BookNotSynced: the book is not in sync (``strict`` books).
        """
        return BookSnapshot(self.symbol, self.update_id, self.bids(), self.asks())

    def on_update(self, callback: Callable[[OrderBook, int], object]) -> Callable[[], None]:
        """Call ``callback(book, update_id)`` after every applied diff (and after each sync);
        ``book.last_update`` holds the changed levels. Returns a remover."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def wait_synced(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the book is in sync.

        Raises:
            FastmdTimeoutError: ``timeout`` passed first.
            InvalidState: the book was closed.
        """
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            raise FastmdTimeoutError(
                f"{self.symbol} book not synced within {timeout:g} s"
            ) from None
        if self._closed:
            raise InvalidState("the order book was closed")

    def close(self) -> None:
        """Stop maintaining the book (unsubscribes its diff stream)."""
        if self._closed:
            return
        self._closed = True
        if self._subscription is not None:
            self._subscription.unsubscribe()
        if self._fetching is not None:
            self._fetching.cancel()
        self._synced.set()
        self._keeper.forget(self)

    # -- feeding ------------------------------------------------------------------------------

    async def start(self, timeout: float | None) -> None:  # noqa: ASYNC109
        """Subscribe the diff stream and fetch the first snapshot (called once, by the client's
        :meth:`fastmd.Client.order_book`; diffs are buffered from the acknowledgement on).

        Raises:
            SubscriptionError: the diff stream could not be subscribed.
            FastmdTimeoutError: not acknowledged within ``timeout``.
        """
        self._subscription = self._keeper.subscribe_diffs(self.symbol, self._on_diff)
        try:
            await self._subscription.wait_active(timeout)
        except FastmdError:
            self.close()
            raise
        self._request_snapshot()

    def _on_diff(self, event: Any) -> None:
        sync = self._sync
        was = sync.state
        update = sync.on_diff(event)
        if sync.state is not BookState.SYNCED:
            if was is BookState.SYNCED:
                self._synced.clear()
                self._keeper.resyncing(self, sync.resync_reason or "gap")
            if sync.needs_snapshot:
                self._request_snapshot()
            return
        if update is not None:
            self._updated(update)

    def _updated(self, update: BookUpdate) -> None:
        self.last_update = update
        self._synced.set()
        for listener in tuple(self._listeners):
            try:
                listener(self, update.update_id)
            except Exception as exc:
                self._keeper.listener_failed(self, exc)

    def _request_snapshot(self) -> None:
        if self._fetching is None and not self._closed:
            self._fetching = self._keeper.spawn(self._fetch_snapshot())

    async def _fetch_snapshot(self) -> None:
        try:
            attempt = 0
            while not self._closed and self._sync.needs_snapshot:
                attempt += 1
                try:
                    snapshot = await self._keeper.fetch(self)
                except RestError as error:
                    delay = snapshot_retry_delay(attempt, error.retry_after)
                    self._keeper.reporter.report(
                        Severity.WARNING, "snapshot_failed",
                        f"{self.symbol} snapshot failed ({error}); retry in {delay:.2f} s", error,
                        symbol=self.symbol,
                    )  # fmt: skip
                    await asyncio.sleep(delay)
                    continue
                self.snapshots_fetched += 1
                update = self._sync.on_snapshot(snapshot)
                if self._sync.state is BookState.SYNCED and update is not None:
                    self._updated(update)
                elif self._sync.needs_snapshot:  # stale: fetch again after a short pause
                    await asyncio.sleep(stale_snapshot_delay(attempt))
        finally:
            self._fetching = None


class BookKeeper:
    """The client's books and the weight budget their snapshots share.

    Args:
        venue: the venue (snapshot sizes and weights).
        subscribe: subscribes a callback to a stream (the client's ``subscribe``).
        rest: the client's REST access.
        weight_limit: the exchange's announced weight limit per minute, once known.
        tasks: where snapshot fetches run.
        reporter: where resyncs, failed snapshots and raising listeners are reported.
        weight_budget: REST weight per minute the snapshots may spend.
        diff_stream: the diff stream after ``<symbol>``: :data:`DEFAULT_DIFF_STREAM`, or
            :data:`SBE_DIFF_STREAM` on an SBE client.
    """

    def __init__(
        self,
        venue: Venue,
        *,
        subscribe: Callable[[str, Callable[[Any], object]], Subscription],
        rest: Callable[[], RestClient],
        weight_limit: Callable[[], int | None],
        tasks: Tasks,
        reporter: Reporter,
        weight_budget: int,
        diff_stream: str = DEFAULT_DIFF_STREAM,
    ) -> None:
        self.venue = venue
        self.diff_stream = diff_stream
        self._subscribe = subscribe
        self._rest = rest
        self._weight_limit = weight_limit
        self._tasks = tasks
        self.reporter = reporter
        self.books: dict[str, OrderBook] = {}
        self.weights = WeightWindow(weight_budget)
        self.resyncs = 0

    async def open(
        self,
        symbol: str,
        depth: int | None,
        *,
        strict: bool,
        timeout: float | None,  # noqa: ASYNC109
    ) -> OrderBook:
        """The book of ``symbol``, synced; the same object for repeated calls (see
        :meth:`fastmd.Client.order_book`)."""
        key = symbol.upper()
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = OrderBook(self, key, depth=depth, strict=strict)
            await book.start(timeout)
        await book.wait_synced(timeout)
        return book

    def close(self) -> None:
        """Stop every book."""
        for book in list(self.books.values()):
            book.close()

    # -- the books' side ----------------------------------------------------------------------

    def subscribe_diffs(self, symbol: str, on_diff: Callable[[Any], object]) -> Subscription:
        """Subscribe ``on_diff`` to ``symbol``'s diff stream (100 ms on JSON, ``@depth`` on
        SBE)."""
        return self._subscribe(f"{symbol.lower()}{self.diff_stream}", on_diff)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a book's background work."""
        return self._tasks.spawn(coro)

    def forget(self, book: OrderBook) -> None:
        """``book`` closed."""
        if self.books.get(book.symbol) is book:
            del self.books[book.symbol]

    def resyncing(self, book: OrderBook, reason: str) -> None:
        """``book`` lost sync and is thrown away to sync again."""
        self.resyncs += 1
        self.reporter.report(
            Severity.WARNING, "book_resync", f"{book.symbol} book resyncing ({reason})", None,
            symbol=book.symbol,
        )  # fmt: skip

    def listener_failed(self, book: OrderBook, exc: Exception) -> None:
        """An ``on_update`` listener of ``book`` raised."""
        self.reporter.callback_failed(
            f"on_update of the {book.symbol} book", exc, symbol=book.symbol
        )

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot_limit(self, book: OrderBook) -> int:
        """The snapshot size for ``book`` that the weight still free in the window allows."""
        free = self.weights.budget - self.weights.used(time.monotonic())
        return snapshot_size(self.venue, book.depth, free, len(self.books))

    async def fetch(self, book: OrderBook) -> Any:
        """A REST snapshot for ``book``, within the weight budget."""
        limit = self.snapshot_limit(book)
        weight = depth_weight(self.venue, limit)
        while True:
            wait = self.weights.delay(time.monotonic(), weight)
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        self.weights.record(time.monotonic(), weight)
        rest = self._rest()
        try:
            snapshot = await rest.depth(book.symbol, limit)
        except RestError as error:
            ban = ban_seconds(error.status or 0, error.retry_after)
            if ban is not None:
                self.weights.block(time.monotonic(), ban)
            raise
        used = rest.used_weight
        limit_now = self._weight_limit() or DEFAULT_WEIGHT_LIMIT[self.venue]
        if near_limit(used, weight, limit_now):
            # The address is near the exchange's own limit (the application spends weight
            # too): no more snapshots until the exchange's minute turns.
            self.weights.block(time.monotonic(), seconds_to_minute_turn(time.time()))
        return snapshot
