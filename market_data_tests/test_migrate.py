"""`market-data migrate-layout`: an instance of the month layout (candles/<exchange>, market x
month) moves to the year layout with one command; nothing is fetched, and until it has run
the watchlist sensor adds nothing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from market_data.config import load_watchlist
from market_data.defs.candles.sensors import watchlist_sensor
from market_data.defs.instruments.assets import instruments_asset
from market_data.defs.resources import STORE_KEY, CandleStoreResource, build_resources
from market_data.simulator.server import RunningSimulator
from market_data_tests.helpers import admin, cli, cli_env

OLD = ["BTC-USDT-SPOT:1h", "ETH-USDT-SPOT:1d", "BTC-USDT-SPOT:1d", "SOL-USDT-SPOT:4h"]
#: months the old asset had materialized, per market (SOL's timeframe is no longer watched)
MONTHS = {
    "BTC-USDT-SPOT:1h": ["2025-11-01", "2025-12-01", "2026-01-01"],
    "ETH-USDT-SPOT:1d": ["2026-03-01"],
    "SOL-USDT-SPOT:4h": ["2026-01-01"],
}


def seed_month_layout(home: str) -> None:
    """What a deployment of the month layout left in its instance."""
    with dg.DagsterInstance.from_config(home) as instance:
        instance.add_dynamic_partitions("markets_binance", OLD)
        for market, months in MONTHS.items():
            for month in months:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(["candles", "binance"], partition=f"{market}|{month}")
                )


def materialized(instance: dg.DagsterInstance, tf: str) -> set[str]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["candles", "binance", tf])), limit=100
    ).records
    return {r.partition_key for r in records if r.partition_key}


def test_one_command_moves_the_instance_to_the_year_layout(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    markets = ["BTC/USDT/1h", "BTC/USDT/1d", "ETH/USDT/1d"]
    env = cli_env(tmp_path, sim.url, f"sqlite:///{tmp_path}/c.sqlite", markets, "2025-11-01")
    home = env["DAGSTER_HOME"]
    seed_month_layout(home)
    wl = load_watchlist(Path(env["MARKET_DATA_CONFIG"]))
    store = CandleStoreResource(database_url=f"sqlite:///{tmp_path}/c.sqlite")
    resources = {**build_resources(wl), STORE_KEY: store}

    # before: the watchlist sensor would take every market for new; it adds nothing, says why
    with (
        dg.DagsterInstance.from_config(home) as instance,
        dg.build_sensor_context(instance=instance, resources=resources) as ctx,
    ):
        before = watchlist_sensor(wl)(ctx)
    assert not before.dynamic_partitions_requests
    assert [r.run_key for r in before.run_requests] == [
        r.run_key for r in before.run_requests if r.run_key.startswith("catalog:")
    ]

    done = cli(env, "migrate-layout")
    assert done.returncode == 0, done.stderr
    assert (
        "binance/1h: 1 market(s) added (0 there already), 2 year partition(s) reported"
        in done.stdout
    )
    assert (
        "binance/1d: 2 market(s) added (0 there already), 1 year partition(s) reported"
        in done.stdout
    )
    assert "1 market(s) of timeframes the watchlist no longer has" in done.stdout
    assert "SOL-USDT-SPOT:4h" in done.stdout
    with dg.DagsterInstance.from_config(home) as instance:
        assert instance.get_dynamic_partitions("markets_binance_1h") == ["BTC-USDT-SPOT:1h"]
        # in the month layout's order
        assert instance.get_dynamic_partitions("markets_binance_1d") == [
            "ETH-USDT-SPOT:1d", "BTC-USDT-SPOT:1d",
        ]  # fmt: skip
        assert materialized(instance, "1h") == {"BTC-USDT-SPOT:1h|2025", "BTC-USDT-SPOT:1h|2026"}
        assert materialized(instance, "1d") == {"ETH-USDT-SPOT:1d|2026"}
        # the old asset's history is kept
        assert instance.get_dynamic_partitions("markets_binance") == OLD
    # nothing was fetched: the simulator saw no request
    assert admin(sim.url, "stats")["total_requests"] == 0

    again = cli(env, "migrate-layout")
    assert again.returncode == 0, again.stderr
    assert "migrated: 0 market partition(s) added, 0 year partition(s) reported" in again.stdout

    # after, with the catalog loaded: the sensor sees the markets it has, adds none of them
    # again, deletes none, and launches no backfill
    with dg.DagsterInstance.from_config(home) as instance:
        dg.materialize([instruments_asset("binance")], instance=instance, resources=resources)
        with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
            after = watchlist_sensor(wl)(ctx)
    assert after.dynamic_partitions_requests == [] and after.run_requests == []
