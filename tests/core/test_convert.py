"""REST answers as the events of the streams they stand in for."""

from __future__ import annotations

import msgspec
from testdata import SAMPLES

from fastmd.core import convert, events as ev
from fastmd.core.rest_models import PremiumIndex, RestAvgPrice, RestTicker


def test_avg_price_event() -> None:
    answer = msgspec.json.decode(
        b'{"mins":5,"price":"9.35751834","closeTime":1694061154503}', type=RestAvgPrice[str]
    )
    event = convert.avg_price_event("BNBUSDT", answer, now_ms=1)
    assert event == ev.AvgPrice(1694061154503, "BNBUSDT", "5m", "9.35751834", 1694061154503)
    undated = msgspec.json.decode(b'{"mins":5,"price":"1.5"}', type=RestAvgPrice[str])
    assert convert.avg_price_event("BNBUSDT", undated, now_ms=42).event_time == 42


def test_mark_price_event() -> None:
    answer = msgspec.json.decode(
        b'{"symbol":"BTCUSDT","markPrice":"11793.63104562","indexPrice":"11781.80495970",'
        b'"estimatedSettlePrice":"11781.16138815","lastFundingRate":"0.00038246",'
        b'"interestRate":"0.00010000","nextFundingTime":1597392000000,"time":1597370495002}',
        type=PremiumIndex[str],
    )
    event = convert.mark_price_event("BTCUSDT", answer)
    assert event == ev.MarkPrice(
        event_time=1597370495002,
        symbol="BTCUSDT",
        mark_price="11793.63104562",
        index_price="11781.80495970",
        estimated_settle_price="11781.16138815",
        funding_rate="0.00038246",
        next_funding_time=1597392000000,
    )


def test_rest_ticker_is_the_inverse_of_ticker_event() -> None:
    answer = msgspec.json.decode(
        (SAMPLES / "rest-ticker24hr.json").read_bytes(), type=RestTicker[str]
    )
    event = convert.ticker_event(answer)
    assert convert.rest_ticker(event) == answer
    assert convert.ticker_event(convert.rest_ticker(event)) == event
