"""The live service under load: 200 markets x 1m streamed on one connection set.

The simulator (a process of its own, 200 of its extra spot pairs X<i>/USDT) runs its clock
RATE times faster than real time, so a 1m candle of every market closes every 60/RATE s;
`market-data live` (a process of its own) streams all 200 into a fresh PostgreSQL database.
For every candle the stream stored, close-to-stored is the wall time its fetch coverage was
written (read every second: common.StoredCloses) minus the wall time the simulator's clock reached the candle's close (the clock
runs on a known line: wall = (exchange ms - offset) / rate); sent->stored starts when the
simulator sent the close event (it builds the 200 events from its generator first, a cost a
real exchange does not have in the same way). CPU: the live process's user +
system time over the measured window, as a share of one core. Twice: on loopback and with
100 ms between the exchange and the service (each event and REST answer sent 100 ms late).

The closes come RATE times more often than on a real exchange; the kline updates between
them (one every 2 s per stream, as Binance sends them) come as often as in reality. The CPU
share is therefore an upper bound of the real one.

    python bench/live.py        # PostgreSQL: DATABASE_URL, else 127.0.0.1:5432
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml
from common import StoredCloses, admin, scratch_database, simulator  # bench/ (sys.path)

from market_data.simulator.markets import extra_symbols
from market_data.store.candles import CandleStore

MARKETS = 200
RATE = 10.0  # a 1m close every 6 s
CLOSES = 10
MINUTE = 60_000
START = "2026-11-20T12:00:00+00:00"
#: extra bases the simulator lists; their spot pairs trading at START, the first MARKETS of them
BASES = MARKETS * 5 // 4
SPOT = extra_symbols(BASES, int(datetime.fromisoformat(START).timestamp() * 1000))[:MARKETS]
EXE = str(Path(sys.executable).with_name("market-data"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, db: str, latency_ms: int, folder: Path) -> dict[str, float]:
    admin(url, "faults", {"latency_ms": latency_ms})
    now = admin(url, "clock")["now_ms"]
    admin(url, "clock", {"run_from_ms": now, "rate": RATE})
    config = folder / "watchlist.yaml"
    markets = [f"{s}/1m" for s in SPOT]
    config.write_text(
        yaml.safe_dump(
            {
                "start": "2026-11-20",
                "exchanges": {
                    "binance": {"base_url": url, "rate_limit_ms": 50, "markets": markets}
                },
                "live": {"refresh_s": 30, "heartbeat_s": 1},
            }
        )
    )
    env = {**os.environ, "DATABASE_URL": db, "MARKET_DATA_CONFIG": str(config)}
    proc = subprocess.Popen([EXE, "live"], env=env, stdout=subprocess.PIPE, text=True)
    store = CandleStore(db)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # subscribed, and the REST fill done
            s = store.live.service("binance")
            streaming = s is not None and s.streams == MARKETS and s.connected == s.connections == 1
            if streaming and s is not None and s.closes_stored >= MARKETS:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the live service did not start streaming")
        t0, cpu0 = time.time(), cpu_seconds(proc.pid)
        stored = StoredCloses(store, "binance", {"1m": MINUTE}, t0 * 1000)
        stored.until(t0 + CLOSES * MINUTE / RATE / 1000)
        t1, cpu1 = time.time(), cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    clock = admin(url, "clock")
    sent = {
        (r["stream"].split("@")[0].upper().removesuffix("USDT"), r["t"]): r["sent"] * 1000
        for r in admin(url, "ws/closes")
    }
    rows = [  # the stream's closes (a REST fill's window is not one the simulator sent)
        (sym, ts, at)
        for (sym, _, ts), at in stored.at.items()
        if at <= t1 * 1000 and (sym.split("-")[0], ts) in sent
    ]
    latencies = sorted(
        fetched - (ts + MINUTE - clock["offset_ms"]) / clock["rate"] for _, ts, fetched in rows
    )
    # the part after the exchange sent the close (the simulator builds 200 events first)
    ours = sorted(fetched - sent[(sym.split("-")[0], ts)] for sym, ts, fetched in rows)
    store.dispose()
    return {
        "candles": len(latencies),
        "p50": statistics.median(latencies),
        "p99": latencies[int(0.99 * (len(latencies) - 1))],
        "max": latencies[-1],
        "cpu": (cpu1 - cpu0) / (t1 - t0),
        "sent_p50": statistics.median(ours),
        "sent_p99": ours[int(0.99 * (len(ours) - 1))],
    }


def main() -> None:
    print(f"{MARKETS} markets x 1m on one connection, clock x{RATE:.0f} ({CLOSES} closes each)")
    print(
        "latency | candles | close->stored p50 | p99 | max | sent->stored p50 | p99 | CPU of one core"
    )
    for latency in (0, 100):
        with (
            simulator(START, "--extra-pairs", str(BASES)) as url,
            scratch_database("md_bench_live") as db,
            tempfile.TemporaryDirectory() as folder,
        ):
            r = run(url, db, latency, Path(folder))
        print(
            f"{latency:>4} ms | {r['candles']:>7.0f} | {r['p50']:>8.0f} ms | {r['p99']:>5.0f} ms | "
            f"{r['max']:>5.0f} ms | {r['sent_p50']:>5.0f} ms | {r['sent_p99']:>5.0f} ms | "
            f"{100 * r['cpu']:.1f}%"
        )


if __name__ == "__main__":
    main()
