"""Composite candles across exchanges (VWAP with sources), the divergence check, the
composites sensor and the consistent_timeframes check, through Dagster against real
SQLite/PostgreSQL stores and, where candles are fetched, the simulator over HTTP."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import ccxt
import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from market_data.config import timeframes_of
from market_data.defs.candles.checks import consistency_check
from market_data.defs.candles.consistency import consistency_requests, consistency_sensor
from market_data.defs.candles.partitions import BACKFILL_TAG, RANGE_END, RANGE_START
from market_data.defs.composite.assets import composite_asset
from market_data.defs.composite.checks import divergence_check
from market_data.defs.composite.sensors import composites_sensor
from market_data.defs.resources import STORE_KEY, CandleStoreResource
from market_data.domain.candles import CandlePage
from market_data.domain.composite import CompositeMarket, Source
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import Watchlist, parse_watchlist
from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series
from market_data_tests.candle_harness import Harness
from market_data_tests.candle_harness import watchlist as one_exchange
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import add_markets, admin, cli, cli_env

MIN, HOUR = 60_000, 3_600_000
T0 = 1_793_491_200_000  # 2026-11-01 00:00 UTC
MONTH = "2026-11-01"
#: the exchanges of the documented example, each with its own market of the composite
SOURCES = {"binance": "BTC-USDT-SPOT", "coinbase": "BTC-USD-SPOT", "kraken": "BTC-USD-SPOT"}


def three_exchanges(url: str = "http://127.0.0.1:1", minimum: int = 0, **cross: Any) -> Watchlist:
    """Binance (BTC/USDT, counted as USD), Coinbase and Kraken (BTC/USD) at 1m and 1h, and
    the composite BTC-USD-SPOT."""
    exchanges = {
        name: {"base_url": url if name == "binance" else f"{url}/{name}",
               "markets": [f"{symbol}-1m", f"{symbol}-1h"], "step_retries": 0}
        for name, symbol in SOURCES.items()
    }  # fmt: skip
    data = {
        "start": MONTH,
        "exchanges": exchanges,
        "cross_exchange": {"symbols": ["BTC-USD-SPOT"], "timeframes": ["1m", "1h"],
                           "min_exchanges_required": minimum,
                           "quote_equivalents": {"USD": ["USDT"]}, **cross},
    }  # fmt: skip
    return parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)


class Composite:
    """The composite asset and its check on an ephemeral instance whose candle assets watch
    the watchlist's markets."""

    def __init__(self, wl: Watchlist, store_url: str) -> None:
        self.wl = wl
        self.instance = dg.DagsterInstance.ephemeral()
        for ex in wl.exchanges:
            keys = [m.key for m in wl.markets if m.exchange == ex.name]
            add_markets(self.instance, ex.name, keys)
        self.asset = composite_asset(wl)
        self.check = divergence_check(wl)
        self.resources = {STORE_KEY: CandleStoreResource(database_url=store_url)}
        self.store = CandleStore(store_url)

    def run(self, key: str) -> tuple[dict[str, Any], dg.AssetCheckEvaluation]:
        """Materialize one partition with its check: its metadata and the check's result."""
        result = dg.materialize(
            [self.asset, self.check], instance=self.instance, resources=self.resources,
            partition_key=key,
        )  # fmt: skip
        (mat,) = result.asset_materializations_for_node(self.asset.op.name)
        (evaluation,) = result.get_asset_check_evaluations()
        return {k: v.value for k, v in mat.metadata.items()}, evaluation

    def rows(self, timeframe: str = "1m") -> list[dict[str, Any]]:
        market = CompositeMarket("BTC-USD-SPOT", Timeframe.parse(timeframe))
        return self.store.composite.read(market, 0, 2**62)


def write(store: CandleStore, exchange: str, rows: list[tuple[int, float, float]]) -> None:
    """1m candles (open time, close, volume) of ``exchange``'s source market; open, high and
    low are close -10, +20, -30."""
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([[c - 10, c + 20, c - 30, c, v] for _, c, v in rows], dtype=np.float64)
    symbol = SOURCES[exchange]
    page = CandlePage(f"{symbol}:1m", MIN, int(ts.min()), int(ts.max()) + MIN, ts, values)
    store.write_page(Series(exchange, symbol, "1m"), page)


