"""The store on SQLite and PostgreSQL: schema files, upserts, coverage."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import ccxt
import numpy as np
import pytest
import sqlalchemy as sa

from market_data.domain.calendar import day_ms, month_bounds
from market_data.domain.candles import CandlePage
from market_data.domain.gaps import EMPTY, MISSING, Hole
from market_data.domain.watchlist import parse_watchlist
from market_data.pipeline.status import collect_status
from market_data.store.candles import SQLITE_MAX_CANDLES, CandleStore, series_stats
from market_data.store.schema import apply_schema, drop_all, migration_files, statements
from market_data.store.series import Series
from market_data.store.tables import candle_months, fetch_coverage, metadata
from market_data_tests.conftest import throwaway_cluster

SERIES = Series("binance", "BTC-USDT-SPOT", "1m")
MIN, HOUR = 60_000, 3_600_000


@pytest.fixture
def store(store_url: str) -> CandleStore:
    return CandleStore(store_url)


def page(
    n: int, start: int = 0, price: float = 100.0, window: tuple[int, int] | None = None
) -> CandlePage:
    """``n`` 1m candles from ``start``, covering ``window`` (default: just those candles)."""
    ts = np.arange(start, start + n * 60_000, 60_000, dtype=np.int64)
    values = np.tile([price, price + 1, price - 1, price, 2.5], (n, 1)).astype(np.float64)
    lo, hi = window or (start, start + n * 60_000)
    return CandlePage("BTC-USDT-SPOT:1m", 60_000, lo, hi, ts, values)


def test_schema_files_apply_once_and_match_the_table_objects(store: CandleStore) -> None:
    assert apply_schema(store.engine) == []  # the constructor applied them already
    inspector = sa.inspect(store.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == set(table.columns.keys()), table.name
        assert set(inspector.get_pk_constraint(table.name)["constrained_columns"]) == {
            c.name for c in table.primary_key
        }


def test_upsert_is_idempotent_and_counts_only_changes(store: CandleStore) -> None:
    assert store.write_page(SERIES, page(1500)) == 1500
    assert store.write_page(SERIES, page(1500)) == 0
    changed = page(10, price=101.0)
    assert store.write_page(SERIES, changed) == 10
    stored = store.read_candles(SERIES, 0, 2**62)
    assert (
        len(stored) == 1500
        and stored["close"].iloc[0] == 101.0
        and stored["close"].iloc[10] == 100.0
    )
    assert store.candle_stats(SERIES, 0, 600_000) == (10, 0, 540_000)
    assert store.last_ts(SERIES) == 1499 * 60_000
    others = [replace(SERIES, symbol=f"X{i:03d}-USDT-SPOT") for i in range(150)]  # none stored
    newest = store.last_ts_of([*others[:120], SERIES, *others[120:]])  # over two statements
    assert newest[SERIES] == 1499 * 60_000 and len(newest) == 151
    assert all(newest[s] is None for s in others)


def test_coverage_is_recorded_with_its_page_and_merged(store: CandleStore) -> None:
    store.write_page(SERIES, page(5))
    store.write_page(SERIES, page(0, window=(300_000, 600_000)))  # fetched, empty at the exchange
    store.write_page(SERIES, page(1, start=900_000))
    assert store.covered(SERIES, 0, 10**9) == [(0, 600_000), (900_000, 960_000)]
    assert store.covered(Series("binance", "ETH-USDT-SPOT", "1m"), 0, 10**9) == []


def test_reset_drops_everything(store: CandleStore) -> None:
    store.write_page(SERIES, page(3))
    drop_all(store.engine)
    assert apply_schema(store.engine)  # applied again from scratch
    assert store.candle_stats(SERIES, 0, 2**62) == (0, None, None)


def test_statements_skip_comments() -> None:
    assert statements(
        "-- a; comment\nCREATE TABLE a (x INT);\n\n-- b\nCREATE TABLE b (y INT);"
    ) == [
        "CREATE TABLE a (x INT)",
        "CREATE TABLE b (y INT)",
    ]


def test_statements_keep_function_and_trigger_bodies_whole() -> None:
    pg = "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN x; y; END $$;\nSELECT 1;"
    lite = "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); END;\nSELECT 1;"
    assert statements(pg) == [
        "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN x; y; END $$",
        "SELECT 1",
    ]
    assert statements(lite) == [
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); END",
        "SELECT 1",
    ]


def _counted(store: CandleStore) -> dict[tuple[str, str], tuple[int, int, int]]:
    """What series_stats must say: the candle table counted."""
    query = sa.text(
        "SELECT symbol, timeframe, count(*), min(ts), max(ts) FROM candles "
        "WHERE exchange = 'binance' GROUP BY symbol, timeframe"
    )
    with store.engine.connect() as conn:
        return {(s, tf): (n, lo, hi) for s, tf, n, lo, hi in conn.execute(query)}


@pytest.mark.parametrize("new", [False, True])
def test_the_series_counts_follow_every_insert_update_and_delete(
    store: CandleStore, new: bool
) -> None:
    """The status report's rows, first and last candle per series come from candle_series,
    which the database keeps: they equal a count of the candles after writes (COPY or
    upsert), re-fetches that change candles, and deletions by hand of a series' middle,
    first and last candles."""
    eth = Series("binance", "ETH-USDT-SPOT", "1m")
    store.write_pages([(SERIES, page(100)), (eth, page(50, start=6_000_000))], new=new)
    store.write_page(SERIES, page(100, price=101.0))  # 100 candles changed: none added
    store.write_page(SERIES, page(20, start=99 * 60_000))  # 19 added after the last
    store.write_closed([(eth, page(1, start=9_000_000))])  # the live service's path
    assert (
        series_stats(store, "binance")
        == _counted(store)
        == {
            ("BTC-USDT-SPOT", "1m"): (119, 0, 118 * 60_000),
            ("ETH-USDT-SPOT", "1m"): (51, 6_000_000, 9_000_000),
        }
    )
    with store.engine.begin() as conn:
        for lo, hi in ((10, 20), (0, 1), (118, 119)):  # the middle, the first, the last
            conn.execute(
                sa.text("DELETE FROM candles WHERE symbol = 'BTC-USDT-SPOT' AND ts >= :lo AND ts < :hi"),
                {"lo": lo * 60_000, "hi": hi * 60_000},
            )  # fmt: skip
        conn.execute(sa.text("DELETE FROM candles WHERE symbol = 'ETH-USDT-SPOT'"))
    assert (
        series_stats(store, "binance")
        == _counted(store)
        == {
            ("BTC-USDT-SPOT", "1m"): (107, 60_000, 117 * 60_000),
        }
    )
    store.write_page(eth, page(2, start=60_000))  # a series emptied, then written again
    assert series_stats(store, "binance")[("ETH-USDT-SPOT", "1m")] == (2, 60_000, 120_000)
    if store.dialect == "postgresql":  # (SQLite has no TRUNCATE)
        with store.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE candles"))
        assert series_stats(store, "binance") == {}


def _months(store: CandleStore) -> dict[tuple[str, int], int]:
    """(symbol, month start) -> candles, as candle_months says (months emptied left out)."""
    m = candle_months.c
    query = sa.select(m.symbol, m.month_ts, m.candles).where(m.candles > 0)
    with store.engine.connect() as conn:
        return {(s, int(t)): int(n) for s, t, n in conn.execute(query)}


FEB, MAR = month_bounds("2024-02-01")


@pytest.mark.parametrize("new", [False, True])
def test_the_month_counts_follow_every_insert_update_and_delete(
    store: CandleStore, new: bool
) -> None:
    """candle_months, kept by the database: per series and UTC month, the candles stored,
    across a month's edge, after COPY or upsert, a re-fetch that changes candles, the live
    path and deletions by hand."""
    eth = Series("binance", "ETH-USDT-SPOT", "1m")
    store.write_pages(
        [(SERIES, page(100, start=FEB - 30 * MIN)), (eth, page(5, start=MAR))], new=new
    )
    store.write_page(SERIES, page(100, start=FEB - 30 * MIN, price=101.0))  # changes, adds none
    # the live path: two series and two months in one statement
    store.write_closed([(eth, page(1, start=MAR - MIN)), (SERIES, page(1, start=MAR))])
    assert _months(store) == {
        ("BTC-USDT-SPOT", FEB - 31 * 86_400_000): 30,  # January's last 30 minutes
        ("BTC-USDT-SPOT", FEB): 70,
        ("BTC-USDT-SPOT", MAR): 1,
        ("ETH-USDT-SPOT", FEB): 1,
        ("ETH-USDT-SPOT", MAR): 5,
    }
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM candles WHERE symbol = 'BTC-USDT-SPOT' AND ts >= :lo AND ts < :hi"),
            {"lo": FEB - 10 * MIN, "hi": FEB + 10 * MIN},
        )  # fmt: skip
        conn.execute(
            sa.text("DELETE FROM candles WHERE symbol = 'ETH-USDT-SPOT' AND ts < :t"), {"t": MAR}
        )
    assert _months(store) == {
        ("BTC-USDT-SPOT", FEB - 31 * 86_400_000): 20,
        ("BTC-USDT-SPOT", FEB): 60,
        ("BTC-USDT-SPOT", MAR): 1,
        ("ETH-USDT-SPOT", MAR): 5,
    }
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE candles"))
        assert _months(store) == {}


def test_the_gap_check_skips_whole_months_and_finds_what_the_others_lack(
    store: CandleStore,
) -> None:
    """Three months of 1h; February lacks three hours: the check over a range that begins
    and ends inside months finds exactly those (and only in the range), whether the months
    around are whole or not."""
    h1 = Series("binance", "BTC-USDT-SPOT", "1h")
    jan = FEB - 31 * 86_400_000
    apr = MAR + 31 * 86_400_000
    ts = np.arange(jan, apr, HOUR, dtype=np.int64)
    hole = (FEB + 50 * HOUR, FEB + 53 * HOUR)
    kept = ts[(ts < hole[0]) | (ts >= hole[1])]
    values = np.tile([100.0, 101.0, 99.0, 100.0, 2.5], (len(kept), 1))
    store.write_page(h1, CandlePage("BTC-USDT-SPOT:1h", HOUR, jan, apr, kept, values))
    fetched = store.gaps.find(h1, HOUR, jan + 5 * HOUR, apr - 5 * HOUR)
    assert fetched == [Hole(*hole, EMPTY)]  # fetched, nothing came back
    with store.engine.begin() as conn:  # forget the fetch: the hole is missing
        conn.execute(sa.text("DELETE FROM fetch_coverage"))
    assert store.gaps.find(h1, HOUR, jan + 5 * HOUR, apr - 5 * HOUR) == [Hole(*hole, MISSING)]
    assert store.gaps.find(h1, HOUR, jan, FEB) == []
    assert store.gaps.find(h1, HOUR, FEB + 51 * HOUR, MAR + HOUR) == [
        Hole(FEB + 51 * HOUR, hole[1], MISSING)
    ]
    with store.engine.begin() as conn:  # March no longer whole: the range past its data
        conn.execute(sa.text("DELETE FROM candles WHERE ts >= :t"), {"t": apr - 2 * HOUR})
    assert store.gaps.find(h1, HOUR, FEB, apr + HOUR) == [
        Hole(*hole, MISSING),
        Hole(apr - 2 * HOUR, apr + HOUR, MISSING),
    ]


def test_a_store_made_before_the_series_counts_gets_them_from_its_candles(
    store_url: str, tmp_path: Path
) -> None:
    """sql/010-015 on a store that has candles: the series and their months are counted
    once by the migration, then kept."""
    files = tmp_path / "sql"
    files.mkdir()
    counts = ("010", "011", "012", "013", "014", "015")
    for path in migration_files("sqlite") + migration_files("postgresql"):
        if path.name < counts[0]:
            (files / path.name).write_text(path.read_text())
    old = CandleStore(store_url, create=False)
    drop_all(old.engine)
    apply_schema(old.engine, files)  # the schema as it was before sql/010
    old.write_page(SERIES, page(30, start=60_000))
    assert [f[:3] for f in apply_schema(old.engine)][: len(counts)] == list(counts)
    assert series_stats(old, "binance") == {("BTC-USDT-SPOT", "1m"): (30, 60_000, 30 * 60_000)}
    assert _months(old) == {("BTC-USDT-SPOT", 0): 30}
    old.write_page(SERIES, page(1))
    assert series_stats(old, "binance") == {("BTC-USDT-SPOT", "1m"): (31, 0, 30 * 60_000)}
    assert _months(old) == {("BTC-USDT-SPOT", 0): 31}
    old.dispose()


def test_a_store_with_a_coverage_row_per_close_gets_them_merged_once(
    store_url: str, tmp_path: Path
) -> None:
    """sql/017 on a store the live service wrote a coverage row per close into: each
    unbroken run of one source becomes one row; what is covered and how many candles each
    source gave stay the same; archive files and breaks keep their rows."""
    files = tmp_path / "sql"
    files.mkdir()
    for path in migration_files("sqlite") + migration_files("postgresql"):
        if not path.name.startswith("017"):
            (files / path.name).write_text(path.read_text())
    old = CandleStore(store_url, create=False)
    drop_all(old.engine)
    apply_schema(old.engine, files)  # the schema as it was before sql/017
    eth = replace(SERIES, symbol="ETH-USDT-SPOT")
    rows = [  # (series, start minute, end minute, candles, source, checksum)
        (SERIES, 0, 1000, 1000, None, None),  # a REST page written before sql/009
        (SERIES, 1000, 1003, 3, "rest", None),
        *((SERIES, m, m + 1, 1, "rest", None) for m in range(1003, 1010)),  # live, one each
        (SERIES, 1011, 1012, 1, "rest", None),  # after a missed close
        (SERIES, 1012, 1013, 1, "rest", None),
        (SERIES, 1013, 2013, 1000, "archive", "ab" * 32),  # a file: kept as it is
        (SERIES, 2013, 2014, 1, "rest", None),
        (eth, 0, 1, 1, "trades", None),
        (eth, 1, 2, 0, "trades", None),
        (eth, 2, 3, 1, "rest", None),  # another source
    ]
    written = [
        s.params(
            start_ts=a * MIN, end_ts=b * MIN, candles=n, fetched_at=a, source=src, checksum=sha
        )
        for s, a, b, n, src, sha in rows
    ]
    with old.engine.begin() as conn:
        conn.execute(sa.insert(fetch_coverage), written)
    covered = {s: old.covered(s, 0, 2**62) for s in (SERIES, eth)}
    assert apply_schema(old.engine) == ["017_coverage_runs_merged.sql"]
    c = fetch_coverage.c
    query = sa.select(c.symbol, c.start_ts, c.end_ts, c.candles, c.fetched_at, c.source)
    with old.engine.connect() as conn:
        after = sorted(tuple(r) for r in conn.execute(query.order_by(c.symbol, c.start_ts)))
    assert after == [
        ("BTC-USDT-SPOT", 0, 1010 * MIN, 1010, 1009, "rest"),
        ("BTC-USDT-SPOT", 1011 * MIN, 1013 * MIN, 2, 1012, "rest"),
        ("BTC-USDT-SPOT", 1013 * MIN, 2013 * MIN, 1000, 1013, "archive"),
        ("BTC-USDT-SPOT", 2013 * MIN, 2014 * MIN, 1, 2013, "rest"),
        ("ETH-USDT-SPOT", 0, 2 * MIN, 1, 1, "trades"),
        ("ETH-USDT-SPOT", 2 * MIN, 3 * MIN, 1, 2, "rest"),
    ]
    assert {s: old.covered(s, 0, 2**62) for s in (SERIES, eth)} == covered
    old.dispose()


def test_a_throwaway_cluster_serves_the_store() -> None:
    """The path taken on a machine without a PostgreSQL server: initdb + pg_ctl."""
    with throwaway_cluster() as cluster:
        store = CandleStore(cluster.url)
        assert store.write_page(SERIES, page(3)) == 3
        assert store.read_candles(SERIES, 0, 2**62)["ts"].tolist() == [0, 60_000, 120_000]
        store.dispose()


def test_a_batch_of_pages_of_several_series_is_one_transaction(store: CandleStore) -> None:
    eth = Series("binance", "ETH-USDT-SPOT", "1m")
    written = store.write_pages([(SERIES, page(5)), (eth, page(3)), (SERIES, page(2, 300_000))])
    assert {s: sorted(ts.tolist()) for s, ts in written.items()} == {
        SERIES: [i * 60_000 for i in range(7)],
        eth: [0, 60_000, 120_000],
    }
    assert store.covered(SERIES, 0, 2**62) == [(0, 420_000)]
    assert store.covered(eth, 0, 2**62) == [(0, 180_000)]


def test_live_closes_of_many_series_are_stored_once_a_close_given_twice_as_last_given(
    store: CandleStore,
) -> None:
    # the live writer's batch: one closed candle each of many series; the same close twice
    # in one batch (a stream that sent it again) must not fail the batch (one statement may
    # not change a row twice on PostgreSQL) and keeps the values received last
    many = [replace(SERIES, symbol=f"X{i:04d}-USDT-SPOT") for i in range(1500)]
    store.write_closed([(s, page(1, start=MIN)) for s in many])  # the series exist now
    again = [(s, page(1, start=2 * MIN)) for s in many]
    store.write_closed([*again, (many[7], page(1, start=2 * MIN, price=105.0))])
    counts = series_stats(store, "binance")
    assert len(counts) == 1500 and set(counts.values()) == {(2, MIN, 2 * MIN)}
    assert store.read_candles(many[7], 0, 2**62)["close"].tolist() == [100.0, 105.0]
    assert store.read_candles(many[8], 0, 2**62)["close"].tolist() == [100.0, 100.0]
    assert store.covered(many[7], 0, 2**62) == [(MIN, 3 * MIN)]


def test_a_live_series_keeps_one_coverage_row_per_unbroken_run_of_closes(
    store: CandleStore,
) -> None:
    # a coverage row per close would make fetch_coverage as large as the candles of every
    # series kept live: consecutive closes extend one row; a missed close, a REST page and
    # an archive file (its checksum names one file) each keep their own
    def rows(series: Series) -> list[tuple[int, int, int, str]]:
        c = fetch_coverage.c
        query = sa.select(c.start_ts, c.end_ts, c.candles, c.source)
        with store.engine.connect() as conn:
            found = conn.execute(query.where(series.where(fetch_coverage))).all()
        return sorted((int(a), int(b), int(n), str(src)) for a, b, n, src in found)

    def close(minute: int, price: float = 100.0) -> CandlePage:
        return replace(page(1, start=minute * MIN, price=price), source="stream")

    eth = replace(SERIES, symbol="ETH-USDT-SPOT")
    store.write_page(SERIES, page(3))  # a REST page: 00:00-00:03
    for minute in (3, 4, 5, 7, 8):  # closes; 00:06 missed
        store.write_closed([(SERIES, close(minute)), (eth, close(minute))])
    store.write_closed([(SERIES, close(8, 101.0)), (SERIES, close(9))])  # 00:08 given again
    assert rows(SERIES) == [
        (0, 3 * MIN, 3, "rest"), (3 * MIN, 6 * MIN, 3, "stream"), (7 * MIN, 10 * MIN, 3, "stream")
    ]  # fmt: skip
    assert rows(eth) == [(3 * MIN, 6 * MIN, 3, "stream"), (7 * MIN, 9 * MIN, 2, "stream")]
    assert store.covered(SERIES, 0, 2**62) == [(0, 6 * MIN), (7 * MIN, 10 * MIN)]
    archived = replace(page(2, start=10 * MIN), source="archive", checksum="ab" * 32)
    store.write_pages([(SERIES, archived)])
    store.write_closed([(SERIES, replace(close(12), source="archive", checksum="cd" * 32))])
    assert rows(SERIES)[3:] == [
        (10 * MIN, 12 * MIN, 2, "archive"),
        (12 * MIN, 13 * MIN, 1, "archive"),
    ]
    stored = store.read_candles(SERIES, 0, 2**62)
    assert len(stored) == 12 and stored["close"].iloc[7] == 101.0  # all but 00:06


def test_the_heartbeat_keeps_one_row_per_streamed_market_and_drops_the_unstreamed(
    store: CandleStore,
) -> None:
    # beats after the first write only what changed (thousands of rows at a whole
    # exchange, in one statement on PostgreSQL); a market no longer streamed loses its row
    many = [replace(SERIES, symbol=f"X{i:04d}-USDT-SPOT") for i in range(1200)]
    state = {"exchange": "binance", "host": "h", "pid": 1, "started_at": 0, "heartbeat_at": 0,
             "connections": 2, "connected": 2, "streams": 1200, "exchange_now": 10 * MIN,
             "reconnects": 0, "closes_stored": 0, "latency_p50_ms": None,
             "latency_p99_ms": None, "last_error": None}  # fmt: skip

    def beat(streams: list[Series], last: int, down: tuple[Series, ...] = ()) -> None:
        store.live.beat(state, [(s, 0, last, last + MIN, None, s not in down) for s in streams])

    beat(many, 5 * MIN)
    beat(many[:1000], 5 * MIN)  # 200 unsubscribed
    beat([*many[:999], many[1100]], 6 * MIN, down=(many[3],))  # closes; one back; one down
    rows = store.live.streams("binance")
    assert set(rows) == {f"{s.symbol}:1m" for s in [*many[:999], many[1100]]}
    assert {r.last_close_ts for r in rows.values()} == {6 * MIN}
    assert [k for k, r in rows.items() if not r.connected] == [f"{many[3].symbol}:1m"]
    assert rows[f"{many[0].symbol}:1m"].lag_ms == 10 * MIN - 7 * MIN  # as of the clock


@pytest.mark.parametrize("new", [True, False])
def test_new_windows_are_appended_and_stored_ones_merged(store: CandleStore, new: bool) -> None:
    # "new" (never fetched) lets PostgreSQL COPY straight into candles; a candle that is there
    # after all falls back to the merge, so the result is the same either way
    def written(p: CandlePage) -> int:
        return len(store.write_pages([(SERIES, p)], new=new)[SERIES])

    assert written(page(5)) == 5
    assert written(page(10, price=101.0)) == 10
    stored = store.read_candles(SERIES, 0, 2**62)
    assert len(stored) == 10 and set(stored["close"]) == {101.0}
    assert written(page(10, price=101.0)) == 0


def test_a_failed_batch_writes_neither_candles_nor_coverage(pg_database: str) -> None:
    from market_data_tests.candle_harness import clear

    clear(pg_database)
    store = CandleStore(pg_database)
    twice = page(2)
    bad = CandlePage(twice.key, 60_000, 0, 120_000, np.array([0, 0]), twice.values)
    with pytest.raises(sa.exc.DBAPIError):  # one row affected twice: PostgreSQL refuses
        store.write_pages([(SERIES, page(1, 600_000)), (SERIES, bad)])
    assert store.read_candles(SERIES, 0, 2**62).empty and store.covered(SERIES, 0, 2**62) == []
    store.dispose()


class _Known:
    """The orchestrator's side of the status report: the markets it has, nothing run yet."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def markets(self, exchange: str) -> list[str]:
        return self.keys

    def last_materialized(self, exchange: str) -> dict[str, str]:
        return {}

    def runs_24h(self, exchange: str, markets: set[str]) -> dict[str, int]:
        return {}


