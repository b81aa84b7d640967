"""The Dagster UI with a whole exchange and thousands of runs: how long the candle asset's
page and its partitions view take in a real browser.

The deployment of bench/scale.py (the simulator's --extra-pairs as Binance's ~2,500 spot
and USD-M markets, every USDT market at 6 timeframes from 2025-12-01, the Dagster instance
and the candle store on PostgreSQL databases of the bench's own), a `dagster-webserver`
process on that instance, and headless Chromium (Playwright) loading
`/assets/candles/binance/1d` (the asset page) and its `?view=partitions` (the partitions
view). The history, made before each measurement:

- real runs, in process: the instrument catalog, the watchlist sensor's ticks (every
  market's partitions), the watchlist's backfill runs of the 1d asset (every market, both
  years, with the checks a backfill run carries: a result per partition of `no_gaps`,
  `fresh`), and five freshness runs of 10 markets each (a freshness run of up to 200
  markets carries a result per partition of both checks);
- then copies of those freshness runs until the instance holds RUNS runs: each copy is a
  run of its own (new run id, the original's tags and status) with the original's events
  stored again, every check result naming the copy's own materialization, as the
  originals do. A copy costs a few milliseconds instead of a run's second, so 5,000 runs
  take minutes (written two at a time, through a pooled connection); each copy adds 10 materializations and 20 check results of the 1d asset:
  more of both than the asset's real history holds after 5,000 runs of a deployment (most
  runs are other timeframes'), so the figures are an upper bound.

Two webservers read that one instance database: one with Dagster's own PostgreSQL
storage (`storage: postgres`), one with the product's instance file (dagster.postgres.yaml:
market partition keys checked in memory, market_data/defs/storage.py); each size is
measured on both, in alternating order.

Each load is timed from navigation to the content (the asset page: its partition counts;
the partitions view: the list of markets) and to the network going quiet; the slowest
GraphQL request of each load is named. Three loads each, at each history size, after an
ANALYZE of the instance's database (what autovacuum does on its own; this machine's
PostgreSQL has it off).

    python bench/ui.py [BASES] [RUNS]     # default 1667 bases (~2,500 markets), 5,000 runs
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import ccxt
import dagster as dg
import sqlalchemy as sa
import yaml
from common import (  # bench/, on sys.path as a script
    free_port,
    instance_on,
    scratch_database,
    simulator,
    timed,
)

# copies of real runs: their events are stored again through the instance's storage (no
# public API writes a run's history, and a copy must be a run of its own to count)
from dagster._core.events import BATCH_WRITABLE_EVENTS
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id
from dagster_shared.record import copy
from deployment import wait_up  # bench/, on sys.path as a script
from playwright.sync_api import Page

from market_data.defs.candles.assets import candle_asset
from market_data.defs.candles.checks import fresh_check, gap_check
from market_data.defs.candles.evaluations import latest_materializations
from market_data.defs.candles.partitions import FRESHNESS_TAG, RANGE_END, RANGE_START
from market_data.defs.candles.sensors import watchlist_sensor
from market_data.defs.instruments.assets import instruments_asset
from market_data.defs.resources import STORE_KEY, build_resources
from market_data.domain.watchlist import parse_watchlist

warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # the test suite's browser (Playwright with Debian's chromium)
from market_data_tests.browser import browser_page  # noqa: E402

BIN = Path(sys.executable).parent
START = "2026-11-20T12:00:00+00:00"
TODAY = date(2026, 11, 20)
TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h", "1d"]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
ASSET = dg.AssetKey(["candles", "binance", "1d"])
FRESHNESS_MARKETS = 10
COPIERS = 2
LOADS = 3


def replicate(instance: dg.DagsterInstance, run_id: str) -> None:
    """One more run like ``run_id``: its events stored again under a new run id, each check
    result naming the new run's materialization of its partition."""
    run = instance.get_run_by_id(run_id)
    assert isinstance(run, DagsterRun)
    new_id = make_new_run_id()
    instance.add_run(run._replace(run_id=new_id))
    entries = instance.all_logs(run_id)
    shift = time.time() - entries[0].timestamp
    storage = instance.event_log_storage
    batch: list[Any] = []
    targets: dict[str, Any] = {}

    def flush() -> None:
        if batch:
            storage.store_event_batch(list(batch))
            batch.clear()

    partitions = {
        e.dagster_event.partition
        for e in entries
        if e.dagster_event
        and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }
    for entry in entries:
        entry = entry._replace(run_id=new_id, timestamp=entry.timestamp + shift)
        event = entry.dagster_event
        if event is not None and event.event_type in BATCH_WRITABLE_EVENTS:
            if batch and batch[0].dagster_event.event_type != event.event_type:
                flush()
            batch.append(entry)
            continue
        flush()
        if event is not None and event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not targets:
                targets = latest_materializations(instance, ASSET, partitions)
            evaluation = copy(
                evaluation,
                target_materialization_data=targets[evaluation.partition],
            )
            entry = entry._replace(dagster_event=event._replace(event_specific_data=evaluation))
        instance.handle_new_event(entry)
    flush()


