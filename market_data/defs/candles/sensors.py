"""The watchlist sensor: watchlist and catalog changes become partitions and backfills."""

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from market_data.defs.candles.assets import all_candle_asset_keys, asset_of, candle_asset_key
from market_data.defs.candles.checks import (
    freshness_check_keys,
    gap_check_key,
    partition_check_keys,
)
from market_data.defs.candles.migrate import needs_migration
from market_data.defs.candles.partitions import (
    ATTEMPT_TAG,
    BACKFILL_TAG,
    FRESHNESS_TAG,
    REASON_TAG,
    URGENT,
    market_partitions,
    partition_key_at,
    range_tags,
    timeframe_of,
)
from market_data.defs.instruments.assets import instruments_asset_key
from market_data.defs.resources import CandleStoreResource
from market_data.defs.runs import IN_PROGRESS, busy_partitions, run_asset
from market_data.domain.backfills import Group, NewMarket, group_backfills
from market_data.domain.calendar import month_key_of, year_key_of
from market_data.domain.selection import Resolution, resolve
from market_data.domain.timeframes import SUPPORTED_TIMEFRAMES
from market_data.domain.watchlist import Market, Watchlist
from market_data.exchanges.venues import venue
from market_data.pipeline.gaps import due_gaps
from market_data.store.live import live_health


def _names(keys: list[str], shown: int = 10) -> str:
    """The first few of many market keys (a log line, not a page)."""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


#: backfill runs the watchlist sensor submits per tick at most (the daemon submits about two
#: a second): the rest wait in its cursor for the next ticks, so a tick returns in seconds
RUNS_PER_TICK = 20


def first_ms(market: Market, listed_ms: int | None) -> int:
    """Where a new market's history starts: its watchlist start, or a later listing."""
    return max(market.start_ms, listed_ms or 0)


def backfill_request(exchange: str, group: Group, today: date) -> dg.RunRequest:
    """One ranged run: every market of ``group`` (one timeframe's asset) x every year from
    its first to today's."""
    first_year = year_key_of(group.first_ms)
    return dg.RunRequest(
        run_key=f"backfill:{exchange}:{group.first}:{group.last}:{first_year}",
        asset_selection=[asset_of(exchange, group.first)],
        asset_check_keys=partition_check_keys(exchange, timeframe_of(group.first)),
        tags={
            **range_tags((group.first, first_year), (group.last, str(today.year))),
            REASON_TAG: "new market" if group.markets == 1 else f"{group.markets} new markets",
            BACKFILL_TAG: exchange,
        },
    )


def _pending(cursor: str | None) -> dict[str, list[Group]]:
    """Backfill groups planned by an earlier tick and not submitted yet, per exchange."""
    if not cursor:
        return {}
    raw = json.loads(cursor)
    return {ex: [Group(*g) for g in groups] for ex, groups in raw.get("pending", {}).items()}


def _still_watched(
    groups: list[Group],
    orders: dict[str, list[str]],
    gone: set[str],
    log: Callable[[str], None],
) -> list[Group]:
    """Groups trimmed to the markets still watched: ``orders`` (per timeframe) is the
    partition order before this tick's deletions (``gone``), so a group's ends are in its
    timeframe's; what is left of a group is contiguous once ``gone`` is deleted."""
    indexes = {tf: {k: i for i, k in enumerate(order)} for tf, order in orders.items()}
    out = []
    for g in groups:
        tf = timeframe_of(g.first)
        index, order = indexes.get(tf, {}), orders.get(tf, [])
        lo, hi = index.get(g.first), index.get(g.last)
        if lo is None or hi is None:  # deleted outside the sensor (the UI)
            log(
                f"a planned backfill {g.first}..{g.last}: its markets are no longer partitions "
                "of a watched timeframe; skipped"
            )
            continue
        kept = [k for k in order[lo : hi + 1] if k not in gone]
        if kept:
            out.append(Group(kept[0], kept[-1], g.first_ms, len(kept), g.pages))
    return out


