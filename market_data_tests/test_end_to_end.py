"""End to end, as deployed: the simulator, the Dagster webserver and daemon as separate
processes on PostgreSQL storage, candles in PostgreSQL; backfills launched through the
webserver's GraphQL API as the UI does."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from playwright.sync_api import expect

from market_data.defs.candles.partitions import (
    MARKET_DIM,
    PARTITION_TAG,
    RANGE_END,
    RANGE_START,
    YEAR_DIM,
)
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.markets import Kind
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore, Series
from market_data_tests.browser import browser_page
from market_data_tests.candle_harness import exchange_truth
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = {"repositoryName": "__repository__", "repositoryLocationName": "market_data"}
HOUR, MIN, DAY = 3_600_000, 60_000, 86_400_000
Y2024, Y2025, Y2026 = 1_704_067_200_000, 1_735_689_600_000, 1_767_225_600_000  # Jan 1st
CHECK_STATUSES = """
query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks { name partitionStatuses { __typename
    ... on AssetCheckMultiPartitionStatuses { primaryDimensionName ranges {
      primaryDimStartKey primaryDimEndKey secondaryDim { __typename
        ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions
          inProgressPartitions skippedPartitions executionFailedPartitions } } } } } } } } } } }
"""
STATUS_FIELDS = {
    "succeededPartitions": "SUCCEEDED",
    "failedPartitions": "FAILED",
    "inProgressPartitions": "IN_PROGRESS",
    "skippedPartitions": "SKIPPED",
    "executionFailedPartitions": "EXECUTION_FAILED",
}
ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")  # a run not yet ended


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float = 240, every: float = 1.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Deployment:
    def __init__(self, tmp: Path, env: dict[str, str], candles_url: str) -> None:
        self.tmp, self.env, self.candles_url = tmp, env, candles_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webserver: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None

    def _spawn(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.tmp / log, "ab")  # noqa: SIM115 (kept open for the process)
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_webserver(self) -> None:
        self.webserver = self._spawn(str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                                     "-p", str(self.port), log="webserver.log")  # fmt: skip
        wait_for("the webserver", self._up, timeout=180)

    def start_daemon(self) -> None:
        self.daemon = self._spawn(
            str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml", log="daemon.log"
        )

    def kill_daemon(self) -> None:
        assert self.daemon is not None
        os.killpg(self.daemon.pid, signal.SIGKILL)  # the daemon and its code server, at once
        self.daemon.wait(30)

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as r:  # noqa: S310
                return r.status == 200
        except OSError:
            return False

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers=headers)  # noqa: S310
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310
            payload = json.loads(r.read())
        assert "errors" not in payload, payload
        return payload["data"]

    def set_sensor(self, name: str, running: bool) -> None:
        selector = {**LOCATION, "sensorName": name}
        if running:
            data = self.gql(
                "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }",
                s=selector,
            )
            assert data["startSensor"]["__typename"] == "Sensor", data
            return
        found = self.gql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { id } } }",
            s=selector,
        )
        data = self.gql(
            "mutation($id: String) { stopSensor(id: $id) { __typename } }",
            id=found["sensorOrError"]["id"],
        )
        assert data["stopSensor"]["__typename"] == "StopSensorMutationResult", data

    def launch_backfill(self, partitions: list[str]) -> str:
        """A backfill of the candle asset of the partitions' timeframe."""
        tf = partitions[0].split("|")[0].rpartition(":")[2]
        params = {
            "partitionNames": partitions,
            "assetSelection": [{"path": ["candles", "binance", tf]}],
            "fromFailure": False,
        }
        data = self.gql(
            "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename "
            "... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }",
            p=params,
        )
        result = data["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return str(result["backfillId"])

    def backfill_status(self, backfill_id: str) -> str:
        data = self.gql(
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }",
            id=backfill_id,
        )
        return str(data["partitionBackfillOrError"]["status"])

    def runs(self, backfill_id: str) -> list[dict[str, Any]]:
        data = self.gql(
            "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId status startTime endTime tags { key value } } } } }",
            f={"tags": [{"key": "dagster/backfill", "value": backfill_id}]},
        )
        return list(data["runsOrError"]["results"])

    def wait_backfill(self, backfill_id: str, timeout: float = 300) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            if self.backfill_status(backfill_id) not in (
                "COMPLETED",
                "COMPLETED_SUCCESS",
                "COMPLETED_FAILED",
                "FAILED",
            ):
                return None
            runs = self.runs(backfill_id)
            return runs if runs and all(r["status"] not in ACTIVE for r in runs) else None

        return wait_for(f"backfill {backfill_id}", done, timeout=timeout, every=2)

    def launch_job(
        self,
        job: str,
        tags: dict[str, str] | None = None,
        config: dict[str, Any] | None = None,
        assets: list[list[str]] | None = None,
    ) -> str:
        """Launch a job as the Launchpad does (optionally for a partition, by its tags)."""
        selector: dict[str, Any] = {**LOCATION, "jobName": job}
        if assets is not None:
            selector["assetSelection"] = [{"path": a} for a in assets]
        params = {
            "selector": selector,
            "runConfigData": config or {},
            "executionMetadata": {
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]
            },
        }
        data = self.gql(
            "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
            "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
            p=params,
        )
        result = data["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def wait_run(self, run_id: str, timeout: float = 300) -> str:
        def ended() -> str | None:
            data = self.gql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", id=run_id
            )
            status = data["runOrError"]["status"]
            return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

        return str(wait_for(f"run {run_id}", ended, timeout=timeout, every=1))

    def check_statuses(self, check: str, tf: str) -> dict[str, str]:
        """Partition key -> the check's status in the UI's terms (SUCCEEDED, FAILED,
        SKIPPED, ...) on the timeframe's candle asset, as the check's Partitions tab reads
        them."""
        data = self.gql(CHECK_STATUSES, k={"path": ["candles", "binance", tf]})
        checks = data["assetNodeOrError"]["assetChecksOrError"]["checks"]
        (statuses,) = [c["partitionStatuses"] for c in checks if c["name"] == check]
        out: dict[str, str] = {}
        assert statuses["__typename"] == "AssetCheckMultiPartitionStatuses", statuses
        assert statuses["primaryDimensionName"] == "year"
        for r in statuses["ranges"]:
            years = range(int(r["primaryDimStartKey"]), int(r["primaryDimEndKey"]) + 1)
            lists = r["secondaryDim"]
            for field, status in STATUS_FIELDS.items():
                for market in lists[field]:
                    for year in years:
                        out[f"{market}|{year}"] = status
        return out

    def outputs(self) -> dict[Path, str]:
        """What the processes printed, and the run workers' compute logs under DAGSTER_HOME."""
        home = Path(self.env["DAGSTER_HOME"])
        files = [*self.tmp.glob("*.log"), *home.rglob("*.err"), *home.rglob("*.out")]
        return {p: p.read_text(errors="replace") for p in files if p.is_file()}

    def stop(self) -> None:
        """SIGTERM to each process group (the process, its code servers and run workers), then
        SIGKILL to whatever of the group is left, so no test leaves a process behind."""
        for proc in (self.daemon, self.webserver):
            if proc is None:
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
            with contextlib.suppress(ProcessLookupError):  # else the whole group is gone
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@contextlib.contextmanager
def deployment_databases(pg_server: str, prefix: str) -> Iterator[tuple[str, str]]:
    """Two databases of their own on ``pg_server``: Dagster's instance (its URL with the
    psycopg2 driver dagster-postgres uses) and the candle store; dropped at the end."""
    admin_engine = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    names = [f"{prefix}_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("dagster", "candles")]
    with admin_engine.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = pg_server.rsplit("/", 1)[0]
    try:
        yield (
            base.replace("postgresql+psycopg://", "postgresql+psycopg2://") + f"/{names[0]}",
            base.replace("postgresql+psycopg://", "postgresql://") + f"/{names[1]}",
        )
    finally:
        with admin_engine.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


class HungWebhook:
    """A webhook that accepts connections and never answers (a receiver that hangs)."""

    SECRET = "e2e-hook-s3cret"

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks/{self.SECRET}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.sock.accept()[0])

    def close(self) -> None:
        for conn in [*self.held, self.sock]:
            conn.close()


