"""The watchlist sensor: watchlist and catalog changes become partitions and backfills."""

from datetime import UTC, date, datetime

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.backfill import RANGE_END, RANGE_START, month_keys
from market_data.defs.candles.partitions import MONTHS_PER_RUN, market_partitions
from market_data.defs.resources import CandleStoreResource
from market_data.domain.selection import Resolution, resolve
from market_data.domain.watchlist import Market, Watchlist


def backfill_requests(
    market: Market, today: date, listed_ms: int | None = None
) -> list[dg.RunRequest]:
    """A new market's history as ranged runs of up to MONTHS_PER_RUN months each."""
    first = market.start
    if listed_ms is not None:
        first = max(first, datetime.fromtimestamp(listed_ms / 1000, UTC).date())
    months = month_keys(first, today)
    requests = []
    for i in range(0, len(months), MONTHS_PER_RUN):
        chunk = months[i : i + MONTHS_PER_RUN]
        requests.append(
            dg.RunRequest(
                run_key=f"backfill:{market.exchange}:{market.key}:{chunk[0]}:{chunk[-1]}",
                asset_selection=[candle_asset_key(market.exchange)],
                tags={
                    RANGE_START: f"{market.key}|{chunk[0]}",
                    RANGE_END: f"{market.key}|{chunk[-1]}",
                    "market_data/reason": "new market",
                },
            )
        )
    return requests


def watchlist_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    @dg.sensor(
        name="watchlist",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[candle_asset_key(ex.name) for ex in watchlist.exchanges],
        description="Keeps each exchange's market partitions equal to the watchlist resolved "
        "against the catalog; launches the backfill of every new market; reports entries "
        "that cannot be kept.",
    )
    def sensor(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource
    ) -> dg.SensorResult:
        store = candle_store.store()
        catalogs, stored = {}, {}
        existing: dict[str, set[str]] = {}
        for ex in watchlist.exchanges:
            stored[ex.name] = store.instruments.stored(ex.name)
            catalogs[ex.name] = {s: row.instrument for s, row in stored[ex.name].items()}
            existing[ex.name] = set(
                context.instance.get_dynamic_partitions(market_partitions(ex.name).name)
            )
        resolution: Resolution = resolve(watchlist, catalogs, existing)
        for line in resolution.problems:
            context.log.warning(line)
        for line in resolution.notes:
            context.log.info(line)
        today = datetime.now(UTC).date()
        partition_requests: list = []
        run_requests: list[dg.RunRequest] = []
        for ex in watchlist.exchanges:
            wanted = resolution.markets.get(ex.name, {})
            parts = market_partitions(ex.name)
            new = [k for k in wanted if k not in existing[ex.name]]
            gone = sorted(existing[ex.name] - set(wanted))
            if new:
                partition_requests.append(parts.build_add_request(new))
                context.log.info(f"{ex.name}: adding {len(new)} market(s): {', '.join(new)}")
            if gone:
                partition_requests.append(parts.build_delete_request(gone))
                context.log.info(f"{ex.name}: no longer watched (data kept): {', '.join(gone)}")
            for key in new:
                market = wanted[key]
                row = stored[ex.name].get(market.symbol.standard)
                run_requests += backfill_requests(market, today, row.listed_at if row else None)
        return dg.SensorResult(
            run_requests=run_requests, dynamic_partitions_requests=partition_requests
        )

    return sensor
