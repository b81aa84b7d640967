"""Pure domain functions: timeframes, calendar, intervals, the expected window, freshness,
standard symbols, the watchlist."""

from __future__ import annotations

from datetime import date

import pytest

from market_data.domain.calendar import (
    month_bounds,
    month_key_of,
    month_keys,
    next_month,
    previous_month,
    utc_text,
)
from market_data.domain.expected import Listing, clip, expected_window
from market_data.domain.freshness import is_stale, lag_seconds
from market_data.domain.intervals import merge_intervals, subtract_intervals
from market_data.domain.symbols import MalformedSymbolError, parse_symbol
from market_data.domain.timeframes import Timeframe, UnknownTimeframeError
from market_data.domain.watchlist import Market, WatchlistError, parse_watchlist, split_key

KNOWN = frozenset({"binance", "kraken"})
TODAY = date(2026, 11, 21)


@pytest.mark.parametrize(
    ("code", "ms"), [("1m", 60_000), ("15m", 900_000), ("4h", 14_400_000), ("1d", 86_400_000)]
)
def test_timeframe_parse(code: str, ms: int) -> None:
    assert Timeframe.parse(code).ms == ms


@pytest.mark.parametrize("code", ["7m", "1w", "", "h1", "1M", 5])
def test_unknown_timeframes_are_rejected(code: object) -> None:
    with pytest.raises(UnknownTimeframeError, match="unknown timeframe"):
        Timeframe.parse(code)  # type: ignore[arg-type]


def test_timeframe_grid() -> None:
    h = Timeframe.parse("1h")
    assert (
        h.floor(3_600_001) == 3_600_000
        and h.ceil(3_600_001) == 7_200_000
        and h.ceil(3_600_000) == 3_600_000
    )
    assert h.count(0, 3 * 3_600_000) == 3 and h.count(1, 3 * 3_600_000) == 2


@pytest.mark.parametrize(
    ("start", "end", "covered", "missing"),
    [
        (0, 100, [], [(0, 100)]),
        (0, 100, [(0, 100)], []),
        (0, 100, [(10, 20), (30, 40)], [(0, 10), (20, 30), (40, 100)]),
        (50, 100, [(0, 60), (90, 200)], [(60, 90)]),
    ],
)
def test_subtract_intervals(start: int, end: int, covered: list, missing: list) -> None:
    assert subtract_intervals(start, end, merge_intervals(covered)) == missing


def test_month_stepping() -> None:
    assert next_month(date(2026, 12, 15)) == date(2027, 1, 1)
    assert previous_month(date(2026, 1, 31)) == date(2025, 12, 1)
    assert month_keys(date(2025, 11, 20), date(2026, 2, 1)) == [
        "2025-11-01", "2025-12-01", "2026-01-01", "2026-02-01",
    ]  # fmt: skip
    assert month_bounds("2026-02-01") == (1_769_904_000_000, 1_772_323_200_000)
    assert month_key_of(1_772_323_199_999) == "2026-02-01" and utc_text(0) == "1970-01-01 00:00"


H = 3_600_000
BTC_1H = Market("binance", parse_symbol("BTC/USDT"), Timeframe.parse("1h"), date(1970, 1, 1))


@pytest.mark.parametrize(
    ("listing", "now", "window"),
    [
        (Listing(), None, None),  # the exchange clock was never read: nothing has closed
        (Listing(), 10 * H + 5, (0, 10 * H)),  # listing unknown: from the market's start
        (Listing(checked=True), 10 * H, None),  # looked for: the exchange has no candle
        (Listing(listed_at=2 * H + 1), 10 * H, (2 * H, 10 * H)),  # the listing hour counts
        (Listing(listed_at=2 * H, delisted_at=5 * H + 1), 10 * H, (2 * H, 6 * H)),
        (Listing(listed_at=9 * H), 9 * H + 1, None),  # its first candle has not closed yet
    ],
)
def test_expected_window(listing: Listing, now: int | None, window: tuple | None) -> None:
    assert expected_window(BTC_1H, listing, now) == window


