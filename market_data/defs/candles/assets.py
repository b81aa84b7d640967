"""The candle asset factory: one asset per exchange and timeframe, e.g. ``candles/binance/1h``."""

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from market_data.defs.candles.partitions import (
    FRESHNESS_TAG,
    candle_partitions,
    market_of,
    ranges_by_market,
    timeframe_of,
)
from market_data.defs.candles.results import partition_metadata, run_written
from market_data.defs.instruments.assets import instruments_asset_key
from market_data.defs.resources import CandleStoreResource, ExchangesResource
from market_data.defs.runs import run_is_stopping
from market_data.domain.backfills import partitions_per_ui_run
from market_data.domain.calendar import day_ms
from market_data.domain.candles import CandleContractError
from market_data.domain.freshness import is_stale
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import Watchlist, WatchlistError
from market_data.exchanges.errors import (
    ExchangeBannedError,
    ExchangeDataError,
    PermanentExchangeError,
    RateLimitedError,
)
from market_data.exchanges.venues import venue
from market_data.pipeline.alerts import report_rate_limits
from market_data.pipeline.ingest import (
    Fetched,
    FetchOptions,
    MarketsFailed,
    describe,
    fetch_markets,
)
from market_data.pipeline.stop import Stopped, Stopper

#: partitions of a run that get their own figures: ``add_asset_metadata(partition_key=)``
#: rebuilds the run's whole range on each call (2,500 partitions: 45 s, BENCHMARKS.md); a
#: backfill run has at most 500 (domain/backfills.py), a freshness run of a whole exchange's
#: timeframe more (its markets' lags are in the fresh check's per-partition results)
PER_PARTITION_METADATA_MAX = 500


#: threads a run parses archive files and writes to the store with (asyncio's default
#: executor would take cores + 4): as many as the cores, 2 to 4; each thread more only adds
#: a malloc arena (bench/archive.py: 10 markets x a year of 1m, peak RSS 540-600 MB with
#: 6 threads, 440-470 MB with 2, no slower)
WORKER_THREADS = max(2, min(4, os.cpu_count() or 2))

#: seconds of building history from trades (Kraken: a request a second) before a run gives
#: the exchange's pool slot to the runs waiting for it (freshness first), then resumes
TRADES_SLICE_S = 120.0


class CandleRunConfig(dg.Config):
    dry_run: bool = Field(False, description="fetch and validate, write nothing")
    refetch: bool = Field(False, description="fetch again what coverage says was fetched")
    not_before: str | None = Field(None, description="YYYY-MM-DD: fetch nothing earlier")
    not_after: str | None = Field(None, description="YYYY-MM-DD: fetch nothing from this day on")
    repair: bool = Field(False, description="fetch only the open gaps of these partitions")
    max_gaps: int | None = Field(None, description="with repair: at most this many gaps per market")
    trades_slice_s: float = Field(
        TRADES_SLICE_S,
        description="build history from trades (Kraken) this long, then free the exchange's "
        "pool slot for waiting runs and resume",
    )


def candle_asset_key(exchange: str, timeframe: str) -> dg.AssetKey:
    return dg.AssetKey(["candles", exchange, timeframe])


def asset_of(exchange: str, market_key: str) -> dg.AssetKey:
    """The candle asset a market key (``SYMBOL:TIMEFRAME``) is a partition of."""
    return candle_asset_key(exchange, timeframe_of(market_key))


def candle_asset_keys(watchlist: Watchlist, exchange: str) -> list[dg.AssetKey]:
    """The exchange's candle assets, one per timeframe of its watchlist, shortest first."""
    return [candle_asset_key(exchange, tf.code) for tf in watchlist.timeframes_of(exchange)]


def all_candle_asset_keys(watchlist: Watchlist) -> list[dg.AssetKey]:
    return [k for ex in watchlist.exchanges for k in candle_asset_keys(watchlist, ex.name)]


def _day_ms(text: str | None) -> int | None:
    return day_ms(date.fromisoformat(text)) if text else None


