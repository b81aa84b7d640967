"""One market, one year of 1m candles (525,600) from the simulator into PostgreSQL, 3 ways:

  (a) the Dagster backfill: one run of the candle asset over the 2025 partition (12 months)
  (b) the same fetch code (pipeline.ingest.fetch_markets), no Dagster
  (c) the old-script style: sequential fetch, one upsert statement per row (SQLAlchemy)

Each way runs in its own process (for its peak RSS) against its own fresh database; the
simulator runs as a separate process. Targets: requests = the minimum; (a) within 1.3x of
(b); (a) at least 3x faster than (c); peak RSS of (a) under 400 MB.

    python bench/backfill.py            # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from datetime import date
from typing import Any

from common import admin, scratch_database, simulator  # bench/, on sys.path

YEAR_START, YEAR_END = 1_735_689_600_000, 1_767_225_600_000  # 2025-01-01 .. 2026-01-01
NOW = "2026-01-02T00:00Z"
CANDLES = (YEAR_END - YEAR_START) // 60_000
MINIMUM_PAGES = -(-CANDLES // 1000)


def upsert_row_by_row(store: Any, series: Any, page: Any) -> int:
    """One INSERT .. ON CONFLICT statement per candle, as the old scripts did."""
    from sqlalchemy.dialects import postgresql

    from market_data.store.tables import VALUE_COLUMNS, candles

    written = 0
    columns = ("ts", *VALUE_COLUMNS)
    with store.engine.begin() as conn:
        for row in zip(page.ts.tolist(), *page.values.T.tolist(), strict=True):
            stmt = postgresql.insert(candles).values(
                **series.params(**dict(zip(columns, row, strict=True)))
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["exchange", "symbol", "timeframe", "ts"],
                set_={c: stmt.excluded[c] for c in VALUE_COLUMNS},
            )
            written += conn.execute(stmt).rowcount
    return written


def _watchlist(sim_url: str) -> Any:
    import ccxt

    from market_data.domain.watchlist import parse_watchlist

    settings = {
        "base_url": sim_url,
        "rate_limit_ms": 0,
        "step_retries": 0,
        "markets": ["BTC/USDT/1m"],
    }
    data = {"start": "2025-01-01", "exchanges": {"binance": settings}}
    return parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 1, 2))


def way(name: str, sim_url: str, db_url: str) -> dict:
    """Runs in a child process; returns its figures."""
    warnings.simplefilter("ignore")
    import dagster as dg
    import numpy as np

    from market_data.definitions import build_definitions
    from market_data.domain.candles import page_from_table, validate_pages
    from market_data.exchanges.client import ExchangeClient, SyncExchangeClient
    from market_data.exchanges.paging import windows
    from market_data.pipeline.ingest import fetch_markets
    from market_data.store.candles import CandleStore
    from market_data.store.series import Series

    wl = _watchlist(sim_url)
    market = wl.markets[0]
    store = CandleStore(db_url)
    t0 = time.perf_counter()
    if name == "a":
        os.environ["DATABASE_URL"] = db_url  # the store resource reads it (dg.EnvVar)
        defs = build_definitions(wl)
        tf = market.timeframe.code
        asset = defs.resolve_assets_def(dg.AssetKey(["candles", "binance", tf]))
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(f"markets_binance_{tf}", [market.key])
        result = dg.materialize([asset], instance=instance, partition_key=f"{market.key}|2025")
        assert result.success
    elif name == "b":

        async def fetch() -> None:
            client = ExchangeClient.of(wl.exchange("binance"))
            try:
                await fetch_markets(client, store, {market: [(YEAR_START, YEAR_END)]})
            finally:
                await client.close()

        asyncio.run(fetch())
    else:  # one request at a time, one statement per candle
        with SyncExchangeClient.of(wl.exchange("binance")) as client:
            client.load_markets()
            now = client.fetch_time()
            series = Series.of(market)
            for lo, hi in windows(YEAR_START, YEAR_END, 60_000, 1000):
                rows = client.fetch_ohlcv("BTC/USDT", "1m", lo, 1000, until=hi - 1)
                table = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
                page = page_from_table(market.key, table, 60_000, lo, hi, now)
                validate_pages([page], now)
                upsert_row_by_row(store, series, page)
    seconds = time.perf_counter() - t0
    stored = store.candle_stats(Series.of(market), 0, 2**62)[0]
    return {
        "way": name,
        "seconds": seconds,
        "stored": stored,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    if len(sys.argv) == 4:  # child: way, simulator URL, database URL
        print(json.dumps(way(*sys.argv[1:])))
        return
    figures = []
    with simulator(NOW) as sim_url:
        for name in ("a", "b", "c"):
            with scratch_database("md_bench") as db_url:
                admin(sim_url, "reset", {})
                out = subprocess.run(
                    [sys.executable, __file__, name, sim_url, db_url],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                stats = admin(sim_url, "stats")["requests"].get("/api/v3/klines", {})
                row["page_requests"] = sum(stats.values())
                figures.append(row)
                print(f"({name}) done in {row['seconds']:.1f}s", file=sys.stderr)
    labels = {
        "a": "(a) Dagster backfill",
        "b": "(b) fetch + COPY, no Dagster",
        "c": "(c) row-by-row upserts",
    }
    print(f"{CANDLES} 1m candles; minimum candle requests: {MINIMUM_PAGES} (+1 listing discovery)")
    print(
        f"{'way':32} {'seconds':>8} {'candles/s':>10} {'requests':>9} {'peak RSS MB':>12} {'stored':>8}"
    )
    for row in figures:
        print(
            f"{labels[row['way']]:32} {row['seconds']:8.1f} {row['stored'] / row['seconds']:10.0f} "
            f"{row['page_requests']:9d} {row['peak_rss_mb']:12.0f} {row['stored']:8d}"
        )
    a, b, c = (next(r["seconds"] for r in figures if r["way"] == w) for w in "abc")
    print(f"(a)/(b) = {a / b:.2f}  (target <= 1.3);  (c)/(a) = {c / a:.1f}  (target >= 3)")


if __name__ == "__main__":
    main()
