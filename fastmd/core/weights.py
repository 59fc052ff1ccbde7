"""Binance REST request weights (binance-protocol.md §6, §7): what each request costs against the
per-address REQUEST_WEIGHT budget (6,000 a minute spot, 2,400 futures)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fastmd.core.streams import Venue

__all__ = [
    "BAN_STATUSES",
    "DEFAULT_WEIGHT_LIMIT",
    "REST_PREFIX",
    "WEIGHT_HEADROOM",
    "near_limit",
    "usable_weight",
    "ban_seconds",
    "depth_limits",
    "depth_weight",
    "request_weight",
    "seconds_to_minute_turn",
    "snapshot_size",
]

DEFAULT_WEIGHT_LIMIT: Final = {"binance-spot": 6000, "binance-usdm": 2400}
REST_PREFIX: Final[dict[Venue, str]] = {"binance-spot": "/api/v3/", "binance-usdm": "/fapi/v1/"}
"""The path every market-data REST endpoint of a venue sits under (``/api/v3/depth``...)."""
WEIGHT_HEADROOM: Final = 0.9
"""The part of the exchange's weight limit fastmd lets itself use: the rest is a margin for
requests it cannot see (the application's own, other processes on the same address)."""


def usable_weight(limit: int) -> int:
    """The weight per minute fastmd spends of an exchange limit of ``limit`` (at least 1)."""
    return max(int(limit * WEIGHT_HEADROOM), 1)


def near_limit(used: int | None, weight: int, limit: int) -> bool:
    """Whether a request of ``weight`` would take the address past the usable part of the
    exchange's ``limit``, given the ``used`` weight the exchange reported (``None``: unknown,
    so not near)."""
    return used is not None and used + weight > usable_weight(limit)


BAN_STATUSES: Final = frozenset({418, 429})
"""HTTP statuses by which the exchange says stop: 429 over the limit, 418 banned."""


def ban_seconds(status: int, retry_after: float | None) -> float | None:
    """How long every request must wait after a response with ``status`` (None: no ban).
    Binance names the wait in ``Retry-After``; a minute when it leaves it out."""
    if status not in BAN_STATUSES:
        return None
    return retry_after if retry_after is not None else 60.0


def seconds_to_minute_turn(wall_time: float) -> float:
    """Seconds until the exchange's per-minute weight counter resets (it counts per wall-clock
    minute, ``X-MBX-USED-WEIGHT-1M``)."""
    return 60.0 - wall_time % 60.0


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


def depth_weight(venue: Venue, limit: int) -> int:
    """The weight of a depth snapshot of ``limit`` levels."""
    return request_weight(venue, "depth", {"limit": str(limit)})


def depth_limits(venue: Venue) -> tuple[int, ...]:
    """The snapshot sizes worth asking for, smallest first (futures accepts only these)."""
    return (100, 500, 1000, 5000) if venue == "binance-spot" else (100, 500, 1000)


def snapshot_size(venue: Venue, wanted: int | None, free_weight: int, books: int) -> int:
    """The largest useful snapshot size that fits the weight still free.

    Every one of ``books`` order books may need a snapshot now and another after a resync, so
    each gets half of an equal share of ``free_weight``. ``wanted`` is the book's depth (None:
    the venue's largest); when nothing fits, the smallest size.
    """
    limits = depth_limits(venue)
    ceiling = max(wanted or limits[-1], limits[0])
    share = max(free_weight, 0) / max(books, 1) / 2
    choice = limits[0]
    for limit in limits:
        if limit > ceiling:
            break
        if depth_weight(venue, limit) <= share:
            choice = limit
    return choice
