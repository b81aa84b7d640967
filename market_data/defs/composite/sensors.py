"""The ``composites`` sensor: composite partitions follow their sources. Every candle
materialization (backfill, freshness, repair, command line) since the last tick names a
market and a month; the composite markets that market may feed are recomputed for that
month, one ranged run per composite market. Recomputing is idempotent, so a partition
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
from market_data.domain.composite import fed_by
from market_data.domain.watchlist import Watchlist

#: materializations read per exchange and tick (the rest wait for the next tick)
BATCH = 1000


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
            records = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=candle_asset_key(ex.name), after_storage_id=seen.get(ex.name)
                ),
                limit=BATCH,
                ascending=True,
            ).records
            for record in records:
                if record.partition_key is None:
                    continue
                market_key, month = split_partition_key(record.partition_key)
                for composite in fed_by(cross, market_key):
                    touched[composite.key].add(month)
            if records:
                seen[ex.name] = records[-1].storage_id
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
