"""The gap check on each candle asset: per partition (market x year), every expected candle
is present or explained. It records what it finds in candle_gaps; the gap_repair sensor acts
on it.

Whoever runs it (the check after a materialization, the check-only job launched from the UI
for chosen partitions, the daily sweep), the result is one evaluation per partition,
recorded in the run (evaluations.py), so the UI shows each partition Passed or Failed.
"""

import time
from collections.abc import Callable, Iterable, Mapping

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.evaluations import (
    evaluation,
    latest_materializations,
    partition_check,
)
from market_data.defs.candles.partitions import (
    FRESHNESS_TAG,
    PARTITION_TAG,
    RANGE_END,
    RANGE_START,
    candle_partitions,
    market_of,
    market_partitions,
    markets_of_run,
    partition_key,
    ranges_by_market,
    split_partition_key,
)
from market_data.defs.resources import CandleStoreResource
from market_data.domain.calendar import utc_text, year_bounds, year_key_of
from market_data.domain.freshness import is_stale, lag_seconds
from market_data.domain.gaps import GapCounts
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.consistency import Consistency, check_market
from market_data.pipeline.gaps import MarketGaps, detect, detect_tail
from market_data.store.candles import CandleStore
from market_data.store.gaps import GapRow
from market_data.store.series import Series

CHECK_NAME = "no_gaps"
SHOWN = 10

RECENT_CHECK = "recent"
#: a freshness run evaluates ``fresh`` and ``no_gaps`` on each partition up to this many
#: markets; above, ``recent`` as one result for the asset: Dagster writes a check result
#: as an event of its own (~20 ms each on PostgreSQL, bench/run_events.py), so two per
#: partition of a whole exchange's timeframe would be ~100 s of every freshness run
FRESHNESS_CHECKS_MAX = 200


