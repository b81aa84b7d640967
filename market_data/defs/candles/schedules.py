"""The daily gap sweep: the whole history of every market, checked (one gap-check result per
partition, so the UI shows each year's state); the repair sensor then repairs what it
finds."""

import time
from dataclasses import asdict

import dagster as dg

from market_data.defs.candles.checks import gap_check_key, gap_metadata, partition_evaluation
from market_data.defs.candles.evaluations import latest_materializations
from market_data.defs.candles.partitions import market_partitions, partition_key, timeframe_of
from market_data.defs.resources import CandleStoreResource
from market_data.defs.runs import busy_partitions
from market_data.domain.calendar import day_ms, year_keys_between
from market_data.domain.expected import ALL_TIME
from market_data.domain.gaps import GapCounts
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.gaps import detect


def gap_sweep_job(watchlist: Watchlist) -> dg.JobDefinition:
    @dg.op(description="Gap detection over all stored history.")
    def sweep_gaps(context: dg.OpExecutionContext, candle_store: CandleStoreResource) -> dict:
        store = candle_store.store()
        started = time.monotonic()
        markets, counts = 0, GapCounts()
        # a backfill or repair in flight has not reached all its months yet: what it has not
        # fetched is not a gap (its own checks judge each partition as it ends)
        busy = busy_partitions(context.instance, [ex.name for ex in watchlist.exchanges])
        for ex in watchlist.exchanges:
            fetching = {m for b in busy[ex.name] if not b.freshness for m in b.markets}
            if fetching:
                context.log.info(
                    f"{ex.name}: {len(fetching)} market(s) skipped, a backfill or repair of "
                    "theirs is queued or running"
                )
            keys = [
                key
                for tf in watchlist.timeframes_of(ex.name)
                for key in context.instance.get_dynamic_partitions(
                    market_partitions(ex.name, tf.code).name
                )
            ]
            for key in keys:
                if key in fetching:
                    continue
                market = watchlist.market_or_default(ex.name, key)
                found = detect(store, ex, market, ALL_TIME, watchlist.gaps)
                # every partition of the market's history, each its own result
                until = store.gaps.clock(ex.name) or int(time.time() * 1000)
                since = max(market.start_ms, day_ms(watchlist.start))
                pks = [partition_key(key, y) for y in year_keys_between(since, until + 1)]
                check_key = gap_check_key(ex.name, timeframe_of(key))
                targets = latest_materializations(context.instance, check_key.asset_key, pks)
                for pk in pks:
                    context.log_event(partition_evaluation(check_key, pk, found, targets))
                markets += 1
                counts += found.counts()
                if found.open:
                    context.log.warning(f"{ex.name} {key}: {found.counts().describe()}")
        context.add_output_metadata(
            {
                "markets": dg.MetadataValue.int(markets),
                **gap_metadata(counts),
                "seconds": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            }
        )
        return {"markets": markets, **asdict(counts)}

    @dg.job(name="gap_sweep", description="Checks the whole history of every market for gaps.")
    def job() -> None:
        sweep_gaps()

    return job


def gap_sweep_schedule(watchlist: Watchlist) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="gap_sweep_daily",
        job=gap_sweep_job(watchlist),
        cron_schedule=watchlist.gaps.sweep_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Checks every market's whole history for gaps (the gap_sweep job); the "
        "gap_repair sensor then repairs what it finds.",
    )
