"""Recorded frames the decode benchmarks run on, and how to check a decoded result.

Every frame is compact JSON bytes, as Binance sends them: samples re-encoded with
``json.dumps(..., separators=(",", ":"))`` and frames replayed from a real recording
(``benchmarks/data``, see its README). Nothing here is timed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastmd

DATA = Path(__file__).parent / "data"
SAMPLES = DATA / "samples"
RECORDING = DATA / "binance-spot-2021-10-12"


def compact(obj: Any) -> bytes:
    """``obj`` as compact JSON bytes, the way Binance writes frames."""
    return json.dumps(obj, separators=(",", ":")).encode()


def load_sample(name: str) -> dict[str, Any]:
    with (SAMPLES / f"{name}.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def load_recording() -> list[bytes]:
    """The 265 recorded combined-stream frames, in order, as compact bytes."""
    with (RECORDING / "stream.jsonl").open() as f:
        return [compact(json.loads(line)["msg"]) for line in f if line.strip()]


def _recorded(stream: str) -> dict[str, Any]:
    """The first recorded payload of ``stream``."""
    with (RECORDING / "stream.jsonl").open() as f:
        for line in f:
            msg = json.loads(line)["msg"]
            if msg["stream"] == stream:
                payload: dict[str, Any] = msg["data"]
                return payload
    raise LookupError(stream)


def _top20() -> dict[str, Any]:
    with (RECORDING / "NKNUSDT-top20.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def resolve(obj: Any, path: str) -> Any:
    """Follow a dotted path of attribute names, dict keys or list indexes: ``"bids.19.0"``."""
    for part in path.split("."):
        if part.isdigit():
            obj = obj[int(part)]
        elif isinstance(obj, dict):
            obj = obj[part]
        else:
            obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Case:
    """One benchmarked frame: its stream, its bytes and what a correct decode must contain."""

    name: str
    venue: fastmd.Venue
    stream: str
    payload_obj: Any
    event_type: Any
    """The generic event class (``fastmd.Trade``); subscript it with the number type."""
    id_check: tuple[str, str]
    """(attribute path, wire path) of an integer that must survive decoding."""
    price_check: tuple[str, str]
    """(attribute path, wire path) of a price or quantity, converted to the number type."""
    source: str
    payload: bytes = field(init=False)
    frame: bytes = field(init=False)

    def __post_init__(self) -> None:
        payload = compact(self.payload_obj)
        object.__setattr__(self, "payload", payload)
        object.__setattr__(
            self, "frame", compact({"stream": self.stream, "data": self.payload_obj})
        )

    @property
    def info(self) -> dict[str, Any]:
        """What goes into ``benchmark.extra_info``."""
        info: dict[str, Any] = {
            "stream": self.stream,
            "frame_bytes": len(self.frame),
            "payload_bytes": len(self.payload),
            "source": self.source,
        }
        if isinstance(self.payload_obj, dict):
            for side in ("b", "a", "bids", "asks"):
                levels = self.payload_obj.get(side)
                if isinstance(levels, list):
                    info[f"levels_{side}"] = len(levels)
        return info

    def check_event(self, event: Any, price_type: type = float) -> None:
        """Assert ``event`` is this case's payload, decoded with numbers of ``price_type``."""
        assert isinstance(event, self.event_type), type(event)
        attr, wire = self.id_check
        assert resolve(event, attr) == resolve(self.payload_obj, wire)
        attr, wire = self.price_check
        value = resolve(event, attr)
        assert type(value) is price_type, type(value)
        assert value == price_type(resolve(self.payload_obj, wire))

    def check_message(self, message: Any, price_type: type = float) -> None:
        """Assert ``message`` is a fastmd Message of this case's stream and payload."""
        assert isinstance(message, fastmd.Message), type(message)
        assert message.stream == self.stream
        self.check_event(message.event, price_type)
        # Every event carries its symbol; spot partial depth gets it from the stream name.
        assert message.event.symbol == self.stream.partition("@")[0].upper()

    def check_dict(self, frame: Any) -> None:
        """Assert a ``json.loads``-style result is this case's frame."""
        assert frame["stream"] == self.stream
        data = frame["data"]
        for _attr, wire in (self.id_check, self.price_check):
            assert resolve(data, wire) == resolve(self.payload_obj, wire)


def _depth_update() -> dict[str, Any]:
    # The header of the first recorded NKNUSDT diff, the levels of the recorded REST snapshot.
    header = _recorded("nknusdt@depth@100ms")
    top = _top20()
    return {**{k: header[k] for k in ("e", "E", "s", "U", "u")}, "b": top["bids"], "a": top["asks"]}


def _partial_depth() -> dict[str, Any]:
    top = _top20()
    return {"lastUpdateId": top["lastUpdateId"], "bids": top["bids"], "asks": top["asks"]}


def build_cases() -> list[Case]:
    """The benchmarked frames, one per event type."""
    spot: fastmd.Venue = "binance-spot"
    return [
        Case(
            "trade",
            spot,
            "bnbbtc@trade",
            load_sample("trade"),
            fastmd.Trade,
            ("trade_id", "t"),
            ("price", "p"),
            "sample trade.json",
        ),
        Case(
            "aggTrade",
            spot,
            "nknusdt@aggTrade",
            _recorded("nknusdt@aggTrade"),
            fastmd.AggTrade,
            ("agg_trade_id", "a"),
            ("price", "p"),
            "recording",
        ),
        Case(
            "kline",
            spot,
            "nknusdt@kline_1m",
            _recorded("nknusdt@kline_1m"),
            fastmd.Kline,
            ("kline.last_trade_id", "k.L"),
            ("kline.close", "k.c"),
            "recording",
        ),
        Case(
            "bookTicker",
            spot,
            "nknusdt@bookTicker",
            _recorded("nknusdt@bookTicker"),
            fastmd.BookTicker,
            ("update_id", "u"),
            ("ask_quantity", "A"),
            "recording",
        ),
        Case(
            "depthUpdate-20",
            spot,
            "nknusdt@depth@100ms",
            _depth_update(),
            fastmd.DepthUpdate,
            ("final_update_id", "u"),
            ("asks.19.1", "a.19.1"),
            "recorded diff header + 20 bid/20 ask levels of the recorded snapshot",
        ),
        Case(
            "depth20-partial",
            spot,
            "nknusdt@depth20@100ms",
            _partial_depth(),
            fastmd.PartialDepth,
            ("last_update_id", "lastUpdateId"),
            ("bids.19.0", "bids.19.0"),
            "20 bid/20 ask levels of the recorded snapshot",
        ),
        Case(
            "ticker-24hr",
            spot,
            "bnbbtc@ticker",
            load_sample("ticker24hr"),
            fastmd.Ticker,
            ("trade_count", "n"),
            ("weighted_avg_price", "w"),
            "sample ticker24hr.json",
        ),
        Case(
            "miniTicker",
            spot,
            "bnbbtc@miniTicker",
            load_sample("miniTicker"),
            fastmd.MiniTicker,
            ("event_time", "E"),
            ("quote_volume", "q"),
            "sample miniTicker.json",
        ),
        Case(
            "markPrice-usdm",
            "binance-usdm",
            "btcusdt@markPrice",
            load_sample("markPrice"),
            fastmd.MarkPrice,
            ("next_funding_time", "T"),
            ("funding_rate", "r"),
            "sample markPrice.json (USD-M futures)",
        ),
    ]


CASES: list[Case] = build_cases()
NUMBER_TYPES: dict[str, type] = {"float": float, "str": str, "decimal": Decimal}
