"""The gap check on each candle asset: per partition, every expected candle is present or
explained. It records what it finds in candle_gaps; the gap_repair sensor acts on it."""

from typing import Any

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import candle_partitions, ranges_by_market
from market_data.defs.resources import CandleStoreResource
from market_data.domain.calendar import utc_text
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.gaps import MarketGaps, detect

CHECK_NAME = "no_gaps"
SHOWN = 10


def gap_check_key(exchange: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(candle_asset_key(exchange), CHECK_NAME)


def _table(found: list[MarketGaps]) -> str:
    lines = ["| market | from | to (excl.) | kind | attempts |", "| --- | --- | --- | --- | --- |"]
    rows = [(m.key, g) for m in found for g in m.open][:SHOWN]
    lines += [
        f"| {k} | {utc_text(g.start)} | {utc_text(g.end)} | {g.kind} | {g.attempts} |"
        for k, g in rows
    ]
    return "\n".join(lines)


def gap_check(exchange: str, watchlist: Watchlist) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=candle_asset_key(exchange),
        name=CHECK_NAME,
        partitions_def=candle_partitions(exchange, watchlist.start),
        description="Every expected candle (on the grid, after listing, before the newest known "
        "candle and any delisting) is stored, or the exchange has none there.",
    )
    def no_gaps(
        context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource
    ) -> dg.AssetCheckResult:
        store = candle_store.store()
        found = [
            detect(store, watchlist.market_or_default(exchange, key), ranges, watchlist.gaps)
            for key, ranges in ranges_by_market(list(context.partition_keys)).items()
        ]
        open_gaps = sum(len(m.open) for m in found)
        missing = sum(m.missing_candles for m in found)
        empty = sum(m.empty_candles for m in found)
        metadata = {
            "open_gaps": dg.MetadataValue.int(open_gaps),
            "missing_candles": dg.MetadataValue.int(missing),
            "exchange_empty_intervals": dg.MetadataValue.int(
                sum(len(m.exchange_empty) for m in found)
            ),
            "exchange_empty_candles": dg.MetadataValue.int(empty),
        }
        if open_gaps:
            metadata["first_gaps"] = dg.MetadataValue.md(_table(found))
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{open_gaps} gap(s), {missing} candle(s) missing",
                metadata=metadata,
            )
        note = (
            f"warning: {empty} candle(s) the exchange does not have (exchange-empty)"
            if empty
            else "complete"
        )
        metadata["note"] = dg.MetadataValue.text(note)
        return dg.AssetCheckResult(passed=True, description=note, metadata=metadata)

    return no_gaps


def gap_check_job(exchange: str, watchlist: Watchlist) -> Any:
    """The gap check alone, on demand (a partition or a range of one market)."""
    return dg.define_asset_job(
        f"check_gaps_{exchange}",
        selection=dg.AssetSelection.checks(gap_check_key(exchange)),
        partitions_def=candle_partitions(exchange, watchlist.start),
        description=f"Run the gap check of candles/{exchange} without fetching anything.",
    )
