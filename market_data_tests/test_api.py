"""The HTTP status API: `market-data api` started as a real process, asked over real HTTP,
against a store filled by real backfills from the simulator; stopped by PID."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from market_data.simulator.server import RunningSimulator
from market_data_tests.conftest import Cluster, throwaway_cluster
from market_data_tests.helpers import admin, cli, cli_env, cli_process, free_port

PASSWORD = "s3cret-Pw-4-api"
NOV = 1_793_491_200_000
BACKFILL = ("backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--start", "2026-11-01")
HOUR = 3_600_000


class Api:
    """`market-data api` on a port of its own."""

    def __init__(self, env: dict[str, str], report_max_age_s: float = 0) -> None:
        """``report_max_age_s`` 0: every request sees the store as it is now."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = cli_process(
            env, "api", "--port", str(self.port), "--report-max-age", str(report_max_age_s)
        )
        self.bodies: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/health")
                return
            except OSError:
                assert self.process.poll() is None, self.process.communicate()
                time.sleep(0.2)
        raise AssertionError("the API did not answer within 60 s")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as resp:  # noqa: S310
                status, body = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read().decode()
        self.bodies.append(body)
        return status, body

    def json(self, path: str) -> tuple[int, dict]:
        status, body = self.get(path)
        return status, json.loads(body)

    def metrics(self) -> dict[tuple[str, str], float]:
        """(metric name, market) -> value; the market is "" for unlabelled metrics."""
        status, body = self.get("/metrics")
        assert status == 200
        return {
            (s.name, s.labels.get("market", "")): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }

    def stop(self) -> str:
        """SIGTERM by PID: it shuts down cleanly and exits 0 (the contract of every
        long-running command, test_signals.py); everything it printed."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=20)
        assert self.process.returncode == 0, out + err
        assert "Application shutdown complete" in err and "Traceback" not in err, err
        return out + err


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as cluster:
        yield cluster


def _database(cluster: Cluster) -> str:
    """A database of the test's own in the cluster, as a URL with a password in it (trust
    auth ignores it; it must never be shown)."""
    name = f"api_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{cluster.port}/{name}"


def _filled(tmp_path: Path, sim: RunningSimulator, url: str) -> dict[str, str]:
    """November's BTC/USDT 1h backfilled, with a three-hour hole at the exchange."""
    hole = {"symbol": "BTCUSDT", "start_ms": NOV + 5 * HOUR, "end_ms": NOV + 8 * HOUR}
    admin(sim.url, "faults", {"holes": [hole]})
    env = cli_env(tmp_path, sim.url, url, ["BTC/USDT/1h"], start="2026-11-01")
    backfill = cli(env, *BACKFILL)
    assert backfill.returncode == 0, backfill.stderr
    return env


def _without_timing(report: dict) -> dict:
    return {
        k: v for k, v in report.items() if k not in ("generated_at", "database_latency_ms", "page")
    }


