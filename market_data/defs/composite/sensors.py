"""The ``composites`` sensor: composite partitions follow their sources. Every candle
materialization (backfill, freshness, repair, command line) since the last tick names a
market and the span it wrote (``written_first``..``written_last``); the composite markets
that market may feed are recomputed for those months, one ranged run per composite market. Recomputing is idempotent, so a partition
requested twice costs one statement and changes nothing."""

import json
from collections import defaultdict

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import (
    REASON_TAG,
    partition_key,
    range_tags,
    split_partition_key,
)
from market_data.defs.composite.assets import COMPOSITE_KEY, cross_of
from market_data.domain.calendar import month_keys_between
from market_data.domain.composite import fed_by
from market_data.domain.watchlist import Watchlist

#: materializations read per exchange and tick (the rest wait for the next tick)
BATCH = 1000


def _written_months(record: dg.EventLogRecord) -> list[str]:
    """The months a candle materialization wrote candles in (none: nothing changed): its
    partition's own span, else its run's (a run too large for per-partition figures)."""
    event = record.asset_materialization
    meta = event.metadata if event is not None else {}
    first, last = meta.get("written_first"), meta.get("written_last")
    if first is None or last is None:
        first, last = meta.get("run_written_first"), meta.get("run_written_last")
    if first is None or last is None:
        return []
    return month_keys_between(int(first.value * 1000), int(last.value * 1000) + 1)


def composite_requests(touched: dict[str, set[str]], stamp: str) -> list[dg.RunRequest]:
    """One ranged run per composite market over the months touched (the range spans the
    months between, which recompute to no change)."""
    return [
        dg.RunRequest(
            run_key=f"composite:{key}:{stamp}",
            asset_selection=[COMPOSITE_KEY],
            tags={**range_tags((key, min(months)), (key, max(months))), REASON_TAG: "sources updated"},
        )
        for key, months in sorted(touched.items())
    ]  # fmt: skip


def composites_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    cross = cross_of(watchlist)

    @dg.sensor(
        name="composites",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[COMPOSITE_KEY],
        description="Recomputes the composite partitions fed by every candle partition "
        "materialized since its last tick (any source exchange, any reason).",
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        touched: dict[str, set[str]] = defaultdict(set)
        for ex in watchlist.exchanges:
            for tf in cross.timeframes:
                asset = f"{ex.name}/{tf.code}"
                records = context.instance.fetch_materializations(
                    dg.AssetRecordsFilter(
                        asset_key=candle_asset_key(ex.name, tf.code),
                        after_storage_id=seen.get(asset),
                    ),
                    limit=BATCH,
                    ascending=True,
                ).records
                for record in records:
                    months = _written_months(record)
                    if record.partition_key is None or not months:
                        continue
                    market_key, _ = split_partition_key(record.partition_key)
                    for composite in fed_by(cross, market_key):
                        touched[composite.key].update(months)
                if records:
                    seen[asset] = records[-1].storage_id
        stamp = str(max(seen.values(), default=0))
        if touched:
            context.log.info(
                "recomputing "
                + ", ".join(partition_key(k, m) for k, months in sorted(touched.items()) for m in sorted(months))
            )  # fmt: skip
        return dg.SensorResult(
            run_requests=composite_requests(touched, stamp), cursor=json.dumps(seen, sort_keys=True)
        )

    return sensor
