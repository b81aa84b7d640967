"""The status report's view of Dagster: the markets (dynamic partitions), their latest
materializations and the runs of the last day, read from the instance (pipeline/status.py
collects the rest)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.evaluations import latest_materializations
from market_data.defs.candles.partitions import (
    FRESHNESS_TAG,
    market_of,
    market_partitions,
    markets_of_run,
)
from market_data.defs.queues import DEFAULT_QUEUE, CeleryWatchedRunLauncher, exchange_queue
from market_data.defs.runs import run_asset
from market_data.domain.calendar import utc_text
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.status import StatusReport, collect_status
from market_data.store.candles import CandleStore


class DagsterActivity:
    """pipeline.status.Activity over a Dagster instance, for one report: what it reads
    (the day's runs, each asset's market partitions) is read once and kept for its life."""

    def __init__(self, instance: dg.DagsterInstance, watchlist: Watchlist) -> None:
        self.instance = instance
        self.watchlist = watchlist
        self._runs: list[dg.DagsterRun] | None = None
        self._orders: dict[tuple[str, str], list[str]] = {}

    def _frames(self, exchange: str) -> list[str]:
        return [tf.code for tf in self.watchlist.timeframes_of(exchange)]

    def _order(self, exchange: str, timeframe: str) -> list[str]:
        if (exchange, timeframe) not in self._orders:
            parts = market_partitions(exchange, timeframe).name
            self._orders[exchange, timeframe] = list(self.instance.get_dynamic_partitions(parts))
        return self._orders[exchange, timeframe]

    def markets(self, exchange: str) -> list[str]:
        return [k for tf in self._frames(exchange) for k in self._order(exchange, tf)]

    def last_materialized(self, exchange: str) -> dict[str, str]:
        """Each market's newest materialization, of any of its years (per asset, the newest
        event of each partition and its time: two queries, however many materializations a
        freshness run of a whole exchange adds)."""
        newest: dict[str, float] = {}
        for tf in self._frames(exchange):
            targets = latest_materializations(self.instance, candle_asset_key(exchange, tf), None)
            for pk, target in targets.items():
                market = market_of(pk)
                newest[market] = max(newest.get(market, 0.0), target.timestamp)
        return {m: utc_text(ts * 1000) or "" for m, ts in newest.items()}

    def runs_24h(self, exchange: str, markets: set[str]) -> dict[str, int]:
        """Runs naming one of the exchange's markets, or its freshness runs."""
        if self._runs is None:
            since = datetime.fromtimestamp(time.time() - timedelta(hours=24).total_seconds(), UTC)
            self._runs = list(self.instance.get_runs(filters=dg.RunsFilter(created_after=since)))
        counts: dict[str, int] = {}
        orders = {tf: self._order(exchange, tf) for tf in self._frames(exchange)}
        for run in self._runs:
            asset = run_asset(run)
            if asset is not None and asset[0] != exchange:
                continue
            order = orders.get(asset[1], []) if asset else []
            if run.tags.get(FRESHNESS_TAG) == exchange or markets_of_run(run.tags, order) & markets:
                counts[run.status.value] = counts.get(run.status.value, 0) + 1
        return counts


def dagster_status(
    store: CandleStore, instance: dg.DagsterInstance, watchlist: Watchlist
) -> StatusReport:
    report = collect_status(store, DagsterActivity(instance, watchlist), watchlist)
    launcher = instance.run_launcher
    if isinstance(launcher, CeleryWatchedRunLauncher):
        needed = [exchange_queue(ex.name) for ex in watchlist.exchanges] + [DEFAULT_QUEUE]
        report.workers = launcher.state(needed)
    return report
