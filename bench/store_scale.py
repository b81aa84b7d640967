"""The candle store at 10^7 and 10^8 candles (issue 25): bytes per candle, the COPY rate,
and every query the product runs on candles, each with its plan, at each size.

The store grows in one PostgreSQL database of its own: series of a year of 1m (2025,
525,600 candles each: perpetual-like names) loaded with generate_series through the
schema's triggers (candle_series, candle_months), until the total reaches each size in
turn. Every series misses the same three exchange-wide outages (30, 45 and 10 minutes in
March, August and November), as Binance's maintenance windows do: 3 of its 12 months are
not whole. One market (SYM0000) is on a second exchange too (the composite's sources) and
has its 1h series (built from its 1m in SQL: the consistency check's subject). After each
load: VACUUM ANALYZE (as autovacuum would), then, through the product's own functions:

- bytes per candle: the candle table with its primary key, over the candles stored;
- COPY: a month of 1m of 4 new series, written as a run writes never-fetched windows
  (store.write_pages(new=True), pages of 1,000, batches of 16);
- the gap check (GapStore.find) of a whole month, a month with an outage, a whole year
  (a year partition's check), the outages not yet recorded;
- the daily sweep over every series' year (find, then record; max_attempts 0, so an empty
  hole is settled as exchange_empty the first time it is seen): the first (the outages
  not yet known) and a later one (settled), against the same read the way it was before
  sql/013 (one window query over each series' history), whose holes it must equal;
- status: the per-series rows and the gap totals of an exchange;
- the composite of one month of SYM0000 over its two exchanges (CompositeStore.build);
- the consistency check of one month of SYM0000 1h against its 1m (check_market).

Timings are medians of REPEAT runs with nothing logged; then each query once more with
PostgreSQL's auto_explain (EXPLAIN ANALYZE, buffers, sent back as notices) for its plan,
whose nodes are printed in one line each.

Past the last size: each time at the last size over the same at the first (COPY: the
rate at the first over the rate at the last; the sweeps per series swept), 1.00 where a
figure does not grow with the table.

    python bench/store_scale.py [SIZE ...]   # default 10000000 100000000; DATABASE_URL, else 127.0.0.1:5432
    python bench/store_scale.py --sqlite [SIZE ...]   # the embedded store; default 10^6, 10^7, 2x10^7

With --sqlite: the same series written into a SQLite file through the store's write path
(its per-row upsert and triggers), and at each size the file's bytes per candle, the write
rate of the last series, the gap checks, status and the sweeps per series.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from common import scratch_database  # bench/, on sys.path when run as a script

from market_data.domain.calendar import month_bounds, year_bounds
from market_data.domain.candles import CandlePage
from market_data.domain.composite import CompositeMarket, Source
from market_data.domain.timeframes import Timeframe
from market_data.pipeline.consistency import check_market
from market_data.store.candles import CandleStore, series_stats
from market_data.store.schema import SQL_DIR, statements
from market_data.store.series import Series

YEAR = 525_600
MIN, HOUR = 60_000, 3_600_000
START = year_bounds("2025")[0]
OUTAGES = [  # (start, minutes): every series misses these
    (month_bounds("2025-03-01")[0] + 14 * 86_400_000 + 2 * HOUR, 30),
    (month_bounds("2025-08-01")[0] + 9 * 86_400_000 + 6 * HOUR, 45),
    (month_bounds("2025-11-01")[0] + 20 * 86_400_000, 10),
]
REPEAT = 5
PAGE, BATCH = 1_000, 16


def name(i: int) -> str:
    return f"SYM{i:04d}-USDT-PERP"


def load(store: CandleStore, first: int, last: int) -> float:
    """Series first..last-1: a year of 1m each, without the outages."""
    insert = sa.text(
        "INSERT INTO candles SELECT :ex, :s, '1m', :start + g * 60000, "
        "100 + g % 997 * 0.01, 101 + g % 991 * 0.01, 99 - g % 983 * 0.01, 100 + g % 977 * 0.01, "
        "g % 1009 * 0.5 FROM generate_series(CAST(0 AS BIGINT), :last) AS g "
        "WHERE NOT (g >= :a0 AND g < :b0) AND NOT (g >= :a1 AND g < :b1) "
        "AND NOT (g >= :a2 AND g < :b2)"
    )
    outages = {"start": START, "last": YEAR - 1}
    for k, (t, n) in enumerate(OUTAGES):
        outages |= {f"a{k}": (t - START) // MIN, f"b{k}": (t - START) // MIN + n}
    fetched = sa.text(  # the year was fetched: the outages are empty at the exchange
        "INSERT INTO fetch_coverage (exchange, symbol, timeframe, start_ts, end_ts, candles, "
        "fetched_at, source) VALUES ('binance', :s, '1m', :lo, :hi, :n, :lo, 'rest')"
    )
    year = {"lo": START, "hi": START + YEAR * MIN, "n": YEAR - sum(n for _, n in OUTAGES)}
    started = time.perf_counter()
    for i in range(first, last):
        with store.engine.begin() as conn:
            conn.execute(insert, {"ex": "binance", "s": name(i), **outages})
            conn.execute(fetched, {"s": name(i), **year})
            if i == 0:  # the composite's second source, and the 1h series from the 1m
                conn.execute(insert, {"ex": "bybit", "s": name(i), **outages})
                conn.execute(
                    sa.text(
                        "INSERT INTO candles SELECT exchange, symbol, '1h', ts - ts % 3600000, "
                        "(array_agg(open ORDER BY ts))[1], max(high), min(low), "
                        "(array_agg(close ORDER BY ts DESC))[1], sum(volume) FROM candles "
                        "WHERE exchange = 'binance' AND symbol = :s AND timeframe = '1m' "
                        "GROUP BY exchange, symbol, ts - ts % 3600000"
                    ),
                    {"s": name(i)},
                )
    return time.perf_counter() - started


def stored(store: CandleStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT sum(candles) FROM candle_series")).scalar() or 0)


def vacuum(store: CandleStore) -> dict[str, int]:
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        sizes = conn.execute(
            sa.text(
                "SELECT pg_relation_size('candles'), pg_indexes_size('candles'), "
                "pg_total_relation_size('candle_months'), pg_total_relation_size('candle_series')"
            )
        ).one()
    return dict(zip(("heap", "index", "months", "series"), (int(s) for s in sizes), strict=True))


def month_pages(symbol: str, month: str) -> list[tuple[Series, CandlePage]]:
    lo, hi = month_bounds(month)
    series = Series("binance", symbol, "1m")
    out = []
    for a in range(lo, hi, PAGE * MIN):
        ts = np.arange(a, min(a + PAGE * MIN, hi), MIN, dtype=np.int64)
        values = np.tile([100.0, 101.0, 99.0, 100.5, 3.0], (len(ts), 1))
        out.append((series, CandlePage(f"{symbol}:1m", MIN, a, int(ts[-1]) + MIN, ts, values)))
    return out


def copy_rate(store: CandleStore, tag: str) -> float:
    """Candles a second: a month of 1m of 4 new series through write_pages(new=True)."""
    todo = [p for k in range(4) for p in month_pages(f"NEW{tag}{k}-USDT-PERP", "2025-06-01")]
    started = time.perf_counter()
    for i in range(0, len(todo), BATCH):
        store.write_pages(todo[i : i + BATCH], new=True)
    return sum(len(p) for _, p in todo) / (time.perf_counter() - started)


def old_find(store: CandleStore, series: Series, lo: int, hi: int) -> Any:
    """The gap check's read before sql/013: one window query over all of [lo, hi)."""
    return store.gaps._find(series, MIN, lo, hi)  # (the bench compares the two)


