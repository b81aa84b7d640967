"""What a candle run tells Dagster, per partition (market x year): a materialization with
that market-year's own figures.

A ranged run (years of some markets, or every market of the year in progress) gives one
event per partition it covers (Dagster merges these partition-scoped figures with the run's
own), so the UI's partition view shows each year its own figures
and the year in progress its market's lag, not the run's totals.
"""

from __future__ import annotations

import dagster as dg

from market_data.defs.candles.partitions import split_partition_key
from market_data.domain.calendar import year_key_of
from market_data.domain.freshness import is_stale
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.ingest import Fetched


def run_written(fetched: Fetched) -> dict[str, dg.MetadataValue]:
    """The first and last candle the run wrote, over all its markets (none: it wrote none)."""
    firsts = [r.written_first for r in fetched.markets.values() if r.written_first is not None]
    lasts = [r.written_last for r in fetched.markets.values() if r.written_last is not None]
    if not firsts or not lasts:
        return {}
    return {
        "run_written_first": dg.MetadataValue.timestamp(min(firsts) / 1000),
        "run_written_last": dg.MetadataValue.timestamp(max(lasts) / 1000),
    }


def partition_metadata(
    pk: str, fetched: Fetched, watchlist: Watchlist, exchange: str, until_ms: int = 2**62
) -> dict[str, dg.MetadataValue]:
    """The figures of one partition (its market's year): candles fetched, written, expected,
    present and absent (expected, not stored), first and last candle; in the year in progress,
    the lag (if the run fetched up to now: ``until_ms``, its not_after, is later)."""
    market_key, year = split_partition_key(pk)
    report = fetched.markets[market_key]
    figures = report.year(year)
    meta: dict[str, dg.MetadataValue] = {
        "rows_written": dg.MetadataValue.int(figures.rows_written),
        "candles_fetched": dg.MetadataValue.int(figures.candles_fetched),
        "expected": dg.MetadataValue.int(figures.expected),
        "present": dg.MetadataValue.int(figures.present),
        "absent": dg.MetadataValue.int(figures.absent),
    }
    if figures.unavailable:  # history the exchange serves no more (Kraken): not a gap
        meta["unavailable"] = dg.MetadataValue.int(figures.unavailable)
        assert report.unserved is not None
        meta["served_from"] = dg.MetadataValue.timestamp(report.unserved[1] / 1000)
    if report.archive is not None:  # where the fetched candles came from
        meta["from_archive"] = dg.MetadataValue.int(figures.from_archive)
        meta["from_candle_endpoint"] = dg.MetadataValue.int(
            figures.candles_fetched - figures.from_archive
        )
        unusable = [u for u in report.archive.unusable if f"-{year}-" in u]
        if unusable:
            meta["archive_unusable"] = dg.MetadataValue.text("; ".join(unusable))
    if report.from_trades:  # history older than the candle endpoint serves (Kraken)
        meta["from_trades"] = dg.MetadataValue.int(figures.from_trades)
        meta["from_candle_endpoint"] = dg.MetadataValue.int(
            figures.candles_fetched - figures.from_trades - figures.from_archive
        )
    if figures.written_first is not None and figures.written_last is not None:
        # what this run changed (the composites sensor recomputes those months only)
        meta["written_first"] = dg.MetadataValue.timestamp(figures.written_first / 1000)
        meta["written_last"] = dg.MetadataValue.timestamp(figures.written_last / 1000)
    if figures.first_ts is not None and figures.last_ts is not None:
        meta["first_candle"] = dg.MetadataValue.timestamp(figures.first_ts / 1000)
        meta["last_candle"] = dg.MetadataValue.timestamp(figures.last_ts / 1000)
    now = fetched.now_ms
    if year == year_key_of(now) and until_ms > now and report.lag_s is not None:
        market = watchlist.market_or_default(exchange, market_key)
        limit = watchlist.freshness.max_lag_timeframes
        meta["lag_seconds"] = dg.MetadataValue.float(round(report.lag_s, 1))
        meta["stale"] = dg.MetadataValue.bool(is_stale(report.lag_s, market.timeframe.ms, limit))
    return meta
