"""``reports/status``: the status of every market as asset metadata, so the UI shows it."""

import dagster as dg

from market_data.defs.candles.assets import all_candle_asset_keys
from market_data.defs.reports.status import dagster_status
from market_data.defs.resources import CandleStoreResource
from market_data.domain.watchlist import Watchlist

STATUS_CRON = "*/15 * * * *"


def status_asset(watchlist: Watchlist) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["reports", "status"]),
        group_name="reports",
        deps=all_candle_asset_keys(watchlist),
        kinds={"sql"},
        description="Per market: first and last candle, rows, expected, absent, open gaps "
        "(missing / empty candles), exchange-empty, lag, last materialization; runs in the last "
        "24 hours; database health. The same report as `market-data status` and the HTTP API.",
    )
    def status(
        context: dg.AssetExecutionContext, candle_store: CandleStoreResource
    ) -> dg.MaterializeResult:
        report = dagster_status(candle_store.store(), context.instance, watchlist)
        if not report.database_ok:
            raise dg.Failure(description=f"database unreachable: {report.database_error}")
        return dg.MaterializeResult(
            metadata={
                "markets": dg.MetadataValue.int(len(report.markets)),
                "stale_markets": dg.MetadataValue.int(sum(m.stale for m in report.markets)),
                "open_gaps": dg.MetadataValue.int(sum(m.open_gaps for m in report.markets)),
                "absent_candles": dg.MetadataValue.int(sum(m.absent for m in report.markets)),
                "database_latency_ms": dg.MetadataValue.float(report.database_latency_ms or 0.0),
                "runs_24h": dg.MetadataValue.json(report.runs_24h),
                "status": dg.MetadataValue.md(report.markdown()),
                "stored_candles": dg.MetadataValue.int(report.store.get("candles", 0)),
                **(
                    {"store_advice": dg.MetadataValue.text(report.store["advice"])}
                    if report.store.get("advice")
                    else {}
                ),
            }
        )

    return status


def status_schedule() -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="status_report",
        target=dg.AssetSelection.assets(dg.AssetKey(["reports", "status"])),
        cron_schedule=STATUS_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Refreshes reports/status (per-market coverage, gaps, lag; runs of the last "
        "24 hours; database health) every 15 minutes.",
    )
