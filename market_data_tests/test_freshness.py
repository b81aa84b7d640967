"""Freshness: one ranged run per candle asset (exchange x timeframe) brings every market's
year in progress up to date, when a candle of its timeframe has closed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from market_data.defs.candles.checks import FRESHNESS_CHECKS_MAX
from market_data.defs.candles.partitions import RANGE_END, RANGE_START
from market_data.defs.candles.sensors import FRESHNESS_TAG, freshness_requests, freshness_sensor
from market_data.defs.resources import STORE_KEY, CandleStoreResource
from market_data.simulator.server import RunningSimulator
from market_data_tests.candle_harness import Harness, watchlist
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin

HOURS = ["BTC-USDT-SPOT:1h", "NEWT-USDT-SPOT:1h"]
HOUR = 3_600_000
MAR, NOV = 1_772_323_200_000, 1_793_491_200_000


def test_one_run_per_asset_and_the_final_fetch_of_last_year() -> None:
    mid = freshness_requests("binance", "1h", HOURS, datetime(2026, 11, 20, 12, tzinfo=UTC), 6)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in mid] == [
        ("BTC-USDT-SPOT:1h|2026", "NEWT-USDT-SPOT:1h|2026")
    ]
    # the fresh check only: the gap check of a year in progress is the daily sweep's
    assert sorted(k.name for k in mid[0].asset_check_keys or []) == ["fresh", "no_gaps"]
    assert mid[0].asset_selection == [dg.AssetKey(["candles", "binance", "1h"])]
    early = freshness_requests("binance", "1h", HOURS, datetime(2027, 1, 1, 2, tzinfo=UTC), 6)
    assert [r.tags[RANGE_START] for r in early] == [
        "BTC-USDT-SPOT:1h|2026", "BTC-USDT-SPOT:1h|2027",
    ]  # fmt: skip
    assert freshness_requests("binance", "1h", [], datetime(2026, 12, 1, tzinfo=UTC), 6) == []


def test_a_whole_exchange_freshness_run_judges_its_markets_in_one_result() -> None:
    """Above FRESHNESS_CHECKS_MAX markets a freshness run evaluates the one `recent` check,
    not two results per partition (each an event Dagster writes on its own)."""
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    keys = [f"M{i:04d}-USDT-SPOT:1h" for i in range(FRESHNESS_CHECKS_MAX + 1)]
    (whole,) = freshness_requests("binance", "1h", keys, now, 6)
    assert [k.name for k in whole.asset_check_keys or []] == ["recent"]
    (fewer,) = freshness_requests("binance", "1h", keys[:FRESHNESS_CHECKS_MAX], now, 6)
    assert sorted(k.name for k in fewer.asset_check_keys or []) == ["fresh", "no_gaps"]


def test_the_recent_check_names_the_stale_markets_and_the_gaps_of_the_last_day(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    wl = watchlist(sim.url, ["BTC/USDT/1h", "SOL/USDT/1h", "ETH/USDT/1h"], start="2025-12-01")
    h = Harness(wl, f"sqlite:///{tmp_path}/r.sqlite", dg.DagsterInstance.ephemeral())
    # SOL trades no more for its last three hours (stale, and three empty hours); BTC has two
    # empty hours this morning; ETH is complete and current
    last_hour = NOW_MS - NOW_MS % HOUR
    holes = [
        {"symbol": "SOLUSDT", "start_ms": last_hour - 3 * HOUR, "end_ms": NOW_MS + 1},
        {"symbol": "BTCUSDT", "start_ms": last_hour - 6 * HOUR, "end_ms": last_hour - 4 * HOUR},
    ]
    admin(sim.url, "faults", {"holes": holes})
    freshness = {FRESHNESS_TAG: "binance"}
    result = h.run("BTC-USDT-SPOT:1h|2026", "ETH-USDT-SPOT:1h|2026", tags=freshness, recent=True)
    assert result.success
    (recent,) = h.evaluations(result, "recent")
    assert not recent.passed and recent.severity == dg.AssetCheckSeverity.ERROR
    assert recent.description == "3 markets of 2026: 1 stale, 2 with gaps in their last day"
    meta = {k: v.value for k, v in recent.metadata.items()}
    assert (meta["markets"], meta["stale_markets"], meta["markets_with_gaps"]) == (3, 1, 2)
    assert (meta["open_gaps"], meta["empty_candles"], meta["missing_candles"]) == (2, 5, 0)
    assert meta["first_with_gaps"] == "BTC-USDT-SPOT:1h, SOL-USDT-SPOT:1h"
    assert "| SOL-USDT-SPOT:1h |" in meta["first_stale"] and "ETH" not in meta["first_stale"]
    # one result for the run, none per partition
    assert h.evaluations(result, "fresh") == [] == h.evaluations(result, "no_gaps")
    # the gap is recorded as the gap check records it: the repair sensor acts on it
    assert h.store.gaps.totals("binance")[("BTC-USDT-SPOT", "1h")].open_gaps == 1
    # a run of a past year only: nothing of the year in progress to judge
    (past,) = h.evaluations(h.run("BTC-USDT-SPOT:1h|2025", recent=True), "recent")
    assert past.passed and past.description == "the run holds no partition of the year in progress"


def test_ticks_keep_every_market_up_to_date(sim: RunningSimulator, tmp_path: Path) -> None:
    wl = watchlist(sim.url, ["BTC/USDT/1h", "ETH/USDT/1m", "NEWT/USDT/1h"], start="2026-11-01")
    h = Harness(wl, f"sqlite:///{tmp_path}/f.sqlite", dg.DagsterInstance.ephemeral())
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    (hours,) = freshness_requests("binance", "1h", HOURS, now, 6)
    (minutes,) = freshness_requests("binance", "1m", ["ETH-USDT-SPOT:1m"], now, 6)
    runs = [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in (hours, minutes)]
    results = [h.run(*run) for run in runs]
    assert all(r.success for r in results)
    for symbol, tf, ms in (("BTC-USDT-SPOT", "1h", 3_600_000), ("ETH-USDT-SPOT", "1m", 60_000)):
        stored = h.stored(symbol, tf)
        assert stored[0][0] == NOV  # the year in progress, from the watchlist's start
        assert stored[-1][0] == NOW_MS - NOW_MS % ms - ms  # the last closed candle
    for result in results:
        meta = h.metadata(result)
        assert meta["max_lag_seconds"] < 3600 and meta["stale_markets"] == "none"
    # Ten minutes later at the exchange: a cheap tick adds just the new candles.
    admin(sim.url, "clock", {"advance_ms": 600_000})
    admin(sim.url, "reset", {})
    again = [h.run(*run) for run in runs]
    assert [h.metadata(r)["rows_written"] for r in again] == [0, 10]  # no hour closed
    klines = admin(sim.url, "stats")["requests"]["/api/v3/klines"]["200"]
    assert klines == 1  # one small page for the 1m market; no hour closed, no request for 1h ones
    stored = h.stored("ETH-USDT-SPOT", "1m")
    assert len({r[0] for r in stored}) == len(stored) == (NOW_MS + 600_000 - NOV) // 60_000


def test_each_market_of_a_freshness_run_has_its_own_state(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    wl = watchlist(sim.url, ["BTC/USDT/1h", "SOL/USDT/1h"], start="2026-11-01")
    h = Harness(wl, f"sqlite:///{tmp_path}/f.sqlite", dg.DagsterInstance.ephemeral())
    # SOL trades no more for the last three hours: it falls behind, BTC does not
    hole = {"symbol": "SOLUSDT", "start_ms": NOW_MS - 3 * 3_600_000, "end_ms": NOW_MS + 1}
    admin(sim.url, "faults", {"holes": [hole]})
    result = h.run("BTC-USDT-SPOT:1h|2026", "SOL-USDT-SPOT:1h|2026")
    assert result.success
    fresh = {e.partition: e for e in h.evaluations(result, "fresh")}
    btc, sol = fresh["BTC-USDT-SPOT:1h|2026"], fresh["SOL-USDT-SPOT:1h|2026"]
    assert btc.passed and not sol.passed and sol.severity == dg.AssetCheckSeverity.WARN
    assert sol.metadata["lag_seconds"].value > 2 * 3600 > 3600 > btc.metadata["lag_seconds"].value
    # each partition's materialization carries its own market's figures, not the run's
    parts = h.partitions(result)
    assert parts["SOL-USDT-SPOT:1h|2026"]["stale"] is True
    assert parts["BTC-USDT-SPOT:1h|2026"]["stale"] is False
    assert parts["BTC-USDT-SPOT:1h|2026"]["expected"] == (NOW_MS - NOV) // 3_600_000


def test_a_freshness_run_fetches_what_follows_the_newest_candle_not_the_year(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    """The year in progress is a freshness run's partition, not its work: BTC has March
    stored and gets March on, not January; SOL has nothing and gets the month in progress
    (its history is a backfill's)."""
    wl = watchlist(sim.url, ["BTC/USDT/1h", "SOL/USDT/1h"])  # from 2026-01-01
    h = Harness(wl, f"sqlite:///{tmp_path}/t.sqlite", dg.DagsterInstance.ephemeral())
    assert h.run_months("BTC-USDT-SPOT:1h", "2026-03").success
    freshness = {FRESHNESS_TAG: "binance"}
    result = h.run("BTC-USDT-SPOT:1h|2026", "SOL-USDT-SPOT:1h|2026", tags=freshness)
    assert result.success
    closed = NOW_MS - NOW_MS % HOUR
    btc = [r[0] for r in h.stored("BTC-USDT-SPOT", "1h")]
    assert btc == list(range(MAR, closed, HOUR))  # March to the last closed hour, no gap
    sol = [r[0] for r in h.stored("SOL-USDT-SPOT", "1h")]
    assert sol == list(range(NOV, closed, HOUR))


def test_a_market_that_falls_behind_is_flagged(sim: RunningSimulator, tmp_path: Path) -> None:
    h = Harness(
        watchlist(sim.url, ["ETH/USDT/1m"]),
        f"sqlite:///{tmp_path}/s.sqlite",
        dg.DagsterInstance.ephemeral(),
    )
    admin(
        sim.url,
        "faults",
        {"holes": [{"symbol": "ETHUSDT", "start_ms": NOW_MS - 3_600_000, "end_ms": NOW_MS + 1}]},
    )
    meta = h.metadata(h.run_months("ETH-USDT-SPOT:1m", "2026-11"))
    assert meta["stale_markets"] == "ETH-USDT-SPOT:1m" and meta["max_lag_seconds"] > 3000


def test_overlapping_ticks_never_run_twice_at_once(sim: RunningSimulator, tmp_path: Path) -> None:
    wl = watchlist(sim.url, ["BTC/USDT/1h", "ETH/USDT/1m"])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("markets_binance_1h", ["BTC-USDT-SPOT:1h"])
    instance.add_dynamic_partitions("markets_binance_1m", ["ETH-USDT-SPOT:1m"])
    resources = {STORE_KEY: CandleStoreResource(database_url=f"sqlite:///{tmp_path}/s.sqlite")}
    store = resources[STORE_KEY].store()
    store.gaps.save_clock("binance", NOW_MS)  # the exchange's clock, as a run read it
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        first = freshness_sensor(wl)(ctx)
        cursor = first.cursor
    # one run per asset; the year in progress is the exchange's (2026), whatever our clock says
    assert sorted(r.tags[RANGE_START] for r in first.run_requests) == [
        "BTC-USDT-SPOT:1h|2026", "ETH-USDT-SPOT:1m|2026",
    ]  # fmt: skip
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            asset_selection=frozenset({dg.AssetKey(["candles", "binance", "1m"])}),
            tags={FRESHNESS_TAG: "binance"},
        )
    )
    # at once: the 1m run is still in flight, and no hour has closed since the 1h run (the
    # sensor keeps, per asset, the boundary of our own clock its last run was for)
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
        assert isinstance(freshness_sensor(wl)(ctx), dg.SkipReason)
    # an hour on (the 1h asset's last run a boundary back): it gets its run; the 1m one still
    # waits for its run in flight
    earlier = json.loads(cursor or "{}")
    earlier["binance/1h"] -= 3_600_000
    with dg.build_sensor_context(
        instance=instance, resources=resources, cursor=json.dumps(earlier)
    ) as ctx:
        (request,) = freshness_sensor(wl)(ctx).run_requests
    assert request.tags[RANGE_START] == "BTC-USDT-SPOT:1h|2026"
