"""``composite/candles``: per composite market (symbol:timeframe of the watchlist's
``cross_exchange`` block) and month, the volume-weighted candles of every exchange that has
each timestamp, computed in SQL from the candle store (store/composite.py).

It depends on every ``candles/<exchange>/<timeframe>`` asset of its timeframes, each
month on its year (any of their markets may feed it), so the lineage graph shows it downstream of them all; the ``composites`` sensor
(sensors.py) brings the partitions a candle materialization touched up to date.
"""

from collections.abc import Callable

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import (
    MONTH_DIM,
    YEAR_DIM,
    market_partitions,
    month_partitions,
    split_partition_key,
)
from market_data.defs.resources import CandleStoreResource
from market_data.domain.calendar import month_bounds, utc_text
from market_data.domain.composite import CompositeMarket, Source, composite_markets, sources
from market_data.domain.watchlist import CrossExchange, Watchlist

COMPOSITE_KEY = dg.AssetKey(["composite", "candles"])
COMPOSITE_DIM = "composite"  # before "month" by name: keys read BTC-USD-SPOT:1m|2026-11-01

#: a composite month depends on its year of every market of each candle asset
SAME_TIME = dg.MultiPartitionMapping(
    {YEAR_DIM: dg.DimensionPartitionMapping(MONTH_DIM, dg.TimeWindowPartitionMapping())}
)
MONTHS_PER_RUN = 12  # a UI backfill runs a year of one composite market as one run


def composite_partitions(watchlist: Watchlist) -> dg.MultiPartitionsDefinition:
    keys = [m.key for m in composite_markets(watchlist)]
    return dg.MultiPartitionsDefinition(
        {
            COMPOSITE_DIM: dg.StaticPartitionsDefinition(keys),
            MONTH_DIM: month_partitions(watchlist.start),
        }
    )


def cross_of(watchlist: Watchlist) -> CrossExchange:
    if watchlist.cross_exchange is None:
        raise ValueError("the watchlist has no cross_exchange block: no composite markets")
    return watchlist.cross_exchange


def source_finder(
    instance: dg.DagsterInstance, watchlist: Watchlist
) -> Callable[[CompositeMarket], list[Source]]:
    """A composite's sources among the markets each exchange's candle asset has now (read
    once, for every composite market a run or check covers)."""
    cross = cross_of(watchlist)
    watched = {
        ex.name: {
            key
            for tf in cross.timeframes
            for key in instance.get_dynamic_partitions(market_partitions(ex.name, tf.code).name)
        }
        for ex in watchlist.exchanges
    }
    return lambda market: sources(cross, market, watched)


def composite_asset(watchlist: Watchlist) -> dg.AssetsDefinition:
    cross = cross_of(watchlist)
    needed = cross.needed(len(watchlist.exchanges))

    @dg.asset(
        key=COMPOSITE_KEY,
        partitions_def=composite_partitions(watchlist),
        deps=[
            dg.AssetDep(candle_asset_key(ex.name, tf.code), partition_mapping=SAME_TIME)
            for ex in watchlist.exchanges
            for tf in cross.timeframes
        ],
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MONTHS_PER_RUN),
        group_name="composite",
        kinds={"sql"},
        description="Cross-exchange candles per composite market (symbol:timeframe) and month: "
        "volume-weighted open/high/low/close over the exchanges that have each timestamp, "
        "summed volume, plain max high and min low, and the sources; timestamps with fewer "
        f"than {needed} exchange(s) are left out (and counted). Kept up to date by the "
        "composites sensor.",
    )
    def composite(
        context: dg.AssetExecutionContext, candle_store: CandleStoreResource
    ) -> dg.MaterializeResult:
        store = candle_store.store()
        sources_of = source_finder(context.instance, watchlist)
        total = 0
        for pk in context.partition_keys:
            key, month = split_partition_key(pk)
            market = CompositeMarket.parse(key)
            srcs = sources_of(market)
            figures = store.composite.build(market, srcs, *month_bounds(month), needed)
            total += figures.rows_changed
            context.log.info(
                f"{pk}: {figures.emitted} timestamps from {len(srcs)} source(s), "
                f"{figures.below_minimum} below the minimum of {needed}, "
                f"{figures.rows_changed} rows changed"
            )
            context.add_asset_metadata(
                {
                    "timestamps": dg.MetadataValue.int(figures.emitted),
                    "below_minimum": dg.MetadataValue.int(figures.below_minimum),
                    "min_exchanges_required": dg.MetadataValue.int(needed),
                    "rows_changed": dg.MetadataValue.int(figures.rows_changed),
                    "sources": dg.MetadataValue.text(
                        ", ".join(f"{s.exchange}:{s.symbol}" for s in srcs) or "none watched"
                    ),
                    "first_candle": dg.MetadataValue.text(utc_text(figures.first_ts) or "-"),
                    "last_candle": dg.MetadataValue.text(utc_text(figures.last_ts) or "-"),
                },
                partition_key=pk,
            )
        return dg.MaterializeResult(metadata={"run_rows_changed": dg.MetadataValue.int(total)})

    return composite
