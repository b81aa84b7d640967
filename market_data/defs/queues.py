"""Runs on Celery workers over RabbitMQ (dagster.celery.yaml): one queue per exchange, and a
launcher that notices a worker that died.

Every run that talks to an exchange (its candles, instruments or order books) goes to that
exchange's queue, ``exchange.<name>``, so a worker started with ``-Q exchange.binance`` (on the
host that has Binance's egress address) takes only Binance's runs; every other run (composite,
status, check-only runs) goes to ``dagster``. Dagster's run priority carries over to the
message's priority (RabbitMQ priority queues, 0-9).

Dagster's own ``CeleryRunLauncher`` judges a run's health by its Celery task state, which a
worker killed with ``kill -9`` (or a host that vanished) leaves at STARTED for ever. Here the
run is alive while its task is among the active tasks of a live worker (one broadcast
``inspect active`` per poll, answered by each worker's main process even while its pool
child runs the task); a run whose task is on no live worker's list at two polls in a row is
marked failed, its pool slots freed, and run retries launch it again on a live worker. A
broker that cannot be reached is never taken as a dead worker (nothing can be told then).
A broker that is down when a run is launched holds that run: the submission is retried with
backoff (one line in the daemon's log) for up to ``submit_timeout_seconds``.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Mapping
from typing import Any, Self

import dagster as dg
import kombu
from celery import Celery
from celery.exceptions import DuplicateTaskNameWarning
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG, DAGSTER_CELERY_TASK_ID_TAG

from market_data.defs.candles.partitions import PRIORITY_TAG
from market_data.defs.launcher import failed_worker
from market_data.exchanges.venues import VENUES

QUEUE_TAG = DAGSTER_CELERY_QUEUE_TAG
TASK_TAG = DAGSTER_CELERY_TASK_ID_TAG
WORKER_TAG = "market_data/celery_worker"  # the worker (name@host) that took the run
DEFAULT_QUEUE = "dagster"
#: asset key prefixes whose second part names the exchange the asset talks to
EXCHANGE_ASSETS = ("candles", "instruments", "orderbooks")
MAX_PRIORITY = 9
#: broadcast replies are awaited this long; an inspection is reused for this long
INSPECT_TIMEOUT_S = 1.0
INSPECT_TTL_S = 5.0
#: polls in a row at which a run's task is on no live worker before the run is failed
MISSES = 2

log = logging.getLogger("dagster.market_data.celery")


def exchange_queue(exchange: str) -> str:
    return f"exchange.{exchange}"


def all_queues() -> list[str]:
    return [exchange_queue(name) for name in VENUES] + [DEFAULT_QUEUE]


def queue_of(run: dg.DagsterRun) -> str:
    """The queue of a run: its tag if set, else the exchange's of the assets it
    materializes (one exchange), else the default queue (none, or several at once)."""
    if run.tags.get(QUEUE_TAG):
        return run.tags[QUEUE_TAG]
    exchanges = {
        key.path[1]
        for key in run.asset_selection or ()
        if len(key.path) >= 2 and key.path[0] in EXCHANGE_ASSETS
    }
    return exchange_queue(exchanges.pop()) if len(exchanges) == 1 else DEFAULT_QUEUE


def celery_priority(run: dg.DagsterRun) -> int:
    """Dagster's run priority (``dagster/priority``: 10 urgent, 0, -10 low) as RabbitMQ's
    (0-9, higher first; 5 for a run without one)."""
    try:
        priority = int(run.tags.get(PRIORITY_TAG, "0"))
    except ValueError:
        priority = 0
    return max(0, min(MAX_PRIORITY, 5 + priority // 2))


def declare_queues(app: Celery) -> None:
    """Every queue durable, bound by its own name on a direct exchange of the same name, with
    priorities: the launcher and the workers declare them alike (RabbitMQ refuses a queue
    declared again with other arguments)."""
    app.conf.task_queues = [
        kombu.Queue(
            name,
            kombu.Exchange(name, type="direct", durable=True),
            routing_key=name,
            durable=True,
            queue_arguments={"x-max-priority": MAX_PRIORITY},
        )
        for name in all_queues()
    ]
    app.conf.task_default_queue = DEFAULT_QUEUE
    app.conf.task_queue_max_priority = MAX_PRIORITY
    app.conf.task_default_priority = 5


class CeleryWatchedRunLauncher(CeleryRunLauncher):
    """Dagster's Celery launcher with per-exchange queues, priorities, a broker outage held
    at submission, and run health from the live workers' active tasks."""

    def __init__(self, submit_timeout_seconds: float = 300.0, **kwargs: Any) -> None:
        # dagster-celery registers its run task again at every launch (same name, same code)
        warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)
        super().__init__(**kwargs)
        declare_queues(self.celery)
        self.submit_timeout_s = submit_timeout_seconds
        self._inspected: tuple[float, dict[str, set[str]] | None] = (float("-inf"), None)
        self._misses: dict[str, int] = {}
        self._broker_down = False

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **super().config_type(),
            "submit_timeout_seconds": dg.Field(
                float,
                is_required=False,
                default_value=300.0,
                description="How long a run's submission waits for a broker that is down.",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: dg.ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def broker_uri(self) -> str:
        """The broker's address, password masked (for logs)."""
        return self.celery.connection_for_write().as_uri()

    def _launch_celery_task_run(
        self, run: dg.DagsterRun, task_signature: Any, routing_key: str
    ) -> None:
        queue, priority = queue_of(run), celery_priority(run)
        self._instance.add_run_tags(run.run_id, {QUEUE_TAG: queue})
        result = self._submit(run, task_signature, queue, priority)
        self._instance.add_run_tags(run.run_id, {TASK_TAG: result.task_id})
        self._instance.report_engine_event(
            f"Sent to Celery queue {queue} (priority {priority}), task {result.task_id}.",
            run,
            cls=self.__class__,
        )

    def _submit(self, run: dg.DagsterRun, task_signature: Any, queue: str, priority: int) -> Any:
        deadline = time.monotonic() + self.submit_timeout_s
        delay = 1.0
        while True:
            try:
                return task_signature.apply_async(queue=queue, routing_key=queue, priority=priority)
            except (kombu.exceptions.OperationalError, OSError) as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if delay == 1.0:
                    self._down(exc, f"holding run {run.run_id}, retrying for up to {left:.0f} s")
                time.sleep(min(left, delay * random.uniform(0.5, 1.5)))
                delay = min(delay * 2, 15.0)
            else:
                self._up()

    def state(self, needed: list[str]) -> dict[str, Any]:
        """Where runs go, for the status report: the broker (password masked), whether it
        answers, each live worker's queues, and the ``needed`` queues no worker takes."""
        state: dict[str, Any] = {"launcher": "celery", "broker": self.broker_uri(),
                                 "reachable": True, "error": None, "workers": {},
                                 "queues_without_worker": []}  # fmt: skip
        try:
            replies = self._ask("active_queues")
        except (kombu.exceptions.OperationalError, OSError) as exc:
            state["reachable"], state["error"] = False, f"{type(exc).__name__}: {exc}"[:200]
            return state
        workers = {w: sorted(q["name"] for q in qs) for w, qs in replies.items()}
        taken = {q for qs in workers.values() for q in qs}
        state["workers"] = dict(sorted(workers.items()))
        state["queues_without_worker"] = [q for q in needed if q not in taken]
        return state

    def _ask(self, question: str) -> dict[str, Any]:
        """The live workers' answers to a broadcast inspection (``active``,
        ``active_queues``), on a connection of its own (a pooled one may be a broken one from
        before a broker restart); OperationalError if the broker is down."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            inspect = self.celery.control.inspect(timeout=INSPECT_TIMEOUT_S, connection=conn)
            return getattr(inspect, question)() or {}

    def _down(self, exc: BaseException, then: str) -> None:
        """One line when the broker stops answering (and one per run held meanwhile)."""
        if not self._broker_down or then.startswith("holding"):
            log.warning(
                "Celery broker %s unreachable (%s): %s", self.broker_uri(), type(exc).__name__, then
            )
        self._broker_down = True

    def _up(self) -> None:
        if self._broker_down:
            log.warning("Celery broker %s answers again", self.broker_uri())
        self._broker_down = False

    def active_tasks(self) -> dict[str, set[str]] | None:
        """Live worker -> the ids of the tasks it is running (one broadcast, reused for
        INSPECT_TTL_S), or None if the broker cannot be reached."""
        at, tasks = self._inspected
        if time.monotonic() - at < INSPECT_TTL_S:
            return tasks
        try:
            replies = self._ask("active")
            tasks = {worker: {t["id"] for t in active} for worker, active in replies.items()}
            self._up()
        except (kombu.exceptions.OperationalError, OSError) as exc:
            self._down(exc, "no run is judged dead until it answers")
            tasks = None
        self._inspected = (time.monotonic(), tasks)
        return tasks

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        task_id = run.tags.get(TASK_TAG)
        tasks = self.active_tasks()
        if task_id is None or tasks is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "")  # nothing can be told
        if any(task_id in ids for ids in tasks.values()):
            self._misses.pop(run.run_id, None)
            return CheckRunHealthResult(WorkerStatus.RUNNING, "")
        self._misses[run.run_id] = misses = self._misses.get(run.run_id, 0) + 1
        if misses < MISSES:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "")
        self._misses.pop(run.run_id, None)
        worker = run.tags.get(WORKER_TAG, "its worker")
        why = (
            f"its Celery task {task_id} ({worker}) is on no live worker's list at "
            f"{MISSES} polls in a row: the worker died"
        )
        return failed_worker(self._instance, run, why)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or TASK_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        # SIGINT: the run worker ends its step as interrupted and reports the run canceled
        self.celery.control.revoke(run.tags[TASK_TAG], terminate=True, signal="SIGINT")
        return True

    def get_run_worker_debug_info(
        self, run: dg.DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        return str(
            {
                "run_id": run.run_id,
                "celery_task_id": run.tags.get(TASK_TAG),
                "queue": run.tags.get(QUEUE_TAG),
                "worker": run.tags.get(WORKER_TAG),
            }
        )