def test_the_documented_example(store_url: str) -> None:
    """Binance close 50100 vol 120.5, Coinbase 50050 vol 95.2, Kraken 50075 vol 67.8. The
    volume-weighted close of these is 14,196,895 / 283.5 = 50077.23 (the older tool's
    documentation says 50082.14, which no weighting of these numbers gives); volume 283.5."""
    c = Composite(three_exchanges(), store_url)
    for exchange, close, volume in (
        ("binance", 50100.0, 120.5), ("coinbase", 50050.0, 95.2), ("kraken", 50075.0, 67.8)
    ):  # fmt: skip
        write(c.store, exchange, [(T0, close, volume)])

    meta, check = c.run(f"BTC-USD-SPOT:1m|{MONTH}")

    (row,) = c.rows()
    assert round(row["close"], 2) == 50077.23
    assert row["close"] == pytest.approx(
        (50100 * 120.5 + 50050 * 95.2 + 50075 * 67.8) / 283.5, rel=1e-12
    )
    assert row["volume"] == pytest.approx(283.5, rel=1e-12)
    assert round(row["open"], 2) == 50067.23 and round(row["high"], 2) == 50097.23
    assert (row["max_high"], row["min_low"]) == (50120.0, 50020.0)  # the plain extremes
    assert (row["source_count"], row["sources"]) == (3, "binance,coinbase,kraken")
    assert meta["timestamps"] == 1 and meta["rows_changed"] == 1
    assert meta["sources"] == "binance:BTC-USDT-SPOT, coinbase:BTC-USD-SPOT, kraken:BTC-USD-SPOT"
    # within 1% of the composite close: the check passes
    assert check.passed, check.description
    # idempotent: a rerun changes nothing
    again, _ = c.run(f"BTC-USD-SPOT:1m|{MONTH}")
    assert again["rows_changed"] == 0 and c.rows() == [row]


@pytest.mark.parametrize(
    ("minimum", "emitted", "below"),
    [(0, [T0], 1), (2, [T0, T0 + MIN], 0), (3, [T0], 1)],
)
def test_min_exchanges_required_with_one_exchange_missing_a_timestamp(
    store_url: str, minimum: int, emitted: list[int], below: int
) -> None:
    c = Composite(three_exchanges(minimum=minimum), store_url)
    write(c.store, "binance", [(T0, 100.0, 1.0), (T0 + MIN, 101.0, 3.0)])
    write(c.store, "coinbase", [(T0, 102.0, 1.0)])  # nothing at T0 + 1 min
    write(c.store, "kraken", [(T0, 101.0, 2.0), (T0 + MIN, 105.0, 1.0)])

    meta, _ = c.run(f"BTC-USD-SPOT:1m|{MONTH}")

    rows = c.rows()
    assert [r["ts"] for r in rows] == emitted
    assert meta["timestamps"] == len(emitted) and meta["below_minimum"] == below
    assert meta["min_exchanges_required"] == (minimum or 3)
    assert (rows[0]["sources"], rows[0]["source_count"]) == ("binance,coinbase,kraken", 3)
    if len(emitted) == 2:
        assert (rows[1]["sources"], rows[1]["source_count"]) == ("binance,kraken", 2)
        assert rows[1]["close"] == pytest.approx((101 * 3 + 105 * 1) / 4)
        assert rows[1]["volume"] == 4.0


def test_raising_the_minimum_removes_what_it_no_longer_allows(store_url: str) -> None:
    write_rows = {"binance": [(T0, 100.0, 1.0), (T0 + MIN, 101.0, 3.0)], "kraken": [(T0, 101.0, 2.0), (T0 + MIN, 105.0, 1.0)],
                  "coinbase": [(T0, 102.0, 1.0)]}  # fmt: skip
    lenient = Composite(three_exchanges(minimum=2), store_url)
    for exchange, rows in write_rows.items():
        write(lenient.store, exchange, rows)
    lenient.run(f"BTC-USD-SPOT:1m|{MONTH}")
    strict = Composite(three_exchanges(minimum=3), store_url)
    meta, _ = strict.run(f"BTC-USD-SPOT:1m|{MONTH}")
    assert [r["ts"] for r in strict.rows()] == [T0] and meta["rows_changed"] == 1


