"""The code location loads, as `dagster definitions validate` and the webserver see it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate_passes() -> None:
    env = {**os.environ, "MARKET_DATA_CONFIG": str(ROOT / "watchlist.yaml"), "DAGSTER_HOME": ""}
    env.pop("DAGSTER_HOME")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_a_broken_watchlist_fails_loading_with_the_entry_named(tmp_path: Path) -> None:
    bad = tmp_path / "watchlist.yaml"
    bad.write_text("exchanges:\n  binance:\n    markets: [BTC/USDT/7m]\n")
    env = {**os.environ, "MARKET_DATA_CONFIG": str(bad)}
    result = subprocess.run(
        [sys.executable, "-c", "import market_data.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "markets[0] ('BTC/USDT/7m'): unknown timeframe '7m'" in result.stderr


def test_the_postgres_instance_matches_the_embedded_one_below_storage() -> None:
    import yaml

    embedded = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    postgres = yaml.safe_load((ROOT / "dagster.postgres.yaml").read_text())
    url = {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}
    storages = {
        name: postgres.pop(name)
        for name in ("run_storage", "event_log_storage", "schedule_storage")
    }
    assert all(s["config"] == url for s in storages.values())
    assert storages["event_log_storage"]["class"] == "MarketKeysCachedEventLogStorage"
    assert not set(storages) & set(embedded) and "storage" not in embedded
    assert postgres == embedded


def test_the_celery_instance_is_the_postgres_one_with_the_celery_launcher() -> None:
    import yaml

    postgres = yaml.safe_load((ROOT / "dagster.postgres.yaml").read_text())
    celery = yaml.safe_load((ROOT / "dagster.celery.yaml").read_text())
    launcher = celery.pop("run_launcher")
    assert launcher == {
        "module": "market_data.defs.queues",
        "class": "CeleryWatchedRunLauncher",
        "config": {"broker": {"env": "CELERY_BROKER_URL"},
                   "backend": {"env": "CELERY_RESULT_BACKEND"}},
    }  # fmt: skip
    postgres.pop("run_launcher")
    assert celery == postgres


def test_runs_go_to_the_queue_of_the_exchange_they_talk_to() -> None:
    from market_data.defs.queues import celery_priority, queue_of

    def run(*keys: str, **tags: str) -> dg.DagsterRun:
        selection = {dg.AssetKey.from_user_string(k) for k in keys} if keys else None
        return dg.DagsterRun(job_name="__ASSET_JOB", asset_selection=selection, tags=tags)

    assert queue_of(run("candles/binance/1h")) == "exchange.binance"
    assert queue_of(run("candles/kraken/1m", "candles/kraken/1d")) == "exchange.kraken"
    assert queue_of(run("instruments/coinbase")) == "exchange.coinbase"
    assert queue_of(run("orderbooks/binance")) == "exchange.binance"
    assert queue_of(run("composite/candles")) == "dagster"
    assert queue_of(run()) == "dagster"  # a check-only run
    assert queue_of(run("candles/binance/1h", "candles/kraken/1h")) == "dagster"  # two at once
    assert queue_of(run("candles/binance/1h", **{"dagster-celery/queue": "mine"})) == "mine"
    urgent, plain, low = (run(**{"dagster/priority": p}) for p in ("10", "0", "-10"))
    assert celery_priority(urgent) > celery_priority(plain) > celery_priority(low) >= 0
    assert celery_priority(urgent) <= 9 and celery_priority(run()) == celery_priority(plain)
    assert celery_priority(run(**{"dagster/priority": "x"})) == celery_priority(plain)


def _printed_by(code: str, watchlist: Path = ROOT / "watchlist.yaml") -> str:
    """What ``code`` prints in a fresh interpreter loading ``watchlist`` (the demo's)."""
    env = {**os.environ, "MARKET_DATA_CONFIG": str(watchlist)}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_sensor_schedule_and_job_is_defined() -> None:
    printed = _printed_by(
        "from market_data.definitions import defs;"
        "print(sorted(s.name for s in defs.sensors), sorted(s.name for s in defs.schedules),"
        " sorted(a.key.to_user_string() for a in defs.assets))"
    )
    assert printed == (
        "['alerts', 'composites', 'consistency', 'freshness', 'gap_repair', 'live_status', 'orderbooks', 'watchlist'] "
        "['gap_sweep_daily', 'instruments_daily', 'status_report'] "
        "['candles/binance/1d', 'candles/binance/1h', 'candles/bitfinex/1h', 'candles/coinbase/1d', "
        "'candles/coinbase/1h', 'candles/kraken/1d', 'candles/kraken/1h', 'composite/candles', "
        "'instruments/binance', 'instruments/bitfinex', 'instruments/coinbase', 'instruments/kraken', "
        "'orderbooks/binance', 'reports/status']"
    )


def test_an_exchange_url_from_the_environment_overrides_the_watchlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from market_data.config import load_watchlist
    from market_data.defs.resources import build_resources

    path = tmp_path / "watchlist.yaml"
    path.write_text("exchanges:\n  binance:\n    base_url: http://127.0.0.1:1\n")
    monkeypatch.delenv("MARKET_DATA_BINANCE_URL", raising=False)
    assert load_watchlist(path).exchange("binance").base_url == "http://127.0.0.1:1"
    monkeypatch.setenv("MARKET_DATA_BINANCE_URL", "http://127.0.0.1:2")
    resource = build_resources(load_watchlist(path))["exchanges"]
    client = resource.process_config_and_initialize().client("binance")
    assert client.exchange.urls["api"]["public"] == "http://127.0.0.1:2/api/v3"


def test_exchange_settings_reach_the_resource_with_their_defaults() -> None:
    from market_data.defs.resources import ExchangeConfig
    from market_data.domain.watchlist import ExchangeSettings

    # One source: the resource's config mirrors every setting and takes its defaults from it.
    assert set(ExchangeConfig.model_fields) == set(ExchangeSettings.__dataclass_fields__)
    settings = ExchangeSettings("kraken", rate_limit_ms=5, retry_attempts=2)
    assert ExchangeConfig.of(settings).settings() == settings
    assert ExchangeConfig(name="kraken").settings() == ExchangeSettings("kraken")


def test_every_schedule_sensor_and_job_says_what_it_does() -> None:
    """The UI shows these descriptions in its lists; Dagster's own implicit jobs aside."""
    printed = _printed_by(
        "from market_data.definitions import defs\n"
        "r = defs.get_repository_def()\n"
        "items = [*r.sensor_defs, *r.schedule_defs, *r.get_all_jobs()]\n"
        "print(sorted(i.name for i in items if not i.name.startswith('__') and not i.description))"
    )
    assert printed == "[]"


def test_the_composite_is_downstream_of_every_candle_asset_of_its_timeframes() -> None:
    printed = _printed_by(
        "import dagster as dg\n"
        "from market_data.definitions import defs\n"
        "graph = defs.get_repository_def().asset_graph\n"
        "node = graph.get(dg.AssetKey(['composite', 'candles']))\n"
        "print(sorted(k.to_user_string() for k in node.parent_keys), sorted(node.check_keys))"
    )
    assert printed.startswith(
        "['candles/binance/1h', 'candles/bitfinex/1h', 'candles/coinbase/1h', 'candles/kraken/1h'] "
    )
    assert "name='divergence'" in printed


def test_loading_the_code_location_turns_on_batched_event_writes() -> None:
    """Every process that runs a step loads market_data.defs: it turns on Dagster's batched
    writes of asset events (bench/run_events.py), unless the environment says otherwise."""
    code = "import os, market_data.definitions; print(os.environ['DAGSTER_EVENT_BATCH_SIZE'])"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_EVENT_BATCH_SIZE"}
    env["MARKET_DATA_CONFIG"] = str(ROOT / "watchlist.yaml")
    for given, expected in ((None, "1000"), ("7", "7")):
        run_env = env if given is None else {**env, "DAGSTER_EVENT_BATCH_SIZE": given}
        done = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", code],
            cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_a_ui_backfill_runs_about_as_many_pages_per_run_at_every_timeframe(
    tmp_path: Path,
) -> None:
    """A backfill launched from the UI is cut by each candle asset's backfill policy: as many
    market-years per run as make about PAGES_PER_RUN requests at the exchange's page size."""
    watchlist = tmp_path / "watchlist.yaml"
    watchlist.write_text(
        "exchanges:\n"
        "  binance: {markets: [{symbol: BTC/USDT, timeframes: [1m, 5m, 15m, 1h, 4h, 1d]}]}\n"
        "  coinbase: {markets: [BTC/USD/1h]}\n"
    )
    printed = _printed_by(
        "import dagster as dg\n"
        "from market_data.definitions import defs\n"
        "graph = defs.get_repository_def().asset_graph\n"
        "for key in sorted(k.to_user_string() for k in graph.get_all_asset_keys()):\n"
        "    if key.startswith('candles/binance/') or key == 'candles/coinbase/1h':\n"
        "        node = graph.get(dg.AssetKey(key.split('/')))\n"
        "        print(key, node.backfill_policy.max_partitions_per_run)\n",
        watchlist,
    )
    per_run = dict(line.split() for line in printed.splitlines())
    # Binance serves 1,000 candles a page: a year of 1m is 528 pages, of 15m 36, of 1h 9
    assert per_run == {
        "candles/binance/1m": "9", "candles/binance/5m": "47", "candles/binance/15m": "138",
        "candles/binance/1h": "500", "candles/binance/4h": "500", "candles/binance/1d": "500",
        "candles/coinbase/1h": "166",  # 300 candles a page: 30 pages a year
    }  # fmt: skip
