"""Deep history from Binance's public data archive (the simulator's, over HTTP): the same
candles as the candle endpoint, checksums checked before a row is written, and whatever a
file lacks or spoils asked of the candle endpoint."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import ExchangeSettings, Market, WatchlistError, parse_watchlist
from market_data.exchanges.archive import parse_klines
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.venues import archive_url
from market_data.pipeline.ingest import MarketReport, fetch_markets
from market_data.simulator.markets import Kind
from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series
from market_data.store.tables import fetch_coverage
from market_data_tests.candle_harness import Harness, clear, exchange_truth, watchlist
from market_data_tests.conftest import NOW_MS  # 2026-11-20 12:34:56 UTC, the clock frozen
from market_data_tests.helpers import admin, cli, cli_env, cli_process

HOUR, DAY = 3_600_000, 86_400_000
JUN_2022, AUG_2022 = 1_654_041_600_000, 1_659_312_000_000
DEC_2024, FEB_2025 = 1_733_011_200_000, 1_738_368_000_000
JAN_2024, JAN_2025, JAN_2026 = 1_704_067_200_000, 1_735_689_600_000, 1_767_225_600_000
MAY_2024, JUN_2024 = 1_714_521_600_000, 1_717_200_000_000
OCT_2026 = 1_790_812_800_000
MONTHLY, DAILY = (
    "/binance-archive/data/spot/monthly/klines",
    "/binance-archive/data/spot/daily/klines",
)


def backfill(
    sim: RunningSimulator,
    store: CandleStore,
    symbol: str,
    timeframe: str,
    lo: int,
    hi: int,
    archive: bool = True,
) -> MarketReport:
    market = Market("binance", parse_symbol(symbol), Timeframe.parse(timeframe), date(2020, 1, 1))
    settings = ExchangeSettings(
        "binance", sim.url, rate_limit_ms=0, retry_base_s=0.05,
        archive_url=f"{sim.url}/binance-archive" if archive else None,
    )  # fmt: skip

    async def go() -> MarketReport:
        client = ExchangeClient.of(settings)
        try:
            return (await fetch_markets(client, store, {market: [(lo, hi)]})).markets[market.key]
        finally:
            await client.close()

    return asyncio.run(go())


def stored(store: CandleStore, symbol: str, timeframe: str) -> list[list[float]]:
    series = Series("binance", parse_symbol(symbol).standard, timeframe)
    return store.read_candles(series, 0, 2**62).values.tolist()


def sources(store: CandleStore) -> list[tuple[Any, ...]]:
    c = fetch_coverage.c
    query = sa.select(c.start_ts, c.end_ts, c.source, c.checksum).order_by(c.start_ts)
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def klines(sim: RunningSimulator) -> int:
    stats = admin(sim.url, "stats")["requests"]
    return sum(stats.get("/api/v3/klines", {}).values()) + sum(
        stats.get("/fapi/v1/klines", {}).values()
    )


@pytest.fixture
def store(store_url: str) -> CandleStore:
    return CandleStore(store_url)


@pytest.mark.parametrize(
    ("symbol", "kind", "lo", "hi"),
    [
        # spot: December 2024 in milliseconds, January 2025 in microseconds
        ("BTC/USDT", Kind.SPOT, DEC_2024, FEB_2025),
        # USD-M: June 2022 without a header row, July 2022 with one
        ("BTC/USDT:USDT", Kind.PERP, JUN_2022, AUG_2022),
    ],
)
def test_archive_months_store_exactly_the_exchanges_candles_without_spending_weight(
    sim: RunningSimulator, store: CandleStore, symbol: str, kind: Kind, lo: int, hi: int
) -> None:
    report = backfill(sim, store, symbol, "1h", lo, hi)
    assert stored(store, symbol, "1h") == exchange_truth("BTCUSDT", kind, "1h", lo, hi, NOW_MS)
    assert report.archive is not None and report.archive.files == 2
    assert report.from_archive == report.rows_written == (hi - lo) // HOUR
    assert klines(sim) <= 1  # the listing's discovery; no page of candles
    # the coverage says where each span came from, with the file's SHA-256
    assert [(s, e, src) for s, e, src, _ in sources(store)] == [
        (lo, lo + 31 * DAY if lo == DEC_2024 else lo + 30 * DAY, "archive"),
        (lo + 31 * DAY if lo == DEC_2024 else lo + 30 * DAY, hi, "archive"),
    ]
    assert all(len(checksum) == 64 for *_, checksum in sources(store))


def test_a_wrong_checksum_or_a_broken_zip_writes_nothing_and_ends_in_the_candle_endpoint(
    sim: RunningSimulator, store: CandleStore
) -> None:
    admin(sim.url, "faults", {
        "archive_bad_checksum": ["BTCUSDT-1h-2024-03"],
        "fail": [{"path": f"{MONTHLY}/BTCUSDT/1h/BTCUSDT-1h-2024-07.zip", "garble": "truncated",
                  "count": -1}],
    })  # fmt: skip
    report = backfill(sim, store, "BTC/USDT", "1h", JAN_2024, JAN_2025)
    assert stored(store, "BTC/USDT", "1h") == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", JAN_2024, JAN_2025, NOW_MS
    )
    assert report.archive is not None
    assert report.archive.files == 10
    assert [u.split(":")[0] for u in report.archive.unusable] == [
        "BTCUSDT-1h-2024-03.zip", "BTCUSDT-1h-2024-07.zip"
    ]  # fmt: skip
    # a cut download is caught by its checksum too, before a row is written
    for unusable in report.archive.unusable:
        assert "does not match its .CHECKSUM" in unusable and unusable.endswith("(3 attempts)")
    # those two months came from the candle endpoint, every other from the archive
    march, april = 1_709_251_200_000, 1_711_929_600_000
    july, august = 1_719_792_000_000, 1_722_470_400_000
    assert [(s, e) for s, e, src, _ in sources(store) if src == "rest"] == [
        (march, april), (july, august)
    ]  # fmt: skip
    assert report.from_archive == report.rows_written - (april - march + august - july) // HOUR


def test_what_a_short_file_lacks_is_asked_of_the_candle_endpoint(
    sim: RunningSimulator, store: CandleStore
) -> None:
    # the archive's May 2024 lacks five hours and a whole day that the candle endpoint has
    lost = [{"symbol": "BTCUSDT", "start_ms": MAY_2024 + 10 * HOUR, "end_ms": MAY_2024 + 15 * HOUR},
            {"symbol": "BTCUSDT", "start_ms": MAY_2024 + 20 * DAY, "end_ms": MAY_2024 + 21 * DAY}]  # fmt: skip
    admin(sim.url, "faults", {"archive_holes": lost})
    report = backfill(sim, store, "BTC/USDT", "1h", MAY_2024, JUN_2024)
    assert stored(store, "BTC/USDT", "1h") == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", MAY_2024, JUN_2024, NOW_MS
    )
    assert report.from_archive == 31 * 24 - 5 - 24
    assert klines(sim) == 2  # the listing's discovery, and one page for both holes


def test_the_month_in_progress_comes_from_daily_files_then_the_candle_endpoint(
    sim: RunningSimulator, store: CandleStore
) -> None:
    report = backfill(sim, store, "BTC/USDT", "1h", OCT_2026, NOW_MS)
    assert stored(store, "BTC/USDT", "1h") == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", OCT_2026, NOW_MS, NOW_MS
    )
    stats = admin(sim.url, "stats")["requests"]
    # October's monthly file; November 1st..19th from daily files (with their .CHECKSUM);
    # the 20th, in progress, from the candle endpoint
    assert stats[MONTHLY] == {"200": 2}
    assert stats[DAILY] == {"200": 2 * 19}
    assert report.from_archive == (31 + 19) * 24
    assert report.rows_written - report.from_archive == 12  # 00:00..11:00 of the 20th


def test_a_month_missing_from_the_archive_is_read_from_its_days_and_a_missing_day_from_rest(
    sim: RunningSimulator, store: CandleStore
) -> None:
    admin(sim.url, "faults", {"fail": [
        {"path": f"{MONTHLY}/BTCUSDT/1h/BTCUSDT-1h-2024-05.zip", "status": 404, "count": -1},
        {"path": f"{DAILY}/BTCUSDT/1h/BTCUSDT-1h-2024-05-07.zip", "status": 404, "count": -1},
    ]})  # fmt: skip
    report = backfill(sim, store, "BTC/USDT", "1h", MAY_2024, JUN_2024)
    assert stored(store, "BTC/USDT", "1h") == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", MAY_2024, JUN_2024, NOW_MS
    )
    assert report.archive is not None and report.archive.files == 30
    assert report.from_archive == 30 * 24
    assert klines(sim) == 2  # the listing's discovery, and May 7th


def test_the_archive_can_be_turned_off_and_is_off_for_an_api_pointed_elsewhere(
    sim: RunningSimulator, store: CandleStore
) -> None:
    report = backfill(sim, store, "BTC/USDT", "1h", MAY_2024, JUN_2024, archive=False)
    assert report.archive is None
    assert "/binance-archive" not in str(admin(sim.url, "stats")["requests"])
    assert stored(store, "BTC/USDT", "1h") == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", MAY_2024, JUN_2024, NOW_MS
    )
    assert archive_url(ExchangeSettings("binance")) == "https://data.binance.vision"
    assert archive_url(ExchangeSettings("binance", "http://127.0.0.1:1")) is None
    assert (
        archive_url(ExchangeSettings("binance", "http://x", archive_url="http://y/")) == "http://y"
    )
    assert archive_url(ExchangeSettings("binance", archive=False)) is None
    assert archive_url(ExchangeSettings("kraken")) is None


@pytest.mark.parametrize(
    ("setting", "says"),
    [({"archive": "no"}, "exchanges.binance.archive: 'no' is not true or false"),
     ({"archive_url": 5}, None)],
)  # fmt: skip
def test_the_archive_settings_of_a_watchlist(setting: dict[str, Any], says: str | None) -> None:
    data = {
        "start": "2024-01-01",
        "exchanges": {"binance": {"markets": ["BTC-USDT-SPOT"], **setting}},
    }
    if says is None:
        (exchange,) = parse_watchlist(data, frozenset({"binance"})).exchanges
        assert exchange.archive_url == "5" and exchange.archive
        return
    with pytest.raises(WatchlistError, match=says):
        parse_watchlist(data, frozenset({"binance"}))


def test_archive_rows_are_parsed_with_or_without_header_in_ms_or_microseconds() -> None:
    row_ms = b"1714521600000,1.5,2.5,1.0,2.0,10.0,1714521659999,15.0,3,5.0,7.5,0\n"
    row_us = b"1746057600000000,1.5,2.5,1.0,2.0,10.0,1746057659999999,15.0,3,5.0,7.5,0\n"
    header = b"open_time,open,high,low,close,volume,close_time,quote_volume,count,x,y,ignore\n"
    assert parse_klines(row_ms).tolist() == [[1714521600000, 1.5, 2.5, 1.0, 2.0, 10.0]]
    assert parse_klines(header + row_ms).tolist() == parse_klines(row_ms).tolist()
    assert parse_klines(row_us)[:, 0].tolist() == [1746057600000]
    assert parse_klines(b"").shape == parse_klines(header).shape == (0, 6)
    with pytest.raises(ValueError):
        parse_klines(b"1714521600000,1.5,,1.0,2.0,10.0,1,1,1,1,1,0\n")


def test_a_partitions_metadata_says_how_many_candles_came_from_the_archive(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """Through the candle asset, as a backfill from the UI runs it: 2024 of BTC 1h, March's
    file spoilt."""
    admin(sim.url, "faults", {"archive_bad_checksum": ["BTCUSDT-1h-2024-03"]})
    wl = watchlist(sim.url, [{"symbol": "BTC-USDT-SPOT", "timeframes": ["1h"]}], "2024-01-01")
    (binance,) = wl.exchanges
    wl = replace(wl, exchanges=(replace(binance, archive_url=f"{sim.url}/binance-archive"),))
    h = Harness(wl, f"sqlite:///{tmp_path}/candles.sqlite", dg.DagsterInstance.ephemeral())
    result = h.run("BTC-USDT-SPOT:1h|2024")
    assert result.success
    meta = h.partitions(result)["BTC-USDT-SPOT:1h|2024"]
    march = 31 * 24
    assert meta["from_archive"] == 366 * 24 - march
    assert meta["from_candle_endpoint"] == march
    assert meta["archive_unusable"].startswith("BTCUSDT-1h-2024-03.zip: SHA-256")
    assert meta["absent"] == 0 and meta["present"] == 366 * 24
    # and `market-data status` (the store's coverage) says so per series
    assert h.store.by_source("binance") == {("BTC-USDT-SPOT", "1h"): {"archive": 366 * 24 - march}}


def _archive_rows(store: CandleStore) -> int:
    """Coverage rows written from archive files (one per month here)."""
    return sum(1 for *_, source, _ in sources(store) if source == "archive")


def test_a_backfill_killed_mid_archive_reruns_only_the_files_it_had_not_written(
    sim: RunningSimulator, tmp_path: Path, pg_database: str
) -> None:
    clear(pg_database)
    archive = f"{sim.url}/binance-archive"
    env = cli_env(tmp_path, sim.url, pg_database, ["BTC/USDT/1h"], start="2025-01-01",
                  archive_url=archive)  # fmt: skip
    command = ("backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h",
               "--start", "2025-01-01", "--end", "2026-01-01")  # fmt: skip
    store = CandleStore(pg_database)
    admin(sim.url, "faults", {"latency_ms": 2000})  # files arrive slowly: the kill lands mid-run
    proc = cli_process(env, *command)
    deadline = time.monotonic() + 120
    while _archive_rows(store) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # kill -9: no clean-up of any kind
    proc.wait(10)
    at_kill = _archive_rows(store)
    assert 0 < at_kill < 12  # some months written, with their coverage; not all
    admin(sim.url, "faults", {"latency_ms": 0})
    time.sleep(2.5)  # what the killed process had asked for is answered (and counted)
    before = admin(sim.url, "stats")["requests"][MONTHLY]["200"]

    rerun = cli(env, *command)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # each month not written before the kill downloaded once more (its .CHECKSUM and zip)
    assert admin(sim.url, "stats")["requests"][MONTHLY]["200"] - before == 2 * (12 - at_kill)
    assert stored(store, "BTC/USDT", "1h") == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", JAN_2025, JAN_2026, NOW_MS
    )
