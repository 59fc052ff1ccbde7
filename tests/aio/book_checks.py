"""The recorded session's bookTicker checkpoints: every bookTicker the exchange sent is compared
with the client's order book at the same update id (now, or when the book reaches that id), so a
test can count how many of the recording's 26 checkpoints its book matched."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import fastmd


class BookTickerCheck:
    """Pass ``on_ticker`` to the bookTicker subscription and ``watch`` the client's books."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, int], Any] = {}
        self.checked: list[int] = []
        self.books: dict[str, fastmd.OrderBook] = {}

    def check(self, book: fastmd.OrderBook, ticker: Any) -> None:
        assert book.best_bid() == (Decimal(ticker.bid_price), Decimal(ticker.bid_quantity))
        assert book.best_ask() == (Decimal(ticker.ask_price), Decimal(ticker.ask_quantity))
        self.checked.append(ticker.update_id)

    def on_ticker(self, ticker: Any) -> None:
        book = self.books.get(ticker.symbol)
        if book is not None and book.synced and book.update_id == ticker.update_id:
            self.check(book, ticker)
        else:
            self.waiting[(ticker.symbol, ticker.update_id)] = ticker

    def on_update(self, book: fastmd.OrderBook, update_id: int) -> None:
        ticker = self.waiting.pop((book.symbol, update_id), None)
        if ticker is not None:
            self.check(book, ticker)

    def watch(self, books: Mapping[str, fastmd.OrderBook]) -> None:
        """Check tickers against ``books`` (symbol -> book) from now on."""
        for symbol, book in books.items():
            self.books[symbol] = book
            book.on_update(self.on_update)
