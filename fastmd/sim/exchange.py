"""``fastmd.sim.Exchange``: the simulated exchange, its driver and its fault switches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from fastmd.sim.limits import SimLimits
from fastmd.sim.market import Market
from fastmd.sim.replay import Recording, ReplayMarket
from fastmd.sim.rest import RestServer
from fastmd.sim.sbe import SbeStreams, SbeTranscoder
from fastmd.sim.venues import Venue
from fastmd.sim.ws import WsServer

__all__ = ["Exchange", "Fault", "Faults"]

logger = logging.getLogger(__name__)

_FLOOD_BACKLOG = 1 << 20  # bytes a flood lets pile up unsent per subscriber before it waits

MalformedKind = Literal["not_json", "invalid_utf8", "wrong_types", "oversized", "binary"]


def _skewed(clock: Callable[[], float], skew: float) -> Callable[[], float]:
    """``clock`` running ``skew`` seconds ahead."""

    def skewed() -> float:
        return clock() + skew

    return skewed


class Fault:
    """A reversible fault in force; :meth:`clear` ends it (idempotent)."""

    def __init__(self, undo: Callable[[], None], duration: float | None) -> None:
        self._undo: Callable[[], None] | None = undo
        self._timer: asyncio.TimerHandle | None = None
        if duration is not None:
            self._timer = asyncio.get_running_loop().call_later(duration, self.clear)

    @property
    def active(self) -> bool:
        return self._undo is not None

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()


class Faults:
    """Fault injection on a running :class:`Exchange`.

    ``connection`` selects one connection by id (see ``Exchange.connections``); ``None`` means all.
    Reversible faults return a :class:`Fault`; pass ``duration`` (seconds) to end them by
    themselves. :meth:`clear` ends every fault in force.
    """

    def __init__(self, ws: WsServer, rest: RestServer) -> None:
        self._ws = ws
        self._rest = rest
        self._active: list[Fault] = []

    def _track(self, undo: Callable[[], None], duration: float | None) -> Fault:
        fault = Fault(undo, duration)
        self._active.append(fault)
        return fault

    def drop_connections(
        self,
        *,
        mode: Literal["close", "fin", "rst"] = "close",
        code: int = 1001,
        reason: str = "",
        connection: int | None = None,
    ) -> int:
        """Drop connections now: a close frame with ``code``/``reason``, a TCP FIN without a close
        frame, or a TCP RST. Returns how many were dropped."""
        return self._ws.drop(mode=mode, code=code, reason=reason, connection_id=connection)

    def stall(
        self,
        *,
        connection: int | None = None,
        streams: Iterable[str] | None = None,
        duration: float | None = None,
    ) -> Fault:
        """Stop sending data (of ``streams``, or all) while still answering pings."""
        selected = frozenset(streams) if streams is not None else None
        self._ws.set_stall(True, connection_id=connection, streams=selected)
        return self._track(
            lambda: self._ws.set_stall(False, connection_id=connection, streams=selected), duration
        )

    def mute_stream(
        self,
        stream: str,
        duration: float | None = None,
        *,
        connection: int | None = None,
        until_resubscribed: bool = False,
    ) -> Fault:
        """Stop sending ``stream``'s data while every other stream (on the same connections too),
        pings and control replies go on: the stream goes silent, its socket stays healthy.

        Works for every stream the simulator publishes (the name as subscribed, e.g.
        ``"btcusdt@trade"``, ``"btcusdt@depth@100ms"``, ``"!miniTicker@arr"``). The muted
        frames are dropped, not delayed: clearing the fault resumes the stream with the next
        frame it publishes.

        Args:
            stream: the stream to mute.
            duration: seconds after which the mute ends by itself (``None``: until cleared).
            connection: mute it on that connection only; ``None`` mutes it on every connection,
                those opened later included (a resubscription or a new connection does not bring
                it back, unless ``until_resubscribed``).
            until_resubscribed: on each connection, the mute ends when the client subscribes to
                the stream there again (UNSUBSCRIBE then SUBSCRIBE, or a new connection).

        Raises:
            ValueError: ``stream`` is not a valid stream name of the venue.
        """
        self._ws.set_mute(
            stream, True, connection_id=connection, until_resubscribed=until_resubscribed
        )
        return self._track(
            lambda: self._ws.set_mute(
                stream, False, connection_id=connection, until_resubscribed=until_resubscribed
            ),
            duration,
        )

    def half_open(self, *, connection: int | None = None, duration: float | None = None) -> Fault:
        """Go silent: no data, no pings, no pongs; the TCP connection stays open."""
        self._ws.set_half_open(True, connection_id=connection)
        return self._track(
            lambda: self._ws.set_half_open(False, connection_id=connection), duration
        )

    def skip(self, stream: str, count: int = 1) -> None:
        """Skip the next ``count`` frames of ``stream``: their ids never reach any client."""
        self._ws.skip(stream, count)

    def duplicate(self, stream: str, count: int = 1) -> None:
        """Send each of the next ``count`` frames of ``stream`` twice."""
        self._ws.duplicate(stream, count)

    def malformed(
        self, kind: MalformedKind, *, connection: int | None = None, stream: str | None = None
    ) -> int:
        """Send one malformed frame now (as a frame of ``stream`` where it matters). Returns how
        many connections got it."""
        return self._ws.inject(kind, connection_id=connection, stream=stream)

    def server_shutdown(
        self, *, close_after: float = 0.0, code: int = 1001, connection: int | None = None
    ) -> int:
        """Send ``serverShutdown``, then close ``close_after`` seconds later."""
        return self._ws.shutdown(close_after=close_after, code=code, connection_id=connection)

    def refuse_upgrades(
        self,
        status: int = 503,
        *,
        retry_after: float | None = None,
        duration: float | None = None,
    ) -> Fault:
        """Refuse new WebSocket upgrades with HTTP ``status`` (and a ``Retry-After`` header when
        ``retry_after`` is given)."""
        self._ws.set_refuse_upgrades(status, retry_after=retry_after)
        return self._track(lambda: self._ws.set_refuse_upgrades(None), duration)

    def rest_error(
        self,
        status: int,
        *,
        count: int | None = None,
        retry_after: float | None = None,
        path: str | None = None,
        duration: float | None = None,
    ) -> Fault:
        """Answer REST requests (to ``path``, or all) with ``status``: 429/418 as Binance's
        rate-limit responses, 5xx as server errors; for the next ``count`` requests or until
        cleared."""
        self._rest.set_error(status, count=count, retry_after=retry_after, path=path)
        return self._track(lambda: self._rest.set_error(None), duration)

    def stale_snapshot(self, *symbols: str) -> Fault:
        """Capture the depth snapshots of ``symbols`` now; each symbol's next REST depth request
        gets its captured snapshot, once: older than any diff a client buffers meanwhile."""
        self._rest.set_stale_depth(symbols)
        return self._track(lambda: self._rest.set_stale_depth(None), None)

    def rest_delay(self, seconds: float, *, duration: float | None = None) -> Fault:
        """Delay every REST response by ``seconds``."""
        self._rest.set_delay(seconds)
        return self._track(lambda: self._rest.set_delay(None), duration)

    def rest_timeout(self, *, duration: float | None = None) -> Fault:
        """Accept REST requests and never answer them (until cleared)."""
        self._rest.set_timeout(True)
        return self._track(lambda: self._rest.set_timeout(False), duration)

    def clear(self) -> None:
        """End every reversible fault in force."""
        faults, self._active = self._active, []
        for fault in faults:
            fault.clear()


class Exchange:
    """A Binance-compatible exchange on loopback: WebSocket streams (picows) and REST (aiohttp).

    Use it as an async context manager; ``ws_url`` and ``rest_url`` are base URLs, as for Binance::

        async with fastmd.sim.Exchange(symbols=["BTCUSDT", "ETHUSDT"], seed=1) as ex:
            print(ex.ws_url, ex.rest_url)

    Args:
        venue: ``"binance-spot"`` or ``"binance-usdm"``.
        symbols: listed symbols (any case). Well-formed streams of other symbols are acknowledged
            and stay silent, as on Binance.
        seed: seed of the synthetic market (same seed, same market).
        host: address to bind; loopback by default.
        port: WebSocket port (0 picks a free one); ``rest_port`` likewise for REST.
        rate: order-flow events per second driving the market; 0 moves it only through
            :meth:`advance`.
        limits: venue limits (:class:`SimLimits`); Binance's values by default.
        replay: a recording folder to serve instead of the synthetic market.
        replay_speed: 1.0 replays at the recorded pace, 2.0 twice as fast, ``None`` as fast as
            possible.
        replay_autostart: start the replay with the first subscription to a recorded stream;
            otherwise call :meth:`start_replay`.
        tick_interval: how often (seconds) the driver runs the market's timers.
        clock_skew: seconds the exchange's clock runs ahead of ``clock`` (negative: behind;
            a finite number, else ValueError). Every time the exchange tells is shifted by it:
            REST ``serverTime``, the event times (``E``, ``T``...) of the streams it publishes,
            ping payloads. A replay sends its recorded payloads as recorded (their times
            unshifted); its REST time is shifted.
        clock: wall clock for event times (``time.time``).
        sbe: serve Binance's SBE market data (spot) on ``ws_url`` instead of JSON, as
            ``wss://stream-sbe.binance.com`` does: ``<symbol>@trade``, ``@bestBidAsk``,
            ``@depth`` and ``@depth20`` as binary frames of the same market
            (:mod:`fastmd.sim.sbe`), control messages as JSON text, and every upgrade needs an
            ``X-MBX-APIKEY`` header (HTTP 401 without). ``sbe_url`` names the same endpoint.
        api_keys: with ``sbe``, the API keys accepted (``None``: any non-empty key).
    """

    def __init__(
        self,
        venue: Venue = "binance-spot",
        symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rest_port: int = 0,
        rate: float = 50.0,
        limits: SimLimits | None = None,
        replay: str | Path | None = None,
        replay_speed: float | None = 1.0,
        replay_autostart: bool = True,
        tick_interval: float = 0.01,
        clock_skew: float = 0.0,
        clock: Callable[[], float] = time.time,
        sbe: bool = False,
        api_keys: Iterable[str] | None = None,
    ) -> None:
        if not abs(clock_skew) < float("inf"):  # NaN fails the comparison too
            raise ValueError(f"clock_skew must be a finite number of seconds, not {clock_skew!r}")
        if clock_skew:
            clock = _skewed(clock, clock_skew)
        if venue not in ("binance-spot", "binance-usdm"):
            raise ValueError(f"unknown venue {venue!r}; allowed: 'binance-spot', 'binance-usdm'")
        if rate < 0 or tick_interval <= 0:
            raise ValueError("rate must be >= 0 and tick_interval > 0")
        self.recording = Recording(replay) if replay is not None else None
        self.venue: Venue = self.recording.venue if self.recording else venue
        self.limits = limits or SimLimits.for_venue(self.venue)
        self.host = host
        self.rate = rate
        self.replay_speed = replay_speed
        self.replay_autostart = replay_autostart
        self.tick_interval = tick_interval
        self.clock = clock
        """The exchange's wall clock (``clock`` shifted by ``clock_skew``)."""
        self.clock_skew = clock_skew
        self.market: Any
        if self.recording is not None:
            self.market = ReplayMarket(self.recording, lambda: clock() * 1000)
        else:
            self.market = Market(self.venue, symbols, seed=seed, clock=clock)
        self.sbe = sbe
        self._transcoder: SbeTranscoder | None = None
        if sbe:
            self._transcoder = SbeTranscoder(lambda: int(clock() * 1_000_000), self._decimals)
        self._ws = WsServer(
            venue=self.venue, limits=self.limits, on_streams_changed=self._streams_changed,
            clock=clock, sbe=sbe, api_keys=api_keys,
        )  # fmt: skip
        self._rest = RestServer(
            venue=self.venue, market=self.market, limits=self.limits, clock=clock
        )
        self.faults = Faults(self._ws, self._rest)
        self._port = port
        self._rest_port = rest_port
        self._ws_port = 0
        self._bound_rest_port = 0
        self._driver: asyncio.Task[None] | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._replay_done: asyncio.Event | None = None
        self._replay_sent = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Exchange:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind both servers and start driving the market."""
        self._replay_done = asyncio.Event()
        self._ws_port = await self._ws.start(self.host, self._port)
        try:
            self._bound_rest_port = await self._rest.start(self.host, self._rest_port)
        except BaseException:
            await self._ws.stop()
            raise
        if self.recording is None:
            self._driver = asyncio.create_task(self._drive(), name="fastmd-sim-driver")
        logger.info("simulator up: %s %s (%s)", self.ws_url, self.rest_url, self.venue)

    async def stop(self) -> None:
        """Close every connection and both servers; idempotent."""
        self.faults.clear()
        for task in (self._driver, self._replay_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._driver = self._replay_task = None
        await self._ws.stop()
        await self._rest.stop()

    @property
    def ws_url(self) -> str:
        """Base WebSocket URL (``ws://127.0.0.1:PORT``)."""
        return f"ws://{self.host}:{self._ws_port}"

    @property
    def sbe_url(self) -> str:
        """Base URL of the SBE endpoint (``Exchange(sbe=True)``): the same as ``ws_url``."""
        if not self.sbe:
            raise RuntimeError("sbe_url needs Exchange(sbe=True)")
        return self.ws_url

    @property
    def rest_url(self) -> str:
        """Base REST URL (``http://127.0.0.1:PORT``)."""
        return f"http://{self.host}:{self._bound_rest_port}"

    @property
    def connections(self) -> list[Any]:
        """The open WebSocket connections (id, path, combined, subscriptions, incoming log)."""
        return self._ws.connections

    @property
    def ws(self) -> WsServer:
        """The WebSocket server (for inspection in tests)."""
        return self._ws

    @property
    def rest(self) -> RestServer:
        """The REST server (for inspection in tests)."""
        return self._rest

    # -- market ----------------------------------------------------------------------------

    def _streams_changed(self, streams: set[str]) -> None:
        if self.sbe:
            recorded = self.recording is not None
            streams = {
                name
                for sbe_name in streams
                if (name := SbeStreams.market_stream(sbe_name, recorded=recorded)) is not None
            }
        self.market.set_active(streams)
        if (
            self.recording is not None
            and self.replay_autostart
            and self._replay_task is None
            and streams & set(self.recording.streams)
        ):
            self.start_replay()

    def _decimals(self, symbol: str) -> tuple[int, int] | None:
        """A synthetic symbol's price and quantity decimals (its SBE exponents)."""
        book = self.market.book(symbol) if isinstance(self.market, Market) else None
        return None if book is None else (book.spec.price_decimals, book.spec.quantity_decimals)

    def _publish(self, emissions: list[tuple[str, bytes]]) -> None:
        if self._transcoder is not None:
            emissions = self._transcoder.transcode(emissions)
        publish = self._ws.publish
        for stream, payload in emissions:
            publish(stream, payload)

    def advance(self, steps: int = 1) -> None:
        """Apply ``steps`` order-flow events and run the timers now, publishing what they emit."""
        if not isinstance(self.market, Market):
            raise RuntimeError("advance() drives the synthetic market, not a replay")
        for _ in range(steps):
            self._publish(self.market.step())
        self._publish(self.market.tick())

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        budget = 0.0
        market = self.market
        while True:
            await asyncio.sleep(self.tick_interval)
            now = loop.time()
            budget += (now - last) * self.rate
            last = now
            steps = int(budget)
            budget -= steps
            for _ in range(steps):
                self._publish(market.step())
            self._publish(market.tick())

    async def flood(self, symbol: str, count: int, *, batch: int = 1000) -> int:
        """Send ``count`` trade frames of ``symbol`` (contiguous trade ids) to the subscribers of
        ``<symbol>@trade`` as fast as this process can, yielding to the loop between batches.
        Returns the number of frames published."""
        if not isinstance(self.market, Market):
            raise RuntimeError("flood() needs the synthetic market")
        stream = f"{symbol.lower()}@trade"
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            payloads = self.market.flood_trades(symbol, n)
            if self._transcoder is not None:
                # SBE: one trade a frame, as the JSON flood sends them.
                payloads = [self._transcoder.trades([json.loads(p)]) for p in payloads]
            # One socket write per batch and subscriber: a write per frame (one system call
            # each) would cap the flood near 200,000 frames a second.
            self._ws.publish_many(stream, payloads)
            sent += n
            await asyncio.sleep(0)
            while self._ws.backlog(stream) > _FLOOD_BACKLOG:  # noqa: ASYNC110 - no drain event
                await asyncio.sleep(0.0005)
        return sent

    # -- replay ----------------------------------------------------------------------------

    def start_replay(self) -> None:
        """Start serving the recording (once)."""
        if self.recording is None:
            raise RuntimeError("start_replay() needs Exchange(replay=...)")
        if self._replay_task is None:
            self._replay_task = asyncio.create_task(self._replay(), name="fastmd-sim-replay")

    async def wait_replayed(self) -> int:
        """Wait until the whole recording was served; returns the number of frames published."""
        assert self._replay_done is not None
        await self._replay_done.wait()
        return self._replay_sent

    async def _replay(self) -> None:
        assert self.recording is not None
        assert self._replay_done is not None
        frames = self.recording.frames
        loop = asyncio.get_running_loop()
        start_wall = loop.time()
        first_ts = frames[0].ts if frames else 0.0
        for frame in frames:
            if self.replay_speed is not None:
                due = start_wall + (frame.ts - first_ts) / self.replay_speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self._transcoder is not None:
                self._publish([(frame.stream, frame.payload)])
            else:
                self._ws.publish(frame.stream, frame.payload)
            self._replay_sent += 1
            if self.replay_speed is None and self._replay_sent % 256 == 0:
                await asyncio.sleep(0)
        self._replay_done.set()
