"""A whole exchange: the simulator's --extra-pairs as Binance's ~2,500 spot and USD-M markets,
watched at 6 timeframes (1m, 5m, 15m, 1h, 4h, 1d) from a year ago.

The simulator is a process of its own with Binance's real limits (6,000 weight a minute,
klines weight 2) and 100 ms of latency. The Dagster instance and the candle store are
PostgreSQL databases of the bench's own. Measured, in process (no daemon, no webserver):

- the watchlist sensor: its first tick (every market new: partitions added, backfill runs
  planned, the first RUNS_PER_TICK submitted), the ticks that submit the rest, one with
  nothing new; the partitions of each candle asset (candles/binance/<timeframe>: market x
  year) and what the month layout before it gave;
- a sample of the planned backfill runs executed as the daemon would run them (the asset
  and its checks, in process: a launched run adds its process start, ~3 s): wall time,
  pages, and the weight spent while fetching against Binance's 100 a second;
- freshness runs of the 1d asset (every market of one timeframe, the year in progress;
  its history stored by a run of the bench's own first, outside the timing), each a day
  later: with the `recent` check a run of that size carries, then with the two
  partitioned checks smaller ones carry, then `recent` again;
- then the freshness and gap-repair ticks, the status report (as `market-data status`
  collects it), and /metrics from a collected report and from the report in memory.

    python bench/scale.py [BASES]     # default 1667 bases: ~2,500 markets; DATABASE_URL
    SCALE_SAMPLE_RUNS=0 python bench/scale.py     # without the sample backfill runs
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import ccxt
import dagster as dg
from common import (  # bench/, on sys.path as a script
    admin,
    instance_on,
    scratch_database,
    simulator,
    timed,
)
from prometheus_client import generate_latest

from market_data.api.app import Sources, StatusApi
from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.checks import (
    FRESHNESS_CHECKS_MAX,
    fresh_check,
    gap_check,
    recent_check,
)
from market_data.defs.candles.partitions import (
    FRESHNESS_TAG,
    RANGE_END,
    RANGE_START,
    timeframe_of,
)
from market_data.defs.candles.sensors import freshness_sensor, gap_repair_sensor, watchlist_sensor
from market_data.defs.instruments.assets import instruments_asset
from market_data.defs.reports.status import DagsterActivity
from market_data.defs.resources import STORE_KEY, build_resources
from market_data.domain.calendar import month_keys, year_keys
from market_data.domain.watchlist import parse_watchlist
from market_data.pipeline.status import collect_status
from market_data.store.candles import CandleStore

warnings.simplefilter("ignore")
START = "2026-11-20T12:00:00+00:00"
TODAY = date(2026, 11, 20)
TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h", "1d"]
SAMPLE_RUNS = 2
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main(bases: int) -> None:
    with (
        simulator(START, "--extra-pairs", str(bases)) as url,
        scratch_database("md_bench_scale_store") as store_url,
        scratch_database("md_bench_scale_dagster") as dagster_url,
        tempfile.TemporaryDirectory() as home,
    ):
        admin(url, "faults", {"latency_ms": 100})
        os.environ["DATABASE_URL"] = store_url
        data = {"start": "2025-12-01", "exchanges": {"binance": {
            "base_url": url, "markets": [],
            "select": [{"quote": "USDT", "timeframes": TIMEFRAMES}],
        }}}  # fmt: skip
        wl = parse_watchlist(data, frozenset(ccxt.exchanges), TODAY)
        instance = instance_on(dagster_url, Path(home))
        resources = build_resources(wl)
        store = CandleStore(store_url)
        dg.materialize(
            [instruments_asset("binance")], instance=instance, resources=resources,
            run_config=QUIET,
        )  # fmt: skip
        markets = len(store.instruments.stored("binance"))

        def tick(sensor: dg.SensorDefinition, cursor: str | None = None) -> tuple:
            with dg.build_sensor_context(
                instance=instance, resources={STORE_KEY: resources[STORE_KEY]}, cursor=cursor
            ) as ctx:
                result, seconds = timed(sensor, ctx)
            if isinstance(result, dg.SensorResult):
                for req in result.dynamic_partitions_requests or []:
                    instance.add_dynamic_partitions(
                        req.partitions_def_name, list(req.partition_keys)
                    )
            return result, seconds

        watch = watchlist_sensor(wl)
        first, first_s = tick(watch)
        per_tf = {
            tf: list(instance.get_dynamic_partitions(f"markets_binance_{tf}")) for tf in TIMEFRAMES
        }
        series = sum(len(keys) for keys in per_tf.values())
        months = len(month_keys(date(2025, 12, 1), TODAY))
        years = len(year_keys(date(2025, 12, 1), TODAY))
        eight_years = max(len(k) for k in per_tf.values()) * 8
        pending = len(json.loads(first.cursor)["pending"].get("binance", []))
        runs, cursor, later = list(first.run_requests), first.cursor, []
        while json.loads(cursor).get("pending"):
            more, seconds = tick(watch, cursor)
            runs += more.run_requests
            cursor, later = more.cursor, [*later, seconds]
        _, idle_s = tick(watch, cursor)
        print(f"{markets} USDT markets in the catalog, {series} series (x {len(TIMEFRAMES)} "
              f"timeframes): each candle asset (one per timeframe) has "
              f"{max(len(k) for k in per_tf.values()) * years:,} partitions ({years} years; "
              f"8 years: {eight_years:,}); the month layout had {series * months:,} in one "
              f"asset ({months} months)")  # fmt: skip
        print(f"watchlist tick, all new: {first_s:.2f} s ({len(first.run_requests)} runs "
              f"submitted, {pending} waiting); {len(later)} more ticks submit them, the "
              f"slowest {max(later, default=0):.2f} s; a tick with nothing new: {idle_s:.2f} s; "
              f"{len(runs)} backfill runs in all for {series} series")  # fmt: skip

        assets = {tf: candle_asset("binance", tf, wl) for tf in TIMEFRAMES}
        checks = {tf: [gap_check("binance", tf, wl), fresh_check("binance", tf, wl)]
                  for tf in TIMEFRAMES}  # fmt: skip
        for run in runs[: int(os.environ.get("SCALE_SAMPLE_RUNS", SAMPLE_RUNS))]:
            tags = {t: run.tags[t] for t in (RANGE_START, RANGE_END)}
            tf = timeframe_of(tags[RANGE_START].split("|")[0])
            asset = assets[tf]
            began = time.time()
            result, seconds = timed(
                lambda tags=tags, selected=[asset, *checks[tf]]: dg.materialize(
                    selected, instance=instance, resources=resources, tags=tags,
                    run_config=QUIET, raise_on_error=False,
                )
            )  # fmt: skip
            rows = [r for r in admin(url, "timeline") if r["t"] >= began]
            parts = len(result.asset_materializations_for_node(asset.op.name))
            refused = sum(1 for r in rows if r["status"] in (418, 429))
            fetched, spans = [], []
            for family, limit in (("/api/v3/klines", 100), ("/fapi/v1/klines", 40)):
                pages = [r for r in rows if r["path"] == family and r["status"] == 200]
                if len(pages) > 1:
                    span = pages[-1]["t"] - pages[0]["t"]
                    spans.append((pages[0]["t"], pages[-1]["t"]))
                    weight = sum(r["weight"] for r in pages) / span
                    fetched.append(f"{len(pages)} {family.split('/')[1]} pages in {span:.1f} s "
                                   f"at {weight:.1f} weight/s of {limit} ({weight / limit:.0%})")  # fmt: skip
            fetching = max(e for _, e in spans) - min(b for b, _ in spans) if spans else 0.0
            print(f"backfill run of {run.tags['market_data/reason']} ({parts} partitions): "
                  f"{seconds:.1f} s, {1 - fetching / seconds:.0%} of it not fetching; "
                  f"{'; '.join(fetched)}; {refused} refused; "
                  f"success {result.success}")  # fmt: skip

        # a freshness run of the 1d asset (every market, the year in progress): the first one
        # fetches the month in progress of every market; the timed ones, each a day later,
        # what a freshness run fetches (the newest candle), with the checks a freshness run of
        # this size carries (`recent`, one result) and, for comparison, with the two
        # partitioned checks (one result per partition each) that smaller ones carry
        daily = per_tf["1d"]
        span = {RANGE_START: f"{daily[0]}|{TODAY.year}", RANGE_END: f"{daily[-1]}|{TODAY.year}",
                FRESHNESS_TAG: "binance"}  # fmt: skip
        carried = [recent_check("binance", "1d", wl)]
        assert len(daily) > FRESHNESS_CHECKS_MAX
        for timing, selected in ((None, carried), ("recent", carried),
                                 ("fresh + no_gaps per partition", checks["1d"]),
                                 ("recent", carried)):  # fmt: skip
            if timing:
                admin(url, "clock", {"advance_ms": 86_400_000})  # a day later: one new candle
            began = time.time()
            result, seconds = timed(
                lambda selected=selected: dg.materialize(
                    [assets["1d"], *selected], instance=instance, resources=resources,
                    tags=span, run_config=QUIET, raise_on_error=False,
                )
            )  # fmt: skip
            if timing:
                rows = [r for r in admin(url, "timeline") if r["t"] >= began and r["status"] == 200]
                print(
                    f"freshness run of candles/binance/1d ({len(daily)} markets, one partition "
                    f"each), checks {timing}: {seconds:.1f} s, {len(rows)} requests, "
                    f"success {result.success}"
                )

        for sensor in (freshness_sensor(wl), gap_repair_sensor(wl)):
            _, seconds = tick(sensor)
            print(f"{sensor.name} tick: {seconds:.2f} s")
        activity = DagsterActivity(instance, wl)
        report, status_s = timed(collect_status, store, activity, wl)
        print(f"status report ({len(report.markets)} series): {status_s:.2f} s")
        api = StatusApi(
            Sources(store, lambda: DagsterActivity(instance, wl), wl, report_max_age_s=60)
        )
        body, cold_s = timed(generate_latest, api.registry)
        _, warm_s = timed(generate_latest, api.registry)
        print(f"/metrics: {len(body) / 1e6:.2f} MB; {cold_s:.2f} s collecting the report, "
              f"{warm_s:.3f} s from the report in memory")  # fmt: skip
        store.dispose()
        instance.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1667)
