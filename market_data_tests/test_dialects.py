"""Bitfinex, Coinbase and Kraken through the real ccxt client over HTTP to the simulator's
dialects: markets under standard names, paging with the fewest requests each exchange's page
size allows, closed candles only, the listing date, each exchange's rate-limit style, and
the candle asset end to end with its gap check."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import ccxt
import dagster as dg
import pytest

from market_data.config import timeframes_of
from market_data.domain.catalog import build_catalog
from market_data.domain.selection import resolve
from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import (
    ExchangeSettings,
    Market,
    WatchlistError,
    parse_watchlist,
)
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.venues import venue
from market_data.pipeline.ingest import Fetched, fetch_markets
from market_data.simulator.book import CandleBook, Clock
from market_data.simulator.faults import Faults
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series
from market_data_tests.candle_harness import Harness, parse_like_a_client, watchlist
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin

DIALECTS = ("bitfinex", "coinbase", "kraken")
HOUR, MIN, DAY = 3_600_000, 60_000, 86_400_000
#: the simulator's id of each exchange's BTC/USD market, its listing
BTC_USD, BTC_USD_LISTED = "BTCUSD", 1_421_193_600_000  # 2015-01-14
#: the candle endpoint of each dialect, as the simulator counts it
CANDLE_PATHS = {
    "bitfinex": "/bitfinex/v2/candles/",
    "coinbase": "/coinbase/api/v3/brokerage/market/products/BTC-USD/candles",
    "kraken": "/kraken/0/public/OHLC",
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(Simulator(Faults(), Clock(fixed_ms=NOW_MS))) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(sim: RunningSimulator) -> None:
    for name in DIALECTS:
        admin(f"{sim.url}/{name}", "reset", {"faults": True})


def stats(sim: RunningSimulator, name: str) -> dict:
    return admin(f"{sim.url}/{name}", "stats")


def candle_requests(sim: RunningSimulator, name: str) -> int:
    by_path = stats(sim, name)["requests"]
    return sum(sum(c.values()) for p, c in by_path.items() if p.startswith(CANDLE_PATHS[name]))


def client_of(sim: RunningSimulator, name: str, **settings: object) -> ExchangeClient:
    """ccxt's own throttle for the exchange (its rate ceiling is part of what is tested);
    Kraken's OHLC alone unless ``trades=True`` (its trades: test_kraken_trades.py)."""
    settings.setdefault("trades", False)
    return ExchangeClient.of(ExchangeSettings(name, f"{sim.url}/{name}", **settings))  # type: ignore[arg-type]


def fetch(
    sim: RunningSimulator, name: str, market: Market, lo: int, hi: int, store: CandleStore, **kw: object
) -> Fetched:  # fmt: skip
    async def go() -> Fetched:
        client = client_of(sim, name, **kw)
        try:
            return await fetch_markets(client, store, {market: [(lo, hi)]})
        finally:
            await client.close()

    return asyncio.run(go())


def truth(timeframe: str, lo: int, hi: int) -> list[list[float]]:
    """The simulator's closed BTC/USD candles opening in [lo, hi), as a client parses them."""
    book = CandleBook()
    market = book.market(BTC_USD)
    tf = Timeframe.parse(timeframe)
    bars = book.klines(market, tf.ms, lo, min(hi, tf.floor(NOW_MS)) - 1, 10**9, NOW_MS, Faults())
    return parse_like_a_client(bars, market)


# -- markets -----------------------------------------------------------------------------


