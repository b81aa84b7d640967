"""Deep history from Binance's public data archive against the candle endpoint alone, same
simulator (a process of its own, its archive at /binance-archive), runs alternated.

1. One market, three years of 1m (BTC/USDT, 2023-2025: 1,576,800 candles), 100 ms of latency
   on every request (API and archive files): `market-data backfill` with the archive
   (`archive_url`) and with `archive: false` (each into a fresh PostgreSQL database), and
   `freqtrade download-data` 2026.9 as it runs by default for Binance (its daily archive
   files, then REST; its archive host pointed at the simulator's:
   bench/freqtrade_archive_host.py; feather files); wall, klines weight spent, archive
   files, client CPU and peak RSS. The archive is warmed first (one uncounted run of each
   tool): the simulator keeps the built files, as the real host serves prebuilt ones.
2. MARKETS markets (default 100) x 2025 of 1m from the archive, one `market-data backfill`
   command: wall, peak RSS, candles stored, weight spent; twice, the second from the files
   the first made the simulator build (`--archive-dir`: prebuilt, as the real host's).

    python bench/archive.py [--rounds 3] [--markets 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml
from common import admin, scratch_database, simulator  # bench/, on sys.path
from vs_freqtrade import ensure_freqtrade, measured, run_freqtrade

from market_data.simulator.markets import MARKETS, Kind, extra_pairs

ROOT = Path(__file__).resolve().parents[1]
MD = Path(sys.executable).with_name("market-data")
NOW = "2026-01-02T00:00Z"
LATENCY = {"latency_ms": 100}
ARCHIVE = ("/binance-archive/data/spot/monthly/klines", "/binance-archive/data/spot/daily/klines")
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


def spent(sim_url: str, checksums: bool = True) -> tuple[int, int, int]:
    """(klines weight answered 200, klines requests, archive zips served) since the reset;
    ``checksums``: each zip was fetched with its .CHECKSUM (market-data; freqtrade does not)."""
    timeline = [r for r in admin(sim_url, "timeline") if r["path"] in KLINES]
    weight = sum(r["weight"] for r in timeline if r["status"] == 200)
    stats = admin(sim_url, "stats")["requests"]
    served = sum(stats.get(family, {}).get("200", 0) for family in ARCHIVE)
    return weight, len(timeline), served // 2 if checksums else served


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
    parser.add_argument("--rounds", type=int, default=3, help="0: part 2 only")
    parser.add_argument("--markets", type=int, default=100, help="0: part 1 only")
    parser.add_argument("--archive-dir", type=Path, default=ROOT / ".bench" / "archive-files",
                        help="the simulator keeps the archive files it builds here (prebuilt "
                        "for the next runs, as the real host's)")  # fmt: skip
    args = parser.parse_args()
    spot = [m for m in (*MARKETS, *extra_pairs(args.markets * 3)) if m.kind is Kind.SPOT
            and m.quote == "USDT" and m.ends_ms is None and m.empty_share == 0
            and m.listed_ms <= 1_735_689_600_000][: args.markets]  # fmt: skip
    assert len(spot) == args.markets, f"only {len(spot)} spot markets listed before 2025"
    runs: list[Run] = []
    exe = ensure_freqtrade()
    routes = ["archive", "candle endpoint", "freqtrade"]
    extra = str(max(args.markets, 1) * 3)
    with simulator(NOW, "--extra-pairs", extra, "--archive-dir", str(args.archive_dir)) as sim_url:
        # warm-up, not counted: the simulator builds each archive file once and keeps it (256
        # MB), as the real host serves prebuilt files; both tools then download the same way
        for route in ("archive", "freqtrade") if args.rounds else ():
            admin(sim_url, "reset", {})
            one(exe, sim_url, route)
        for i in range(args.rounds):
            for route in routes[i % 3 :] + routes[: i % 3]:  # each route first in turn
                admin(sim_url, "reset", {})
                admin(sim_url, "faults", LATENCY)
                run = one(exe, sim_url, route)
                runs.append(run)
                print(f"BTC 3 years {run.route:16} {run.wall_s:6.1f} s  weight {run.weight:5d}  "
                      f"files {run.files:4d}  cpu {run.cpu_s:5.1f} s  rss {run.rss_mb:4.0f} MB  "
                      f"candles {run.candles}", file=sys.stderr)  # fmt: skip
        many = None
        if args.markets:
            symbols = [f"{m.base}/{m.quote}" for m in spot]
            # once with whatever the directory holds (a new one: each file built on demand by
            # the simulator, ~0.5 s of a core per monthly 1m file), then from prebuilt files
            for label in ("first", "prebuilt"):
                prebuilt = len(list(args.archive_dir.glob("*.zip")))
                admin(sim_url, "reset", {})
                admin(sim_url, "faults", LATENCY)
                many = backfill(sim_url, symbols, "2025-01-01", "2026-01-01", True)
                print(f"{args.markets} markets, {label} ({prebuilt} files prebuilt): "
                      f"{many.wall_s:.0f} s, peak RSS {many.rss_mb:.0f} MB, CPU "
                      f"{many.cpu_s:.0f} s, {many.candles} candles", file=sys.stderr)  # fmt: skip
    print("\n| route | wall s | klines weight | klines requests | archive files | client CPU s "
          "| peak RSS MB | candles |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r.route} | {r.wall_s:.1f} | {r.weight} | {r.klines} | {r.files} | "
              f"{r.cpu_s:.1f} | {r.rss_mb:.0f} | {r.candles} |")  # fmt: skip

    def med(route: str, f: str) -> float:
        return statistics.median(getattr(r, f) for r in runs if r.route == route)

    if not runs and many is not None:
        print(f"{args.markets} markets x 2025 of 1m from the archive: {many.wall_s:.0f} s, peak "
              f"RSS {many.rss_mb:.0f} MB, {many.candles} candles")  # fmt: skip
    if not runs:
        return
    print(f"\nBTC/USDT 3 years of 1m, medians: market-data's archive route / its candle "
          f"endpoint: wall {med('archive', 'wall_s') / med('candle endpoint', 'wall_s'):.2f}, "
          f"weight {med('archive', 'weight') / med('candle endpoint', 'weight'):.1%}; "
          f"market-data / freqtrade (both from the archive): wall "
          f"{med('archive', 'wall_s') / med('freqtrade', 'wall_s'):.2f} (target <= 0.5), "
          f"CPU {med('archive', 'cpu_s') / med('freqtrade', 'cpu_s'):.2f}, peak RSS "
          f"{med('archive', 'rss_mb'):.0f} vs {med('freqtrade', 'rss_mb'):.0f} MB")  # fmt: skip
    if many is not None:
        print(f"{args.markets} markets x 2025 of 1m from the archive: {many.wall_s:.0f} s, peak RSS "
              f"{many.rss_mb:.0f} MB, {many.candles} candles, {many.files} files, klines weight "
              f"{many.weight} (target <= 600 s, <= 600 MB)")  # fmt: skip


def one(exe: Path, sim_url: str, route: str) -> Run:
    """BTC/USDT's three years of 1m by ``route``."""
    if route == "freqtrade":
        return freqtrade(exe, sim_url)
    return backfill(sim_url, ["BTC/USDT"], "2023-01-01", "2026-01-01", route == "archive")


def freqtrade(exe: Path, sim_url: str) -> Run:
    """freqtrade 2026.9's download of the same three years, its archive route pointed at the
    simulator's archive."""
    with tempfile.TemporaryDirectory(prefix="md-archive-ft-") as tmp:
        ft = run_freqtrade(exe, sim_url, "latency", Path(tmp), "20230101-20260101",
                           archive_host=f"{sim_url}/binance-archive")  # fmt: skip
    weight, klines, files = spent(sim_url, checksums=False)
    return Run("freqtrade", ft.wall_s, ft.cpu_s, ft.rss_mb, weight, klines, files, ft.candles)


if __name__ == "__main__":
    main()
