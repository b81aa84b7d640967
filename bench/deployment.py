"""A deployment as in production for the benchmarks: `make serve`'s processes (webserver and
daemon, the Dagster instance and the candles on PostgreSQL, `market-data pools`), driven
through the webserver's GraphQL API as the UI drives it, with the resident memory of each
of its processes sampled."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from common import free_port, scratch_database  # bench/, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = {"repositoryName": "__repository__", "repositoryLocationName": "market_data"}


def wait_up(url: str) -> None:
    """Until the webserver at ``url`` answers (loading the code location takes a while)."""
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=5)  # noqa: S310 (loopback)
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the webserver at {url} did not come up")


def gql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(f"{url}/graphql", data=body, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 (loopback)
        payload = json.loads(r.read())
    assert "errors" not in payload, payload
    return payload["data"]


def stop_sensor(url: str, name: str) -> None:
    found = gql(url, "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) "
                "{ ... on Sensor { id } } }", s={**LOCATION, "sensorName": name})  # fmt: skip
    if "id" not in found["sensorOrError"]:
        return  # not defined for this watchlist
    gql(url, "mutation($id: String) { stopSensor(id: $id) { __typename } }",
        id=found["sensorOrError"]["id"])  # fmt: skip


def reload_location(url: str) -> None:
    """As the UI's "Reload" of the code location (after the watchlist file changed)."""
    gql(url, "mutation($n: String!) { reloadRepositoryLocation(repositoryLocationName: $n) "
        "{ __typename } }", n=LOCATION["repositoryLocationName"])  # fmt: skip


def runs(url: str, tag: dict[str, str]) -> list[dict[str, Any]]:
    data = gql(url, "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs "
               "{ results { runId status startTime endTime } } } }", f={"tags": [tag]})  # fmt: skip
    return list(data["runsOrError"]["results"])


def backfill_status(url: str, backfill: str) -> str:
    data = gql(url, "query($id: String!) { partitionBackfillOrError(backfillId: $id) "
               "{ ... on PartitionBackfill { status } } }", id=backfill)  # fmt: skip
    return str(data["partitionBackfillOrError"]["status"])


def role(cmdline: str) -> str:
    """Which part of the deployment a process is."""
    if "execute_run" in cmdline or "execute_step" in cmdline:
        return "run worker"
    if "multiprocessing" in cmdline:
        return "run worker"  # a code server starts each run as a process of its own
    if "market_data.workers" in cmdline:
        return "celery worker"
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


@dataclass
class Deployment:
    url: str  # the webserver
    store_url: str  # the candle store
    config: Path  # the watchlist file
    env: dict[str, str]
    memory: Memory

    def watch(self, watchlist: dict[str, Any]) -> None:
        self.config.write_text(yaml.safe_dump(watchlist))

    def market_data(self, *command: str) -> None:
        subprocess.run([str(BIN / "market-data"), *command], env=self.env, check=True)


@contextmanager
def deployment(
    watchlist: dict[str, Any],
    prefix: str,
    tmp: Path,
    prepare: Callable[[dict[str, str]], None] | None = None,
    instance: str = "dagster.postgres.yaml",
    extra_env: dict[str, str] | None = None,
    stopped_sensors: tuple[str, ...] = (),
) -> Iterator[Deployment]:
    """Webserver and daemon processes on PostgreSQL databases of their own, watching
    ``watchlist`` (``prepare``, given their environment, runs before they start); stopped
    with SIGTERM at the end. ``instance``: the instance file (dagster.celery.yaml: with
    ``extra_env`` naming the broker). ``stopped_sensors``: stopped through the webserver
    before the daemon starts (so they never tick). A SIGTERM to the bench stops it as
    Ctrl-C does: the processes and databases go with it."""

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupted)
    with (
        contextlib.ExitStack() as restore,
        scratch_database(f"md_bench_{prefix}") as db,
        scratch_database(f"md_bench_{prefix}_dagster") as dagster_db,
    ):
        restore.callback(signal.signal, signal.SIGTERM, previous)
        home = tmp / "home"
        home.mkdir()
        (home / "dagster.yaml").symlink_to(ROOT / instance)
        pg = dagster_db.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        env = {**os.environ, "DAGSTER_HOME": str(home), "MARKET_DATA_CONFIG": str(tmp / "watchlist.yaml"),
               "DATABASE_URL": db, "DAGSTER_POSTGRES_URL": pg, **(extra_env or {})}  # fmt: skip
        port = free_port()
        procs: list[subprocess.Popen] = []
        log = open(tmp / "dagster.log", "ab")  # noqa: SIM115 (kept open for the processes)
        dep = Deployment(f"http://127.0.0.1:{port}", db, tmp / "watchlist.yaml", env, None)  # type: ignore[arg-type]
        dep.watch(watchlist)
        for command in ("db", "init"), ("pools",):  # as `make serve` starts
            dep.market_data(*command)
        if prepare:
            prepare(env)

        def start(*args: str) -> None:
            procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log,
                                          start_new_session=True))  # fmt: skip

        start(str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
              "-p", str(port))  # fmt: skip
        try:
            if stopped_sensors:
                wait_up(dep.url)
                for name in stopped_sensors:
                    stop_sensor(dep.url, name)
            start(str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml")
            dep.memory = Memory([p.pid for p in procs])
            wait_up(dep.url)
            yield dep
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.wait(60)
            time.sleep(5)
            for proc in procs:  # a code server that outlived its parent (seen once: 30 min)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
