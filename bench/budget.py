"""20 markets x one month of 1m candles in one run, under Binance's weight limit.

The simulator enforces Binance's spot budget (6000 weight a minute; a klines request weighs
2; 429 past it, 418 bans after repeated overruns) and answers after 100 ms. One ranged run
spans the 20 markets of January 2026 (as the freshness sensor's runs span every market of a
month): their pages share the run's one client, so one rate budget. Prints 429s, 418s and
the weight per second used while fetching, against the budget's 100 per second.

    python bench/budget.py         # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import os
import time
import warnings
from datetime import date

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
NOW = 1_769_990_400_000  # 2026-02-02 00:00 UTC
BUDGET = 6000 / 60  # weight per second


def main() -> None:
    pairs = [
        m for m in MARKETS if m.kind is Kind.SPOT and m.ends_ms is None and m.empty_share == 0
    ][:20]
    sim = Simulator(Faults(latency_ms=100), Clock(fixed_ms=NOW))
    with RunningSimulator(sim) as running, scratch_database("md_bench_budget") as url:
        markets = [f"{m.base}/{m.quote}/1m" for m in pairs]
        exchange = {"base_url": running.url, "markets": markets}  # ccxt's default throttle
        data = {"start": "2026-01-01", "exchanges": {"binance": exchange}}
        wl = parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 2, 2))
        os.environ["DATABASE_URL"] = url  # the store resource reads it (dg.EnvVar)
        defs = build_definitions(wl)
        asset = defs.resolve_assets_def(dg.AssetKey(["candles", "binance", "1m"]))
        instance = dg.DagsterInstance.ephemeral()
        keys = [m.key for m in wl.markets]
        instance.add_dynamic_partitions("markets_binance_1m", keys)
        tags = {
            "dagster/asset_partition_range_start": f"{keys[0]}|2026",
            "dagster/asset_partition_range_end": f"{keys[-1]}|2026",
        }
        # January only (the year partition reaches the simulator's 2 February)
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}},
                 "ops": {"candles__binance__1m": {"config": {"not_after": "2026-02-01"}}}}  # fmt: skip
        started = time.perf_counter()
        assert dg.materialize([asset], instance=instance, tags=tags, run_config=quiet).success
        seconds = time.perf_counter() - started
        store = CandleStore(url, create=False)
        stored = sum(store.candle_stats(Series.of(m), 0, 2**62)[0] for m in wl.markets)
        store.dispose()
    timeline = list(sim.stats.timeline)
    klines = [r for r in timeline if r[1] == "/api/v3/klines" and r[2] == 200]
    span = klines[-1][0] - klines[0][0]
    weight = sum(r[3] for r in timeline if klines[0][0] <= r[0] <= klines[-1][0])
    refused = {s: sum(1 for r in timeline if r[2] == s) for s in (429, 418)}
    print(f"20 markets x January 2026 of 1m: {stored} candles stored (expected {20 * 44_640}), "
          f"{len(klines)} klines pages, {seconds:.1f} s in the run")  # fmt: skip
    print(f"429s: {refused[429]}, 418s: {refused[418]}; weight used while fetching: "
          f"{weight / span:.1f}/s of {BUDGET:.0f}/s = {weight / span / BUDGET:.0%} of the budget")  # fmt: skip


if __name__ == "__main__":
    main()