def test_divergence_flags_the_exchange_whose_prices_are_shifted(
    sim: RunningSimulator, store_url: str
) -> None:
    """Kraken's prices moved 2% in the simulator: after each exchange's candle asset has
    fetched November's 1h candles, the composite's divergence check names Kraken, and only
    Kraken (the composite includes it, so it sits ~1.3% away; the others ~0.7%)."""
    admin(f"{sim.url}/kraken", "faults", {"price_offset_pct": 2.0})
    try:
        wl = three_exchanges(sim.url, minimum=2)
        c = Composite(wl, store_url)
        for ex in wl.exchanges:
            markets = [f"{SOURCES[ex.name]}-1h"]
            h = Harness(one_exchange(sim.url, markets, MONTH, ex.name), store_url, c.instance)
            assert h.run(f"{SOURCES[ex.name]}:1h|2026").success  # from the start: November
    finally:
        admin(f"{sim.url}/kraken", "faults", {"price_offset_pct": 0.0})

    meta, check = c.run(f"BTC-USD-SPOT:1h|{MONTH}")

    assert meta["timestamps"] > 400 and meta["below_minimum"] == 0
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    found = {k: v.value for k, v in check.metadata.items()}
    assert found["divergent_by_exchange"] == {"kraken": meta["timestamps"]}  # every candle
    assert 1.0 < found["largest_deviation_pct"] < 2.0
    assert "largest kraken" in check.description and "| kraken |" in found["first_divergences"]
    assert found["stale_sources"] == {}


def test_a_source_behind_the_others_is_reported_stale(store_url: str) -> None:
    c = Composite(three_exchanges(minimum=2), store_url)
    for exchange in ("binance", "coinbase"):
        write(c.store, exchange, [(T0 + i * MIN, 100.0, 1.0) for i in range(30)])
    write(c.store, "kraken", [(T0 + i * MIN, 100.0, 1.0) for i in range(10)])  # 20 min behind
    _, check = c.run(f"BTC-USD-SPOT:1m|{MONTH}")
    assert not check.passed
    assert check.description == "stale: kraken (newest 2026-11-01 00:09)"
    assert {k: v.value for k, v in check.metadata.items()}["divergent_candles"] == 0


def test_composites_follow_their_sources_through_the_sensor(tmp_path: Path) -> None:
    """Every candle materialization (whatever launched it) brings the composite partitions
    its market feeds up to date: one run per composite market over the months touched."""
    wl = three_exchanges()
    instance = dg.DagsterInstance.ephemeral()
    sensor = composites_sensor(wl)

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, cursor=cursor) as ctx:
            return sensor(ctx)

    def materialized(
        exchange: str, market: str, written: tuple[int, int] | None, prefix: str = ""
    ) -> None:
        """A materialization of the year 2026 of ``market`` that wrote ``written`` (first and
        last candle; None: nothing); ``prefix`` "run_": the run's span only (a run too large
        for per-partition figures)."""
        names = (f"{prefix}written_first", f"{prefix}written_last")
        span = dict(zip(names, written or (), strict=False))
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=["candles", exchange, market.rpartition(":")[2]],
                partition=f"{market}|2026",
                metadata={k: dg.MetadataValue.timestamp(v / 1000) for k, v in span.items()},
            )
        )

    assert tick(None).run_requests == []
    materialized("binance", "BTC-USDT-SPOT:1h", (T0 - 20 * 24 * HOUR, T0 - HOUR))  # October
    materialized("kraken", "BTC-USD-SPOT:1h", (T0, T0 + HOUR))
    materialized("kraken", "ETH-USD-SPOT:1h", (T0, T0 + HOUR))  # feeds no composite
    materialized("coinbase", "BTC-USD-SPOT:1h", None)  # wrote nothing: nothing to recompute
    first = tick(None)
    (request,) = first.run_requests
    assert request.asset_selection == [dg.AssetKey(["composite", "candles"])]
    assert request.tags["dagster/asset_partition_range_start"] == "BTC-USD-SPOT:1h|2026-10-01"
    assert request.tags["dagster/asset_partition_range_end"] == "BTC-USD-SPOT:1h|2026-11-01"
    # nothing new: nothing requested; a new materialization: its composite again
    assert tick(first.cursor).run_requests == []
    materialized("coinbase", "BTC-USD-SPOT:1m", (T0, T0 + MIN), prefix="run_")
    (again,) = tick(first.cursor).run_requests
    assert again.tags["dagster/asset_partition_range_start"] == "BTC-USD-SPOT:1m|2026-11-01"
    assert again.tags["dagster/asset_partition_range_end"] == "BTC-USD-SPOT:1m|2026-11-01"
    assert again.run_key != request.run_key
    assert set(json.loads(tick(first.cursor).cursor or "{}")) == {
        f"{ex}/{tf}" for ex in ("binance", "coinbase", "kraken") for tf in ("1m", "1h")
    } - {"binance/1m", "kraken/1m"}  # the assets a materialization was read from