def test_the_status_report_says_when_a_watchlist_outgrows_the_sqlite_store(
    store: CandleStore,
) -> None:
    """Four 1m markets since 2017 expect ~21 million candles: past what SQLite serves well,
    so the report (CLI, reports/status, HTTP) tells a SQLite user to move to PostgreSQL;
    on PostgreSQL it says nothing. One 1m market since 2017 stays within SQLite's range."""
    today = date(2026, 12, 1)
    store.gaps.save_clock("binance", day_ms(today))
    store.write_page(SERIES, page(30))

    def report(bases: tuple[str, ...]) -> dict:
        data = {
            "start": "2017-01-01",
            "exchanges": {"binance": {"markets": [f"{b}/USDT/1m" for b in bases]}},
        }
        wl = parse_watchlist(data, frozenset(ccxt.exchanges), today)
        keys = [m.key for m in wl.markets]
        return collect_status(store, _Known(keys), wl).store

    many = report(("BTC", "ETH", "SOL", "XRP"))
    assert many["candles"] == 30 and many["dialect"] == store.dialect
    assert many["expected"] == 4 * (day_ms(today) - day_ms(date(2017, 1, 1))) // MIN
    assert many["expected"] > SQLITE_MAX_CANDLES
    if store.dialect == "sqlite":
        assert "use PostgreSQL" in many["advice"] and f"{many['expected']:,}" in many["advice"]
    else:
        assert many["advice"] is None
    assert report(("BTC",))["advice"] is None


