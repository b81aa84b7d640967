"""The candle asset against the simulator (real ccxt over HTTP) and real databases."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dagster as dg
import pytest

from market_data.defs.candles import assets
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.markets import MARKETS, Kind
from market_data.simulator.server import RunningSimulator, Simulator
from market_data_tests.candle_harness import Harness, exchange_truth, watchlist
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin

HOUR = 3_600_000
SEP, OCT, NOV, DEC = 1_788_220_800_000, 1_790_812_800_000, 1_793_491_200_000, 1_796_083_200_000


@pytest.fixture
def harness(sim: RunningSimulator, store_url: str) -> Harness:
    wl = watchlist(
        sim.url, ["BTC/USDT/1h", "ETH/USDT/1m", "NEWT/USDT/1h", "ZEN/BTC/1m", "NOPE/USDT/1h"]
    )
    return Harness(wl, store_url, dg.DagsterInstance.ephemeral())


def klines_200(sim: RunningSimulator) -> int:
    return admin(sim.url, "stats")["requests"].get("/api/v3/klines", {}).get("200", 0)


def test_backfill_stores_exactly_the_closed_candles_and_is_idempotent(
    harness: Harness, sim: RunningSimulator
) -> None:
    result = harness.run_months("BTC-USDT-SPOT:1h", "2026-10", "2026-11")
    assert result.success
    truth = exchange_truth("BTCUSDT", Kind.SPOT, "1h", OCT, DEC, NOW_MS)
    assert harness.stored("BTC-USDT-SPOT", "1h") == truth
    assert truth[-1][0] == NOW_MS - NOW_MS % HOUR - HOUR  # up to the last closed candle
    meta = harness.metadata(result)
    assert (meta["rows_written"], meta["expected"], meta["present"], meta["absent"]) == (
        len(truth),
    ) * 3 + (0,)
    # Again: nothing new is fetched, nothing is written.
    pages = klines_200(sim)
    again = harness.run_months("BTC-USDT-SPOT:1h", "2026-10", "2026-11")
    assert again.success and harness.metadata(again)["rows_written"] == 0
    assert klines_200(sim) == pages
    assert harness.stored("BTC-USDT-SPOT", "1h") == truth
    # An overlapping range adds only what was missing (September).
    wider = harness.run_months("BTC-USDT-SPOT:1h", "2026-09", "2026-11")
    assert harness.metadata(wider)["rows_written"] == 30 * 24
    assert klines_200(sim) == pages + 1
    assert len(harness.stored("BTC-USDT-SPOT", "1h")) == len(truth) + 720


def test_a_backfill_uses_the_minimum_number_of_requests(
    harness: Harness, sim: RunningSimulator
) -> None:
    result = harness.run_months("ETH-USDT-SPOT:1m", "2026-01", "2026-02")
    assert result.success
    minutes = (31 + 28) * 1440
    assert harness.metadata(result)["rows_written"] == minutes
    pages = -(-minutes // 1000)
    assert klines_200(sim) == pages + 1  # + the one listing discovery
    # history is not "stale" (nine months behind): only a run that reaches the present judges the lag
    logs = [e.user_message for e in harness.instance.all_logs(result.run_id)]
    assert not [m for m in logs if "stale" in m] and any("ETH-USDT-SPOT:1m" in m for m in logs)


def test_an_interrupted_backfill_fails_loudly_then_resumes_without_loss(
    harness: Harness, sim: RunningSimulator
) -> None:
    # Page 6 and everything after it fail hard (after the listing request and 5 pages).
    admin(
        sim.url,
        "faults",
        {"fail": [{"path": "/api/v3/klines", "status": 500, "skip": 6, "count": -1}]},
    )
    failed = harness.run_months("ETH-USDT-SPOT:1m", "2026-01")
    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.error
    # pages are fetched concurrently: the window named is one of those the exchange refused
    assert re.search(
        r"gave up after retries: \d window\(s\) failed, the first: ETH/USDT 1m window 2026-01-",
        failure.message,
    )
    assert "Server is currently overloaded" in failure.message
    kept = harness.stored("ETH-USDT-SPOT", "1m")
    assert len(kept) == 5000  # every page that arrived was written
    admin(sim.url, "faults", {"fail": []})
    before = klines_200(sim)
    rerun = harness.run_months("ETH-USDT-SPOT:1m", "2026-01")
    assert rerun.success
    assert klines_200(sim) - before == -(-(31 * 1440 - 5000) // 1000)  # only what was missing
    stored = harness.stored("ETH-USDT-SPOT", "1m")
    assert stored == exchange_truth(
        "ETHUSDT", Kind.SPOT, "1m", 1_767_225_600_000, 1_769_904_000_000, NOW_MS
    )
    assert len({row[0] for row in stored}) == len(stored) == 31 * 1440


def test_rate_limits_and_bans_are_waited_out(harness: Harness, sim: RunningSimulator) -> None:
    # Pages 4-5 answer 429 (Retry-After 1 s), page 9 a 418 ban (Retry-After 2 s).
    rules = [
        {"path": "/api/v3/klines", "status": 429, "skip": 4, "count": 2, "retry_after_s": 1},
        {"path": "/api/v3/klines", "status": 418, "skip": 10, "count": 1, "retry_after_s": 2},
    ]
    admin(sim.url, "faults", {"fail": rules})
    started = time.monotonic()
    result = harness.run_months("ETH-USDT-SPOT:1m", "2026-01")
    elapsed = time.monotonic() - started
    assert result.success
    assert len(harness.stored("ETH-USDT-SPOT", "1m")) == 31 * 1440
    stats = admin(sim.url, "stats")["requests"]["/api/v3/klines"]
    assert (stats["200"], stats["429"], stats["418"]) == (45 + 1, 2, 1)  # the minimum, each once
    # pages are fetched concurrently: the 429s and the 418 may come back together, so the
    # pauses overlap; the run lasted at least the longest (the backoff alone is 0.05 s)
    assert elapsed >= 2
    timeline = [r for r in admin(sim.url, "timeline") if r["path"] == "/api/v3/klines"]
    (ban,) = [r["t"] for r in timeline if r["status"] == 418]
    after = [r for r in timeline if ban + 0.1 < r["t"] < ban + 1.9]
    assert len(after) <= 16, after  # none but those already in flight when the ban came


def test_an_unthrottled_client_keeps_to_the_weight_the_exchange_reports(
    harness: Harness, sim: RunningSimulator
) -> None:
    # The harness has no throttle and 16 requests in flight; the exchange allows 26 weight a
    # second (13 pages; its exchangeInfo says so) and bans at the second overrun. The client
    # paces by the used weight the exchange reports on every answer: no refusal at all.
    admin(
        sim.url,
        "faults",
        {"weight_limit": 26, "weight_window_s": 1, "ban_after": 1, "ban_seconds": 1},
    )
    result = harness.run_months("ETH-USDT-SPOT:1m", "2026-01")
    assert result.success
    assert len(harness.stored("ETH-USDT-SPOT", "1m")) == 31 * 1440
    stats = admin(sim.url, "stats")["requests"]["/api/v3/klines"]
    assert stats == {"200": 45 + 1}  # every page fetched once, none refused


def test_a_ranged_run_gives_each_partition_its_own_figures_and_check(
    harness: Harness,
) -> None:
    sep_oct = {"not_before": "2026-09-01", "not_after": "2026-11-01"}
    result = harness.run("BTC-USDT-SPOT:1h|2026", "NEWT-USDT-SPOT:1h|2026", config=sep_oct)
    assert result.success
    parts = harness.partitions(result)
    btc, newt = parts["BTC-USDT-SPOT:1h|2026"], parts["NEWT-USDT-SPOT:1h|2026"]
    newt_listed = next(m for m in MARKETS if m.id == "NEWTUSDT").listed_ms
    assert (btc["expected"], btc["present"], btc["rows_written"]) == (61 * 24,) * 3
    assert btc["first_candle"] == SEP / 1000 and btc["last_candle"] == (NOV - HOUR) / 1000
    newt_hours = (NOV - newt_listed) // HOUR
    assert (newt["expected"], newt["present"], newt["rows_written"]) == (newt_hours,) * 3
    assert newt["first_candle"] == newt_listed / 1000
    assert "lag_seconds" not in btc  # a run that ends before now judges no lag
    assert btc["run_requests"] == newt["run_requests"]  # the run's own figures, labelled so
    # one gap-check result per partition, each about that partition's materialization
    checks = {e.partition: e for e in harness.evaluations(result, "no_gaps")}
    assert set(checks) == set(parts)
    # the run fetched September and October: the rest of the year is judged, not assumed
    assert all(not e.passed and "missing" in (e.description or "") for e in checks.values())
    for pk, e in checks.items():
        latest = harness.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=harness.assets["1h"].key, asset_partitions=[pk]),
            limit=1,
        ).records[0]
        assert e.target_materialization_data.storage_id == latest.storage_id
    assert {e.partition for e in harness.evaluations(result, "fresh")} == set(parts)


def test_a_run_past_the_per_partition_bound_gives_its_figures_to_every_partition(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of more partitions than PER_PARTITION_METADATA_MAX (a freshness run of a whole
    exchange's timeframe) records the run's figures on each, and what it wrote in all."""
    monkeypatch.setattr(assets, "PER_PARTITION_METADATA_MAX", 1)
    october = {"not_before": "2026-10-01", "not_after": "2026-11-01"}
    result = harness.run("BTC-USDT-SPOT:1h|2026", "NEWT-USDT-SPOT:1h|2026", config=october)
    assert result.success
    parts = harness.partitions(result)
    assert set(parts) == {"BTC-USDT-SPOT:1h|2026", "NEWT-USDT-SPOT:1h|2026"}
    for meta in parts.values():
        assert "rows_written" not in meta and meta["run_markets"] == 2
        assert (meta["run_written_first"], meta["run_written_last"]) == (
            OCT / 1000,
            (NOV - HOUR) / 1000,
        )
    # each market's state is still its own, in the fresh check's results
    assert {e.partition for e in harness.evaluations(result, "fresh")} == set(parts)


