"""Decode benchmarks: fastmd against bare msgspec, a two-pass msgspec decode, json and orjson.

One group per event type; in each group the same frame (compact recorded bytes) is decoded by:

- ``fastmd_combined``: ``Decoder.decode(memoryview(frame))`` of the combined-stream frame, the
  stream registered up front as the client does when it subscribes;
- ``fastmd_raw_stream``: ``Decoder.decode(memoryview(payload), stream=...)``, a raw-stream frame;
- ``msgspec_bare_typed``: ``msgspec.json.Decoder(Event[float], strict=False)`` on the bare
  payload, no envelope: the reference cost for fastmd's single-pass goal;
- ``msgspec_raw_two_pass``: the envelope decoded with ``data: msgspec.Raw``, then the payload
  decoded again by the stream's typed decoder (the two-pass approach fastmd avoids);
- ``json_loads`` / ``orjson_loads``: the frame into dicts.

Every benchmark asserts its result (CI runs each body once with ``--benchmark-disable``). Compare
``min`` within one run; see docs/benchmarks.md.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import msgspec
import orjson
import pytest

import fastmd
from benchmarks.frames import CASES, NUMBER_TYPES, Case, load_recording

TRADE = next(case for case in CASES if case.name == "trade")


def _by_group(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(case, id=case.name, marks=pytest.mark.benchmark(group=case.name))
        for case in cases
    ]


class Envelope(msgspec.Struct, gc=False):
    """The combined-stream envelope with its payload left undecoded."""

    stream: str
    data: msgspec.Raw


def _two_pass(decoders: dict[str, msgspec.json.Decoder[Any]]) -> Any:
    envelope_decoder = msgspec.json.Decoder(Envelope)

    def decode(frame: bytes | memoryview) -> Any:
        envelope = envelope_decoder.decode(frame)
        return envelope.stream, decoders[envelope.stream].decode(envelope.data)

    return decode


def _fastmd(case: Case, price_type: Any = float) -> fastmd.Decoder:
    decoder = fastmd.Decoder(case.venue, price_type=price_type)
    decoder.register([case.stream])
    return decoder


# -- one group per event type -------------------------------------------------------------------


@pytest.mark.parametrize("case", _by_group(CASES))
def test_fastmd_combined(bench: Any, case: Case) -> None:
    decoder = _fastmd(case)
    frame = memoryview(case.frame)
    bench.extra_info.update(case.info)
    message = bench(decoder.decode, frame)
    case.check_message(message)
    assert not decoder.error_counts


@pytest.mark.parametrize("case", _by_group(CASES))
def test_fastmd_combined_hot_path(bench: Any, case: Case) -> None:
    # What the Client's frame handler calls: the single msgspec pass, no Python frame around it
    # (the transport already capped the frame size; errors go to decoder.recover).
    decoder = _fastmd(case)
    frame = memoryview(case.frame)
    bench.extra_info.update(case.info)
    message = bench(decoder.fast_decode, frame)
    case.check_message(message)


@pytest.mark.parametrize("case", _by_group(CASES))
def test_fastmd_raw_stream(bench: Any, case: Case) -> None:
    decoder = _fastmd(case)
    payload = memoryview(case.payload)
    bench.extra_info.update(case.info)
    message = bench(decoder.decode, payload, stream=case.stream)
    case.check_message(message)


@pytest.mark.parametrize("case", _by_group(CASES))
def test_msgspec_bare_typed(bench: Any, case: Case) -> None:
    decoder = msgspec.json.Decoder(case.event_type[float], strict=False)
    payload = memoryview(case.payload)
    bench.extra_info.update(case.info)
    event = bench(decoder.decode, payload)
    case.check_event(event)


@pytest.mark.parametrize("case", _by_group(CASES))
def test_msgspec_raw_two_pass(bench: Any, case: Case) -> None:
    typed = msgspec.json.Decoder(case.event_type[float], strict=False)
    decode = _two_pass({case.stream: typed})
    frame = memoryview(case.frame)
    bench.extra_info.update(case.info)
    stream, event = bench(decode, frame)
    assert stream == case.stream
    case.check_event(event)


@pytest.mark.parametrize("case", _by_group(CASES))
def test_json_loads(bench: Any, case: Case) -> None:
    bench.extra_info.update(case.info)
    case.check_dict(bench(json.loads, case.frame))


@pytest.mark.parametrize("case", _by_group(CASES))
def test_orjson_loads(bench: Any, case: Case) -> None:
    bench.extra_info.update(case.info)
    case.check_dict(bench(orjson.loads, case.frame))


@pytest.mark.benchmark(group="trade")
def test_fastmd_combined_1000_streams(bench: Any) -> None:
    """The trade frame routed among 1,000 registered streams: routing cost must not grow."""
    decoder = fastmd.Decoder()
    decoder.register([f"sym{i}usdt@trade" for i in range(999)] + [TRADE.stream])
    assert len(decoder.streams) == 1001  # plus !serverShutdown
    bench.extra_info.update(TRADE.info, registered_streams=len(decoder.streams))
    TRADE.check_message(bench(decoder.decode, memoryview(TRADE.frame)))


# -- where the trade frame's time goes ------------------------------------------------------------


class PlainEnvelope(msgspec.Struct, frozen=True, gc=False):
    """The envelope as one plain Struct: ``stream`` decoded as a str, ``data`` typed."""

    stream: str
    data: fastmd.Trade[float]


class TaggedEnvelope(fastmd.Message[Any], frozen=True, gc=False, tag=TRADE.stream):
    """fastmd's per-stream Message class for the trade stream, built by hand."""

    event: fastmd.Trade[float] = msgspec.field(name="data")


