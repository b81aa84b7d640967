"""Deep history from Binance's public data archive against the candle endpoint alone, same
simulator (a process of its own, its archive at /binance-archive), runs alternated.

1. One market, three years of 1m (BTC/USDT, 2023-2025: 1,576,800 candles), 100 ms of latency
   on every request (API and archive files): `market-data backfill` with the archive
   (`archive_url`) and with `archive: false`; wall, klines weight spent, archive files,
   client CPU and peak RSS, each run into a fresh PostgreSQL database.
2. MARKETS markets (default 100) x 2025 of 1m from the archive, one `market-data backfill`
   command: wall, peak RSS, candles stored, weight spent.

    python bench/archive.py [--rounds 2] [--markets 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml
from common import admin, scratch_database, simulator  # bench/, on sys.path
from vs_freqtrade import measured

from market_data.simulator.markets import MARKETS, Kind, extra_pairs

ROOT = Path(__file__).resolve().parents[1]
MD = Path(sys.executable).with_name("market-data")
NOW = "2026-01-02T00:00Z"
LATENCY = {"latency_ms": 100}
MONTHLY = "/binance-archive/data/spot/monthly/klines"
KLINES = ("/api/v3/klines", "/fapi/v1/klines")  # the candle endpoint (archive paths end alike)


@dataclass
class Run:
    route: str
    wall_s: float
    cpu_s: float
    rss_mb: float
    weight: int
    klines: int
    files: int
    candles: int


def spent(sim_url: str) -> tuple[int, int, int]:
    """(klines weight answered 200, klines requests, archive zips served) since the reset."""
    timeline = [r for r in admin(sim_url, "timeline") if r["path"] in KLINES]
    weight = sum(r["weight"] for r in timeline if r["status"] == 200)
    stats = admin(sim_url, "stats")["requests"]
    files = stats.get(MONTHLY, {}).get("200", 0) // 2  # each zip and its .CHECKSUM
    return weight, len(timeline), files


def backfill(sim_url: str, symbols: list[str], start: str, end: str, archive: bool) -> Run:
    settings: dict[str, object] = {"base_url": sim_url, "markets": [f"{s}/1m" for s in symbols]}
    settings |= {"archive_url": f"{sim_url}/binance-archive"} if archive else {"archive": False}
    with (
        tempfile.TemporaryDirectory(prefix="md-archive-") as tmp,
        scratch_database("md_arch") as db,
    ):
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
        config = Path(tmp) / "watchlist.yaml"
        config.write_text(yaml.safe_dump({"start": start, "exchanges": {"binance": settings}}))
        env = {**os.environ, "DAGSTER_HOME": str(home), "MARKET_DATA_CONFIG": str(config),
               "DATABASE_URL": db}  # fmt: skip
        args = [str(MD), "backfill", "--exchange", "binance", "--timeframe", "1m", "--start",
                start, "--end", end, *(a for s in symbols for a in ("--symbol", s))]  # fmt: skip
        wall, cpu, rss, _ = measured(args, env)
        engine = sa.create_engine(db)
        with engine.connect() as conn:
            candles = int(conn.execute(sa.text("SELECT count(*) FROM candles")).scalar() or 0)
        engine.dispose()
    weight, klines, files = spent(sim_url)
    return Run("archive" if archive else "candle endpoint", wall, cpu, rss, weight, klines,
               files, candles)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--markets", type=int, default=100)
    args = parser.parse_args()
    spot = [m for m in (*MARKETS, *extra_pairs(args.markets * 3)) if m.kind is Kind.SPOT
            and m.quote == "USDT" and m.ends_ms is None and m.empty_share == 0
            and m.listed_ms <= 1_735_689_600_000][: args.markets]  # fmt: skip
    assert len(spot) == args.markets, f"only {len(spot)} spot markets listed before 2025"
    runs: list[Run] = []
    with simulator(NOW, "--extra-pairs", str(args.markets * 3)) as sim_url:
        for i in range(args.rounds):
            for archive in (True, False) if i % 2 == 0 else (False, True):
                admin(sim_url, "reset", {})
                admin(sim_url, "faults", LATENCY)
                run = backfill(sim_url, ["BTC/USDT"], "2023-01-01", "2026-01-01", archive)
                runs.append(run)
                print(f"BTC 3 years {run.route:16} {run.wall_s:6.1f} s  weight {run.weight:5d}  "
                      f"files {run.files:3d}  cpu {run.cpu_s:5.1f} s  rss {run.rss_mb:4.0f} MB",
                      file=sys.stderr)  # fmt: skip
        admin(sim_url, "reset", {})
        admin(sim_url, "faults", LATENCY)
        symbols = [f"{m.base}/{m.quote}" for m in spot]
        started = time.perf_counter()
        many = backfill(sim_url, symbols, "2025-01-01", "2026-01-01", True)
        print(f"{args.markets} markets: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print("\n| route | wall s | klines weight | klines requests | archive files | client CPU s "
          "| peak RSS MB | candles |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r.route} | {r.wall_s:.1f} | {r.weight} | {r.klines} | {r.files} | "
              f"{r.cpu_s:.1f} | {r.rss_mb:.0f} | {r.candles} |")  # fmt: skip
    arch = [r for r in runs if r.route == "archive"]
    rest = [r for r in runs if r.route != "archive"]

    def med(rs: list[Run], f: str) -> float:
        return statistics.median(getattr(r, f) for r in rs)

    print(f"\nBTC/USDT 3 years of 1m: wall archive/candle endpoint = "
          f"{med(arch, 'wall_s') / med(rest, 'wall_s'):.2f}; weight "
          f"{med(arch, 'weight') / med(rest, 'weight'):.1%} of the candle endpoint's")  # fmt: skip
    print(f"{args.markets} markets x 2025 of 1m from the archive: {many.wall_s:.0f} s, peak RSS "
          f"{many.rss_mb:.0f} MB, {many.candles} candles, {many.files} files, klines weight "
          f"{many.weight} (target <= 600 s, <= 600 MB)")  # fmt: skip


if __name__ == "__main__":
    main()
