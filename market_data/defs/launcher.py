"""The run launcher of dagster.yaml: Dagster's default launcher (a run worker process per run,
started by the code server) that can also tell run monitoring whether a worker still lives.

The default launcher cannot, so a run whose worker died (kill -9, the daemon's process group
stopped by systemd) stayed STARTED and kept its pool slot forever. With this launcher the
monitoring daemon marks such a run failed (run retries then retry it, and
``free_slots_after_run_end_seconds`` frees its slots).
"""

from __future__ import annotations

import json

import dagster as dg

# No public home for these: the types of Dagster's run launcher API (its default launcher is
# public, the context and health-check results it uses are not), and the (hidden) tag where
# the default launcher records which code server started the run.
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG, WILL_RETRY_TAG

from market_data.defs.candles.partitions import HOST_TAG
from market_data.defs.runs import this_host, worker_is_dead

LOCAL = {"localhost", "127.0.0.1", "::1"}


class WatchedRunLauncher(dg.DefaultRunLauncher):
    def launch_run(self, context: LaunchRunContext) -> None:
        super().launch_run(context)
        run_id = context.dagster_run.run_id
        run = self._instance.get_run_by_id(run_id)
        grpc = json.loads(run.tags.get(GRPC_INFO_TAG, "{}")) if run else {}
        if grpc.get("socket") or grpc.get("host") in LOCAL:
            # the code server, hence the run worker, runs on this machine: its pid can be seen
            self._instance.add_run_tags(run_id, {HOST_TAG: this_host()})

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        why = worker_is_dead(self._instance, run)
        if why is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "")
        return failed_worker(self._instance, run, why)


def failed_worker(
    instance: dg.DagsterInstance, run: dg.DagsterRun, why: str
) -> CheckRunHealthResult:
    """The health of a run whose worker is known to be gone (this launcher's and the Celery
    launcher's, defs/queues.py)."""
    if instance.run_retries_enabled:
        # Monitoring marks the run failed next; Dagster tags it will_retry only after the
        # status has changed, and a backfill daemon tick in between saw a failed run with
        # no retry coming and ended the backfill (so the retry was never launched). Tagged
        # first, the backfill waits; Dagster then sets the tag's final value itself.
        instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "true"})
    return CheckRunHealthResult(WorkerStatus.FAILED, why)
