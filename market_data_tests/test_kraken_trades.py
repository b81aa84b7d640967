"""Kraken's trades: the simulator's /0/public/Trades agrees with its OHLC to the last digit,
and pages by the nanosecond cursor in ``last``."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import dagster as dg
import numpy as np
import pytest

from market_data.defs.reports.status import DagsterActivity
from market_data.defs.resources import ExchangeConfig
from market_data.domain.timeframes import MINUTE_MS, Timeframe
from market_data.domain.watchlist import ExchangeSettings, WatchlistError, parse_watchlist
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.trades import Built, candles_from_trades
from market_data.exchanges.venues import from_trades, history_depth
from market_data.pipeline.status import collect_status
from market_data.simulator.book import CandleBook, Clock
from market_data.simulator.faults import Faults, Hole
from market_data.simulator.server import RunningSimulator, Simulator
from market_data_tests.candle_harness import Harness, parse_like_a_client, watchlist
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, http_get

KRAKEN = "/kraken/0/public"
NS = 1_000_000
HOUR = 3_600_000


def kraken(sim: RunningSimulator, endpoint: str, **params: Any) -> dict[str, Any]:
    """One public request, paced to Kraken's one a second (a burst of two)."""
    for _ in range(5):
        status, _, body = http_get(sim.url, f"{KRAKEN}/{endpoint}", **params)
        assert status == 200
        if body["error"] != ["EAPI:Rate limit exceeded"]:
            return body
        time.sleep(1.0)
    raise AssertionError("rate limited five times")


def all_trades(sim: RunningSimulator, pair: str, since_ns: int) -> list[list[Any]]:
    """Every trade after ``since_ns``, page by page along ``last``."""
    out: list[list[Any]] = []
    while True:
        body = kraken(sim, "Trades", pair=pair, since=since_ns)
        page = body["result"][pair]
        out += page
        if len(page) < 1000:
            return out
        since_ns = int(body["result"]["last"])


def candles(trades: list[list[Any]], tf_ms: int) -> dict[int, tuple[Decimal, ...]]:
    """OHLCV per candle open time (s), in exact decimals, from trades in time order."""
    out: dict[int, list[Decimal]] = {}
    for price, volume, t, *_ in trades:
        p, v = Decimal(price), Decimal(volume)
        ts = int(Decimal(str(t)) * 1000) // tf_ms * tf_ms // 1000
        c = out.get(ts)
        out[ts] = [p, p, p, p, v] if c is None else [c[0], max(c[1], p), min(c[2], p), p, c[4] + v]
    return {ts: tuple(c) for ts, c in out.items()}


def ohlc(rows: list[list[Any]]) -> dict[int, tuple[Decimal, ...]]:
    return {r[0]: tuple(Decimal(x) for x in (r[1], r[2], r[3], r[4], r[6])) for r in rows}


