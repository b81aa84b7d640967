"""The candle asset factory: one asset per exchange, e.g. ``candles/binance``."""

import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from pydantic import Field

from market_data.defs.candles.gapwork import plan_repair
from market_data.defs.candles.ingest import MarketReport, exchange_now, ingest_market, instrument
from market_data.defs.candles.partitions import MONTHS_PER_RUN, candle_partitions, ranges_by_market
from market_data.defs.instruments.assets import instruments_asset_key
from market_data.defs.resources import (
    STORE_KEY,
    CandleStoreResource,
    ExchangeResource,
    exchange_resource_key,
)
from market_data.domain.candles import CandleContractError
from market_data.domain.watchlist import Market, Watchlist, WatchlistError, split_key
from market_data.exchanges.errors import ExchangeDataError, PermanentExchangeError


class CandleRunConfig(dg.Config):
    dry_run: bool = Field(False, description="fetch and validate, write nothing")
    refetch: bool = Field(False, description="fetch again what coverage says was fetched")
    not_before: str | None = Field(None, description="YYYY-MM-DD: fetch nothing earlier")
    not_after: str | None = Field(None, description="YYYY-MM-DD: fetch nothing from this day on")
    repair: bool = Field(False, description="fetch only the open gaps of these partitions")
    max_gaps: int | None = Field(None, description="with repair: at most this many gaps per market")


def candle_asset_key(exchange: str) -> dg.AssetKey:
    return dg.AssetKey(["candles", exchange])


def _day_ms(text: str | None) -> int | None:
    if not text:
        return None
    day = date.fromisoformat(text)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def market_for(watchlist: Watchlist, exchange: str, key: str) -> Market:
    """The watched market of a partition key; a key not in the watchlist (added by the command
    line) gets the watchlist's start date."""
    try:
        return watchlist.market(exchange, key)
    except WatchlistError:
        symbol, timeframe = split_key(key)
        return Market(exchange, symbol, timeframe, watchlist.start)


def _metadata(
    reports: list[MarketReport], requests: int, seconds: float, dry_run: bool
) -> dict[str, dg.MetadataValue]:
    firsts = [r.first_ts for r in reports if r.first_ts is not None]
    lasts = [r.last_ts for r in reports if r.last_ts is not None]
    cells = [
        (
            r.key, r.rows_written, r.candles_fetched, r.requests, r.expected, r.present, r.missing,
            "" if r.lag_s is None else f"{r.lag_s:.0f}" + (" STALE" if r.stale else ""),
        )
        for r in reports
    ]  # fmt: skip
    rows = "\n".join("| " + " | ".join(map(str, c)) + " |" for c in cells)
    meta: dict[str, dg.MetadataValue] = {
        "rows_written": dg.MetadataValue.int(sum(r.rows_written for r in reports)),
        "candles_fetched": dg.MetadataValue.int(sum(r.candles_fetched for r in reports)),
        "requests": dg.MetadataValue.int(requests),
        "expected": dg.MetadataValue.int(sum(r.expected for r in reports)),
        "present": dg.MetadataValue.int(sum(r.present for r in reports)),
        "missing": dg.MetadataValue.int(sum(r.missing for r in reports)),
        "seconds": dg.MetadataValue.float(round(seconds, 3)),
        "dry_run": dg.MetadataValue.bool(dry_run),
        "markets": dg.MetadataValue.md(
            "| market | rows written | fetched | requests | expected | present | missing | lag s |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + rows
        ),
    }
    lags = [r.lag_s for r in reports if r.lag_s is not None]
    if lags:
        meta["max_lag_seconds"] = dg.MetadataValue.float(round(max(lags), 1))
    meta["stale_markets"] = dg.MetadataValue.text(
        ", ".join(r.key for r in reports if r.stale) or "none"
    )
    if firsts:
        meta["first_candle"] = dg.MetadataValue.timestamp(min(firsts) / 1000)
        meta["last_candle"] = dg.MetadataValue.timestamp(max(lasts) / 1000)
    return meta