def load(page: Page, url: str, ready: str | re.Pattern[str]) -> tuple[float, float, str]:
    """Seconds to the content ``ready`` and to a quiet network; the slowest GraphQL
    request."""
    slowest: list[tuple[float, str]] = []

    def finished(request: Any) -> None:
        if "graphql" in request.url:
            t = request.timing
            name = (request.post_data_json or {}).get("operationName", "?")
            slowest.append(((t["responseEnd"] - t["requestStart"]) / 1000, name))

    page.on("requestfinished", finished)
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.get_by_text(ready).first.wait_for(timeout=180_000)
    content = time.perf_counter() - started
    page.wait_for_load_state("networkidle", timeout=180_000)
    quiet = time.perf_counter() - started
    page.remove_listener("requestfinished", finished)
    seconds, name = max(slowest, default=(0.0, "-"))
    return content, quiet, f"{name} {seconds:.1f} s"


def analyze(database: str) -> None:
    """Fresh planner statistics, as PostgreSQL's autovacuum keeps them (this machine's server
    runs with autovacuum off: without them the check statuses' join is planned for one row
    and takes 25-45 s with 4,716 partitions instead of 0.25 s)."""
    engine = sa.create_engine(database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
    engine.dispose()


def measure(page: Page, url: str, runs: int, shots: Path, name: str) -> None:
    for view, path, ready in (
        ("asset page", "/assets/candles/binance/1d", "Latest check results"),
        (
            "partitions view",
            "/assets/candles/binance/1d?view=partitions",
            re.compile(r"Materialized \([1-9]"),
        ),
    ):
        timings = [load(page, f"{url}{path}", ready) for _ in range(LOADS)]
        page.screenshot(path=str(shots / f"{name}_{view.replace(' ', '_')}_{runs}.png"))
        content = statistics.median(t[0] for t in timings)
        quiet = statistics.median(t[1] for t in timings)
        print(f"{name}: {runs} runs: {view}: content {content:.1f} s, network quiet {quiet:.1f} s "
              f"(median of {LOADS}; loads {', '.join(f'{t[0]:.1f}' for t in timings)}); "
              f"slowest request {max(timings, key=lambda t: t[1])[2]}", flush=True)  # fmt: skip


def main(bases: int, target_runs: int) -> None:
    shots = Path(tempfile.mkdtemp(prefix="md-bench-ui-"))
    with (
        simulator(START, "--extra-pairs", str(bases)) as url,
        scratch_database("md_bench_ui_store") as store_url,
        scratch_database("md_bench_ui_dagster") as dagster_url,
        tempfile.TemporaryDirectory() as home,
    ):
        os.environ["DATABASE_URL"] = store_url
        data = {"start": "2025-12-01", "exchanges": {"binance": {
            "base_url": url, "markets": [],
            "select": [{"quote": "USDT", "timeframes": TIMEFRAMES}],
        }}}  # fmt: skip
        config = Path(home) / "watchlist.yaml"
        config.write_text(yaml.safe_dump(data))
        wl = parse_watchlist(data, frozenset(ccxt.exchanges), TODAY)
        instance = instance_on(dagster_url, Path(home))
        resources = build_resources(wl)
        dg.materialize([instruments_asset("binance")], instance=instance, resources=resources,
                       run_config=QUIET)  # fmt: skip
        watch, cursor, planned = watchlist_sensor(wl), None, []
        while True:
            with dg.build_sensor_context(
                instance=instance, resources={STORE_KEY: resources[STORE_KEY]}, cursor=cursor
            ) as ctx:
                result = watch(ctx)
            assert isinstance(result, dg.SensorResult)
            for req in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            planned += result.run_requests or []
            if not result.run_requests:
                break
            cursor = result.cursor
        markets = list(instance.get_dynamic_partitions("markets_binance_1d"))
        print(f"{len(markets)} markets x {len(TIMEFRAMES)} timeframes; candles/binance/1d has "
              f"{len(markets) * 2:,} partitions", flush=True)  # fmt: skip

        # two webservers on the one instance database: Dagster's own PostgreSQL storage (the
        # home above) and the product's instance file (dagster.postgres.yaml)
        product = Path(home) / "product"
        product.mkdir()
        (product / "dagster.yaml").symlink_to(ROOT / "dagster.postgres.yaml")
        pg = dagster_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
        servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        for name, dagster_home in (("dagster-postgres", home), ("market-data", str(product))):
            port = free_port()
            env = {**os.environ, "DAGSTER_HOME": dagster_home, "MARKET_DATA_CONFIG": str(config),
                   "DAGSTER_POSTGRES_URL": pg}  # fmt: skip
            log = open(shots / f"webserver-{name}.log", "ab")  # noqa: SIM115 (the process's)
            servers[name] = (subprocess.Popen(
                [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                 "-p", str(port)],
                cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
            ), f"http://127.0.0.1:{port}")  # fmt: skip
        try:
            asset = candle_asset("binance", "1d", wl)
            checks = [gap_check("binance", "1d", wl), fresh_check("binance", "1d", wl)]

            def run(tags: dict[str, str]) -> str:
                result = dg.materialize([asset, *checks], instance=instance, resources=resources,
                                        tags=tags, run_config=QUIET)  # fmt: skip
                return result.run_id

            daily = [r for r in planned if r.tags[RANGE_START].split("|")[0].endswith(":1d")]
            _, seconds = timed(
                lambda: [run({t: r.tags[t] for t in (RANGE_START, RANGE_END)}) for r in daily]
            )
            print(f"the 1d backfill: {len(daily)} runs in {seconds:.0f} s", flush=True)
            slices = range(0, 5 * FRESHNESS_MARKETS, FRESHNESS_MARKETS)
            pool = [
                run({RANGE_START: f"{markets[i]}|2026", FRESHNESS_TAG: "binance",
                     RANGE_END: f"{markets[i + FRESHNESS_MARKETS - 1]}|2026"})
                for i in slices
            ]  # fmt: skip
            # copies are written through a pooled connection (as the webserver's), not one
            # connection per statement (as a run's)
            copier = instance_on(dagster_url, Path(home))
            copier.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=4)
            copiers = ThreadPoolExecutor(COPIERS)
            for _, web in servers.values():
                wait_up(web)

            def measure_both(page: Page, runs: int) -> None:
                order = list(servers) if runs % 2 else list(servers)[::-1]  # alternating
                for name in order:
                    measure(page, servers[name][1], runs, shots, name)

            with browser_page(shots) as page:
                checkpoints = sorted({n for n in (1_000, 2_500, target_runs) if n <= target_runs})
                runs = len(instance.get_run_ids())
                analyze(dagster_url)
                measure_both(page, runs)
                for checkpoint in checkpoints:
                    _, seconds = timed(
                        lambda n=checkpoint - runs: list(copiers.map(
                            lambda i: replicate(copier, pool[i % len(pool)]), range(n)
                        ))
                    )  # fmt: skip
                    made, runs = checkpoint - runs, len(instance.get_run_ids())
                    print(f"{made} copies of freshness runs in {seconds:.0f} s", flush=True)
                    analyze(dagster_url)
                    measure_both(page, runs)
            print(f"screenshots and the webservers' logs: {shots}")
        finally:
            for server, _ in servers.values():
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(60)
            instance.dispose()


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 1667,
        int(sys.argv[2]) if len(sys.argv) > 2 else 5_000,
    )