def watchlist_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    @dg.sensor(
        name="watchlist",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[
            *all_candle_asset_keys(watchlist),
            *(instruments_asset_key(ex.name) for ex in watchlist.exchanges),
        ],
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
        #: per exchange and timeframe, the partitions in their order, read once
        orders: dict[str, dict[str, list[str]]] = {}
        for ex in watchlist.exchanges:
            stored[ex.name] = store.instruments.stored(ex.name)
            catalogs[ex.name] = {s: row.instrument for s, row in stored[ex.name].items()}
            # every timeframe's, watched or not: a timeframe taken out of the watchlist loses
            # its markets' partitions as a market taken out does (its candles stay)
            orders[ex.name] = {
                tf: list(
                    context.instance.get_dynamic_partitions(market_partitions(ex.name, tf).name)
                )
                for tf in SUPPORTED_TIMEFRAMES
            }
            existing[ex.name] = {k for order in orders[ex.name].values() for k in order}
        resolution: Resolution = resolve(watchlist, catalogs, existing)
        for line in resolution.problems:
            context.log.warning(line)
        for line in resolution.notes:
            context.log.info(line)
        today = datetime.now(UTC).date()
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        partition_requests: list = []
        run_requests: list[dg.RunRequest] = [
            # An exchange without a catalog yet gets it loaded now, not at the next daily refresh.
            dg.RunRequest(
                run_key=f"catalog:{ex.name}:{today}",
                asset_selection=[instruments_asset_key(ex.name)],
            )
            for ex in watchlist.exchanges
            if not stored[ex.name]
        ]
        pending = _pending(context.cursor)
        for ex in watchlist.exchanges:
            if needs_migration(context.instance, watchlist, ex.name):
                context.log.warning(
                    f"{ex.name}: its markets are in the month layout (candles/{ex.name}): run "
                    "`market-data migrate-layout` once; nothing is added or backfilled till then"
                )
                continue
            wanted = resolution.markets.get(ex.name, {})
            rows = stored[ex.name]
            starts = {
                k: first_ms(
                    m, rows[m.symbol.standard].listed_at if m.symbol.standard in rows else None
                )
                for k, m in wanted.items()
                if k not in existing[ex.name]
            }
            # new markets in the order of their first month: a group's markets start together
            new = sorted(starts, key=lambda k: (starts[k], k))
            gone = sorted(existing[ex.name] - set(wanted))
            for tf in SUPPORTED_TIMEFRAMES:  # each timeframe's asset
                parts = market_partitions(ex.name, tf)
                if added := [k for k in new if timeframe_of(k) == tf]:
                    partition_requests.append(parts.build_add_request(added))
                if deleted := [k for k in gone if timeframe_of(k) == tf]:
                    partition_requests.append(parts.build_delete_request(deleted))
            if new:
                context.log.info(f"{ex.name}: adding {len(new)} market(s): {_names(new)}")
            if gone:
                context.log.info(
                    f"{ex.name}: no longer watched (data kept): {len(gone)} market(s): "
                    f"{_names(gone)}"
                )
            queue = _still_watched(
                pending.get(ex.name, []), orders[ex.name], set(gone), context.log.warning
            )
            for tf in watchlist.timeframes_of(ex.name):  # a run is one timeframe's asset
                items = [
                    NewMarket(k, starts[k], wanted[k].timeframe.ms)
                    for k in new
                    if timeframe_of(k) == tf.code
                ]
                queue += group_backfills(items, now_ms, venue(ex.name).page_limit)
            room = max(0, RUNS_PER_TICK - len(run_requests))
            run_requests += [backfill_request(ex.name, g, today) for g in queue[:room]]
            pending[ex.name] = queue[room:]
            if pending[ex.name]:
                waiting = sum(g.markets for g in pending[ex.name])
                context.log.info(
                    f"{ex.name}: {len(pending[ex.name])} backfill run(s) of {waiting} market(s) "
                    "wait for the next ticks"
                )
        cursor = {"pending": {ex: [list(asdict(g).values()) for g in groups]
                              for ex, groups in pending.items() if groups}}  # fmt: skip
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=partition_requests,
            cursor=json.dumps(cursor),
        )

    return sensor


