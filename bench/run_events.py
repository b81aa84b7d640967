"""What a run's partitions cost Dagster, whatever the run fetches: a candle-shaped asset
(dynamic markets x years) materialized over N markets of one year in one ranged run, its
body doing nothing but (optionally) giving each partition its own metadata.

Five variants, alternating, each on a fresh PostgreSQL instance of the bench's own:
per-partition metadata (``add_asset_metadata(partition_key=)``) or none, and Dagster's
batched event writes (``DAGSTER_EVENT_BATCH_SIZE``, which market_data.defs turns on) or
one write per event; and the product's shape, batched writes and two partitioned checks
that log one evaluation per partition, as the candle checks do (defs/candles/evaluations.py).
Each variant runs in a subprocess (the batch size is read from the environment when events
are stored).

    python bench/run_events.py [MARKETS ...]     # default 500 1000 2500
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import scratch_database  # bench/, on sys.path as a script

CHILD = """
import sys, time, warnings
warnings.simplefilter("ignore")
import dagster as dg
from datetime import date
from market_data.defs.candles.partitions import candle_partitions
from market_data.defs.candles.evaluations import evaluation, latest_materializations

n, per, checks = int(sys.argv[1]), sys.argv[2] == "per", sys.argv[3] == "checks"
parts = candle_partitions("binance", "1d", date(2019, 1, 1))

@dg.asset(partitions_def=parts)
def candles(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    started = time.perf_counter()
    if per:
        for pk in context.partition_keys:
            context.add_asset_metadata({"rows_written": 1}, partition_key=pk)
    print(f"metadata {time.perf_counter() - started:.1f}", end=" ")
    return dg.MaterializeResult(metadata={"run_markets": n})

def partition_check(name):
    @dg.asset_check(asset=candles, name=name, partitions_def=parts)
    def check(context: dg.AssetCheckExecutionContext) -> None:
        op = context.op_execution_context
        keys = [str(k) for k in op.partition_keys]
        targets = latest_materializations(context.instance, candles.key, keys)
        for pk in keys:
            op.log_event(evaluation(dg.AssetCheckKey(candles.key, name), pk, True, targets=targets))
    return check

instance = dg.DagsterInstance.get()
keys = [f"X{i:05d}-USDT-SPOT:1d" for i in range(n)]
instance.add_dynamic_partitions("markets_binance_1d", keys)
tags = {"dagster/asset_partition_range_start": f"{keys[0]}|2026",
        "dagster/asset_partition_range_end": f"{keys[-1]}|2026"}
quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
started = time.perf_counter()
defs = [candles, *([partition_check("fresh"), partition_check("no_gaps")] if checks else [])]
assert dg.materialize(defs, instance=instance, tags=tags, run_config=quiet).success
print(f"run {time.perf_counter() - started:.1f}")
"""


def variant(markets: int, per: bool, batch: bool, checks: bool = False) -> str:
    with scratch_database("md_bench_events") as url, tempfile.TemporaryDirectory() as home:
        pg = url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        (Path(home) / "dagster.yaml").write_text(
            f"storage:\n  postgres:\n    postgres_url: {pg}\ntelemetry:\n  enabled: false\n"
        )
        env = {
            **os.environ,
            "DAGSTER_HOME": home,
            "DAGSTER_EVENT_BATCH_SIZE": "1000" if batch else "0",
        }
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(markets), "per" if per else "none",
             "checks" if checks else "-"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()


def main(sizes: list[int]) -> None:
    for n in sizes:
        for per in (True, False):
            for batch in (False, True):
                figures = variant(n, per, batch)
                print(f"{n} partitions, per-partition metadata {'yes' if per else 'no '}, "
                      f"batched writes {'yes' if batch else 'no '}: {figures} (s)")  # fmt: skip
        figures = variant(n, False, True, checks=True)
        print(f"{n} partitions, batched writes, two checks logging each partition: {figures} (s)")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [500, 1000, 2500])