def queries(store: CandleStore, n_series: int) -> dict[str, Callable[[], Any]]:
    """The product's queries at one size (on SQLite, without the composite and consistency
    check, whose second exchange and 1h series the SQLite load does not make)."""
    rng = np.random.default_rng(7)
    pick = lambda: Series("binance", name(int(rng.integers(n_series))), "1m")  # noqa: E731
    whole, broken, year = (
        month_bounds("2025-06-01"),
        month_bounds("2025-08-01"),
        year_bounds("2025"),
    )
    s0 = name(0)
    market = CompositeMarket(s0, Timeframe.parse("1m"))
    sources = [Source("binance", s0), Source("bybit", s0)]
    postgres_only = {
        "composite, a month of 2 sources": lambda: store.composite.build(
            market, sources, *whole, needed=1
        ),
        "consistency, a month of 1h vs 1m": lambda: check_market(
            store, Series("binance", s0, "1h"), *whole
        ),
    }
    return {
        "gap check, a whole month": lambda: store.gaps.find(pick(), MIN, *whole),
        "gap check, a month with an outage": lambda: store.gaps.find(pick(), MIN, *broken),
        "gap check, a year (a partition)": lambda: store.gaps.find(pick(), MIN, *year),
        "status: series rows + gap totals": lambda: (
            series_stats(store, "binance"),
            store.gaps.totals("binance"),
        ),
        **(postgres_only if store.dialect == "postgresql" else {}),
    }


