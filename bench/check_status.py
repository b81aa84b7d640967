"""What the status of a candle asset's partitioned checks costs each load of its page.

Open-source Dagster 1.13 stores no check status: every load of an asset's page recomputes
each partitioned check's status from its newest result per partition, and asks, for each
partition with a result, whether that partition exists: the market dimension being dynamic,
dagster-postgres answers with one query per key, and the year dimension walks its cron per
key. The product's instance (dagster.postgres.yaml, market_data/defs/storage.py) reads a
definition's keys once a second, and starts from the status it stored at the previous load
(a checkpoint), reading only what was stored since. Both event logs on one database with
pooled connections (as dagster-webserver sets them), the status computed as the webserver
does (`get_asset_check_state`, every check of the asset at once) on the candle asset's own
partitions definition, alternating, three times each; the product's without a checkpoint (the
first load after markets were added or removed) and from one, with NEW new results since:

    python bench/check_status.py [MARKETS] [YEARS] [CHECKS] [NEW]   # default 2358 2 2 500
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
from common import instance_on, scratch_database, timed  # bench/, on sys.path as a script
from dagster._core.events import DagsterEvent, DagsterEventType

from market_data.defs import storage
from market_data.defs.candles.partitions import candle_partitions
from market_data.defs.storage import MarketKeysCachedEventLogStorage

ROOT = Path(__file__).resolve().parents[1]
ASSET = dg.AssetKey(["candles", "binance", "1d"])
MARKETS_DEF = "markets_binance_1d"
CHECKS = ("no_gaps", "fresh", "consistent_timeframes")


def main(markets: int, years: int, checks: int, new: int) -> None:
    with scratch_database("md_bench_check_status") as url:
        tmp = Path(tempfile.mkdtemp(prefix="md-check-status-"))
        (tmp / "dagster").mkdir()
        (tmp / "product").mkdir()
        dagsters = instance_on(url, tmp / "dagster")  # `storage: postgres`
        os.environ["DAGSTER_POSTGRES_URL"] = url.replace("+psycopg:", "+psycopg2:")
        (tmp / "product" / "dagster.yaml").symlink_to(ROOT / "dagster.postgres.yaml")
        ours = dg.DagsterInstance.from_config(str(tmp / "product"))
        assert isinstance(ours.event_log_storage, MarketKeysCachedEventLogStorage)
        for instance in (dagsters, ours):  # pooled connections, as dagster-webserver sets them
            instance.optimize_for_webserver(
                statement_timeout=15000, pool_recycle=3600, max_overflow=20
            )

        keys = [f"M{i:04d}-USDT-SPOT:1d" for i in range(markets)]
        dagsters.add_dynamic_partitions(MARKETS_DEF, keys)
        first_year = date.today().year - years + 1
        year_keys = [str(first_year + y) for y in range(years)]
        parts = candle_partitions("binance", "1d", date(first_year, 1, 1))
        check_keys = [dg.AssetCheckKey(ASSET, name) for name in CHECKS[:checks]]
        t0 = time.perf_counter()
        for check in check_keys:
            for market in keys:
                for year in year_keys:
                    report(dagsters, check, f"{market}|{year}", True)
        results = markets * years * len(check_keys)
        print(f"{results} check results stored ({markets} markets x {years} years x "
              f"{len(check_keys)} checks) in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        with dagsters.event_log_storage.index_connection() as conn:
            conn.exec_driver_sql("ANALYZE")

        def status(instance: dg.DagsterInstance) -> object:
            with dg.partition_loading_context(dynamic_partitions_store=instance):
                states = instance.event_log_storage.get_asset_check_state(
                    [(key, parts) for key in check_keys]
                )
            return {
                (key, status): sorted(subset.subset_value.get_partition_keys())
                for key, state in states.items()
                for status, subset in state.subsets.items()
                if not subset.is_empty
            }

        def cold(instance: dg.DagsterInstance) -> object:  # as after markets changed
            instance.run_storage.set_cursor_values({storage.GENERATION_KEY: uuid.uuid4().hex})
            return status(instance)

        runs = itertools.count()

        def new_results() -> None:  # NEW results since the checkpoint
            run = f"bench-{next(runs)}"
            for market in keys[:new]:
                report(dagsters, check_keys[0], f"{market}|{year_keys[-1]}", False, run)

        storage.CHECKPOINT_EVERY_S = 0.0  # each load stores its checkpoint
        contenders = (
            ("dagster-postgres", dagsters, status),
            ("market-data, no checkpoint", ours, cold),
            (f"market-data, {new} new results", ours, status),
        )
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
        answers: dict[str, object] = {}
        status(ours)  # the first checkpoint
        for _ in range(3):
            for name, instance, load in contenders:
                if load is status and instance is ours:
                    new_results()
                _, s = timed(load, instance)
                seconds[name].append(s)
            answers = {name: status(instance) for name, instance, _ in contenders[:2]}
            assert answers["dagster-postgres"] == answers["market-data, no checkpoint"], (
                "the two statuses differ"
            )
        base = statistics.median(seconds["dagster-postgres"])
        for name, runs in seconds.items():
            mid = statistics.median(runs)
            print(f"{name:30} status of {len(check_keys)} checks: median {mid:.2f} s "
                  f"({', '.join(f'{s:.2f}' for s in runs)}); {mid / base:.2f} x dagster-postgres")  # fmt: skip
        dagsters.dispose()
        ours.dispose()


def report(
    instance: dg.DagsterInstance, check: dg.AssetCheckKey, key: str, passed: bool, run: str = ""
) -> None:
    """A check result, as run ``run`` logs it (a partition's results must differ in run)."""
    evaluation = dg.AssetCheckEvaluation(
        asset_key=ASSET, check_name=check.name, passed=passed, partition=key
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
        event_specific_data=evaluation,
        job_name="bench_check_status",
    )
    instance.report_dagster_event(event, run_id=run)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [2358, 2, 2, 500][len(args) :]))
