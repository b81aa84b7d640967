"""Runs whose process is gone: found, ended as failed, their pool slots freed.

A run's process is the one that reported its RUN_START event: the run worker of a launched
run, or the `market-data` process of a command-line run. Runs are tagged with the host that
started them; only a run of this host is judged (a process elsewhere cannot be seen), and it
is dead when its pid is gone or now belongs to a process started after the run did.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from market_data.defs.candles.partitions import (
    FRESHNESS_TAG,
    HOST_TAG,
    PARTITION_TAG,
    RANGE_END,
    RANGE_START,
    market_partitions,
    markets_of_run,
    months_of_year,
    split_partition_key,
)

STOPPING = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)
#: runs queued or running (the sensors skip work such a run is doing already)
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def run_asset(run: dg.DagsterRun) -> tuple[str, str] | None:
    """(exchange, timeframe) of the candle asset a run materializes (its asset selection),
    if any."""
    for key in run.asset_selection or ():
        if len(key.path) == 3 and key.path[0] == "candles":
            return key.path[1], key.path[2]
    return None


@dataclass(frozen=True)
class Busy:
    """What a queued or running run materializes: its markets x the months of its years (a
    rectangle, as Dagster reads a range over two dimensions); ``freshness``: a freshness
    run."""

    markets: set[str]
    first_month: str
    last_month: str
    freshness: bool

    def covers(self, market: str, month: str) -> bool:
        return market in self.markets and self.first_month <= month <= self.last_month


def busy_partitions(instance: dg.DagsterInstance, exchanges: list[str]) -> dict[str, list[Busy]]:
    """Per exchange, what the queued and running runs materialize (a single partition, or
    every market and month of a range: a grouped backfill, a freshness run)."""
    busy: dict[str, list[Busy]] = {ex: [] for ex in exchanges}
    orders: dict[tuple[str, str], list[str]] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        asset = run_asset(run)
        ends = [run.tags[t] for t in (PARTITION_TAG, RANGE_START, RANGE_END) if t in run.tags]
        if asset is None or asset[0] not in busy or not ends:
            continue
        if asset not in orders:
            orders[asset] = instance.get_dynamic_partitions(market_partitions(*asset).name)
        years = sorted(split_partition_key(k)[1] for k in ends)
        markets = markets_of_run(run.tags, orders[asset])
        first, last = months_of_year(years[0])[0], months_of_year(years[-1])[1]
        busy[asset[0]].append(Busy(markets, first, last, FRESHNESS_TAG in run.tags))
    return busy


def this_host() -> str:
    return socket.gethostname()


def run_is_stopping(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether someone asked the run to stop (UI termination, the command line's Ctrl-C)."""
    run = instance.get_run_by_id(run_id)
    return run is None or run.status in STOPPING


def _process_started_at(pid: int) -> float | None:
    """Epoch seconds the process ``pid`` started at (Linux /proc); None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _alive(pid: int, since: float) -> bool:
    """Whether ``pid`` is a live process that was already running at ``since`` (epoch s)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = _process_started_at(pid)
    return started is None or started <= since + 1.0  # /proc's clock has 1/100 s ticks


@dataclass(frozen=True)
class Worker:
    pid: int
    started_at: float  # epoch seconds of the run's RUN_START


def run_worker(instance: dg.DagsterInstance, run_id: str) -> Worker | None:
    """The process that started executing the run (None: not started yet)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, ascending=False, limit=1
    ).records
    if not records or records[0].event_log_entry.dagster_event is None:
        return None
    event = records[0].event_log_entry
    pid = event.dagster_event.pid if event.dagster_event else None
    return None if pid is None else Worker(pid, event.timestamp)


def worker_is_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why the run's process is known to be gone, or None (alive, elsewhere, or unknown)."""
    if run.tags.get(HOST_TAG) != this_host():
        return None
    worker = run_worker(instance, run.run_id)
    if worker is None or _alive(worker.pid, worker.started_at):
        return None
    return f"its process (pid {worker.pid} on {this_host()}) is gone"


def reap_dead_runs(instance: dg.DagsterInstance, say: Callable[[str], None]) -> list[str]:
    """End every STARTED run of this host whose process is gone: marked failed, its pool slots
    freed. Returns their ids."""
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        why = worker_is_dead(instance, run)
        if why is None:
            continue
        instance.report_run_failed(run, f"Marked failed: {why}.")
        freed = instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        say(
            f"run {run.run_id[:8]} was left STARTED but {why}: marked failed, {freed} slot(s) freed"
        )
        reaped.append(run.run_id)
    return reaped


def wait_for_pool(
    instance: dg.DagsterInstance,
    pool: str,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait (politely, interruptibly) until ``pool`` has a free slot. Dagster's in-process
    executor would wait for it too, but in a loop that neither sleeps nor sees Ctrl-C."""
    told = False
    while True:
        info = instance.event_log_storage.get_concurrency_info(pool)
        if info.slot_count is None or (info.slot_count == 0 and not info.claimed_slots):
            return  # no limit set for this pool
        if len(info.claimed_slots) < info.slot_count:
            return
        if not told:
            holders = sorted({c.run_id[:8] for c in info.claimed_slots})
            say(f"      waiting for pool {pool} (held by run {', '.join(holders)})")
            told = True
        reap_dead_runs(instance, say)
        sleep(1.0)