@pytest.fixture(scope="module")
def deployment(
    pg_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, RunningSimulator]]:
    tmp = tmp_path_factory.mktemp("deploy")
    with deployment_databases(pg_server, "md_e2e") as (dagster_url, candles_url):
        sim = RunningSimulator(Simulator(Faults(), Clock(fixed_ms=NOW_MS))).start()
        home = tmp / "home"
        home.mkdir()
        (home / "dagster.yaml").symlink_to(ROOT / "dagster.postgres.yaml")
        config = tmp / "watchlist.yaml"
        # from 2024 (three year partitions), the 1m markets from late in the year (a year of 1m is
        # 500 pages: the freshness runs fetch the year in progress)
        exchange = {"base_url": sim.url, "rate_limit_ms": 0, "retry_base_s": 0.05,
                    "markets": ["BTC/USDT/1h", {"symbol": "ETH/USDT", "timeframe": "1m", "start": "2026-11-01"},
                                {"symbol": "SOL/USDT", "timeframe": "1m", "start": "2025-11-01"},
                                "XRP/USDT/1d", "ADA/USDT/1d", "DOGE/USDT/1d", "LTC/USDT/1d"]}  # fmt: skip
        # an alert webhook that never answers: the alerts sensor hangs on it for timeout_s every
        # minute (the live service below is down), and nothing else may be held up by that
        hung = HungWebhook()
        alerts = {"targets": [{"name": "hung", "url_env": "E2E_ALERT_HOOK"}], "timeout_s": 5,
                  "retry_base_s": 1}  # fmt: skip
        config.write_text(
            yaml.safe_dump(
                {
                    "start": "2024-01-01",
                    "freshness": {"interval_s": 10},
                    "exchanges": {"binance": exchange},
                    "alerts": alerts,
                }
            )
        )
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": dagster_url, "DATABASE_URL": candles_url,
               "MARKET_DATA_CONFIG": str(config), "E2E_ALERT_HOOK": hung.url}  # fmt: skip
        dep = Deployment(tmp, env, candles_url)
        try:
            dep.start_webserver()
            # Automation off until a test wants it: these tests launch their own runs.
            for sensor in ("watchlist", "freshness", "gap_repair"):
                dep.set_sensor(sensor, running=False)
            subprocess.run(
                [str(BIN / "market-data"), "db", "init"], env=env, check=True, capture_output=True
            )
            # the exchange's (frozen) clock as a run would have read it: the freshness sensor takes
            # the year in progress from it, whichever test runs first
            store = CandleStore(candles_url, create=False)
            store.gaps.save_clock("binance", NOW_MS)
            store.live.beat(  # a live service that stopped beating long ago: an alert to send
                {"exchange": "binance", "host": "gone", "pid": 1, "started_at": 0, "heartbeat_at": 0,
                 "connections": 1, "connected": 0, "streams": 1, "exchange_now": None,
                 "reconnects": 0, "closes_stored": 0, "latency_p50_ms": None,
                 "latency_p99_ms": None, "last_error": None},
                [],
            )  # fmt: skip
            store.dispose()
            keys = ["BTC-USDT-SPOT:1h", "ETH-USDT-SPOT:1m", "SOL-USDT-SPOT:1m", "XRP-USDT-SPOT:1d",
                    "ADA-USDT-SPOT:1d", "DOGE-USDT-SPOT:1d", "LTC-USDT-SPOT:1d"]  # fmt: skip
            code = ("import dagster as dg; from market_data_tests.helpers import add_markets; "
                    f"add_markets(dg.DagsterInstance.get(), 'binance', {keys!r})")  # fmt: skip
            subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
            dep.start_daemon()
            yield dep, sim
        finally:
            dep.stop()
            sim.stop()
            hung.close()


