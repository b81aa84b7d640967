"""The runs the command line launches: backfills and repairs (the same materializations the
UI launches, ranged runs of a market's years, each followed by the gap check) and
check-only runs, recorded in the Dagster instance (DAGSTER_HOME)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.checks import fresh_check, gap_check, gap_check_job
from market_data.defs.candles.partitions import (
    HOST_TAG,
    INVOCATION_TAG,
    SOURCE_TAG,
    market_partitions,
    range_tags,
)
from market_data.defs.runs import reap_dead_runs, this_host, wait_for_pool
from market_data.domain.backfills import PAGES_PER_RUN, YEAR_MS, history_pages
from market_data.domain.calendar import ms_day, year_keys
from market_data.domain.watchlist import Market, Watchlist
from market_data.exchanges.venues import venue
from market_data.store.candles import CandleStore
from market_data.store.series import Series

#: the job of the runs the command line launches (dg.materialize's own name, as before)
CLI_JOB = "__ephemeral_asset_job__"


@dataclass(frozen=True)
class RunPlan:
    market: Market
    years: list[str]  # year partition keys, in order
    not_before: date
    not_after: date | None

    @property
    def tags(self) -> dict[str, str]:
        return range_tags((self.market.key, self.years[0]), (self.market.key, self.years[-1]))


def plan(
    markets: list[Market],
    start: date,
    end: date | None,
    resume_from: Callable[[Market], date | None] | None = None,
) -> list[RunPlan]:
    """Ranged runs per market over its years (a partition each), consecutive years
    together while their pages add up to at most ``PAGES_PER_RUN`` (as the watchlist's
    backfills: a run's own seconds stay small beside its fetching, and the years' archive
    files download together); with ``resume_from``, each market starts at the day its
    newest stored candle falls on."""
    today = datetime.now(UTC).date()
    plans = []
    for market in markets:
        first = start
        if resume_from is not None:
            first = max(start, resume_from(market) or start)
        # --end is exclusive: a run for the year it falls on only if that year has days in
        years = year_keys(first, min(end - timedelta(days=1), today) if end else today)
        year_pages = history_pages(
            0, YEAR_MS, market.timeframe.ms, venue(market.exchange).page_limit
        )
        per_run = max(1, PAGES_PER_RUN // year_pages)
        plans += [
            RunPlan(market, years[i : i + per_run], first, end)
            for i in range(0, len(years), per_run)
        ]
    return plans


def repair_plan(market: Market, months: list[str]) -> list[RunPlan]:
    """Runs over only the years of ``months`` (those with open gaps), one each, fetching
    from the first such month (a repair run fetches only the open gaps)."""
    firsts: dict[str, str] = {}
    for month in sorted(months):
        firsts.setdefault(month[:4], month)
    return [
        RunPlan(market, [year], date.fromisoformat(first), None) for year, first in firsts.items()
    ]


def newest_stored_day(store: CandleStore) -> Callable[[Market], date | None]:
    def newest(market: Market) -> date | None:
        last = store.last_ts(Series.of(market))
        return None if last is None else ms_day(last)

    return newest


class Interrupts:
    """Ctrl-C and SIGTERM while the command runs: remembered (the signal handler only sets a
    flag), so the main thread can ask the current run to stop, wait for it to end CANCELED
    and exit; a second signal exits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __enter__(self) -> Interrupts:
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, _: object) -> None:
        if self.signum is not None:
            raise SystemExit(128 + signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)


class _Worker(threading.Thread):
    """A run executed off the main thread: Dagster then leaves the signal handlers to us."""

    def __init__(self, work: Callable[[], dg.ExecuteInProcessResult]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: dg.ExecuteInProcessResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as e:  # handed to the main thread
            self.error = e


def _cancel(instance: dg.DagsterInstance, invocation: str) -> None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={INVOCATION_TAG: invocation}))
    for run in runs:
        if run.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING):
            instance.report_run_canceling(run, message="Interrupted on the command line.")


