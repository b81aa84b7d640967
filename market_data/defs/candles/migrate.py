"""`market-data migrate-layout`: a deployment of the month layout (one asset per exchange,
``candles/<exchange>``, partitions market x month) moves to the year layout (one asset per
exchange and timeframe, ``candles/<exchange>/<timeframe>``, partitions market x year).

Only Dagster's bookkeeping moves: each exchange's markets are added, in their order, to the
market partitions of their timeframe's asset, and every year of a market that had a month
materialized is reported materialized (a runless event naming where it came from), so the
new assets show the history as present and nothing is fetched again. The candle store is
not touched (it never knew partitions). The old asset's events and partitions are kept,
as history. Running it again adds and reports only what is missing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import (
    market_partitions,
    partition_key,
    split_partition_key,
    timeframe_of,
)
from market_data.domain.watchlist import Watchlist

PAGE = 1000  # materializations read per query


def old_asset_key(exchange: str) -> dg.AssetKey:
    """The month layout's candle asset of an exchange."""
    return dg.AssetKey(["candles", exchange])


def old_market_partitions(exchange: str) -> str:
    """The name of the month layout's market partitions of an exchange."""
    return f"markets_{exchange}"


def needs_migration(instance: dg.DagsterInstance, watchlist: Watchlist, exchange: str) -> bool:
    """Markets in the month layout and none in the year layout: the watchlist sensor would
    take every one for new (a backfill each) until the layout is migrated."""
    if not instance.get_dynamic_partitions(old_market_partitions(exchange)):
        return False
    return not any(
        instance.get_dynamic_partitions(market_partitions(exchange, tf.code).name)
        for tf in watchlist.timeframes_of(exchange)
    )


@dataclass
class Migration:
    #: per new asset (exchange/timeframe): markets added, years reported materialized
    markets: dict[str, int] = field(default_factory=dict)
    years: dict[str, int] = field(default_factory=dict)
    #: market keys of a timeframe the watchlist no longer has (no asset to move them to)
    skipped: list[str] = field(default_factory=list)


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, set[str]]:
    """Per market, the time windows (months of the old asset, years of a new one) with a
    materialization (every one, paged)."""
    months: dict[str, set[str]] = defaultdict(set)
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=PAGE, cursor=cursor, ascending=True
        )
        for record in page.records:
            if record.partition_key is not None:
                market, month = split_partition_key(record.partition_key)
                months[market].add(month)
        if not page.has_more:
            return months
        cursor = page.cursor


def migrate_layout(
    instance: dg.DagsterInstance, watchlist: Watchlist, say: Callable[[str], None]
) -> Migration:
    done = Migration()
    for ex in watchlist.exchanges:
        old = list(instance.get_dynamic_partitions(old_market_partitions(ex.name)))
        if not old:
            say(f"{ex.name}: nothing in the month layout")
            continue
        frames = {tf.code for tf in watchlist.timeframes_of(ex.name)}
        months = _materialized(instance, old_asset_key(ex.name))
        for tf in sorted(frames):
            asset = f"{ex.name}/{tf}"
            parts = market_partitions(ex.name, tf).name
            have = set(instance.get_dynamic_partitions(parts))
            keys = [k for k in old if timeframe_of(k) == tf]
            added = [k for k in keys if k not in have]
            if added:
                instance.add_dynamic_partitions(parts, added)
            new_key = candle_asset_key(ex.name, tf)
            present = _materialized(instance, new_key)
            reported = 0
            for market in keys:
                for year in sorted({m[:4] for m in months.get(market, ())}):
                    if year in present.get(market, ()):
                        continue
                    n = sum(m.startswith(year) for m in months[market])
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(
                            asset_key=new_key,
                            partition=partition_key(market, year),
                            description="migrated from the month layout (market-data "
                            "migrate-layout): nothing fetched",
                            metadata={
                                "migrated_from": dg.MetadataValue.text(
                                    old_asset_key(ex.name).to_user_string()
                                ),
                                "months_materialized": dg.MetadataValue.int(n),
                            },
                        )
                    )
                    reported += 1
            done.markets[asset], done.years[asset] = len(added), reported
            say(
                f"{asset}: {len(added)} market(s) added ({len(keys) - len(added)} there "
                f"already), {reported} year partition(s) reported materialized"
            )
        skipped = [k for k in old if timeframe_of(k) not in frames]
        if skipped:
            done.skipped += skipped
            say(
                f"{ex.name}: {len(skipped)} market(s) of timeframes the watchlist no longer "
                f"has were left in the month layout: {', '.join(skipped[:10])}"
            )
    return done
