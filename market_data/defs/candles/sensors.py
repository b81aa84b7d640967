"""Sensors that keep the candle partitions in step with the watchlist."""

import dagster as dg

from market_data.defs.candles.partitions import market_partitions
from market_data.domain.watchlist import Watchlist


def watchlist_partitions_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    """Adds a dynamic partition for every watched market that has none yet."""

    @dg.sensor(
        name="watchlist_partitions",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds the watchlist's markets to each exchange's market partitions.",
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        requests = []
        for ex in watchlist.exchanges:
            parts = market_partitions(ex.name)
            existing = set(context.instance.get_dynamic_partitions(parts.name))
            new = [m.key for m in watchlist.markets_of(ex.name) if m.key not in existing]
            if new:
                requests.append(parts.build_add_request(new))
                context.log.info(f"{ex.name}: adding {len(new)} market(s): {', '.join(new)}")
        if not requests:
            return dg.SkipReason("every watched market has its partitions")
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return sensor
