"""The `market-data` command line as a user runs it: a process, env vars, the simulator."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from market_data.defs.candles.cli_runs import plan
from market_data.defs.candles.partitions import RANGE_START
from market_data.domain.gaps import Hole
from market_data.domain.symbols import parse_symbol
from market_data.domain.timeframes import Timeframe
from market_data.domain.watchlist import Market
from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, cli, cli_env

JAN_MS = 1_767_225_600_000  # 2026-01-01


@pytest.fixture
def env(tmp_path: Path, sim: RunningSimulator) -> dict[str, str]:
    return cli_env(tmp_path, sim.url, f"sqlite:///{tmp_path}/candles.sqlite", ["BTC/USDT/1h"])


def backfill_btc(env: dict[str, str], start: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`market-data backfill` of BTC/USDT (1h) from ``start``."""
    return cli(
        env, "backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--start", start, *extra
    )


def test_backfill_runs_dagster_materializations_and_resume_continues(env: dict[str, str]) -> None:
    done = cli(
        env,
        "backfill",
        "--exchange",
        "binance",
        "--symbol",
        "BTC/USDT",
        "--symbol",
        "ETH-USDT-PERP",
        "--timeframe",
        "4h",
        "--start",
        "2026-10-15",
        "--end",
        "2026-11-10",
    )
    assert done.returncode == 0, done.stderr
    assert "2 run(s) for 2 market(s) on binance" in done.stdout
    assert "[1/2] binance BTC-USDT-SPOT:4h 2026" in done.stdout
    assert "156 rows written" in done.stdout  # 26 days x 6
    store = CandleStore(env["DATABASE_URL"])
    btc = Series("binance", "BTC-USDT-SPOT", "4h")
    assert store.candle_stats(btc, 0, 2**62)[0] == 156
    # The runs are in the Dagster instance, so the UI shows them.
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.is_success for r in runs)
    assert {r.tags[RANGE_START] for r in runs} == {
        "BTC-USDT-SPOT:4h|2026",
        "ETH-USDT-PERP:4h|2026",
    }
    # --resume starts from the newest stored candle and fills up to the last closed one.
    resumed = cli(
        env,
        "backfill",
        "--exchange",
        "binance",
        "--symbol",
        "BTC/USDT",
        "--timeframe",
        "4h",
        "--start",
        "2026-10-15",
        "--resume",
    )
    assert resumed.returncode == 0, resumed.stderr
    # from the newest stored candle's year up to this year (the command plans by today's date)
    assert f"[1/1] binance BTC-USDT-SPOT:4h {datetime.now(UTC):%Y}" in resumed.stdout
    n, first, last = store.candle_stats(btc, 0, 2**62)
    assert first == 1_792_022_400_000  # 2026-10-15, untouched
    four_hours = 14_400_000
    assert last == NOW_MS - NOW_MS % four_hours - four_hours  # the last closed at the exchange
    assert n == (last - first) // 14_400_000 + 1
    store.dispose()


def test_backfill_on_bitfinex_works_as_on_binance(tmp_path: Path, sim: RunningSimulator) -> None:
    url = f"sqlite:///{tmp_path}/candles.sqlite"
    env = cli_env(tmp_path, sim.url, url, ["BTC/USD/1h"], exchange_name="bitfinex")
    done = cli(env, "backfill", "--exchange", "bitfinex", "--symbol", "BTC/USD",
               "--timeframe", "1h", "--start", "2026-11-01", "--end", "2026-11-10")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 run(s) for 1 market(s) on bitfinex" in done.stdout
    assert "216 rows written" in done.stdout  # 9 days x 24
    store = CandleStore(url)
    assert store.candle_stats(Series("bitfinex", "BTC-USD-SPOT", "1h"), 0, 2**62)[0] == 216
    store.dispose()
    # Coinbase has no 4h candles: refused before anything runs, saying why.
    env = cli_env(tmp_path, sim.url, url, ["BTC/USD/1h"], exchange_name="coinbase")
    refused = cli(env, "backfill", "--exchange", "coinbase", "--symbol", "BTC/USD",
                  "--timeframe", "4h", "--start", "2026-11-01")  # fmt: skip
    assert refused.returncode == 2
    assert (
        "coinbase has no 4h candles (it serves 1m, 5m, 15m, 30m, 1h, 2h, 6h, 1d)" in refused.stderr
    )


