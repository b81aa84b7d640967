"""The simulator speaks Binance's wire format: real ccxt gets what the generator makes."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from market_data.domain.timeframes import MINUTE_MS, SUPPORTED_TIMEFRAMES, Timeframe
from market_data.exchanges.client import SyncExchangeClient
from market_data.simulator.binance import format_klines, kline_row
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.generator import _uniform_array, aggregate, minute_bars, uniform
from market_data.simulator.markets import MARKETS, Kind, SimMarket, extra_pairs
from market_data.simulator.replay import ReplayFileError, ReplaySeries
from market_data.simulator.server import RunningSimulator, Simulator
from market_data_tests.candle_harness import parse_like_a_client
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, binance_client, http_get

BTC = next(m for m in MARKETS if m.id == "BTCUSDT" and m.kind is Kind.SPOT)
HOUR = 3_600_000


def expected(market: SimMarket, tf: str, start: int, end: int) -> list[list[float]]:
    """What the generator says, scaled the way a client parses it."""
    return parse_like_a_client(
        aggregate(minute_bars(market, start, end), Timeframe.parse(tf).ms), market
    )


def test_load_markets_lists_spot_perpetuals_and_a_dated_future(client: SyncExchangeClient) -> None:
    markets = client.load_markets()
    spot = [m for m in markets.values() if m["spot"]]
    swaps = [m for m in markets.values() if m["swap"]]
    futures = [m for m in markets.values() if m["future"]]
    assert len(spot) >= 20
    assert {"BTC/USDT:USDT", "ETH/USDT:USDT"} <= {m["symbol"] for m in swaps}
    dated = markets["BTC/USDT:USDT-261225"]
    assert dated in futures and dated["expiry"] == 1_798_185_600_000 and dated["active"]
    assert markets["BTC/USDT:USDT-260925"]["active"] is False  # delivered in September
    assert markets["OLD/USDT"]["active"] is False  # delisted
    assert markets["BTC/USDT"]["precision"]["price"] == 0.01


def test_fetch_ohlcv_equals_the_generator(client: SyncExchangeClient) -> None:
    start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
    got = client.fetch_ohlcv("BTC/USDT", "1h", start, 48)
    assert got == expected(BTC, "1h", start, start + 48 * HOUR)
    assert len(got) == 48


def test_fetch_time_is_the_exchange_clock(client: SyncExchangeClient) -> None:
    assert client.fetch_time() == NOW_MS


def test_order_book_is_sorted_around_the_price(client: SyncExchangeClient) -> None:
    book = client.call("fetch_order_book", "BTC/USDT", 20)  # ccxt itself reads the book
    bids, asks = [b[0] for b in book["bids"]], [a[0] for a in book["asks"]]
    assert len(bids) == len(asks) == 20
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0] and asks[0] / bids[0] < 1.001
    perp = client.call("fetch_order_book", "BTC/USDT:USDT", 50)
    assert len(perp["bids"]) == 50


@pytest.mark.parametrize(
    ("path", "default", "maximum"), [("/api/v3", 500, 1000), ("/fapi/v1", 500, 1500)]
)
def test_limit_default_and_maximum(
    sim: RunningSimulator, path: str, default: int, maximum: int
) -> None:
    common = {"symbol": "BTCUSDT", "interval": "1m", "startTime": 1_700_000_000_000}
    assert len(http_get(sim.url, f"{path}/klines", **common)[2]) == default
    assert len(http_get(sim.url, f"{path}/klines", **common, limit=maximum)[2]) == maximum
    status, _, body = http_get(sim.url, f"{path}/klines", **common, limit=maximum + 1)
    assert (status, body) == (
        400,
        {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."},
    )


def test_start_and_end_time_are_inclusive_open_times(sim: RunningSimulator) -> None:
    start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
    rows = http_get(
        sim.url,
        "/api/v3/klines",
        symbol="BTCUSDT",
        interval="1h",
        startTime=start,
        endTime=start + 5 * HOUR,
    )[2]
    assert [r[0] for r in rows] == [start + i * HOUR for i in range(6)]
    assert rows[0][6] == start + HOUR - 1  # close time
    # A start inside a candle begins with the next candle.
    rows = http_get(
        sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1h", startTime=start + 1, limit=2
    )[2]
    assert [r[0] for r in rows] == [start + HOUR, start + 2 * HOUR]
    # Only endTime: the newest candles up to it.
    rows = http_get(
        sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1h", endTime=start, limit=3
    )[2]
    assert [r[0] for r in rows] == [start - 2 * HOUR, start - HOUR, start]


def test_request_from_time_zero_returns_the_first_candles_after_listing(
    client: SyncExchangeClient,
) -> None:
    newt = next(m for m in MARKETS if m.id == "NEWTUSDT")
    rows = client.fetch_ohlcv("NEWT/USDT", "1h", 0, 3)
    assert rows[0][0] == newt.listed_ms
    rows = client.fetch_ohlcv("NEWT/USDT", "1d", 0, 2)
    assert rows[0][0] == newt.listed_ms - newt.listed_ms % 86_400_000  # the listing day's candle
    assert rows[0][1] == expected(newt, "1m", newt.listed_ms, newt.listed_ms + MINUTE_MS)[0][1]


def test_the_candle_in_progress_is_returned_unclosed(
    sim: RunningSimulator, client: SyncExchangeClient
) -> None:
    rows = client.fetch_ohlcv("BTC/USDT", "1h", None, 2)
    current = NOW_MS - NOW_MS % HOUR
    assert rows[-1][0] == current  # open, not closed yet
    admin(sim.url, "clock", {"advance_ms": HOUR})
    closed = client.fetch_ohlcv("BTC/USDT", "1h", current, 1)[0]
    assert closed == expected(BTC, "1h", current, current + HOUR)[0]
    assert rows[-1][5] < closed[5]  # only part of the hour's volume had traded
    assert rows[-1][1] == closed[1]  # same open


@pytest.mark.parametrize("tf", SUPPORTED_TIMEFRAMES[1:])
def test_every_timeframe_is_the_exact_aggregate_of_its_minutes(
    sim: RunningSimulator, tf: str
) -> None:
    ms = Timeframe.parse(tf).ms
    start = (1_760_000_000_000 // ms) * ms
    big = http_get(
        sim.url, "/api/v3/klines", symbol="ETHUSDT", interval=tf, startTime=start, limit=2
    )[2]
    minutes = []
    cursor = start
    while cursor < start + 2 * ms:
        page = http_get(
            sim.url,
            "/api/v3/klines",
            symbol="ETHUSDT",
            interval="1m",
            startTime=cursor,
            endTime=start + 2 * ms - 1,
            limit=1000,
        )[2]
        minutes += page
        cursor = page[-1][0] + MINUTE_MS
    assert len(big) == 2 and len(minutes) == 2 * ms // MINUTE_MS
    for i, candle in enumerate(big):
        part = [m for m in minutes if candle[0] <= m[0] < candle[0] + ms]
        assert Decimal(candle[1]) == Decimal(part[0][1])
        assert Decimal(candle[2]) == max(Decimal(m[2]) for m in part)
        assert Decimal(candle[3]) == min(Decimal(m[3]) for m in part)
        assert Decimal(candle[4]) == Decimal(part[-1][4])
        assert Decimal(candle[5]) == sum(Decimal(m[5]) for m in part), f"volume of candle {i}"


def test_an_illiquid_pair_has_minutes_without_candles(client: SyncExchangeClient) -> None:
    start = 1_760_000_000_000 - 1_760_000_000_000 % HOUR
    rows = client.fetch_ohlcv("ZEN/BTC", "1m", start, 1000, until=start + 1000 * MINUTE_MS - 1)
    assert 500 < len(rows) < 800  # about a third of the minutes have no trade
    hourly = client.fetch_ohlcv("ZEN/BTC", "1h", start, 16)
    assert len(hourly) == 16  # every hour still has trades


def test_holes_leave_the_exchange_without_candles(
    sim: RunningSimulator, client: SyncExchangeClient
) -> None:
    start = 1_760_000_000_000 - 1_760_000_000_000 % HOUR
    admin(
        sim.url,
        "faults",
        {
            "holes": [
                {
                    "symbol": "BTCUSDT",
                    "start_ms": start + 10 * MINUTE_MS,
                    "end_ms": start + 20 * MINUTE_MS,
                }
            ]
        },
    )
    rows = client.fetch_ohlcv("BTC/USDT", "1m", start, 60)
    stamps = [r[0] for r in rows]
    assert len(rows) == 60 and stamps[10] == start + 20 * MINUTE_MS  # limit counts candles
    assert not any(start + 10 * MINUTE_MS <= t < start + 20 * MINUTE_MS for t in stamps)
    assert len(client.fetch_ohlcv("ETH/USDT", "1m", start, 60, until=start + HOUR - 1)) == 60


def test_candles_are_the_same_after_a_restart() -> None:
    bodies = []
    for _ in range(2):
        with RunningSimulator(Simulator(Faults(), Clock(fixed_ms=NOW_MS))) as s:
            bodies.append(
                http_get(s.url, "/fapi/v1/klines", symbol="SOLUSDT", interval="5m", limit=300)[2]
            )
    assert bodies[0] == bodies[1] and len(bodies[0]) == 300


def test_replay_serves_a_files_rows_value_identical(tmp_path: Path) -> None:
    start = 1_699_999_200_000  # on the hour
    rows = [
        [
            start + i * MINUTE_MS,
            f"{100 + i}.5",
            f"{101 + i}.25",
            f"{99 + i}.125",
            f"{100 + i}.75",
            f"{i}.001",
        ]
        for i in range(10)
        if i != 4
    ]  # minute 4 is missing: a hole
    (tmp_path / "btc.csv").write_text(
        "ts,open,high,low,close,volume\n" + "\n".join(",".join(map(str, r)) for r in rows)
    )
    sim = Simulator(Faults(), Clock(fixed_ms=NOW_MS), replay={"BTCUSDT": tmp_path / "btc.csv"})
    with RunningSimulator(sim) as s, binance_client(s.url) as c:
        got = c.fetch_ohlcv("BTC/USDT", "1m", 0, 100)
        assert got == [[r[0], *(float(x) for x in r[1:])] for r in rows]
        five = c.fetch_ohlcv("BTC/USDT", "5m", 0, 10)
        assert five[0][1:] == [
            100.5,
            max(float(r[2]) for r in rows[:4]),
            99.125,
            103.75,
            float(sum(Decimal(r[5]) for r in rows[:4])),
        ]


def test_counters_report_requests_by_path_and_status(
    sim: RunningSimulator, client: SyncExchangeClient
) -> None:
    client.fetch_ohlcv("BTC/USDT", "1m", 1_700_000_000_000, 100)
    http_get(sim.url, "/api/v3/klines", symbol="NOPE", interval="1m")
    stats = admin(sim.url, "stats")
    assert stats["requests"]["/api/v3/klines"] == {"200": 1, "400": 1}
    assert stats["candles_served"] == 100
    assert stats["requests"]["/api/v3/exchangeInfo"] == {"200": 1}


@pytest.mark.parametrize("start", [1_600_000_020_000, 1_790_000_000_000])
def test_any_window_is_generated_alone_from_time_and_market(start: int) -> None:
    # Candles are a pure function of (market, time): a window needs no history before it, so
    # its cost is its length wherever it lies (the figures are in bench/simulator_pages.py).
    lo = start - start % MINUTE_MS
    window = minute_bars(BTC, lo, lo + 600 * MINUTE_MS)
    wider = minute_bars(BTC, lo - 1440 * MINUTE_MS, lo + 2000 * MINUTE_MS)
    inside = (wider.ts >= lo) & (wider.ts < lo + 600 * MINUTE_MS)
    assert len(window) == 600 and list(window.ts) == list(wider.ts[inside])
    for column in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(window, column), getattr(wider, column)[inside])
    assert np.all(window.high >= np.maximum(window.open, window.close))
    assert np.all(window.low <= np.minimum(window.open, window.close))
    assert np.all(window.low > 0) and np.all(window.volume > 0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ts,open,high,low,close,volume\n1700000000000,1,2,0.5,abc,3\n", "line 2: close 'abc'"),
        ("1700000000000,1,2,0.5,nan,3\n", "line 1: close 'nan' is not a number"),
        ("2023-11-14,1,2,0.5,1.5,3\n", "line 1: timestamp '2023-11-14' is not epoch"),
        ("1700000000000,1,2,0.5\n", "line 1 has 4 fields, expected 6"),
        ("[[1700000000000, 1, 2, 0.5, 1.5]]", "line 1 has 5 fields"),
    ],
)
def test_a_bad_replay_file_is_refused_naming_file_and_line(
    tmp_path: Path, text: str, says: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(ReplayFileError, match=f"{bad}: {re.escape(says)}"):
        ReplaySeries(bad)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("market-data")), "simulate", "--port", "0",
         "--replay", f"BTCUSDT={bad}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr


def test_extra_pairs_are_a_whole_exchange_of_spot_pairs_and_perpetuals() -> None:
    """`--extra-pairs 1667`: about Binance's 2,500 spot + USD-M markets, names past 999,
    listings spread over 2017..2026, some delisted, each serving candles from its listing."""
    server = RunningSimulator(Simulator(clock=Clock(fixed_ms=NOW_MS), extra_pairs=1667)).start()
    client = binance_client(server.url)
    try:
        markets = client.load_markets()
        extra = {s: m for s, m in markets.items() if re.match(r"X\d+/USDT", s)}
        spot = [m for m in extra.values() if m["spot"]]
        perps = [m for m in extra.values() if m["swap"]]
        assert (len(spot), len(perps)) == (1667, 833)
        assert {"X999/USDT", "X1000/USDT", "X1667/USDT", "X1000/USDT:USDT"} <= set(extra)
        delisted = [m for m in extra.values() if not m["active"]]
        assert len(delisted) == 166  # one base in 20 (even ones: spot pair and perpetual)
        years = {
            datetime.fromtimestamp(
                client.fetch_ohlcv(f"X{i:03d}/USDT", "1d", 0, 1)[0][0] / 1000, UTC
            ).year
            for i in range(1, 61)
        }
        assert years == set(range(2017, 2027))  # the first 60 bases cover every year
        first = extra_pairs(2)[-1]  # X002's perpetual: listed with its spot pair
        day = first.listed_ms - first.listed_ms % 86_400_000
        assert client.fetch_ohlcv("X002/USDT:USDT", "1d", 0, 1)[0][0] == day
        gone = next(m for m in extra_pairs(1667) if m.ends_ms is not None)
        last = client.fetch_ohlcv(f"{gone.base}/USDT", "1h", gone.ends_ms - 10 * HOUR, 1000)
        assert last[-1][0] == gone.ends_ms - HOUR  # nothing after the delisting
    finally:
        client.close()
        server.stop()


def test_a_streamed_candle_is_the_rest_row_bit_for_bit() -> None:
    """The streams' one-candle paths (Python splitmix64 for a few keys, one row formatted
    without the array encoder) give exactly what the page paths give: the same uniform
    numbers, and the same 12 fields as a REST page's row, for spot and futures markets of
    several precisions and every timeframe."""
    rng = np.random.default_rng(25)
    for salt in (0, 7919, -3, 2**63 + 5):
        keys = rng.integers(-(2**62), 2**62, size=600)
        small = np.concatenate([uniform(keys[i : i + 3], salt) for i in range(0, 600, 3)])
        assert np.array_equal(small, _uniform_array(keys, salt))
    markets = [*MARKETS[:6], *extra_pairs(4)]
    assert {m.futures for m in markets} == {False, True}
    for market in markets:
        for tf in (MINUTE_MS, 60 * MINUTE_MS, 1440 * MINUTE_MS):
            start = NOW_MS - NOW_MS % tf - 30 * tf
            bars = aggregate(minute_bars(market, max(start, market.listed_ms), NOW_MS), tf)
            page = orjson.loads(format_klines(bars, market, tf))
            assert page, market.id
            assert [kline_row(bars, market, tf, i) for i in range(len(bars))] == page
