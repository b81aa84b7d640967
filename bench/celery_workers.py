"""Runs on Celery workers against Dagster's default launcher (issue 26).

Production shape (bench/deployment.py: webserver and daemon processes, the instance and the
candles on PostgreSQL, `market-data pools`: Binance's pool has 2 slots), the automation
sensors stopped; the simulator on the real clock with Binance's limits and 100 ms of latency
on every request. Eight runs, one per market (8 Binance spot markets x the last 30 days of 1m,
~43,200 candles or 44 pages each), launched at once through GraphQL as eight launches from
the UI, with:

- ``default``: dagster.postgres.yaml (Dagster's default launcher: a process per run);
- ``celery-1``: dagster.celery.yaml, one worker on exchange.binance (one run at a time);
- ``celery-2``: the same with two workers on exchange.binance.

(Each Celery set-up also has a worker on the default queue, idle here.) Figures: the wall
time from the first launch to the last run's end, runs and candles a minute. Then the
per-run overhead: the same eight runs again one after another, with nothing left to fetch
(coverage says so), each run's time from its creation to its end (median), and from its
start to its end. The set-ups rotate over the rounds (each first in turn).

    python bench/celery_workers.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deployment import Deployment, Memory, deployment, gql  # bench/, on sys.path as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from market_data.simulator.faults import Faults
from market_data.simulator.markets import MARKETS, Kind
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore, Series
from market_data_tests.celery_harness import Broker, Worker, control, wait_workers

N_MARKETS = 8
DAYS = 30
SENSORS = (
    "watchlist",
    "freshness",
    "gap_repair",
    "consistency",
    "composites",
    "alerts",
    "live_status",
    "orderbooks",
)
LOCATION = {"repositoryName": "__repository__", "repositoryLocationName": "market_data"}
ENDED = ("SUCCESS", "FAILURE", "CANCELED")
RUNS = """query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results {
  runId status creationTime startTime endTime } } } }"""


def launch(dep: Deployment, market: str, year: str, label: str) -> str:
    params = {
        "selector": {**LOCATION, "jobName": "__ASSET_JOB",
                     "assetSelection": [{"path": ["candles", "binance", "1m"]}]},
        "runConfigData": {},
        "executionMetadata": {"tags": [
            {"key": "dagster/partition", "value": f"{market}|{year}"},
            {"key": "dagster/partition/market", "value": market},
            {"key": "dagster/partition/year", "value": year},
            {"key": "bench/round", "value": label}]},
    }  # fmt: skip
    data = gql(dep.url, "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { "
               "__typename ... on LaunchRunSuccess { run { runId } } "
               "... on PythonError { message } } }", p=params)["launchRun"]  # fmt: skip
    assert data["__typename"] == "LaunchRunSuccess", data
    return str(data["run"]["runId"])


def ended(dep: Deployment, label: str, n: int, timeout: float = 1800) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = gql(dep.url, RUNS, f={"tags": [{"key": "bench/round", "value": label}]})
        runs = runs["runsOrError"]["results"]
        if len(runs) == n and all(r["status"] in ENDED for r in runs):
            failed = [r for r in runs if r["status"] != "SUCCESS"]
            assert not failed, failed
            return list(runs)
        assert time.monotonic() < deadline, f"{label}: runs did not end"
        time.sleep(0.5)


def add_markets(dep: Deployment, keys: list[str]) -> None:
    import dagster as dg

    from market_data_tests.helpers import add_markets as add  # the watchlist sensor's job

    with dg.DagsterInstance.from_config(dep.env["DAGSTER_HOME"]) as instance:
        add(instance, "binance", keys)


def one(setup: str, sim_url: str, broker: Broker, markets: list[str], start: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"md-launchers-{setup}-"))
    year = str(datetime.now(UTC).year)
    celery = setup != "default"
    extra = {"CELERY_BROKER_URL": broker.url, "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/0"}
    watchlist = {"start": start, "exchanges": {"binance": {
        "base_url": sim_url, "markets": [f"{m}/1m" for m in markets]}}}  # fmt: skip
    keys = [f"{m.replace('/', '-')}-SPOT:1m" for m in markets]
    with deployment(
        watchlist, f"celery_{setup.replace('-', '_')}", tmp,
        instance="dagster.celery.yaml" if celery else "dagster.postgres.yaml",
        extra_env=extra if celery else None, stopped_sensors=SENSORS,
    ) as dep:  # fmt: skip
        os.environ.update({**extra, "DAGSTER_POSTGRES_URL": dep.env["DAGSTER_POSTGRES_URL"]})
        add_markets(dep, keys)
        workers: list[Worker] = []
        if celery:
            names = ["binance1", "binance2"][: int(setup[-1])]
            for name in names:
                workers.append(Worker(name, "exchange.binance", dep.env, tmp / f"{name}.log", 1))
            workers.append(Worker("default1", "dagster", dep.env, tmp / "default1.log", 1))
            wait_workers(control(broker.url), [w.name for w in workers])
        memory = Memory([w.proc.pid for w in workers])
        try:
            t0 = time.time()
            for key in keys:
                launch(dep, key, year, "fill")
            runs = ended(dep, "fill", len(keys))
            wall = max(r["endTime"] for r in runs) - t0
            store = CandleStore(dep.store_url, create=False)
            candles = sum(
                len(store.read_candles(Series("binance", k.split(":")[0], "1m"), 0, 2**62))
                for k in keys
            )
            store.dispose()
            created_to_end, start_to_end = [], []
            for i, key in enumerate(keys):  # nothing left to fetch: the launcher's own cost
                launch(dep, key, year, f"again{i}")
                (run,) = ended(dep, f"again{i}", 1)
                created_to_end.append(run["endTime"] - run["creationTime"])
                start_to_end.append(run["endTime"] - run["startTime"])
        finally:
            for w in workers:
                w.stop()
        rss = "; ".join(m for m in (dep.memory.stop(), memory.stop()) if m)
    return {"wall": wall, "runs_min": len(keys) / wall * 60, "candles": candles,
            "candles_min": candles / wall * 60, "overhead": statistics.median(created_to_end),
            "inside": statistics.median(start_to_end), "rss": rss}  # fmt: skip


def main(rounds: int) -> None:
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=DAYS)).isoformat()
    spot = [m for m in MARKETS if m.kind is Kind.SPOT and m.quote == "USDT" and m.ends_ms is None
            and m.empty_share == 0][:N_MARKETS]  # fmt: skip
    markets = [f"{m.base}/{m.quote}" for m in spot]
    setups = ["default", "celery-1", "celery-2"]
    results: dict[str, list[dict]] = {s: [] for s in setups}
    broker = Broker(Path(tempfile.mkdtemp(prefix="md-launchers-broker-"))).start()
    try:
        with RunningSimulator(Simulator(Faults(latency_ms=100))) as sim:
            for r in range(rounds):
                for setup in setups[r % 3 :] + setups[: r % 3]:
                    res = one(setup, sim.url, broker, markets, start)
                    results[setup].append(res)
                    print(f"round {r + 1} {setup}: wall {res['wall']:.1f} s, "
                          f"{res['runs_min']:.1f} runs/min, {res['candles']} candles, "
                          f"{res['candles_min']:,.0f} candles/min; a run with nothing to fetch: "
                          f"{res['overhead']:.2f} s from creation to end, {res['inside']:.2f} s "
                          f"from start to end; peak RSS {res['rss']}", flush=True)  # fmt: skip
    finally:
        broker.stop()
    print("\nmedians:")
    base = statistics.median(r["wall"] for r in results["default"])
    base_over = statistics.median(r["overhead"] for r in results["default"])
    for setup, rs in results.items():
        wall = statistics.median(r["wall"] for r in rs)
        over = statistics.median(r["overhead"] for r in rs)
        print(f"{setup}: wall {wall:.1f} s ({wall / base:.2f}x default), "
              f"{statistics.median(r['runs_min'] for r in rs):.1f} runs/min, "
              f"{statistics.median(r['candles_min'] for r in rs):,.0f} candles/min, per-run "
              f"overhead {over:.2f} s ({over - base_over:+.2f} s against default)")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