def step_retry(
    retries: int, failures: int, attempt: int, error: Exception
) -> dg.RetryRequested | dg.Failure:
    """A step whose requests used all their attempts is retried whole (it resumes from what is
    stored) after 15 s, 30 s, ... with jitter, ``retries`` times; then it fails. ``failures``:
    the step's earlier attempts that failed so (``attempt``: all of them, the pool yields
    too).

    Raised by the asset itself rather than left to a RetryPolicy: a policy would also retry a
    step that was interrupted (Ctrl-C, SIGTERM, a terminated run), which must stop instead."""
    if failures >= retries:
        return dg.Failure(description=f"gave up after retries: {error}", allow_retries=False)
    policy = dg.RetryPolicy(
        max_retries=retries, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )
    return dg.RetryRequested(
        max_retries=attempt + 1, seconds_to_wait=policy.calculate_delay(failures + 1)
    )


#: run tag: how many times the run's candle step gave its exchange's pool slot back while
#: building history from trades (those attempts are not failures)
POOL_YIELDS_TAG = "market_data/pool_yields"


def pool_yield(
    context: dg.AssetExecutionContext, exchange: str, pending: list[str]
) -> dg.RetryRequested:
    """End this attempt of the step so the exchange's pool slot is free for the runs waiting
    for it (Dagster frees a step's slot when it is up for retry, and the next attempt waits
    for a slot again); the step resumes from what is stored a second later."""
    yields = pool_yields(context) + 1
    context.instance.add_run_tags(context.run.run_id, {POOL_YIELDS_TAG: str(yields)})
    context.log.info(
        f"{exchange}: {len(pending)} market(s) still building history from trades "
        f"({', '.join(pending[:3])}{', ...' if len(pending) > 3 else ''}): the pool slot goes "
        f"to the runs waiting for it, then this step resumes (yield {yields})"
    )
    return dg.RetryRequested(max_retries=context.retry_number + 1, seconds_to_wait=1)


def pool_yields(context: dg.AssetExecutionContext) -> int:
    run = context.instance.get_run_by_id(context.run.run_id)
    return int((run.tags if run else {}).get(POOL_YIELDS_TAG, "0"))


def freshness_policy(watchlist: Watchlist, timeframe: Timeframe) -> dg.FreshnessPolicy:
    """Warn and fail windows of the watchlist, at least one and two of the timeframe's
    candles plus a freshness interval (a 1d asset is materialized once a day)."""
    f, tf_s = watchlist.freshness, timeframe.ms // 1000
    return dg.FreshnessPolicy.time_window(
        warn_window=timedelta(seconds=max(f.warn_after_s, tf_s + f.interval_s)),
        fail_window=timedelta(seconds=max(f.fail_after_s, 2 * tf_s + f.interval_s)),
    )


