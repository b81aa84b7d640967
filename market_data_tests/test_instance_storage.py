"""The PostgreSQL instance of `make serve` (dagster.postgres.yaml) on a database of its own:
its event log answers whether a market partition exists from memory: never wrongly for a
change of its own process, never "absent" for a key another process added; a deletion
elsewhere shows within KEYS_TTL_S."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from market_data.defs.storage import KEYS_TTL_S, MarketKeysCachedEventLogStorage
from market_data_tests.helpers import ROOT

NAME = "markets_binance_1h"


@pytest.fixture
def home(pg_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DAGSTER_HOME with the production instance file, on a database of the test's own."""
    name = f"md_instance_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = pg_server.rsplit("/", 1)[0].replace("+psycopg:", "+psycopg2:")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", f"{base}/{name}")
    (tmp_path / "dagster.yaml").symlink_to(ROOT / "dagster.postgres.yaml")
    try:
        yield str(tmp_path)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seen_by(instance: dg.DagsterInstance, key: str, exists: bool) -> float:
    """Seconds until ``instance`` says ``key`` exists (or not), at most KEYS_TTL_S + 5."""
    t0 = time.monotonic()
    while instance.has_dynamic_partition(NAME, key) != exists:
        assert time.monotonic() - t0 < KEYS_TTL_S + 5, f"{key}: never seen as {exists}"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_market_partitions_added_are_known_at_once_and_deleted_within_a_second(
    home: str,
) -> None:
    one = dg.DagsterInstance.from_config(home)  # two processes' instances
    other = dg.DagsterInstance.from_config(home)
    assert isinstance(one.event_log_storage, MarketKeysCachedEventLogStorage)
    one.add_dynamic_partitions(NAME, ["BTC-USDT-SPOT:1h", "ETH-USDT-SPOT:1h"])
    assert one.has_dynamic_partition(NAME, "BTC-USDT-SPOT:1h")
    assert not one.has_dynamic_partition(NAME, "SOL-USDT-SPOT:1h")
    assert not one.has_dynamic_partition("markets_binance_1d", "BTC-USDT-SPOT:1h")
    assert other.has_dynamic_partition(NAME, "ETH-USDT-SPOT:1h")  # its keys read now

    other.add_dynamic_partitions(NAME, ["SOL-USDT-SPOT:1h"])
    assert other.has_dynamic_partition(NAME, "SOL-USDT-SPOT:1h")  # its own change: at once
    assert one.has_dynamic_partition(NAME, "SOL-USDT-SPOT:1h")  # another's addition: at once
    one.delete_dynamic_partition(NAME, "BTC-USDT-SPOT:1h")
    assert not one.has_dynamic_partition(NAME, "BTC-USDT-SPOT:1h")
    assert seen_by(other, "BTC-USDT-SPOT:1h", False) <= KEYS_TTL_S + 0.5
    assert one.get_dynamic_partitions(NAME) == ["ETH-USDT-SPOT:1h", "SOL-USDT-SPOT:1h"]
    # and a partition key of the candle assets is validated against them
    markets = dg.DynamicPartitionsDefinition(name=NAME)
    parts = dg.MultiPartitionsDefinition(
        {"market": markets, "year": dg.StaticPartitionsDefinition(["2026"])}
    )
    with dg.partition_loading_context(dynamic_partitions_store=one):
        assert parts.has_partition_key("ETH-USDT-SPOT:1h|2026")
        assert not parts.has_partition_key("BTC-USDT-SPOT:1h|2026")