@pytest.mark.parametrize("flavour", ["sqlite", "postgresql"])
def test_the_api_reports_what_status_reports(
    tmp_path: Path, sim: RunningSimulator, cluster: Cluster, flavour: str
) -> None:
    url = f"sqlite:///{tmp_path}/candles.sqlite" if flavour == "sqlite" else _database(cluster)
    env = _filled(tmp_path, sim, url)
    status = cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    expected = json.loads(status.stdout)
    (btc,) = expected["markets"]
    assert (btc["open_gaps"], btc["missing"], btc["empty"]) == (1, 0, 3)

    api = Api(env)
    try:
        # the same report as `market-data status --json`, in every symbol form
        code, everything = api.json("/ingestion/status")
        assert code == 200 and _without_timing(everything) == _without_timing(expected)
        assert everything["page"] == {"offset": 0, "limit": 1000, "markets_total": 1}
        assert api.json("/ingestion/status?offset=1&limit=5")[1]["markets"] == []
        assert api.json("/ingestion/status?limit=0")[0] == 400
        # health counts the candles by the last status report, never by a scan of its own
        code, health = api.json("/health")
        assert code == 200 and health["status"] == "ok" and health["database"]["ok"]
        counted = health["candles"]
        assert (counted["total"], counted["by_exchange"]) == (btc["rows"], {"binance": btc["rows"]})
        # the last report collected: the one above, or one collected since (a second later)
        assert counted["as_of"] >= everything["generated_at"]
        for symbol in ("BTCUSDT", "btc-usdt", "BTC/USDT", "BTC-USDT-SPOT"):
            code, one = api.json(f"/ingestion/status?exchange=binance&symbol={symbol}&timeframe=1h")
            assert code == 200 and [m["market"] for m in one["markets"]] == ["BTC-USDT-SPOT:1h"]
        assert (
            api.json("/api/ingestion/status?symbol=BTCUSDT")[1]["markets"] == everything["markets"]
        )
        code, wrong_tf = api.json("/ingestion/status?symbol=BTCUSDT&timeframe=4h")
        assert code == 404 and "BTC-USDT-SPOT:1h" in wrong_tf["error"]

        # bad input: a clear 400 naming what is accepted
        code, body = api.json("/ingestion/status?exchange=kraken")
        assert code == 400 and body["error"] == "unknown exchange 'kraken'; watched: binance"
        code, body = api.json("/ingestion/status?timeframe=7x")
        assert code == 400 and "7x" in body["error"]
        code, body = api.json("/gaps?status=closed")
        assert code == 400 and "open, repaired, exchange_empty, all" in body["error"]
        code, body = api.json("/gaps?limit=0")
        assert code == 400 and "limit" in body["error"]
        code, body = api.json("/gaps?symbols=BTCUSDT")
        assert code == 400 and "unknown parameter(s) symbols" in body["error"]

        # the gap, in the one vocabulary: fetched, nothing returned = "empty"
        code, gaps = api.json("/gaps?status=open&symbol=BTCUSDT")
        assert code == 200 and not gaps["truncated"]
        assert [(g["start"], g["end"], g["kind"], g["status"], g["candles"]) for g in gaps["gaps"]] == [
            ("2026-11-01 05:00", "2026-11-01 08:00", "empty", "open", 3)
        ]  # fmt: skip
        assert api.json("/gaps?status=repaired")[1]["gaps"] == []
        assert api.json("/gaps?status=all&limit=1")[1]["truncated"] is False

        metrics = api.metrics()
        market = "BTC-USDT-SPOT:1h"
        assert metrics[("market_data_database_up", "")] == 1
        assert metrics[("market_data_open_gaps", market)] == 1
        assert metrics[("market_data_empty_candles", market)] == 3
        assert ("market_data_missing_candles", market) not in metrics  # problems only
        assert ("market_data_stale", market) not in metrics
        # sums per exchange and timeframe: one series here
        assert metrics[("market_data_rows", "")] == btc["rows"]
        assert metrics[("market_data_absent_candles", "")] == btc["absent"]
        assert metrics[("market_data_series", "")] == 1
        assert metrics[("market_data_series_with_gaps", "")] == 1
        assert metrics[("market_data_lag_seconds", market)] == pytest.approx(btc["lag_s"])

        # a run made while the API serves shows in its next report (nothing it read is
        # kept from one report to the next)
        assert everything["runs_24h"] == {"binance": {"SUCCESS": 1}}
        again = cli(env, *BACKFILL)
        assert again.returncode == 0, again.stderr
        assert api.json("/ingestion/status")[1]["runs_24h"] == {"binance": {"SUCCESS": 2}}
    finally:
        printed = api.stop()
    assert PASSWORD not in printed + "".join(api.bodies) + status.stdout + status.stderr


def test_health_is_503_while_the_store_is_down_and_no_password_shows(
    tmp_path: Path, sim: RunningSimulator, cluster: Cluster
) -> None:
    env = _filled(tmp_path, sim, _database(cluster))
    api = Api(env)
    try:
        assert api.json("/health")[0] == 200
        cluster.stop()
        try:
            code, health = api.json("/health")
            assert code == 503 and health["status"] == "unavailable"
            assert not health["database"]["ok"] and health["database"]["error"]
            code, status = api.json("/ingestion/status")
            assert code == 503 and "unreachable" in status["error"]
            assert api.json("/gaps")[0] == 503
            assert api.metrics()[("market_data_database_up", "")] == 0
            assert api.get("/system/health")[0] == 503
        finally:
            cluster.start()
        assert api.json("/health")[0] == 200  # back by itself once the store is
    finally:
        printed = api.stop()
    assert PASSWORD not in printed + "".join(api.bodies)


def test_a_broken_database_url_is_one_clear_line(tmp_path: Path, sim: RunningSimulator) -> None:
    env = cli_env(tmp_path, sim.url, f"postgresql//u:{PASSWORD}@localhost/db", ["BTC/USDT/1h"])
    done = cli(env, "api", "--port", str(free_port()))
    assert done.returncode == 1 and "DATABASE_URL is not a database URL" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_a_whole_exchange_is_served_from_a_report_refreshed_in_the_background(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    """With a report max age, requests answer from the report in memory (the same one until
    it is refreshed in the background), and /metrics says how old it is."""
    env = _filled(tmp_path, sim, f"sqlite:///{tmp_path}/candles.sqlite")
    api = Api(env, report_max_age_s=2)
    try:
        first = api.json("/ingestion/status")[1]["generated_at"]
        assert api.json("/ingestion/status")[1]["generated_at"] == first  # from memory
        assert 0 <= api.metrics()[("market_data_status_age_seconds", "")] <= 2
        deadline = time.monotonic() + 30
        while api.json("/ingestion/status")[1]["generated_at"] == first:  # seconds resolution
            assert time.monotonic() < deadline, "the report was never refreshed"
            time.sleep(0.5)
    finally:
        api.stop()
