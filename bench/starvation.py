"""Freshness while a long backfill is queued: does any market go stale? And what the
production processes weigh.

A deployment as in production (`make serve`: webserver and daemon processes, the Dagster
instance and the candles on PostgreSQL, `market-data pools`), 20 markets of 1m candles on
the simulator (real clock, 100 ms latency, Binance's limits), the freshness sensor every
FRESHNESS_S. A backfill of 2025 for all 20 markets (20 market-years; the asset's backfill
policy cuts it into runs of 9 markets) is launched through the webserver's GraphQL API, as
the UI does; meanwhile the lag of every market (seconds since its newest stored candle
closed, at the exchange's clock) is sampled, and every second the resident memory of each
process of the deployment (webserver, daemon, code servers, run workers). Freshness runs
carry a higher run priority: they leave the run queue and take the exchange's pool slot
before queued backfill runs. Target: every market's lag under two freshness intervals
throughout.

    python bench/starvation.py     # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deployment import backfill_status, deployment, gql, runs, stop_sensor  # bench/, on sys.path

from market_data.simulator.faults import Faults
from market_data.simulator.markets import MARKETS, Kind
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series

FRESHNESS_S = 120


def main() -> None:
    pairs = [
        m for m in MARKETS if m.kind is Kind.SPOT and m.ends_ms is None and m.empty_share == 0
    ][:20]
    tmp = Path(tempfile.mkdtemp(prefix="md-starvation-"))
    keys = [f"{m.base}-{m.quote}-SPOT:1m" for m in pairs]

    def add_partitions(env: dict[str, str]) -> None:
        code = f"import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions('markets_binance_1m', {keys!r})"
        subprocess.run([sys.executable, "-c", code], env=env, check=True)

    with RunningSimulator(Simulator(Faults(latency_ms=100))) as sim:
        watchlist = {
            "start": "2025-01-01", "freshness": {"interval_s": FRESHNESS_S},
            "exchanges": {"binance": {"base_url": sim.url,
                                      "markets": [f"{m.base}/{m.quote}/1m" for m in pairs]}},
        }  # fmt: skip
        with deployment(watchlist, "starve", tmp, add_partitions) as dep:
            url = dep.url
            for name in ("watchlist", "gap_repair"):  # this bench launches its own backfill
                stop_sensor(url, name)
            store = CandleStore(dep.store_url, create=False)

            def lags() -> list[float]:
                now = time.time() * 1000
                return [
                    (now - ((store.last_ts(Series("binance", k.split(":")[0], "1m")) or 0) + 60_000)) / 1000
                    for k in keys
                ]  # fmt: skip

            print(
                "waiting for the first freshness run to bring the month in progress up", flush=True
            )
            while max(lags()) > 120:
                time.sleep(5)
            year_2025 = [f"{k}|2025" for k in keys]
            data = gql(url, "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill("
                       "backfillParams: $p) { __typename ... on LaunchBackfillSuccess { backfillId } } }",
                       p={"partitionNames": year_2025, "assetSelection": [{"path": ["candles", "binance", "1m"]}],
                          "fromFailure": False})  # fmt: skip
            backfill = data["launchPartitionBackfill"]["backfillId"]
            started, worst, samples = time.monotonic(), 0.0, 0
            while True:
                worst = max(worst, *lags())
                samples += 1
                done = runs(url, {"key": "dagster/backfill", "value": backfill})
                if backfill_status(url, backfill).startswith("COMPLETED") and all(
                    r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in done
                ):
                    break
                time.sleep(5)
            seconds = time.monotonic() - started
            fresh = runs(url, {"key": "market_data/freshness", "value": "binance"})
            ok = sum(r["status"] == "SUCCESS" for r in done)
            print(f"backfill of 20 market-years: {len(done)} runs ({ok} succeeded) in {seconds:.0f} s; "
                  f"{len(fresh)} freshness runs in all")  # fmt: skip
            print(f"worst lag of any market while it ran ({samples} samples): {worst:.0f} s = "
                  f"{worst / FRESHNESS_S:.2f} freshness intervals of {FRESHNESS_S} s (target < 2)")  # fmt: skip
            print(f"peak resident memory per process: {dep.memory.stop()}")
            store.dispose()


if __name__ == "__main__":
    main()