def test_dry_run_writes_nothing(env: dict[str, str]) -> None:
    done = backfill_btc(env, "2026-11-01", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "(dry run)" in done.stdout and "0 rows written" in done.stdout
    store = CandleStore(env["DATABASE_URL"])
    assert store.candle_stats(Series("binance", "BTC-USDT-SPOT", "1h"), 0, 2**62)[0] == 0
    # No trace that would make the gap check or the repair sensor act on it.
    assert store.gaps.clock("binance") is None and store.gaps.all_gaps() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--exchange", "kraken", "--symbol", "BTC/USDT"],
            "exchange 'kraken' is not in the watchlist",
        ),
        (["--exchange", "binance", "--symbol", "BTCUSDT"], "malformed pair 'BTCUSDT'"),
        (
            ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "7m"],
            "unknown timeframe '7m'",
        ),
        (
            ["--exchange", "binance", "--symbol", "BTC/USDT", "--start", "2099-01-01"],
            "2099-01-01 is in the future",
        ),
        (
            ["--exchange", "binance", "--symbol", "BTC/USDT", "--start", "yesterday"],
            "'yesterday' is not a date",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(env: dict[str, str], args: list[str], message: str) -> None:
    if "--start" not in args:
        args = [*args, "--start", "2026-11-01"]
    done = cli(env, "backfill", *args)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.parametrize(
    ("live", "message"),
    [
        ({"exchanges": ["binanse"]}, "live.exchanges: binanse not among this watchlist's"),
        ({"exchanges": ["kraken"]}, "live.exchanges: kraken has no stream here"),
        ({"refresh_s": 0}, "live: refresh_s, heartbeat_s >= 1"),
    ],
)
def test_a_broken_live_block_is_one_line(
    env: dict[str, str], live: dict[str, Any], message: str
) -> None:
    config = Path(env["MARKET_DATA_CONFIG"])
    data = yaml.safe_load(config.read_text())
    data["exchanges"]["kraken"] = {"markets": ["BTC/USD/1h"]}
    data["live"] = live
    config.write_text(yaml.safe_dump(data))
    done = cli(env, "live")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr


def test_db_init_and_reset(env: dict[str, str]) -> None:
    first = cli(env, "db", "init")
    assert first.returncode == 0 and "applied 001_candles.sql" in first.stdout
    assert "schema up to date" in cli(env, "db", "init").stdout
    refused = cli(env, "db", "reset", stdin="n\n")
    assert refused.returncode == 1 and "Aborted" in refused.stderr
    assert "reset" in cli(env, "db", "reset", "-f").stdout


def test_gaps_detect_list_and_repair(env: dict[str, str], sim: RunningSimulator) -> None:
    from market_data_tests.helpers import admin

    hole_start = 1_793_491_200_000 + 5 * 3_600_000  # 2026-11-01 05:00, three hours
    admin(
        sim.url,
        "faults",
        {
            "holes": [
                {"symbol": "BTCUSDT", "start_ms": hole_start, "end_ms": hole_start + 3 * 3_600_000}
            ]
        },
    )
    assert backfill_btc(env, "2026-01-01").returncode == 0
    detect = cli(env, "gaps", "detect", "--exchange", "binance", "--symbol", "BTC/USDT")
    assert detect.returncode == 1, detect.stderr
    # fetched, and the exchange returned nothing: "empty", not "missing"
    assert (
        "GAPS binance BTC-USDT-SPOT:1h: 1 open gap(s): 0 missing, 3 empty (unconfirmed); "
        "0 exchange-empty (in 2026)" in detect.stdout
    )
    listed = cli(env, "gaps", "list", "--open")
    assert "BTC-USDT-SPOT  1h    2026-11-01 05:00  2026-11-01 08:00  empty   open" in listed.stdout
    assert "first 1 gaps only" not in listed.stdout
    repaired = cli(
        env, "gaps", "repair", "--exchange", "binance", "--symbol", "BTC/USDT", "--max-gaps", "1"
    )
    assert repaired.returncode == 0, repaired.stderr
    # one run, over the one year with a gap (repair mode: only the gap is fetched)
    assert "[1/1] binance BTC-USDT-SPOT:1h 2026" in repaired.stdout, repaired.stdout
    store = CandleStore(env["DATABASE_URL"])
    (row,) = store.gaps.all_gaps()
    assert row["attempts"] == 1 and row["status"] == "open"  # still empty at the exchange


def test_gaps_list_says_when_it_truncates(env: dict[str, str]) -> None:
    assert cli(env, "db", "init").returncode == 0
    store = CandleStore(env["DATABASE_URL"])
    series = Series("binance", "BTC-USDT-SPOT", "1h")
    hour = 3_600_000
    holes = [Hole(1_790_000_000_000 + i * 3 * hour, 1_790_000_000_000 + (i * 3 + 1) * hour, "missing") for i in range(5)]  # fmt: skip
    store.gaps.record(series, 0, 2**62, holes, 3)
    listed = cli(env, "gaps", "list", "--limit", "3")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("BTC-USDT-SPOT") == 3
    assert "(the first 3 gaps only: --limit N shows more)" in listed.stdout
    everything = cli(env, "gaps", "list", "--limit", "5")
    assert everything.stdout.count("BTC-USDT-SPOT") == 5 and "gaps only" not in everything.stdout


def test_status_reports_every_market(env: dict[str, str]) -> None:
    assert backfill_btc(env, "2026-11-01").returncode == 0
    done = cli(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["database_ok"] and report["database_latency_ms"] >= 0
    (btc,) = report["markets"]
    hours = (NOW_MS - NOW_MS % 3_600_000 - 1_793_491_200_000) // 3_600_000
    assert btc["market"] == "BTC-USDT-SPOT:1h" and btc["rows"] == hours
    # the watchlist starts in January: what --start left out is absent, and the run's gap
    # check (over its year partition) found it: one open gap, missing (never fetched)
    before = (1_793_491_200_000 - JAN_MS) // 3_600_000
    assert btc["absent"] == btc["expected"] - hours == before == btc["missing"]
    assert btc["first_candle"] == "2026-11-01 00:00" and btc["open_gaps"] == 1
    assert btc["lag_s"] < 3600 and not btc["stale"]
    assert btc["last_materialization"] is not None
    assert report["runs_24h"]["binance"] == {"SUCCESS": 1}
    text = cli(env, "status")
    assert "BTC-USDT-SPOT:1h" in text.stdout and "database:" in text.stdout


def test_status_says_when_the_database_is_unreachable(env: dict[str, str]) -> None:
    done = cli({**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "status")
    assert done.returncode == 1 and "UNREACHABLE" in done.stdout


def test_a_run_failing_for_an_expected_reason_shows_it_without_a_traceback(
    env: dict[str, str], sim: RunningSimulator
) -> None:
    """A permanent 404 mid-run: the reason and the run id, exit 1, no Python traceback
    (the run's logs in the UI keep it; --verbose prints it)."""
    not_found = {"path": "/api/v3/klines", "skip": 1, "count": -1, "status": 404,
                 "code": -1000, "msg": "Not found"}  # fmt: skip
    admin(sim.url, "faults", {"fail": [not_found]})
    done = backfill_btc(env, "2026-01-01")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    run_id = re.search(r"FAILED \(run ([0-9a-f-]{36})\)", done.stdout)
    assert run_id is not None, out
    assert 'HTTP 404: binance {"code":-1000,"msg":"Not found"}' in done.stdout
    for trace in ("Traceback", "Stack Trace", 'File "', "raise "):
        assert trace not in out, out

    admin(sim.url, "faults", {"fail": [not_found]})
    verbose = backfill_btc(env, "2026-01-01", "--verbose")
    assert verbose.returncode == 1 and "Stack Trace" in verbose.stderr


def test_a_backfill_runs_a_markets_years_together_up_to_a_runs_pages() -> None:
    """One ranged run per market for as many years as ~5,000 candle requests hold (Binance:
    nine years of 1m), not a run per year: a run's own seconds are paid once, and the
    years' archive files download together."""

    def runs(tf: str) -> list[list[str]]:
        market = Market("binance", parse_symbol("BTC/USDT"), Timeframe.parse(tf), date(2015, 1, 1))
        return [p.years for p in plan([market], date(2015, 1, 1), date(2026, 1, 1))]

    years = [str(y) for y in range(2015, 2026)]
    assert runs("1m") == [years[:9], years[9:]]
    assert runs("5m") == runs("1d") == [years]