def test_consistency_finds_the_altered_hourly_candle_and_only_it(
    sim: RunningSimulator, store_url: str
) -> None:
    wl = one_exchange(sim.url, ["BTC/USDT/1m", "BTC/USDT/1h", "BTC/USDT/1d"], MONTH)
    h = Harness(wl, store_url, dg.DagsterInstance.ephemeral())
    for tf in ("1m", "1h", "1d"):  # the watchlist starts in November: the year is November on
        assert h.run(f"BTC-USDT-SPOT:{tf}|2026").success

    def evaluate(tf: str) -> dict[str, Any]:
        check = consistency_check("binance", tf, wl)
        result = dg.materialize(
            [h.assets[tf], check], instance=h.instance, resources=h.resources,
            partition_key=f"BTC-USDT-SPOT:{tf}|2026",
        )  # fmt: skip
        (e,) = h.evaluations(result, "consistent_timeframes")
        return {"passed": e.passed, "description": e.description,
                **{k: v.value for k, v in e.metadata.items()}}  # fmt: skip

    hours = (Timeframe.parse("1h").floor(NOW_MS) - T0) // HOUR  # closed hours of November
    clean = evaluate("1h")
    assert clean["passed"] and clean["compared"] == hours and clean["mismatches"] == 0
    assert evaluate("1d")["passed"]
    assert evaluate("1m")["description"] == "1m candles are the reference: nothing to compare"

    altered = T0 + 5 * HOUR
    with h.store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE candles SET high = high + 1 WHERE exchange = 'binance' "
                    "AND symbol = 'BTC-USDT-SPOT' AND timeframe = '1h' AND ts = :ts"),
            {"ts": altered},
        )  # fmt: skip
        # a 1m candle gone: its hour cannot be checked (not a mismatch)
        conn.execute(
            sa.text("DELETE FROM candles WHERE exchange = 'binance' AND timeframe = '1m' "
                    "AND ts = :ts"),
            {"ts": T0 + 9 * HOUR + 30 * MIN},
        )  # fmt: skip
    found = evaluate("1h")
    assert not found["passed"] and found["mismatches"] == 1
    assert found["compared"] == hours - 1 and found["not_checkable"] == 1
    assert "| 2026-11-01 05:00 | high |" in found["first_mismatches"]
    assert found["first_not_checkable"] == "2026-11-01 09:00"
    assert found["description"] == (
        f"1 of {hours - 1} candles differ from the aggregate of their 1m candles; "
        "1 not checkable (1m candles missing)"
    )
    daily = evaluate("1d")  # the day holding the missing minute is not checkable either
    assert daily["passed"] and daily["not_checkable"] == 1


def test_a_finished_backfill_is_followed_by_its_consistency_check_in_a_run_of_its_own(
    sim: RunningSimulator, store_url: str
) -> None:
    """The watchlist's backfill runs carry no consistency check (it would hold the exchange's
    one backfill slot: test_scale); the consistency sensor follows each finished one above
    1m with a check-only run of low priority over its partitions."""
    wl = one_exchange(sim.url, ["BTC/USDT/1m", "ETH/USDT/1m", "BTC/USDT/1h", "ETH/USDT/1h"], MONTH)
    h = Harness(wl, store_url, dg.DagsterInstance.ephemeral())
    sensor = consistency_sensor(wl)
    assert sensor is not None
    check = consistency_check("binance", "1h", wl)
    repository = dg.Definitions(
        assets=list(h.assets.values()), asset_checks=[check], sensors=[sensor],
        resources=h.resources,
    ).get_repository_def()  # fmt: skip

    def tick(cursor: str | None) -> Any:
        """A tick as the daemon evaluates it: requests resolved to the job they run."""
        with dg.build_sensor_context(
            instance=h.instance, cursor=cursor, repository_def=repository
        ) as ctx:
            return sensor.evaluate_tick(ctx)

    cursor = tick(None).cursor  # the first tick starts from now
    backfill = {BACKFILL_TAG: "binance"}
    runs = {
        tf: h.run(f"BTC-USDT-SPOT:{tf}|2026", f"ETH-USDT-SPOT:{tf}|2026", tags=backfill)
        for tf in ("1m", "1h")
    }
    assert all(r.success for r in runs.values())
    h.run("BTC-USDT-SPOT:1h|2026")  # a run of no backfill (a repair, a freshness run)

    result = tick(cursor)
    (request,) = result.run_requests  # the 1h backfill's; 1m is the reference
    assert request.asset_selection == []  # the check alone: no exchange pool slot
    assert request.asset_check_keys == [check.check_key]
    assert request.tags[RANGE_START] == "BTC-USDT-SPOT:1h|2026"
    assert request.tags[RANGE_END] == "ETH-USDT-SPOT:1h|2026"
    assert int(request.tags["dagster/priority"]) < 0 and BACKFILL_TAG not in request.tags
    assert not tick(result.cursor).run_requests  # a run is followed once
    # a backfill of a timeframe the watchlist has since dropped: nothing to check it with
    hourly_run = h.instance.get_run_by_id(runs["1h"].run_id)
    assert hourly_run is not None
    assert consistency_requests([hourly_run], checks=set()) == []
    assert len(consistency_requests([hourly_run], checks={check.check_key})) == 1

    job = repository.get_job(request.job_name).get_subset(
        asset_selection=set(request.asset_selection), asset_check_selection={check.check_key}
    )
    done = job.execute_in_process(instance=h.instance, tags=request.tags)
    assert done.success
    assert not done.get_asset_materialization_events()  # nothing fetched or written
    evaluations = {e.partition: e for e in done.get_asset_check_evaluations()}
    assert set(evaluations) == {"BTC-USDT-SPOT:1h|2026", "ETH-USDT-SPOT:1h|2026"}
    hours = (Timeframe.parse("1h").floor(NOW_MS) - T0) // HOUR
    targets = {}
    for key, e in evaluations.items():
        assert e.passed and e.metadata["compared"].value == hours
        assert e.target_materialization_data is not None
        targets[key] = e.target_materialization_data.run_id
    # each about its partition's latest materialization: BTC's the later run's
    assert targets["ETH-USDT-SPOT:1h|2026"] == runs["1h"].run_id
    assert targets["BTC-USDT-SPOT:1h|2026"] not in (runs["1h"].run_id, done.run_id)


