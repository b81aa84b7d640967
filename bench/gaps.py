"""Gap detection over 10 million stored candles in PostgreSQL.

20 series x 500,000 1m candles (about 347 days each), one candle in 5,000 missing, built
with generate_series in a fresh database. Prints the time of the gap check for single
month partitions (the asset check's work: detection + recording) and of a full sweep of
all history (the daily sweep's work). Targets: <= 100 ms per partition, <= 10 s per sweep.

    python bench/gaps.py            # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import statistics
import time
from datetime import date

import sqlalchemy as sa
from common import scratch_database  # bench/, on sys.path when run as a script

from market_data.domain.expected import ALL_TIME
from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import ExchangeSettings, GapSettings, Market
from market_data.pipeline.gaps import detect
from market_data.store.candles import CandleStore

SERIES, PER_SERIES, EVERY = 20, 500_000, 5_000
START = 1_735_689_600_000  # 2025-01-01
MONTH = 30 * 86_400_000


def main() -> None:
    with scratch_database("md_bench_gaps") as url:
        _run(url)


def _run(url: str) -> None:
    store = CandleStore(url)
    t0 = time.perf_counter()
    with store.engine.begin() as conn:
        for i in range(SERIES):
            params = {"s": f"B{i}-USDT-SPOT", "start": START, "n": PER_SERIES, "every": EVERY}
            conn.execute(
                sa.text(
                    "INSERT INTO candles SELECT 'binance', :s, '1m', :start + g * 60000, 1, 2, 0.5, 1.5, 3 "
                    "FROM generate_series(CAST(0 AS BIGINT), :n - 1) AS g WHERE g % :every <> 17"
                ),
                params,
            )
            conn.execute(
                sa.text(
                    "INSERT INTO fetch_coverage VALUES ('binance', :s, '1m', :start, :start + CAST(:n AS BIGINT) * 60000, 0, 0)"
                ),
                params,
            )
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE candles"))  # as autovacuum would, after a bulk load
    store.gaps.save_clock("binance", START + PER_SERIES * 60_000)
    with store.engine.connect() as conn:
        total = conn.execute(sa.text("SELECT COUNT(*) FROM candles")).scalar()
    print(f"loaded {total:,} candles in {time.perf_counter() - t0:.1f}s")
    settings = GapSettings()
    binance = ExchangeSettings("binance")
    markets = [
        Market("binance", parse_symbol(f"B{i}-USDT-SPOT"), Timeframe.parse("1m"), date(2025, 1, 1))
        for i in range(SERIES)
    ]
    times = []
    for month in range(11):
        lo = START + month * MONTH
        t = time.perf_counter()
        found = detect(store, binance, markets[month % SERIES], [(lo, lo + MONTH)], settings)
        times.append(time.perf_counter() - t)
    print(f"partition check (one month of 1m, {len(found.open)} gaps): median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms  (target <= 100 ms)")  # fmt: skip
    t = time.perf_counter()
    gaps = sum(len(detect(store, binance, m, ALL_TIME, settings).open) for m in markets)
    sweep = time.perf_counter() - t
    print(
        f"full sweep ({SERIES} series, {total:,} candles, {gaps} gaps): {sweep:.1f} s  (target <= 10 s)"
    )
    store.dispose()


if __name__ == "__main__":
    main()
