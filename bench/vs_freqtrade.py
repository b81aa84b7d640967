"""market-data against freqtrade's downloader, same simulator, runs alternated.

One year of BTC/USDT 1m candles (2025: 525,600 candles, 526 pages of 1000), fetched by
`market-data backfill` (into a fresh PostgreSQL database, a Dagster run as users run it)
and by `freqtrade download-data` (feather files), each a process of its own, against one
simulator process, in two scenarios:

  latency: the simulator answers after 100 ms (a real exchange's round trip); both tools
           keep ccxt's default throttle, Binance's own limit (50 klines requests/s)
  loopback: no latency, no throttle: what the client itself costs

Per run: wall seconds, klines requests and their rate while fetching (share of the 50/s
ceiling), client CPU seconds (user + system of the process), peak RSS. freqtrade is
installed into its own virtualenv (.bench/freqtrade) from the package registry if missing.

    python bench/vs_freqtrade.py [--rounds 2] [--scenario latency|loopback]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ccxt
import yaml
from common import admin, scratch_database, simulator  # bench/, on sys.path

from market_data.exchanges.client import rewrite_urls

ROOT = Path(__file__).resolve().parents[1]
FT_VENV = ROOT / ".bench" / "freqtrade"
FT_VERSION = "2026.9"
MD = Path(sys.executable).with_name("market-data")
NOW = "2026-01-02T00:00Z"
CANDLES, PAGES = 525_600, 526
CEILING = 50.0  # klines/s: Binance spot's 6000 weight a minute at weight 2 each
SCENARIOS = {"latency": {"latency_ms": 100}, "loopback": {"latency_ms": 0}}


@dataclass
class Run:
    tool: str
    scenario: str
    wall_s: float
    cpu_s: float
    rss_mb: float
    requests: int
    rate: float  # klines requests per second while fetching
    candles: int

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_s * 1000 / (self.candles / 1000) if self.candles else float("nan")


def ensure_freqtrade() -> Path:
    exe = FT_VENV / "bin" / "freqtrade"
    if not exe.exists():
        print(f"installing freqtrade {FT_VERSION} into {FT_VENV} (package registry)...")
        subprocess.run([sys.executable, "-m", "venv", str(FT_VENV)], check=True)
        pip = str(FT_VENV / "bin" / "pip")
        subprocess.run([pip, "install", "-q", f"freqtrade=={FT_VERSION}"], check=True)
    return exe


def measured(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Run a process to its end: (wall s, CPU s, peak RSS MB, output)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this process's own CPU and memory
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}):\n{text[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


def klines_rate(sim_url: str) -> tuple[int, float]:
    """(klines requests answered 200, their rate per second from first to last)."""
    timeline = [r for r in admin(sim_url, "timeline") if r["path"] == "/api/v3/klines"]
    ok = [r["t"] for r in timeline if r["status"] == 200]
    span = max(ok) - min(ok) if len(ok) > 1 else float("nan")
    return len(timeline), (len(ok) - 1) / span


def run_market_data(sim_url: str, scenario: str, tmp: Path) -> Run:
    settings: dict[str, object] = {"base_url": sim_url, "markets": ["BTC/USDT/1m"]}
    if scenario == "loopback":
        settings["rate_limit_ms"] = 0
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    config = tmp / "watchlist.yaml"
    config.write_text(yaml.safe_dump({"start": "2025-01-01", "exchanges": {"binance": settings}}))
    with scratch_database("md_vs_ft") as db:
        env = {**os.environ, "DAGSTER_HOME": str(home), "MARKET_DATA_CONFIG": str(config),
               "DATABASE_URL": db}  # fmt: skip
        wall, cpu, rss, out = measured(
            [str(MD), "backfill", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe",
             "1m", "--start", "2025-01-01", "--end", "2026-01-01"], env)  # fmt: skip
        requests, rate = klines_rate(sim_url)
        stored = int(out.split(" rows written")[0].rsplit(maxsplit=1)[-1])
    return Run("market-data", scenario, wall, cpu, rss, requests, rate, stored)


def run_freqtrade(
    exe: Path,
    sim_url: str,
    scenario: str,
    tmp: Path,
    timerange: str = "20250101-20260101",
    archive_host: str | None = None,
) -> Run:
    """`freqtrade download-data` of BTC/USDT 1m over ``timerange``: over the candle endpoint
    only (``only_from_ccxt``), or, given ``archive_host``, as freqtrade does by default for
    Binance: daily files of its public data archive first (from that host instead of
    data.binance.vision: bench/freqtrade_archive_host.py), the candle endpoint after."""
    api = rewrite_urls(ccxt.binance().urls["api"], sim_url)
    ccxt_config: dict[str, object] = {"urls": {"api": api}}
    if scenario == "loopback":
        ccxt_config["enableRateLimit"] = False
    data = tmp / "user_data" / "data" / "binance"
    data.mkdir(parents=True)
    config = {
        "exchange": {"name": "binance", "key": "", "secret": "",
                     "only_from_ccxt": archive_host is None,
                     "ccxt_config": ccxt_config, "ccxt_async_config": ccxt_config,
                     "pair_whitelist": ["BTC/USDT"]},
        "stake_currency": "USDT", "dry_run": True, "trading_mode": "spot",
        "user_data_dir": str(tmp / "user_data"), "datadir": str(data),
        "dataformat_ohlcv": "feather", "pairlists": [{"method": "StaticPairList"}],
    }  # fmt: skip
    (tmp / "config.json").write_text(json.dumps(config))
    command = [str(exe)]
    if archive_host is not None:
        launcher = Path(__file__).with_name("freqtrade_archive_host.py")
        command = [str(exe.with_name("python")), str(launcher), archive_host]
    wall, cpu, rss, out = measured(
        [*command, "download-data", "--config", str(tmp / "config.json"), "--timerange",
         timerange, "-t", "1m", "--pairs", "BTC/USDT"])  # fmt: skip
    requests, rate = klines_rate(sim_url)
    length = int(out.split("with length ")[1].split(".")[0]) if "with length " in out else 0
    return Run("freqtrade", scenario, wall, cpu, rss, requests, rate, length)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    exe = ensure_freqtrade()
    runs: list[Run] = []
    with simulator(NOW) as sim_url:
        for scenario in args.scenario or list(SCENARIOS):
            for i in range(args.rounds):
                for tool in (
                    ("market-data", "freqtrade") if i % 2 == 0 else ("freqtrade", "market-data")
                ):
                    admin(sim_url, "reset", {})
                    admin(sim_url, "faults", SCENARIOS[scenario])
                    tmp = Path(tempfile.mkdtemp(prefix="md-vs-ft-"))
                    try:
                        run = (
                            run_market_data(sim_url, scenario, tmp)
                            if tool == "market-data"
                            else run_freqtrade(exe, sim_url, scenario, tmp)
                        )
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                    runs.append(run)
                    print(f"{scenario:8} {tool:11} {run.wall_s:6.1f} s  {run.rate:5.1f} req/s  "
                          f"cpu {run.cpu_s:5.1f} s  rss {run.rss_mb:4.0f} MB", file=sys.stderr)  # fmt: skip
    print(
        f"\n{CANDLES} 1m candles of BTC/USDT, {PAGES} pages; rate ceiling {CEILING:.0f} klines/s\n"
    )
    print("| scenario | tool | wall s | klines requests | req/s fetching | of ceiling | client CPU s "
          "| CPU ms / 1000 candles | peak RSS MB |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r.scenario} | {r.tool} | {r.wall_s:.1f} | {r.requests} | {r.rate:.1f} | "
              f"{r.rate / CEILING:.0%} | {r.cpu_s:.1f} | {r.cpu_ms_per_1000:.1f} | {r.rss_mb:.0f} |")  # fmt: skip
    print()
    for scenario in args.scenario or list(SCENARIOS):
        md = [r for r in runs if r.scenario == scenario and r.tool == "market-data"]
        ft = [r for r in runs if r.scenario == scenario and r.tool == "freqtrade"]

        def med(rs: list[Run], f: str) -> float:
            return statistics.median(getattr(r, f) for r in rs)

        print(f"{scenario}: wall market-data/freqtrade = {med(md, 'wall_s') / med(ft, 'wall_s'):.2f}; "
              f"CPU per 1000 candles = {med(md, 'cpu_ms_per_1000') / med(ft, 'cpu_ms_per_1000'):.2f}; "
              f"market-data at {med(md, 'rate') / CEILING:.0%} of the ceiling; "
              f"peak RSS {med(md, 'rss_mb'):.0f} MB vs {med(ft, 'rss_mb'):.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
