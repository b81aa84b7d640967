"""Small helpers for tests: free ports, raw HTTP against the simulator, exchange clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.client import SyncExchangeClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binance_client(base_url: str | None = None, **settings: Any) -> SyncExchangeClient:
    """A real ccxt Binance client, pointed at ``base_url`` (the simulator), unthrottled;
    called one request at a time (close it when done)."""
    return SyncExchangeClient.of(
        ExchangeSettings("binance", base_url, **{"rate_limit_ms": 0, **settings})
    )


def http_get(base: str, path: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body) of a GET, errors included."""
    url = f"{base}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback only)
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def admin(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    method = "POST" if data else "GET"
    req = urllib.request.Request(f"{base}/admin/{path}", data=data, method=method)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())


ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("market-data"))


def cli_env(
    tmp_path: Path,
    sim_url: str,
    database_url: str,
    markets: list[str],
    start: str = "2026-01-01",
    exchange_name: str = "binance",
    **exchange: Any,
) -> dict[str, str]:
    """The environment of a `market-data` process: its own Dagster instance (dagster.yaml),
    a watchlist of ``markets`` of one exchange on the simulator (Binance at its root, the
    others under /<name>), the candle store."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    config = tmp_path / "watchlist.yaml"
    base_url = sim_url if exchange_name == "binance" else f"{sim_url}/{exchange_name}"
    settings = {"base_url": base_url, "rate_limit_ms": 0, "step_retries": 0, **exchange}
    config.write_text(
        yaml.safe_dump(
            {"start": start, "exchanges": {exchange_name: {**settings, "markets": markets}}}
        )
    )
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MARKET_DATA_CONFIG": str(config),
        "DATABASE_URL": database_url,
    }


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `market-data` as a user does, to its end."""
    return subprocess.run(
        [EXE, *args], env=env, capture_output=True, text=True, timeout=300, input=stdin
    )


def cli_process(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start `market-data` as a process of its own (to signal or kill it)."""
    return subprocess.Popen(
        [EXE, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def add_markets(instance: Any, exchange: str, keys: list[str]) -> None:
    """Add market keys (``SYMBOL:TIMEFRAME``) to their timeframe's candle asset partitions,
    as the watchlist sensor does."""
    by_tf: dict[str, list[str]] = {}
    for key in keys:
        by_tf.setdefault(key.rpartition(":")[2], []).append(key)
    for tf, group in by_tf.items():
        instance.add_dynamic_partitions(f"markets_{exchange}_{tf}", group)
