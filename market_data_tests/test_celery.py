"""Runs on Celery workers over RabbitMQ (dagster.celery.yaml), as deployed: a RabbitMQ of
the test's own (it is stopped and restarted), the webserver, the daemon and four workers
as real processes (two on Binance's queue, one on Coinbase's, one on the default queue),
PostgreSQL for the instance and the candles, the simulator for both exchanges."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from market_data.defs.candles.partitions import MARKET_DIM, PARTITION_TAG, YEAR_DIM
from market_data.defs.queues import QUEUE_TAG, TASK_TAG, WORKER_TAG
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.markets import Kind
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore, Series
from market_data_tests.candle_harness import exchange_truth
from market_data_tests.celery_harness import Broker, Worker, control, wait_workers
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin
from market_data_tests.test_end_to_end import (
    ACTIVE,
    Deployment,
    deployment_databases,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOUR, MIN = 3_600_000, 60_000
SOL_START = 1_794_441_600_000  # 2026-11-12
START = 1_788_220_800_000  # 2026-09-01
POLL_S = 3  # the monitoring poll of this test's instance (15 s in dagster.celery.yaml)
WORKERS = {  # name: queue
    "binance1": "exchange.binance",
    "binance2": "exchange.binance",
    "coinbase1": "exchange.coinbase",
    "default1": "dagster",
}
RUNS = """query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results {
  runId status tags { key value } assetSelection { path } } } } }"""
SLOTS = """query($k: String!) { instance { concurrencyLimit(concurrencyKey: $k) {
  claimedSlots { runId } } } }"""
SOL_1M = "SOL-USDT-SPOT:1m|2026"


class CeleryDeployment(Deployment):
    def __init__(self, tmp: Path, env: dict[str, str], candles_url: str, broker: Broker):
        super().__init__(tmp, env, candles_url)
        self.broker = broker
        self.workers: dict[str, Worker] = {}
        self.sim_url = ""

    def start_worker(self, name: str) -> Worker:
        worker = Worker(name, WORKERS[name], self.env, self.tmp / f"worker-{name}.log")
        self.workers[name] = worker
        return worker

    def all_runs(self, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        f = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        runs = self.gql(RUNS, f=f)["runsOrError"]["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return list(runs)

    def run(self, run_id: str) -> dict[str, Any]:
        (run,) = [r for r in self.all_runs() if r["runId"] == run_id]
        return run

    def claimed(self, pool: str) -> list[str]:
        limit = self.gql(SLOTS, k=pool)["instance"]["concurrencyLimit"]
        return [s["runId"] for s in limit["claimedSlots"]]

    def refetch(self, partition: str, exchange: str = "binance") -> str:
        """A run of one candle partition that fetches it again (as from the Launchpad)."""
        market, year = partition.split("|")
        tf = market.rpartition(":")[2]
        op = f"candles__{exchange}__{tf}"
        return self.launch_job(
            "__ASSET_JOB",
            tags={PARTITION_TAG: partition, f"{PARTITION_TAG}/{MARKET_DIM}": market,
                  f"{PARTITION_TAG}/{YEAR_DIM}": year},
            config={"ops": {op: {"config": {"refetch": True}}}},
            assets=[["candles", exchange, tf]],
        )  # fmt: skip

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        super().stop()


def stored(dep: Deployment, exchange: str, symbol: str, tf: str, start: int) -> list[Any]:
    """The stored candles of a series from ``start`` to the frozen clock's NOW_MS (its
    closed candles then: a test may move the clock on)."""
    end = NOW_MS - NOW_MS % {"1m": MIN, "1h": HOUR}[tf]
    store = CandleStore(dep.candles_url, create=False)
    try:
        return store.read_candles(Series(exchange, symbol, tf), start, end).values.tolist()
    finally:
        store.dispose()


def truth(market: str, tf: str, start: int) -> list[list[float]]:
    """The simulator's candles of a Binance spot market (``BTC-USDT-SPOT``)."""
    base, quote, _ = market.split("-")
    return exchange_truth(base + quote, Kind.SPOT, tf, start, NOW_MS, NOW_MS)