def test_settled_holes_are_known_without_reading_and_a_new_hole_beside_them_is_found(
    store: CandleStore,
) -> None:
    """A February hole confirmed empty at the exchange (exchange_empty) is returned as it
    is; then a candle comes inside it while another goes elsewhere in February (the month's
    count unchanged): both changes are found."""
    h1 = Series("binance", "BTC-USDT-SPOT", "1h")
    jan, apr = FEB - 31 * 86_400_000, MAR + 31 * 86_400_000
    ts = np.arange(jan, apr, HOUR, dtype=np.int64)
    hole = (FEB + 50 * HOUR, FEB + 53 * HOUR)
    kept = ts[(ts < hole[0]) | (ts >= hole[1])]
    values = np.tile([100.0, 101.0, 99.0, 100.0, 2.5], (len(kept), 1))
    store.write_page(h1, CandlePage("BTC-USDT-SPOT:1h", HOUR, jan, apr, kept, values))
    found = store.gaps.find(h1, HOUR, jan, apr)
    assert found == [Hole(*hole, EMPTY)]
    (row,) = store.gaps.record(h1, jan, apr, found, max_attempts=0)
    assert row.status == "exchange_empty"
    assert store.gaps.find(h1, HOUR, jan, apr) == [Hole(*hole, EMPTY)]
    assert store.gaps.find(h1, HOUR, FEB + 51 * HOUR, MAR) == [
        Hole(FEB + 51 * HOUR, hole[1], EMPTY)
    ]
    one = np.array([hole[0]], dtype=np.int64)
    store.write_page(
        h1, CandlePage("BTC-USDT-SPOT:1h", HOUR, hole[0], hole[0] + HOUR, one, values[:1])
    )
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM candles WHERE ts = :t"), {"t": FEB + 100 * HOUR})
    assert store.gaps.find(h1, HOUR, jan, apr) == [
        Hole(hole[0] + HOUR, hole[1], EMPTY),
        Hole(FEB + 100 * HOUR, FEB + 101 * HOUR, EMPTY),
    ]
