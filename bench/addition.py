"""Markets added to a running deployment: a year of their history at six timeframes, fetched
while the markets already stored stay fresh; then half an hour of the clock with everything
watched.

A deployment as in production (bench/deployment.py: webserver and daemon processes,
PostgreSQL, `market-data pools`, every sensor on) watching STORED spot markets of the
simulator at 1m, 5m, 15m, 1h, 4h and 1d from a year ago, freshness every 60 s; the
simulator on the real clock with Binance's limits (6,000 weight a minute for spot, klines
weight 2) and 100 ms of latency. Three phases:

1. the STORED markets' own first year, from an empty store (the watchlist's backfill), until
   every series is current;
2. ADDED more markets written into the watchlist file and the code location reloaded (as a
   user adds them): from that moment until their year is stored and current, the share of
   the spot klines budget used (all requests: the backfill's and freshness's), the seconds
   in which no klines request was served at all (run overhead: process starts, Dagster's
   bookkeeping, the gaps between runs), refused requests, and the lag of the STORED series
   throughout (seconds since the close of the newest stored candle, per timeframe, in units
   of the timeframe);
3. THIRTY_MIN more minutes of the clock: the worst lag of every series, refused requests.

Then the complete series (every expected candle of the year stored), the consistency checks
that followed the backfill runs (check-only runs of their own: how many, their seconds, how
long after phase 2 the last one ended) and the peak resident memory of the deployment's
processes.

    python bench/addition.py [ADDED] [STORED]   # default 25 and 20; the issue's size: 250
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import admin  # bench/, on sys.path when run as a script
from deployment import deployment, gql, reload_location, runs

from market_data.defs.candles.partitions import BACKFILL_TAG, CONSISTENCY_TAG, FRESHNESS_TAG
from market_data.simulator.faults import Faults
from market_data.simulator.markets import MARKETS, Kind, SimMarket, extra_pairs
from market_data.simulator.server import RunningSimulator, Simulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series

TIMEFRAMES = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
FRESHNESS_S = 60
SPOT_WEIGHT_PER_S = 100  # Binance: 6,000 a minute
THIRTY_MIN = int(os.environ.get("ADDITION_CLOCK_S", 30 * 60))  # the clock after
ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")


def symbols(markets: list[SimMarket]) -> list[str]:
    return [f"{m.base}-{m.quote}-SPOT" for m in markets]


def series_of(markets: list[SimMarket]) -> list[Series]:
    return [Series("binance", s, tf) for s in symbols(markets) for tf in TIMEFRAMES]


class Requests:
    """Every request the simulator served, from its timeline (polled: it keeps the newest
    100,000)."""

    def __init__(self, url: str) -> None:
        self.url, self.rows, self._last, self._polled = url, [], 0.0, 0.0  # type: ignore[var-annotated]

    def poll(self, every_s: float = 60.0) -> None:
        """New rows, at most every ``every_s`` (the timeline is a large answer)."""
        if time.monotonic() - self._polled < every_s:
            return
        self._polled = time.monotonic()
        new = [r for r in admin(self.url, "timeline") if r["t"] > self._last]
        if new:
            self._last = new[-1]["t"]
            self.rows += new

    def between(self, t0: float, t1: float) -> list[dict[str, Any]]:
        return [r for r in self.rows if t0 <= r["t"] < t1]


def lags(store: CandleStore, series: list[Series]) -> dict[str, float]:
    """The worst lag per timeframe, in units of the timeframe (a series with nothing stored:
    infinite)."""
    now = time.time()
    newest = store.last_ts_of(series)
    worst: dict[str, float] = {}
    for s, ts in newest.items():
        tf = TIMEFRAMES[s.timeframe]
        lag = float("inf") if ts is None else (now - ts / 1000 - tf) / tf
        worst[s.timeframe] = max(worst.get(s.timeframe, 0.0), lag)
    return worst


def worse(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {tf: max(a.get(tf, 0.0), b.get(tf, 0.0)) for tf in a | b}


def shown(worst: dict[str, float]) -> str:
    return ", ".join(f"{tf} {worst[tf]:.2f}" for tf in TIMEFRAMES if tf in worst)


def tagged_runs(url: str, tag: str, fields: str) -> list[dict[str, Any]] | None:
    """``fields`` of the runs tagged ``tag``: binance; None (said) if the webserver did not
    answer: the figures printed before stand without these."""
    try:
        data = gql(url, "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs "
                   f"{{ results {{ {fields} }} }} }} }}",
                   f={"tags": [{"key": tag, "value": "binance"}]})  # fmt: skip
    except Exception as e:
        print(f"runs tagged {tag}: not read ({e})")
        return None
    return list(data["runsOrError"]["results"])


def backfill_runs(url: str, t0: float, t1: float) -> None:
    """The watchlist's backfill runs that started in [t0, t1), per asset: how many, their
    seconds from start to end (the least, the most, in all), and the span's seconds in no
    backfill run (one runs at a time: launches, and the time between runs)."""
    found = tagged_runs(url, BACKFILL_TAG, "startTime endTime assetSelection { path }")
    if found is None:
        return
    per: dict[str, list[float]] = {}
    spans = []
    for r in found:
        if r["startTime"] and r["endTime"] and t0 <= r["startTime"] < t1:
            asset = "/".join(r["assetSelection"][0]["path"]) if r["assetSelection"] else "?"
            per.setdefault(asset, []).append(r["endTime"] - r["startTime"])
            spans.append((r["startTime"], min(r["endTime"], t1)))
    for asset, secs in sorted(per.items()):
        print(f"  {asset}: {len(secs)} runs, {min(secs):.0f}-{max(secs):.0f} s, "
              f"{sum(secs):.0f} s in all")  # fmt: skip
    busy, end = 0.0, t0
    for lo, hi in sorted(spans):
        busy += max(0.0, hi - max(lo, end))
        end = max(end, hi)
    print(f"  {t1 - t0 - busy:.0f} s of the {t1 - t0:.0f} s in no backfill run "
          f"({(t1 - t0 - busy) / (t1 - t0):.0%})", flush=True)  # fmt: skip


def freshness_runs(url: str, t0: float, t1: float) -> None:
    """The freshness runs that started in [t0, t1): their seconds from start to end and
    from creation to start (queued), median and most."""
    found = tagged_runs(url, FRESHNESS_TAG, "creationTime startTime endTime")
    ran = [r for r in found or [] if r["startTime"] and r["endTime"] and t0 <= r["startTime"] < t1]
    if not ran:
        return
    took = sorted(r["endTime"] - r["startTime"] for r in ran)
    queued = sorted(r["startTime"] - r["creationTime"] for r in ran)
    print(f"  freshness runs: {len(ran)}, {statistics.median(took):.0f} s each (median), "
          f"{took[-1]:.0f} s the longest; queued {statistics.median(queued):.0f} s (median), "
          f"{queued[-1]:.0f} s the longest", flush=True)  # fmt: skip


def until(what: str, done: Callable[[], bool], sample: Callable[[], None], limit_s: float) -> None:
    started = time.monotonic()
    while not done():
        sample()
        if time.monotonic() - started > limit_s:
            raise TimeoutError(what)
        time.sleep(5)


def main(added_n: int, stored_n: int) -> None:
    today = datetime.now(UTC).date()
    start = today - timedelta(days=365)
    start_ms = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
    bases = (added_n + stored_n) * 2
    spot = [
        m
        for m in (*MARKETS, *extra_pairs(bases))
        if m.kind is Kind.SPOT and m.quote == "USDT" and m.ends_ms is None
        and m.empty_share == 0 and m.listed_ms <= start_ms
    ]  # fmt: skip
    stored, added = spot[:stored_n], spot[stored_n : stored_n + added_n]
    assert len(added) == added_n, f"only {len(spot)} markets listed a year ago"
    tmp = Path(tempfile.mkdtemp(prefix="md-addition-"))

    def watchlist(markets: list[SimMarket], url: str) -> dict[str, Any]:
        return {
            "start": start.isoformat(), "default_timeframes": list(TIMEFRAMES),
            "freshness": {"interval_s": FRESHNESS_S},
            "exchanges": {"binance": {"base_url": url, "markets": symbols(markets)}},
        }  # fmt: skip

    with RunningSimulator(Simulator(Faults(latency_ms=100), extra_pairs=bases)) as sim:
        requests = Requests(sim.url)
        with deployment(watchlist(stored, sim.url), "addition", tmp) as dep:
            store = CandleStore(dep.store_url, create=False)
            old, new = series_of(stored), series_of(added)

            def current(series: list[Series]) -> bool:
                if any(w >= 2 for w in lags(store, series).values()):
                    return False
                active = [r for r in runs(dep.url, {"key": BACKFILL_TAG, "value": "binance"})
                          if r["status"] in ACTIVE]  # fmt: skip
                return not active and all(
                    (store.first_ts(s) or start_ms + 1) <= start_ms for s in series
                )

            def backfill_figures(t0: float, t1: float, what: str) -> None:
                requests.poll(0)
                rows = requests.between(t0, t1)
                klines = [r for r in rows if r["path"] == "/api/v3/klines"]
                refused = sum(1 for r in rows if r["status"] in (418, 429))
                served = {int(r["t"]) for r in klines if r["status"] == 200}
                first = min(served, default=int(t0))
                wall = t1 - t0
                weight = sum(r["weight"] for r in klines if r["status"] == 200)
                idle = sum(1 for s in range(first, int(t1)) if s not in served)
                print(f"{what}: {wall:.0f} s; {len(klines)} klines requests, "
                      f"{weight / (SPOT_WEIGHT_PER_S * wall):.0%} of the spot weight ceiling "
                      f"over the whole span ({weight / (SPOT_WEIGHT_PER_S * (t1 - first)):.0%} "
                      f"from the first request, {first - t0:.0f} s after the start); "
                      f"{idle} s ({idle / (t1 - first):.0%}) with no klines request served (not "
                      f"overhead alone: requests burst into each of Binance's fixed minutes, then "
                      f"wait for the next); "
                      f"{refused} refused (429/418)", flush=True)  # fmt: skip

            t0 = time.time()
            until("the stored markets' first year", lambda: current(old), requests.poll, 7200)
            backfill_figures(t0, time.time(), f"phase 1, {stored_n} markets' first year from an "
                             "empty store")  # fmt: skip

            t0 = time.time()
            dep.watch(watchlist(stored + added, sim.url))
            reload_location(dep.url)
            worst: dict[str, float] = {}
            shown_at = t0

            def sample() -> None:
                nonlocal worst, shown_at
                worst = worse(worst, lags(store, old))
                requests.poll()
                if time.time() - shown_at >= 600:  # progress, every ten minutes
                    shown_at = time.time()
                    served = [r for r in requests.between(t0, shown_at)
                              if r["path"] == "/api/v3/klines" and r["status"] == 200]  # fmt: skip
                    weight = sum(r["weight"] for r in served)
                    print(f"  {shown_at - t0:.0f} s into phase 2: {len(served)} klines requests, "
                          f"{weight / (SPOT_WEIGHT_PER_S * (shown_at - t0)):.0%} of the ceiling; "
                          f"worst lag so far {shown(worst)}", flush=True)  # fmt: skip

            until("the added markets' year", lambda: current(new), sample, 4 * 3600)
            backfill_figures(t0, time.time(), f"phase 2, {added_n} markets added x 6 timeframes "
                             "x 1 year, from the reload")  # fmt: skip
            print(f"worst lag of the {stored_n} stored markets meanwhile, in timeframes: "
                  f"{shown(worst)} (target < 2)", flush=True)  # fmt: skip
            backfill_runs(dep.url, t0, time.time())
            freshness_runs(dep.url, t0, time.time())

            t0, worst = time.time(), {}
            everything = old + new

            def sample_all() -> None:
                nonlocal worst
                worst = worse(worst, lags(store, everything))
                requests.poll()

            until(
                "half an hour", lambda: time.time() - t0 > THIRTY_MIN, sample_all, THIRTY_MIN + 60
            )
            requests.poll(0)
            refused = sum(1 for r in requests.between(t0, time.time()) if r["status"] in (418, 429))
            print(f"phase 3, {THIRTY_MIN // 60} minutes with {len(everything)} series: worst lag "
                  f"in timeframes {shown(worst)} (target < 2); {refused} refused", flush=True)  # fmt: skip
            now_ms = int(time.time() * 1000)
            complete = 0
            for s in everything:
                tf_ms = TIMEFRAMES[s.timeframe] * 1000
                end = (now_ms - 600_000) // tf_ms * tf_ms  # closed ten minutes ago or earlier
                count, _, _ = store.candle_stats(s, start_ms, end)
                complete += count == (end - start_ms) // tf_ms
            print(
                f"complete series (every candle from the start to ten minutes ago stored): "
                f"{complete} of {len(everything)}"
            )
            checks = runs(dep.url, {"key": CONSISTENCY_TAG, "value": "binance"})
            ended = [r for r in checks if r["endTime"]]
            seconds = sorted(r["endTime"] - r["startTime"] for r in ended if r["startTime"])
            statuses = sorted({r["status"] for r in checks})
            print(
                f"consistency runs (after the backfill runs above 1m): {len(checks)}, {statuses}; "
                f"{sum(seconds):.0f} s in all, longest {max(seconds, default=0):.0f} s; the last "
                f"ended {max((r['endTime'] for r in ended), default=t0) - t0:.0f} s into phase 3"
            )
            print(f"peak resident memory per process: {dep.memory.stop()}")
            store.dispose()


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 25,
        int(sys.argv[2]) if len(sys.argv) > 2 else 20,
    )
