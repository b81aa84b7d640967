"""Kraken's history from its trades: one market, a year of 1m, at Kraken's rate limit.

Kraken's OHLC serves the newest 720 candles; the rest of a year of BTC/USD 1m is built
from `/0/public/Trades` (1,000 trades a request). `market-data backfill` of 2025 against the
simulator (a process of its own, its clock at 2026-01-01 12:00 UTC, 100 ms of latency on
every request, Kraken's public budget of one request a second with a burst of two) with
ccxt's own throttle for Kraken (1.2 s a Trades request), into a fresh PostgreSQL database:
wall, Trades and OHLC requests, rate limits met, candles stored, client CPU and peak RSS.
The simulator trades four times a minute (2.1 million trades a year); a real market's
count is its trades a day x days / 1,000 requests (printed for a few rates).

    python bench/kraken_trades.py [--days 365]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml
from common import admin, scratch_database, simulator  # bench/, on sys.path
from vs_freqtrade import measured

ROOT = Path(__file__).resolve().parents[1]
MD = Path(sys.executable).with_name("market-data")
NOW = "2026-01-01T12:00Z"
END = datetime(2026, 1, 1, tzinfo=UTC)
#: a request per this many seconds: ccxt's Kraken throttle (rateLimit 1 s x Trades cost 1.2)
CCXT_S = 1.2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365, help="history to build, ending 2026-01-01")
    args = parser.parse_args()
    start = (END - timedelta(days=args.days)).strftime("%Y-%m-%d")
    with (
        simulator(NOW) as sim_url,
        tempfile.TemporaryDirectory(prefix="md-kraken-") as tmp,
        scratch_database("md_kraken") as db,
    ):
        admin(f"{sim_url}/kraken", "faults", {"latency_ms": 100})
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
        config = Path(tmp) / "watchlist.yaml"
        kraken = {"base_url": f"{sim_url}/kraken", "markets": ["BTC/USD/1m"]}
        config.write_text(yaml.safe_dump({"start": start, "exchanges": {"kraken": kraken}}))
        env = {**os.environ, "DAGSTER_HOME": str(home), "MARKET_DATA_CONFIG": str(config),
               "DATABASE_URL": db}  # fmt: skip
        run = [str(MD), "backfill", "--exchange", "kraken", "--timeframe", "1m", "--symbol",
               "BTC/USD", "--start", start, "--end", "2026-01-01"]  # fmt: skip
        wall, cpu, rss, out = measured(run, env)
        engine = sa.create_engine(db)
        with engine.connect() as conn:
            candles = conn.execute(sa.text("SELECT count(*) FROM candles")).scalar()
            by_source = sa.text(
                "SELECT coalesce(source, 'rest'), sum(candles) FROM fetch_coverage GROUP BY 1"
            )
            sources = {k: int(v) for k, v in conn.execute(by_source).all()}
        engine.dispose()
        stats = admin(f"{sim_url}/kraken", "stats")
    by_path = {p.rsplit("/", 1)[-1]: sum(c.values()) for p, c in stats["requests"].items()}
    trades = by_path.get("Trades", 0)
    minutes = args.days * 1440
    print(out[-1500:], file=sys.stderr)
    print(f"\nKraken BTC/USD 1m, {args.days} days ({start}..2026-01-01), latency 100 ms\n")
    print("| wall s | Trades requests | OHLC requests | rate limited | s per Trades request "
          "| candles stored | from trades | client CPU s | peak RSS MB |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {wall:.0f} | {trades} | {by_path.get('OHLC', 0)} | {stats['rate_limited']} | "
          f"{wall / max(trades, 1):.2f} | {candles} | {sources.get('trades', 0)} | {cpu:.0f} | "
          f"{rss:.0f} |")  # fmt: skip
    print(f"\nsimulator: {minutes * 4:,} trades -> {-(-minutes * 4 // 1000):,} requests at least")
    print("real world, requests = trades a day x days / 1,000, at ccxt's 1.2 s a request:")
    for per_day in (5_000, 20_000, 50_000, 100_000):
        n = -(-per_day * args.days // 1000)
        print(f"  {per_day:>7,} trades a day: {n:>7,} requests, {n * CCXT_S / 3600:5.1f} h")


if __name__ == "__main__":
    main()