def test_a_short_window_asks_binance_futures_for_only_what_it_holds(
    sim: RunningSimulator, store_url: str
) -> None:
    """USD-M klines cost weight by the limit asked (1000: 5, under 500: 2, under 100: 1): a
    window of ~450 hours asks for that many, weight 2; a day later's tail, weight 1."""
    market = {"symbol": "BTC-USDT-PERP", "timeframe": "1h", "start": "2026-11-01"}
    h = Harness(watchlist(sim.url, [market]), store_url, dg.DagsterInstance.ephemeral())
    assert h.run("BTC-USDT-PERP:1h|2026").success
    admin(sim.url, "clock", {"advance_ms": 2 * HOUR})
    assert h.run("BTC-USDT-PERP:1h|2026", tags={"market_data/freshness": "binance"}).success
    pages = [r for r in admin(sim.url, "timeline") if r["path"] == "/fapi/v1/klines"]
    weights = [r["weight"] for r in pages if r["status"] == 200]
    assert weights[-2:] == [2, 1], weights  # the history (~450 hours), then the tail (2)


def test_nothing_is_expected_before_the_listing(harness: Harness) -> None:
    newt = next(m for m in MARKETS if m.id == "NEWTUSDT")
    result = harness.run_months("NEWT-USDT-SPOT:1h", "2026-10")
    meta = harness.metadata(result)
    stored = harness.stored("NEWT-USDT-SPOT", "1h")
    assert stored[0][0] == newt.listed_ms
    assert meta["absent"] == 0 and meta["expected"] == len(stored) == (NOV - newt.listed_ms) // HOUR