class OtherEnvelope(fastmd.Message[Any], frozen=True, gc=False, tag="ethbtc@trade"):
    event: fastmd.Trade[float] = msgspec.field(name="data")


_BREAKDOWN: dict[str, Any] = {
    "envelope_plain_struct": PlainEnvelope,
    "envelope_tagged_single_class": TaggedEnvelope,
    "envelope_tagged_union_of_2": TaggedEnvelope | OtherEnvelope,
}


@pytest.mark.benchmark(group="trade-breakdown")
@pytest.mark.parametrize("shape", list(_BREAKDOWN))
def test_msgspec_envelope_shape(bench: Any, shape: str) -> None:
    """The combined trade frame into msgspec types alone: what the envelope and routing cost."""
    decoder = msgspec.json.Decoder(_BREAKDOWN[shape], strict=False)
    bench.extra_info.update(TRADE.info, shape=shape)
    result = bench(decoder.decode, memoryview(TRADE.frame))
    if isinstance(result, PlainEnvelope):
        assert result.stream == TRADE.stream
        TRADE.check_event(result.data)
    else:
        assert isinstance(result, TaggedEnvelope)
        TRADE.check_event(result.event)


@pytest.mark.benchmark(group="trade-breakdown")
def test_msgspec_bare_typed_reference(bench: Any) -> None:
    decoder = msgspec.json.Decoder(fastmd.Trade[float], strict=False)
    bench.extra_info.update(TRADE.info)
    TRADE.check_event(bench(decoder.decode, memoryview(TRADE.payload)))


@pytest.mark.benchmark(group="trade-breakdown")
def test_fastmd_hot_path_reference(bench: Any) -> None:
    decoder = _fastmd(TRADE)
    bench.extra_info.update(TRADE.info)
    TRADE.check_message(bench(decoder.fast_decode, memoryview(TRADE.frame)))


@pytest.mark.benchmark(group="trade-breakdown")
def test_fastmd_combined_reference(bench: Any) -> None:
    decoder = _fastmd(TRADE)
    bench.extra_info.update(TRADE.info)
    TRADE.check_message(bench(decoder.decode, memoryview(TRADE.frame)))


LOOP = 100


def _loop(decode: Any, buffer: bytes) -> Any:
    views = [memoryview(buffer)] * LOOP

    def run() -> Any:
        for view in views:
            result = decode(view)
        return result

    return run


@pytest.mark.benchmark(group="trade-loop-x100")
@pytest.mark.parametrize("what", ["fastmd_combined", "msgspec_bare_typed", "msgspec_union_of_2"])
def test_trade_loop(bench: Any, what: str) -> None:
    """100 decodes per call, the way a receive loop calls them: no harness call per frame."""
    if what == "fastmd_combined":
        run = _loop(_fastmd(TRADE).decode, TRADE.frame)
    elif what == "msgspec_bare_typed":
        decoder = msgspec.json.Decoder(fastmd.Trade[float], strict=False)
        run = _loop(decoder.decode, TRADE.payload)
    else:
        union = msgspec.json.Decoder(TaggedEnvelope | OtherEnvelope, strict=False)
        run = _loop(union.decode, TRADE.frame)
    bench.extra_info.update(TRADE.info, frames_per_call=LOOP)
    result = bench(run)
    TRADE.check_event(result if what == "msgspec_bare_typed" else result.event)


@pytest.mark.benchmark(group="trade-breakdown")
def test_harness_overhead(bench: Any) -> None:
    """The harness's own cost per call (a C builtin on the frame): included in every number."""
    bench.extra_info.update(TRADE.info)
    assert bench(len, memoryview(TRADE.frame)) == len(TRADE.frame)


# -- number types: float, str, Decimal -----------------------------------------------------------


