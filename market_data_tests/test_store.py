"""The store on SQLite and PostgreSQL: schema files, upserts, coverage."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from market_data.store.candles import CandleStore
from market_data.store.schema import apply_schema, drop_all, statements
from market_data.store.series import Series
from market_data.store.tables import metadata
from market_data_tests.conftest import throwaway_cluster

SERIES = Series("binance", "BTC-USDT-SPOT", "1m")


@pytest.fixture
def store(store_url: str) -> CandleStore:
    return CandleStore(store_url)


def frame(n: int, start: int = 0, price: float = 100.0) -> pd.DataFrame:
    ts = [start + i * 60_000 for i in range(n)]
    return pd.DataFrame(
        {
            "ts": ts,
            "open": price,
            "high": price + 1,
            "low": price - 1,
            "close": price,
            "volume": 2.5,
        }
    )


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
    assert store.write_page(SERIES, frame(1500), (0, 1500 * 60_000)) == 1500
    assert store.write_page(SERIES, frame(1500), (0, 1500 * 60_000)) == 0
    changed = frame(10, price=101.0)
    assert store.write_page(SERIES, changed, None) == 10
    stored = store.read_candles(SERIES, 0, 2**62)
    assert (
        len(stored) == 1500
        and stored["close"].iloc[0] == 101.0
        and stored["close"].iloc[10] == 100.0
    )
    assert store.candle_stats(SERIES, 0, 600_000) == (10, 0, 540_000)
    assert store.last_ts(SERIES) == 1499 * 60_000


def test_coverage_is_recorded_with_its_page_and_merged(store: CandleStore) -> None:
    store.write_page(SERIES, frame(5), (0, 300_000))
    store.write_page(SERIES, frame(0), (300_000, 600_000))  # fetched, and empty at the exchange
    store.write_page(SERIES, frame(1, start=900_000), (900_000, 960_000))
    assert store.covered(SERIES, 0, 10**9) == [(0, 600_000), (900_000, 960_000)]
    assert store.covered(Series("binance", "ETH-USDT-SPOT", "1m"), 0, 10**9) == []


def test_reset_drops_everything(store: CandleStore) -> None:
    store.write_page(SERIES, frame(3), (0, 180_000))
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


def test_a_throwaway_cluster_serves_the_store() -> None:
    """The path taken on a machine without a PostgreSQL server: initdb + pg_ctl."""
    with throwaway_cluster() as cluster:
        store = CandleStore(cluster.url)
        assert store.write_page(SERIES, frame(3), (0, 180_000)) == 3
        assert store.read_candles(SERIES, 0, 2**62)["ts"].tolist() == [0, 60_000, 120_000]
        store.dispose()
