"""Every Binance sample in tests/data/samples/binance decodes to the right type and values."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from testdata import SAMPLES

import fastmd
from fastmd import Decoder

SPOT = "binance-spot"
USDM = "binance-usdm"


def _read(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _combined(stream: str, payload: bytes) -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"


# -- checks of each sample's values (float mode) ---------------------------------------------


def check_trade(ev: Any) -> None:
    assert type(ev) is fastmd.Trade
    assert ev.event_time == 1672515782136
    assert ev.symbol == "BNBBTC"
    assert ev.trade_id == 12345
    assert ev.price == 0.001
    assert ev.quantity == 100.0
    assert ev.trade_time == 1672515782136
    assert ev.is_buyer_maker is True


def check_agg_trade(ev: Any) -> None:
    assert type(ev) is fastmd.AggTrade
    assert ev.event_time == 1672515782136
    assert ev.symbol == "BNBBTC"
    assert ev.agg_trade_id == 12345
    assert ev.price == 0.001
    assert ev.quantity == 100.0
    assert (ev.first_trade_id, ev.last_trade_id) == (100, 105)
    assert ev.trade_time == 1672515782136
    assert ev.is_buyer_maker is True
    assert ev.normal_quantity is None
    assert ev.is_invalidated is False


def check_block_trade(ev: Any) -> None:
    assert type(ev) is fastmd.BlockTrade
    assert ev.event_time == 1772506983582
    assert ev.symbol == "BNBBTC"
    assert ev.block_trade_id == 582
    assert ev.price == 0.052
    assert ev.quantity == 5838.0
    assert ev.trade_time == 1772506983321
    assert ev.is_buyer_maker is True


def check_kline(ev: Any) -> None:
    assert type(ev) is fastmd.Kline
    assert ev.event_time == 1672515782136
    assert ev.symbol == "BNBBTC"
    k = ev.kline
    assert type(k) is fastmd.KlineData
    assert k.interval == "1m"
    assert k.symbol == "BNBBTC"
    assert (k.start_time, k.close_time) == (1672515780000, 1672515839999)
    assert (k.first_trade_id, k.last_trade_id) == (100, 200)
    assert (k.open, k.close, k.high, k.low) == (0.001, 0.002, 0.0025, 0.0015)
    assert k.volume == 1000.0
    assert k.trade_count == 100
    assert k.is_closed is False
    assert k.quote_volume == 1.0
    assert k.taker_buy_volume == 500.0
    assert k.taker_buy_quote_volume == 0.5


def check_mini_ticker(ev: Any) -> None:
    assert type(ev) is fastmd.MiniTicker
    assert ev.event_time == 1672515782136
    assert ev.symbol == "BNBBTC"
    assert (ev.close, ev.open, ev.high, ev.low) == (0.0025, 0.001, 0.0025, 0.001)
    assert ev.volume == 10000.0
    assert ev.quote_volume == 18.0


def check_mini_ticker_arr(ev: Any) -> None:
    assert isinstance(ev, list)
    assert len(ev) == 1
    check_mini_ticker(ev[0])


def check_ticker(ev: Any) -> None:
    assert type(ev) is fastmd.Ticker
    assert ev.event_time == 1672515782136
    assert ev.symbol == "BNBBTC"
    assert ev.price_change == 0.0015
    assert ev.price_change_percent == 250.0
    assert ev.weighted_avg_price == 0.0018
    assert ev.prev_close_price == 0.0009
    assert ev.last_price == 0.0025
    assert ev.last_quantity == 10.0
    assert (ev.best_bid_price, ev.best_bid_quantity) == (0.0024, 10.0)
    assert (ev.best_ask_price, ev.best_ask_quantity) == (0.0026, 100.0)
    assert (ev.open, ev.high, ev.low) == (0.001, 0.0025, 0.001)
    assert (ev.volume, ev.quote_volume) == (10000.0, 18.0)
    assert (ev.open_time, ev.close_time) == (0, 86400000)
    assert (ev.first_trade_id, ev.last_trade_id, ev.trade_count) == (0, 18150, 18151)


def check_ticker_1h(ev: Any) -> None:
    assert type(ev) is fastmd.Ticker1h
    assert isinstance(ev, fastmd.WindowTicker)
    assert ev.window == "1h"
    assert ev.event_time == 1672515782136
    assert ev.symbol == "BNBBTC"
    assert ev.price_change == 0.0015
    assert ev.price_change_percent == 250.0
    assert (ev.open, ev.high, ev.low, ev.last_price) == (0.001, 0.0025, 0.001, 0.0025)
    assert ev.weighted_avg_price == 0.0018
    assert (ev.volume, ev.quote_volume) == (10000.0, 18.0)
    assert (ev.open_time, ev.close_time) == (0, 1675216573749)
    assert (ev.first_trade_id, ev.last_trade_id, ev.trade_count) == (0, 18150, 18151)


def check_spot_book_ticker(ev: Any) -> None:
    assert type(ev) is fastmd.BookTicker
    assert ev.update_id == 400900217
    assert ev.symbol == "BNBUSDT"
    assert (ev.bid_price, ev.bid_quantity) == (25.3519, 31.21)
    assert (ev.ask_price, ev.ask_quantity) == (25.3652, 40.66)
    assert ev.event_time is None
    assert ev.transaction_time is None


def check_futures_book_ticker(ev: Any) -> None:
    assert type(ev) is fastmd.BookTicker
    assert ev.update_id == 400900217
    assert ev.symbol == "BNBUSDT"
    assert (ev.bid_price, ev.bid_quantity) == (25.3519, 31.21)
    assert (ev.ask_price, ev.ask_quantity) == (25.3652, 40.66)
    assert ev.event_time == 1568014460893
    assert ev.transaction_time == 1568014460891


def check_avg_price(ev: Any) -> None:
    assert type(ev) is fastmd.AvgPrice
    assert ev.event_time == 1693907033000
    assert ev.symbol == "BTCUSDT"
    assert ev.interval == "5m"
    assert ev.price == 25776.86
    assert ev.last_trade_time == 1693907032213


def check_reference_price(ev: Any) -> None:
    assert type(ev) is fastmd.ReferencePrice
    assert ev.symbol == "BAZUSD"
    assert ev.price == 1.0
    assert ev.engine_time == 1770313263917


def check_partial_depth(ev: Any) -> None:
    assert isinstance(ev, fastmd.PartialDepth)
    assert ev.symbol == "BNBBTC"
    assert type(ev).symbol == "BNBBTC"
    assert ev.last_update_id == 160
    assert ev.bids == [(0.0024, 10.0)]
    assert ev.asks == [(0.0026, 100.0)]


def check_spot_depth_update(ev: Any) -> None:
    assert type(ev) is fastmd.DepthUpdate
    assert ev.event_time == 1672515782136
    assert ev.symbol == "BNBBTC"
    assert (ev.first_update_id, ev.final_update_id) == (157, 160)
    assert ev.bids == [(0.0024, 10.0)]
    assert ev.asks == [(0.0026, 100.0)]
    assert ev.transaction_time is None
    assert ev.prev_final_update_id is None


def check_futures_depth_update(ev: Any) -> None:
    assert type(ev) is fastmd.DepthUpdate
    assert ev.event_time == 123456789
    assert ev.transaction_time == 123456788
    assert ev.symbol == "BTCUSDT"
    assert (ev.first_update_id, ev.final_update_id) == (157, 160)
    assert ev.prev_final_update_id == 149
    assert ev.bids == [(0.0024, 10.0)]
    assert ev.asks == [(0.0026, 100.0)]


def check_futures_depth5(ev: Any) -> None:
    assert type(ev) is fastmd.DepthUpdate
    assert ev.event_time == 1571889248277
    assert ev.transaction_time == 1571889248276
    assert ev.symbol == "BTCUSDT"
    assert ev.first_update_id == 390497796
    assert ev.final_update_id == 390497878
    assert ev.prev_final_update_id == 390497794
    assert ev.bids == [
        (7403.89, 0.002),
        (7403.9, 3.906),
        (7404.0, 1.428),
        (7404.85, 5.239),
        (7405.43, 2.562),
    ]
    assert ev.asks == [
        (7405.96, 3.34),
        (7406.63, 4.525),
        (7407.08, 2.475),
        (7407.15, 4.8),
        (7407.2, 0.175),
    ]


def check_server_shutdown(ev: Any) -> None:
    assert type(ev) is fastmd.ServerShutdown
    assert ev.event_time == 1770123456789


def check_mark_price(ev: Any) -> None:
    assert type(ev) is fastmd.MarkPrice
    assert ev.event_time == 1562305380000
    assert ev.symbol == "BTCUSDT"
    assert ev.mark_price == 11794.15
    assert ev.index_price == 11784.62659091
    assert ev.estimated_settle_price == 11784.25641265
    assert ev.funding_rate == 0.00038167
    assert ev.next_funding_time == 1562306400000


def check_mark_price_arr(ev: Any) -> None:
    assert isinstance(ev, list)
    assert len(ev) == 1
    item = ev[0]
    assert type(item) is fastmd.MarkPrice
    assert item.symbol == "BTCUSDT"
    assert item.mark_price == 11185.87786614
    assert item.index_price == 11784.62659091
    assert item.funding_rate == 0.0003
    assert item.next_funding_time == 1562306400000


def check_force_order(ev: Any) -> None:
    assert type(ev) is fastmd.ForceOrder
    assert ev.event_time == 1568014460893
    assert ev.symbol == "BTCUSDT"
    o = ev.order
    assert type(o) is fastmd.LiquidationOrder
    assert o.symbol == "BTCUSDT"
    assert (o.side, o.order_type, o.time_in_force, o.status) == ("SELL", "LIMIT", "IOC", "FILLED")
    assert o.original_quantity == 0.014
    assert (o.price, o.average_price) == (9910.0, 9910.0)
    assert (o.last_filled_quantity, o.filled_quantity) == (0.014, 0.014)
    assert o.trade_time == 1568014460893


def check_futures_agg_trade(ev: Any) -> None:
    assert type(ev) is fastmd.AggTrade
    assert ev.event_time == 123456789
    assert ev.symbol == "BTCUSDT"
    assert ev.agg_trade_id == 5933014
    assert (ev.price, ev.quantity, ev.normal_quantity) == (0.001, 100.0, 100.0)
    assert (ev.first_trade_id, ev.last_trade_id) == (100, 105)
    assert ev.trade_time == 123456785
    assert ev.is_buyer_maker is True


def check_continuous_kline(ev: Any) -> None:
    assert type(ev) is fastmd.ContinuousKline
    assert ev.event_time == 1607443058651
    assert (ev.pair, ev.contract_type) == ("BTCUSDT", "PERPETUAL")
    k = ev.kline
    assert type(k) is fastmd.ContinuousKlineData
    assert (k.start_time, k.close_time, k.interval) == (1607443020000, 1607443079999, "1m")
    assert (k.first_update_id, k.last_update_id) == (116467658886, 116468012423)
    assert (k.open, k.close, k.high, k.low) == (18787.0, 18804.04, 18804.04, 18786.54)
    assert (k.volume, k.trade_count, k.is_closed) == (197.664, 543, False)
    assert k.quote_volume == 3715253.19494
    assert (k.taker_buy_volume, k.taker_buy_quote_volume) == (184.769, 3472925.84746)


def check_composite_index(ev: Any) -> None:
    assert type(ev) is fastmd.CompositeIndex
    assert ev.event_time == 1602310596000
    assert ev.symbol == "DEFIUSDT"
    assert ev.price == 554.41604065
    assert ev.component == "baseAsset"
    bal, band = ev.composition
    assert type(bal) is fastmd.IndexComponent
    assert (bal.base_asset, bal.quote_asset) == ("BAL", "USDT")
    assert (bal.weight_in_quantity, bal.weight_in_percentage) == (1.04884844, 0.014578)
    assert bal.index_price == 24.33521021
    assert (band.base_asset, band.weight_in_quantity, band.index_price) == (
        "BAND", 3.53782729, 7.26420084
    )  # fmt: skip


def check_contract_info(ev: Any) -> None:
    assert type(ev) is fastmd.ContractInfo
    assert ev.event_time == 1669356423908
    assert (ev.symbol, ev.pair, ev.contract_type) == ("IOTAUSDT", "IOTAUSDT", "PERPETUAL")
    assert (ev.delivery_time, ev.onboard_time) == (4133404800000, 1569398400000)
    assert ev.status == "TRADING"
    assert ev.brackets is not None
    first, second = ev.brackets
    assert type(first) is fastmd.NotionalBracket
    assert (first.bracket, first.notional_floor, first.notional_cap) == (1, 0.0, 5000.0)
    assert (first.maintenance_margin_ratio, first.maintenance_amount) == (0.01, 0.0)
    assert (first.min_leverage, first.max_leverage) == (21, 50)
    assert (second.bracket, second.maintenance_margin_ratio, second.maintenance_amount) == (
        2, 0.025, 75.0
    )  # fmt: skip
    assert (second.min_leverage, second.max_leverage) == (11, 20)


def check_asset_index_arr(ev: Any) -> None:
    assert isinstance(ev, list)
    ada, usdt = ev
    assert type(ada) is fastmd.AssetIndex
    assert (ada.event_time, ada.symbol, ada.index_price) == (1686749230000, "ADAUSD", 0.27462452)
    assert (ada.bid_buffer, ada.ask_buffer) == (0.1, 0.1)
    assert (ada.bid_rate, ada.ask_rate) == (0.24716207, 0.30208698)
    assert (ada.auto_exchange_bid_buffer, ada.auto_exchange_ask_buffer) == (0.05, 0.05)
    assert (ada.auto_exchange_bid_rate, ada.auto_exchange_ask_rate) == (0.2608933, 0.28835575)
    assert (usdt.symbol, usdt.index_price, usdt.auto_exchange_ask_rate) == (
        "USDTUSD", 0.99987691, 0.99997689
    )  # fmt: skip


@dataclass(frozen=True)
class StreamSample:
    file: str
    venue: str
    streams: tuple[str, ...]
    """Stream names the payload can arrive on (the combined form is tried with each)."""
    check: Callable[[Any], None]
    raw_stream: str | None = None
    """The stream the decoder derives for the raw payload without stream= (None: it cannot)."""


STREAM_SAMPLES = [
    StreamSample("trade.json", SPOT, ("bnbbtc@trade",), check_trade, "bnbbtc@trade"),
    StreamSample("aggTrade.json", SPOT, ("bnbbtc@aggTrade",), check_agg_trade, "bnbbtc@aggTrade"),
    StreamSample(
        "blockTrade.json", SPOT, ("bnbbtc@blockTrade",), check_block_trade, "bnbbtc@blockTrade"
    ),
    StreamSample(
        "kline.json",
        SPOT,
        ("bnbbtc@kline_1m", "bnbbtc@kline_1m@+08:00"),
        check_kline,
        "bnbbtc@kline_1m",
    ),
    StreamSample(
        "miniTicker.json", SPOT, ("bnbbtc@miniTicker",), check_mini_ticker, "bnbbtc@miniTicker"
    ),
    StreamSample("miniTicker-arr.json", SPOT, ("!miniTicker@arr",), check_mini_ticker_arr),
    StreamSample("miniTicker-arr.json", USDM, ("!miniTicker@arr",), check_mini_ticker_arr),
    StreamSample("ticker24hr.json", SPOT, ("bnbbtc@ticker",), check_ticker, "bnbbtc@ticker"),
    StreamSample(
        "ticker-window-1h.json", SPOT, ("bnbbtc@ticker_1h",), check_ticker_1h, "bnbbtc@ticker_1h"
    ),
    StreamSample("bookTicker.json", SPOT, ("bnbusdt@bookTicker",), check_spot_book_ticker),
    StreamSample("avgPrice.json", SPOT, ("btcusdt@avgPrice",), check_avg_price, "btcusdt@avgPrice"),
    StreamSample(
        "referencePrice.json",
        SPOT,
        ("bazusd@referencePrice",),
        check_reference_price,
        "bazusd@referencePrice",
    ),
    StreamSample(
        "depth20.json", SPOT, ("bnbbtc@depth20", "bnbbtc@depth20@100ms"), check_partial_depth
    ),
    StreamSample(
        "depthUpdate.json",
        SPOT,
        ("bnbbtc@depth", "bnbbtc@depth@100ms"),
        check_spot_depth_update,
        "bnbbtc@depth",
    ),
    StreamSample(
        "serverShutdown.json", SPOT, ("!serverShutdown",), check_server_shutdown, "!serverShutdown"
    ),
    StreamSample(
        "serverShutdown.json", USDM, ("!serverShutdown",), check_server_shutdown, "!serverShutdown"
    ),
    StreamSample(
        "markPrice.json",
        USDM,
        ("btcusdt@markPrice", "btcusdt@markPrice@1s"),
        check_mark_price,
        "btcusdt@markPrice",
    ),
    StreamSample(
        "markPrice-arr.json", USDM, ("!markPrice@arr", "!markPrice@arr@1s"), check_mark_price_arr
    ),
    StreamSample(
        "forceOrder.json",
        USDM,
        ("btcusdt@forceOrder", "!forceOrder@arr"),
        check_force_order,
        "btcusdt@forceOrder",
    ),
    StreamSample(
        "futures-aggTrade.json",
        USDM,
        ("btcusdt@aggTrade",),
        check_futures_agg_trade,
        "btcusdt@aggTrade",
    ),
    StreamSample(
        "futures-bookTicker.json",
        USDM,
        ("bnbusdt@bookTicker", "!bookTicker"),
        check_futures_book_ticker,
        "bnbusdt@bookTicker",
    ),
    StreamSample(
        "futures-depth5.json",
        USDM,
        ("btcusdt@depth5", "btcusdt@depth5@100ms", "btcusdt@depth5@500ms"),
        check_futures_depth5,
        "btcusdt@depth",  # the payload does not say it is partial depth, nor its speed
    ),
    StreamSample(
        "futures-depthUpdate.json",
        USDM,
        ("btcusdt@depth", "btcusdt@depth@100ms", "btcusdt@depth@500ms"),
        check_futures_depth_update,
        "btcusdt@depth",
    ),
    StreamSample(
        "futures-rpiDepth.json",  # the depthUpdate shape, with the CM migration's ps and st
        USDM,
        ("btcusdt@rpiDepth@500ms",),
        check_futures_depth_update,
        "btcusdt@depth",  # the payload does not say it is RPI depth
    ),
    StreamSample(
        "futures-continuousKline.json",
        USDM,
        ("btcusdt_perpetual@continuousKline_1m",),
        check_continuous_kline,
        "btcusdt_perpetual@continuousKline_1m",
    ),
    StreamSample(
        "futures-compositeIndex.json",
        USDM,
        ("defiusdt@compositeIndex",),
        check_composite_index,
        "defiusdt@compositeIndex",
    ),
    StreamSample(
        "futures-contractInfo.json",
        USDM,
        ("!contractInfo",),
        check_contract_info,
        "!contractInfo",
    ),
    StreamSample("futures-assetIndex-arr.json", USDM, ("!assetIndex@arr",), check_asset_index_arr),
]

COMBINED_SAMPLES = [
    ("combined-wrapper.json", "bnbbtc@aggTrade", check_agg_trade),
    ("combined-wrapper-depth20.json", "bnbbtc@depth20@100ms", check_partial_depth),
    ("serverShutdown-combined.json", "!serverShutdown", check_server_shutdown),
]


def _sample_id(sample: StreamSample) -> str:
    return f"{sample.venue}:{sample.file}"


@pytest.mark.parametrize("sample", STREAM_SAMPLES, ids=_sample_id)
def test_combined_form(sample: StreamSample) -> None:
    decoder = Decoder(sample.venue)  # type: ignore[arg-type]
    payload = _read(sample.file)
    for stream in sample.streams:
        message = decoder.decode(_combined(stream, payload))
        assert isinstance(message, fastmd.Message)
        assert message.stream == stream
        sample.check(message.event)
        # once learned, the fast path gives the same
        assert decoder.decode(_combined(stream, payload)) == message
    assert sum(decoder.error_counts.values()) == 0


@pytest.mark.parametrize("sample", STREAM_SAMPLES, ids=_sample_id)
def test_raw_form_with_stream(sample: StreamSample) -> None:
    decoder = Decoder(sample.venue)  # type: ignore[arg-type]
    payload = _read(sample.file)
    for stream in sample.streams:
        message = decoder.decode(payload, stream=stream)
        assert message.stream == stream
        sample.check(message.event)
    assert sum(decoder.error_counts.values()) == 0


@pytest.mark.parametrize("sample", STREAM_SAMPLES, ids=_sample_id)
def test_raw_form_without_stream(sample: StreamSample) -> None:
    decoder = Decoder(sample.venue)  # type: ignore[arg-type]
    payload = _read(sample.file)
    if sample.raw_stream is None:
        with pytest.raises(fastmd.DecodeError) as info:
            decoder.decode(payload)
        assert info.value.category is fastmd.DecodeErrorCategory.UNROUTABLE
        assert decoder.error_counts[fastmd.DecodeErrorCategory.UNROUTABLE] == 1
        return
    message = decoder.decode(payload)
    assert message.stream == sample.raw_stream
    sample.check(message.event)


@pytest.mark.parametrize(("file", "stream", "check"), COMBINED_SAMPLES)
def test_combined_sample_files(file: str, stream: str, check: Callable[[Any], None]) -> None:
    decoder = Decoder()
    message = decoder.decode(_read(file))
    assert message.stream == stream
    check(message.event)


def test_futures_depth5_is_not_spot_partial_depth() -> None:
    """Spot partial depth is {lastUpdateId,bids,asks}; futures uses the depthUpdate shape."""
    spot = Decoder(SPOT)
    with pytest.raises(fastmd.DecodeError) as info:
        spot.decode(_read("futures-depth5.json"), stream="btcusdt@depth5")
    assert info.value.category is fastmd.DecodeErrorCategory.MISSING_FIELD
    usdm = Decoder(USDM)
    with pytest.raises(fastmd.DecodeError):
        usdm.decode(_read("depth20.json"), stream="btcusdt@depth5")


# -- exact modes -----------------------------------------------------------------------------


def test_exact_str_mode_keeps_strings() -> None:
    decoder = Decoder(price_type=str)
    trade = decoder.decode(_read("trade.json")).event
    assert trade.price == "0.001"
    assert trade.quantity == "100"
    assert trade.trade_id == 12345
    kline = decoder.decode(_read("kline.json")).event.kline
    assert (kline.open, kline.close, kline.high, kline.low) == (
        "0.0010",
        "0.0020",
        "0.0025",
        "0.0015",
    )
    assert kline.taker_buy_quote_volume == "0.500"
    depth = decoder.decode(_read("depth20.json"), stream="bnbbtc@depth20").event
    assert depth.bids == [("0.0024", "10")]
    assert depth.asks == [("0.0026", "100")]
    assert depth.symbol == "BNBBTC"
    book = decoder.decode(_read("bookTicker.json"), stream="bnbusdt@bookTicker").event
    assert book.bid_price == "25.35190000"
    assert book.ask_quantity == "40.66000000"


def test_exact_decimal_mode() -> None:
    decoder = Decoder(price_type=Decimal)
    trade = decoder.decode(_read("trade.json")).event
    assert trade.price == Decimal("0.001")
    assert isinstance(trade.price, Decimal)
    assert trade.quantity == Decimal("100")
    kline = decoder.decode(_read("kline.json")).event.kline
    assert str(kline.open) == "0.0010"  # the trailing zero is kept
    depth = decoder.decode(_read("depth20.json"), stream="bnbbtc@depth20").event
    assert depth.bids == [(Decimal("0.0024"), Decimal("10"))]
    usdm = Decoder(USDM, price_type=Decimal)
    mark = usdm.decode(_read("markPrice.json")).event
    assert mark.funding_rate == Decimal("0.00038167")
    assert str(mark.mark_price) == "11794.15000000"
    ref = decoder.decode(_read("referencePrice.json")).event
    assert ref.price == Decimal("1.00")


@pytest.mark.parametrize("sample", STREAM_SAMPLES, ids=_sample_id)
def test_modes_agree(sample: StreamSample) -> None:
    """str mode keeps the wire text, Decimal mode its exact value, float mode its float."""
    payload = _read(sample.file)
    stream = sample.streams[0]
    as_float = Decoder(sample.venue).decode(payload, stream=stream)  # type: ignore[arg-type]
    as_str = Decoder(sample.venue, price_type=str).decode(payload, stream=stream)  # type: ignore[arg-type]
    as_dec = Decoder(sample.venue, price_type=Decimal).decode(payload, stream=stream)  # type: ignore[arg-type]
    # Decimal values print back to exactly the wire strings
    assert msgspec.to_builtins(as_dec.event) == msgspec.to_builtins(as_str.event)
    # the str event re-encoded and decoded as floats is the float event
    again = Decoder(sample.venue).decode(msgspec.json.encode(as_str.event), stream=stream)  # type: ignore[arg-type]
    assert msgspec.to_builtins(again.event) == msgspec.to_builtins(as_float.event)
    # and the wire text of every string number appears in the raw payload
    wire = payload.decode()
    for value in _strings(msgspec.to_builtins(as_str.event)):
        assert json.dumps(value) in wire or value in wire


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):  # "e" is the event tag, written back even where the wire has none
        return [s for k, v in value.items() if k != "e" for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


# -- control replies -------------------------------------------------------------------------

# key -> (id, result, error as (code, msg) or None)
CONTROL_EXPECTED: dict[str, tuple[Any, Any, tuple[int, str] | None]] = {
    "subscribe_response": (1, None, None),
    "unsubscribe_response": (312, None, None),
    "list_response": (3, ["btcusdt@aggTrade"], None),
    "set_property_response": (5, None, None),
    "get_property_response": (2, True, None),
    "error_invalid_stream_observed": (1, None, (2, "Invalid request: invalid stream")),
    "error_missing_method_observed": (
        None,
        None,
        (2, "Invalid request: missing field `method` at line 1 column 73"),
    ),
    "error_unknown_property_doc": (5, None, (0, "Unknown property")),
    "error_bad_bool_doc": (None, None, (1, "Invalid value type: expected Boolean")),
    "error_bad_id_doc": (
        None,
        None,
        (2, "Invalid request: request ID must be an unsigned integer"),
    ),
    "error_invalid_json_doc": (None, None, (3, "Invalid JSON: expected value at line 1 column 1")),
}


def _control() -> dict[str, Any]:
    return json.loads((SAMPLES / "ws-control.json").read_text())


def test_control_table_covers_every_reply() -> None:
    keys = {k for k in _control() if k.endswith("_response") or k.startswith("error_")}
    assert keys == set(CONTROL_EXPECTED)


@pytest.mark.parametrize("venue", [SPOT, USDM])
@pytest.mark.parametrize("key", sorted(CONTROL_EXPECTED))
def test_control_reply(key: str, venue: str) -> None:
    entry = _control()[key]
    expected_id, expected_result, expected_error = CONTROL_EXPECTED[key]
    decoder = Decoder(venue)  # type: ignore[arg-type]
    decoder.register(["btcusdt@aggTrade"])
    reply = decoder.decode(msgspec.json.encode(entry))
    assert type(reply) is fastmd.ControlReply
    assert reply.id == expected_id
    assert reply.result == expected_result
    if expected_error is None:
        assert reply.error is None
        assert reply.ok is True
    else:
        assert reply.error == fastmd.ControlError(code=expected_error[0], msg=expected_error[1])
        assert reply.ok is False
    assert sum(decoder.error_counts.values()) == 0


def test_control_replies_on_raw_connection() -> None:
    """On a /ws/<stream> connection replies arrive next to raw payloads decoded with stream=."""
    decoder = Decoder()
    for key, (expected_id, expected_result, expected_error) in CONTROL_EXPECTED.items():
        reply = decoder.decode(msgspec.json.encode(_control()[key]), stream="btcusdt@aggTrade")
        assert type(reply) is fastmd.ControlReply, key
        assert reply.id == expected_id, key
        assert reply.result == expected_result, key
        assert (reply.error is None) == (expected_error is None), key


def test_control_string_id() -> None:
    reply = Decoder().decode(b'{"result":null,"id":"9f1c2d3e-aaaa-bbbb-cccc-0123456789ab"}')
    assert reply == fastmd.ControlReply(id="9f1c2d3e-aaaa-bbbb-cccc-0123456789ab")


# -- REST ------------------------------------------------------------------------------------


def _rest(file: str, type_: Any) -> Any:
    return msgspec.json.decode(_read(file), type=type_, strict=False)


def test_rest_depth() -> None:
    snap = _rest("rest-depth.json", fastmd.DepthSnapshot[float])
    assert snap.last_update_id == 1027024
    assert snap.bids == [(4.0, 431.0)]
    assert snap.asks == [(4.000002, 12.0)]
    assert snap.event_time is None
    assert snap.transaction_time is None


def test_futures_rest_depth() -> None:
    snap = _rest("futures-rest-depth.json", fastmd.DepthSnapshot[float])
    assert snap.last_update_id == 1027024
    assert snap.event_time == 1589436922972
    assert snap.transaction_time == 1589436922959
    assert snap.bids == [(4.0, 431.0)]
    assert snap.asks == [(4.000002, 12.0)]


def test_rest_depth_exact() -> None:
    snap = msgspec.json.decode(_read("rest-depth.json"), type=fastmd.DepthSnapshot[str])
    assert snap.bids == [("4.00000000", "431.00000000")]
    assert snap.asks == [("4.00000200", "12.00000000")]
    dec = msgspec.json.decode(_read("rest-depth.json"), type=fastmd.DepthSnapshot[Decimal])
    assert dec.asks == [(Decimal("4.000002"), Decimal("12"))]


def test_rest_trades() -> None:
    (trade,) = _rest("rest-trades.json", list[fastmd.RestTrade[float]])
    assert trade.id == 28457
    assert trade.price == 4.000001
    assert trade.quantity == 12.0
    assert trade.quote_quantity == 48.000012
    assert trade.time == 1499865549590
    assert trade.is_buyer_maker is True
    assert trade.is_best_match is True


def test_rest_agg_trades() -> None:
    (agg,) = _rest("rest-aggTrades.json", list[fastmd.RestAggTrade[float]])
    assert agg.agg_trade_id == 26129
    assert agg.price == 0.01633102
    assert agg.quantity == 4.70443515
    assert (agg.first_trade_id, agg.last_trade_id) == (27781, 27781)
    assert agg.trade_time == 1498793709153
    assert agg.is_buyer_maker is True


def test_rest_klines() -> None:
    (bar,) = _rest("rest-klines.json", list[fastmd.KlineBar[float]])
    assert bar.open_time == 1499040000000
    assert (bar.open, bar.high, bar.low, bar.close) == (0.0163479, 0.8, 0.015758, 0.015771)
    assert bar.volume == 148976.11427815
    assert bar.close_time == 1499644799999
    assert bar.quote_volume == 2434.19055334
    assert bar.trade_count == 308
    assert bar.taker_buy_volume == 1756.87402397
    assert bar.taker_buy_quote_volume == 28.46694368
    assert bar.ignore == "0"
    (exact,) = msgspec.json.decode(_read("rest-klines.json"), type=list[fastmd.KlineBar[str]])
    assert exact.open == "0.01634790"


def test_rest_ticker_full() -> None:
    t = _rest("rest-ticker24hr.json", fastmd.RestTicker[float])
    assert t.symbol == "BNBBTC"
    assert t.price_change == -94.999998
    assert t.price_change_percent == -95.96
    assert t.weighted_avg_price == 0.29628482
    assert t.prev_close_price == 0.10002
    assert (t.last_price, t.last_qty) == (4.000002, 200.0)
    assert (t.bid_price, t.bid_qty, t.ask_price, t.ask_qty) == (4.0, 100.0, 4.000002, 100.0)
    assert (t.open_price, t.high_price, t.low_price) == (99.0, 100.0, 0.1)
    assert (t.volume, t.quote_volume) == (8913.3, 15.3)
    assert (t.open_time, t.close_time) == (1499783499040, 1499869899040)
    assert (t.first_id, t.last_id, t.count) == (28385, 28460, 76)


def test_rest_ticker_mini() -> None:
    t = _rest("rest-ticker24hr-mini.json", fastmd.RestTicker[float])
    assert t.symbol == "BNBBTC"
    assert (t.open_price, t.high_price, t.low_price, t.last_price) == (99.0, 100.0, 0.1, 4.000002)
    assert (t.volume, t.quote_volume) == (8913.3, 15.3)
    assert (t.first_id, t.last_id, t.count) == (28385, 28460, 76)
    for absent in ("price_change", "price_change_percent", "weighted_avg_price",
                   "prev_close_price", "last_qty", "bid_price", "bid_qty", "ask_price",
                   "ask_qty"):  # fmt: skip
        assert getattr(t, absent) is None, absent


def test_rest_ticker_rolling() -> None:
    t = _rest("rest-ticker-rolling.json", fastmd.RestTicker[float])
    assert t.symbol == "BNBBTC"
    assert t.price_change == -8.0
    assert t.price_change_percent == -88.889
    assert t.weighted_avg_price == 2.60427807
    assert (t.open_price, t.high_price, t.low_price, t.last_price) == (9.0, 9.0, 1.0, 1.0)
    assert (t.volume, t.quote_volume) == (187.0, 487.0)
    assert (t.open_time, t.close_time) == (1641859200000, 1642031999999)
    assert (t.first_id, t.last_id, t.count) == (0, 60, 61)
    assert t.prev_close_price is None
    assert t.bid_price is None


def test_rest_ticker_price() -> None:
    one = _rest("rest-ticker-price.json", fastmd.TickerPrice[float])
    assert one == fastmd.TickerPrice(symbol="LTCBTC", price=4.000002)
    every = _rest("rest-ticker-price-all.json", list[fastmd.TickerPrice[float]])
    assert [(p.symbol, p.price) for p in every] == [("LTCBTC", 4.000002), ("ETHBTC", 0.079466)]
    exact = msgspec.json.decode(_read("rest-ticker-price.json"), type=fastmd.TickerPrice[str])
    assert exact.price == "4.00000200"


def test_rest_book_ticker() -> None:
    b = _rest("rest-bookTicker.json", fastmd.RestBookTicker[float])
    assert b.symbol == "LTCBTC"
    assert (b.bid_price, b.bid_qty) == (4.0, 431.0)
    assert (b.ask_price, b.ask_qty) == (4.000002, 9.0)


def test_rest_avg_price() -> None:
    a = _rest("rest-avgPrice.json", fastmd.RestAvgPrice[float])
    assert a.mins == 5
    assert a.price == 9.35751834
    assert a.close_time == 1694061154503


def test_rest_time_and_ping() -> None:
    assert _rest("rest-time.json", fastmd.ServerTime).server_time == 1499827319559
    assert msgspec.json.decode(_read("rest-ping.json")) == {}


def test_rest_exchange_info() -> None:
    info = _rest("rest-exchangeInfo.json", fastmd.ExchangeInfo)
    assert info.timezone == "UTC"
    assert info.server_time == 1565246363776
    assert [(r.rate_limit_type, r.interval, r.interval_num, r.limit) for r in info.rate_limits] == [
        ("REQUEST_WEIGHT", "MINUTE", 1, 6000),
        ("ORDERS", "SECOND", 1, 10),
        ("RAW_REQUESTS", "MINUTE", 5, 61000),
    ]
    assert info.exchange_filters == []
    assert [s.symbol for s in info.symbols] == ["ETHBTC"]
    eth = info.symbol("ethbtc")
    assert eth is not None
    assert eth is info.symbol("ETHBTC")
    assert info.symbol("BTCUSDT") is None
    assert (eth.status, eth.base_asset, eth.quote_asset) == ("TRADING", "ETH", "BTC")
    assert (eth.base_asset_precision, eth.quote_precision, eth.quote_asset_precision) == (8, 8, 8)
    assert eth.order_types[0] == "LIMIT"
    assert "TAKE_PROFIT_LIMIT" in eth.order_types
    assert eth.permissions == []
    price = eth.filter("PRICE_FILTER")
    assert price is not None
    assert (price.min_price, price.max_price, price.tick_size) == (
        "0.00000100",
        "100000.00000000",
        "0.00000100",
    )
    lot = eth.filter("LOT_SIZE")
    assert lot is not None
    assert (lot.min_qty, lot.max_qty, lot.step_size) == (
        "0.00100000",
        "100000.00000000",
        "0.00100000",
    )
    notional = eth.filter("NOTIONAL")
    assert notional is not None
    assert (notional.min_notional, notional.max_notional) == ("10.00000000", "10000.00000000")
    assert notional.tick_size is None
    assert eth.filter("ICEBERG_PARTS") is None


@pytest.mark.parametrize(
    ("file", "code", "msg_start"),
    [
        ("error.json", -1121, "Invalid symbol."),
        ("error-429.json", -1003, "Too much request weight used; current limit is 6000"),
        (
            "error-418.json",
            -1003,
            "Way too much request weight used; IP banned until 1659146400000",
        ),
        ("error-bad-interval.json", -1120, "Invalid interval."),
        ("error-bad-limit.json", -1130, "Data sent for parameter 'limit' is not valid."),
        ("error-missing-param.json", -1102, "Mandatory parameter 'symbol' was not sent"),
    ],
)
def test_rest_error_bodies(file: str, code: int, msg_start: str) -> None:
    body = _rest(file, fastmd.RestErrorBody)
    assert body.code == code
    assert body.msg.startswith(msg_start)


def test_wsapi_error_body() -> None:
    doc = msgspec.json.decode(_read("wsapi-ratelimited-418.json"))
    assert doc["status"] == 418
    body = msgspec.convert(doc["error"], fastmd.RestErrorBody)
    assert body.code == -1003
    assert "IP banned until 1659146400000" in body.msg


COVERED = (
    {s.file for s in STREAM_SAMPLES}
    | {f for f, _, _ in COMBINED_SAMPLES}
    | {
        "ws-control.json", "rest-depth.json", "futures-rest-depth.json", "rest-trades.json",
        "rest-aggTrades.json", "rest-klines.json", "rest-ticker24hr.json",
        "rest-ticker24hr-mini.json", "rest-ticker-rolling.json", "rest-ticker-price.json",
        "rest-ticker-price-all.json", "rest-bookTicker.json", "rest-avgPrice.json",
        "rest-time.json", "rest-ping.json", "rest-exchangeInfo.json", "error.json",
        "error-429.json", "error-418.json", "error-bad-interval.json", "error-bad-limit.json",
        "error-missing-param.json", "wsapi-ratelimited-418.json",
    }
)  # fmt: skip


def test_every_sample_file_is_covered() -> None:
    on_disk = {p.name for p in SAMPLES.glob("*.json")}
    assert on_disk, f"no samples found in {SAMPLES}"
    assert on_disk - COVERED == set(), "sample files without a test"
    assert COVERED - on_disk == set(), "tests of missing sample files"