def test_the_composite_command(tmp_path: Path, store_url: str) -> None:
    wl_path = tmp_path / "watchlist.yaml"
    env = cli_env(tmp_path, "http://127.0.0.1:1", store_url, ["BTC/USDT/1m"], start=MONTH)
    data = {
        "start": MONTH,
        "exchanges": {name: {"base_url": "http://127.0.0.1:1", "markets": [f"{s}-1m"]} for name, s in SOURCES.items()},
        "cross_exchange": {"symbols": ["BTC-USD-SPOT"], "timeframes": ["1m"],
                           "min_exchanges_required": 2, "quote_equivalents": {"USD": ["USDT"]}},
    }  # fmt: skip
    wl_path.write_text(json.dumps(data))  # YAML is a superset of JSON
    env["MARKET_DATA_CONFIG"] = str(wl_path)
    store = CandleStore(store_url)
    for exchange, close in (("binance", 100.0), ("coinbase", 102.0), ("kraken", 101.0)):
        write(store, exchange, [(T0, close, 1.0)])
    # the candle assets' partitions (the watchlist sensor's work) name the sources
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    for name, symbol in SOURCES.items():
        add_markets(instance, name, [f"{symbol}:1m"])

    done = cli(env, "composite", "--symbol", "BTC-USD", "--timeframe", "1m", "--start", MONTH)

    assert done.returncode == 0, done.stderr
    assert "composite BTC-USD-SPOT:1m: 2026-11.." in done.stdout
    assert (
        f"BTC-USD-SPOT:1m|{MONTH}: 1 timestamps (0 below the minimum of 2), 1 rows changed"
        in done.stdout
    )
    market = CompositeMarket("BTC-USD-SPOT", Timeframe.parse("1m"))
    (row,) = store.composite.read(market, 0, 2**62)
    assert row["close"] == pytest.approx(101.0) and row["sources"] == "binance,coinbase,kraken"
    runs = instance.get_runs()
    assert any(r.is_success for r in runs)
    refused = cli(env, "composite", "--symbol", "ETH-USD", "--timeframe", "1m", "--start", MONTH)
    assert refused.returncode == 2
    assert (
        "ETH-USD-SPOT:1m is not a composite market of the watchlist's cross_exchange block"
        in refused.stderr
    )
    assert "(it has BTC-USD-SPOT:1m)" in refused.stderr
    store.dispose()


def test_the_store_composes_nothing_without_sources(store_url: str) -> None:
    store = CandleStore(store_url)
    market = CompositeMarket("BTC-USD-SPOT", Timeframe.parse("1m"))
    figures = store.composite.build(market, [], T0, T0 + HOUR, 2)
    assert (figures.emitted, figures.below_minimum, figures.rows_changed) == (0, 0, 0)
    assert (
        store.composite.divergences(
            market, [Source("binance", "BTC-USDT-SPOT")], T0, T0 + HOUR, 1.0
        )
        == []
    )
    store.dispose()