def gap_repair_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    @dg.sensor(
        name="gap_repair",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=all_candle_asset_keys(watchlist),
        description="Rematerializes (repair mode: only the gaps) each partition whose gap check "
        f"found open gaps, at most {watchlist.gaps.max_attempts} times per gap with growing delays.",
    )
    def sensor(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource
    ) -> dg.SensorResult:
        store = candle_store.store()
        now = int(datetime.now(UTC).timestamp() * 1000)
        watched = [ex.name for ex in watchlist.exchanges]
        busy = busy_partitions(context.instance, watched)
        partitions: dict[tuple[str, str], int] = {}
        for gap in due_gaps(store, watchlist.gaps, now):
            if gap["exchange"] not in watched:
                continue
            key = f"{gap['symbol']}:{gap['timeframe']}"
            pk = (gap["exchange"], partition_key_at(key, gap["gap_start"]))
            month = month_key_of(gap["gap_start"])
            if any(b.covers(key, month) for b in busy[gap["exchange"]]):
                continue  # a run in flight is fetching that month already
            partitions[pk] = max(partitions.get(pk, 0), gap["attempts"])
        requests = []
        for (exchange, partition), attempts in sorted(partitions.items()):
            asset = asset_of(exchange, partition)
            op_name = "__".join(asset.path)
            requests.append(
                dg.RunRequest(
                    run_key=f"repair:{exchange}:{partition}:{attempts}",
                    partition_key=partition,
                    asset_selection=[asset],
                    asset_check_keys=[gap_check_key(exchange, asset.path[-1])],
                    run_config={"ops": {op_name: {"config": {"repair": True}}}},
                    tags={REASON_TAG: "gap repair", ATTEMPT_TAG: str(attempts + 1), **URGENT},
                )
            )
        if requests:
            context.log.info(
                f"repairing {len(requests)} partition(s): {', '.join(p for _, p in partitions)}"
            )
        return dg.SensorResult(run_requests=requests)

    return sensor


def freshness_requests(
    exchange: str, timeframe: str, market_keys: list[str], now: datetime, final_fetch_hours: int
) -> list[dg.RunRequest]:
    """One ranged run over every market of one timeframe's asset, the year in progress
    (dynamic keys keep their insertion order, so first..last spans them all); early in a
    year, one more for the year just finished, its final fetch. The fresh and gap checks
    run with it (the gap check detecting only the tail: checks.TAIL_MS), or above
    checks.FRESHNESS_CHECKS_MAX markets the one ``recent`` check of both; not the
    consistency check (a year of 1m per market; the backfill's and the UI's)."""
    if not market_keys:
        return []
    year_start = now.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    years = [str(now.year)]
    if now - year_start < timedelta(hours=final_fetch_hours):
        years.insert(0, str(now.year - 1))
    return [
        dg.RunRequest(
            asset_selection=[candle_asset_key(exchange, timeframe)],
            asset_check_keys=freshness_check_keys(exchange, timeframe, len(market_keys)),
            tags={
                **range_tags((market_keys[0], y), (market_keys[-1], y)),
                FRESHNESS_TAG: exchange,
                **URGENT,
            },
        )
        for y in years
    ]


def freshness_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    @dg.sensor(
        name="freshness",
        minimum_interval_seconds=watchlist.freshness.interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=all_candle_asset_keys(watchlist),
        description="Brings the year in progress (by the exchange's clock) of every market up "
        f"to its last closed candle: every {watchlist.freshness.interval_s}s, one ranged run "
        "per candle asset (exchange x timeframe) that has a candle closed since its last one "
        "(skipped while the previous one is still queued or running, and while the live "
        "service has every market of the asset current).",
    )
    def sensor(
        context: dg.SensorEvaluationContext, candle_store: CandleStoreResource
    ) -> dg.SensorResult | dg.SkipReason:
        running = context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS))
        busy = {run_asset(r) for r in running if FRESHNESS_TAG in r.tags}
        #: per asset (exchange/timeframe), the candle boundary its last freshness run was for,
        #: by our own clock (the exchange's is known only as a run last read it)
        closes: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        wall_ms = int(datetime.now(UTC).timestamp() * 1000)
        store = candle_store.store()
        requests = []
        for ex in watchlist.exchanges:
            # the year in progress is the exchange's (its clock as the last run read it)
            clock = store.gaps.clock(ex.name)
            now = datetime.fromtimestamp(clock / 1000, UTC) if clock else datetime.now(UTC)
            live = live_health(store.live, ex.name, watchlist.live.stale_after_s)
            for tf in watchlist.timeframes_of(ex.name):
                asset = f"{ex.name}/{tf.code}"
                if (ex.name, tf.code) in busy:
                    context.log.info(f"{asset}: the previous freshness run is still in flight")
                    continue
                if closes.get(asset) == tf.floor(wall_ms):
                    continue  # no candle of this timeframe has closed since its last run
                keys = list(
                    context.instance.get_dynamic_partitions(
                        market_partitions(ex.name, tf.code).name
                    )
                )
                if live.covers({k: tf.ms for k in keys}):
                    context.log.info(f"{asset}: the live service has every market current")
                    continue
                found = freshness_requests(
                    ex.name, tf.code, keys, now, watchlist.freshness.final_fetch_hours
                )
                if found:
                    closes[asset] = tf.floor(wall_ms)
                requests += found
        if not requests:
            return dg.SkipReason("nothing to refresh")  # the cursor is as it was
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(closes))

    return sensor