def stored(dep: Deployment, symbol: str, tf: str, start: int, end: int) -> list[list[float]]:
    store = CandleStore(dep.candles_url, create=False)
    try:
        return store.read_candles(Series("binance", symbol, tf), start, end).values.tolist()
    finally:
        store.dispose()


def test_a_backfill_launched_through_graphql_stores_exactly_the_candles(
    deployment: tuple[Deployment, RunningSimulator],
) -> None:
    dep, _ = deployment
    # one market's two years; and many markets: Dagster cuts that selection year by year
    # into runs of consecutive markets (the asset's backfill policy, sized by pages like the
    # watchlist's groups: up to 500 at 1d). DOGE and LTC: no other test of the module
    # backfills them (tests run in any order). Both launched at once: the backfill daemon
    # takes them in the same loop.
    years = [f"{m}-USDT-SPOT:1d|{y}" for m in ("DOGE", "LTC") for y in (2025, 2026)]
    one = dep.launch_backfill(["BTC-USDT-SPOT:1h|2024", "BTC-USDT-SPOT:1h|2025"])
    many = dep.launch_backfill(years)

    runs = dep.wait_backfill(one)
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    assert len(runs) == 1  # two years of one market: one ranged run
    # (read back only those years: the freshness test, in any order, fills 2026)
    assert stored(dep, "BTC-USDT-SPOT", "1h", Y2024, Y2026) == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", Y2024, Y2026, NOW_MS
    )

    runs = dep.wait_backfill(many)
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    ranges = sorted(
        (t["dagster/asset_partition_range_start"], t["dagster/asset_partition_range_end"])
        for t in ({t["key"]: t["value"] for t in r["tags"]} for r in runs)
    )
    assert ranges == [(f"DOGE-USDT-SPOT:1d|{y}", f"LTC-USDT-SPOT:1d|{y}") for y in (2025, 2026)]
    # one run of a backfill at a time (dagster.yaml): the second pool slot stays free for
    # freshness and repairs
    first, second = sorted(runs, key=lambda r: r["startTime"])
    assert first["endTime"] <= second["startTime"]
    for base in ("DOGE", "LTC"):
        assert stored(dep, f"{base}-USDT-SPOT", "1d", Y2025, NOW_MS) == exchange_truth(
            f"{base}USDT", Kind.SPOT, "1d", Y2025, NOW_MS, NOW_MS
        )