def test_the_candle_in_progress_is_stored_once_it_has_closed(
    harness: Harness, sim: RunningSimulator
) -> None:
    harness.run_months("BTC-USDT-SPOT:1h", "2026-11")
    current = NOW_MS - NOW_MS % HOUR
    assert harness.stored("BTC-USDT-SPOT", "1h")[-1][0] == current - HOUR
    admin(sim.url, "clock", {"advance_ms": HOUR})
    assert harness.run_months("BTC-USDT-SPOT:1h", "2026-11").success
    last = harness.stored("BTC-USDT-SPOT", "1h")[-1]
    truth = exchange_truth("BTCUSDT", Kind.SPOT, "1h", current, current + HOUR, NOW_MS + HOUR)
    assert [last] == truth


def test_an_illiquid_market_stores_what_the_exchange_has(harness: Harness) -> None:
    result = harness.run_months("ZEN-BTC-SPOT:1m", "2026-11")
    meta = harness.metadata(result)
    truth = exchange_truth("ZENBTC", Kind.SPOT, "1m", NOV, DEC, NOW_MS)
    assert harness.stored("ZEN-BTC-SPOT", "1m") == truth
    assert meta["expected"] > meta["present"] == len(truth)  # minutes without trades


def test_a_market_the_exchange_does_not_list_fails_with_a_clear_error(harness: Harness) -> None:
    result = harness.run_months("NOPE-USDT-SPOT:1h", "2026-11")
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data
    assert "NOPE-USDT-SPOT (NOPE/USDT) is not listed on binance" in error.error.message
    assert error.user_failure_data is not None  # a dg.Failure: no pointless retries


