"""The live service at a whole exchange's size (issue 25): ~2,500 markets (spot and USD-M)
x 6 timeframes, about 15,000 streams, against the simulator with Binance's limits (1024
streams per spot connection, 200 per futures one, 5 messages a second, 300 connection
attempts per 5 minutes per address and host, 6,000 / 2,400 REST weight a minute).

The simulator (a process of its own, BASES extra bases: every one a spot pair, every second
one a perpetual too) runs its clock RATE times faster than real time; `market-data live` (a
process of its own) streams every market trading at START at 1m, 5m, 15m, 1h, 4h and 1d
into a fresh PostgreSQL database. Updates of candles in progress come every 5 minutes of
wall time per stream instead of Binance's every 2 s (15,000 streams x one every 2 s is
7,500 messages a second that a Python stand-in on the same 2 cores cannot compute; the
service only reads the exchange's clock from them, and a 1m close comes every 6 s on every
connection anyway): the live service's CPU figure leaves that parsing out.

1. Start-up: until every connection is open, every stream's newest candle is stored, every
   candle since the day's start is stored (the REST fill), and it is quiet (no REST request
   and no fill ended for 20 s: the fills the first closes asked for are done).
2. CLOSES minutes of the clock measured, an hour's boundary in their middle (1m, 5m, 15m
   and 1h close at once: 10,020 closes at 15,030 streams): close->stored of every candle of
   every timeframe the stream stored (the write time of the coverage it extended, read
   every second: common.StoredCloses, minus the wall time the clock reached its close),
   split into close->sent (the simulator's lateness: its record of each close's send time)
   and sent->stored (the live service's part); CPU (user + system, share of one core) and
   RSS of the live process, CPU of the simulator.
3. Every connection dropped at once: the time until all are back, the connection attempts
   it took (per host, against the limit), refusals and bans (none expected).
4. The clock read after more closes; once every series holds the last candle closed by
   then (or 10 minutes passed), every series must hold every candle from the start of
   phase 2 to that reading, once each (the primary key), once the REST fills of what the
   drop missed are done: missing candles are counted per timeframe (taken when none is
   missing, or when the count has not fallen for a minute), and the first few named.
5. SIGTERM to the live process: the seconds until it has exited.

    python bench/live_scale.py [BASES]   # default 1790 (2,505 markets, 15,030 streams); PostgreSQL: DATABASE_URL
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from common import StoredCloses, admin, scratch_database, simulator  # bench/ (sys.path)
from live import cpu_seconds

from market_data.simulator.markets import Kind, extra_symbols
from market_data.store.candles import CandleStore, series_stats
from market_data.store.tables import candles, fetch_coverage

BASES = int(sys.argv[1]) if len(sys.argv) > 1 else 1790
RATE = 10.0
CLOSES = 10
UPDATE_MS = 300_000  # per stream, of wall time (Binance: 2000)
MINUTE, HOUR = 60_000, 3_600_000
TIMEFRAMES = {"1m": MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE, "1h": 60 * MINUTE,
              "4h": 240 * MINUTE, "1d": 1440 * MINUTE}  # fmt: skip
START = "2026-11-20T00:20:00+00:00"
START_MS = int(datetime.fromisoformat(START).timestamp() * 1000)
DAY_START = START_MS - START_MS % (1440 * MINUTE)  # the watchlist's start
EXE = str(Path(sys.executable).with_name("market-data"))


def process_of(port: int) -> int:
    """The PID of the simulator serving ``port``."""
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"simulate" in cmd and str(port).encode() in cmd:
            return int(proc.name)
    raise RuntimeError(f"no simulator process on port {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait(what: str, predicate: Any, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(1.0)
    raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def newest(store: CandleStore, markets: int) -> dict[str, int]:
    """Per timeframe, the oldest of the series' newest candles (candle_series; a timeframe
    only once every series of it has one)."""
    query = sa.text("SELECT timeframe, min(last_ts), count(*) FROM candle_series GROUP BY 1")
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return {tf: int(ts) for tf, ts, n in rows if n == markets}


def missing(
    store: CandleStore, since: int, until: int, markets: int
) -> tuple[dict[str, int], list[str]]:
    """Per timeframe: candles opening in [since, until) and closed by then that no series
    holds (expected = the grid points per series x series); and the first few named."""
    out, named = {}, []
    with store.engine.connect() as conn:
        for tf, ms in TIMEFRAMES.items():
            lo = -(-since // ms) * ms
            hi = until - until % ms - ms  # the last candle closed by ``until`` opens here
            if hi < lo:
                out[tf] = 0
                continue
            per_series = (hi - lo) // ms + 1
            rows = conn.execute(
                sa.text(
                    "SELECT symbol, count(*), min(ts), max(ts) FROM candles "
                    "WHERE exchange = 'binance' AND timeframe = :tf AND ts >= :lo AND ts <= :hi "
                    "GROUP BY symbol"
                ),
                {"tf": tf, "lo": lo, "hi": hi},
            ).all()
            out[tf] = per_series * markets - sum(int(n) for _, n, _, _ in rows)
            for sym, n, _, _ in [r for r in rows if r[1] < per_series][:3]:
                named.append(f"{sym} {tf}: {per_series - n} of {per_series} " + holes(
                    conn, sym, tf, lo, hi))  # fmt: skip
    return out, named


def holes(conn: sa.Connection, symbol: str, tf: str, lo: int, hi: int) -> str:
    """The open times a series lacks in [lo, hi], and its coverage rows there (what the
    store believes was fetched, when, from where)."""
    ms = TIMEFRAMES[tf]
    k, c = candles.c, fetch_coverage.c
    series = (k.exchange == "binance", k.symbol == symbol, k.timeframe == tf)
    stored = set(conn.execute(sa.select(k.ts).where(*series, k.ts >= lo, k.ts <= hi)).scalars())
    lacking = [t for t in range(lo, hi + 1, ms) if t not in stored]
    cover = conn.execute(
        sa.select(c.start_ts, c.end_ts, c.candles, c.fetched_at)
        .where(c.exchange == "binance", c.symbol == symbol, c.timeframe == tf)
        .where(c.end_ts >= lo, c.start_ts <= hi)
        .order_by(c.start_ts)
    ).all()
    return f"(lacks {', '.join(utc(t) for t in lacking)}; coverage " + ", ".join(
        f"{utc(a)}..{utc(b)}:{n}@{datetime.fromtimestamp(f / 1000, UTC):%H:%M:%S}"
        for a, b, n, f in cover) + ")"  # fmt: skip


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


def main() -> None:
    spot = extra_symbols(BASES, START_MS, Kind.SPOT)
    perps = extra_symbols(BASES, START_MS, Kind.PERP)
    markets = len(spot) + len(perps)
    streams = markets * len(TIMEFRAMES)
    print(f"{len(spot)} spot + {len(perps)} USD-M markets x {len(TIMEFRAMES)} timeframes = "
          f"{streams:,} streams; clock x{RATE:.0f}", flush=True)  # fmt: skip
    with (
        simulator(START, "--extra-pairs", str(BASES)) as url,
        scratch_database("md_bench_live_scale") as db,
        tempfile.TemporaryDirectory() as folder,
    ):
        admin(url, "ws/settings", {"update_ms": UPDATE_MS})
        admin(url, "clock", {"run_from_ms": START_MS, "rate": RATE})
        config = Path(folder) / "watchlist.yaml"
        entries = [{"symbol": s, "timeframes": list(TIMEFRAMES)} for s in spot + perps]
        config.write_text(yaml.safe_dump({
            "start": START[:10],
            "exchanges": {"binance": {"base_url": url, "markets": entries}},
            "live": {"refresh_s": 60, "heartbeat_s": 5, "stale_after_s": 30},
        }))  # fmt: skip
        env = {**os.environ, "DATABASE_URL": db, "MARKET_DATA_CONFIG": str(config)}
        if os.environ.get("LIVE_SCALE_DEBUG"):  # asyncio's debug mode: slow callbacks logged
            env["PYTHONASYNCIODEBUG"] = "1"
        log = Path(folder) / "live.log"
        with log.open("w") as out:
            proc = subprocess.Popen([EXE, "live"], env=env, stdout=out, stderr=subprocess.STDOUT)
        store = CandleStore(db)
        sim_pid = process_of(int(url.rsplit(":", 1)[1]))
        try:
            report = run(url, store, proc.pid, sim_pid, streams, markets, log)
        finally:
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(300)
                report_stop = f"{time.monotonic() - stopping:.1f}"
            except subprocess.TimeoutExpired:
                proc.kill()
                report_stop = "not within 300 s (killed)"
            store.dispose()
        lines = log.read_text().splitlines()
        kept = Path(tempfile.gettempdir()) / "live_scale_live.log"  # for a look after
        kept.write_text(log.read_text())
        print(f"live log kept at {kept}")
        print(f"live log: {len(lines)} lines, e.g. " + "; ".join(
            ln for ln in lines if "REST fill" in ln or "refused" in ln)[:600])  # fmt: skip
    report["SIGTERM -> exited, s"] = report_stop
    for key, value in report.items():
        print(f"{key}: {value}")


def pct(values: list[float]) -> str:
    """p50 / p99 / max of ``values``, in ms."""
    v = sorted(values)
    return f"{statistics.median(v):.0f} / {v[int(0.99 * (len(v) - 1))]:.0f} / {v[-1]:.0f}"


def run(
    url: str, store: CandleStore, pid: int, sim_pid: int, streams: int, markets: int, log: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def service_up() -> bool:
        s = store.live.service("binance")
        return s is not None and s.streams == streams and s.connected == s.connections > 0

    def filled() -> bool:
        """Every timeframe's series hold the candle closed last (or the one before: the
        next may be on its way), where one closed since the watchlist's start."""
        now = admin(url, "clock")["now_ms"]
        edges = newest(store, markets)
        due = {tf: now - now % ms - ms for tf, ms in TIMEFRAMES.items()}
        return (
            all(edges.get(tf, -1) >= due[tf] - TIMEFRAMES[tf] for tf in due if due[tf] >= DAY_START)
            and len(store.live.streams("binance")) == streams
        )

    started = time.monotonic()
    out["start-up: connections open, s"] = round(wait("the connections", service_up, 900), 1)
    out["start-up: every stream's newest candle stored, s"] = round(
        time.monotonic() - started + wait("the newest candles", filled, 1800), 1
    )

    def complete() -> bool:
        """Every candle since the watchlist's start (the REST fill's work), up to two minutes
        of the exchange's clock ago (what closed since may be on its way)."""
        counts, _ = missing(store, DAY_START, admin(url, "clock")["now_ms"] - 2 * MINUTE, markets)
        return not sum(counts.values())

    out["start-up: every candle since the day's start stored (REST fill done), s"] = round(
        time.monotonic() - started + wait("the start-up fill", complete, 1800), 1
    )
    stats = admin(url, "stats")
    klines = {p: sum(n.values()) for p, n in stats["requests"].items() if "klines" in p}
    out["REST requests by then: all / klines by path / refused (429)"] = (
        f"{stats['total_requests']} / {klines} / {stats['rate_limited']}"
    )

    def quiet() -> bool:
        """No fill running (the service logs each one's start and end), and no REST request
        nor fill for 20 s: the fills the first closes asked for are done (each stream's first close asks for today's candles before it; most are
        covered, so asked without a request)."""
        text = log.read_text()
        if text.count("market(s) started") != text.count("candle(s) written"):
            return False  # a fill is running
        before = admin(url, "stats")["total_requests"], text.count("REST fill of")
        time.sleep(20)
        return (
            admin(url, "stats")["total_requests"],
            log.read_text().count("REST fill of"),
        ) == before

    out["start-up: quiet (the fills settled), s"] = round(
        time.monotonic() - started + wait("the fills to settle", quiet, 600), 1
    )
    service = store.live.service("binance")
    assert service is not None
    out["connections"] = service.connections
    # the window: CLOSES minutes of the clock with an hour's boundary in their middle
    now = admin(url, "clock")["now_ms"]
    time.sleep(max(0, HOUR - CLOSES * MINUTE // 2 - now % HOUR) / RATE / 1000)
    since = admin(url, "clock")["now_ms"]
    since -= since % MINUTE
    t0, cpu0, sim0 = time.time(), cpu_seconds(pid), cpu_seconds(sim_pid)
    stored = StoredCloses(store, "binance", TIMEFRAMES, t0 * 1000)
    stored.until(t0 + CLOSES * MINUTE / RATE / 1000)
    t1, cpu1, sim1 = time.time(), cpu_seconds(pid), cpu_seconds(sim_pid)
    out["CPU of one core, streaming: live / simulator"] = (
        f"{100 * (cpu1 - cpu0) / (t1 - t0):.0f} % / {100 * (sim1 - sim0) / (t1 - t0):.0f} %"
    )
    out["RSS of the live process, MB"] = round(rss_mb(pid))
    clock = admin(url, "clock")
    stored.until(time.time() + 3)  # the last closes of the window on their way to the store

    def closed_at(tf: str, ts: int) -> float:  # the wall time (ms) the clock reached a close
        return (ts + TIMEFRAMES[tf] - clock["offset_ms"]) / clock["rate"]

    # every close the simulator sent that closed within the window, and when it was sent
    sent = {
        (r["futures"], *r["stream"].split("@kline_"), r["t"]): r["sent"] * 1000
        for r in admin(url, "ws/closes")
    }
    sent = {k: at for k, at in sent.items() if t0 * 1000 <= closed_at(k[2], k[3]) <= t1 * 1000}
    at_store = {}
    for (symbol, tf, ts), fetched in stored.at.items():
        base, quote, kind = symbol.split("-")
        at_store[(kind == "PERP", f"{base}{quote}".lower(), tf, ts)] = fetched
    late, own, total, minute = [], [], [], []
    for (futures, pair, tf, ts), at in sent.items():
        if (fetched := at_store.get((futures, pair, tf, ts))) is None:
            continue
        total.append(fetched - closed_at(tf, ts))
        if tf == "1m":
            minute.append(fetched - closed_at(tf, ts))
        late.append(at - closed_at(tf, ts))
        own.append(fetched - at)
    out["closes in the window, every timeframe: sent / seen stored"] = f"{len(sent)} / {len(total)}"
    out["close->stored p50 / p99 / max, ms"] = pct(total)
    out["  close->sent (simulator), ms"] = pct(late)
    out["  sent->stored (live service), ms"] = pct(own)
    out["  1m closes only: close->stored, ms"] = pct(minute) if minute else "-"
    before = admin(url, "ws")
    dropped = admin(url, "ws/drop", {})["dropped"]
    started = time.monotonic()
    wait("every connection back", lambda: len(admin(url, "ws")["connections"]) >= dropped, 600)
    out["dropped connections"] = dropped
    out["all back after, s"] = round(time.monotonic() - started, 1)
    after = admin(url, "ws")
    out["connection attempts it took"] = after["connections_opened"] - before["connections_opened"]
    out["refused (limit) / banned / bans"] = (after["limited"], after["banned"], after["bans"])
    time.sleep(3 * MINUTE / RATE / 1000)
    # the clock runs on (a frozen one would leave the connections silent between the
    # 5-minute updates); completeness is checked up to this reading of it
    until = admin(url, "clock")["now_ms"]

    def caught_up() -> bool:
        edges = newest(store, markets)
        return all(
            edges.get(tf, -1) >= until - until % ms - ms
            for tf, ms in TIMEFRAMES.items()
            if until - until % ms - ms >= DAY_START
        )

    try:
        out["every series at the clock's reading after, s"] = round(
            wait("the newest candles after the drop", caught_up, 600), 1
        )
    except RuntimeError as e:
        out["every series at the clock's reading after, s"] = str(e)
    # the REST fills of what the drop missed run on (every stream asks for one): the count
    # of missing candles is taken once it is zero, or has not fallen for a minute
    counts, named = missing(store, since, until, markets)
    best, still = sum(counts.values()), time.monotonic()
    while sum(counts.values()) and time.monotonic() - still < 60:
        time.sleep(2)
        counts, named = missing(store, since, until, markets)
        if sum(counts.values()) < best:
            best, still = sum(counts.values()), time.monotonic()
    out["every candle stored after the drop, s"] = (
        round(time.monotonic() - started, 1) if not sum(counts.values()) else "not yet"
    )
    out["missing candles per timeframe after the drop"] = counts
    with store.engine.connect() as conn:  # a close extends its series' row: a few each
        rows = conn.execute(sa.select(sa.func.count()).select_from(fetch_coverage)).scalar()
    candles_stored = sum(n for n, _, _ in series_stats(store, "binance").values())
    out["fetch_coverage rows / candles stored"] = f"{rows:,} / {candles_stored:,}"
    if named:
        out["e.g."] = "; ".join(named)
    return out


if __name__ == "__main__":
    main()