@pytest.mark.benchmark(group="trade-number-types")
@pytest.mark.parametrize("number", list(NUMBER_TYPES))
def test_fastmd_combined_number_type(bench: Any, number: str) -> None:
    price_type = NUMBER_TYPES[number]
    decoder = _fastmd(TRADE, price_type)
    bench.extra_info.update(TRADE.info, price_type=number)
    message = bench(decoder.decode, memoryview(TRADE.frame))
    TRADE.check_message(message, price_type)


@pytest.mark.benchmark(group="trade-number-types")
@pytest.mark.parametrize("number", list(NUMBER_TYPES))
def test_msgspec_bare_typed_number_type(bench: Any, number: str) -> None:
    price_type = NUMBER_TYPES[number]
    # fastmd's modes: lenient float conversion, strict exact types.
    decoder = msgspec.json.Decoder(fastmd.Trade[price_type], strict=price_type is not float)  # type: ignore[valid-type]
    bench.extra_info.update(TRADE.info, price_type=number)
    event = bench(decoder.decode, memoryview(TRADE.payload))
    TRADE.check_event(event, price_type)


# -- the whole recording --------------------------------------------------------------------------

RECORDING = load_recording()
RECORDING_EVENTS = {"DepthUpdate": 177, "BookTicker": 84, "AggTrade": 2, "Kline": 2}
RECORDING_INFO = {
    "frames": len(RECORDING),
    "bytes": sum(map(len, RECORDING)),
    "events": RECORDING_EVENTS,
    "streams": 16,
    "frames_per_call": len(RECORDING),
}


def _recording_streams() -> list[str]:
    return sorted({json.loads(frame)["stream"] for frame in RECORDING})


def _check_counts(counts: Counter[str]) -> None:
    assert sum(counts.values()) == 265
    assert counts == RECORDING_EVENTS, counts


@pytest.mark.benchmark(group="recording-265")
def test_recording_fastmd(bench: Any) -> None:
    decoder = fastmd.Decoder("binance-spot")
    decoder.register(_recording_streams())
    views = [memoryview(frame) for frame in RECORDING]
    decode = decoder.decode

    def run() -> Counter[str]:
        return Counter(type(decode(view).event).__name__ for view in views)

    bench.extra_info.update(RECORDING_INFO)
    _check_counts(bench(run))
    assert not decoder.error_counts


@pytest.mark.benchmark(group="recording-265")
def test_recording_fastmd_str_prices(bench: Any) -> None:
    decoder = fastmd.Decoder("binance-spot", price_type=str)
    decoder.register(_recording_streams())
    views = [memoryview(frame) for frame in RECORDING]
    decode = decoder.decode

    def run() -> Counter[str]:
        return Counter(type(decode(view).event).__name__ for view in views)

    bench.extra_info.update(RECORDING_INFO, price_type="str")
    _check_counts(bench(run))


_EVENT_OF_TYPE = {
    "depth@100ms": fastmd.DepthUpdate[float],
    "bookTicker": fastmd.BookTicker[float],
    "aggTrade": fastmd.AggTrade[float],
    "kline_1m": fastmd.Kline[float],
}


@pytest.mark.benchmark(group="recording-265")
def test_recording_msgspec_raw_two_pass(bench: Any) -> None:
    typed = {kind: msgspec.json.Decoder(t, strict=False) for kind, t in _EVENT_OF_TYPE.items()}
    decoders = {s: typed[s.split("@", 1)[1]] for s in _recording_streams()}
    decode = _two_pass(decoders)
    views = [memoryview(frame) for frame in RECORDING]

    def run() -> Counter[str]:
        return Counter(type(decode(view)[1]).__name__ for view in views)

    bench.extra_info.update(RECORDING_INFO)
    _check_counts(bench(run))


_KIND_OF_EVENT = {
    "depthUpdate": "DepthUpdate",
    "aggTrade": "AggTrade",
    "kline": "Kline",
    None: "BookTicker",
}


@pytest.mark.benchmark(group="recording-265")
@pytest.mark.parametrize("loads", [json.loads, orjson.loads], ids=["json_loads", "orjson_loads"])
def test_recording_dicts(bench: Any, loads: Any) -> None:
    def run() -> Counter[str]:
        return Counter(_KIND_OF_EVENT[loads(frame)["data"].get("e")] for frame in RECORDING)

    bench.extra_info.update(RECORDING_INFO)
    _check_counts(bench(run))


def test_recording_decodes_exactly() -> None:
    """Not a benchmark: every recorded frame decodes, and exact mode keeps the wire's digits."""
    decoder = fastmd.Decoder(price_type=Decimal)
    for frame in RECORDING:
        wire = json.loads(frame)
        message = decoder.decode(frame)
        assert message.stream == wire["stream"]
        assert message.event.symbol == wire["data"]["s"]
        if isinstance(message.event, fastmd.DepthUpdate):
            levels = [(Decimal(p), Decimal(q)) for p, q in wire["data"]["b"]]
            assert message.event.bids == levels
    assert not decoder.error_counts
