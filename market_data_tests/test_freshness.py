"""Freshness: one ranged run per exchange brings every market's month in progress up to date."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from market_data.defs.candles.partitions import RANGE_END, RANGE_START
from market_data.defs.candles.sensors import FRESHNESS_TAG, freshness_requests, freshness_sensor
from market_data.defs.resources import STORE_KEY, CandleStoreResource
from market_data.simulator.server import RunningSimulator
from market_data_tests.candle_harness import Harness, watchlist
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin

KEYS = ["BTC-USDT-SPOT:1h", "ETH-USDT-SPOT:1m", "NEWT-USDT-SPOT:1h"]
NOV = 1_793_491_200_000


def test_one_run_per_exchange_and_the_final_fetch_of_last_month() -> None:
    mid = freshness_requests("binance", KEYS, datetime(2026, 11, 20, 12, tzinfo=UTC), 6)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in mid] == [
        ("BTC-USDT-SPOT:1h|2026-11-01", "NEWT-USDT-SPOT:1h|2026-11-01")
    ]
    early = freshness_requests("binance", KEYS, datetime(2026, 12, 1, 2, tzinfo=UTC), 6)
    assert [r.tags[RANGE_START] for r in early] == [
        "BTC-USDT-SPOT:1h|2026-11-01", "BTC-USDT-SPOT:1h|2026-12-01",
    ]  # fmt: skip
    assert freshness_requests("binance", [], datetime(2026, 12, 1, tzinfo=UTC), 6) == []


def test_ticks_keep_every_market_up_to_date(sim: RunningSimulator, tmp_path: Path) -> None:
    h = Harness(watchlist(sim.url, ["BTC/USDT/1h", "ETH/USDT/1m", "NEWT/USDT/1h"]), f"sqlite:///{tmp_path}/f.sqlite",
                dg.DagsterInstance.ephemeral())  # fmt: skip
    (first,) = freshness_requests("binance", KEYS, datetime(2026, 11, 20, 12, tzinfo=UTC), 6)
    tags = first.tags
    result = h.run(tags[RANGE_START], tags[RANGE_END])
    assert result.success
    for symbol, tf, ms in (("BTC-USDT-SPOT", "1h", 3_600_000), ("ETH-USDT-SPOT", "1m", 60_000)):
        stored = h.stored(symbol, tf)
        assert stored[0][0] == NOV  # only the month in progress
        assert stored[-1][0] == NOW_MS - NOW_MS % ms - ms  # the last closed candle
    meta = h.metadata(result)
    assert meta["max_lag_seconds"] < 3600 and meta["stale_markets"] == "none"
    # Ten minutes later at the exchange: a cheap tick adds just the new candles.
    admin(sim.url, "clock", {"advance_ms": 600_000})
    admin(sim.url, "reset", {})
    again = h.run(tags[RANGE_START], tags[RANGE_END])
    assert h.metadata(again)["rows_written"] == 10  # ten 1m candles; no hour closed
    klines = admin(sim.url, "stats")["requests"]["/api/v3/klines"]["200"]
    assert klines == 1  # one small page for the 1m market; no hour closed, no request for 1h ones
    stored = h.stored("ETH-USDT-SPOT", "1m")
    assert len({r[0] for r in stored}) == len(stored) == (NOW_MS + 600_000 - NOV) // 60_000


def test_each_market_of_a_freshness_run_has_its_own_state(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    h = Harness(watchlist(sim.url, ["BTC/USDT/1h", "ETH/USDT/1m"]), f"sqlite:///{tmp_path}/f.sqlite",
                dg.DagsterInstance.ephemeral())  # fmt: skip
    # ETH trades no more for the last hour: it falls behind, BTC does not
    hole = {"symbol": "ETHUSDT", "start_ms": NOW_MS - 3_600_000, "end_ms": NOW_MS + 1}
    admin(sim.url, "faults", {"holes": [hole]})
    result = h.run_months("BTC-USDT-SPOT:1h", "2026-11", "ETH-USDT-SPOT:1m|2026-11-01")
    assert result.success
    fresh = {e.partition: e for e in h.evaluations(result, "fresh")}
    btc, eth = fresh["BTC-USDT-SPOT:1h|2026-11-01"], fresh["ETH-USDT-SPOT:1m|2026-11-01"]
    assert btc.passed and not eth.passed and eth.severity == dg.AssetCheckSeverity.WARN
    assert eth.metadata["lag_seconds"].value > 3000 > btc.metadata["lag_seconds"].value
    # each partition's materialization carries its own market's figures, not the run's
    parts = h.partitions(result)
    assert parts["ETH-USDT-SPOT:1m|2026-11-01"]["stale"] is True
    assert parts["BTC-USDT-SPOT:1h|2026-11-01"]["stale"] is False
    assert parts["BTC-USDT-SPOT:1h|2026-11-01"]["expected"] == (NOW_MS - NOV) // 3_600_000


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
    wl = watchlist(sim.url, ["BTC/USDT/1h"])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("markets_binance", ["BTC-USDT-SPOT:1h"])
    resources = {STORE_KEY: CandleStoreResource(database_url=f"sqlite:///{tmp_path}/s.sqlite")}
    store = resources[STORE_KEY].store()
    store.gaps.save_clock("binance", NOW_MS)  # the exchange's clock, as a run read it
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        (request,) = freshness_sensor(wl)(ctx).run_requests
    # the month in progress is the exchange's (2026-11), whatever our own clock says
    assert request.tags[RANGE_START] == "BTC-USDT-SPOT:1h|2026-11-01"
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={FRESHNESS_TAG: "binance"},
        )
    )
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        assert isinstance(freshness_sensor(wl)(ctx), dg.SkipReason)
