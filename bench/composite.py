"""Composite candles of 3 exchanges x one month of 1m (43,200 timestamps) in PostgreSQL, and
the consistent_timeframes check of one market-month of 1m against its 1h, 4h and 1d.

November 2026 of BTC is fetched from the simulator (a process of its own, clock fixed at
2026-12-01 00:00 UTC) through the project's client into a fresh PostgreSQL database:
Binance BTC/USDT, Bitfinex and Coinbase BTC/USD at 1m (Kraken serves only its newest 720
candles, so it cannot give a month of 1m), and Binance's 1h, 4h and 1d. Then it times the
composite's SQL for the month partition (first build, then reruns that change nothing) and
the consistency check per timeframe. Targets: <= 2 s per composite partition, <= 1 s for
the consistency check of the market-month.

    python bench/composite.py      # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import asyncio
import statistics
import time
import warnings
from datetime import date

from common import scratch_database, simulator  # bench/, on sys.path as a script

from market_data.domain.composite import CompositeMarket, Source
from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import ExchangeSettings, Market
from market_data.exchanges.client import ExchangeClient
from market_data.pipeline.consistency import check_market
from market_data.pipeline.ingest import fetch_markets
from market_data.store.candles import CandleStore
from market_data.store.series import Series

warnings.simplefilter("ignore")
LO, HI = 1_793_491_200_000, 1_796_083_200_000  # November 2026
SOURCES = [Source("binance", "BTC-USDT-SPOT"), Source("bitfinex", "BTC-USD-SPOT"),
           Source("coinbase", "BTC-USD-SPOT")]  # fmt: skip
REPEATS = 5


async def fetch(url: str, source: Source, timeframe: str, store: CandleStore) -> int:
    base = url if source.exchange == "binance" else f"{url}/{source.exchange}"
    client = ExchangeClient.of(ExchangeSettings(source.exchange, base))
    market = Market(
        source.exchange, parse_symbol(source.symbol), Timeframe.parse(timeframe), date(2026, 11, 1)
    )
    try:
        fetched = await fetch_markets(client, store, {market: [(LO, HI)]})
        return fetched.markets[market.key].present
    finally:
        await client.close()


def main() -> None:
    with (
        simulator("2026-12-01T00:00:00+00:00") as url,
        scratch_database("md_bench_composite") as db,
    ):
        store = CandleStore(db)
        for source in SOURCES:
            n = asyncio.run(fetch(url, source, "1m", store))
            print(f"{source.exchange} {source.symbol} 1m: {n} candles")
        for tf in ("1h", "4h", "1d"):
            asyncio.run(fetch(url, SOURCES[0], tf, store))
        market = CompositeMarket("BTC-USD-SPOT", Timeframe.parse("1m"))

        started = time.perf_counter()
        first = store.composite.build(market, SOURCES, LO, HI, 2)
        built = time.perf_counter() - started
        reruns = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            again = store.composite.build(market, SOURCES, LO, HI, 2)
            reruns.append(time.perf_counter() - started)
            assert again.rows_changed == 0
        print(f"composite of 3 exchanges x November of 1m: {first.emitted} timestamps, "
              f"first build {built:.2f} s ({first.rows_changed} rows), rerun median "
              f"{statistics.median(reruns):.2f} s (0 rows changed); target <= 2 s")  # fmt: skip
        started = time.perf_counter()
        divergent = store.composite.divergences(market, SOURCES, LO, HI, 1.0)
        print(f"divergence query: {time.perf_counter() - started:.2f} s, {len(divergent)} found")

        totals = []
        for _ in range(REPEATS):
            per_tf = {}
            for tf in ("1h", "4h", "1d"):
                started = time.perf_counter()
                found = check_market(store, Series("binance", "BTC-USDT-SPOT", tf), LO, HI)
                per_tf[tf] = (time.perf_counter() - started, found)
            totals.append(sum(s for s, _ in per_tf.values()))
        figures = ", ".join(
            f"{tf} {s * 1000:.0f} ms ({f.compared} compared, {len(f.mismatches)} mismatches)"
            for tf, (s, f) in per_tf.items()
            if f is not None
        )
        print(f"consistent_timeframes over the market-month: {figures}; all three "
              f"{statistics.median(totals):.2f} s (median of {REPEATS}); target <= 1 s")  # fmt: skip
        store.dispose()


if __name__ == "__main__":
    main()