def test_dry_run_fetches_and_validates_but_writes_nothing(harness: Harness) -> None:
    result = harness.run_months("BTC-USDT-SPOT:1h", "2026-10", config={"dry_run": True})
    meta = harness.metadata(result)
    assert meta["run_dry_run"] and meta["candles_fetched"] == 31 * 24 and meta["rows_written"] == 0
    assert harness.stored("BTC-USDT-SPOT", "1h") == []


def test_rows_that_break_the_contract_are_not_stored(tmp_path: Path, store_url: str) -> None:
    start = 1_793_491_200_000  # 2026-11-01
    rows = [[start + i * 60_000, "10.0", "10.5", "9.5", "10.2", "1.0"] for i in range(30)]
    rows[7] = [start + 7 * 60_000, "10.0", "9.0", "9.5", "10.2", "1.0"]  # high below open
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(",".join(map(str, r)) for r in rows))
    sim = Simulator(Faults(), Clock(fixed_ms=NOW_MS), replay={"BTCUSDT": path})
    with RunningSimulator(sim) as running:
        h = Harness(
            watchlist(running.url, ["BTC/USDT/1m"]), store_url, dg.DagsterInstance.ephemeral()
        )
        result = h.run_months("BTC-USDT-SPOT:1m", "2026-11")
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "1 candle(s) break the contract (high >= max(open, close))" in message
    assert str(start + 7 * 60_000) in message  # the offending row is shown
    assert h.stored("BTC-USDT-SPOT", "1m") == []


def test_a_market_refused_in_a_grouped_run_fails_only_its_own_partitions(
    harness: Harness, sim: RunningSimulator
) -> None:
    """One ranged run over the three 1h markets (as the watchlist groups new markets): NOPE
    is not listed and the exchange refuses NEWT/USDT (-1121). BTC is fetched and
    materialized whole; the run fails naming the refused ones."""
    rule = {"path": "/api/v3/klines", "query": {"symbol": "NEWTUSDT"}, "status": 400,
            "code": -1121, "count": -1}  # fmt: skip
    admin(sim.url, "faults", {"fail": [rule]})
    order = harness.instance.get_dynamic_partitions("markets_binance_1h")
    assert order == ["BTC-USDT-SPOT:1h", "NEWT-USDT-SPOT:1h", "NOPE-USDT-SPOT:1h"]
    october = {"not_before": "2026-10-01", "not_after": "2026-11-01"}
    result = harness.run(f"{order[0]}|2026", f"{order[-1]}|2026", config=october)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert "2 of 3 market(s) refused, the others written" in failure.error.message
    materialized = {
        r.partition_key
        for r in harness.instance.fetch_materializations(
            harness.assets["1h"].key, limit=100
        ).records
    }
    assert materialized == {"BTC-USDT-SPOT:1h|2026"}
    assert harness.stored("BTC-USDT-SPOT", "1h") == exchange_truth(
        "BTCUSDT", Kind.SPOT, "1h", OCT, NOV, NOW_MS
    )
    logs = " ".join(e.user_message for e in harness.instance.all_logs(result.run_id))
    assert "NOPE-USDT-SPOT:1h: not fetched: NOPE-USDT-SPOT (NOPE/USDT) is not listed" in logs
    assert "NEWT-USDT-SPOT:1h: not fetched: " in logs and "Invalid symbol" in logs
