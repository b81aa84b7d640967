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

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from common import free_port, scratch_database  # bench/, on sys.path when run as a script

from market_data.simulator.faults import Faults
from market_data.simulator.markets import MARKETS, Kind
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FRESHNESS_S = 120
LOCATION = {"repositoryName": "__repository__", "repositoryLocationName": "market_data"}


def gql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(f"{url}/graphql", data=body, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 (loopback)
        payload = json.loads(r.read())
    assert "errors" not in payload, payload
    return payload["data"]


def stop_sensor(url: str, name: str) -> None:
    found = gql(url, "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) "
                "{ ... on Sensor { id } } }", s={**LOCATION, "sensorName": name})  # fmt: skip
    gql(url, "mutation($id: String) { stopSensor(id: $id) { __typename } }",
        id=found["sensorOrError"]["id"])  # fmt: skip


def role(cmdline: str) -> str:
    """Which part of the deployment a process is."""
    if "execute_run" in cmdline or "execute_step" in cmdline:
        return "run worker"
    if "multiprocessing" in cmdline:
        return "run worker"  # a code server starts each run as a process of its own
    if "dagster-webserver" in cmdline:
        return "webserver"
    if "dagster-daemon" in cmdline:
        return "daemon"
    if "grpc" in cmdline or "code-server" in cmdline:
        return "code server"
    if cmdline.startswith("tail "):
        return "compute log tails"
    return "other"


class Memory:
    """Peak resident memory (MiB) of each role's processes, sampled every second from /proc
    over the process groups of the deployment."""

    def __init__(self, groups: list[int]) -> None:
        self.groups, self.peak, self.peak_sum = set(groups), {}, {}  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        sums: dict[str, float] = {}
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                if os.getpgid(int(pid)) not in self.groups:
                    continue
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                rss_kb = next(int(line.split()[1]) for line in
                              Path(f"/proc/{pid}/status").read_text().splitlines()
                              if line.startswith("VmRSS:"))  # fmt: skip
            except (OSError, ProcessLookupError, StopIteration):
                continue
            mib = rss_kb / 1024
            r = role(cmd)
            self.peak[r] = max(self.peak.get(r, 0.0), mib)
            sums[r] = sums.get(r, 0.0) + mib
        for r, total in sums.items():
            self.peak_sum[r] = max(self.peak_sum.get(r, 0.0), total)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(5)
        return "; ".join(
            f"{r}: {self.peak[r]:.0f} MiB (all at once: {self.peak_sum[r]:.0f})"
            for r in sorted(self.peak)
        )


def backfill_status(url: str, backfill: str) -> str:
    data = gql(url, "query($id: String!) { partitionBackfillOrError(backfillId: $id) "
               "{ ... on PartitionBackfill { status } } }", id=backfill)  # fmt: skip
    return str(data["partitionBackfillOrError"]["status"])


def runs(url: str, tag: dict[str, str]) -> list[dict[str, Any]]:
    data = gql(url, "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs "
               "{ results { runId status } } } }", f={"tags": [tag]})  # fmt: skip
    return list(data["runsOrError"]["results"])


def main() -> None:
    pairs = [
        m for m in MARKETS if m.kind is Kind.SPOT and m.ends_ms is None and m.empty_share == 0
    ][:20]
    tmp = Path(tempfile.mkdtemp(prefix="md-starvation-"))
    procs: list[subprocess.Popen] = []
    with (
        RunningSimulator(Simulator(Faults(latency_ms=100))) as sim,
        scratch_database("md_bench_starve") as db,
        scratch_database("md_bench_starve_dagster") as dagster_db,
    ):
        home = tmp / "home"
        home.mkdir()
        (home / "dagster.yaml").symlink_to(ROOT / "dagster.postgres.yaml")
        config = tmp / "watchlist.yaml"
        markets = [f"{m.base}/{m.quote}/1m" for m in pairs]
        config.write_text(yaml.safe_dump({
            "start": "2025-01-01", "freshness": {"interval_s": FRESHNESS_S},
            "exchanges": {"binance": {"base_url": sim.url, "markets": markets}},
        }))  # fmt: skip
        pg = dagster_db.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        env = {**os.environ, "DAGSTER_HOME": str(home), "MARKET_DATA_CONFIG": str(config),
               "DATABASE_URL": db, "DAGSTER_POSTGRES_URL": pg}  # fmt: skip
        for command in ("db", "init"), ("pools",):  # as `make serve` starts
            subprocess.run([str(BIN / "market-data"), *command], env=env, check=True)
        keys = [f"{m.base}-{m.quote}-SPOT:1m" for m in pairs]
        code = f"import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions('markets_binance_1m', {keys!r})"
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(tmp / "dagster.log", "ab")  # noqa: SIM115 (kept open for the processes)
        for args in (
            [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        ):
            procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log,
                                          start_new_session=True))  # fmt: skip
        memory = Memory([p.pid for p in procs])
        try:
            for _ in range(180):
                try:
                    urllib.request.urlopen(f"{url}/server_info", timeout=5)  # noqa: S310
                    break
                except OSError:
                    time.sleep(1)
            for name in ("watchlist", "gap_repair"):  # this bench launches its own backfill
                stop_sensor(url, name)
            store = CandleStore(db, create=False)

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
            partitions = [f"{k}|2025" for k in keys]
            data = gql(url, "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill("
                       "backfillParams: $p) { __typename ... on LaunchBackfillSuccess { backfillId } } }",
                       p={"partitionNames": partitions, "assetSelection": [{"path": ["candles", "binance", "1m"]}],
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
            print(f"peak resident memory per process: {memory.stop()}")
            store.dispose()
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.wait(60)


if __name__ == "__main__":
    main()