def timings(store: CandleStore, n_series: int) -> dict[str, float]:
    out = {}
    for label, run in queries(store, n_series).items():
        runs = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            run()
            runs.append(time.perf_counter() - started)
        out[label] = statistics.median(runs)
    return out


def migration(store: CandleStore) -> float:
    """Seconds of sql/015 (an older store's months counted, in the database) on this store:
    candle_months emptied, then the file's statement as `market-data db init` runs it."""
    text = (SQL_DIR / "015_candle_months_counted.postgresql.sql").read_text()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM candle_months"))
        started = time.perf_counter()
        for stmt in statements(text):
            conn.execute(sa.text(stmt))
        return time.perf_counter() - started


def forget_gaps(store: CandleStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM candle_gaps"))


def print_plans(notes: list[str]) -> None:
    for note in notes:
        if "plan:" in note:
            print(f"    {brief(note)}")


def sweeps_labels() -> tuple[str, ...]:
    return (
        "sweep read before sql/013 (one window query a series)",
        "sweep, the outages not yet known",
        "sweep, the outages settled",
    )


def sweeps(store: CandleStore, n_series: int, old: bool = True) -> dict[str, float]:
    """The daily sweep over every series' year, as the sweep job does it (find, then record
    what it found; max_attempts 0: an empty hole is settled the first time it is seen):
    read the old way (one window query per series), then the first sweep (the outages not
    yet known) and a later one (the outages settled), from a store with no gap recorded.
    The first sweep's holes must equal the old way's."""
    forget_gaps(store)
    everyone = [Series("binance", name(i), "1m") for i in range(n_series)]
    year = year_bounds("2025")
    out = {}
    first, later, before = sweeps_labels()[1], sweeps_labels()[2], sweeps_labels()[0]
    started = time.perf_counter()
    read = [old_find(store, s, *year) for s in everyone] if old else None
    out[before] = time.perf_counter() - started
    for label in (first, later):
        started = time.perf_counter()
        found = []
        for s in everyone:
            holes = store.gaps.find(s, MIN, *year)
            store.gaps.record(s, *year, holes, max_attempts=0)
            found.append(holes)
        out[label] = time.perf_counter() - started
        assert read is None or found == read, "the sweep's holes differ from the window query's"
    return out


class Plans:
    """A store whose every statement's plan comes back as a notice (auto_explain)."""

    def __init__(self, url: str) -> None:
        self.notes: list[str] = []
        self.store = CandleStore(url, create=False)
        sa.event.listen(self.store.engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_conn: Any, _: object) -> None:
        dbapi_conn.add_notice_handler(lambda d: self.notes.append(d.message_primary or ""))
        dbapi_conn.autocommit = True
        for stmt in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_timing = off",
            "SET auto_explain.log_level = notice",
            "SET client_min_messages = notice",
        ):
            dbapi_conn.execute(stmt)
        dbapi_conn.autocommit = False

    def of(self, run: Callable[[], Any]) -> list[str]:
        self.notes.clear()
        run()
        return list(self.notes)


def brief(plan: str) -> str:
    """A plan's nodes, one line: 'Index Only Scan using candles_pkey (rows=43170) > ...'."""
    nodes = []
    for line in plan.splitlines():
        m = re.match(
            r"\s*(?:->\s*)?([A-Z][A-Za-z ]+?(?: using \w+)?(?: on \w+)?(?: \w+)?)\s+\(cost=.*?"
            r"\(actual (?:time=\S+ )?rows=(\d+)",
            line,
        )
        if m:
            nodes.append(f"{m.group(1)} ({m.group(2)} rows)")
        hit = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", line)
        if hit and nodes and "buf" not in nodes[-1]:
            nodes[-1] = nodes[-1][:-1] + f", {int(hit.group(1)) + int(hit.group(2) or 0)} buf)"
    return " > ".join(nodes)


def year_pages(symbol: str) -> list[tuple[Series, CandlePage]]:
    """A year of 1m without the outages, in pages of 1,000 minutes, as a run writes them."""
    series = Series("binance", symbol, "1m")
    out = []
    for a in range(START, START + YEAR * MIN, PAGE * MIN):
        ts = np.arange(a, min(a + PAGE * MIN, START + YEAR * MIN), MIN, dtype=np.int64)
        window = (a, int(ts[-1]) + MIN)
        for t, n in OUTAGES:
            ts = ts[(ts < t) | (ts >= t + n * MIN)]
        values = np.tile([100.0, 101.0, 99.0, 100.5, 3.0], (len(ts), 1))
        out.append((series, CandlePage(f"{symbol}:1m", MIN, *window, ts, values)))
    return out