def test_clip_starts_ranges_on_the_grid() -> None:
    tf = Timeframe.parse("1h")
    assert clip([(0, 3 * H), (4 * H + 1, 20 * H)], (H // 2, 8 * H), tf) == [
        (H, 3 * H),
        (5 * H, 8 * H),
    ]
    assert clip([(0, H)], None, tf) == []


def test_lag_and_staleness() -> None:
    assert lag_seconds(None, H, 10 * H) is None and lag_seconds(H, H, None) is None
    assert lag_seconds(7 * H, H, 10 * H) == 2 * 3600  # the 07:00 candle closed at 08:00
    assert lag_seconds(9 * H, H, 10 * H - 1) == 0  # never negative
    assert is_stale(2 * 3600 + 1, H, 2) and not is_stale(2 * 3600, H, 2)
    assert not is_stale(None, H, 2)


@pytest.mark.parametrize(
    ("text", "standard", "ccxt"),
    [
        ("BTC/USDT", "BTC-USDT-SPOT", "BTC/USDT"),
        ("btc/usdt", "BTC-USDT-SPOT", "BTC/USDT"),
        ("BTC/USDT:USDT", "BTC-USDT-PERP", "BTC/USDT:USDT"),
        ("BTC/USDT:USDT-261225", "BTC-USDT-FUTURE_261225", "BTC/USDT:USDT-261225"),
        ("BTC-USDT-PERP", "BTC-USDT-PERP", "BTC/USDT:USDT"),
        ("ETH-BTC-SPOT", "ETH-BTC-SPOT", "ETH/BTC"),
        ("BTC-USDT-FUTURE_260925", "BTC-USDT-FUTURE_260925", "BTC/USDT:USDT-260925"),
        ("XBT/USD", "BTC-USD-SPOT", "BTC/USD"),
        ("BTC/UST", "BTC-USDT-SPOT", "BTC/USDT"),
        ("BTC/UST:UST", "BTC-USDT-PERP", "BTC/USDT:USDT"),
    ],
)
def test_standard_symbols(text: str, standard: str, ccxt: str) -> None:
    symbol = parse_symbol(text)
    assert (symbol.standard, symbol.ccxt) == (standard, ccxt)


@pytest.mark.parametrize(
    "text", ["BTCUSDT", "BTC/", "BTC-USDT", "BTC-USDT-FUTURE", "BTC/USDT:USDT-26", ""]
)
def test_malformed_symbols(text: str) -> None:
    with pytest.raises(MalformedSymbolError, match="malformed pair"):
        parse_symbol(text)


def test_watchlist_forms_and_defaults() -> None:
    wl = parse_watchlist(
        {
            "start": "2024-01-01",
            "exchanges": {
                "binance": {
                    "base_url": "http://127.0.0.1:1",
                    "markets": [
                        "BTC/USDT/1h",
                        "ETH-USDT-SPOT-4h",
                        "SOL/USDT",
                        {"symbol": "BTC/USDT:USDT", "timeframe": "1d", "start": "2025-06-01"},
                    ],
                }
            },
        },
        KNOWN,
        TODAY,
    )
    keys = [m.key for m in wl.markets]
    assert keys[:2] == ["BTC-USDT-SPOT:1h", "ETH-USDT-SPOT:4h"]
    assert [k for k in keys if k.startswith("SOL")] == [
        f"SOL-USDT-SPOT:{tf}" for tf in ("1m", "5m", "15m", "1h", "4h", "1d")
    ]
    perp = wl.market("binance", "BTC-USDT-PERP:1d")
    assert (
        perp.start == date(2025, 6, 1) and wl.exchange("binance").base_url == "http://127.0.0.1:1"
    )
    assert all("|" not in k for k in keys)
    assert split_key("BTC-USDT-PERP:1d")[0].ccxt == "BTC/USDT:USDT"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"exchanges": {"nope": {}}}, r"exchanges\.nope: unknown exchange 'nope'"),
        (
            {"exchanges": {"binance": {"markets": ["BTC/USDT/7m"]}}},
            r"markets\[0\] \('BTC/USDT/7m'\): unknown timeframe '7m'",
        ),
        (
            {"exchanges": {"binance": {"markets": ["BTCUSDT"]}}},
            r"markets\[0\] \('BTCUSDT'\): malformed pair",
        ),
        (
            {"start": "2027-01-01", "exchanges": {"binance": {}}},
            "start date 2027-01-01 is in the future",
        ),
        ({"start": "soon", "exchanges": {"binance": {}}}, "'soon' is not a date"),
        (
            {
                "exchanges": {
                    "binance": {"markets": [{"symbol": "BTC/USDT", "start": "2030-01-01"}]}
                }
            },
            "in the future",
        ),
        ({"exchanges": {"binance": {"limit": 3}}}, r"unknown setting 'limit'"),
        ({"exchanges": {"binance": {"timeout_ms": "soon"}}}, r"timeout_ms: 'soon' is not a int"),
        ({"exchanges": []}, "'exchanges' must map"),
        ("just text", "must be a mapping"),
        ({"exchanges": {"binance": {}}, "freshness": {"every": 5}}, r"freshness: a mapping of"),
        (
            {"exchanges": {"binance": {}}, "freshness": {"warn_after_s": 9, "fail_after_s": 5}},
            "warn_after_s <= fail_after_s",
        ),
        (
            {"exchanges": {"binance": {}}, "gaps": {"max_attempts": 0}},
            "gaps.max_attempts: at least 1",
        ),
        ({"exchanges": {"binance": {}}, "gaps": {"sweep_cron": "daily"}}, "not a 5-field cron"),
    ],
)
def test_invalid_watchlists_name_the_entry(data: object, message: str) -> None:
    with pytest.raises(WatchlistError, match=message):
        parse_watchlist(data, KNOWN, TODAY)


def test_settings_blocks() -> None:
    wl = parse_watchlist(
        {"exchanges": {"binance": {}}, "freshness": {"interval_s": 60, "max_lag_timeframes": 3},
         "gaps": {"max_attempts": 5, "sweep_cron": "0 3 * * *"}},
        KNOWN, TODAY,
    )  # fmt: skip
    assert (
        wl.freshness.interval_s,
        wl.freshness.max_lag_timeframes,
        wl.freshness.fail_after_s,
    ) == (60, 3.0, 1800)
    assert (wl.gaps.max_attempts, wl.gaps.sweep_cron, wl.gaps.retry_delay_s) == (
        5,
        "0 3 * * *",
        300.0,
    )
