"""The ``orderbooks`` sensor: a snapshot run of ``orderbooks/<exchange>`` every
``interval_s`` (a minute or more); where the live service takes the snapshots (below a
minute), a runless materialization each minute with what it stored, and both checks'
evaluations, so the UI shows them the same way."""

import json
import time

import dagster as dg

from market_data.defs.orderbooks.assets import orderbook_asset_key
from market_data.defs.orderbooks.checks import evaluation, verdicts
from market_data.defs.resources import CandleStoreResource
from market_data.defs.runs import IN_PROGRESS
from market_data.domain.calendar import utc_text
from market_data.domain.watchlist import Watchlist

ORDERBOOKS_TAG = "market_data/orderbooks"


def orderbooks_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    exchanges = [ex for ex in watchlist.exchanges if watchlist.orderbooks_of(ex.name)]

    @dg.sensor(
        name="orderbooks",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[orderbook_asset_key(ex.name) for ex in exchanges],
        description="Snapshots order books every interval_s (one run per exchange and "
        "interval); reports the live service's snapshots where they are under a minute apart.",
    )
    def sensor(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource
    ) -> dg.SensorResult | dg.SkipReason:
        cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        running = context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS))
        busy = {r.tags[ORDERBOOKS_TAG] for r in running if ORDERBOOKS_TAG in r.tags}
        now = time.time()
        requests, events = [], []
        for ex in exchanges:
            settings = watchlist.orderbooks_of(ex.name)
            assert settings is not None
            if settings.by_live:  # reported each minute
                slot = int(now // 60)
                if cursor.get(ex.name) == slot:
                    continue
                cursor[ex.name] = slot
                events += live_events(candle_store, watchlist, ex.name, cursor, now)
                continue
            slot = int(now // settings.interval_s)
            if cursor.get(ex.name) == slot or ex.name in busy:
                continue
            cursor[ex.name] = slot
            requests.append(
                dg.RunRequest(
                    run_key=f"orderbooks:{ex.name}:{slot}",
                    asset_selection=[orderbook_asset_key(ex.name)],
                    tags={ORDERBOOKS_TAG: ex.name},
                )
            )
        if not requests and not events:
            return dg.SkipReason("no snapshot due")
        return dg.SensorResult(
            run_requests=requests, asset_events=events, cursor=json.dumps(cursor)
        )

    return sensor


def live_events(
    candle_store: CandleStoreResource,
    watchlist: Watchlist,
    exchange: str,
    cursor: dict[str, int],
    now: float,
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """What the live service stored since the last report, and the checks' verdicts."""
    store = candle_store.store()
    newest = store.orderbooks.newest(exchange)
    since = cursor.get(f"{exchange}:newest", 0)
    if newest is None or newest <= since:
        return []  # nothing new: no materialization (the asset shows its age)
    cursor[f"{exchange}:newest"] = newest
    times = store.orderbooks.times(exchange, since + 1, newest + 1)
    found = verdicts(store, watchlist, exchange) or {}
    return [
        dg.AssetMaterialization(
            asset_key=orderbook_asset_key(exchange),
            description="snapshots taken by the live service",
            metadata={
                "snapshots": dg.MetadataValue.int(sum(len(t) for t in times.values())),
                "symbols": dg.MetadataValue.int(len(times)),
                "snapshot_time": dg.MetadataValue.text(utc_text(newest)),
                "reported_at": dg.MetadataValue.float(now),
            },
        ),
        *(evaluation(exchange, name, v) for name, v in found.items()),
    ]