def complete(dep: Deployment) -> bool:
    hours = (NOW_MS // HOUR * HOUR - START) // HOUR
    return (
        len(stored(dep, "binance", "BTC-USDT-SPOT", "1h", START)) == hours
        and len(stored(dep, "binance", "ETH-USDT-SPOT", "1h", START)) == hours
        and len(stored(dep, "binance", "SOL-USDT-SPOT", "1m", SOL_START))
        == (NOW_MS // MIN * MIN - SOL_START) // MIN
        and len(stored(dep, "coinbase", "BTC-USD-SPOT", "1h", START)) == hours
        and len(stored(dep, "coinbase", "ETH-USD-SPOT", "1h", START)) == hours
    )


@pytest.fixture(scope="module")
def dep(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryDeployment]:
    tmp = tmp_path_factory.mktemp("celery")
    broker = Broker(tmp / "rabbitmq").start()
    with deployment_databases(pg_server, "md_celery") as (dagster_url, candles_url):
        sim = RunningSimulator(Simulator(Faults(), Clock(fixed_ms=NOW_MS))).start()
        home = tmp / "home"
        home.mkdir()
        instance = yaml.safe_load((ROOT / "dagster.celery.yaml").read_text())
        instance["run_monitoring"]["poll_interval_seconds"] = POLL_S
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
        config = tmp / "watchlist.yaml"
        quick = {"retry_base_s": 0.05, "rate_limit_pause_s": 0.5}
        config.write_text(
            yaml.safe_dump(
                {
                    "start": "2026-09-01",
                    "exchanges": {
                        "binance": {"base_url": sim.url, "rate_limit_ms": 0, **quick,
                                    "markets": ["BTC/USDT/1h", "ETH/USDT/1h",
                                                {"symbol": "SOL/USDT", "timeframe": "1m",
                                                 "start": "2026-11-12"}]},
                        "coinbase": {"base_url": f"{sim.url}/coinbase", **quick,
                                     "markets": ["BTC/USD/1h", "ETH/USD/1h"]},
                    },
                }
            )
        )  # fmt: skip
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": dagster_url,
               "DATABASE_URL": candles_url, "MARKET_DATA_CONFIG": str(config),
               "CELERY_BROKER_URL": broker.url,
               "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/0"}  # fmt: skip
        d = CeleryDeployment(tmp, env, candles_url, broker)
        d.sim_url = sim.url
        try:
            for command in ("db", "init"), ("pools",):  # as `make serve` starts
                subprocess.run([str(BIN / "market-data"), *command], env=env, check=True,
                               capture_output=True)  # fmt: skip
            for name in WORKERS:
                d.start_worker(name)
            d.start_webserver()
            for sensor in ("freshness", "gap_repair", "alerts"):
                d.set_sensor(sensor, running=False)
            wait_workers(control(broker.url), [w.name for w in d.workers.values()])
            d.start_daemon()  # the watchlist sensor backfills every market
            wait_for("the watchlist's backfill", lambda: complete(d), timeout=420, every=3)
            wait_for("its runs to end", lambda: not [r for r in d.all_runs()
                                                     if r["status"] in ACTIVE])  # fmt: skip
            yield d
        finally:
            d.stop()
            sim.stop()
            broker.stop()


@pytest.fixture(autouse=True)
def settled(dep: CeleryDeployment) -> None:
    """Each test starts when the runs of the one before have ended (their order is random)."""
    wait_for("the runs before to end", lambda: not [r for r in dep.all_runs()
                                                    if r["status"] in ACTIVE], timeout=300)  # fmt: skip


def queue_of(run: dict[str, Any]) -> str:
    talks = ("candles", "instruments", "orderbooks")  # assets that talk to an exchange
    exchanges = {a["path"][1] for a in run["assetSelection"] or [] if a["path"][0] in talks}
    return f"exchange.{exchanges.pop()}" if exchanges else "dagster"


def test_each_exchanges_runs_land_on_its_queues_workers(dep: CeleryDeployment) -> None:
    check = dep.launch_job("check_gaps_binance_1h", tags={PARTITION_TAG: "BTC-USDT-SPOT:1h|2026",
                           f"{PARTITION_TAG}/{MARKET_DIM}": "BTC-USDT-SPOT:1h",
                           f"{PARTITION_TAG}/{YEAR_DIM}": "2026"})  # fmt: skip
    assert dep.wait_run(check) == "SUCCESS"
    runs = [r for r in dep.all_runs() if r["status"] == "SUCCESS"]
    by_queue: dict[str, set[str]] = {}
    for run in runs:
        queue = queue_of(run)
        assert run["tags"][QUEUE_TAG] == queue, run
        by_queue.setdefault(queue, set()).add(run["tags"][WORKER_TAG].partition("@")[0])
    # the watchlist's backfill runs of both exchanges, and the check on the default queue
    assert by_queue["exchange.coinbase"] == {"coinbase1"}
    assert by_queue["exchange.binance"] <= {"binance1", "binance2"}
    assert by_queue["exchange.binance"] and by_queue["dagster"] == {"default1"}
    assert dep.run(check)["tags"][WORKER_TAG].startswith("default1@")
    for market in ("BTC-USDT-SPOT", "ETH-USDT-SPOT"):
        assert stored(dep, "binance", market, "1h", START) == truth(market, "1h", START)
    assert stored(dep, "binance", "SOL-USDT-SPOT", "1m", SOL_START) == truth(
        "SOL-USDT-SPOT", "1m", SOL_START
    )


def klines(dep: CeleryDeployment) -> int:
    return sum(admin(dep.sim_url, "stats")["requests"].get("/api/v3/klines", {}).values())


def _taken(dep: CeleryDeployment, run_id: str) -> str | None:
    """The worker (name) running ``run_id``, once it is STARTED."""
    run = dep.run(run_id)
    worker = run["tags"].get(WORKER_TAG)
    return worker.partition("@")[0] if run["status"] == "STARTED" and worker else None


def test_a_worker_killed_mid_run_leaves_the_run_to_the_other_worker_of_its_queue(
    dep: CeleryDeployment,
) -> None:
    admin(dep.sim_url, "faults", {"latency_ms": 1500})  # 14 pages: the kill lands mid-run
    try:
        run_id = dep.refetch(SOL_1M)
        name = wait_for("the run to start", lambda: _taken(dep, run_id), timeout=120, every=0.5)
        pages = klines(dep)
        wait_for("its first pages", lambda: klines(dep) >= pages + 3, timeout=60, every=0.2)
        dep.workers[name].kill()
        killed = time.monotonic()
        assert dep.wait_run(run_id, timeout=120) == "FAILURE"
        noticed = time.monotonic() - killed
        admin(dep.sim_url, "faults", {"latency_ms": 0})
        retry = wait_for(
            "the retry",
            lambda: [r for r in dep.all_runs({"dagster/parent_run_id": run_id})],
            timeout=120,
        )[0]["runId"]
        assert dep.wait_run(retry, timeout=300) == "SUCCESS"
        other = ({"binance1", "binance2"} - {name}).pop()
        assert dep.run(retry)["tags"][WORKER_TAG].startswith(f"{other}@")
        print(f"the dead worker's run was failed {noticed:.1f} s after the kill")
        assert noticed < 3 * POLL_S + 10, noticed  # two polls (and a broadcast's second)
        assert stored(dep, "binance", "SOL-USDT-SPOT", "1m", SOL_START) == truth(
            "SOL-USDT-SPOT", "1m", SOL_START
        )
        wait_for("its pool slot freed", lambda: run_id not in dep.claimed("exchange:binance"),
                 timeout=60)  # fmt: skip
    finally:
        admin(dep.sim_url, "faults", {"latency_ms": 0})
        if dep.workers[name].proc.poll() is not None:  # the queue's second worker again
            dep.start_worker(name)
            wait_workers(control(dep.broker.url), [dep.workers[name].name])


def test_cancelling_a_run_from_the_ui_ends_its_task(dep: CeleryDeployment) -> None:
    admin(dep.sim_url, "faults", {"latency_ms": 1000})
    try:
        run_id = dep.refetch(SOL_1M)
        name = wait_for("the run to start", lambda: _taken(dep, run_id), timeout=120, every=0.5)
        data = dep.gql(
            "mutation($id: String!) { terminateRun(runId: $id) { __typename } }", id=run_id
        )
        assert data["terminateRun"]["__typename"] == "TerminateRunSuccess", data
        assert dep.wait_run(run_id, timeout=120) == "CANCELED"
        app = control(dep.broker.url)
        worker = dep.workers[name].name

        def idle() -> bool:
            active = app.control.inspect(destination=[worker], timeout=1.0).active() or {}
            return worker in active and not active[worker]

        wait_for("the worker's task to end", idle, timeout=60)
        assert dep.workers[name].proc.poll() is None  # the worker lives on
        wait_for("its pool slot freed", lambda: run_id not in dep.claimed("exchange:binance"),
                 timeout=60)  # fmt: skip
    finally:
        admin(dep.sim_url, "faults", {"latency_ms": 0})


def test_a_broker_restart_loses_no_run(dep: CeleryDeployment) -> None:
    """A run in progress, a run waiting in its queue (no worker of Coinbase's is up) and a run
    launched while the broker is down: all three end, once each."""
    coinbase = dep.workers["coinbase1"]
    coinbase.stop()
    admin(dep.sim_url, "faults", {"latency_ms": 4000})  # the run outlasts the broker's restart
    try:
        running = dep.refetch(SOL_1M)
        wait_for("the run to start", lambda: _taken(dep, running), timeout=120, every=0.5)
        queued = dep.refetch("BTC-USD-SPOT:1h|2026", exchange="coinbase")
        wait_for("the run sent", lambda: dep.run(queued)["status"] == "STARTING", timeout=60)
        dep.broker.stop()
        assert dep.run(running)["status"] == "STARTED"  # it goes on without the broker
        during = dep.refetch("BTC-USDT-SPOT:1h|2026")  # the daemon holds it
        status = subprocess.run([str(BIN / "market-data"), "status"], env=dep.env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert "broker" in status.stdout and "unreachable" in status.stdout, status.stdout
        time.sleep(10)
        dep.broker.start()
        admin(dep.sim_url, "faults", {"latency_ms": 0})
        dep.start_worker("coinbase1")
        for run_id in (running, queued, during):
            assert dep.wait_run(run_id, timeout=300) == "SUCCESS"
        log = (dep.tmp / "daemon.log").read_text(errors="replace")
        # a line per run the daemon held (the first it sent meanwhile: the others wait behind
        # it in Dagster's queue), maybe one from run monitoring, one when the broker is back
        held = re.findall(r"unreachable \(\w+\): holding run ([0-9a-f-]+)", log)
        assert held and len(held) == len(set(held)), log[-3000:]
        assert len(held) <= log.count("unreachable") <= len(held) + 1, log[-3000:]
        assert log.count("answers again") == 1
        assert "Traceback" not in log
        assert len(dep.all_runs({QUEUE_TAG: "exchange.coinbase"})) == len(
            {r["runId"] for r in dep.all_runs({QUEUE_TAG: "exchange.coinbase"})}
        )
        assert dep.run(queued)["tags"][WORKER_TAG].startswith("coinbase1@")
    finally:
        admin(dep.sim_url, "faults", {"latency_ms": 0})
        if dep.broker.proc is None:
            dep.broker.start()
        if dep.workers["coinbase1"].proc.poll() is not None:
            dep.start_worker("coinbase1")


def test_freshness_runs_go_through_each_exchanges_queue(dep: CeleryDeployment) -> None:
    dep.set_sensor("freshness", running=True)
    try:
        admin(dep.sim_url, "clock", {"advance_ms": 5 * MIN})  # the exchanges move on
        later = NOW_MS - NOW_MS % MIN + 4 * MIN  # the newest minute closed now

        def fresh() -> bool:
            store = CandleStore(dep.candles_url, create=False)
            try:
                sol = Series("binance", "SOL-USDT-SPOT", "1m")
                return not store.read_candles(sol, later, later + 1).empty
            finally:
                store.dispose()

        wait_for("the next minutes' candles", fresh, timeout=180)
        wait_for("a freshness run to end", lambda: [
            r for r in dep.all_runs({"market_data/freshness": "binance"})
            if r["status"] == "SUCCESS"])  # fmt: skip
    finally:
        dep.set_sensor("freshness", running=False)
    runs = dep.all_runs({"market_data/freshness": "binance"})
    sent = [r for r in runs if TASK_TAG in r["tags"]]  # (the newest may still wait its turn)
    assert sent and all(r["tags"][QUEUE_TAG] == "exchange.binance" for r in sent)
    done = [r for r in runs if r["status"] == "SUCCESS"]
    assert done and all(r["tags"][WORKER_TAG].startswith("binance") for r in done)
