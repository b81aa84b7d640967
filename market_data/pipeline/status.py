"""The status of every watched market: coverage, gaps (in the one vocabulary of
domain/gaps.py), lag, activity, database health. The command line, the reports/status asset
and the HTTP API all report this one collection.

What the orchestrator knows (which markets exist, when each was last materialized, the runs
of the last day) comes through an ``Activity``; defs/reports/status.py reads it from the
Dagster instance, so this module needs no Dagster.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from market_data.domain.calendar import utc_text
from market_data.domain.expected import (
    ALL_TIME,
    Listing,
    clip,
    expected_count,
    expected_window,
    unserved,
)
from market_data.domain.freshness import is_stale, lag_seconds
from market_data.domain.gaps import GapCounts
from market_data.domain.symbols import parse_symbol, symbol_matches
from market_data.domain.watchlist import Market, Watchlist
from market_data.pipeline.gaps import with_venue
from market_data.store.candles import (
    CandleStore,
    ping,
    series_stats,
    store_advice,
    stored_candles,
)
from market_data.store.live import LiveHealth, live_health
from market_data.store.series import Series


class Activity(Protocol):
    """What the orchestrator knows about an exchange's markets."""

    def markets(self, exchange: str) -> list[str]:
        """Keys (``BTC-USDT-SPOT:1h``) of the exchange's markets."""
        ...

    def last_materialized(self, exchange: str) -> dict[str, str]:
        """Market key -> time of its newest materialization (``YYYY-MM-DD HH:MM``)."""
        ...

    def runs_24h(self, exchange: str, markets: set[str]) -> dict[str, int]:
        """Run status -> how many of the exchange's runs were created in the last 24 hours."""
        ...


@dataclass
class MarketStatus:
    exchange: str
    market: str
    symbol: str
    timeframe: str
    first_candle: str | None
    last_candle: str | None
    rows: int
    expected: int
    #: expected candles not stored, whatever the reason
    absent: int
    open_gaps: int
    #: candles in open gaps of kind missing (never fetched)
    missing: int
    #: candles in open gaps of kind empty (the exchange returned nothing; not yet confirmed)
    empty: int
    #: candles the exchange confirmed it does not have
    exchange_empty: int
    #: candles before the exchange's history horizon (Kraken serves its newest 720), not
    #: stored and not expected: unavailable, not gaps
    unavailable: int
    lag_s: float | None
    stale: bool
    last_materialization: str | None
    #: the live service: "streaming" (its newest candle stored), "behind", "down" (the
    #: service is not beating or not connected); None: not streamed
    live: str | None = None
    #: candles written from the exchange's archive files, and built from its trades (the
    #: rest: its candle endpoint)
    from_archive: int = 0
    from_trades: int = 0


@dataclass
class StatusReport:
    generated_at: str
    database_ok: bool
    database_latency_ms: float | None
    database_error: str | None = None
    markets: list[MarketStatus] = field(default_factory=list)
    runs_24h: dict[str, dict[str, int]] = field(default_factory=dict)  # exchange -> status -> n
    #: exchange -> the live service's heartbeat (exchanges it has streamed)
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: alert messages not delivered yet: how many, the oldest's time, target and error
    alerts: dict[str, Any] = field(default_factory=dict)
    #: where runs go when they are not run by the daemon's host (the Celery launcher: its
    #: broker, whether it answers, the live workers and their queues); empty otherwise
    workers: dict[str, Any] = field(default_factory=dict)
    #: the candle store: its dialect, candles stored, candles the watchlist expects, and
    #: advice when the embedded SQLite store is outgrown (None otherwise)
    store: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def only(
        self, exchange: str | None = None, symbol: str | None = None, timeframe: str | None = None
    ) -> StatusReport:
        """The report narrowed to markets of ``exchange``, named by ``symbol`` (any form
        symbol_matches takes), of ``timeframe``."""
        markets = [
            m for m in self.markets
            if (exchange is None or m.exchange == exchange)
            and (symbol is None or symbol_matches(symbol, parse_symbol(m.symbol)))
            and (timeframe is None or m.timeframe == timeframe)
        ]  # fmt: skip
        runs = {ex: n for ex, n in self.runs_24h.items() if exchange is None or ex == exchange}
        live = {ex: v for ex, v in self.live.items() if exchange is None or ex == exchange}
        return StatusReport(
            self.generated_at, self.database_ok, self.database_latency_ms, self.database_error,
            markets, runs, live, self.alerts, self.workers, self.store,
        )  # fmt: skip

    def headers(self) -> list[str]:
        return ["exchange", "market", "first", "last", "rows", "archive", "trades", "expected", "absent", "open gaps",
                "missing", "empty", "exch.-empty", "unavail.", "lag s", "last run", "live"]  # fmt: skip

    def rows(self) -> list[list[Any]]:
        """One row per market, in the order of ``headers``."""
        return [
            [m.exchange, m.market, m.first_candle or "", m.last_candle or "", m.rows, m.from_archive, m.from_trades, m.expected,
             m.absent, m.open_gaps, m.missing, m.empty, m.exchange_empty, m.unavailable,
             "" if m.lag_s is None else f"{m.lag_s:.0f}" + (" STALE" if m.stale else ""),
             m.last_materialization or "", m.live or ""]
            for m in self.markets
        ]  # fmt: skip

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers()) + " |", "|" + " --- |" * len(self.headers())]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in self.rows()]
        return "\n".join(lines)


