"""The ``alerts`` sensor: each minute, what a person must see goes to the webhooks.

It adds the runs that failed for good (from the instance: not cancelled ones, not those
Dagster will retry) to the incidents the store shows (pipeline/alerts.py), sends what is
new, still open past ``repeat_after_s`` or resolved, and retries undelivered messages. It
launches nothing; a webhook that hangs costs this sensor at most its timeout, never another
sensor's tick (the daemon evaluates sensors in threads: dagster.yaml).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg

from market_data.defs.candles.partitions import (
    PARTITION_TAG,
    RANGE_END,
    RANGE_START,
    WILL_RETRY_TAG,
    split_partition_key,
)
from market_data.defs.resources import AlertsResource, CandleStoreResource
from market_data.domain.alerts import AlertSettings, Incident
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.alerts import store_incidents, tick

#: with no cursor yet (a new deployment), failed runs this recent are reported
FIRST_LOOK_BACK_S = 600
RUNS_PER_TICK = 200


def failed_runs(
    instance: dg.DagsterInstance, since: float, settings: AlertSettings
) -> tuple[list[Incident], float]:
    """Runs that failed for good since ``since`` (update time, epoch s) as incidents, and
    the newest update time seen (the next cursor)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(since, UTC),
        ),
        limit=RUNS_PER_TICK,
        order_by="update_timestamp",
        ascending=True,
    )
    out, newest = [], since
    for record in records:
        newest = max(newest, record.update_timestamp.timestamp())
        run = record.dagster_run
        if run.tags.get(WILL_RETRY_TAG) == "true":
            continue  # Dagster retries it: not failed for good (yet)
        out.append(_incident(instance, run, settings))
    return out, newest


def _incident(
    instance: dg.DagsterInstance, run: dg.DagsterRun, settings: AlertSettings
) -> Incident:
    keys = [run.tags[t] for t in (PARTITION_TAG, RANGE_START, RANGE_END) if t in run.tags]
    parts = [split_partition_key(k) for k in keys if "|" in k]
    markets = sorted({m for m, _ in parts})
    windows = sorted({window[:7] for _, window in parts})  # years (candles), months (composite)
    step, reason = _first_failure(instance, run.run_id)
    exchange = _exchange_of(run, step)
    what = ", ".join(markets) or run.job_name
    span = f" {windows[0]}..{windows[-1]}" if windows else ""
    return Incident(
        f"run_failed:{run.run_id}",
        "run_failed",
        exchange,
        f"{exchange or run.job_name}: run {run.run_id[:8]} failed ({what}{span}): {reason}",
        (
            ("run_id", run.run_id),
            ("markets", ", ".join(markets)),
            ("span", f"{windows[0]}..{windows[-1]}" if windows else ""),
            ("reason", reason),
        ),
        settings.run_link(run.run_id),
    )


#: asset key prefixes (and step key prefixes: candles__binance) whose second part is an exchange
EXCHANGE_ASSETS = ("candles", "instruments", "orderbooks")


def _exchange_of(run: dg.DagsterRun, step: str | None) -> str | None:
    """The exchange a run talked to: from its asset selection, else its failed step's key."""
    keys = [k.path for k in run.asset_selection or ()]
    if step:
        keys.append(step.split("__"))
    found = sorted({p[1] for p in keys if len(p) > 1 and p[0] in EXCHANGE_ASSETS})
    return found[0] if found else None


def _first_failure(instance: dg.DagsterInstance, run_id: str) -> tuple[str | None, str]:
    """The failed step and the first line of its failure (its description, else its error),
    or of the run failure (a worker that died)."""
    for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for entry in instance.all_logs(run_id, of_type=kind):
            event = entry.dagster_event
            data = event.step_failure_data if event and event.is_step_failure else None
            text = (
                (data.user_failure_data.description if data and data.user_failure_data else None)
                or (data.error.message if data and data.error else None)
                or entry.message
            )
            lines = (text or "").strip().splitlines()
            if lines:
                return entry.step_key, lines[0][:300]
    return None, "no reason recorded"


def alerts_sensor(watchlist: Watchlist) -> dg.SensorDefinition:
    settings = watchlist.alerts

    @dg.sensor(
        name="alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Each minute: failed runs, gaps left open by their repairs, stale "
        "markets, the live service down, bans and repeated 429s, crossed books, sent once "
        "to the alert webhooks (again when resolved, or after repeat_after_s).",
    )
    def sensor(
        context: dg.SensorEvaluationContext,
        candle_store: CandleStoreResource,
        alerts: AlertsResource,
    ) -> dg.SkipReason:
        if not settings.targets:
            return dg.SkipReason("no alert target in the watchlist (alerts.targets)")
        now = time.time()
        since = float(context.cursor) if context.cursor else now - FIRST_LOOK_BACK_S
        runs, newest = failed_runs(context.instance, since, settings)
        store = candle_store.store()
        incidents = runs + store_incidents(store, watchlist, settings, int(now * 1000))
        result = tick(store, settings, incidents, alerts.urls(), int(now * 1000))
        context.update_cursor(str(newest))
        for failure in result.failed:
            context.log.warning(f"alert not delivered, retried later: {failure}")
        return dg.SkipReason(
            f"{len(incidents)} incident(s) active, {len(result.messages)} message(s) queued, "
            f"{result.delivered} delivered, {len(result.failed)} not delivered"
        )

    return sensor
