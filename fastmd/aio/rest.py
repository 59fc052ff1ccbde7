"""REST access over one aiohttp session: the exchange's symbol list (for validating
subscriptions). The full REST client arrives with the market-data layer."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import msgspec

from fastmd.core.rest_models import ExchangeInfo
from fastmd.core.streams import Venue
from fastmd.errors import FastmdError

__all__ = ["SymbolDirectory"]

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
        self._fetched_at = self._clock()
        return self._symbols