EXPECTED_CATALOG = {
    "bitfinex": {
        "BTC-USD-SPOT": "tBTCUSD", "BTC-USDT-SPOT": "tBTCUST", "BTC-USDT-PERP": "tBTCF0:USTF0",
        "ETH-USD-SPOT": "tETHUSD", "ETH-USDT-SPOT": "tETHUST", "ETH-USDT-PERP": "tETHF0:USTF0",
    },
    "coinbase": {
        "BTC-USD-SPOT": "BTC-USD", "BTC-USDT-SPOT": "BTC-USDT",
        "ETH-USD-SPOT": "ETH-USD", "ETH-USDT-SPOT": "ETH-USDT",
    },
    "kraken": {
        "BTC-USD-SPOT": "XXBTZUSD", "BTC-USDT-SPOT": "XBTUSDT",
        "ETH-USD-SPOT": "XETHZUSD", "ETH-USDT-SPOT": "ETHUSDT",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", DIALECTS)
def test_markets_load_under_standard_names(sim: RunningSimulator, name: str) -> None:
    async def go() -> dict:
        client = client_of(sim, name)
        try:
            return await client.load_markets()
        finally:
            await client.close()

    catalog = build_catalog(name, asyncio.run(go()).values())
    assert {s: i.exchange_symbol for s, i in catalog.items()} == EXPECTED_CATALOG[name]
    assert stats(sim, name)["rate_limited"] == 0


# -- paging, closed candles, listing -----------------------------------------------------


@pytest.mark.parametrize("name", DIALECTS)
@pytest.mark.parametrize("timeframe,span", [("1h", 365 * 24), ("1m", 30 * 1440)])
def test_paging_takes_the_fewest_requests_and_keeps_closed_candles_only(
    sim: RunningSimulator, tmp_path: Path, name: str, timeframe: str, span: int
) -> None:
    tf = Timeframe.parse(timeframe)
    market = Market(name, parse_symbol("BTC/USD"), tf, date(2015, 1, 1))
    store = CandleStore(f"sqlite:///{tmp_path}/d.sqlite")
    current = tf.floor(NOW_MS)  # the candle in progress: asked for, never stored
    lo, hi = current - span * tf.ms, current + tf.ms
    fetch(sim, name, market, current - tf.ms, current, store)  # the listing, found once
    admin(f"{sim.url}/{name}", "reset", {})

    fetched = fetch(sim, name, market, lo, hi, store)

    report = fetched.markets[market.key]
    limit = venue(name).page_limit
    history = venue(name).history_candles
    served = span if history is None else history  # Kraken: its newest candles only
    first = current - served * tf.ms
    stored = store.read_candles(Series.of(market), 0, 2**62)
    assert stored.values.tolist() == truth(timeframe, first, current)
    assert report.expected == report.present == served
    assert report.last_ts == current - tf.ms  # the newest closed candle, not the one in progress
    assert candle_requests(sim, name) == math.ceil(served / limit)  # the minimum
    assert stats(sim, name)["rate_limited"] == 0  # within the exchange's rate ceiling
    if history is not None:  # what the exchange serves no more is unavailable, not absent
        assert report.unserved == (market.start_ms, first)
        assert report.unavailable == span - served and report.absent == 0
    else:
        assert report.unserved is None and report.unavailable == 0


@pytest.mark.parametrize("name", ["bitfinex", "coinbase"])
def test_the_listing_date_is_found_from_the_exchange(
    sim: RunningSimulator, tmp_path: Path, name: str
) -> None:
    market = Market(name, parse_symbol("BTC/USD"), Timeframe.parse("1d"), date(2010, 1, 1))
    store = CandleStore(f"sqlite:///{tmp_path}/l.sqlite")
    fetched = fetch(sim, name, market, market.start_ms, NOW_MS + DAY, store)
    assert store.instruments.listing(name, "BTC-USD-SPOT").listed_at == BTC_USD_LISTED
    report = fetched.markets[market.key]
    assert report.first_ts == BTC_USD_LISTED  # nothing expected before the listing
    assert report.expected == report.present > 4000


def test_kraken_history_beyond_its_720_candles_is_unavailable_not_missing(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    market = Market("kraken", parse_symbol("BTC/USD"), Timeframe.parse("1h"), date(2026, 1, 1))
    store = CandleStore(f"sqlite:///{tmp_path}/k.sqlite")
    fetched = fetch(sim, "kraken", market, market.start_ms, NOW_MS + DAY, store)
    report = fetched.markets[market.key]
    horizon = Timeframe.parse("1h").floor(NOW_MS) - venue("kraken").history_candles * HOUR  # type: ignore[operator]
    assert store.instruments.listing("kraken", "BTC-USD-SPOT").listed_at is None  # unknowable
    assert report.unserved == (market.start_ms, horizon)
    assert report.unavailable == (horizon - market.start_ms) // HOUR
    assert report.absent == 0 and report.first_ts == horizon


#: BTC/USDT's listing in the simulator (Kraken's XBTUSDT too): 2017-08-17 00:00 UTC
BTC_USDT_LISTED = 1_502_928_000_000


@pytest.mark.parametrize(
    ("tf", "now_ms"),
    [("1h", BTC_USDT_LISTED + 13 * DAY + 10 * HOUR + 30 * MIN),  # 322 of 720 hours served
     ("1m", BTC_USDT_LISTED + 6 * HOUR + 30 * MIN)],  # 390 of 720 minutes served
)  # fmt: skip
def test_a_kraken_market_listed_inside_the_served_window_has_no_gap_before_its_first_candle(
    store_url: str, tf: str, now_ms: int
) -> None:
    """Kraken's answer holds the market's whole history: its first candle is the listing,
    and nothing before it is a gap or unavailable."""
    with RunningSimulator(Simulator(Faults(), Clock(fixed_ms=now_ms))) as running:
        wl = watchlist(running.url, [f"BTC/USDT/{tf}"], start="2017-08-01", exchange="kraken")
        h = Harness(wl, store_url, dg.DagsterInstance.ephemeral())
        result = h.run(f"BTC-USDT-SPOT:{tf}|2017")
        assert result.success
    assert h.store.instruments.listing("kraken", "BTC-USDT-SPOT").listed_at == BTC_USDT_LISTED
    (august,) = h.partitions(result).values()
    timeframe = Timeframe.parse(tf)
    closed = (timeframe.floor(now_ms) - BTC_USDT_LISTED) // timeframe.ms
    assert august["expected"] == august["present"] == closed
    assert august.get("unavailable", 0) == 0  # the key is there only when some are
    assert h.check_result(result).passed
    assert h.store.gaps.open_gaps() == []
    assert h.stored("BTC-USDT-SPOT", tf)[0][0] == BTC_USDT_LISTED


# -- faults: each exchange's rate-limit style ----------------------------------------------


def candle_times(sim: RunningSimulator, name: str) -> list[tuple[float, int]]:
    rows = admin(f"{sim.url}/{name}", "timeline")
    return [(r["t"], r["status"]) for r in rows if r["path"].startswith(CANDLE_PATHS[name])]


@pytest.mark.parametrize("name", DIALECTS)
def test_each_exchanges_rate_limit_is_retried_after_its_pause(
    sim: RunningSimulator, tmp_path: Path, name: str
) -> None:
    market = Market(name, parse_symbol("BTC/USD"), Timeframe.parse("1h"), date(2026, 1, 1))
    store = CandleStore(f"sqlite:///{tmp_path}/r.sqlite")
    day = Timeframe.parse("1d").floor(NOW_MS) - DAY
    fetch(sim, name, market, day - HOUR, day, store)  # markets and listing first
    rule = {"path": CANDLE_PATHS[name], "status": 429, "count": 2}
    admin(f"{sim.url}/{name}", "reset", {})
    admin(f"{sim.url}/{name}", "faults", {"fail": [rule]})

    fetched = fetch(sim, name, market, day, day + DAY, store, rate_limit_pause_s=1.5)

    assert fetched.markets[market.key].present == 24  # nothing lost
    assert stats(sim, name)["rate_limited"] == 2  # in the exchange's own style (Kraken: 200)
    (t1, s1), (t2, s2), (t3, s3) = candle_times(sim, name)
    assert (s1, s2, s3) == ((200, 200, 200) if name == "kraken" else (429, 429, 200))
    assert t2 - t1 >= 1.4 and t3 - t2 >= 1.4  # the pause was honoured, then grown by backoff


def test_an_exchange_without_retry_after_is_paused_as_long_as_it_blocks() -> None:
    assert ExchangeClient.of(ExchangeSettings("bitfinex")).rate_limit_pause_s == 60
    assert (
        ExchangeClient.of(ExchangeSettings("bitfinex", rate_limit_pause_s=5)).rate_limit_pause_s
        == 5
    )


@pytest.mark.parametrize("name", DIALECTS)
def test_a_server_error_in_the_exchanges_style_is_retried(
    sim: RunningSimulator, tmp_path: Path, name: str
) -> None:
    market = Market(name, parse_symbol("BTC/USD"), Timeframe.parse("1h"), date(2026, 1, 1))
    store = CandleStore(f"sqlite:///{tmp_path}/e.sqlite")
    day = Timeframe.parse("1d").floor(NOW_MS) - DAY
    admin(f"{sim.url}/{name}", "faults", {"fail": [{"path": CANDLE_PATHS[name], "status": 503}]})
    fetched = fetch(sim, name, market, day, day + DAY, store, retry_base_s=0.05)
    assert fetched.markets[market.key].present == 24
    statuses = [s for _, s in candle_times(sim, name)]
    assert statuses.count(503) == 1 and statuses[-1] == 200  # failed once, then answered


# -- the candle asset end to end -----------------------------------------------------------


@pytest.mark.parametrize("name", DIALECTS)
def test_backfill_and_gap_check_end_to_end(
    sim: RunningSimulator, store_url: str, name: str
) -> None:
    hole = {"symbol": BTC_USD, "start_ms": OCT + 9 * DAY, "end_ms": OCT + 9 * DAY + 3 * HOUR}
    admin(f"{sim.url}/{name}", "faults", {"holes": [hole]})
    # each timeframe from its own start: its year partition is that start to now
    markets = [{"symbol": "BTC/USD", "timeframe": "1h", "start": "2026-10-01"},
               {"symbol": "BTC/USD", "timeframe": "1d", "start": "2026-11-01"}]  # fmt: skip
    wl = watchlist(sim.url, markets, exchange=name)
    h = Harness(wl, store_url, dg.DagsterInstance.ephemeral())

    hourly = h.run("BTC-USD-SPOT:1h|2026")
    daily = h.run("BTC-USD-SPOT:1d|2026")

    assert hourly.success and daily.success
    (year_1h,) = h.partitions(hourly).values()
    (year_1d,) = h.partitions(daily).values()
    assert year_1d["expected"] == year_1d["present"] == 19  # Nov 1..19 closed at Nov 20 12:34
    check = h.check_result(hourly)
    if name == "kraken":  # Oct 21 12:00 onwards only: the rest is unavailable, not a gap
        served = NOW_H - venue("kraken").history_candles * HOUR  # type: ignore[operator]
        assert year_1h["expected"] == year_1h["present"] == (NOW_H - served) // HOUR
        assert year_1h["unavailable"] == (served - OCT) // HOUR and check.passed
    else:  # every hour from October 1 but the three the exchange lacks
        assert year_1h["expected"] == (NOW_H - OCT) // HOUR
        assert year_1h["present"] == year_1h["expected"] - 3
        assert not check.passed
        assert check.metadata["empty_candles"].value == 3
    assert h.check_result(daily).passed


OCT, NOV = 1_790_812_800_000, 1_793_491_200_000  # 2026-10-01, 2026-11-01
NOW_H = Timeframe.parse("1h").floor(NOW_MS)


# -- replay --------------------------------------------------------------------------------


def test_replayed_candles_are_served_by_every_dialect(tmp_path: Path) -> None:
    first = Timeframe.parse("1m").floor(NOW_MS) - 600 * MIN
    rows = [[first + i * MIN, f"{100 + i}.25", f"{101 + i}.5", f"{99 + i}.125", f"{100 + i}.75",
             f"{1 + i % 7}.0625"] for i in range(600)]  # fmt: skip
    path = tmp_path / "btcusd.csv"
    path.write_text("\n".join(",".join(map(str, r)) for r in rows))
    recorded = [[r[0], *(float(x) for x in r[1:])] for r in rows]
    sim = Simulator(Faults(), Clock(fixed_ms=NOW_MS), replay={BTC_USD: path})
    with RunningSimulator(sim) as running:
        for name in DIALECTS:
            market = Market(name, parse_symbol("BTC/USD"), Timeframe.parse("1m"), date(2026, 1, 1))
            store = CandleStore(f"sqlite:///{tmp_path}/{name}.sqlite")
            fetch(running, name, market, first - DAY, NOW_MS, store)
            stored = store.read_candles(Series.of(market), 0, 2**62).values.tolist()
            assert stored == recorded, name


# -- the watchlist ---------------------------------------------------------------------------


def test_a_timeframe_the_exchange_lacks_is_refused_when_the_watchlist_loads() -> None:
    data = {"exchanges": {"coinbase": {"markets": ["BTC/USD/1h", "BTC/USD/4h"]}}}
    with pytest.raises(WatchlistError) as e:
        parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)
    assert "exchanges.coinbase.markets[1] ('BTC/USD/4h'): coinbase has no 4h candles" in str(
        e.value
    )
    assert "(it serves 1m, 5m, 15m, 30m, 1h, 2h, 6h, 1d)" in str(e.value)
    data = {"exchanges": {"kraken": {"select": [{"quote": "USD", "timeframes": ["2h"]}]}}}
    with pytest.raises(WatchlistError, match=r"select\[0\]: kraken has no 2h candles"):
        parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)


def test_the_cross_exchange_minimum_over_four_real_catalogs(sim: RunningSimulator) -> None:
    """Binance (root) and the three dialects: BTC-USDT spot is listed by all four, BTC-USD
    spot by three (Binance has no USD pairs), the BTC-USDT perpetual by two (Binance and
    Bitfinex's tBTCF0:USTF0), SOL-USDT spot by Binance alone."""

    async def catalog(name: str) -> dict:
        client = ExchangeClient.of(
            ExchangeSettings(name, sim.url if name == "binance" else f"{sim.url}/{name}")
        )
        try:
            return build_catalog(name, (await client.load_markets()).values())
        finally:
            await client.close()

    names = ("binance", *DIALECTS)
    catalogs = {name: asyncio.run(catalog(name)) for name in names}
    symbols = ["BTC-USDT-SPOT", "BTC-USD-SPOT", "BTC-USDT-PERP", "SOL-USDT-SPOT"]

    def kept(minimum: int) -> dict[str, list[str]]:
        data = {
            "exchanges": {name: {} for name in names},
            "cross_exchange": {
                "symbols": symbols,
                "timeframes": ["1h"],
                "min_exchanges_required": minimum,
            },
        }
        wl = parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)
        markets = resolve(wl, catalogs).markets
        return {s: [ex for ex in names if f"{s}:1h" in markets[ex]] for s in symbols}

    everywhere = ["binance", "bitfinex", "coinbase", "kraken"]
    usd = ["bitfinex", "coinbase", "kraken"]
    perp = ["binance", "bitfinex"]
    assert (
        kept(4)
        == kept(0)
        == {
            "BTC-USDT-SPOT": everywhere,
            "BTC-USD-SPOT": [],
            "BTC-USDT-PERP": [],
            "SOL-USDT-SPOT": [],
        }
    )
    assert kept(3) == {
        "BTC-USDT-SPOT": everywhere,
        "BTC-USD-SPOT": usd,
        "BTC-USDT-PERP": [],
        "SOL-USDT-SPOT": [],
    }
    assert kept(2) == {
        "BTC-USDT-SPOT": everywhere,
        "BTC-USD-SPOT": usd,
        "BTC-USDT-PERP": perp,
        "SOL-USDT-SPOT": [],
    }
    assert kept(1)["SOL-USDT-SPOT"] == ["binance"]