def test_the_freshness_sensor_keeps_a_market_up_to_date(
    deployment: tuple[Deployment, RunningSimulator],
) -> None:
    dep, sim = deployment

    def alert_hung() -> bool:  # the alerts sensor has waited on the webhook that never answers
        store = CandleStore(dep.candles_url, create=False)
        try:
            return store.alerts.undelivered().get("last_error") == "no answer within 5 s"
        finally:
            store.dispose()

    wait_for("the alerts sensor to hang on its webhook", alert_hung, timeout=150)
    dep.set_sensor("freshness", running=True)
    try:
        newest = NOW_MS - NOW_MS % MIN - MIN
        wait_for(
            "the first freshness run",
            lambda: (s := stored(dep, "ETH-USDT-SPOT", "1m", newest, newest + 1)) and s,
        )
        admin(sim.url, "clock", {"advance_ms": 5 * MIN})  # the exchange moves on
        later = newest + 5 * MIN
        wait_for(
            "candles of the next minutes",
            lambda: stored(dep, "ETH-USDT-SPOT", "1m", later, later + 1),
            timeout=180,
        )
    finally:
        dep.set_sensor("freshness", running=False)
    # while the alerts sensor kept hanging each minute, the freshness runs landed; the
    # webhook's URL (a secret) is in no process's output
    assert alert_hung()
    assert all(HungWebhook.SECRET not in text for text in dep.outputs().values())
    rows = stored(dep, "ETH-USDT-SPOT", "1m", 0, 2**62)
    assert len(rows) == len({r[0] for r in rows})
    assert rows[0][0] == 1_793_491_200_000 and all(  # from its start, 2026-11-01
        b[0] - a[0] == MIN for a, b in itertools.pairwise(rows)
    )


def test_a_backfill_survives_the_daemon_process_group_killed_mid_step(
    deployment: tuple[Deployment, RunningSimulator],
) -> None:
    dep, sim = deployment
    # slow pages (16 in flight, 5 s each: SOL's two months of 2025 take about 30 s), so the
    # kill lands mid-step however fast the client is
    admin(sim.url, "faults", {"latency_ms": 5000})
    jan, mar = 1_761_955_200_000, Y2026  # SOL's 2025: from its start, 2025-11-01
    try:
        backfill = dep.launch_backfill(["SOL-USDT-SPOT:1m|2025"])
        # pages were written: the step is running in a run worker of the daemon's group
        wait_for(
            "pages",
            lambda: len(stored(dep, "SOL-USDT-SPOT", "1m", jan, mar)) >= 5000,
            every=0.2,
        )
        (first,) = dep.runs(backfill)
        dep.kill_daemon()  # the daemon, its code server and the run worker, as systemd does
        time.sleep(3)
        at_kill = len(stored(dep, "SOL-USDT-SPOT", "1m", jan, mar))
    finally:
        admin(sim.url, "faults", {"latency_ms": 0})
    dep.start_daemon()
    runs = dep.wait_backfill(backfill, timeout=400)
    assert at_kill < (mar - jan) // MIN  # the kill landed mid-step
    statuses = {r["runId"]: r["status"] for r in runs}
    assert statuses.pop(first["runId"]) == "FAILURE"  # noticed as dead, not left STARTED
    assert list(statuses.values()) == ["SUCCESS"]  # its retry finished the backfill
    rows = stored(dep, "SOL-USDT-SPOT", "1m", jan, mar)
    assert len(rows) == len({r[0] for r in rows}) == (mar - jan) // MIN
    assert rows == exchange_truth("SOLUSDT", Kind.SPOT, "1m", jan, mar, NOW_MS)


