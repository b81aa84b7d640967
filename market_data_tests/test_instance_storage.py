"""The PostgreSQL instance of `make serve` (dagster.postgres.yaml) on a database of its own:
its event log answers whether a market partition exists from memory: never wrongly for a
change of its own process, never "absent" for a key another process added; a deletion
elsewhere shows within KEYS_TTL_S. A partitioned check's status computed from its stored
checkpoint is the status Dagster computes from scratch."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from market_data.defs import storage
from market_data.defs.candles.partitions import candle_partitions
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


CHECK = dg.AssetCheckKey(dg.AssetKey(["candles", "binance", "1h"]), "no_gaps")


def statuses(instance: dg.DagsterInstance, parts: dg.PartitionsDefinition) -> dict[str, list]:
    """A check's status as the asset page computes it: partition keys by status."""
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        state = instance.event_log_storage.get_asset_check_state([(CHECK, parts)])[CHECK]
    return {
        status.value: sorted(subset.subset_value.get_partition_keys())
        for status, subset in state.subsets.items()
        if not subset.is_empty
    }


def recorded(instance: dg.DagsterInstance, *events: Any) -> None:
    """``events`` logged by a run of their own, as the gap check job logs its results."""

    @dg.op
    def log_events(context) -> None:  # type: ignore[no-untyped-def]  # annotated, Dagster rejects it here
        for event in events:
            context.log_event(event)

    @dg.job
    def record() -> None:
        log_events()

    assert record.execute_in_process(instance=instance).success


def checked(partition: str, passed: bool) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=CHECK.asset_key, check_name=CHECK.name, passed=passed, partition=partition
    )


@pytest.mark.parametrize("margin", [0, storage.MARGIN_IDS], ids=["only-new-events", "margin"])
def test_check_status_from_a_checkpoint_is_the_status_dagster_computes(
    home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, margin: int
) -> None:
    """Every computation of ours starts from the stored checkpoint (written each time here)
    and reads the events after it (less the margin); after each change its answer is the one
    dagster-postgres computes from scratch."""
    monkeypatch.setattr(storage, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(storage, "MARGIN_IDS", margin)
    ours = dg.DagsterInstance.from_config(home)
    plain_home = tmp_path / "plain"
    plain_home.mkdir()
    (plain_home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_POSTGRES_URL\n"
    )
    plain = dg.DagsterInstance.from_config(str(plain_home))
    assert not isinstance(plain.event_log_storage, MarketKeysCachedEventLogStorage)
    parts = candle_partitions("binance", "1h", date(2025, 1, 1))
    btc, eth, sol = (f"{base}-USDT-SPOT:1h" for base in ("BTC", "ETH", "SOL"))
    ours.add_dynamic_partitions(NAME, [btc, eth, sol])
    recorded(
        ours,
        checked(f"{btc}|2025", True),
        checked(f"{eth}|2025", False),
        checked(f"{sol}|2026", True),
    )
    first = statuses(ours, parts)
    assert first == statuses(plain, parts)
    assert first["SUCCEEDED"] == [f"{btc}|2025", f"{sol}|2026"]
    assert first["FAILED"] == [f"{eth}|2025"]
    name = storage.CHECKPOINT_PREFIX + CHECK.to_user_string()
    assert name in ours.run_storage.get_cursor_values({name})

    def same_as_dagster(expected: dict[str, list], from_checkpoint: bool = True) -> None:
        # this process (from its last checkpoint unless the markets changed since) ...
        _, checkpoints = ours.event_log_storage._checkpoints([(CHECK, parts)])
        assert bool(checkpoints[CHECK].subsets) == from_checkpoint
        assert statuses(ours, parts) == statuses(plain, parts) == expected
        # ... and another one, from the checkpoint that computation stored
        other = dg.DagsterInstance.from_config(home)
        _, checkpoints = other.event_log_storage._checkpoints([(CHECK, parts)])
        assert checkpoints[CHECK].subsets, "the checkpoint was not stored"
        assert statuses(other, parts) == expected
        other.dispose()

    recorded(
        ours,
        checked(f"{btc}|2025", False),  # a newer result
        dg.AssetMaterialization(asset_key=CHECK.asset_key, partition=f"{eth}|2025"),
    )  # a newer materialization: that partition's result no longer current
    same_as_dagster({"FAILED": [f"{btc}|2025"], "SUCCEEDED": [f"{sol}|2026"]})

    ours.delete_dynamic_partition(NAME, sol)  # a market removed: its results no longer shown
    same_as_dagster({"FAILED": [f"{btc}|2025"]}, from_checkpoint=False)
    ours.add_dynamic_partitions(NAME, [sol])  # and added again: they are
    same_as_dagster({"FAILED": [f"{btc}|2025"], "SUCCEEDED": [f"{sol}|2026"]}, False)
    ours.add_dynamic_partitions(NAME, ["ADA-USDT-SPOT:1h"])  # a new market: nothing changes
    same_as_dagster({"FAILED": [f"{btc}|2025"], "SUCCEEDED": [f"{sol}|2026"]})

    # a checkpoint whose keys no longer exist (the dimensions changed in code) is not used
    later = candle_partitions("binance", "1h", date(2026, 1, 1))
    assert statuses(ours, later) == statuses(plain, later) == {"SUCCEEDED": [f"{sol}|2026"]}
    ours.dispose()
    plain.dispose()
