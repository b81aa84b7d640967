"""The live service: closed candles over WebSocket, stored within seconds of their close.

For every exchange that streams (``venues.Streams``; Binance spot and USD-M futures):

    refresh (every refresh_s): the watchlist resolved against the stored catalog, as the
      watchlist sensor resolves it -> the streams wanted, spread over connections
    connections (exchanges/streams.py): subscribe, and once a stream is confirmed ask for a
      REST fill of what it missed (since the newest stored candle)
    on each event: the exchange's clock advances; a closed candle (k.x) is queued
    writer: the queued closed candles of the moment, checked against the candle contract
      and written with their fetch coverage in one transaction (idempotent: a candle is
      stored once however often it arrives); a candle later than the next one expected
      (a stream's first: after the newest stored) asks for a REST fill of those between
    filler: REST fills through the same pipeline as the candle asset (pipeline/ingest.py:
      coverage subtracted, one rate budget)
    heartbeat (every heartbeat_s): live_service and live_streams rows, and the exchange's
      clock for the gap check
    order books: where an exchange's snapshots are below a minute apart, they are taken here

Stopping (SIGINT/SIGTERM through ``stop``): the queued candles are written, the heartbeat
says disconnected, connections and clients are closed. A kill loses only candles not yet
written; the next start fills them over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import aiohttp
import numpy as np
import sqlalchemy as sa

from market_data.domain.calendar import utc_text
from market_data.domain.candles import CandlePage, validate_pages
from market_data.domain.catalog import Instrument, build_catalog
from market_data.domain.watchlist import Market, Watchlist, WatchlistError
from market_data.exchanges.client import ExchangeClient
from market_data.exchanges.errors import ExchangeDataError as ExchangeError
from market_data.exchanges.streams import ConnectBudget, Kline, StreamConnection, StreamPool
from market_data.exchanges.venues import VENUES, Streams, ccxt_market_type, venue
from market_data.pipeline.ingest import FetchOptions, fetch_markets
from market_data.pipeline.orderbooks import book_symbols, snapshot
from market_data.pipeline.status import one_line
from market_data.pipeline.stop import Stopper
from market_data.pipeline.watched import plausible_markets, watched_markets
from market_data.store.candles import CandleStore
from market_data.store.series import Series

Log = Callable[[str], None]
DAY_MS = 86_400_000
LATENCY_SAMPLES = 1000
CATALOG_RELOAD_S = 3600.0


def streaming_exchanges(watchlist: Watchlist) -> list[str]:
    """The watchlist's exchanges the live service streams (raises WatchlistError when
    ``live.exchanges`` names one that does not stream)."""
    names = [ex.name for ex in watchlist.exchanges if venue(ex.name).streams is not None]
    chosen = watchlist.live.exchanges
    if silent := sorted(set(chosen or ()) - set(names)):
        raise WatchlistError(
            f"live.exchanges: {', '.join(silent)} has no stream here (exchanges that stream: "
            f"{', '.join(n for n, v in VENUES.items() if v.streams is not None)})"
        )
    return [n for n in names if chosen is None or n in chosen]


def ws_base(streams: Streams, kind: str, base_url: str | None) -> str:
    """The stream host of a market type; with a base URL (the simulator: one port for every
    host) the base's host with the type's path."""
    if base_url is None:
        return streams.hosts[kind]
    return base_url.rstrip("/").replace("http", "ws", 1) + streams.local_paths[kind]


@dataclass
class Streamed:
    market: Market
    kind: str  # ccxt market type: spot, linear
    subscribed_at: int

    @functools.cached_property
    def series(self) -> Series:  # read for every stream at every heartbeat
        return Series.of(self.market)

    @property
    def tf_ms(self) -> int:
        return self.market.timeframe.ms


def _wall_ms() -> int:
    return int(time.time() * 1000)


class ExchangeLive:
    """One exchange's streams, writer, fills and heartbeat."""

    def __init__(
        self,
        client: ExchangeClient,
        store: CandleStore,
        watchlist: Watchlist,
        session: aiohttp.ClientSession,
        log: Log,
    ) -> None:
        self.client, self.store, self.session, self.log = client, store, session, log
        self.name = client.id
        self.watchlist = watchlist
        streams = venue(self.name).streams
        assert streams is not None
        self.streams_venue = streams
        self.markets: dict[str, Streamed] = {}  # "<type>/<stream name>" -> market
        self.last_close: dict[str, int] = {}  # the same keys -> newest closed candle stored
        self.stored_at: dict[str, int] = {}
        self.exchange_now: int | None = None
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.closes_stored = 0
        self.started_at = _wall_ms()
        self.last_error: str | None = None
        self.queue: asyncio.Queue[Kline] = asyncio.Queue()
        self.fills: dict[str, int | None] = {}  # the same keys -> fill from (None: newest)
        self.fill_wanted = asyncio.Event()
        self.pools: dict[str, StreamPool] = {}
        self.problems: set[str] = set()
        #: the service is stopping: a fill's store reads (threads, which a task's
        #: cancellation does not stop) end at their next series
        self.closing = False

    # -- subscriptions -------------------------------------------------------------------
    async def update(self, watchlist: Watchlist, markets: list[Market]) -> None:
        """Stream exactly ``markets`` (those of a type the venue streams)."""
        self.watchlist = watchlist
        wanted: dict[str, Streamed] = {}
        for market in markets:
            kind = ccxt_market_type(market.symbol.ccxt)
            try:
                native = self.client.exchange.market(market.symbol.ccxt)["id"]
                interval = self.client.exchange.timeframes[market.timeframe.code]
            except Exception as e:  # not listed: the watchlist sensor reports it too
                self._problem(f"{market.key}: not streamed ({one_line(e)})")
                continue
            if kind not in self.streams_venue.hosts:
                self._problem(f"{market.key}: {kind} markets have no stream here; REST only")
                continue
            # spot and futures streams may share a name (btcusdt@kline_1m): keyed by type too
            name = f"{kind}/{str(native).lower()}@kline_{interval}"
            known = self.markets.get(name)
            wanted[name] = known or Streamed(market, kind, _wall_ms())
        added = sorted(set(wanted) - set(self.markets))
        gone = sorted(set(self.markets) - set(wanted))
        self.markets = wanted
        for name in gone:
            self.last_close.pop(name, None)
        if added or gone:
            self.log(f"{self.name}: streaming {len(wanted)} market(s) (+{len(added)} -{len(gone)})")
        for kind in {s.kind for s in wanted.values()} | set(self.pools):
            names = {n.partition("/")[2] for n, s in wanted.items() if s.kind == kind}
            self._pool(kind).want(names)

    def _problem(self, line: str) -> None:
        if line not in self.problems:
            self.problems.add(line)
            self.log(f"{self.name}: {line}")

    def _pool(self, kind: str) -> StreamPool:
        if kind not in self.pools:
            url = ws_base(self.streams_venue, kind, self.client_base_url) + "/stream"

            def on_kline(kline: Kline) -> None:
                self.on_kline(replace(kline, stream=f"{kind}/{kline.stream}"))

            async def on_open(names: frozenset[str]) -> None:
                await self.on_open(frozenset(f"{kind}/{n}" for n in names))

            live = self.watchlist.live
            budget = ConnectBudget(live.connect_limit, live.connect_window_s)  # one per host

            def make() -> StreamConnection:
                return StreamConnection(
                    url, self.session, on_kline, on_open, self.log, budget=budget
                )

            self.pools[kind] = StreamPool(make, self.streams_venue.max_streams[kind])
        return self.pools[kind]

    @property
    def client_base_url(self) -> str | None:
        return self.watchlist.exchange(self.name).base_url

    # -- events --------------------------------------------------------------------------
    def on_kline(self, kline: Kline) -> None:
        if self.exchange_now is None or kline.event_ms > self.exchange_now:
            self.exchange_now = kline.event_ms
        if kline.closed and kline.stream in self.markets:
            self.queue.put_nowait(kline)

    async def on_open(self, names: frozenset[str]) -> None:
        for name in names:
            self.want_fill(name, None)
        self.fill_wanted.set()

    # -- writing -------------------------------------------------------------------------
    async def writer(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self.write(batch)

    async def write(self, batch: list[Kline]) -> None:
        pages: list[tuple[Series, CandlePage]] = []
        klines = []
        for k in batch:
            streamed = self.markets.get(k.stream)
            if streamed is None:
                continue
            values = np.asarray([k.values], dtype=np.float64)
            ts = np.asarray([k.ts], dtype=np.int64)
            page = CandlePage(
                streamed.market.key,
                streamed.tf_ms,
                k.ts,
                k.ts + streamed.tf_ms,
                ts,
                values,
                source="stream",
            )
            pages.append((streamed.series, page))
            klines.append((k, streamed))
        if not pages:
            return
        now = max(k.event_ms for k in batch)
        # a stream's first close (start, restart, new market): the newest candle stored
        # before it, read before writing it, so a close that skips candles is seen to
        # (on_open's fill may read the store only after this write)
        unknown = list({s.series for k, s in klines if k.stream not in self.last_close})

        def store_them() -> dict[Series, int | None]:
            validate_pages([p for _, p in pages], now)
            newest = self.store.last_ts_of(unknown)
            self.store.write_closed(pages)
            return newest

        try:
            newest = await asyncio.to_thread(store_them)
        except Exception as e:  # the store went away: the candles come back by REST fill
            self.last_error = f"write failed: {one_line(e)}"[:500]
            self.log(f"{self.name}: {self.last_error}")
            for k, _ in klines:
                self.want_fill(k.stream, k.ts)
            self.fill_wanted.set()
            return
        stored = time.time()
        for k, streamed in klines:
            self.latencies.append((stored - k.received) * 1000)
            self.closes_stored += 1
            # a stream's first close: the newest candle stored before it (read with it)
            previous = self.last_close.get(k.stream) or newest.get(streamed.series)
            if previous is None:  # nothing was stored before this first close: today's
                # candles before it are the fill's (which, reading the store after this
                # write, would start after it)
                self.want_fill(k.stream, k.ts - k.ts % DAY_MS)
                self.fill_wanted.set()
            elif k.ts > previous + streamed.tf_ms:
                # the stream skipped candles (a moved clock, a lost event): fetch them
                self.want_fill(k.stream, previous + streamed.tf_ms)
                self.fill_wanted.set()
            self.last_close[k.stream] = max(previous or k.ts, k.ts)
            self.stored_at[k.stream] = int(stored * 1000)

    # -- REST fills ----------------------------------------------------------------------
    async def filler(self) -> None:
        while True:
            await self.fill_wanted.wait()
            self.fill_wanted.clear()
            todo, self.fills = self.fills, {}
            todo = {n: start for n, start in todo.items() if n in self.markets}
            if todo:
                try:
                    await self.fill(todo)
                except Exception as e:  # any failure: the fill is retried and the filler goes
                    # on (a filler that died would leave every later miss unfilled, silently)
                    if self.closing:  # stopped: the next start fills what this one lacks
                        return
                    kind = "" if isinstance(e, ExchangeError | OSError) else f"{type(e).__name__}: "
                    self.last_error = f"fill failed: {kind}{one_line(e)}"[:500]
                    self.log(f"{self.name}: {self.last_error}; retrying in 5s")
                    for name, start in todo.items():
                        self.want_fill(name, start)
                    await asyncio.sleep(5)
                    self.fill_wanted.set()

    def want_fill(self, name: str, start: int | None) -> None:
        """Ask for a fill of stream ``name`` from ``start`` (None: after its newest stored
        candle). Asked twice, the earlier start wins, and an explicit start wins over None:
        None would skip a candle missed before a newer one was stored."""
        known = self.fills.get(name)
        if start is None:
            self.fills.setdefault(name, None)
        else:
            self.fills[name] = start if known is None else min(known, start)

    async def fill(self, todo: dict[str, int | None]) -> None:
        """Fetch over REST, for each stream, from ``start`` (None: after its newest stored
        candle, or today's start when none is stored: history is the backfill's) to the
        exchange's last closed candle."""
        wanted: dict[Market, list[tuple[int, int]]] = {}
        now = self.exchange_now or await self.client.fetch_time()  # the exchange's clock
        newest = await asyncio.to_thread(
            self.store.last_ts_of, [self.markets[n].series for n, s in todo.items() if s is None]
        )
        for name, start in todo.items():
            streamed = self.markets[name]
            if start is None:
                last = newest.get(streamed.series)
                start = last + streamed.tf_ms if last is not None else now - now % DAY_MS
            wanted[streamed.market] = [(max(start, streamed.market.start_ms), now + DAY_MS)]
        self.log(f"{self.name}: REST fill of {len(todo)} market(s) started")
        stop = Stopper(requested=lambda: self.closing, every_s=0.0)
        fetched = await fetch_markets(self.client, self.store, wanted, FetchOptions(), stop=stop)
        written = sum(r.rows_written for r in fetched.markets.values())
        filled = {n: s for n in todo if (s := self.markets.get(n)) is not None}
        newest = await asyncio.to_thread(self.store.last_ts_of, [s.series for s in filled.values()])
        for name, streamed in filled.items():
            last = newest.get(streamed.series)
            if last is not None:
                self.last_close[name] = max(self.last_close.get(name, last), last)
        self.log(
            f"{self.name}: REST fill of {len(todo)} market(s) to {utc_text(fetched.now_ms)}: "
            f"{written} candle(s) written"
        )

    # -- heartbeat -----------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        latencies = sorted(self.latencies)

        def pct(q: float) -> int | None:
            return (
                int(latencies[min(len(latencies) - 1, int(q * len(latencies)))])
                if latencies
                else None
            )

        pools = self.pools.values()
        return {
            "exchange": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "heartbeat_at": _wall_ms(),
            "connections": sum(p.used for p in pools),
            "connected": sum(p.open for p in pools),
            "streams": len(self.markets),
            "exchange_now": self.exchange_now,
            "reconnects": sum(c.reconnects for p in pools for c, _ in p.connections),
            "closes_stored": self.closes_stored,
            "latency_p50_ms": pct(0.5),
            "latency_p99_ms": pct(0.99),
            "last_error": self.last_error
            or next(
                (
                    c.last_error
                    for p in pools
                    for c, _ in p.connections
                    if not c.connected and c.wanted
                ),
                None,
            ),
        }

    def connected(self) -> set[str]:
        """Markets ("<type>/<stream>") whose connection is open with their stream subscribed."""
        return {
            f"{kind}/{name}"
            for kind, pool in self.pools.items()
            for conn, _ in pool.connections
            if conn.connected
            for name in conn.subscribed
        }

    async def beat(self) -> None:
        rows = []
        up = self.connected()
        for name, s in self.markets.items():
            last = self.last_close.get(name)
            lag = None
            if last is not None and self.exchange_now is not None:
                lag = self.exchange_now - (last + s.tf_ms)
            rows.append(
                (s.series, s.subscribed_at, last, self.stored_at.get(name), lag, name in up)
            )
        state = self.state()
        await asyncio.to_thread(self.store.live.beat, state, rows)
        if self.exchange_now is not None:
            await asyncio.to_thread(self.store.gaps.save_clock, self.name, self.exchange_now)

    # -- order books ---------------------------------------------------------------------
    async def orderbooks(self) -> None:
        """Snapshots every interval_s below a minute (the asset takes the slower ones)."""
        while True:
            settings = self.watchlist.orderbooks_of(self.name)
            if settings is None or not settings.by_live:
                await asyncio.sleep(1)
                continue
            started = time.monotonic()
            markets = [s.market for s in self.markets.values()]
            symbols = book_symbols(settings, markets)
            try:
                taken = await snapshot(self.client, self.store, symbols, settings.depth)
                for symbol, error in taken.failed.items():
                    self.log(f"{self.name}: order book of {symbol} not taken: {error}")
            except (ExchangeError, OSError) as e:
                self.log(f"{self.name}: order books not taken: {one_line(e)}")
            await asyncio.sleep(max(0.0, settings.interval_s - (time.monotonic() - started)))

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        while not self.queue.empty():  # what arrived is written before stopping
            batch = [self.queue.get_nowait() for _ in range(self.queue.qsize())]
            await self.write(batch)


class LiveService:
    """Every streaming exchange of the watchlist; the watchlist read again every refresh_s."""

    def __init__(
        self,
        store: CandleStore,
        load: Callable[[], Watchlist],
        client: Callable[[Watchlist, str], ExchangeClient],
        log: Log = print,
    ) -> None:
        self.store, self.load, self.make_client, self.log = store, load, client, log
        self.exchanges: dict[str, ExchangeLive] = {}
        self.clients: dict[str, ExchangeClient] = {}
        self.loaded_at: dict[str, float] = {}
        self.heartbeat_s: float = 5.0  # the watchlist's live.heartbeat_s and refresh_s
        self.refresh_s: float = 10.0

    def markets(
        self, watchlist: Watchlist, loaded: dict[str, dict[str, Instrument]]
    ) -> dict[str, list[Market]]:
        watched = watched_markets(self.store, watchlist, loaded)
        return {name: watched[name] for name in streaming_exchanges(watchlist)}

    async def catalogs(self, watchlist: Watchlist) -> dict[str, dict[str, Instrument]]:
        """The streaming exchanges' market lists as they are now (read again every hour):
        a market the exchange lists is streamed even before instruments/<exchange> ran."""
        out = {}
        for name in streaming_exchanges(watchlist):
            if name not in self.clients:
                self.clients[name] = self.make_client(watchlist, name)
            client = self.clients[name]
            reload = (
                time.monotonic() - self.loaded_at.get(name, -CATALOG_RELOAD_S) >= CATALOG_RELOAD_S
            )
            if reload:  # REST fills load only the types they need; the catalog needs all
                venue(name).all_types(client.exchange)
            # a list the stored catalog says cannot be true is retried, never believed: it
            # would unsubscribe good markets
            check = (
                plausible_markets(self.store, name, None, client.max_delisted_share)
                if reload
                else None
            )
            markets = await client.load_markets(reload=reload, plausible=check)
            if reload:
                self.loaded_at[name] = time.monotonic()
            out[name] = build_catalog(name, markets.values())
        return out

    async def _refresher(self, session: aiohttp.ClientSession, tasks: list[asyncio.Task]) -> None:
        """The watchlist and the exchanges' market lists read again every refresh_s."""
        while True:
            try:
                watchlist = await self.refresh(session, tasks)
                self.heartbeat_s, self.refresh_s = (
                    watchlist.live.heartbeat_s,
                    watchlist.live.refresh_s,
                )
            except (WatchlistError, ExchangeError, OSError) as e:
                self.log(f"watchlist not (re)loaded: {one_line(e)}; trying again")
            await asyncio.sleep(self.refresh_s)

    async def refresh(self, session: aiohttp.ClientSession, tasks: list[asyncio.Task]) -> Watchlist:
        # a watchlist of 2,500 markets is a second of YAML: read in a thread, as the
        # catalog's resolution below (the event loop carries every stream meanwhile)
        watchlist = await asyncio.to_thread(self.load)
        loaded = await self.catalogs(watchlist)
        wanted = await asyncio.to_thread(self.markets, watchlist, loaded)
        for name, markets in wanted.items():
            live = self.exchanges.get(name)
            if live is None:
                client = self.clients[name]
                live = self.exchanges[name] = ExchangeLive(
                    client, self.store, watchlist, session, self.log
                )
                tasks += [
                    asyncio.create_task(live.writer()),
                    asyncio.create_task(live.filler()),
                    asyncio.create_task(live.orderbooks()),
                ]
            await live.update(watchlist, markets)
        for name in set(self.exchanges) - set(wanted):
            await self.exchanges[name].update(watchlist, [])
        return watchlist

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: the watchlist read every refresh_s (an exchange that cannot be
        reached yet, or a broken edit of the file, is logged and tried again; the markets
        streamed stay), the heartbeat written every heartbeat_s. The two are separate
        tasks: a refresh that waits on a slow exchange (its market lists) holds neither the
        heartbeat nor a stop."""
        tasks: list[asyncio.Task] = []
        watchlist = self.load()  # a watchlist broken from the start: the command fails
        self.heartbeat_s, self.refresh_s = watchlist.live.heartbeat_s, watchlist.live.refresh_s
        if not streaming_exchanges(watchlist):
            self.log("no exchange of the watchlist streams; nothing to do")
        async with aiohttp.ClientSession() as session:
            refresher = asyncio.create_task(self._refresher(session, tasks))
            try:
                while not stop.is_set():
                    for live in list(self.exchanges.values()):
                        try:
                            await live.beat()
                        except (sa.exc.SQLAlchemyError, OSError) as e:  # the store is away
                            live.last_error = f"heartbeat not written: {one_line(e)}"[:500]
                            self.log(f"{live.name}: {live.last_error}")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.heartbeat_s)
            finally:
                for live in self.exchanges.values():
                    live.closing = True
                refresher.cancel()  # first: it adds tasks
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await refresher
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                for live in self.exchanges.values():
                    await live.close()
                    await asyncio.to_thread(self.store.live.stop, live.name)
                for client in self.clients.values():
                    await client.close()
