"""Gaps: the check per partition, bounded automatic repair, the sweep (simulator, real ccxt,
SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

import ccxt
import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from market_data.defs.candles.partitions import FRESHNESS_TAG, range_tags, split_partition_key
from market_data.defs.candles.schedules import gap_sweep_job
from market_data.defs.candles.sensors import gap_repair_sensor
from market_data.defs.resources import STORE_KEY
from market_data.domain.calendar import month_bounds
from market_data.domain.gaps import (
    Hole,
    classify,
    holes_from_breaks,
    joined,
    not_whole,
    repair_ranges,
)
from market_data.domain.watchlist import parse_watchlist
from market_data.simulator.generator import minute_bars
from market_data.simulator.markets import MARKETS
from market_data.simulator.server import RunningSimulator
from market_data.store.series import Series
from market_data_tests.candle_harness import Harness
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin

MIN = 60_000
JAN, OCT, NOV = 1_767_225_600_000, 1_790_812_800_000, 1_793_491_200_000
#: the 1m markets start in November: their year partition is November to the simulator's now
NOV_MINUTES = (NOW_MS - NOW_MS % MIN - NOV) // MIN


@pytest.fixture
def h(sim: RunningSimulator, store_url: str) -> Harness:
    settings = {
        "base_url": sim.url,
        "rate_limit_ms": 0,
        "retry_base_s": 0.01,
        "retry_attempts": 2,
        "step_retries": 0,
    }
    data = {
        "start": "2026-01-01",
        "gaps": {"max_attempts": 3, "retry_delay_s": 0},
        "exchanges": {"binance": {**settings, "markets": [
            *({"symbol": s, "timeframe": "1m", "start": "2026-11-01"} for s in ("ETH/USDT", "ZEN/BTC")),
            "NEWT/USDT/1h", "OLD/USDT/1h", "BTC/USDT/1h"]}},
    }  # fmt: skip
    from datetime import date

    wl = parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21))
    return Harness(wl, store_url, dg.DagsterInstance.ephemeral())


def tick(h: Harness) -> list[dg.RunRequest]:
    with dg.build_sensor_context(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}
    ) as ctx:
        return list(gap_repair_sensor(h.wl)(ctx).run_requests)


def execute(h: Harness, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    (config,) = [op["config"] for op in request.run_config["ops"].values()]
    return h.run(request.partition_key, config=config)


def klines(sim: RunningSimulator) -> int:
    return admin(sim.url, "stats")["requests"].get("/api/v3/klines", {}).get("200", 0)


def gap_rows(h: Harness) -> list[dict]:
    return h.store.gaps.all_gaps(limit=100_000)


def test_a_transient_failure_is_found_and_repaired_by_itself(
    h: Harness, sim: RunningSimulator
) -> None:
    sixth = {"startTime": str(NOV + 5000 * MIN)}  # the 6th page's window fails, every time
    rule = {"path": "/api/v3/klines", "query": sixth, "status": 503, "count": -1}
    admin(sim.url, "faults", {"fail": [rule]})
    failed = h.run("ETH-USDT-SPOT:1m|2026")
    assert not failed.success  # the other windows were written, that one is missing
    admin(sim.url, "faults", {"fail": []})
    check = h.run_check("ETH-USDT-SPOT:1m|2026")
    assert not check.passed
    assert check.metadata["missing_candles"].value == 1000
    requests = tick(h)
    assert [r.partition_key for r in requests] == ["ETH-USDT-SPOT:1m|2026"]
    before = klines(sim)
    repaired = execute(h, requests[0])
    assert repaired.success and h.check_result(repaired).passed
    assert klines(sim) - before == 1  # only the missing range
    rows = gap_rows(h)
    assert len(rows) == 1 and rows[0]["status"] == "repaired" and rows[0]["repaired_at"] is not None
    assert rows[0]["gap_start"] == NOV + 5000 * MIN
    assert len(h.stored("ETH-USDT-SPOT", "1m")) == NOV_MINUTES
    assert tick(h) == []


def test_an_exchange_side_hole_becomes_exchange_empty_after_the_bound(
    h: Harness, sim: RunningSimulator
) -> None:
    hole = {"symbol": "ETHUSDT", "start_ms": NOV + 100 * MIN, "end_ms": NOV + 110 * MIN}
    admin(sim.url, "faults", {"holes": [hole]})
    first = h.run("ETH-USDT-SPOT:1m|2026")
    assert first.success and not h.check_result(first).passed
    repairs = 0
    for _ in range(6):  # several ticks of the automation
        requests = tick(h)
        if not requests:
            break
        repairs += 1
        before = klines(sim)
        result = execute(h, requests[0])
        assert klines(sim) - before == 1  # one page around the hole, never the whole year
    assert repairs == 3
    assert tick(h) == []  # no further repair run
    check = h.run_check("ETH-USDT-SPOT:1m|2026")
    assert check.passed and "exchange-empty" in check.description
    assert check.metadata["exchange_empty_candles"].value == 10
    (row,) = gap_rows(h)
    assert (row["status"], row["attempts"], row["gap_start"], row["gap_end"]) == (
        "exchange_empty",
        3,
        hole["start_ms"],
        hole["end_ms"],
    )
    assert result.success


def test_no_gaps_before_listing_after_delisting_or_for_the_candle_in_progress(h: Harness) -> None:
    for partition in (
        "NEWT-USDT-SPOT:1h|2026",
        "OLD-USDT-SPOT:1h|2026",
        "BTC-USDT-SPOT:1h|2026",
    ):
        result = h.run(partition)
        check = h.check_result(result)
        assert check.passed and check.metadata["missing_candles"].value == 0, partition
        assert check.metadata["exchange_empty_candles"].value == 0, partition
    assert gap_rows(h) == []


def test_the_illiquid_pairs_holes_are_classified_exactly(h: Harness) -> None:
    result = h.run("ZEN-BTC-SPOT:1m|2026")
    assert not h.check_result(result).passed  # empty minutes: open until confirmed
    zen = next(m for m in MARKETS if m.id == "ZENBTC")
    present = minute_bars(zen, NOV, NOV + 30 * 1440 * MIN).ts
    closed_until = NOW_MS - NOW_MS % MIN  # the simulator's clock
    present = present[present < closed_until]
    grid = np.arange(NOV, closed_until, MIN)
    missing = np.setdiff1d(grid, present)
    runs = np.split(missing, np.flatnonzero(np.diff(missing) != MIN) + 1)
    expected = [(int(r[0]), int(r[-1]) + MIN) for r in runs if len(r)]
    found = [(g["gap_start"], g["gap_end"]) for g in gap_rows(h)]
    assert found == expected and len(found) > 1000
    assert all(g["kind"] == "empty" for g in gap_rows(h))


def test_the_sweep_checks_all_history(h: Harness, sim: RunningSimulator) -> None:
    admin(
        sim.url,
        "faults",
        {
            "holes": [
                {
                    "symbol": "BTCUSDT",
                    "start_ms": NOV + 3_600_000 * 5,
                    "end_ms": NOV + 3_600_000 * 7,
                }
            ]
        },
    )
    assert h.run_months("BTC-USDT-SPOT:1h", "2026-10", "2026-11").success
    btc = Series("binance", "BTC-USDT-SPOT", "1h")
    h.store.gaps.record(btc, 0, 2**62, [], 3)  # forget what the check saw
    for parts in ("markets_binance_1m", "markets_binance_1h"):
        for key in h.instance.get_dynamic_partitions(parts):
            if key != "BTC-USDT-SPOT:1h":  # never fetched: all of it would be missing
                h.instance.delete_dynamic_partition(parts, key)
    result = gap_sweep_job(h.wl).execute_in_process(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}
    )
    assert result.success
    totals = result.output_for_node("sweep_gaps")
    # Before October nothing was fetched; in November the exchange-side hole (2 hours).
    # One vocabulary: never fetched is "missing", fetched but not returned is "empty".
    assert (totals["open_gaps"], totals["missing"], totals["empty"]) == (
        2,
        (OCT - JAN) // 3_600_000,
        2,
    )
    assert [(g["gap_start"], g["kind"], g["status"]) for g in gap_rows(h)] == [
        (JAN, "missing", "open"),
        (NOV + 3_600_000 * 5, "empty", "open"),
    ]


def test_a_freshness_runs_gap_check_detects_its_last_day_and_counts_what_was_recorded(
    h: Harness, sim: RunningSimulator
) -> None:
    """A freshness run judges the year in progress without reading it: it detects the last
    day (checks.TAIL_MS) and counts what earlier detections recorded; the sweep reads all."""
    hour = 3_600_000
    closed = NOW_MS - NOW_MS % hour
    hole = {
        "symbol": "BTCUSDT",
        "start_ms": closed - 10 * 24 * hour,
        "end_ms": closed - 10 * 24 * hour + 2 * hour,
    }
    admin(sim.url, "faults", {"holes": [hole]})
    first = h.run("BTC-USDT-SPOT:1h|2026")
    assert h.check_result(first).metadata["empty_candles"].value == 2  # recorded by the backfill
    lost = [
        (closed - 5 * hour, closed - 3 * hour),
        (closed - 5 * 24 * hour, closed - 5 * 24 * hour + 3 * hour),
    ]
    with h.store.engine.begin() as conn:
        for lo, hi in lost:  # two hours in the last day, three five days ago
            conn.execute(
                sa.text("DELETE FROM candles WHERE symbol = 'BTC-USDT-SPOT' AND timeframe = '1h' "
                        "AND ts >= :lo AND ts < :hi"),
                {"lo": lo, "hi": hi},
            )  # fmt: skip
    fresh = h.run("BTC-USDT-SPOT:1h|2026", tags={FRESHNESS_TAG: "binance"})
    check = h.check_result(fresh)
    # the old hole as recorded, the two lost hours of the last day found; five days ago unseen
    assert check.metadata["open_gaps"].value == 2
    assert check.metadata["empty_candles"].value + check.metadata["missing_candles"].value == 4
    totals = sweep(h)  # the daily sweep reads the whole history: the three hours too
    btc = [g for g in gap_rows(h) if g["symbol"] == "BTC-USDT-SPOT" and g["status"] == "open"]
    assert sorted(g["gap_end"] - g["gap_start"] for g in btc) == [2 * hour, 2 * hour, 3 * hour]
    assert totals["open_gaps"] >= 3


def sweep(h: Harness) -> dict:
    result = gap_sweep_job(h.wl).execute_in_process(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}
    )
    assert result.success
    return result.output_for_node("sweep_gaps")


def test_months_a_backfill_in_flight_has_not_reached_are_not_gaps(h: Harness) -> None:
    """A grouped backfill (one ranged run over several markets) is running: the sweep leaves
    its markets alone and the repair sensor does not chase their months; the one market no
    run covers is swept and repaired as ever."""
    assert h.run_months("BTC-USDT-SPOT:1h", "2026-10", "2026-11").success
    hours = h.instance.get_dynamic_partitions("markets_binance_1h")
    minutes = h.instance.get_dynamic_partitions("markets_binance_1m")
    assert hours[-1] == "BTC-USDT-SPOT:1h"  # the watchlist's order
    order = [*minutes, *hours]
    assert sweep(h)["open_gaps"] == 5  # nothing runs: every never-fetched month is missing
    for tf, first, last in (("1m", minutes[0], minutes[-1]), ("1h", hours[0], hours[-2])):
        running = dg.DagsterRun(
            job_name="__ASSET_JOB",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            asset_selection=frozenset({h.assets[tf].key}),
            tags=range_tags((first, "2026"), (last, "2026")),
        )
        h.instance.add_run(running)
    requests = tick(h)
    assert {split_partition_key(r.partition_key)[0] for r in requests} == {"BTC-USDT-SPOT:1h"}
    h.store.gaps.record(Series("binance", "BTC-USDT-SPOT", "1h"), 0, 2**62, [], 3)
    for key in order[:-1]:  # forget every gap
        market = h.wl.market_or_default("binance", key)
        h.store.gaps.record(Series.of(market), 0, 2**62, [], 3)
    totals = sweep(h)
    assert totals["markets"] == 1 and totals["open_gaps"] == 1
    assert {g["symbol"] for g in gap_rows(h) if g["status"] == "open"} == {"BTC-USDT-SPOT"}


@pytest.mark.parametrize(
    ("breaks", "first", "last", "expected"),
    [
        ([], None, None, [(0, 10)]),
        ([], 0, 9, []),
        ([(2, 5)], 0, 9, [(3, 5)]),
        ([], 2, 7, [(0, 2), (8, 10)]),
    ],
)
def test_holes_from_breaks(
    breaks: list, first: int | None, last: int | None, expected: list
) -> None:
    assert holes_from_breaks(0, 10, 1, first, last, breaks) == expected


def test_classify_splits_at_coverage_edges() -> None:
    assert classify([(0, 10)], [(3, 6)]) == [
        Hole(0, 3, "missing"),
        Hole(3, 6, "empty"),
        Hole(6, 10, "missing"),
    ]
    assert classify([(0, 4), (4, 8)], []) == [Hole(0, 8, "missing")]  # adjacent gaps merge


def test_repair_ranges_coalesce_by_page() -> None:
    assert repair_ranges([(0, 10), (50, 60), (120, 130), (400, 410)], 100) == [
        (0, 60),
        (120, 130),
        (400, 410),
    ]


def test_not_whole_leaves_out_the_months_whose_candles_are_all_stored() -> None:
    jan, feb = month_bounds("2024-01-01"), month_bounds("2024-02-01")
    whole_jan = {jan[0]: 31 * 24 * 60}
    assert not_whole(jan[0] + 5, feb[1], MIN, whole_jan) == [(feb[0], feb[1])]
    assert not_whole(jan[0] + 5, feb[1], MIN, {jan[0]: 31 * 24 * 60 - 1}) == [(jan[0] + 5, feb[1])]
    assert not_whole(0, 2**62, MIN, whole_jan) == [(0, jan[0]), (jan[1], 2**62)]
    assert not_whole(jan[0], jan[1], 3_600_000, {jan[0]: 31 * 24}) == []
    # a week does not divide a month: nothing is skipped
    assert not_whole(jan[0], jan[1], 7 * 86_400_000, {jan[0]: 5}) == [jan]
    assert not_whole(5, 5, MIN, whole_jan) == []


def test_a_month_lacking_only_its_settled_holes_is_whole() -> None:
    jan, feb = month_bounds("2024-01-01"), month_bounds("2024-02-01")
    minutes = 31 * 24 * 60
    settled = [(jan[0] + 10 * MIN, jan[0] + 40 * MIN), (jan[1] - 5 * MIN, feb[0] + 5 * MIN)]
    stored = {jan[0]: minutes - 35, feb[0]: 29 * 24 * 60 - 5}
    assert not_whole(jan[0], feb[1], MIN, stored, settled) == []
    stored[feb[0]] -= 1  # one more missing in February: February is read
    assert not_whole(jan[0], feb[1], MIN, stored, settled) == [feb]
    assert joined([Hole(5, 9, "empty"), Hole(0, 5, "empty"), Hole(9, 12, "missing")]) == [
        Hole(0, 9, "empty"),
        Hole(9, 12, "missing"),
    ]
