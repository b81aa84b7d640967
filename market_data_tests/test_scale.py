"""A whole exchange's worth of markets (the simulator's --extra-pairs): the watchlist sensor
adds them in one tick and backfills them in few runs, each many markets under one rate
budget, submitted a bounded number per tick (bench/scale.py measures the full size)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import ccxt
import dagster as dg
import pytest

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import (
    RANGE_END,
    RANGE_START,
    split_partition_key,
    timeframe_of,
)
from market_data.defs.candles.sensors import RUNS_PER_TICK, watchlist_sensor
from market_data.defs.instruments.assets import instruments_asset
from market_data.defs.reports.status import DagsterActivity
from market_data.defs.resources import STORE_KEY
from market_data.domain.backfills import PAGES_PER_RUN, PARTITIONS_PER_RUN
from market_data.domain.watchlist import Watchlist, parse_watchlist
from market_data.simulator.book import Clock
from market_data.simulator.server import RunningSimulator, Simulator
from market_data_tests.candle_harness import Harness, watchlist
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import add_markets

TODAY = date(2026, 11, 21)
BASES = 300  # 300 spot pairs + 150 perpetuals besides the simulator's own markets


@pytest.fixture(scope="module")
def exchange() -> Iterator[RunningSimulator]:
    server = RunningSimulator(Simulator(clock=Clock(fixed_ms=NOW_MS), extra_pairs=BASES)).start()
    yield server
    server.stop()


def whole_exchange(url: str, timeframes: list[str], kinds: list[str] | None = None) -> Watchlist:
    select = {"quote": "USDT", "timeframes": timeframes, **({"type": kinds} if kinds else {})}
    data = {"start": "2024-01-01", "exchanges": {"binance": {
        "base_url": url, "rate_limit_ms": 0, "step_retries": 0, "markets": [],
        "select": [select],
    }}}  # fmt: skip
    return parse_watchlist(data, frozenset(ccxt.exchanges), TODAY)


def tick(h: Harness, wl: Watchlist, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=h.instance, resources={STORE_KEY: h.resources[STORE_KEY]}, cursor=cursor
    ) as ctx:
        result = watchlist_sensor(wl)(ctx)
    for req in result.dynamic_partitions_requests:  # as the daemon applies them
        if isinstance(req, dg.AddDynamicPartitionsRequest):
            h.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        else:
            for key in req.partition_keys:
                h.instance.delete_dynamic_partition(req.partitions_def_name, key)
    return result


def orders(h: Harness, wl: Watchlist) -> dict[str, list[str]]:
    """Each timeframe asset's markets, in partition order."""
    return {
        tf.code: list(h.instance.get_dynamic_partitions(f"markets_binance_{tf.code}"))
        for tf in wl.timeframes_of("binance")
    }


def rectangle(orders: dict[str, list[str]], run: dg.RunRequest) -> tuple[list[str], str, str]:
    """A run's markets (of its timeframe's asset) and its first and last year."""
    (first, first_year), (last, last_year) = (
        split_partition_key(run.tags[t]) for t in (RANGE_START, RANGE_END)
    )
    order = orders[timeframe_of(first)]
    assert run.asset_selection == [dg.AssetKey(["candles", "binance", timeframe_of(first)])]
    return order[order.index(first) : order.index(last) + 1], first_year, last_year


@pytest.fixture
def h(exchange: RunningSimulator, tmp_path: Path) -> Harness:
    """The whole exchange watched at 1m and 1h, its catalog loaded, nothing added yet."""
    wl = whole_exchange(exchange.url, ["1m", "1h"])
    h = Harness(wl, f"sqlite:///{tmp_path}/scale.sqlite", dg.DagsterInstance.ephemeral())
    dg.materialize([instruments_asset("binance")], instance=h.instance, resources=h.resources)
    return h


def drain(h: Harness, wl: Watchlist, cursor: str) -> list[dg.RunRequest]:
    """The runs of the ticks after the first, until no backfill waits; none adds a market."""
    runs: list[dg.RunRequest] = []
    while json.loads(cursor).get("pending"):
        more = tick(h, wl, cursor)
        assert not any(
            isinstance(r, dg.AddDynamicPartitionsRequest) for r in more.dynamic_partitions_requests
        )
        assert len(more.run_requests) <= RUNS_PER_TICK
        runs += more.run_requests
        cursor = more.cursor
    return runs


