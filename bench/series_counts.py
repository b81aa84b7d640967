"""What the per-series counts (candle_series, sql/010) cost the writes, and what they save
the status report.

Writes: a year of 1m of one market (525,600 candles in pages of 1,000, batches of 16
pages as a run writes them), into a fresh series each time, through the store's own write
path, with the counting triggers on and off (ALTER TABLE .. DISABLE TRIGGER), alternating,
REPEAT times each: PostgreSQL's COPY path (never-fetched windows) and its merge path, and
SQLite's upsert.

Status: SERIES series x PER_SERIES 1m candles loaded with generate_series (10^7 by
default), then the status report's per-series rows, first and last candle read both ways:
counting the candle table (as before sql/010) and from candle_series.

    python bench/series_counts.py [SERIES PER_SERIES]   # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from itertools import cycle

import numpy as np
import sqlalchemy as sa
from common import scratch_database  # bench/, on sys.path when run as a script

from market_data.domain.candles import CandlePage
from market_data.store.candles import CandleStore, series_stats
from market_data.store.schema import SQL_DIR, statements
from market_data.store.series import Series

REPEAT = 3
YEAR, PAGE, BATCH = 525_600, 1_000, 16
START = 1_735_689_600_000  # 2025-01-01
MIN = 60_000
TRIGGERS = ("candles_added",)  # sql/018: the series and month counts


def pages(symbol: str) -> list[tuple[Series, CandlePage]]:
    series = Series("binance", symbol, "1m")
    out = []
    for lo in range(0, YEAR, PAGE):
        ts = START + np.arange(lo, min(lo + PAGE, YEAR), dtype=np.int64) * MIN
        values = np.tile([1.0, 2.0, 0.5, 1.5, 3.0], (len(ts), 1))
        out.append(
            (series, CandlePage(f"{symbol}:1m", MIN, int(ts[0]), int(ts[-1]) + MIN, ts, values))
        )
    return out


def write_year(store: CandleStore, symbol: str, new: bool) -> float:
    todo = pages(symbol)
    started = time.perf_counter()
    for i in range(0, len(todo), BATCH):
        store.write_pages(todo[i : i + BATCH], new=new)
    return time.perf_counter() - started


def set_triggers(store: CandleStore, on: bool) -> None:
    if store.dialect == "sqlite":  # SQLite cannot disable a trigger: drop it, make it again
        with store.engine.begin() as conn:
            if on:
                conn.exec_driver_sql(sqlite_trigger())
            else:
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS candle_series_added")
        return
    verb = "ENABLE" if on else "DISABLE"
    with store.engine.begin() as conn:
        for name in TRIGGERS:
            conn.exec_driver_sql(f"ALTER TABLE candles {verb} TRIGGER {name}")


def sqlite_trigger() -> str:
    """sql/011's SQLite trigger on insert, as the migration made it."""
    text = (SQL_DIR / "011_candle_series_kept.sqlite.sql").read_text()
    return next(s for s in statements(text) if "candle_series_added AFTER" in s)


def writes(store: CandleStore, label: str, new: bool, repeat: int) -> None:
    times: dict[bool, list[float]] = {True: [], False: []}
    for n, on in enumerate([True, False] * repeat):  # alternating
        set_triggers(store, on)
        times[on].append(write_year(store, f"W{n}-{int(new)}-USDT-SPOT", new))
    set_triggers(store, True)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"| {label} | {off:.2f} | {on:.2f} | {on / off:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in times[True])} / {', '.join(f'{t:.2f}' for t in times[False])} |")  # fmt: skip


def status(url: str, n_series: int, per_series: int) -> None:
    store = CandleStore(url)
    t0 = time.perf_counter()
    with store.engine.begin() as conn:
        for i in range(n_series):
            conn.execute(
                sa.text(
                    "INSERT INTO candles SELECT 'binance', :s, '1m', :start + g * 60000, 1, 2, 0.5, 1.5, 3 "
                    "FROM generate_series(CAST(0 AS BIGINT), :n - 1) AS g"
                ),
                {"s": f"S{i}-USDT-SPOT", "start": START, "n": per_series},
            )
    loaded = time.perf_counter() - t0
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE candles"))  # as autovacuum would, after a bulk load
        size = conn.execute(sa.text("SELECT pg_total_relation_size('candles')")).scalar()
    scan = sa.text(
        "SELECT symbol, timeframe, count(*), min(ts), max(ts) FROM candles "
        "WHERE exchange = 'binance' GROUP BY symbol, timeframe"
    )
    counted: list[float] = []
    kept: list[float] = []
    for way in cycle(("scan", "kept")):
        if len(kept) == REPEAT:
            break
        started = time.perf_counter()
        if way == "scan":
            with store.engine.connect() as conn:
                expect = {(s, tf): (n, lo, hi) for s, tf, n, lo, hi in conn.execute(scan)}
            counted.append(time.perf_counter() - started)
        else:
            got = series_stats(store, "binance")
            kept.append(time.perf_counter() - started)
            assert got == expect, "candle_series disagrees with the candle table"
    total = n_series * per_series
    print(f"\n{n_series} series x {per_series:,} candles = {total:,} rows loaded in {loaded:.0f} s "
          f"(with the triggers), table + indexes {size / 1e9:.2f} GB")  # fmt: skip
    print("| status rows per series | median s | runs |\n| --- | --- | --- |")
    print(f"| counting candles (before sql/010) | {statistics.median(counted):.3f} | "
          f"{', '.join(f'{t:.3f}' for t in counted)} |")  # fmt: skip
    print(
        f"| candle_series | {statistics.median(kept):.4f} | {', '.join(f'{t:.4f}' for t in kept)} |"
    )
    store.dispose()


def main() -> None:
    n_series, per_series = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (20, 500_000)
    print(
        "| write a year of 1m (525,600 candles) | triggers off, median s | on | on/off | runs on / off |"
    )
    print("| --- | --- | --- | --- | --- |")
    with scratch_database("md_bench_series") as url:
        store = CandleStore(url)
        writes(store, "PostgreSQL COPY (never-fetched windows)", True, REPEAT)
        writes(store, "PostgreSQL merge (temporary table + upsert)", False, REPEAT)
        store.dispose()
    with tempfile.TemporaryDirectory() as tmp:
        store = CandleStore(f"sqlite:///{tmp}/candles.sqlite")
        writes(store, "SQLite upsert", False, 1)
        store.dispose()
    with scratch_database("md_bench_series") as url:
        status(url, n_series, per_series)


if __name__ == "__main__":
    main()
