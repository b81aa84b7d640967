"""The Celery app of the run workers (dagster.celery.yaml): `celery -A market_data.workers
worker -Q exchange.binance -n binance@%h` takes Binance's runs; `make serve-workers` starts
one worker per queue.

Each run is one task, executed in a pool process of its own (``worker_max_tasks_per_child``
1, as Dagster's default launcher starts a process per run), forked from a parent that has
imported the code location already. The run is tagged with the worker that took it
(``market_data/celery_worker``) and its first engine event names it. The broker
(``CELERY_BROKER_URL``, a RabbitMQ) and the result backend (``CELERY_RESULT_BACKEND``) come
from the environment, as for the launcher; ``DAGSTER_HOME`` names the instance
(dagster.celery.yaml), as on the daemon's host.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from celery import Celery, signals
from dagster._serdes import unpack_value
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

import market_data.definitions  # noqa: F401  (loaded once, before the pool forks)
from market_data.defs.queues import WORKER_TAG, declare_queues


def worker_app() -> Celery:
    broker = os.environ.get("CELERY_BROKER_URL")
    if not broker:
        raise SystemExit("set CELERY_BROKER_URL (amqp://user:password@host:5672//)")
    app = make_app(
        app_args={
            "broker": broker,
            "backend": os.environ.get("CELERY_RESULT_BACKEND") or None,
            "include": [],
            "config_source": {},
        }
    )
    declare_queues(app)
    app.conf.update(
        worker_prefetch_multiplier=1,  # a worker takes a run only when it has a free slot
        worker_max_tasks_per_child=1,  # a process per run
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts_level="INFO",  # the run's own log lines are not warnings
    )
    return app


app = worker_app()
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)


@signals.task_prerun.connect
def name_the_worker(task_id: str, task: Any, kwargs: dict[str, Any], **_: Any) -> None:
    """Tag the run with the worker that took it, and say so in its event log."""
    packed = (kwargs or {}).get("execute_job_args_packed")
    if packed is None:
        return
    run_id = unpack_value(packed).run_id
    worker = task.request.hostname
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is None:
            return
        instance.add_run_tags(run_id, {WORKER_TAG: worker})
        instance.report_engine_event(
            f"Taken by Celery worker {worker} (pid {os.getpid()}), task {task_id}.", run
        )
