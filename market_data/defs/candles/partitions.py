"""Candle partitions: one asset per exchange and timeframe (``candles/binance/1h``), each
partitioned by market (symbol:timeframe) x year (the one in progress included).

Dimensions are ordered by name, so keys read ``BTC-USDT-SPOT:1h|2026``: a key names its
series on its own, wherever it is copied to. A whole exchange (2,500 markets x 10 years)
is 25,000 partitions per asset, a quarter of Dagster's recommended most. This module is the
one home of the partition-key and run-tag grammar.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date

import dagster as dg

from market_data.domain.calendar import year_bounds, year_key_of
from market_data.domain.intervals import merge_intervals

MARKET_DIM = "market"
YEAR_DIM = "year"
MONTH_DIM = "month"  # the composite asset's time dimension
KEY_SEPARATOR = "|"

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
WILL_RETRY_TAG = "dagster/will_retry"  # "true": Dagster's run retries will launch it again
#: the project's own run tags
FRESHNESS_TAG = "market_data/freshness"  # value: the exchange
REASON_TAG = "market_data/reason"
BACKFILL_TAG = "market_data/backfill"  # value: the exchange (dagster.yaml: one at a time)
#: value: the exchange (dagster.yaml: one at a time); a backfill's consistency check
CONSISTENCY_TAG = "market_data/consistency"
ATTEMPT_TAG = "market_data/attempt"
SOURCE_TAG = "market_data/source"
INVOCATION_TAG = "market_data/invocation"  # one command-line invocation's runs
HOST_TAG = "market_data/host"  # the machine whose process runs it (see defs/runs.py)
#: Dagster's run priority: higher runs leave the run queue first and take a pool slot before
#: queued steps of lower ones. Freshness and repairs go before backfills, backfills
#: before consistency checks.
PRIORITY_TAG = "dagster/priority"
URGENT = {PRIORITY_TAG: "10"}
#: checks that may wait (the consistency of a backfill): after every other run
LOW_PRIORITY = {PRIORITY_TAG: "-10"}


def market_partitions(exchange: str, timeframe: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"markets_{exchange}_{timeframe}")


def timeframe_of(market_key: str) -> str:
    """The timeframe code of a market key (``SYMBOL:TIMEFRAME``)."""
    return market_key.rpartition(":")[2]


def month_partitions(start: date) -> dg.MonthlyPartitionsDefinition:
    """Months from ``start``'s, the month in progress included (the composite asset)."""
    return dg.MonthlyPartitionsDefinition(
        start_date=start.replace(day=1).isoformat(), end_offset=1, timezone="UTC"
    )


def year_partitions(start: date) -> dg.TimeWindowPartitionsDefinition:
    """Years from ``start``'s, the year in progress included."""
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 1 1 *", start=str(start.year), fmt="%Y", end_offset=1, timezone="UTC"
    )


def candle_partitions(exchange: str, timeframe: str, start: date) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {MARKET_DIM: market_partitions(exchange, timeframe), YEAR_DIM: year_partitions(start)}
    )


def partition_key(market_key: str, window_key: str) -> str:
    return f"{market_key}{KEY_SEPARATOR}{window_key}"


def partition_key_at(market_key: str, ms: int) -> str:
    """The partition of ``market_key`` holding the candle that opens at ``ms``."""
    return partition_key(market_key, year_key_of(ms))


def split_partition_key(key: str) -> tuple[str, str]:
    """(market key, year key) of a candle partition key (or of a composite one: its
    composite market and month): dimensions in the order of their names."""
    market, _, window = str(key).partition(KEY_SEPARATOR)
    return market, window


def market_of(key: str) -> str:
    """The market key of a candle partition key."""
    return split_partition_key(key)[0]


def months_of_year(year_key: str) -> tuple[str, str]:
    """The first and last month keys of a year partition."""
    return f"{year_key}-01-01", f"{year_key}-12-01"


def range_tags(first: tuple[str, str], last: tuple[str, str]) -> dict[str, str]:
    """Tags of a ranged run from partition (market, month) ``first`` to ``last``."""
    return {RANGE_START: partition_key(*first), RANGE_END: partition_key(*last)}


def markets_of_run(tags: Mapping[str, str], order: Sequence[str] = ()) -> set[str]:
    """Market keys a run materializes: its single partition's, or every market of its range
    (``order``: the exchange's market keys in partition order, so a range from A to Z is A,
    Z and every market between; without it, or for keys not in it, the range's two ends)."""
    ends = [market_of(tags[t]) for t in (PARTITION_TAG, RANGE_START, RANGE_END) if t in tags]
    if RANGE_START in tags and RANGE_END in tags and order:
        index = {key: i for i, key in enumerate(order)}
        first, last = index.get(ends[0]), index.get(ends[-1])
        if first is not None and last is not None:
            return set(order[first : last + 1])
    return set(ends)


def ranges_by_market(keys: list[str]) -> dict[str, list[tuple[int, int]]]:
    """The partition keys of a run grouped by market, years merged into contiguous ranges."""
    years: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key in keys:
        market, year = split_partition_key(key)
        years[market].append(year_bounds(year))
    return {market: merge_intervals(bounds) for market, bounds in years.items()}