def summary(result: dg.ExecuteInProcessResult, asset: dg.AssetsDefinition) -> str:
    """One line of a run: its partitions' figures summed, and its own."""
    parts = [
        {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node(asset.op.name)
    ]
    total = {k: sum(p[k] for p in parts) for k in ("rows_written", "candles_fetched", "absent")}
    run = parts[0] if parts else {"run_requests": 0, "run_seconds": 0.0}
    return (
        f"{total['rows_written']} rows written, {total['candles_fetched']} fetched, "
        f"{run['run_requests']} requests, {total['absent']} absent ({run['run_seconds']:.1f}s)"
    )


def checks(exchange: str, timeframe: str, watchlist: Watchlist) -> list[dg.AssetChecksDefinition]:
    """The checks that follow every run that writes (a dry run records nothing)."""
    return [gap_check(exchange, timeframe, watchlist), fresh_check(exchange, timeframe, watchlist)]


class BriefFormatter(logging.Formatter):
    """A run's log line as the command line shows it: the first line of each message. A
    failure's reason is printed by `execute` after the run; its Python traceback stays in the
    run's logs in the UI (and `--verbose` prints it here)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        first = record.getMessage().strip().splitlines()
        record.message = first[0] if first else ""
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return ""

    def formatStack(self, stack_info: str) -> str:
        return ""


@dg.logger(
    {"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="The command line's console: a line per event, no Python tracebacks.",
)
def brief_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(init_context.logger_config["log_level"].upper())
    log = logging.Logger("market_data.cli_run", level=level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(BriefFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    return log


def _materialize(
    assets: list[Any],
    instance: dg.DagsterInstance,
    resources: dict[str, dg.ConfigurableResource],
    tags: dict[str, str],
    run_config: dict[str, Any],
    verbose: bool,
) -> dg.ExecuteInProcessResult:
    """dg.materialize, with the brief console unless ``verbose`` (Dagster's own console, its
    tracebacks included). materialize() takes no loggers, so the job is built as it builds
    it: one asset job over ``assets``, in Definitions that give the console logger."""
    defs = dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job(CLI_JOB)],
        resources=resources,
        loggers={} if verbose else {"console": brief_console_logger},
    )
    return defs.resolve_job_def(CLI_JOB).execute_in_process(
        run_config={**run_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}},
        instance=instance,
        tags=tags,
        raise_on_error=False,
    )


def failure_reasons(result: dg.ExecuteInProcessResult) -> list[str]:
    """What failed, as the run's step failures say it (first line of each)."""
    reasons = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        described = data.user_failure_data.description if data.user_failure_data else None
        text = described or (data.error.message if data.error else "unknown error")
        reasons.append(f"{event.step_key}: {text.strip().splitlines()[0]}")
    return reasons


@dataclass
class Outcome:
    ok: bool = True
    #: the signal that interrupted the command, if one did
    interrupted: int | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted
        return 0 if self.ok else 1


def execute(
    plans: list[RunPlan],
    watchlist: Watchlist,
    resources: dict[str, dg.ConfigurableResource],
    instance: dg.DagsterInstance,
    echo: Callable[[str], None],
    config: dict[str, Any] | None = None,
    verbose: bool = False,
) -> Outcome:
    """Run the plans in order. Before each run, runs of this machine left STARTED by a process
    that is gone are ended (their pool slots freed) and the exchange's pool is waited for.
    Ctrl-C / SIGTERM cancel the run in progress (pages written are kept) and stop. A run's
    log shows on stderr, a line per event without Python tracebacks unless ``verbose``."""
    outcome = Outcome()
    by_asset: dict[tuple[str, str], dg.AssetsDefinition] = {}
    invocation = uuid.uuid4().hex
    with Interrupts() as interrupts:
        for i, p in enumerate(plans, 1):
            exchange, timeframe = p.market.exchange, p.market.timeframe.code
            if (exchange, timeframe) not in by_asset:
                by_asset[exchange, timeframe] = candle_asset(exchange, timeframe, watchlist)
            reap_dead_runs(instance, echo)
            wait_for_pool(instance, f"exchange:{exchange}", echo, _stoppable_sleep(interrupts))
            if interrupts.signum is not None:
                break
            _ensure_partition(instance, p.market)
            span = p.years[0] if len(p.years) == 1 else f"{p.years[0]}..{p.years[-1]}"
            echo(f"[{i}/{len(plans)}] {exchange} {p.market.key} {span}")
            run_config = {
                "not_before": p.not_before.isoformat(),
                "not_after": p.not_after.isoformat() if p.not_after else None,
                **(config or {}),
            }
            asset = by_asset[exchange, timeframe]
            check = gap_check(exchange, timeframe, watchlist)
            worker = _Worker(
                lambda asset=asset, run_config=run_config, p=p, check=check: _materialize(
                    # the gap check follows every run that writes (a dry run records nothing)
                    [asset, *([] if run_config.get("dry_run") else [check])],
                    instance=instance,
                    resources=resources,
                    tags={**p.tags, **cli_run_tags(invocation)},
                    run_config={"ops": {asset.op.name: {"config": run_config}}},
                    verbose=verbose,
                )
            )
            worker.start()
            canceled = False
            while worker.is_alive():
                worker.join(0.2)
                if interrupts.signum is not None and not canceled:
                    echo("      interrupted: stopping the run (the pages written are kept)")
                    _cancel(instance, invocation)
                    canceled = True
            if worker.error is not None:
                raise worker.error
            result = worker.result
            assert result is not None
            if interrupts.signum is not None:
                echo(f"      CANCELED (run {result.run_id}); run the same command again to go on")
                outcome.interrupted = interrupts.signum
                break
            if not result.success:
                outcome.ok = False
                echo(f"      FAILED (run {result.run_id}):")
                for reason in failure_reasons(result):
                    echo(f"        {reason}")
                continue
            echo(f"      {summary(result, asset)} (run {result.run_id[:8]})")
    if interrupts.signum is not None:
        outcome.interrupted = interrupts.signum
    return outcome


def _stoppable_sleep(interrupts: Interrupts) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if interrupts.signum is not None:
            raise SystemExit(interrupts.exit_code)
        time.sleep(seconds)

    return sleep


def cli_run_tags(invocation: str) -> dict[str, str]:
    """Tags of a command-line run: where its process runs (so a dead one can be found), no
    automatic retry (the user reruns the command), and which invocation launched it."""
    return {
        SOURCE_TAG: "cli",
        HOST_TAG: this_host(),
        "dagster/max_retries": "0",
        INVOCATION_TAG: invocation,
    }


def check_gaps(
    market: Market,
    watchlist: Watchlist,
    resources: dict[str, dg.ConfigurableResource],
    instance: dg.DagsterInstance,
) -> list[dg.AssetCheckEvaluation]:
    """The gap check over every year of one market: a check-only Dagster run, one
    evaluation per year."""
    exchange, timeframe = market.exchange, market.timeframe.code
    years = year_keys(market.start, datetime.now(UTC).date())
    job = gap_check_job(exchange, timeframe, watchlist)
    defs = dg.Definitions(
        assets=[candle_asset(exchange, timeframe, watchlist)],
        asset_checks=[gap_check(exchange, timeframe, watchlist)],
        jobs=[job],
        resources=resources,
    )
    _ensure_partition(instance, market)
    tags = range_tags((market.key, years[0]), (market.key, years[-1]))
    result = defs.resolve_job_def(job.name).execute_in_process(
        instance=instance, tags={**tags, **cli_run_tags(uuid.uuid4().hex)}, raise_on_error=False
    )
    return result.get_asset_check_evaluations()


def _ensure_partition(instance: dg.DagsterInstance, market: Market) -> None:
    parts = market_partitions(market.exchange, market.timeframe.code).name
    if not instance.has_dynamic_partition(parts, market.key):
        instance.add_dynamic_partitions(parts, [market.key])
