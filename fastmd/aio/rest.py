"""REST access over one aiohttp session: the exchange's symbol list (for validating
subscriptions) and depth snapshots (for local order books)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from fastmd.core.codec import PriceType
from fastmd.core.rest_models import DepthSnapshot, ExchangeInfo, RestErrorBody
from fastmd.core.streams import Venue
from fastmd.errors import FastmdError, RestError

__all__ = ["SymbolDirectory", "depth_weight", "fetch_depth"]

_EXCHANGE_INFO = {"binance-spot": "/api/v3/exchangeInfo", "binance-usdm": "/fapi/v1/exchangeInfo"}
_decode_info = msgspec.json.Decoder(ExchangeInfo).decode


class SymbolDirectory:
    """The venue's listed symbols, fetched from ``exchangeInfo`` and kept for ``ttl`` seconds.

    Binance acknowledges a SUBSCRIBE for a well-formed stream of a symbol that does not exist and
    then sends nothing; checking the symbol here is the only way to say so.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        rest_url: str,
        venue: Venue,
        *,
        ttl: float = 3600.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = rest_url.rstrip("/") + _EXCHANGE_INFO[venue]
        self._ttl = ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._symbols: frozenset[str] | None = None
        self._fetched_at = 0.0
        self.weight_limit: int | None = None
        """The REQUEST_WEIGHT limit per minute the exchange announced, once fetched."""

    async def symbols(self) -> frozenset[str]:
        """The listed symbols (uppercase).

        Raises:
            FastmdError: the list could not be fetched or decoded.
        """
        if self._symbols is not None and self._clock() - self._fetched_at < self._ttl:
            return self._symbols
        try:
            async with self._session.get(self._url, timeout=self._timeout) as response:
                body = await response.read()
                if response.status != 200:
                    raise FastmdError(f"exchangeInfo answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FastmdError(f"cannot fetch exchangeInfo: {exc}") from exc
        try:
            info = _decode_info(body)
        except msgspec.MsgspecError as exc:
            raise FastmdError(f"exchangeInfo is not valid: {exc}") from exc
        self._symbols = frozenset(s.symbol for s in info.symbols)
        for limit in info.rate_limits:
            if limit.rate_limit_type == "REQUEST_WEIGHT" and limit.interval == "MINUTE":
                self.weight_limit = limit.limit // max(limit.interval_num, 1)
        self._fetched_at = self._clock()
        return self._symbols


_DEPTH = {"binance-spot": "/api/v3/depth", "binance-usdm": "/fapi/v1/depth"}
_SPOT_DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
_USDM_DEPTH_WEIGHTS = ((50, 2), (100, 5), (500, 10), (1000, 20))
_decode_error = msgspec.json.Decoder(RestErrorBody).decode
_depth_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def depth_weight(venue: Venue, limit: int) -> int:
    """Binance's request weight of a depth snapshot of ``limit`` levels."""
    table = _SPOT_DEPTH_WEIGHTS if venue == "binance-spot" else _USDM_DEPTH_WEIGHTS
    for most, weight in table:
        if limit <= most:
            return weight
    return table[-1][1]


def depth_limits(venue: Venue) -> tuple[int, ...]:
    """The snapshot sizes worth asking for, smallest first (futures accepts only these)."""
    return (100, 500, 1000, 5000) if venue == "binance-spot" else (100, 500, 1000)


async def fetch_depth(
    session: aiohttp.ClientSession,
    rest_url: str,
    venue: Venue,
    symbol: str,
    limit: int,
    *,
    price_type: PriceType = float,
    timeout: float = 10.0,  # noqa: ASYNC109 - an HTTP timeout handed to aiohttp
) -> tuple[DepthSnapshot[Any], int | None]:
    """``GET depth``: the snapshot and the ``X-MBX-USED-WEIGHT-1M`` the server reported.

    Raises:
        RestError: HTTP error (with Binance's code and ``Retry-After``), network failure or an
            invalid body.
    """
    url = rest_url.rstrip("/") + _DEPTH[venue]
    params = {"symbol": symbol.upper(), "limit": str(limit)}
    try:
        async with session.get(
            url, params=params, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            body = await response.read()
            status = response.status
            used_header = response.headers.get("X-MBX-USED-WEIGHT-1M")
            retry_header = response.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RestError(f"GET {url} failed: {exc}") from exc
    used = int(used_header) if used_header and used_header.isdigit() else None
    if status != 200:
        code = None
        message = body[:200].decode("utf-8", "replace")
        try:
            error = _decode_error(body)
            code, message = error.code, error.msg
        except msgspec.MsgspecError:
            pass
        retry_after = None
        if retry_header is not None:
            try:
                retry_after = float(retry_header)
            except ValueError:
                retry_after = None
        raise RestError(
            f"GET {url} {symbol}: HTTP {status} {message}",
            status=status,
            code=code,
            retry_after=retry_after,
        )
    decoder = _depth_decoders.get(price_type)
    if decoder is None:
        decoder = _depth_decoders[price_type] = msgspec.json.Decoder(
            DepthSnapshot[price_type],  # type: ignore[valid-type]
            strict=price_type is not float,
        )
    try:
        return decoder.decode(body), used
    except msgspec.MsgspecError as exc:
        raise RestError(f"GET {url} {symbol}: invalid depth body: {exc}", status=status) from exc