def _years(market: str) -> list[str]:
    """A market's partitions: 2024 (the watchlist's start) to 2026 (the year in progress)."""
    return [f"{market}|{y}" for y in (2024, 2025, 2026)]


def test_the_gap_check_tells_the_truth_per_partition(
    deployment: tuple[Deployment, RunningSimulator],
) -> None:
    """The check's per-partition states, as the UI reads them, through a ranged backfill, a
    freshness tick, candles lost in one year, the daily sweep and a repair."""
    dep, _ = deployment
    xrp = "XRP-USDT-SPOT:1d"
    history = _years(xrp)  # 2024 to 2026 (the year in progress)
    runs = dep.wait_backfill(dep.launch_backfill(history))
    assert [r["status"] for r in runs] == ["SUCCESS"]  # three years: one ranged run

    started = time.time()
    dep.set_sensor("freshness", running=True)
    try:
        wait_for("a freshness run", lambda: _freshness_run_since(dep, started), timeout=240)
    finally:
        dep.set_sensor("freshness", running=False)
    # a tick may have launched the next run meanwhile: its planned checks show in progress
    # until it ends, so the states are read once no freshness run is under way
    time.sleep(2)  # (a tick being evaluated as the sensor stopped has submitted its run)
    wait_for("the freshness runs to end", lambda: not _freshness_runs(dep, ACTIVE), timeout=240)
    statuses = dep.check_statuses("no_gaps", "1d")
    assert {k: statuses.get(k) for k in history} == dict.fromkeys(history, "SUCCEEDED")
    assert "SKIPPED" not in statuses.values(), statuses
    # the freshness runs judged every market's year in progress, each for itself (the fresh
    # check only: the gap check of the year in progress is the daily sweep's)
    for market, tf in (("BTC-USDT-SPOT:1h", "1h"), ("ETH-USDT-SPOT:1m", "1m"),
                       ("SOL-USDT-SPOT:1m", "1m"), ("ADA-USDT-SPOT:1d", "1d"), (xrp, "1d")):  # fmt: skip
        fresh = dep.check_statuses("fresh", tf)
        assert fresh.get(f"{market}|2026") == "SUCCEEDED", fresh
        assert "SKIPPED" not in fresh.values()

    # candles of 10-12 April 2025 lost; the daily sweep finds them
    april = 1_743_465_600_000
    engine = sa.create_engine(dep.candles_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        gone = conn.execute(
            sa.text("DELETE FROM candles WHERE exchange = 'binance' AND symbol = 'XRP-USDT-SPOT' "
                    "AND timeframe = '1d' AND ts >= :lo AND ts < :hi"),
            {"lo": april + 9 * DAY, "hi": april + 12 * DAY},
        ).rowcount  # fmt: skip
    engine.dispose()
    assert gone == 3
    assert dep.wait_run(dep.launch_job("gap_sweep")) == "SUCCESS"
    statuses = dep.check_statuses("no_gaps", "1d")
    failed = [k for k in history if statuses.get(k) != "SUCCEEDED"]
    assert failed == [f"{xrp}|2025"] and statuses[failed[0]] == "FAILED"
    assert "SKIPPED" not in statuses.values()

    # a repair of the partition (its gaps only), launched as from the Launchpad: Passed again
    (market, year) = failed[0].split("|")
    repair = dep.launch_job(
        "__ASSET_JOB",
        tags={PARTITION_TAG: failed[0], f"{PARTITION_TAG}/{MARKET_DIM}": market,
              f"{PARTITION_TAG}/{YEAR_DIM}": year},
        config={"ops": {"candles__binance__1d": {"config": {"repair": True}}}},
        assets=[["candles", "binance", "1d"]],
    )  # fmt: skip
    assert dep.wait_run(repair) == "SUCCESS"
    statuses = dep.check_statuses("no_gaps", "1d")
    assert {k: statuses.get(k) for k in history} == dict.fromkeys(history, "SUCCEEDED")

    # and no Beta/Preview warning in any process's output or run's compute log
    outputs = dep.outputs()
    assert any(p.suffix == ".err" for p in outputs), "no compute log was read"
    warned = [
        str(p) for p, text in outputs.items() if "BetaWarning" in text or "PreviewWarning" in text
    ]
    assert warned == []


def _freshness_runs(dep: Deployment, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    data = dep.gql(
        "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { status startTime } } } }",
        f={"tags": [{"key": "market_data/freshness", "value": "binance"}]},
    )
    return [r for r in data["runsOrError"]["results"] if r["status"] in statuses]


def _freshness_run_since(dep: Deployment, started: float) -> bool:
    return any((r["startTime"] or 0) >= started for r in _freshness_runs(dep, ("SUCCESS",)))


def test_the_ui_shows_each_partitions_check_state_and_figures(
    deployment: tuple[Deployment, RunningSimulator], tmp_path: Path
) -> None:
    """In a real browser: the check's Partitions tab (a year with a gap Failed, the others
    Passed) and the asset's partition detail (that year's own figures)."""
    dep, _ = deployment
    ada = "ADA-USDT-SPOT:1d"
    years = _years(ada)
    # the three years in one ranged run, as the Launchpad launches a range (backfills have
    # their own test; the backfill daemon's 30 s loop would only add waiting here)
    ranged = dep.launch_job("__ASSET_JOB", tags={RANGE_START: years[0], RANGE_END: years[-1]},
                            assets=[["candles", "binance", "1d"]])  # fmt: skip
    assert dep.wait_run(ranged) == "SUCCESS"
    feb = 1_738_368_000_000  # 2025-02-01
    engine = sa.create_engine(dep.candles_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM candles WHERE symbol = 'ADA-USDT-SPOT' AND timeframe = '1d' "
                    "AND ts = :ts"),
            {"ts": feb + 9 * DAY},
        )  # fmt: skip
    engine.dispose()
    # the on-demand check over the three years, as launched from the Launchpad
    check = dep.launch_job(
        "check_gaps_binance_1d",
        tags={RANGE_START: years[0], RANGE_END: years[-1]},
    )  # fmt: skip
    assert dep.wait_run(check) == "SUCCESS"

    with browser_page(tmp_path) as page:
        page.goto(f"{dep.url}/assets/candles/binance/1d?view=checks&checkDetail=no_gaps")
        page.get_by_text("Execution history", exact=True).wait_for()  # the check's own tabs
        page.get_by_text("Partitions", exact=True).last.click()
        expect(page.get_by_text("Skipped (0)")).to_be_visible()
        page.get_by_placeholder("Filter by market").fill("ADA")
        page.get_by_text(ada, exact=True).first.click()
        detail = page.locator("body")
        # (the counts are over every market's partitions, which other tests fill too: none
        # is Skipped or failed to execute, whichever ran before)
        for count in ("Skipped (0)", "Execution Failed (0)"):
            expect(detail).to_contain_text(count)
        # (the year list is the last place a year key shows; the range bar names some too)
        page.get_by_text("2025", exact=True).filter(visible=True).last.click()
        expect(detail).to_contain_text("1 open gap(s): 0 missing, 1 empty (unconfirmed)")
        expect(detail).to_contain_text(re.compile(rf"{re.escape(ada)}\|2025\s*Failed"))
        page.get_by_text("2024", exact=True).filter(visible=True).last.click()
        expect(detail).to_contain_text("complete")
        expect(detail).to_contain_text(re.compile(rf"{re.escape(ada)}\|2024\s*Passed"))

        pk = urllib.parse.quote(f"{ada}|2024")
        page.goto(f"{dep.url}/assets/candles/binance/1d?view=partitions&partition={pk}")
        for name, value in (("expected", "366"), ("present", "366"), ("absent", "0"),
                            ("rows_written", "366"), ("run_markets", "1")):  # fmt: skip
            expect(page.locator("tr", has_text=name).first).to_contain_text(value)
        expect(page.locator("tr", has_text="first_candle").first).to_contain_text("Jan 1")
        expect(page.locator("tr", has_text="last_candle").first).to_contain_text("Dec 31")