def collect_status(store: CandleStore, activity: Activity, watchlist: Watchlist) -> StatusReport:
    report = StatusReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        database_ok=True,
        database_latency_ms=None,
    )
    try:
        report.database_latency_ms = round(ping(store) * 1000, 2)
    except Exception as e:  # reachability is what is being reported
        report.database_ok, report.database_error = False, one_line(e)
        return report
    report.alerts = store.alerts.undelivered()
    for ex in watchlist.exchanges:
        keys = activity.markets(ex.name)
        report.runs_24h[ex.name] = activity.runs_24h(ex.name, set(keys))
        stats = series_stats(store, ex.name)
        sources = store.by_source(ex.name)
        clock = store.gaps.clock(ex.name)
        gaps = store.gaps.totals(ex.name)
        latest = activity.last_materialized(ex.name)
        live = live_health(store.live, ex.name, watchlist.live.stale_after_s)
        if live.service is not None:
            report.live[ex.name] = live_summary(live)
        catalog = store.instruments.stored(ex.name)  # one query, not one per market
        for key in keys:
            market = watchlist.market_or_default(ex.name, key)
            tf, name = market.timeframe, market.symbol.standard
            rows, first, last = stats.get((name, tf.code), (0, None, None))
            row = catalog.get(name)
            listing = with_venue(row.listing if row is not None else Listing(), ex)
            window = expected_window(market, listing, clock)
            expected = expected_count(clip(ALL_TIME, window, tf), tf)
            unavailable = unavailable_count(store, market, listing, clock)
            counts = gaps.get((name, tf.code), GapCounts())
            lag = lag_seconds(last, tf.ms, clock)
            report.markets.append(
                MarketStatus(
                    exchange=ex.name, market=key, symbol=name, timeframe=tf.code,
                    first_candle=utc_text(first), last_candle=utc_text(last), rows=rows,
                    expected=expected, absent=max(0, expected - rows),
                    open_gaps=counts.open_gaps, missing=counts.missing, empty=counts.empty,
                    exchange_empty=counts.exchange_empty, unavailable=unavailable,
                    lag_s=lag,
                    stale=is_stale(lag, tf.ms, watchlist.freshness.max_lag_timeframes),
                    last_materialization=latest.get(key),
                    live=live_state(live, key, tf.ms),
                    from_archive=sources.get((name, tf.code), {}).get("archive", 0),
                    from_trades=sources.get((name, tf.code), {}).get("trades", 0),
                )
            )  # fmt: skip
    stored, expected = stored_candles(store), sum(m.expected for m in report.markets)
    report.store = {
        "dialect": store.dialect,
        "candles": stored,
        "expected": expected,
        "advice": store_advice(store.dialect, stored, expected),
    }
    return report


def live_state(live: LiveHealth, key: str, tf_ms: int) -> str | None:
    """ "streaming", "behind", or "down": the service not beating, or the market's connection
    not open (a service with one connection down says which markets it carries); a row
    written before sql/016 says nothing of its connection: down when any is."""
    s = live.streams.get(key)
    if s is None:
        return None
    if not live.beating or s.connected is False or (s.connected is None and not live.healthy):
        return "down"
    return "streaming" if live.current(key, tf_ms) else "behind"


def live_summary(live: LiveHealth) -> dict[str, Any]:
    s = live.service
    assert s is not None
    return {
        "state": "streaming" if live.healthy else "down",
        "streams_down": len(live.down()),
        "connections": f"{s.connected}/{s.connections}",
        "markets": s.streams,
        "heartbeat_age_s": round(time.time() - s.heartbeat_at / 1000, 1),
        "closes_stored": s.closes_stored,
        "latency_p50_ms": s.latency_p50_ms,
        "latency_p99_ms": s.latency_p99_ms,
        "reconnects": s.reconnects,
        "last_error": s.last_error,
        "pid": s.pid,
        "host": s.host,
    }


def unavailable_count(
    store: CandleStore, market: Market, listing: Listing, now_ms: int | None
) -> int:
    """Candles in the span the exchange no longer serves that are not stored."""
    span = unserved(market, listing, now_ms)
    if span is None:
        return 0
    stored = store.candle_stats(Series.of(market), *span)[0]
    return max(0, expected_count([span], market.timeframe) - stored)


def one_line(error: BaseException) -> str:
    """The error's type and first line (a driver's message can run to many lines)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