def candle_asset(exchange: str, timeframe: str, watchlist: Watchlist) -> dg.AssetsDefinition:
    step_retries = watchlist.exchange(exchange).step_retries
    key = candle_asset_key(exchange, timeframe)
    partitions = candle_partitions(exchange, timeframe, watchlist.start)
    tf = Timeframe.parse(timeframe)

    @dg.asset(
        key=key,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.multi_run(
            max_partitions_per_run=partitions_per_ui_run(tf.ms, venue(exchange).page_limit)
        ),
        pool=f"exchange:{exchange}",
        deps=[instruments_asset_key(exchange)],
        group_name="candles",
        kinds={"ccxt", "sql"},
        freshness_policy=freshness_policy(watchlist, tf),
        description=f"Closed {timeframe} OHLCV candles from {exchange}, per market "
        "(symbol:timeframe) and year, written to the candle store as they arrive.",
    )
    def candles(
        context: dg.AssetExecutionContext,
        config: CandleRunConfig,
        exchanges: ExchangesResource,
        candle_store: CandleStoreResource,
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        stop = Stopper(lambda: run_is_stopping(context.instance, context.run.run_id))
        wanted = {
            watchlist.market_or_default(exchange, key): bounds
            for key, bounds in ranges_by_market(list(context.partition_keys)).items()
        }
        options = FetchOptions(
            dry_run=config.dry_run,
            refetch=config.refetch,
            not_before_ms=_day_ms(config.not_before) or 0,
            not_after_ms=_day_ms(config.not_after) or 2**62,
            repair=config.repair,
            max_gaps=config.max_gaps,
            gaps=watchlist.gaps,
            # a freshness run brings each market's newest candles, not its year's history
            tail=FRESHNESS_TAG in context.run.tags,
            # a slice resumes from coverage: not for runs that fetch what coverage has
            trades_slice_s=(
                None if config.dry_run or config.refetch or config.repair else config.trades_slice_s
            ),
        )
        store = candle_store.store()
        requests = 0

        limited = {"bans": 0, "rate_limits": 0}  # for the alerts

        def on_retry(n: int, err: Exception, wait: float) -> None:
            context.log.info(f"retry {n} in {wait:.1f}s: {err}")
            if isinstance(err, ExchangeBannedError):
                limited["bans"] += 1
            elif isinstance(err, RateLimitedError):
                limited["rate_limits"] += 1

        async def fetch() -> Fetched:
            nonlocal requests
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="candles")
            )
            client = exchanges.client(exchange, sleep=stop.sleep, on_retry=on_retry)
            try:
                return await fetch_markets(client, store, wanted, options, context.log.info, stop)
            finally:
                requests = client.requests
                await client.close()
                report_rate_limits(store, watchlist.alerts, exchange, context.run.run_id, **limited)

        refused: MarketsFailed | None = None
        try:
            fetched = asyncio.run(fetch())
        except MarketsFailed as e:  # some markets refused for good: the others are written
            fetched, refused = e.fetched, e
        except Stopped as e:
            # the pages written so far are kept; the run ends CANCELED, and is not retried
            context.log.warning(f"{exchange}: {e}")
            raise dg.DagsterExecutionInterruptedError() from e
        except (PermanentExchangeError, CandleContractError, WatchlistError) as e:
            raise dg.Failure(description=f"{exchange}: {e}", allow_retries=False) from e
        except (ExchangeDataError, sa.exc.OperationalError, sa.exc.InterfaceError) as e:
            # the exchange or the store kept failing: the step is retried whole, later
            attempt = context.retry_number
            raise step_retry(step_retries, attempt - pool_yields(context), attempt, e) from e
        if fetched.trades_pending:  # a slice of history from trades: let others in, resume
            raise pool_yield(context, exchange, fetched.trades_pending)
        for market, bounds in wanted.items():
            report = fetched.markets[market.key]
            context.log.info(describe(report))
            # only a run that reaches the present can leave a market stale (not history)
            reaches_now = min(max(hi for _, hi in bounds), options.not_after_ms) > fetched.now_ms
            if (
                not config.repair
                and reaches_now
                and is_stale(
                    report.lag_s, market.timeframe.ms, watchlist.freshness.max_lag_timeframes
                )
            ):
                context.log.warning(
                    f"{market.key}: stale, newest candle closed {report.lag_s:.0f}s "
                    "before the exchange clock"
                )
        run_metadata = {  # the run's own figures, the same on every partition
            "run_dry_run": dg.MetadataValue.bool(config.dry_run),
            "run_requests": dg.MetadataValue.int(requests),
            "run_markets": dg.MetadataValue.int(len(fetched.markets)),
            "run_seconds": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            **run_written(fetched),
        }
        if refused is not None:
            # the markets that were fetched are materialized, partition by partition; the
            # step fails naming the others, whose partitions alone stay unmaterialized
            for pk in context.partition_keys:
                if market_of(pk) not in fetched.failed:
                    meta = (
                        partition_metadata(pk, fetched, watchlist, exchange, options.not_after_ms)
                        | run_metadata
                    )
                    context.log_event(dg.AssetMaterialization(key, partition=pk, metadata=meta))
            for market_key, error in fetched.failed.items():
                context.log.error(f"{market_key}: not fetched: {error}")
            raise dg.Failure(
                description=f"{exchange}: {len(fetched.failed)} of {len(fetched.markets)} "
                f"market(s) refused, the others written: {refused}",
                allow_retries=False,
            ) from refused
        # each partition's materialization carries that market-year's own figures, up to
        # a bound: Dagster checks each call against the run's whole range (quadratic)
        keys = list(context.partition_keys)
        if len(keys) > PER_PARTITION_METADATA_MAX:
            context.log.info(
                f"{len(keys)} partitions: each carries the run's figures only (above "
                f"{PER_PARTITION_METADATA_MAX}; each market's lag is in the fresh check)"
            )
            keys = []
        for pk in keys:
            context.add_asset_metadata(
                partition_metadata(pk, fetched, watchlist, exchange, options.not_after_ms),
                partition_key=pk,
            )
        return dg.MaterializeResult(metadata=run_metadata)

    return candles
