"""The daily gap sweep: the whole history of every market, checked; the repair sensor then
repairs what it finds."""

import time

import dagster as dg

from market_data.defs.candles.assets import market_for
from market_data.defs.candles.gapwork import FAR_FUTURE, detect
from market_data.defs.candles.partitions import market_partitions
from market_data.defs.resources import STORE_KEY, CandleStoreResource
from market_data.domain.watchlist import Watchlist


def gap_sweep_job(watchlist: Watchlist) -> dg.JobDefinition:
    @dg.op(required_resource_keys={STORE_KEY}, description="Gap detection over all stored history.")
    def sweep_gaps(context: dg.OpExecutionContext) -> dict:
        store_res: CandleStoreResource = getattr(context.resources, STORE_KEY)
        store = store_res.store()
        started = time.monotonic()
        totals = {"markets": 0, "open_gaps": 0, "missing_candles": 0, "exchange_empty_candles": 0}
        for ex in watchlist.exchanges:
            for key in context.instance.get_dynamic_partitions(market_partitions(ex.name).name):
                found = detect(
                    store, market_for(watchlist, ex.name, key), [(0, FAR_FUTURE)], watchlist.gaps
                )
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
    )
