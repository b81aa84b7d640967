"""One freshness tick for 100 markets on one exchange (20 spot pairs x 5 timeframes).

The markets are first brought up to the simulator's clock; the clock then moves on by an
hour and one tick runs: the freshness sensor's run request, materialized as the daemon
would launch it. Prints runs launched, requests made and wall time until all 100 markets
are fresh, on loopback and with 100 ms of latency under Binance's own throttle. Targets: a
constant number of runs per exchange (1) and under 10 s.

    python bench/freshness.py       # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import os
import time
import warnings
from datetime import UTC, datetime

import ccxt
import dagster as dg
from common import scratch_database  # bench/, on sys.path when run as a script

from market_data.definitions import build_definitions
from market_data.domain.watchlist import parse_watchlist
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.markets import MARKETS, Kind
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series

warnings.simplefilter("ignore")
TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h"]
NOW = int(datetime.now(UTC).timestamp() * 1000)


def main() -> None:
    for label, latency_ms, rate_limit_ms in (
        ("loopback, no throttle", 0, 0),
        ("latency 100 ms, Binance's own throttle (ccxt's default)", 100, None),
    ):
        print(f"-- {label}")
        with scratch_database("md_bench_fresh") as url:
            _run(url, latency_ms, rate_limit_ms)


def _run(url: str, latency_ms: int, rate_limit_ms: float | None) -> None:
    pairs = [
        m for m in MARKETS if m.kind is Kind.SPOT and m.ends_ms is None and m.empty_share == 0
    ][:20]
    sim = Simulator(Faults(latency_ms=latency_ms), Clock(fixed_ms=NOW - 3_600_000))
    with RunningSimulator(sim) as running:
        markets = [f"{m.base}/{m.quote}/{tf}" for m in pairs for tf in TIMEFRAMES]
        today = datetime.now(UTC).date()
        exchange = {"base_url": running.url, "rate_limit_ms": rate_limit_ms, "markets": markets}
        data = {"start": today.replace(day=1).isoformat(), "exchanges": {"binance": exchange}}
        wl = parse_watchlist(data, frozenset(ccxt.exchanges), today)
        instance = dg.DagsterInstance.ephemeral()
        for tf in TIMEFRAMES:
            keys = [m.key for m in wl.markets if m.timeframe.code == tf]
            instance.add_dynamic_partitions(f"markets_binance_{tf}", keys)
        os.environ["DATABASE_URL"] = url  # the store resource reads it (dg.EnvVar)
        # the runs the daemon would launch for the sensor's requests: an asset and its check
        jobs = [
            dg.define_asset_job(
                f"freshness_{tf}",
                selection=dg.AssetSelection.assets(["candles", "binance", tf]).without_checks()
                | dg.AssetSelection.checks(
                    dg.AssetCheckKey(dg.AssetKey(["candles", "binance", tf]), "fresh")
                ),
            )
            for tf in TIMEFRAMES
        ]
        defs = dg.Definitions.merge(build_definitions(wl), dg.Definitions(jobs=jobs))
        sensor = defs.resolve_sensor_def("freshness")

        def tick() -> tuple[int, int, float]:
            with dg.build_sensor_context(instance=instance, resources=defs.resources) as ctx:
                requests = sensor(ctx).run_requests
            before = sim.stats.as_json()["total_requests"]
            t0 = time.perf_counter()
            for r in requests:
                quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
                job = defs.resolve_job_def(f"freshness_{r.asset_selection[0].path[-1]}")
                result = job.execute_in_process(instance=instance, tags=r.tags, run_config=quiet)
                assert result.success
            return (
                len(requests),
                sim.stats.as_json()["total_requests"] - before,
                time.perf_counter() - t0,
            )

        runs, requests, seconds = tick()
        print(
            f"catch-up from the 1st of the month: {runs} run(s), {requests} requests, {seconds:.1f} s"
        )
        sim.clock.fixed_ms = NOW  # an hour later at the exchange
        runs, requests, seconds = tick()
        store = CandleStore(url, create=False)
        fresh = sum(
            1 for m in wl.markets
            if (store.last_ts(Series.of(m)) or 0) + m.timeframe.ms
            > NOW - m.timeframe.ms
        )  # fmt: skip
        print(f"one tick, 100 markets, 1 hour behind: {runs} run(s), {requests} requests, {seconds:.1f} s; "
              f"{fresh}/{len(wl.markets)} markets fresh  (targets: constant runs per exchange, < 10 s)")  # fmt: skip
        runs, requests, seconds = tick()
        print(f"a tick that finds nothing new: {runs} run(s), {requests} requests, {seconds:.1f} s")
        store.dispose()


if __name__ == "__main__":
    main()