def gap_check_key(exchange: str, timeframe: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(candle_asset_key(exchange, timeframe), CHECK_NAME)


def _in(rows: list[GapRow], lo: int, hi: int) -> list[GapRow]:
    """Gap rows clipped to [lo, hi) (a gap can span years)."""
    return [
        GapRow(max(g.start, lo), min(g.end, hi), g.kind, g.status, g.attempts, g.last_attempt_at)
        for g in rows
        if g.start < hi and g.end > lo
    ]


def _table(rows: list[GapRow]) -> str:
    lines = ["| from | to (excl.) | kind | attempts |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {utc_text(g.start)} | {utc_text(g.end)} | {g.kind} | {g.attempts} |"
        for g in rows[:SHOWN]
    ]
    return "\n".join(lines)


def gap_metadata(counts: GapCounts) -> dict[str, dg.MetadataValue]:
    """The gap vocabulary (domain/gaps.py) as check metadata."""
    return {
        "open_gaps": dg.MetadataValue.int(counts.open_gaps),
        "missing_candles": dg.MetadataValue.int(counts.missing),
        "empty_candles": dg.MetadataValue.int(counts.empty),
        "exchange_empty_candles": dg.MetadataValue.int(counts.exchange_empty),
    }


def counts_of(result: dg.AssetCheckEvaluation) -> GapCounts:
    """The gap counts a no_gaps result carries (gap_metadata read back)."""
    meta = {k: v.value for k, v in result.metadata.items()}
    return GapCounts(
        meta["open_gaps"], meta["missing_candles"], meta["empty_candles"],
        meta["exchange_empty_candles"],
    )  # fmt: skip


def partition_evaluation(
    check_key: dg.AssetCheckKey, pk: str, found: MarketGaps, targets: dict
) -> dg.AssetCheckEvaluation:
    """The gap check's result for one partition, from the gaps found in its market."""
    lo, hi = year_bounds(split_partition_key(pk)[1])
    counts = found.counts(lo, hi)
    metadata = gap_metadata(counts)
    if counts.open_gaps:
        metadata["first_gaps"] = dg.MetadataValue.md(_table(_in(found.open, lo, hi)))
        description = counts.describe()
    elif counts.exchange_empty:
        description = f"warning: {counts.describe()}"
    else:
        description = "complete"
    return evaluation(
        check_key, pk, not counts.open_gaps, targets=targets, description=description,
        metadata=metadata,
    )  # fmt: skip


def gap_evaluations(
    store: CandleStore,
    instance: dg.DagsterInstance,
    watchlist: Watchlist,
    exchange: str,
    timeframe: str,
    partition_keys: Iterable[str],
    tail: bool = False,
    targets: dict | None = None,
) -> list[dg.AssetCheckEvaluation]:
    """Detect (and record) the gaps of these partitions; one evaluation for each. ``tail``
    (a freshness run): detect only the last TAIL_MS, the rest of each partition as recorded
    by the detections before (backfill, repair, sweep, earlier ticks). ``targets``: the
    materializations judged (None: each partition's latest, read here)."""
    keys = [str(k) for k in partition_keys]
    check_key = gap_check_key(exchange, timeframe)
    if targets is None:
        targets = latest_materializations(instance, check_key.asset_key, keys)
    # the tail by the exchange's clock (as the run read it): what it can have closed since
    since = (store.gaps.clock(exchange) or int(time.time() * 1000)) - TAIL_MS
    found = {}
    settings = watchlist.exchange(exchange)
    for market_key, ranges in ranges_by_market(keys).items():
        market = watchlist.market_or_default(exchange, market_key)
        found[market_key] = (
            detect_tail(store, settings, market, ranges, watchlist.gaps, since)
            if tail
            else detect(store, settings, market, ranges, watchlist.gaps)
        )
    return [
        partition_evaluation(check_key, pk, found[split_partition_key(pk)[0]], targets)
        for pk in keys
    ]


#: a freshness run's gap check detects this far back (and records); the daily sweep
#: detects everything
TAIL_MS = 86_400_000

#: how a candle check judges partitions: (store, instance, watchlist, exchange, timeframe,
#: keys)
Evaluate = Callable[
    [CandleStore, dg.DagsterInstance, Watchlist, str, str, Iterable[str]],
    list[dg.AssetCheckEvaluation],
]


def _partition_check(
    exchange: str,
    timeframe: str,
    watchlist: Watchlist,
    name: str,
    description: str,
    evaluate: Evaluate,
) -> dg.AssetChecksDefinition:
    """A check on candles/<exchange>/<timeframe>, partitioned like it
    (evaluations.partition_check)."""
    return partition_check(
        candle_asset_key(exchange, timeframe),
        candle_partitions(exchange, timeframe, watchlist.start),
        name,
        description,
        lambda store, instance, keys, _: evaluate(
            store, instance, watchlist, exchange, timeframe, keys
        ),
    )


def gap_check(exchange: str, timeframe: str, watchlist: Watchlist) -> dg.AssetChecksDefinition:
    return partition_check(
        candle_asset_key(exchange, timeframe),
        candle_partitions(exchange, timeframe, watchlist.start),
        CHECK_NAME,
        "Every expected candle (on the grid, after listing, before the newest known candle "
        "and any delisting) is stored, or the exchange has none there. One result per "
        "partition: Failed with the gaps, or passing (with a warning where the exchange has no "
        "candle). A freshness run detects its last day only (the rest as recorded); one of "
        f"more than {FRESHNESS_CHECKS_MAX} markets evaluates `recent` instead.",
        lambda store, instance, keys, tags: gap_evaluations(
            store, instance, watchlist, exchange, timeframe, keys, tail=FRESHNESS_TAG in tags
        ),
    )


def gap_check_job(exchange: str, timeframe: str, watchlist: Watchlist) -> dg.JobDefinition:
    """The gap check alone, on demand, for partitions chosen in the Launchpad (one, a range of
    one market, or a backfill of the job over any set): nothing is fetched."""

    name = f"check_gaps_{exchange}_{timeframe}"

    @dg.op(name=f"{name}_partitions")
    def check_partitions(context: dg.OpExecutionContext, candle_store: CandleStoreResource) -> None:
        evaluations = gap_evaluations(
            candle_store.store(),
            context.instance,
            watchlist,
            exchange,
            timeframe,
            context.partition_keys,
        )
        for e in evaluations:
            context.log_event(e)
        failed = [e.partition for e in evaluations if not e.passed]
        context.log.info(f"{len(evaluations)} partition(s) checked, {len(failed)} with gaps")

    @dg.job(
        name=name,
        partitions_def=candle_partitions(exchange, timeframe, watchlist.start),
        description=f"Run the gap check of candles/{exchange}/{timeframe} on the chosen "
        "partitions, without fetching anything.",
    )
    def job() -> None:
        check_partitions()

    return job


FRESH_CHECK = "fresh"


def fresh_check_key(exchange: str, timeframe: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(candle_asset_key(exchange, timeframe), FRESH_CHECK)


def fresh_evaluations(
    store: CandleStore,
    instance: dg.DagsterInstance,
    watchlist: Watchlist,
    exchange: str,
    timeframe: str,
    partition_keys: Iterable[str],
    targets: dict | None = None,
) -> list[dg.AssetCheckEvaluation]:
    """Per partition: in the year in progress (by the exchange clock as the last run read
    it), the market's lag against ``max_lag_timeframes``; a past year is complete.
    ``targets``: the materializations judged (None: each partition's latest, read here)."""
    keys = [str(k) for k in partition_keys]
    check_key = fresh_check_key(exchange, timeframe)
    if targets is None:
        targets = latest_materializations(instance, check_key.asset_key, keys)
    clock = store.gaps.clock(exchange)
    current = year_key_of(clock) if clock is not None else None
    limit = watchlist.freshness.max_lag_timeframes
    markets = {pk: watchlist.market_or_default(exchange, split_partition_key(pk)[0]) for pk in keys}
    newest = store.last_ts_of(
        [Series.of(m) for pk, m in markets.items() if split_partition_key(pk)[1] == current]
    )  # (one statement per 100 markets, not a query per market)
    out = []
    for pk in keys:
        year = split_partition_key(pk)[1]
        market = markets[pk]
        metadata: dict[str, dg.MetadataValue] = {
            "max_lag_timeframes": dg.MetadataValue.float(limit)
        }
        stale = False
        if year != current:
            description = "a past year: complete, nothing newer to come"
        else:
            lag = lag_seconds(newest[Series.of(market)], market.timeframe.ms, clock)
            stale = is_stale(lag, market.timeframe.ms, limit)
            if lag is None:
                description = "no candle yet"
            else:
                metadata["lag_seconds"] = dg.MetadataValue.float(round(lag, 1))
                description = f"newest candle closed {lag:.0f} s before the exchange clock" + (
                    f": more than {limit:g} timeframes behind" if stale else ""
                )
        out.append(
            evaluation(
                check_key, pk, not stale, targets=targets, severity=dg.AssetCheckSeverity.WARN,
                description=description, metadata=metadata,
            )
        )  # fmt: skip
    return out


def fresh_check(exchange: str, timeframe: str, watchlist: Watchlist) -> dg.AssetChecksDefinition:
    return _partition_check(
        exchange,
        timeframe,
        watchlist,
        FRESH_CHECK,
        "Each market's newest candle is at most max_lag_timeframes "
        f"({watchlist.freshness.max_lag_timeframes:g}) timeframes behind the exchange clock, in "
        "the year in progress (a past year is complete); one result per partition, a "
        f"warning when stale. Every freshness run of up to {FRESHNESS_CHECKS_MAX} markets "
        "evaluates it (a larger one: `recent`).",
        fresh_evaluations,
    )


CONSISTENT_CHECK = "consistent_timeframes"


def consistency_check_key(exchange: str, timeframe: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(candle_asset_key(exchange, timeframe), CONSISTENT_CHECK)


def _mismatch_table(found: Consistency) -> str:
    lines = ["| candle | field | stored | from 1m |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {utc_text(m.ts)} | {name} | {stored!r} | {built!r} |"
        for m in found.mismatches[:SHOWN]
        for name, (stored, built) in m.fields.items()
    ]
    return "\n".join(lines)


def consistency_evaluations(
    store: CandleStore,
    instance: dg.DagsterInstance,
    watchlist: Watchlist,
    exchange: str,
    timeframe: str,
    partition_keys: Iterable[str],
) -> list[dg.AssetCheckEvaluation]:
    """Per partition of a higher timeframe: its candles against the aggregate of the same
    market's stored 1m candles (pipeline/consistency.py)."""
    keys = [str(k) for k in partition_keys]
    check_key = consistency_check_key(exchange, timeframe)
    targets = latest_materializations(instance, check_key.asset_key, keys)
    out = []
    for pk in keys:
        market_key, year = split_partition_key(pk)
        market = watchlist.market_or_default(exchange, market_key)
        found = check_market(store, Series.of(market), *year_bounds(year))
        metadata: dict[str, dg.MetadataValue] = {}
        if found is None:
            description = "1m candles are the reference: nothing to compare"
        elif not found.has_fine:
            description = "no 1m candle of this market is stored in the year: nothing to compare"
        else:
            metadata = {
                "compared": dg.MetadataValue.int(found.compared),
                "mismatches": dg.MetadataValue.int(len(found.mismatches)),
                "not_checkable": dg.MetadataValue.int(len(found.not_checkable)),
            }
            if found.mismatches:
                metadata["first_mismatches"] = dg.MetadataValue.md(_mismatch_table(found))
            if found.not_checkable:
                metadata["first_not_checkable"] = dg.MetadataValue.text(
                    ", ".join(utc_text(t) for t in found.not_checkable[:SHOWN])
                )
            description = (
                f"{len(found.mismatches)} of {found.compared} candles differ from the "
                "aggregate of their 1m candles"
                if found.mismatches
                else f"{found.compared} candles equal the aggregate of their 1m candles"
            ) + (
                f"; {len(found.not_checkable)} not checkable (1m candles missing)"
                if found.not_checkable
                else ""
            )
        passed = found is None or not found.mismatches
        out.append(
            evaluation(check_key, pk, passed, targets=targets, description=description,
                       metadata=metadata)
        )  # fmt: skip
    return out


def consistency_check(
    exchange: str, timeframe: str, watchlist: Watchlist
) -> dg.AssetChecksDefinition:
    return _partition_check(
        exchange,
        timeframe,
        watchlist,
        CONSISTENT_CHECK,
        "Each closed candle of a timeframe above 1m equals the exact aggregate of the same "
        "market's stored 1m candles of its span (prices exact, volume within 1e-9 "
        "relative); spans with 1m candles missing are counted as not checkable, never as "
        "mismatches. One result per partition.",
        consistency_evaluations,
    )


def recent_check_key(exchange: str, timeframe: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(candle_asset_key(exchange, timeframe), RECENT_CHECK)


def has_consistency_check(timeframe: str) -> bool:
    """1m candles are the reference the higher timeframes are checked against."""
    return timeframe != "1m"


def partition_check_keys(exchange: str, timeframe: str) -> list[dg.AssetCheckKey]:
    """The checks a watchlist backfill run evaluates on each of its partitions (``recent``
    is the year in progress of a freshness run too large for them; consistency follows in a
    run of its own: defs/candles/consistency.py)."""
    return [gap_check_key(exchange, timeframe), fresh_check_key(exchange, timeframe)]


def freshness_check_keys(exchange: str, timeframe: str, markets: int) -> list[dg.AssetCheckKey]:
    """The checks a freshness run of ``markets`` markets evaluates."""
    if markets > FRESHNESS_CHECKS_MAX:
        return [recent_check_key(exchange, timeframe)]
    return [fresh_check_key(exchange, timeframe), gap_check_key(exchange, timeframe)]


def _year_in_progress_keys(
    store: CandleStore,
    instance: dg.DagsterInstance,
    exchange: str,
    timeframe: str,
    tags: Mapping[str, str],
) -> list[str]:
    """The run's partitions of the year in progress (by the exchange clock as the run read
    it): every market of its range (a freshness run: all of them) x that year."""
    clock = store.gaps.clock(exchange) or int(time.time() * 1000)
    year = year_key_of(clock)
    order = list(instance.get_dynamic_partitions(market_partitions(exchange, timeframe).name))
    ends = [
        split_partition_key(tags[t])[1]
        for t in (PARTITION_TAG, RANGE_START, RANGE_END)
        if t in tags
    ]
    if not ends or not ends[0] <= year <= ends[-1]:
        return []
    markets = markets_of_run(tags, order)
    return [partition_key(m, year) for m in order if m in markets]


def _lags_table(stale: list[tuple[str, float | None]]) -> str:
    lines = ["| market | newest candle closed (s before the exchange clock) |", "| --- | --- |"]
    lines += [
        f"| {m} | {'no candle' if lag is None else f'{lag:.0f}'} |" for m, lag in stale[:SHOWN]
    ]
    return "\n".join(lines)


def recent_result(
    store: CandleStore,
    instance: dg.DagsterInstance,
    watchlist: Watchlist,
    exchange: str,
    timeframe: str,
    tags: Mapping[str, str],
) -> dg.AssetCheckResult:
    """``fresh`` and ``no_gaps`` (its last day: TAIL_MS) of every market of the run's year in
    progress, as one result: failed (an error) when a market has a gap, a warning when one
    is stale. The gaps found are recorded as the partitioned check records them."""
    keys = _year_in_progress_keys(store, instance, exchange, timeframe, tags)
    if not keys:
        return dg.AssetCheckResult(
            passed=True, description="the run holds no partition of the year in progress"
        )
    # (one result for the run, not one per partition: no materialization to name)
    fresh = fresh_evaluations(store, instance, watchlist, exchange, timeframe, keys, targets={})
    gaps = gap_evaluations(
        store, instance, watchlist, exchange, timeframe, keys, tail=True, targets={}
    )
    stale = [
        (market_of(str(e.partition)), e.metadata.get("lag_seconds")) for e in fresh if not e.passed
    ]
    stale_lags = [(m, None if v is None else float(v.value)) for m, v in stale]
    with_gaps = [e for e in gaps if not e.passed]
    totals = GapCounts()
    for e in gaps:
        totals = totals + counts_of(e)
    lags = [float(e.metadata["lag_seconds"].value) for e in fresh if "lag_seconds" in e.metadata]
    metadata: dict[str, dg.MetadataValue] = {
        "markets": dg.MetadataValue.int(len(keys)),
        "stale_markets": dg.MetadataValue.int(len(stale_lags)),
        "markets_with_gaps": dg.MetadataValue.int(len(with_gaps)),
        "max_lag_timeframes": dg.MetadataValue.float(watchlist.freshness.max_lag_timeframes),
        **gap_metadata(totals),
    }
    if lags:
        metadata["max_lag_seconds"] = dg.MetadataValue.float(round(max(lags), 1))
    if stale_lags:
        metadata["first_stale"] = dg.MetadataValue.md(_lags_table(stale_lags))
    if with_gaps:
        metadata["first_with_gaps"] = dg.MetadataValue.text(
            ", ".join(market_of(str(e.partition)) for e in with_gaps[:SHOWN])
        )
    parts = [f"{len(stale_lags)} stale" if stale_lags else "all current"]
    parts.append(
        f"{len(with_gaps)} with gaps in their last day" if with_gaps else "no gap in their last day"
    )
    return dg.AssetCheckResult(
        passed=not stale_lags and not with_gaps,
        severity=dg.AssetCheckSeverity.ERROR if with_gaps else dg.AssetCheckSeverity.WARN,
        description=f"{len(keys)} markets of {split_partition_key(keys[0])[1]}: "
        + ", ".join(parts),
        metadata=metadata,
    )


def recent_check(exchange: str, timeframe: str, watchlist: Watchlist) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=candle_asset_key(exchange, timeframe),
        name=RECENT_CHECK,
        description="Every market of the year in progress, as one result: each one's newest "
        "candle within max_lag_timeframes "
        f"({watchlist.freshness.max_lag_timeframes:g}) timeframes of the exchange clock and "
        "no gap in its last day. A freshness run of more than "
        f"{FRESHNESS_CHECKS_MAX} markets evaluates this instead of `fresh` and `no_gaps` on "
        "each partition (one result per partition is an event each: too slow at that size).",
    )
    def check(
        context: dg.AssetCheckExecutionContext, candle_store: CandleStoreResource
    ) -> dg.AssetCheckResult:
        op = context.op_execution_context
        return recent_result(
            candle_store.store(), context.instance, watchlist, exchange, timeframe, op.run.tags
        )

    return check
