"""Running the candle asset in tests: a watchlist on the simulator, an ephemeral instance."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import ccxt
import dagster as dg
import sqlalchemy as sa

from market_data.config import timeframes_of
from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.checks import fresh_check, gap_check, gap_check_job, recent_check
from market_data.defs.candles.partitions import (
    RANGE_END,
    RANGE_START,
    market_of,
    market_partitions,
    timeframe_of,
)
from market_data.defs.resources import STORE_KEY, CandleStoreResource, build_resources
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import Watchlist, parse_watchlist
from market_data.simulator.book import CandleBook
from market_data.simulator.faults import Faults
from market_data.simulator.generator import Bars
from market_data.simulator.markets import MARKETS, Kind, SimMarket
from market_data.store.candles import CandleStore, Series
from market_data.store.tables import metadata

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def watchlist(
    base_url: str,
    markets: list[Any],
    start: str = "2026-01-01",
    exchange: str = "binance",
    **extra: Any,
) -> Watchlist:
    """One exchange of the simulator (``base_url``: its root; other exchanges than Binance
    are served under their name), quick retries. Binance unthrottled (the simulator's
    weight budget is far away); the others with ccxt's own throttle, as a user runs them:
    their budgets are a few requests a second, and a test's runs follow one another.
    Kraken without its trades (a test about them says ``trades=True``): at its rate of one
    request a second, they are minutes of a test's history. ``extra``: more settings."""
    binance = exchange == "binance"
    url = base_url if binance else f"{base_url}/{exchange}"
    settings = {"base_url": url, "retry_base_s": 0.05, "step_retries": 0,
                "rate_limit_pause_s": 0.5, **({"rate_limit_ms": 0} if binance else {}),
                **({"trades": False} if exchange == "kraken" else {}), **extra}  # fmt: skip
    data = {"start": start, "exchanges": {exchange: {**settings, "markets": markets}}}
    return parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)


