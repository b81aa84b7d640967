"""How the history of markets added to the watchlist is cut into runs.

A run costs seconds of its own (a process, the market list, the clock, checks, teardown)
whatever it fetches, so runs are sized by the pages they fetch, not by markets: the new
markets (of one timeframe: a run is one candle asset's), in partition order, are grouped
while their pages add up to ``pages_per_run``; a group is one ranged run, every market of
the group x every year from the group's first to the year in progress (Dagster reads a
range over two dimensions as that rectangle). Markets are added sorted by their first
month, so a group's markets start close together; time before a market's own start or
listing is expected to hold nothing and costs no request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

#: ~100 s of fetching at Binance's limit (3,000 weight-2 requests a minute): a run's own
#: seconds stay a few percent of its wall time
PAGES_PER_RUN = 5_000
#: and at most this many partitions (markets x years): each costs the run a materialization
#: and its checks' evaluations, events Dagster writes one by one (bench/scale.py: ~4 events
#: and ~0.2 s a partition on PostgreSQL, whatever it fetched)
PARTITIONS_PER_RUN = 500
YEAR_MS = 366 * 86_400_000  # the longest year


@dataclass(frozen=True)
class NewMarket:
    key: str  # SYMBOL:TIMEFRAME
    first_ms: int  # its history starts here (watchlist start, or a later listing)
    timeframe_ms: int


@dataclass(frozen=True)
class Group:
    """One backfill run: markets ``first``..``last`` (partition order) from ``first_ms``."""

    first: str
    last: str
    first_ms: int
    markets: int
    pages: int


def years_between(first_ms: int, now_ms: int) -> int:
    """Years from ``first_ms``'s to ``now_ms``'s, both included."""
    a, b = datetime.fromtimestamp(first_ms / 1000, UTC), datetime.fromtimestamp(now_ms / 1000, UTC)
    return max(1, b.year - a.year + 1)


def history_pages(first_ms: int, now_ms: int, timeframe_ms: int, page_limit: int) -> int:
    """Requests a market's history from ``first_ms`` to now takes at most (one at least)."""
    return max(1, -(-max(0, now_ms - first_ms) // (timeframe_ms * page_limit)))


def partitions_per_ui_run(
    timeframe_ms: int,
    page_limit: int,
    pages_per_run: int = PAGES_PER_RUN,
    partitions_per_run: int = PARTITIONS_PER_RUN,
) -> int:
    """Partitions (market-years) in one run of a backfill launched from the UI, sized like
    the watchlist's groups: Dagster's backfill daemon cuts the selection year by year into
    runs of this many consecutive markets (the asset's ``BackfillPolicy``)."""
    year_pages = history_pages(0, YEAR_MS, timeframe_ms, page_limit)
    return max(1, min(partitions_per_run, pages_per_run // year_pages))


def group_backfills(
    markets: Sequence[NewMarket],
    now_ms: int,
    page_limit: int,
    pages_per_run: int = PAGES_PER_RUN,
    partitions_per_run: int = PARTITIONS_PER_RUN,
) -> list[Group]:
    """``markets`` (in partition order) grouped into runs of about ``pages_per_run`` pages
    and at most ``partitions_per_run`` partitions (the group's markets x its years, from its
    first market's first year to the year in progress); a market larger than that is a
    run of its own."""
    groups: list[Group] = []
    batch: list[NewMarket] = []
    pages = 0

    def close() -> None:
        nonlocal batch, pages
        if batch:
            first_ms = min(m.first_ms for m in batch)
            groups.append(Group(batch[0].key, batch[-1].key, first_ms, len(batch), pages))
        batch, pages = [], 0

    for market in markets:
        cost = history_pages(market.first_ms, now_ms, market.timeframe_ms, page_limit)
        first = min([market.first_ms, *(m.first_ms for m in batch)])
        partitions = (len(batch) + 1) * years_between(first, now_ms)
        if batch and (pages + cost > pages_per_run or partitions > partitions_per_run):
            close()
        batch.append(market)
        pages += cost
    close()
    return groups
