"""The status report's view of Dagster: the markets (dynamic partitions), their latest
materializations and the runs of the last day, read from the instance (pipeline/status.py
collects the rest)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import (
    FRESHNESS_TAG,
    market_of,
    market_partitions,
    markets_of_run,
)
from market_data.defs.runs import run_exchange
from market_data.domain.calendar import utc_text
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.status import StatusReport, collect_status
from market_data.store.candles import CandleStore


class DagsterActivity:
    """pipeline.status.Activity over a Dagster instance."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self._runs: list[dg.DagsterRun] | None = None

    def markets(self, exchange: str) -> list[str]:
        return list(self.instance.get_dynamic_partitions(market_partitions(exchange).name))

    def last_materialized(self, exchange: str, limit: int = 1000) -> dict[str, str]:
        """From the exchange's newest ``limit`` materializations (newest first)."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=candle_asset_key(exchange)), limit=limit
        )
        latest: dict[str, str] = {}
        for record in records.records:
            event = record.event_log_entry.dagster_event
            partition = event.partition if event is not None else None
            if partition is not None:
                latest.setdefault(
                    market_of(str(partition)), utc_text(record.timestamp * 1000) or ""
                )
        return latest

    def runs_24h(self, exchange: str, markets: set[str]) -> dict[str, int]:
        """Runs naming one of the exchange's markets, or its freshness runs."""
        if self._runs is None:
            since = datetime.fromtimestamp(time.time() - timedelta(hours=24).total_seconds(), UTC)
            self._runs = list(self.instance.get_runs(filters=dg.RunsFilter(created_after=since)))
        counts: dict[str, int] = {}
        order = self.markets(exchange)
        for run in self._runs:
            if run_exchange(run) not in (exchange, None):
                continue
            if run.tags.get(FRESHNESS_TAG) == exchange or markets_of_run(run.tags, order) & markets:
                counts[run.status.value] = counts.get(run.status.value, 0) + 1
        return counts


def dagster_status(
    store: CandleStore, instance: dg.DagsterInstance, watchlist: Watchlist
) -> StatusReport:
    return collect_status(store, DagsterActivity(instance), watchlist)
