"""Binance REST request weights (binance-protocol.md §6, §7): what each request costs against the
per-address REQUEST_WEIGHT budget (6,000 a minute spot, 2,400 futures)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fastmd.core.streams import Venue

__all__ = ["DEFAULT_WEIGHT_LIMIT", "request_weight"]

DEFAULT_WEIGHT_LIMIT: Final = {"binance-spot": 6000, "binance-usdm": 2400}


def _limit(params: Mapping[str, str], default: int) -> int:
    try:
        return int(params.get("limit", default))
    except ValueError:
        return default


def _spot(endpoint: str, params: Mapping[str, str]) -> int:
    has_symbol = "symbol" in params
    if endpoint == "depth":
        limit = _limit(params, 100)
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if endpoint == "ticker/24hr":
        if has_symbol:
            return 2
        symbols = params.get("symbols")
        if symbols is None:
            return 80
        count = symbols.count(",") + 1
        return 2 if count <= 20 else 40 if count <= 100 else 80
    if endpoint in ("ticker/price", "ticker/bookTicker"):
        return 2 if has_symbol else 4
    fixed = {
        "ping": 1, "time": 1, "exchangeInfo": 20, "trades": 25, "historicalTrades": 25,
        "aggTrades": 4, "klines": 2, "uiKlines": 2, "avgPrice": 2,
    }  # fmt: skip
    return fixed.get(endpoint, 1)


def _futures(endpoint: str, params: Mapping[str, str]) -> int:
    has_symbol = "symbol" in params
    if endpoint == "depth":
        limit = _limit(params, 500)
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    if endpoint == "klines":
        limit = _limit(params, 500)
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    by_symbol = {
        "ticker/24hr": (1, 40), "ticker/price": (1, 2), "ticker/bookTicker": (2, 5),
        "premiumIndex": (1, 10),
    }  # fmt: skip
    if endpoint in by_symbol:
        one, every = by_symbol[endpoint]
        return one if has_symbol else every
    fixed = {
        "ping": 1, "time": 1, "exchangeInfo": 1, "trades": 5, "historicalTrades": 20,
        "aggTrades": 20,
    }  # fmt: skip
    return fixed.get(endpoint, 1)


def request_weight(venue: Venue, endpoint: str, params: Mapping[str, str]) -> int:
    """The weight of ``GET <prefix>/<endpoint>?<params>`` on ``venue``."""
    return _spot(endpoint, params) if venue == "binance-spot" else _futures(endpoint, params)
