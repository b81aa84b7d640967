"""The status of every watched market: coverage, gaps, lag, Dagster activity, database health."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from market_data.defs.candles.assets import candle_asset_key
from market_data.defs.candles.partitions import (
    FRESHNESS_TAG,
    market_of,
    market_partitions,
    markets_of_run,
)
from market_data.domain.calendar import utc_text
from market_data.domain.expected import ALL_TIME, expected_count
from market_data.domain.freshness import is_stale, lag_seconds
from market_data.domain.gaps import EXCHANGE_EMPTY, OPEN
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.gaps import expected_ranges
from market_data.store.candles import CandleStore, ping, series_stats


@dataclass
class MarketStatus:
    exchange: str
    market: str
    first_candle: str | None
    last_candle: str | None
    rows: int
    expected: int
    missing: int
    exchange_empty: int
    open_gaps: int
    lag_s: float | None
    stale: bool
    last_materialization: str | None


@dataclass
class StatusReport:
    generated_at: str
    database_ok: bool
    database_latency_ms: float | None
    database_error: str | None = None
    markets: list[MarketStatus] = field(default_factory=list)
    runs_24h: dict[str, dict[str, int]] = field(default_factory=dict)  # exchange -> status -> n

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        head = "| exchange | market | first | last | rows | expected | missing | exch.-empty | open gaps | lag s | last materialization |"
        lines = [head, "|" + " --- |" * 11]
        for m in self.markets:
            lag = "" if m.lag_s is None else f"{m.lag_s:.0f}" + (" STALE" if m.stale else "")
            lines.append(
                f"| {m.exchange} | {m.market} | {m.first_candle or ''} | {m.last_candle or ''} | {m.rows} | "
                f"{m.expected} | {m.missing} | {m.exchange_empty} | {m.open_gaps} | {lag} | {m.last_materialization or ''} |"
            )
        return "\n".join(lines)


def _latest_materializations(
    instance: dg.DagsterInstance, exchange: str, limit: int = 1000
) -> dict[str, str]:
    """Market key -> time of its newest materialization, from the exchange's newest events."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=candle_asset_key(exchange)), limit=limit
    )
    latest: dict[str, str] = {}
    for record in records.records:  # newest first
        event = record.event_log_entry.dagster_event
        partition = event.partition if event is not None else None
        if partition is not None:
            latest.setdefault(market_of(str(partition)), utc_text(record.timestamp * 1000) or "")
    return latest


def collect_status(
    store: CandleStore, instance: dg.DagsterInstance, watchlist: Watchlist
) -> StatusReport:
    now = datetime.now(UTC)
    report = StatusReport(
        generated_at=now.isoformat(timespec="seconds"), database_ok=True, database_latency_ms=None
    )
    try:
        report.database_latency_ms = round(ping(store) * 1000, 2)
    except Exception as e:  # reachability is what is being reported
        report.database_ok, report.database_error = False, f"{type(e).__name__}: {e}"
        return report
    since = time.time() - timedelta(hours=24).total_seconds()
    runs = instance.get_runs(
        filters=dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC))
    )
    for ex in watchlist.exchanges:
        keys = _keys(instance, ex.name)
        known = set(keys)
        counts: dict[str, int] = {}
        for run in runs:  # runs naming one of the exchange's markets, or its freshness runs
            if markets_of_run(run.tags) & known or run.tags.get(FRESHNESS_TAG) == ex.name:
                counts[run.status.value] = counts.get(run.status.value, 0) + 1
        report.runs_24h[ex.name] = counts
        stats = series_stats(store, ex.name)
        clock = store.gaps.clock(ex.name)
        gaps = store.gaps.totals(ex.name)
        latest = _latest_materializations(instance, ex.name)
        for key in keys:
            market = watchlist.market_or_default(ex.name, key)
            tf = market.timeframe
            rows, first, last = stats.get((market.symbol.standard, tf.code), (0, None, None))
            expected = expected_count(expected_ranges(store, market, ALL_TIME), tf)
            open_gaps, open_span = gaps.get((market.symbol.standard, tf.code, OPEN), (0, 0))
            _, empty_span = gaps.get((market.symbol.standard, tf.code, EXCHANGE_EMPTY), (0, 0))
            lag = lag_seconds(last, tf.ms, clock)
            report.markets.append(
                MarketStatus(
                    exchange=ex.name, market=key, first_candle=utc_text(first), last_candle=utc_text(last), rows=rows,
                    expected=expected,
                    missing=open_span // tf.ms,
                    exchange_empty=empty_span // tf.ms,
                    open_gaps=open_gaps,
                    lag_s=lag,
                    stale=is_stale(lag, tf.ms, watchlist.freshness.max_lag_timeframes),
                    last_materialization=latest.get(key),
                )
            )  # fmt: skip
    return report


def _keys(instance: dg.DagsterInstance, exchange: str) -> list[str]:
    return list(instance.get_dynamic_partitions(market_partitions(exchange).name))