def sqlite_scale(sizes: list[int]) -> None:
    """The embedded store: the same series written through the store's own write path (the
    SQLite upsert), then the gap check, the sweeps and status, at each size."""
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "candles.sqlite"
        store = CandleStore(f"sqlite:///{path}")
        loaded = 0
        print("| candles | bytes per candle | write, candles/s | gap check: month with an outage, "
              "ms | a year, ms | status, ms | sweep a series: first, s | settled, s |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for size in sizes:
            target = -(-size // YEAR)
            for i in range(loaded, target):
                todo = year_pages(name(i))
                started = time.perf_counter()
                for k in range(0, len(todo), BATCH):
                    store.write_pages(todo[k : k + BATCH])
                rate = sum(len(p) for _, p in todo) / (time.perf_counter() - started)
            loaded = target
            n = stored(store)
            forget_gaps(store)
            f = timings(store, loaded)
            swept = sweeps(store, loaded, old=False)
            print(
                f"| {n:,} | {path.stat().st_size / n:.0f} | {rate:,.0f} | "
                f"{f['gap check, a month with an outage'] * 1000:.0f} | "
                f"{f['gap check, a year (a partition)'] * 1000:.0f} | "
                f"{f['status: series rows + gap totals'] * 1000:.1f} | "
                f"{swept[sweeps_labels()[1]] / loaded:.3f} | {swept[sweeps_labels()[2]] / loaded:.3f} |",
                flush=True,
            )
        store.dispose()


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--sqlite"]:
        sqlite_scale([int(a) for a in args[1:]] or [1_000_000, 10_000_000, 20_000_000])
        return
    sizes = [int(a) for a in args] or [10_000_000, 100_000_000]
    with scratch_database("store_scale") as url:
        store = CandleStore(url)
        plans = Plans(url)
        loaded = 0
        results: list[tuple[int, dict[str, Any]]] = []
        for size in sizes:
            target = -(-size // YEAR)  # series of a year each
            took = load(store, loaded, target)
            print(f"loaded series {loaded}..{target - 1} in {took:.0f} s", flush=True)
            loaded = target
            sizes_now = vacuum(store)
            n = stored(store)
            figures: dict[str, Any] = {"candles": n, "n_series": loaded, **sizes_now}
            figures["copy"] = copy_rate(store, str(size))
            print(f"\n## {n:,} candles ({loaded} series of 1m + SYM0000 on bybit and at 1h)")
            print(
                f"bytes per candle: {(sizes_now['heap'] + sizes_now['index']) / n:.1f} "
                f"(heap {sizes_now['heap'] / n:.1f}, primary key {sizes_now['index'] / n:.1f}); "
                f"candle_months {sizes_now['months'] / 1e6:.2f} MB, "
                f"candle_series {sizes_now['series'] / 1e6:.2f} MB"
            )
            print(f"COPY, 4 new series x a month of 1m: {figures['copy']:,.0f} candles/s")
            forget_gaps(store)  # the gap checks below: the outages not yet recorded
            figures |= timings(store, loaded)
            for label, run in queries(plans.store, loaded).items():
                seen = plans.of(lambda run=run: run())  # the same functions, on the plan store
                print(f"- {label}: {figures[label] * 1000:.1f} ms")
                print_plans(seen)
            figures |= sweeps(store, loaded)
            for label in sweeps_labels():
                print(f"- {label}: {figures[label]:.2f} s ({loaded} series)")
            print("- gap check, a year, its outages settled (plan):")
            one = Series("binance", name(1), "1m")
            print_plans(plans.of(partial(plans.store.gaps.find, one, MIN, *year_bounds("2025"))))
            figures["migration"] = migration(store)  # last: it rewrites candle_months
            print(
                f"sql/015 (an older store's months counted): {figures['migration']:.1f} s, "
                f"{n / figures['migration'] / 1e6:.2f} million candles/s"
            )
            results.append((size, figures))
            sys.stdout.flush()
        if len(results) > 1:
            (a, fa), (b, fb) = results[0], results[-1]
            print(
                f"\n## {fb['candles'] / fa['candles']:.1f}x the candles: time at {b:,} / at {a:,}"
            )
            for label in ("copy", *queries(store, loaded)):
                ratio = (fa[label] / fb[label]) if label == "copy" else fb[label] / fa[label]
                print(f"- {label}: {ratio:.2f}")
            for label in sweeps_labels():  # per series swept
                ratio = (fb[label] / fb["n_series"]) / (fa[label] / fa["n_series"])
                print(f"- {label}, per series: {ratio:.2f}")
        plans.store.dispose()
        store.dispose()


if __name__ == "__main__":
    main()