@dataclass
class Harness:
    """The watchlist's candle assets (one per timeframe) with their checks; a run picks the
    asset of its partition key's timeframe."""

    wl: Watchlist
    store_url: str
    instance: dg.DagsterInstance

    def __post_init__(self) -> None:
        self.exchange = self.wl.exchanges[0].name
        frames = [tf.code for tf in self.wl.timeframes_of(self.exchange)]
        self.assets = {tf: candle_asset(self.exchange, tf, self.wl) for tf in frames}
        self.checks = {tf: gap_check(self.exchange, tf, self.wl) for tf in frames}
        self.fresh = {tf: fresh_check(self.exchange, tf, self.wl) for tf in frames}
        self.recent = {tf: recent_check(self.exchange, tf, self.wl) for tf in frames}
        self.resources = build_resources(self.wl) | {
            STORE_KEY: CandleStoreResource(database_url=self.store_url)
        }
        for tf in frames:
            keys = [m.key for m in self.wl.markets if m.timeframe.code == tf]
            self.instance.add_dynamic_partitions(market_partitions(self.exchange, tf).name, keys)

    @property
    def asset(self) -> dg.AssetsDefinition:
        """The asset of the watchlist's only timeframe."""
        (only,) = self.assets.values()
        return only

    @property
    def store(self) -> CandleStore:
        return self.resources[STORE_KEY].store()

    def run(
        self,
        first: str,
        last: str | None = None,
        config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        recent: bool = False,
    ) -> dg.ExecuteInProcessResult:
        """Materialize partition ``first`` or the range ``first``..``last`` (``tags``: the
        run's own, e.g. a freshness run's), with the partitioned gap and fresh checks, or
        (``recent``) the one ``recent`` check instead, as a large freshness run does."""
        tf = timeframe_of(market_of(first))
        kwargs: dict[str, Any] = {"partition_key": first, "tags": tags or {}}
        if last is not None:
            kwargs = {"tags": {RANGE_START: first, RANGE_END: last, **(tags or {})}}
        asset = self.assets[tf]
        run_config = {"ops": {asset.op.name: {"config": config}}} if config else None
        checks = [self.recent[tf]] if recent else [self.checks[tf], self.fresh[tf]]
        return dg.materialize(
            [asset, *checks],
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
            run_config=run_config,
            **kwargs,
        )

    def run_months(
        self, market: str, first: str, last: str | None = None, config: dict[str, Any] | None = None
    ) -> dg.ExecuteInProcessResult:
        """Materialize the year partition(s) of ``market`` holding months ``first``..``last``
        (``YYYY-MM``), fetching those months only (the run's not_before / not_after, as
        `market-data backfill --start --end` does): a test's span, not the whole year."""
        last = last or first
        y0 = int(first[:4])
        y1, m1 = map(int, last.split("-"))
        end = f"{y1 + m1 // 12}-{m1 % 12 + 1:02d}-01"
        span = {"not_before": f"{first}-01", "not_after": end}
        keys = (f"{market}|{y0}", f"{market}|{y1}" if y1 != y0 else None)
        return self.run(*keys, config={**span, **(config or {})})

    def run_check(self, partition: str) -> dg.AssetCheckEvaluation:
        """The gap check alone, on demand, for one partition."""
        tf = timeframe_of(market_of(partition))
        job_def = gap_check_job(self.exchange, tf, self.wl)
        defs = dg.Definitions(
            assets=[self.assets[tf]], asset_checks=[self.checks[tf]], jobs=[job_def],
            resources=self.resources,
        )  # fmt: skip
        job = defs.resolve_job_def(job_def.name)
        result = job.execute_in_process(instance=self.instance, partition_key=partition)
        (evaluation,) = self.evaluations(result, "no_gaps")
        return evaluation

    @staticmethod
    def evaluations(result: dg.ExecuteInProcessResult, check: str) -> list[dg.AssetCheckEvaluation]:
        """The run's results of ``check``, one per partition it covered."""
        return [e for e in result.get_asset_check_evaluations() if e.check_name == check]

    def check_result(self, result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
        """The gap check's result of a single-partition run."""
        (evaluation,) = self.evaluations(result, "no_gaps")
        return evaluation

    def partitions(self, result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
        """Each partition's materialization metadata."""
        mats = [
            m
            for asset in self.assets.values()
            for m in result.asset_materializations_for_node(asset.op.name)
        ]
        return {str(m.partition): {k: v.value for k, v in m.metadata.items()} for m in mats}

    def metadata(self, result: dg.ExecuteInProcessResult) -> dict[str, Any]:
        """The run's figures: the partitions' summed, lag and staleness over its markets."""
        parts = list(self.partitions(result).values())
        out: dict[str, Any] = {
            k: sum(p[k] for p in parts)
            for k in ("rows_written", "candles_fetched", "expected", "present", "absent")
        }
        out["run_dry_run"] = all(p["run_dry_run"] for p in parts)
        lags = [p["lag_seconds"] for p in parts if "lag_seconds" in p]
        if lags:
            out["max_lag_seconds"] = max(lags)
        stale = sorted(
            {k.split("|")[0] for k, p in self.partitions(result).items() if p.get("stale")}
        )
        out["stale_markets"] = ", ".join(stale) or "none"
        return out

    def stored(self, symbol: str, timeframe: str) -> list[list[float]]:
        frame = self.store.read_candles(Series(self.exchange, symbol, timeframe), 0, 2**62)
        return frame.values.tolist()


def exchange_truth(
    market_id: str, kind: Kind, timeframe: str, start: int, end: int, now: int
) -> list[list[float]]:
    """The simulator's closed candles opening in [start, end), as a client parses them."""
    market = next(m for m in MARKETS if m.id == market_id and m.kind is kind)
    tf = Timeframe.parse(timeframe)
    end = min(end, tf.floor(now))
    bars = CandleBook().klines(market, tf.ms, start, end - 1, 10**9, now, Faults())
    return parse_like_a_client(bars, market)


def parse_like_a_client(bars: Bars, market: SimMarket) -> list[list[float]]:
    """Integer ticks and lots as the exact decimals the wire carries, parsed to floats."""
    pd, ld = market.price_decimals, market.lot_decimals
    return [
        [
            int(t),
            *(float(Decimal(int(x)).scaleb(-pd)) for x in prices),
            float(Decimal(int(vol)).scaleb(-ld)),
        ]
        for t, *prices, vol in zip(
            bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True
        )
    ]


def clear(url: str) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for table in metadata.tables:
            if sa.inspect(conn).has_table(table):
                conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608 (constant names)
    engine.dispose()
