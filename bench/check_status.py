"""What the status of a candle asset's partitioned checks costs each load of its page.

Open-source Dagster 1.13 stores no check status: every load of an asset's page recomputes
each partitioned check's status from its newest result per partition, and asks, for each
partition with a result, whether that partition exists; the market dimension being dynamic,
dagster-postgres answers with one query per key (bench/ui.py: ~7 of the page's 8.5 s). The
product's instance (dagster.postgres.yaml) reads a definition's keys once a second instead
(market_data/defs/storage.py). Both event logs on one database with pooled connections (as
dagster-webserver sets them), the status computed as the webserver does
(`get_asset_check_state`, every check of the asset at once), alternating, three times each:

    python bench/check_status.py [MARKETS] [YEARS] [CHECKS]   # default 2358 2 2: bench/ui.py's 1d asset
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
from common import instance_on, scratch_database, timed  # bench/, on sys.path as a script

from market_data.defs.storage import MarketKeysCachedEventLogStorage

ROOT = Path(__file__).resolve().parents[1]
ASSET = dg.AssetKey(["candles", "binance", "1d"])
MARKETS_DEF = "markets_binance_1d"
CHECKS = ("no_gaps", "fresh", "consistent_timeframes")


def main(markets: int, years: int, checks: int) -> None:
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
        year_keys = [str(2026 - y) for y in range(years)][::-1]
        parts = dg.MultiPartitionsDefinition(
            {
                "market": dg.DynamicPartitionsDefinition(name=MARKETS_DEF),
                "year": dg.StaticPartitionsDefinition(year_keys),
            }
        )
        check_keys = [dg.AssetCheckKey(ASSET, name) for name in CHECKS[:checks]]
        t0 = time.perf_counter()
        for check in check_keys:
            for market in keys:
                for year in year_keys:
                    dagsters.report_runless_asset_event(
                        dg.AssetCheckEvaluation(
                            asset_key=ASSET, check_name=check.name, passed=True,
                            partition=f"{market}|{year}",
                        )
                    )  # fmt: skip
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
            return {k: sorted(str(s) for s in st.subsets.items()) for k, st in states.items()}

        seconds: dict[str, list[float]] = {"dagster-postgres": [], "market-data": []}
        answers = {}
        for _ in range(3):
            for name, instance in (("dagster-postgres", dagsters), ("market-data", ours)):
                answers[name], s = timed(status, instance)
                seconds[name].append(s)
        assert answers["dagster-postgres"] == answers["market-data"], "the two statuses differ"
        base = statistics.median(seconds["dagster-postgres"])
        for name, runs in seconds.items():
            mid = statistics.median(runs)
            print(f"{name:17} status of {len(check_keys)} checks: median {mid:.2f} s "
                  f"({', '.join(f'{s:.2f}' for s in runs)}); {mid / base:.2f} x dagster-postgres")  # fmt: skip
        dagsters.dispose()
        ours.dispose()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [2358, 2, 2][len(args) :]))