def _step_retries(retries: int) -> dg.RetryPolicy | None:
    """A step whose requests used all their attempts is retried whole (it resumes from what is
    stored) after 15 s, 30 s, ... with jitter."""
    if retries <= 0:
        return None
    return dg.RetryPolicy(
        max_retries=retries, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )


def candle_asset(exchange: str, watchlist: Watchlist) -> dg.AssetsDefinition:
    ex_key = exchange_resource_key(exchange)

    @dg.asset(
        key=candle_asset_key(exchange),
        partitions_def=candle_partitions(exchange, watchlist.start),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MONTHS_PER_RUN),
        pool=f"exchange:{exchange}",
        deps=[instruments_asset_key(exchange)],
        required_resource_keys={ex_key, STORE_KEY},
        group_name="candles",
        kinds={"ccxt", "sql"},
        retry_policy=_step_retries(watchlist.exchange(exchange).step_retries),
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(seconds=watchlist.freshness.fail_after_s),
            warn_window=timedelta(seconds=watchlist.freshness.warn_after_s),
        ),
        description=f"Closed OHLCV candles from {exchange}, per market (symbol:timeframe) and "
        "month, written to the candle store page by page.",
    )
    def candles(context: dg.AssetExecutionContext, config: CandleRunConfig) -> dg.MaterializeResult:
        started = time.monotonic()
        exchange_res: ExchangeResource = getattr(context.resources, ex_key)
        store_res: CandleStoreResource = getattr(context.resources, STORE_KEY)
        client, store = exchange_res.client(), store_res.store()
        ranges = ranges_by_market(list(context.partition_keys))
        lo, hi = _day_ms(config.not_before), _day_ms(config.not_after)
        reports: list[MarketReport] = []
        try:
            markets = client.load_markets()
            now = exchange_now(client, exchange_res.backoff())
            if not config.dry_run:  # a dry run leaves no trace, not even the clock reading
                store.gaps.save_clock(exchange, now)
            for key, bounds in ranges.items():
                market = market_for(watchlist, exchange, key)
                clipped = [(max(s, lo or s), min(e, hi or e)) for s, e in bounds]
                clipped = [(s, e) for s, e in clipped if s < e]
                if config.repair:
                    span = client.page_limit * market.timeframe.ms
                    clipped = plan_repair(
                        store, market, clipped, watchlist.gaps, span, config.max_gaps
                    )
                    context.log.info(f"{key}: repairing {len(clipped)} range(s)")
                report = ingest_market(
                    client,
                    store,
                    market,
                    instrument(client, markets, market),
                    clipped,
                    now,
                    dry_run=config.dry_run,
                    refetch=config.refetch or config.repair,
                    backoff=exchange_res.backoff(),
                    log=context.log.info,
                )
                limit_s = watchlist.freshness.max_lag_timeframes * market.timeframe.ms / 1000
                report.stale = (
                    report.lag_s is not None and report.lag_s > limit_s and not config.repair
                )
                if report.stale:
                    context.log.warning(
                        f"{key}: stale, newest candle closed {report.lag_s:.0f}s before the exchange clock"
                    )
                reports.append(report)
                context.log.info(
                    f"{key}: {report.rows_written} rows written, {report.requests} requests, "
                    f"{report.present}/{report.expected} candles present"
                )
        except (PermanentExchangeError, CandleContractError, WatchlistError) as e:
            raise dg.Failure(description=f"{exchange}: {e}", allow_retries=False) from e
        except ExchangeDataError as e:
            raise dg.Failure(description=f"{exchange}: gave up after retries: {e}") from e
        seconds = time.monotonic() - started
        return dg.MaterializeResult(
            metadata=_metadata(reports, client.requests, seconds, config.dry_run)
        )

    return candles