def test_a_whole_exchange_is_added_in_one_tick_and_backfilled_in_few_runs(h: Harness) -> None:
    first = tick(h, h.wl, None)
    by_tf = orders(h, h.wl)
    order = [k for keys in by_tf.values() for k in keys]
    assert len(by_tf["1m"]) == len(by_tf["1h"]) > BASES  # every active USDT market, in one tick
    assert len(first.run_requests) == RUNS_PER_TICK  # bounded: the rest wait in the cursor
    pending = json.loads(first.cursor)["pending"]["binance"]
    runs = list(first.run_requests) + drain(h, h.wl, first.cursor)
    assert len(runs) == RUNS_PER_TICK + len(pending)
    assert len(runs) < len(order) / 4  # few runs: many markets each
    # every new market in exactly one run (of its timeframe's asset); a run's years reach
    # from its markets' first to this year; each run is about PAGES_PER_RUN pages and at
    # most PARTITIONS_PER_RUN partitions (one market alone may be more)
    this_year = datetime.now(UTC).year
    covered: list[str] = []
    for run in runs:
        markets, first_year, last_year = rectangle(by_tf, run)
        covered += markets
        assert int(last_year) == this_year and first_year >= "2024"
        years = this_year - int(first_year) + 1
        assert len(markets) * years <= PARTITIONS_PER_RUN or len(markets) == 1
        # each partition's own checks (not `recent`, a large freshness run's summary); the
        # consistency of a timeframe above 1m follows in a run of its own (test_composite)
        assert {k.name for k in run.asset_check_keys or []} == {"no_gaps", "fresh"}
    assert sorted(covered) == sorted(order)
    assert all(pages <= PAGES_PER_RUN or markets == 1 for *_, markets, pages in pending)


def test_a_market_removed_while_its_backfill_waits_is_left_out_of_it(h: Harness) -> None:
    first = tick(h, h.wl, None)
    before = orders(h, h.wl)
    submitted = [m for run in first.run_requests for m in rectangle(before, run)[0]]
    # every 1m series out (its asset with it), and every perpetual
    hourly = whole_exchange(h.wl.exchanges[0].base_url or "", ["1h"], ["spot"])
    runs = drain(h, hourly, first.cursor)
    order = orders(h, hourly)["1h"]
    assert order and all(k.endswith("-SPOT:1h") for k in order)
    assert len(order) < len(before["1h"])
    later = [m for run in runs for m in rectangle(orders(h, hourly), run)[0]]  # ends exist
    assert later and all(k.endswith("-SPOT:1h") for k in later)
    # each 1h market in exactly one run: the first tick's, or one that waited
    hourly_first = [k for k in submitted if k.endswith("-SPOT:1h")]
    assert sorted(hourly_first + later) == sorted(order)


def test_the_status_names_each_markets_last_materialization_however_many_came_since() -> None:
    """A freshness run of a whole exchange adds thousands of materializations at once: a
    market materialized before them keeps its time in the report."""
    wl = watchlist("http://127.0.0.1:1", ["BTC/USDT/1d", "ETH/USDT/1d"], start="2025-01-01")
    instance = dg.DagsterInstance.ephemeral()
    add_markets(instance, "binance", ["BTC-USDT-SPOT:1d", "ETH-USDT-SPOT:1d"])
    key = candle_asset_key("binance", "1d")
    instance.report_runless_asset_event(
        dg.AssetMaterialization(key, partition="BTC-USDT-SPOT:1d|2025")
    )
    for _ in range(1_001):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(key, partition="ETH-USDT-SPOT:1d|2026")
        )
    latest = DagsterActivity(instance, wl).last_materialized("binance")
    assert sorted(latest) == ["BTC-USDT-SPOT:1d", "ETH-USDT-SPOT:1d"]
    assert latest["BTC-USDT-SPOT:1d"] <= latest["ETH-USDT-SPOT:1d"]
