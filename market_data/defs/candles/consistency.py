"""The ``consistency`` sensor: each finished watchlist backfill of a timeframe above 1m is
followed by its ``consistent_timeframes`` check, in a run of its own.

The check aggregates each market's year of 1m candles (seconds per market-year). Inside the
backfill run it held the exchange's one backfill slot (dagster.yaml) while the exchange's
rate budget sat idle: bench/addition.py used under half of the klines ceiling. Its own run
selects the check alone (no asset: no exchange pool slot, no backfill tag) over the backfill
run's partitions, at low priority and one at a time per exchange, so freshness, repairs and
the next backfill go first. The watchlist queues a new market's 1m backfill before its
higher timeframes (shortest first), so the 1m candles the check compares against are stored
by then; a span whose 1m candles are missing is reported as not checkable, never as a
mismatch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from datetime import UTC, datetime

import dagster as dg

from market_data.defs.candles.checks import consistency_check_key, has_consistency_check
from market_data.defs.candles.partitions import (
    BACKFILL_TAG,
    CONSISTENCY_TAG,
    LOW_PRIORITY,
    PARTITION_TAG,
    RANGE_END,
    RANGE_START,
    REASON_TAG,
    WILL_RETRY_TAG,
    market_of,
    timeframe_of,
)
from market_data.domain.watchlist import Watchlist

#: finished backfill runs read per tick (the rest at the next tick)
RUNS_PER_TICK = 200
#: how far back the cursor is re-read: runs updated within the same instant as the last one
#: read are not lost; those already followed are in the cursor (and a request made twice
#: would launch once: its run key)
OVERLAP_S = 1.0


def consistency_requests(
    runs: Iterable[dg.DagsterRun], checks: Collection[dg.AssetCheckKey]
) -> list[dg.RunRequest]:
    """One check-only run per finished backfill run of a timeframe above 1m, over the same
    partitions, if its asset is still defined (``checks``: the consistency checks defined)."""
    out = []
    for run in runs:
        if run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true":
            continue
        span = {t: run.tags[t] for t in (PARTITION_TAG, RANGE_START, RANGE_END) if t in run.tags}
        if BACKFILL_TAG not in run.tags or not span:
            continue
        # the run's asset, from its tags (a backfill names its exchange; a partition key its
        # timeframe)
        exchange, timeframe = (
            run.tags[BACKFILL_TAG],
            timeframe_of(market_of(next(iter(span.values())))),
        )
        check = consistency_check_key(exchange, timeframe)
        if not has_consistency_check(timeframe) or check not in checks:
            continue  # 1m (the reference), or a timeframe the watchlist no longer has
        out.append(
            dg.RunRequest(
                run_key=f"consistency:{run.run_id}",
                asset_selection=[],
                asset_check_keys=[check],
                tags={
                    **span,
                    REASON_TAG: f"consistency after backfill run {run.run_id[:8]}",
                    CONSISTENCY_TAG: exchange,
                    **LOW_PRIORITY,
                },
            )
        )
    return out


def consistency_sensor(watchlist: Watchlist) -> dg.SensorDefinition | None:
    """The sensor, or None when no watched timeframe is above 1m."""
    exchanges = [ex.name for ex in watchlist.exchanges]
    checks = [
        consistency_check_key(ex, tf.code)
        for ex in exchanges
        for tf in watchlist.timeframes_of(ex)
        if has_consistency_check(tf.code)
    ]
    if not checks:
        return None

    @dg.sensor(
        name="consistency",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=dg.AssetSelection.checks(*checks),
        description="After each watchlist backfill run of a timeframe above 1m: its "
        "consistent_timeframes check over the same partitions, in a check-only run of low "
        "priority (one at a time per exchange), so the backfill queue never waits for it.",
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        # the newest update time read, and the runs read within OVERLAP_S of it
        cursor = json.loads(context.cursor) if context.cursor else {"t": time.time(), "ids": []}
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
                tags={BACKFILL_TAG: exchanges},
                updated_after=datetime.fromtimestamp(cursor["t"] - OVERLAP_S, UTC),
            ),
            limit=RUNS_PER_TICK,
            order_by="update_timestamp",
            ascending=True,
        )
        seen = set(cursor["ids"])
        new = [r for r in records if r.dagster_run.run_id not in seen]
        newest = max([cursor["t"], *(r.update_timestamp.timestamp() for r in records)])
        recent = [
            r.dagster_run.run_id
            for r in records
            if r.update_timestamp.timestamp() >= newest - OVERLAP_S
        ]
        return dg.SensorResult(
            run_requests=consistency_requests((r.dagster_run for r in new), checks),
            cursor=json.dumps({"t": newest, "ids": recent}),
        )

    return sensor
