"""Stream-name grammar: parse, build, validate and route, per venue (binance-protocol.md §1.3, §6,
§9)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

import fastmd
from fastmd import (
    FastmdError,
    Stream,
    StreamKind,
    StreamNameError,
    build_stream,
    futures_route,
    parse_stream,
    validate_stream,
)

SPOT = "binance-spot"
USDM = "binance-usdm"

# Written out here rather than imported, so a change to fastmd's tables is caught.
SPOT_INTERVALS = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip
USDM_INTERVALS = SPOT_INTERVALS[1:]
WINDOWS = ("1h", "4h", "1d")
LEVELS = (5, 10, 20)
SPOT_DEPTH_SPEEDS = (None, "100ms")
USDM_DEPTH_SPEEDS = (None, "100ms", "500ms")
CONTRACT_TYPES = ("perpetual", "current_quarter", "next_quarter", "tradifi_perpetual")

K = StreamKind


def _sfx(speed: str | None) -> str:
    return f"@{speed}" if speed else ""


def _valid_cases() -> list[tuple[str, str, Stream]]:
    """(venue, wire name, expected parse) for every stream kind and parameter of both venues."""
    cases: list[tuple[str, str, Stream]] = []
    spot_plain = {
        "trade": K.TRADE,
        "aggTrade": K.AGG_TRADE,
        "blockTrade": K.BLOCK_TRADE,
        "miniTicker": K.MINI_TICKER,
        "ticker": K.TICKER,
        "bookTicker": K.BOOK_TICKER,
        "avgPrice": K.AVG_PRICE,
        "referencePrice": K.REFERENCE_PRICE,
        "depth": K.DEPTH,
    }
    for text, kind in spot_plain.items():
        cases.append((SPOT, f"bnbbtc@{text}", Stream(kind, "bnbbtc")))
    for interval in SPOT_INTERVALS:
        cases.append(
            (SPOT, f"bnbbtc@kline_{interval}", Stream(K.KLINE, "bnbbtc", interval=interval))
        )
        cases.append(
            (
                SPOT,
                f"bnbbtc@kline_{interval}@+08:00",
                Stream(K.KLINE, "bnbbtc", interval=interval, timezone="+08:00"),
            )
        )
    for window in WINDOWS:
        cases.append(
            (SPOT, f"bnbbtc@ticker_{window}", Stream(K.WINDOW_TICKER, "bnbbtc", window=window))
        )
        cases.append((SPOT, f"!ticker_{window}@arr", Stream(K.ALL_WINDOW_TICKERS, window=window)))
    cases.append((SPOT, "bnbbtc@depth@100ms", Stream(K.DEPTH, "bnbbtc", speed="100ms")))
    for levels in LEVELS:
        for speed in SPOT_DEPTH_SPEEDS:
            cases.append(
                (
                    SPOT,
                    f"bnbbtc@depth{levels}{_sfx(speed)}",
                    Stream(K.PARTIAL_DEPTH, "bnbbtc", levels=levels, speed=speed),
                )
            )
    cases.append((SPOT, "!miniTicker@arr", Stream(K.ALL_MINI_TICKERS)))
    cases.append((SPOT, "!serverShutdown", Stream(K.SERVER_SHUTDOWN)))

    usdm_plain = {
        "aggTrade": K.AGG_TRADE,
        "miniTicker": K.MINI_TICKER,
        "ticker": K.TICKER,
        "bookTicker": K.BOOK_TICKER,
        "forceOrder": K.FORCE_ORDER,
        "markPrice": K.MARK_PRICE,
        "compositeIndex": K.COMPOSITE_INDEX,
    }
    for text, kind in usdm_plain.items():
        cases.append((USDM, f"btcusdt@{text}", Stream(kind, "btcusdt")))
    cases.append((USDM, "btcusdt@markPrice@1s", Stream(K.MARK_PRICE, "btcusdt", speed="1s")))
    cases.append((USDM, "btcusdt@rpiDepth@500ms", Stream(K.RPI_DEPTH, "btcusdt", speed="500ms")))
    for contract in CONTRACT_TYPES:
        for interval in USDM_INTERVALS:
            cases.append(
                (
                    USDM,
                    f"btcusdt_{contract}@continuousKline_{interval}",
                    Stream(
                        K.CONTINUOUS_KLINE, "btcusdt", interval=interval, contract_type=contract
                    ),
                )
            )
    for interval in USDM_INTERVALS:
        cases.append(
            (USDM, f"btcusdt@kline_{interval}", Stream(K.KLINE, "btcusdt", interval=interval))
        )
    for speed in USDM_DEPTH_SPEEDS:
        cases.append((USDM, f"btcusdt@depth{_sfx(speed)}", Stream(K.DEPTH, "btcusdt", speed=speed)))
        for levels in LEVELS:
            cases.append(
                (
                    USDM,
                    f"btcusdt@depth{levels}{_sfx(speed)}",
                    Stream(K.PARTIAL_DEPTH, "btcusdt", levels=levels, speed=speed),
                )
            )
    cases += [
        (USDM, "!miniTicker@arr", Stream(K.ALL_MINI_TICKERS)),
        (USDM, "!ticker@arr", Stream(K.ALL_TICKERS)),
        (USDM, "!bookTicker", Stream(K.ALL_BOOK_TICKERS)),
        (USDM, "!markPrice@arr", Stream(K.ALL_MARK_PRICES)),
        (USDM, "!markPrice@arr@1s", Stream(K.ALL_MARK_PRICES, speed="1s")),
        (USDM, "!forceOrder@arr", Stream(K.ALL_FORCE_ORDERS)),
        (USDM, "!contractInfo", Stream(K.ALL_CONTRACT_INFO)),
        (USDM, "!assetIndex@arr", Stream(K.ALL_ASSET_INDEXES)),
        (USDM, "!serverShutdown", Stream(K.SERVER_SHUTDOWN)),
    ]
    return cases


VALID = _valid_cases()


def test_interval_tables() -> None:
    assert tuple(fastmd.SPOT_KLINE_INTERVALS) == SPOT_INTERVALS
    assert tuple(fastmd.USDM_KLINE_INTERVALS) == USDM_INTERVALS
    assert "1s" not in fastmd.USDM_KLINE_INTERVALS


def test_valid_table_covers_every_kind() -> None:
    assert {case[2].kind for case in VALID} == set(StreamKind)


@pytest.mark.parametrize(
    ("venue", "name", "expected"), VALID, ids=[f"{v}:{n}" for v, n, _ in VALID]
)
def test_parse_valid(venue: str, name: str, expected: Stream) -> None:
    parsed = parse_stream(name, venue)  # type: ignore[arg-type]
    assert parsed == expected
    assert parsed.name == name
    assert validate_stream(name, venue) == name  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("venue", "name", "expected"), VALID, ids=[f"{v}:{n}" for v, n, _ in VALID]
)
def test_build_valid(venue: str, name: str, expected: Stream) -> None:
    built = build_stream(
        expected.kind,
        expected.symbol,
        venue=venue,  # type: ignore[arg-type]
        interval=expected.interval,
        window=expected.window,
        levels=expected.levels,
        speed=expected.speed,
        timezone=expected.timezone,
        contract_type=expected.contract_type,
    )
    assert built == name


def test_parse_defaults_to_spot() -> None:
    assert parse_stream("bnbbtc@trade") == Stream(K.TRADE, "bnbbtc")
    with pytest.raises(StreamNameError, match="binance-spot"):
        parse_stream("btcusdt@markPrice")


# (venue, name, substrings the message must contain: the bad part, then the allowed values)
INVALID: list[tuple[str, str, tuple[str, ...]]] = [
    (SPOT, "bnbbtc@kline_1x", ("kline interval '1x'", "allowed: 1s, 1m, 3m", "1w, 1M")),
    (SPOT, "bnbbtc@kline_1min", ("kline interval '1min'", "1s, 1m")),
    (SPOT, "bnbbtc@kline_1H", ("kline interval '1H'", "1h")),
    (USDM, "btcusdt@kline_1s", ("kline interval '1s' on binance-usdm", "allowed: 1m, 3m")),
    (USDM, "btcusdt@kline_1m@+08:00", ("kline suffix '@+08:00'", "allowed: no suffix")),
    (SPOT, "bnbbtc@kline_1m@+09:00", ("kline suffix '@+09:00'", "no suffix or @+08:00")),
    (SPOT, "bnbbtc@kline_1m@100ms", ("kline suffix '@100ms'", "no suffix or @+08:00")),
    (SPOT, "bnbbtc@ticker_2h", ("ticker window '2h'", "1h, 4h, 1d")),
    (SPOT, "bnbbtc@ticker_1h@100ms", ("suffix '@100ms' after a window ticker", "no suffix")),
    (USDM, "btcusdt@ticker_1h", ("stream type 'ticker_1h' on binance-usdm", "markPrice")),
    (SPOT, "bnbbtc@depth@500ms", ("depth speed '@500ms' on binance-spot", "no suffix or @100ms")),
    (SPOT, "bnbbtc@depth5@500ms", ("depth speed '@500ms' on binance-spot", "@100ms")),
    (USDM, "btcusdt@depth@250ms", ("depth speed '@250ms' on binance-usdm", "@100ms, @500ms")),
    (USDM, "btcusdt@depth10@1000ms", ("depth speed '@1000ms'", "@100ms, @500ms")),
    (SPOT, "bnbbtc@depth15", ("depth levels '15'", "5, 10, 20")),
    (SPOT, "bnbbtc@depthx", ("depth levels 'x'", "5, 10, 20")),
    (USDM, "btcusdt@depth50", ("depth levels '50'", "5, 10, 20")),
    (SPOT, "bnbbtc@markPrice", ("stream type 'markPrice' on binance-spot", "trade, aggTrade")),
    (SPOT, "bnbbtc@forceOrder", ("stream type 'forceOrder' on binance-spot", "referencePrice")),
    (SPOT, "bnbbtc@nope", ("stream type 'nope'", "kline_<interval>", "ticker_1h")),
    (USDM, "btcusdt@trade", ("stream type 'trade' on binance-usdm", "aggTrade", "forceOrder")),
    (USDM, "btcusdt@blockTrade", ("stream type 'blockTrade' on binance-usdm", "markPrice")),
    (USDM, "btcusdt@avgPrice", ("stream type 'avgPrice' on binance-usdm", "bookTicker")),
    (USDM, "btcusdt@referencePrice", ("stream type 'referencePrice' on binance-usdm", "depth5")),
    (USDM, "btcusdt@markPrice@3s", ("markPrice speed '@3s'", "no suffix or @1s")),
    (SPOT, "bnbbtc@trade@100ms", ("suffix '@100ms' after 'trade'", "no suffix")),
    (USDM, "btcusdt@aggTrade@1s", ("suffix '@1s' after 'aggTrade'", "no suffix")),
    (SPOT, "bnbbtctrade", ("no '@' between symbol and stream type", "<symbol>@<type>")),
    (SPOT, "", ("no '@'", "<symbol>@<type>")),
    (SPOT, "@trade", ("the symbol before '@' is empty", "'btcusdt'")),
    (SPOT, "bnb-btc@trade", ("symbol 'bnb-btc' contains '-'", "letters and digits")),
    (SPOT, "bnb btc@trade", ("contains ' '", "letters and digits")),
    (SPOT, "bnb_btc@trade", ("contains '_'", "letters and digits")),
    (SPOT, "BNBBTC@trade", ("symbol 'BNBBTC' is not lowercase", "'bnbbtc'")),
    (SPOT, "bnbBtc@depth", ("symbol 'bnbBtc' is not lowercase", "'bnbbtc'")),
    (USDM, "BTCUSDT@markPrice", ("not lowercase", "'btcusdt'")),
    (SPOT, "Éthbtc@trade", ("not lowercase", "'éthbtc'")),
    (SPOT, "!ticker@arr", ("retired on 2026-03-26", "use <symbol>@ticker or !miniTicker@arr")),
    (SPOT, "!bookTicker", ("removed in December 2022", "use <symbol>@bookTicker")),
    (SPOT, "!markPrice@arr", ("unknown all-market stream for binance-spot", "!miniTicker@arr")),
    (SPOT, "!forceOrder@arr", ("unknown all-market stream for binance-spot", "!ticker_1h@arr")),
    (SPOT, "!miniTicker", ("unknown all-market stream", "!serverShutdown")),
    (SPOT, "!ticker_2h@arr", ("ticker window '2h'", "1h, 4h, 1d")),
    (USDM, "!ticker_1h@arr", ("unknown all-market stream for binance-usdm", "!markPrice@arr@1s")),
    (USDM, "!markPrice@arr@3s", ("unknown all-market stream for binance-usdm", "!forceOrder@arr")),
    (USDM, "!bookTicker@arr", ("unknown all-market stream", "!bookTicker")),
    (SPOT, "btcusdt_perpetual@continuousKline_1m", ("contains '_'", "letters and digits")),
    (SPOT, "btcusdt@continuousKline_1m", ("stream type 'continuousKline_1m' on binance-spot",)),
    (USDM, "btcusdt@continuousKline_1m", ("no contract type after the pair", "next_quarter")),
    (USDM, "btcusdt_perp@continuousKline_1m", ("contract type 'perp'", "perpetual, current")),
    (USDM, "btcusdt_PERPETUAL@continuousKline_1m", ("not lowercase", "btcusdt_perpetual")),
    (USDM, "_perpetual@continuousKline_1m", ("no pair before the contract type",)),
    (USDM, "btc_usdt_perpetual@continuousKline_1m", ("contract type 'usdt_perpetual'",)),
    (USDM, "btcusdt_perpetual@continuousKline_1s", ("kline interval '1s'", "1m, 3m")),
    (USDM, "btcusdt_perpetual@continuousKline_", ("kline interval ''", "1m, 3m")),
    (USDM, "btcusdt_perpetual@continuousKline_1m@1s", ("suffix '@1s' after a continuous",)),
    (USDM, "btcusdt@rpiDepth", ("rpiDepth with no speed", "@500ms only")),
    (USDM, "btcusdt@rpiDepth@100ms", ("rpiDepth with speed '@100ms'", "@500ms only")),
    (USDM, "btcusdt@compositeIndex@1s", ("suffix '@1s' after 'compositeIndex'", "no suffix")),
    (SPOT, "btcusdt@compositeIndex", ("stream type 'compositeIndex' on binance-spot",)),
    (SPOT, "btcusdt@rpiDepth@500ms", ("stream type 'rpiDepth' on binance-spot",)),
    (SPOT, "!contractInfo", ("unknown all-market stream for binance-spot",)),
    (SPOT, "!assetIndex@arr", ("unknown all-market stream for binance-spot",)),
    (USDM, "!assetIndex", ("unknown all-market stream for binance-usdm", "!assetIndex@arr")),
    (USDM, "!contractInfo@arr", ("unknown all-market stream", "!contractInfo")),
]


@pytest.mark.parametrize(
    ("venue", "name", "parts"), INVALID, ids=[f"{v}:{n or '<empty>'}" for v, n, _ in INVALID]
)
def test_parse_invalid(venue: str, name: str, parts: tuple[str, ...]) -> None:
    with pytest.raises(StreamNameError) as info:
        parse_stream(name, venue)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(name) in message
    for part in parts:
        assert part in message
    assert "allowed: " in message
    # the same error from validate_stream, and it is a ValueError and a FastmdError
    with pytest.raises(ValueError, match="allowed: "):
        validate_stream(name, venue)  # type: ignore[arg-type]
    assert isinstance(info.value, FastmdError)


def test_stream_name_error_is_value_error() -> None:
    assert issubclass(StreamNameError, ValueError)
    assert issubclass(StreamNameError, fastmd.FastmdError)


def test_retired_spot_streams_are_valid_on_futures() -> None:
    assert parse_stream("!ticker@arr", USDM).kind is K.ALL_TICKERS
    assert parse_stream("!bookTicker", USDM).kind is K.ALL_BOOK_TICKERS
    with pytest.raises(StreamNameError, match="retired"):
        build_stream(K.ALL_TICKERS, venue=SPOT)
    with pytest.raises(StreamNameError, match="removed in December 2022"):
        build_stream(K.ALL_BOOK_TICKERS, venue=SPOT)


def test_unknown_venue() -> None:
    with pytest.raises(StreamNameError) as info:
        parse_stream("bnbbtc@trade", "binance-coinm")  # type: ignore[arg-type]
    assert "unknown venue 'binance-coinm'" in str(info.value)
    assert "binance-spot, binance-usdm" in str(info.value)
    with pytest.raises(StreamNameError, match="binance-coinm"):
        build_stream(K.TRADE, "bnbbtc", venue="binance-coinm")  # type: ignore[arg-type]


def test_non_str_name() -> None:
    with pytest.raises(StreamNameError, match="must be a str, not int"):
        parse_stream(123)  # type: ignore[arg-type]
    with pytest.raises(StreamNameError, match="not bytes"):
        parse_stream(b"bnbbtc@trade")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["bnbbtc@trade@", "bnbbtc@depth@", "bnbbtc@kline_1m@", "bnbbtc@depth5@"]
)
def test_trailing_at_rejected(name: str) -> None:
    """A dangling '@' is not Binance's grammar; accepting it would make parse(name).name differ
    from the name that was subscribed to."""
    with pytest.raises(StreamNameError):
        parse_stream(name, SPOT)


@pytest.mark.parametrize("name", ["bnbbtc@depth05", "bnbbtc@depth010", "bnbbtc@depth\u0665"])
def test_partial_depth_levels_must_be_canonical(name: str) -> None:
    """Only the literal "5", "10" and "20" are levels: "05" or an Arabic-Indic digit five are
    not Binance stream names (and parse(name).name would not give the name back)."""
    with pytest.raises(StreamNameError, match="depth levels"):
        parse_stream(name, SPOT)


# -- symbols ---------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["币安人生usdt", "éthbtc", "жжbtc", "λ1", "0x0", "1000satsusdt"])
@pytest.mark.parametrize("venue", [SPOT, USDM])
def test_non_ascii_and_digit_symbols_accepted(symbol: str, venue: str) -> None:
    name = f"{symbol}@aggTrade"
    parsed = parse_stream(name, venue)  # type: ignore[arg-type]
    assert parsed == Stream(K.AGG_TRADE, symbol)
    assert parsed.name == name


def test_uppercase_symbol_hint() -> None:
    with pytest.raises(StreamNameError) as info:
        parse_stream("BTCUSDT@trade")
    assert "e.g. 'btcusdt'" in str(info.value)


def test_build_lowercases_symbol() -> None:
    assert build_stream("trade", "BNBBTC") == "bnbbtc@trade"
    assert build_stream(K.AGG_TRADE, "BtcUsdt", venue=USDM) == "btcusdt@aggTrade"
    assert build_stream(K.TRADE, "ÉTHBTC") == "éthbtc@trade"


# -- build_stream ----------------------------------------------------------------------------


def test_build_examples() -> None:
    assert build_stream(K.KLINE, "btcusdt", interval="1m") == "btcusdt@kline_1m"
    assert (
        build_stream(K.KLINE, "btcusdt", interval="1M", timezone="+08:00")
        == "btcusdt@kline_1M@+08:00"
    )
    assert build_stream(K.PARTIAL_DEPTH, "bnbbtc", levels=20, speed="100ms") == (
        "bnbbtc@depth20@100ms"
    )
    assert build_stream(K.DEPTH, "btcusdt", venue=USDM, speed="500ms") == "btcusdt@depth@500ms"
    assert build_stream(K.WINDOW_TICKER, "bnbbtc", window="4h") == "bnbbtc@ticker_4h"
    assert build_stream(K.ALL_WINDOW_TICKERS, window="1d") == "!ticker_1d@arr"
    assert build_stream(K.ALL_MARK_PRICES, venue=USDM, speed="1s") == "!markPrice@arr@1s"
    assert build_stream(K.ALL_MARK_PRICES, venue=USDM) == "!markPrice@arr"
    assert build_stream(K.MARK_PRICE, "btcusdt", venue=USDM, speed="1s") == "btcusdt@markPrice@1s"
    assert build_stream("!miniTicker@arr") == "!miniTicker@arr"
    assert build_stream(K.SERVER_SHUTDOWN, venue=USDM) == "!serverShutdown"


@pytest.mark.parametrize(
    ("kwargs", "parts"),
    [
        ({"kind": "nope", "symbol": "bnbbtc"}, ("unknown stream kind 'nope'", "trade, aggTrade")),
        ({"kind": K.TRADE}, ("'trade' needs a symbol",)),
        ({"kind": K.TRADE, "symbol": ""}, ("needs a symbol",)),
        ({"kind": K.ALL_MINI_TICKERS, "symbol": "bnbbtc"}, ("takes no symbol",)),
        ({"kind": K.KLINE, "symbol": "btcusdt", "venue": USDM, "interval": "1s"}, ("'1s'",)),
        ({"kind": K.KLINE, "symbol": "btcusdt", "interval": "7m"}, ("kline interval '7m'",)),
        (
            {
                "kind": K.KLINE,
                "symbol": "btcusdt",
                "venue": USDM,
                "interval": "1m",
                "timezone": "+08:00",
            },
            ("kline suffix",),
        ),
        ({"kind": K.TRADE, "symbol": "bnbbtc", "speed": "100ms"}, ("suffix '@100ms'",)),
        ({"kind": K.TRADE, "symbol": "bnbbtc", "interval": "1m"}, ("do not form a valid",)),
        ({"kind": K.DEPTH, "symbol": "bnbbtc", "levels": 5}, ("do not form a valid",)),
        ({"kind": K.PARTIAL_DEPTH, "symbol": "bnbbtc", "levels": 50}, ("depth levels '50'",)),
        ({"kind": K.MARK_PRICE, "symbol": "bnbbtc"}, ("'markPrice' on binance-spot",)),
        ({"kind": K.FORCE_ORDER, "symbol": "btcusdt", "venue": SPOT}, ("'forceOrder'",)),
        (
            {"kind": K.WINDOW_TICKER, "symbol": "btcusdt", "venue": USDM, "window": "1h"},
            ("'ticker_1h' on binance-usdm",),
        ),
        ({"kind": K.ALL_WINDOW_TICKERS, "window": "2h"}, ("ticker window '2h'",)),
        ({"kind": K.TRADE, "symbol": "bnb/btc"}, ("contains '/'",)),
    ],
)
def test_build_invalid(kwargs: dict[str, Any], parts: tuple[str, ...]) -> None:
    args = dict(kwargs)
    kind = args.pop("kind")
    symbol = args.pop("symbol", None)
    with pytest.raises(StreamNameError) as info:
        build_stream(kind, symbol, **args)
    for part in parts:
        assert part in str(info.value)


# -- futures_route ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("btcusdt@depth", "public"),
        ("btcusdt@depth@100ms", "public"),
        ("btcusdt@depth@500ms", "public"),
        ("btcusdt@depth5", "public"),
        ("btcusdt@depth20@100ms", "public"),
        ("btcusdt@bookTicker", "public"),
        ("!bookTicker", "public"),
        ("btcusdt@markPrice", "market"),
        ("btcusdt@markPrice@1s", "market"),
        ("btcusdt@aggTrade", "market"),
        ("btcusdt@kline_1m", "market"),
        ("btcusdt@kline_1M", "market"),
        ("btcusdt@miniTicker", "market"),
        ("btcusdt@ticker", "market"),
        ("btcusdt@forceOrder", "market"),
        ("!forceOrder@arr", "market"),
        ("!markPrice@arr", "market"),
        ("!markPrice@arr@1s", "market"),
        ("!ticker@arr", "market"),
        ("!miniTicker@arr", "market"),
        ("btcusdt@rpiDepth@500ms", "public"),
        ("btcusdt_perpetual@continuousKline_1m", "market"),
        ("btcusdt_next_quarter@continuousKline_1d", "market"),
        ("defiusdt@compositeIndex", "market"),
        ("!contractInfo", "market"),
        ("!assetIndex@arr", "market"),
    ],
)
def test_futures_route(name: str, route: str) -> None:
    assert futures_route(name) == route
    assert futures_route(parse_stream(name, USDM)) == route


def test_futures_route_rejects_non_futures_names() -> None:
    with pytest.raises(StreamNameError, match="binance-usdm"):
        futures_route("bnbbtc@trade")
    with pytest.raises(StreamNameError):
        futures_route("BTCUSDT@depth")


# -- properties ------------------------------------------------------------------------------

SYMBOL_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789éüжλ币安"
symbols = st.text(alphabet=SYMBOL_CHARS, min_size=1, max_size=12)


def _optional(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def _parts(venue: str) -> st.SearchStrategy[Stream]:
    """Every kind of ``venue`` with valid parameters, as the Stream that parse must give."""
    if venue == SPOT:
        plain = [K.TRADE, K.AGG_TRADE, K.BLOCK_TRADE, K.MINI_TICKER, K.TICKER, K.BOOK_TICKER,
                 K.AVG_PRICE, K.REFERENCE_PRICE]  # fmt: skip
        intervals, timezones, speeds = SPOT_INTERVALS, (None, "+08:00"), SPOT_DEPTH_SPEEDS
        all_market = st.one_of(
            st.sampled_from([Stream(K.ALL_MINI_TICKERS), Stream(K.SERVER_SHUTDOWN)]),
            st.builds(Stream, st.just(K.ALL_WINDOW_TICKERS), window=_optional(WINDOWS)),
        )
        extra = st.builds(Stream, st.just(K.WINDOW_TICKER), symbols, window=_optional(WINDOWS))
    else:
        plain = [K.AGG_TRADE, K.MINI_TICKER, K.TICKER, K.BOOK_TICKER, K.FORCE_ORDER,
                 K.COMPOSITE_INDEX]  # fmt: skip
        intervals, timezones, speeds = USDM_INTERVALS, (None,), USDM_DEPTH_SPEEDS
        all_market = st.sampled_from(
            [
                Stream(K.ALL_MINI_TICKERS),
                Stream(K.ALL_TICKERS),
                Stream(K.ALL_BOOK_TICKERS),
                Stream(K.ALL_MARK_PRICES),
                Stream(K.ALL_MARK_PRICES, speed="1s"),
                Stream(K.ALL_FORCE_ORDERS),
                Stream(K.ALL_CONTRACT_INFO),
                Stream(K.ALL_ASSET_INDEXES),
                Stream(K.SERVER_SHUTDOWN),
            ]
        )
        extra = st.one_of(
            st.builds(Stream, st.just(K.MARK_PRICE), symbols, speed=_optional((None, "1s"))),
            st.builds(Stream, st.just(K.RPI_DEPTH), symbols, speed=st.just("500ms")),
            st.builds(
                Stream,
                st.just(K.CONTINUOUS_KLINE),
                symbols,
                interval=st.sampled_from(USDM_INTERVALS),
                contract_type=st.sampled_from(CONTRACT_TYPES),
            ),
        )
    return st.one_of(
        st.builds(Stream, st.sampled_from(plain), symbols),
        st.builds(
            Stream,
            st.just(K.KLINE),
            symbols,
            interval=st.sampled_from(intervals),
            timezone=_optional(timezones),
        ),
        st.builds(Stream, st.just(K.DEPTH), symbols, speed=_optional(speeds)),
        st.builds(
            Stream,
            st.just(K.PARTIAL_DEPTH),
            symbols,
            levels=st.sampled_from(LEVELS),
            speed=_optional(speeds),
        ),
        extra,
        all_market,
    )


venue_and_stream = st.sampled_from([SPOT, USDM]).flatmap(
    lambda venue: st.tuples(st.just(venue), _parts(venue))
)


@settings(max_examples=200, deadline=None)
@given(venue_and_stream, st.booleans())
def test_build_parse_round_trip(case: tuple[str, Stream], upper_ascii: bool) -> None:
    venue, stream = case
    symbol = stream.symbol
    if symbol is not None and upper_ascii:
        # build_stream takes symbols in any case; only ASCII is uppercased so lower() inverts it
        symbol = "".join(c.upper() if c.isascii() else c for c in symbol)
    name = build_stream(
        stream.kind,
        symbol,
        venue=venue,  # type: ignore[arg-type]
        interval=stream.interval,
        window=stream.window,
        levels=stream.levels,
        speed=stream.speed,
        timezone=stream.timezone,
        contract_type=stream.contract_type,
    )
    assert name == stream.name
    parsed = parse_stream(name, venue)  # type: ignore[arg-type]
    assert parsed == stream
    assert parsed.name == name
    assert validate_stream(name, venue) == name  # type: ignore[arg-type]
    if venue == USDM:
        public = stream.kind in {K.DEPTH, K.PARTIAL_DEPTH, K.BOOK_TICKER, K.ALL_BOOK_TICKERS,
                                 K.RPI_DEPTH}  # fmt: skip
        assert futures_route(name) == ("public" if public else "market")


def _names(venue: str) -> st.SearchStrategy[str]:
    """Valid wire names written directly from the grammar (independently of Stream.name)."""
    intervals = SPOT_INTERVALS if venue == SPOT else USDM_INTERVALS
    speeds = ["", "@100ms"] if venue == SPOT else ["", "@100ms", "@500ms"]
    tz = ["", "@+08:00"] if venue == SPOT else [""]
    if venue == SPOT:
        plain = ["trade", "aggTrade", "blockTrade", "miniTicker", "ticker", "bookTicker",
                 "avgPrice", "referencePrice", "ticker_1h", "ticker_4h", "ticker_1d"]  # fmt: skip
        fixed = ["!miniTicker@arr", "!ticker_1h@arr", "!ticker_4h@arr", "!ticker_1d@arr",
                 "!serverShutdown"]  # fmt: skip
    else:
        plain = ["aggTrade", "miniTicker", "ticker", "bookTicker", "forceOrder", "markPrice",
                 "markPrice@1s", "compositeIndex", "rpiDepth@500ms"]  # fmt: skip
        fixed = ["!miniTicker@arr", "!ticker@arr", "!bookTicker", "!markPrice@arr",
                 "!markPrice@arr@1s", "!forceOrder@arr", "!contractInfo", "!assetIndex@arr",
                 "!serverShutdown"]  # fmt: skip
    depth_types = ["depth", "depth5", "depth10", "depth20"]
    continuous = (
        st.builds(
            lambda s, c, i: f"{s}_{c}@continuousKline_{i}",
            symbols,
            st.sampled_from(CONTRACT_TYPES),
            st.sampled_from(USDM_INTERVALS),
        )
        if venue == USDM
        else st.nothing()
    )
    return st.one_of(
        continuous,
        st.sampled_from(fixed),
        st.builds(lambda s, t: f"{s}@{t}", symbols, st.sampled_from(plain)),
        st.builds(
            lambda s, i, z: f"{s}@kline_{i}{z}",
            symbols,
            st.sampled_from(intervals),
            st.sampled_from(tz),
        ),
        st.builds(
            lambda s, d, v: f"{s}@{d}{v}",
            symbols,
            st.sampled_from(depth_types),
            st.sampled_from(speeds),
        ),
    )


venue_and_name = st.sampled_from([SPOT, USDM]).flatmap(
    lambda venue: st.tuples(st.just(venue), _names(venue))
)


@settings(max_examples=200, deadline=None)
@given(venue_and_name)
def test_parse_name_round_trip(case: tuple[str, str]) -> None:
    venue, name = case
    parsed = parse_stream(name, venue)  # type: ignore[arg-type]
    assert parsed.name == name
    assert parse_stream(parsed.name, venue) == parsed  # type: ignore[arg-type]
    assert validate_stream(name, venue) == name  # type: ignore[arg-type]


TOKENS = ["bnbbtc", "BNB", "é", "@", "@@", "!", "_", "trade", "aggTrade", "depth", "5", "20",
          "kline_", "1m", "1s", "+08:00", "100ms", "500ms", "arr", "ticker", "markPrice", "1h",
          "bookTicker", "miniTicker", "-", " ", "serverShutdown", "\u0665", "continuousKline_",
          "perpetual", "next_quarter", "rpiDepth", "compositeIndex", "contractInfo",
          "assetIndex"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=8).map("".join), st.sampled_from([SPOT, USDM]))
def test_parse_never_raises_anything_but_stream_name_error(name: str, venue: str) -> None:
    try:
        parsed = parse_stream(name, venue)  # type: ignore[arg-type]
    except StreamNameError:
        return
    assert isinstance(parsed, Stream)


def test_validate_symbol_and_trade_stream() -> None:
    from fastmd.core.streams import trade_stream, validate_symbol

    assert validate_symbol("btcUSDT") == "BTCUSDT"  # any case in, REST's case out
    assert validate_symbol("btcusdt_250926", USDM) == "BTCUSDT_250926"
    with pytest.raises(StreamNameError, match=r"'_' is not allowed; letters and digits$"):
        validate_symbol("btcusdt_250926", SPOT)
    with pytest.raises(StreamNameError, match=r"'-' is not allowed.*delivery contracts"):
        validate_symbol("btc-usdt", USDM)
    with pytest.raises(StreamNameError, match="invalid symbol ''"):
        validate_symbol("", SPOT)
    assert trade_stream("BTCUSDT", SPOT) == "btcusdt@trade"
    assert trade_stream("BTCUSDT", USDM) == "btcusdt@aggTrade"  # USD-M has no raw trade stream


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcXYZ019_-. @", max_size=8), st.sampled_from([SPOT, USDM]))
def test_validate_symbol_takes_the_symbols_stream_names_take(symbol: str, venue: str) -> None:
    """A symbol passes validate_symbol exactly when, lowercased, it makes a valid stream name."""

    def accepted(check: Any) -> bool:
        try:
            check()
        except StreamNameError:
            return False
        return True

    by_itself = accepted(lambda: fastmd.validate_symbol(symbol, venue))  # type: ignore[arg-type]
    in_a_name = accepted(lambda: parse_stream(f"{symbol.lower()}@aggTrade", venue))  # type: ignore[arg-type]
    assert by_itself == in_a_name
