"""Order book snapshots: 50 symbols x 100 levels a side every 10 s into PostgreSQL.

The simulator (a process of its own, clock running in real time, 50 extra spot pairs) serves
Binance's depth endpoint; the project's snapshot step (pipeline/orderbooks.py, as the asset
and the live service call it: all symbols concurrently within ccxt's throttle, then one
transaction) runs every 10 s for ROUNDS rounds. Reported: how long a round takes against its
10 s, the rows written per second while writing (one row per snapshot, its 2 x 100 levels
in arrays) and the levels that makes, the rows per second this cadence needs, and the
table's size (heap, TOAST and index) per snapshot, scaled to a day (50 x 8,640 snapshots).
On loopback and with 100 ms between exchange and client.

    python bench/orderbooks.py     # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime

import sqlalchemy as sa
from common import admin, scratch_database, simulator  # bench/, on sys.path as a script

from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.client import ExchangeClient
from market_data.pipeline.orderbooks import snapshot
from market_data.simulator.markets import extra_symbols
from market_data.store.candles import CandleStore

SYMBOLS = 50
DEPTH = 100
INTERVAL_S = 10
ROUNDS = 6
START = "2026-11-20T12:00:00+00:00"
#: extra bases the simulator lists; their spot pairs trading at START, the first SYMBOLS of them
BASES = SYMBOLS * 5 // 4
SPOT = extra_symbols(BASES, int(datetime.fromisoformat(START).timestamp() * 1000))[:SYMBOLS]


async def rounds(url: str, store: CandleStore) -> tuple[list[float], float, int]:
    client = ExchangeClient.of(ExchangeSettings("binance", url))
    symbols = {s.replace("/", "-") + "-SPOT": s for s in SPOT}
    writing, rows, durations = 0.0, 0, []
    write = store.orderbooks.write

    def timed(exchange: str, books: list) -> int:  # type: ignore[type-arg]
        nonlocal writing
        started = time.perf_counter()
        try:
            return write(exchange, books)
        finally:
            writing += time.perf_counter() - started

    store.orderbooks.write = timed  # type: ignore[method-assign]
    try:
        for _ in range(ROUNDS):
            started = time.perf_counter()
            taken = await snapshot(client, store, symbols, DEPTH)
            assert not taken.failed, taken.failed
            rows += taken.stored
            durations.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, INTERVAL_S - durations[-1]))
    finally:
        await client.close()
    return durations, writing, rows


def main() -> None:
    print(f"{SYMBOLS} symbols x {DEPTH} levels a side every {INTERVAL_S}s, {ROUNDS} rounds")
    print(
        "latency | round p50 | max | rows/s writing (levels/s) | rows/s at cadence | bytes/snapshot | per day"
    )
    for latency in (0, 100):
        with (
            simulator(START, "--extra-pairs", str(BASES)) as url,
            scratch_database("md_bench_books") as db,
        ):
            admin(url, "clock", {"run_from_ms": admin(url, "clock")["now_ms"], "rate": 1})
            admin(url, "faults", {"latency_ms": latency})
            store = CandleStore(db)
            durations, writing, rows = asyncio.run(rounds(url, store))
            with store.engine.connect() as conn:
                size = conn.execute(
                    sa.text("SELECT pg_total_relation_size('orderbook_snapshots')")
                ).scalar_one()
            store.dispose()
        snapshots = SYMBOLS * ROUNDS
        per_day = size / snapshots * SYMBOLS * 86_400 / INTERVAL_S
        print(
            f"{latency:>4} ms | {statistics.median(durations):>7.2f} s | {max(durations):.2f} s | "
            f"{rows / writing:>8,.0f} ({2 * DEPTH * rows / writing:,.0f}) | "
            f"{rows / (ROUNDS * INTERVAL_S):>6,.0f} | "
            f"{size / snapshots:>10,.0f} | {per_day / 1e9:.1f} GB"
        )


if __name__ == "__main__":
    main()
