"""The runs the command line launches: backfills and repairs (the same materializations the
UI launches, one ranged run per market and year, each followed by the gap check) and
check-only runs, recorded in the Dagster instance (DAGSTER_HOME)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.checks import gap_check, gap_check_job
from market_data.defs.candles.partitions import (
    MONTHS_PER_RUN,
    SOURCE_TAG,
    market_partitions,
    range_tags,
)
from market_data.domain.calendar import month_keys, ms_day
from market_data.domain.watchlist import Market, Watchlist
from market_data.store.candles import CandleStore
from market_data.store.series import Series


@dataclass(frozen=True)
class RunPlan:
    market: Market
    months: list[str]  # month partition keys, in order
    not_before: date
    not_after: date | None

    @property
    def tags(self) -> dict[str, str]:
        return {
            **range_tags((self.market.key, self.months[0]), (self.market.key, self.months[-1])),
            SOURCE_TAG: "cli",
        }


def plan(
    markets: list[Market],
    start: date,
    end: date | None,
    resume_from: Callable[[Market], date | None] | None = None,
) -> list[RunPlan]:
    """Runs of at most MONTHS_PER_RUN months per market; with ``resume_from``, each market
    starts at the day its newest stored candle falls on."""
    today = datetime.now(UTC).date()
    plans = []
    for market in markets:
        first = start
        if resume_from is not None:
            first = max(start, resume_from(market) or start)
        months = month_keys(first, min(end, today) if end else today)
        for i in range(0, len(months), MONTHS_PER_RUN):
            plans.append(RunPlan(market, months[i : i + MONTHS_PER_RUN], first, end))
    return plans


def newest_stored_day(store: CandleStore) -> Callable[[Market], date | None]:
    def newest(market: Market) -> date | None:
        last = store.last_ts(Series.of(market))
        return None if last is None else ms_day(last)

    return newest


def execute(
    plans: list[RunPlan],
    watchlist: Watchlist,
    resources: dict[str, dg.ConfigurableResource],
    instance: dg.DagsterInstance,
    echo: Callable[[str], None],
    config: dict[str, Any] | None = None,
) -> bool:
    """Run the plans in order; returns whether every run succeeded."""
    ok = True
    by_exchange: dict[str, dg.AssetsDefinition] = {}
    for i, p in enumerate(plans, 1):
        exchange = p.market.exchange
        if exchange not in by_exchange:
            by_exchange[exchange] = candle_asset(exchange, watchlist)
        _ensure_partition(instance, p.market)
        echo(f"[{i}/{len(plans)}] {exchange} {p.market.key} {p.months[0][:7]}..{p.months[-1][:7]}")
        run_config = {
            "not_before": p.not_before.isoformat(),
            "not_after": p.not_after.isoformat() if p.not_after else None,
            **(config or {}),
        }
        result = dg.materialize(
            # the gap check follows every run that writes (a dry run records nothing)
            [
                by_exchange[exchange],
                *([] if run_config.get("dry_run") else [gap_check(exchange, watchlist)]),
            ],
            instance=instance,
            resources=resources,
            tags=p.tags,
            raise_on_error=False,
            run_config={
                "ops": {by_exchange[exchange].op.name: {"config": run_config}},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
        )
        if not result.success:
            ok = False
            echo(f"      FAILED (run {result.run_id}): see the Dagster UI for its logs")
            continue
        meta = result.asset_materializations_for_node(by_exchange[exchange].op.name)[0].metadata
        value = {k: v.value for k, v in meta.items()}
        echo(
            f"      {value['rows_written']} rows written, {value['candles_fetched']} fetched, "
            f"{value['requests']} requests, {value['missing']} missing "
            f"({value['seconds']:.1f}s, run {result.run_id[:8]})"
        )
    return ok


def check_gaps(
    market: Market,
    watchlist: Watchlist,
    resources: dict[str, dg.ConfigurableResource],
    instance: dg.DagsterInstance,
) -> dg.AssetCheckEvaluation | None:
    """The gap check over every month of one market: a check-only Dagster run."""
    exchange = market.exchange
    months = month_keys(market.start, datetime.now(UTC).date())
    defs = dg.Definitions(
        assets=[candle_asset(exchange, watchlist)],
        asset_checks=[gap_check(exchange, watchlist)],
        jobs=[gap_check_job(exchange, watchlist)],
        resources=resources,
    )
    _ensure_partition(instance, market)
    tags = range_tags((market.key, months[0]), (market.key, months[-1]))
    result = defs.resolve_job_def(f"check_gaps_{exchange}").execute_in_process(
        instance=instance, tags={**tags, SOURCE_TAG: "cli"}, raise_on_error=False
    )
    evaluations = result.get_asset_check_evaluations()
    return evaluations[0] if evaluations else None


def _ensure_partition(instance: dg.DagsterInstance, market: Market) -> None:
    parts = market_partitions(market.exchange).name
    if not instance.has_dynamic_partition(parts, market.key):
        instance.add_dynamic_partitions(parts, [market.key])