def test_trades_aggregate_to_the_ohlc_candles_over_the_served_window(
    sim: RunningSimulator,
) -> None:
    minute = NOW_MS - NOW_MS % MINUTE_MS
    served = ohlc(kraken(sim, "OHLC", pair="XXBTZUSD", interval=1)["result"]["XXBTZUSD"])
    first = min(served)  # the newest 720 minutes, the one in progress included
    trades = all_trades(sim, "XXBTZUSD", first * 1000 * NS - 1)
    built = candles(trades, MINUTE_MS)
    assert len(built) == 719 and minute // 1000 not in built  # the minute in progress: none yet
    assert built == {ts: c for ts, c in served.items() if ts != minute // 1000}
    # an hour from its trades is the hour's candle too (the whole hours of those trades)
    hours = ohlc(kraken(sim, "OHLC", pair="XXBTZUSD", interval=60)["result"]["XXBTZUSD"])
    whole = {ts: c for ts, c in candles(trades, HOUR).items()
             if ts >= first and (ts * 1000 + HOUR) <= minute}  # fmt: skip
    assert len(whole) == 11 and all(hours[ts] == c for ts, c in whole.items())


def test_trades_page_along_the_nanosecond_cursor_without_a_repeat_or_a_miss(
    sim: RunningSimulator,
) -> None:
    start_ns = (NOW_MS - 12 * 60 * MINUTE_MS) * NS
    body = kraken(sim, "Trades", pair="XBTUSD", since=start_ns)  # the altname works too
    (pair,) = [k for k in body["result"] if k != "last"]
    assert pair == "XXBTZUSD"
    page = body["result"][pair]
    assert len(page) == 1000
    price, volume, t, side, kind, misc, trade_id = page[0]
    assert isinstance(trade_id, int)
    assert isinstance(price, str) and isinstance(volume, str) and side in "bs" and kind in "lm"
    assert Decimal(str(t)) * 10**9 > start_ns and misc == ""
    last = int(body["result"]["last"])
    assert last == Decimal(str(page[-1][2])) * 10**9  # the newest trade's time, in nanoseconds
    following = kraken(sim, "Trades", pair=pair, since=last, count=10)["result"][pair]
    assert len(following) == 10  # count bounds a page
    ids = [r[6] for r in page + following]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive: none repeated, none missed
    in_seconds = kraken(sim, "Trades", pair=pair, since=start_ns // 10**9)["result"][pair]
    assert in_seconds[0] == page[0]  # `since` in seconds, as Kraken takes it too


def test_trades_begin_at_the_listing_and_an_unknown_pair_is_refused(
    sim: RunningSimulator,
) -> None:
    first = kraken(sim, "Trades", pair="XBTUSDT", since=0, count=4)["result"]["XBTUSDT"]
    listed_s = 1_502_928_000  # BTC/USDT's listing in the simulator: 2017-08-17 00:00 UTC
    assert [r[2] for r in first] == [
        listed_s + 1,
        listed_s + 15.25,
        listed_s + 30.5,
        listed_s + 45.75,
    ]
    assert kraken(sim, "Trades", pair="NOPEUSD")["error"] == ["EQuery:Unknown asset pair"]


def built(sim: RunningSimulator, symbol: str, tf: str, lo: int, hi: int) -> list[Built]:
    """What the product's builder makes of the trades of [lo, hi), span by span."""

    async def go() -> list[Built]:
        client = ExchangeClient.of(ExchangeSettings("kraken", f"{sim.url}/kraken"))
        try:
            ms = Timeframe.parse(tf).ms
            return [
                b async for b in candles_from_trades(client, symbol, ms, lo, hi, NOW_MS, batch=2)
            ]
        finally:
            await client.close()

    return asyncio.run(go())


def truth(sim_id: str, tf: str, lo: int, hi: int) -> list[list[float]]:
    """The book's closed candles opening in [lo, hi), as a client parses Kraken's text."""
    book = CandleBook()
    market = book.market(sim_id)
    ms = Timeframe.parse(tf).ms
    bars = book.klines(market, ms, lo, min(hi, NOW_MS - NOW_MS % ms) - 1, 10**9, NOW_MS, Faults())
    return parse_like_a_client(bars, market)


@pytest.mark.parametrize("tf", ["1m", "1h"])
def test_candles_built_from_trades_are_the_exchanges_candles(
    sim: RunningSimulator, tf: str
) -> None:
    """A day of trades (6 pages, paced by Kraken's rate limit), beyond the 720 minutes its
    OHLC serves: every candle equals the book's to the last float, the spans yielded follow
    each other, and the minute in progress is not built."""
    hi = NOW_MS - NOW_MS % MINUTE_MS + MINUTE_MS  # up to the minute in progress
    lo = hi - 86_400_000 - (hi - 86_400_000) % HOUR
    spans = built(sim, "BTC/USD", tf, lo, hi)
    assert spans[0].start_ms == lo and all(
        a.end_ms == b.start_ms for a, b in itertools.pairwise(spans)
    )
    ms = Timeframe.parse(tf).ms
    assert spans[-1].end_ms == NOW_MS - NOW_MS % ms  # complete up to the exchange clock
    table = np.concatenate([b.table for b in spans])
    assert table.tolist() == truth("BTCUSD", tf, lo, hi)


# -- a Kraken market's whole history in a run: trades, then OHLC ---------------------------

LISTED = 1_502_928_000_000  # BTC/USDT's listing in the simulator: 2017-08-17 00:00 UTC
DAY = 86_400_000


def trades_requests(sim: RunningSimulator) -> int:
    by_path = admin(f"{sim.url}/kraken", "stats")["requests"]
    return sum(
        sum(c.values()) for p, c in by_path.items() if p.startswith("/kraken/0/public/Trades")
    )


def test_a_kraken_market_from_its_listing_has_every_candle_its_trades_have(
    store_url: str,
) -> None:
    """BTC/USDT on Kraken at 1m from before its listing, 4 days after it: the listing is
    its first trade, the minutes the OHLC endpoint no longer serves are built from trades
    (a run that fails mid-way keeps what it built; the next asks only for the rest), the
    newest 710 come from OHLC: every candle equals the exchange's, nothing is unavailable,
    and the only gap is the exchange's own hole (no trade in it)."""
    now = LISTED + 4 * DAY + 30 * MINUTE_MS + 7_000
    minute = now - now % MINUTE_MS
    hole = Hole(
        symbol="BTCUSDT", start_ms=LISTED + 10 * HOUR, end_ms=LISTED + 10 * HOUR + 5 * MINUTE_MS
    )
    horizon = minute - 710 * MINUTE_MS  # older than this: from trades
    trades = ((horizon - LISTED) // MINUTE_MS - 5) * 4
    with RunningSimulator(Simulator(Faults(holes=[hole]), Clock(fixed_ms=now))) as running:
        wl = watchlist(running.url, ["BTC/USDT/1m"], "2017-08-01", "kraken", trades=True)
        h = Harness(wl, store_url, dg.DagsterInstance.ephemeral())
        broken = {"path": "/kraken/0/public/Trades", "status": 502, "skip": 13, "count": -1}
        admin(f"{running.url}/kraken", "faults", {"fail": [broken]})
        failed = h.run("BTC-USDT-SPOT:1m|2017")
        kept = len(h.stored("BTC-USDT-SPOT", "1m"))
        admin(f"{running.url}/kraken", "faults", {"fail": []})
        admin(f"{running.url}/kraken", "reset", {})
        result = h.run("BTC-USDT-SPOT:1m|2017")
        rerun_requests = trades_requests(running)
        status = collect_status(h.store, DagsterActivity(h.instance, wl), wl)

    # the failed run wrote what it built (10 pages), then the newest 710 from OHLC
    built_first = kept - 710
    assert not failed.success and 0 < built_first < trades // 4
    assert result.success
    assert h.store.instruments.listing("kraken", "BTC-USDT-SPOT").listed_at == LISTED
    closed = (minute - LISTED) // MINUTE_MS
    (year,) = h.partitions(result).values()
    assert year["expected"] == closed and year["present"] == closed - 5
    assert "unavailable" not in year  # the key is there only when some are
    # this run built the rest from trades, and needed nothing of OHLC
    assert (year["from_trades"], year["from_candle_endpoint"]) == (trades // 4 - built_first, 0)
    rest = -(-(trades - 4 * built_first) // 1000)
    assert rerun_requests <= rest + 1  # the rest's pages (one more for a page's edge)
    book = CandleBook()
    market = book.market("BTCUSDT")
    bars = book.klines(market, MINUTE_MS, LISTED, minute - 1, 10**9, now, Faults(holes=[hole]))
    assert h.stored("BTC-USDT-SPOT", "1m") == parse_like_a_client(bars, market)
    check = h.check_result(result)
    assert not check.passed and check.metadata["empty_candles"].value == 5
    assert [(g["gap_start"], g["gap_end"]) for g in h.store.gaps.open_gaps()] == [
        (hole.start_ms, hole.end_ms)
    ]
    (row,) = status.markets
    assert (row.unavailable, row.absent, row.from_trades) == (0, 5, trades // 4)


def test_the_trades_setting_decides_how_deep_kraken_history_goes() -> None:
    """On by default where the exchange serves its trades (Kraken: the whole history is
    expected); off, Kraken's OHLC depth again; an exchange without trades is unchanged."""
    data = {"start": "2024-01-01", "exchanges": {"kraken": {"markets": ["BTC/USD"]}}}
    (default,) = parse_watchlist(data, frozenset({"kraken"})).exchanges
    assert default.trades and from_trades(default) and history_depth(default) is None
    off = replace(default, trades=False)
    assert not from_trades(off) and history_depth(off) == 710
    assert (
        not from_trades(ExchangeSettings("binance"))
        and history_depth(ExchangeSettings("binance")) is None
    )
    assert ExchangeConfig.of(off).settings() == off  # the run's resource carries it
    data["exchanges"]["kraken"]["trades"] = "no"  # type: ignore[index]
    with pytest.raises(
        WatchlistError, match=r"exchanges\.kraken\.trades: 'no' is not true or false"
    ):
        parse_watchlist(data, frozenset({"kraken"}))


def test_a_long_history_from_trades_gives_the_pool_slot_back_between_slices(
    store_url: str,
) -> None:
    """History from trades takes Kraken's one request a second for as long as it takes (a
    real year: hours), and Kraken's pool has one slot: a run builds for ``trades_slice_s``,
    then its step is up for retry, which frees the slot for the runs waiting (Dagster), and
    resumes from what is stored. The slices are not failures (this watchlist allows no step
    retry), and the candles are the exchange's."""
    now = LISTED + 2 * DAY + 7_000
    minute = now - now % MINUTE_MS
    with RunningSimulator(Simulator(Faults(), Clock(fixed_ms=now))) as running:
        wl = watchlist(running.url, ["BTC/USDT/1m"], "2017-08-01", "kraken", trades=True)
        assert wl.exchange("kraken").step_retries == 0
        h = Harness(wl, store_url, dg.DagsterInstance.ephemeral())
        result = h.run("BTC-USDT-SPOT:1m|2017", config={"trades_slice_s": 2.0})
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    yields = int(h.instance.get_run_by_id(result.run_id).tags["market_data/pool_yields"])  # type: ignore[union-attr]
    assert len(retries) == yields >= 1  # a slice is a batch of pages (10): 12 s of Kraken
    (year,) = h.partitions(result).values()  # one materialization, when all is built
    assert year["expected"] == year["present"] == (minute - LISTED) // MINUTE_MS
    book = CandleBook()
    market = book.market("BTCUSDT")
    bars = book.klines(market, MINUTE_MS, LISTED, minute - 1, 10**9, now, Faults())
    assert h.stored("BTC-USDT-SPOT", "1m") == parse_like_a_client(bars, market)
