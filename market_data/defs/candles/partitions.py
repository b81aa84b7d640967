"""Candle partitions: a month (the one in progress included) x a market (symbol:timeframe).

Dimensions are ordered by name, so keys read ``BTC-USDT-SPOT:1h|2024-01-01``. 50 markets x 8
years stay under 5,000 partitions per exchange asset. This module is the one home of the
partition-key and run-tag grammar.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date

import dagster as dg

from market_data.domain.calendar import month_bounds, month_key_of
from market_data.domain.intervals import merge_intervals

MARKET_DIM = "market"
MONTH_DIM = "month"
MONTHS_PER_RUN = 12  # a backfill runs a year of one market as one ranged run
KEY_SEPARATOR = "|"

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
#: the project's own run tags
FRESHNESS_TAG = "market_data/freshness"  # value: the exchange
REASON_TAG = "market_data/reason"
BACKFILL_TAG = "market_data/backfill"  # value: the exchange (dagster.yaml: one at a time)
ATTEMPT_TAG = "market_data/attempt"
SOURCE_TAG = "market_data/source"
INVOCATION_TAG = "market_data/invocation"  # one command-line invocation's runs
HOST_TAG = "market_data/host"  # the machine whose process runs it (see defs/runs.py)
#: Dagster's run priority: higher runs leave the run queue first and take a pool slot before
#: queued steps of lower ones. Freshness and repairs go before backfills.
PRIORITY_TAG = "dagster/priority"
URGENT = {PRIORITY_TAG: "10"}


def market_partitions(exchange: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"markets_{exchange}")


def month_partitions(start: date) -> dg.MonthlyPartitionsDefinition:
    """Months from ``start``'s, the month in progress included."""
    return dg.MonthlyPartitionsDefinition(
        start_date=start.replace(day=1).isoformat(), end_offset=1, timezone="UTC"
    )


def candle_partitions(exchange: str, start: date) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {MARKET_DIM: market_partitions(exchange), MONTH_DIM: month_partitions(start)}
    )


def partition_key(market_key: str, month_key: str) -> str:
    return f"{market_key}{KEY_SEPARATOR}{month_key}"


def partition_key_at(market_key: str, ms: int) -> str:
    """The partition of ``market_key`` holding the candle that opens at ``ms``."""
    return partition_key(market_key, month_key_of(ms))


def split_partition_key(key: str) -> tuple[str, str]:
    """(market key, month key) of a candle partition key (or of a composite one: its
    composite market and month)."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return next(v for d, v in dims.items() if d != MONTH_DIM), dims[MONTH_DIM]
    market, _, month = str(key).partition(KEY_SEPARATOR)
    return market, month


def market_of(key: str) -> str:
    """The market key of a candle partition key."""
    return split_partition_key(key)[0]


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
    """The partition keys of a run grouped by market, months merged into contiguous ranges."""
    months: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key in keys:
        market, month = split_partition_key(key)
        months[market].append(month_bounds(month))
    return {market: merge_intervals(bounds) for market, bounds in months.items()}
