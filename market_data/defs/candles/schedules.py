"""The daily gap sweep: the whole history of every market, checked; the repair sensor then
repairs what it finds."""

import time

import dagster as dg

from market_data.defs.candles.partitions import market_partitions
from market_data.defs.resources import CandleStoreResource
from market_data.domain.expected import ALL_TIME
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.gaps import detect


def gap_sweep_job(watchlist: Watchlist) -> dg.JobDefinition:
    @dg.op(description="Gap detection over all stored history.")
    def sweep_gaps(context: dg.OpExecutionContext, candle_store: CandleStoreResource) -> dict:
        store = candle_store.store()
        started = time.monotonic()
        totals = {"markets": 0, "open_gaps": 0, "missing_candles": 0, "exchange_empty_candles": 0}
        for ex in watchlist.exchanges:
            for key in context.instance.get_dynamic_partitions(market_partitions(ex.name).name):
                market = watchlist.market_or_default(ex.name, key)
                found = detect(store, market, ALL_TIME, watchlist.gaps)
                totals["markets"] += 1
                totals["open_gaps"] += len(found.open)
                totals["missing_candles"] += found.missing_candles
                totals["exchange_empty_candles"] += found.empty_candles
                if found.open:
                    context.log.warning(
                        f"{ex.name} {key}: {len(found.open)} open gap(s), {found.missing_candles} missing"
                    )
        totals["seconds"] = round(time.monotonic() - started, 3)
        context.add_output_metadata(
            {k: dg.MetadataValue.float(float(v)) for k, v in totals.items()}
        )
        return totals

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
