"""The simulator's HTTP server (aiohttp): several exchanges on one port, fault injection,
admin endpoints.

Binance is served at the root (/api/v3, /fapi/v1), every other dialect under its name:
/bitfinex/v2/..., /coinbase/api/v3/..., /kraken/0/public/... (point a ccxt client there
with base_url http://host:port/<name>). All serve one candle book and one clock; each has
its own faults, rate budget and counters. Every response carries the simulator clock in
its Date header (Bitfinex has no time endpoint: clients read its clock there).

Admin endpoints (JSON), at the root for Binance and under /<name>/admin/... for the others
(the clock is shared):
  GET  /admin/stats            requests by path and status, candles served
  GET  /admin/timeline         each request: arrival time, path, status, weight
  POST /admin/reset            zero the counters and rate-limit windows ({"faults": true}
                               also clears the faults)
  GET  /admin/faults           the fault settings;  POST merges the given keys into them
                               (and starts fresh rate-limit windows; the random fault
                               sequence goes on unless the body sets "seed")
  GET  /admin/clock            {"now_ms": ...};     POST {"fixed_ms"|"offset_ms"|"advance_ms"}
                               or {"run_from_ms", "rate"}: a clock that runs, faster
  GET  /admin/ws               Binance's stream connections and what they were sent
  GET  /admin/ws/closes        every closed-candle event sent: futures or spot, stream, open
                               time, wall time
  POST /admin/ws/drop          cut every stream connection (as a network failure does)
  POST /admin/ws/settings      {"update_ms": n}: updates of candles in progress every n ms;
                               {"ping_s": s}: the server's ping interval;
                               {"connect_limit": n, "connect_window_s": s}: connection
                               attempts per address and host (Binance: 300 per 300 s);
                               {"ban_after": n, "ban_s": s}: refusals past it before a ban,
                               and its length; {"down_s": s}: an incident, every handshake
                               refused (503) for s seconds; {"forgive": true}: bans lifted

Binance's public data archive (simulator/archive.py) at /binance-archive: monthly and daily
kline zips with their .CHECKSUM files, as data.binance.vision lays them out.

Binance's WebSocket market streams (simulator/streams.py): spot at /ws and /stream,
USD-M futures at /fstream/ws and /fstream/stream.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from market_data.domain.weights import DEFAULT_LIMITS, WEIGHT_HEADER, header_suffix
from market_data.simulator import archive
from market_data.simulator.binance import (
    FAMILIES,
    Binance,
    BinanceError,
    server_error,
    too_many_requests,
    weight,
)
from market_data.simulator.bitfinex import Bitfinex
from market_data.simulator.book import CandleBook, Clock
from market_data.simulator.coinbase import Coinbase
from market_data.simulator.dialect import Buckets, Dialect, DialectError
from market_data.simulator.faults import Faults, Injector, Limiter, garbled
from market_data.simulator.kraken import Kraken
from market_data.simulator.streams import KlineStreams

JSON = "application/json;charset=UTF-8"


@dataclass
class Stats:
    requests: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    candles_served: int = 0
    #: requests refused for the rate limit, in the exchange's style (Kraken: HTTP 200)
    rate_limited: int = 0
    #: (arrival time, path, status, weight) of the latest requests (GET /admin/timeline)
    timeline: deque[tuple[float, str, int, int]] = field(
        default_factory=lambda: deque(maxlen=100_000)
    )

    def count(self, path: str, status: int, weight: int) -> None:
        self.requests[path][status] += 1
        self.timeline.append((time.time(), path, status, weight))

    def as_json(self) -> dict[str, Any]:
        by_path = {p: {str(s): n for s, n in c.items()} for p, c in sorted(self.requests.items())}
        total = sum(sum(c.values()) for c in self.requests.values())
        return {
            "requests": by_path,
            "total_requests": total,
            "candles_served": self.candles_served,
            "rate_limited": self.rate_limited,
        }


@dataclass
class DialectState:
    """One non-Binance exchange: its dialect, faults, rate budget and counters."""

    dialect: Dialect
    injector: Injector
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.buckets = Buckets(self.dialect.rates)

    @property
    def faults(self) -> Faults:
        return self.injector.faults

    def reset_limits(self) -> None:
        self.buckets = Buckets(self.dialect.rates)


#: the exchanges served under a path prefix of their name
DIALECTS = ("bitfinex", "coinbase", "kraken")


def _encoded(body: Any) -> bytes:
    return body if isinstance(body, bytes) else orjson.dumps(body)


def _http_date(now_ms: int) -> str:
    return format_datetime(datetime.fromtimestamp(now_ms / 1000, UTC), usegmt=True)


class Simulator:
    """All the exchanges' state; one instance per server. ``faults`` apply to every exchange
    at start (each keeps its own copy, changed through its admin endpoint)."""

    def __init__(
        self,
        faults: Faults | None = None,
        clock: Clock | None = None,
        replay: dict[str, Path] | None = None,
        extra_pairs: int = 0,
        archive_cache_bytes: int = archive.CACHE_BYTES,
        archive_dir: Path | None = None,
    ) -> None:
        """``extra_pairs``: that many more Binance bases (``markets.extra_pairs``), for
        benchmarks; ``archive_cache_bytes``: built archive files kept in memory;
        ``archive_dir``: every built archive file kept there too (prebuilt, as the real
        host's)."""
        self.clock = clock or Clock()
        self.injector = Injector(faults or Faults())
        self.limiter = Limiter()
        self.stats = Stats()
        self.book = CandleBook(replay, extra_pairs)
        self.binance = Binance(self.book)
        self.archive = archive.Archive(self.book, archive_cache_bytes, archive_dir)
        self.streams = KlineStreams(self.book, self.clock, self.injector)
        start = faults or Faults()
        self.dialects: dict[str, DialectState] = {
            d.name: DialectState(d, Injector(start.model_copy(deep=True)))
            for d in (Bitfinex(self.book), Coinbase(self.book), Kraken(self.book))
        }

    @property
    def faults(self) -> Faults:
        return self.injector.faults

    def venue(self, name: str) -> Simulator | DialectState:
        """The state (faults, counters) of one exchange: "binance" or a dialect's name."""
        return self if name == "binance" else self.dialects[name]

    def _reply(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        injector: Injector | None = None,
    ) -> web.Response:
        raw = (injector or self.injector).mangle(_encoded(body))
        headers = {"Content-Type": JSON, "Date": _http_date(self.clock.now_ms()), **(headers or {})}
        return web.Response(status=status, body=raw, headers=headers)

    async def dialect_request(
        self, state: DialectState, endpoint: str, params: Any
    ) -> web.Response:
        """One request to a non-Binance exchange: latency, its rate budget, forced failures,
        then its dialect's answer; counted by path under the exchange's prefix."""
        dialect, injector = state.dialect, state.injector
        path = f"/{dialect.name}{endpoint}"
        delay = injector.delay_s()
        if delay:
            await asyncio.sleep(delay)
        headers: dict[str, str] = {}
        candles, status, limited = 0, 200, False
        try:
            wait = state.buckets.admit(dialect.budget(endpoint))
            forced = None if wait is not None else injector.forced_failure(path, params)
            if wait is not None or (forced is not None and forced.status in (418, 429)):
                limited = True
                error, headers = dialect.rate_limited(
                    wait if wait is not None else forced.retry_after_s  # type: ignore[union-attr]
                )
                raise error
            if forced is not None and forced.garble is None:
                raise dialect.failure(forced.status, forced.code, forced.msg)
            body, candles = dialect.handle(
                endpoint, dict(params), self.clock.now_ms(), state.faults
            )
            if forced is not None and forced.garble is not None:
                body, candles = garbled(_encoded(body), forced.garble), 0
        except DialectError as e:
            status, body = e.status, e.body
        state.stats.count(path, status, 1)
        state.stats.rate_limited += limited
        state.stats.candles_served += candles
        return self._reply(status, body, headers, injector)

    async def exchange(self, request: web.Request) -> web.Response:
        path = request.path
        head, _, rest = path[1:].partition("/")
        if head in self.dialects:
            return await self.dialect_request(self.dialects[head], f"/{rest}", request.query)
        prefix, _, endpoint = path.rpartition("/")
        futures = FAMILIES.get(prefix)
        params = request.query
        if futures is None:
            if path == "/dapi/v1/exchangeInfo":  # coin-M futures: none listed here
                return self._reply(
                    200,
                    {
                        "timezone": "UTC",
                        "serverTime": self.clock.now_ms(),
                        "rateLimits": [],
                        "exchangeFilters": [],
                        "symbols": [],
                    },
                )
            return self._reply(404, {"code": -1000, "msg": "Unknown endpoint."})
        delay = self.injector.delay_s()
        if delay:
            await asyncio.sleep(delay)
        cost = weight(endpoint, params, futures)
        status, used, retry_after = self.limiter.admit(self.faults, futures, cost)
        headers = {WEIGHT_HEADER + header_suffix(self.faults.weight_window_s): str(used)}
        try:
            if status != 200:
                # whole seconds, rounded up: a client that waits exactly this long is let in
                headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
                banned = int(time.time() * 1000 + retry_after * 1000) if status == 418 else None
                raise too_many_requests(self.faults.weight_limit or DEFAULT_LIMITS[futures], banned)
            forced = self.injector.forced_failure(path, params)
            if forced is not None and forced.status in (418, 429):
                headers["Retry-After"] = str(forced.retry_after_s)
                until = int(time.time() * 1000) + forced.retry_after_s * 1000
                error = too_many_requests(
                    self.faults.weight_limit or DEFAULT_LIMITS[futures],
                    until if forced.status == 418 else None,
                )
                raise BinanceError(
                    forced.status, forced.code or error.code, forced.msg or error.msg
                )
            if forced is not None and forced.garble is None:
                raise server_error(forced.status, forced.code, forced.msg)
            body, candles = self.binance.handle(
                endpoint, params, futures, self.clock.now_ms(), self.faults
            )
            if forced is not None and forced.garble is not None:
                body, candles = garbled(_encoded(body), forced.garble), 0
        except BinanceError as e:
            self.stats.count(path, e.status, cost)
            self.stats.rate_limited += e.status in (418, 429)
            return self._reply(e.status, e.body(), headers)
        self.stats.count(path, 200, cost)
        self.stats.candles_served += candles
        return self._reply(200, body, headers)

    async def archive_file(self, request: web.Request) -> web.Response:
        """A file of Binance's public data archive (simulator/archive.py): Binance's latency,
        fault rules and rates apply; no request weight is charged. Counted by kind of file."""
        delay = self.injector.delay_s()
        if delay:
            await asyncio.sleep(delay)
        try:
            file = archive.parse_path(request.path.removeprefix(archive.PREFIX))
        except archive.NotPublished:
            self.stats.count(archive.PREFIX, 404, 0)
            return web.Response(status=404, body=archive.NOT_FOUND, content_type="application/xml")
        forced = self.injector.forced_failure(request.path, request.query)
        status, body = 200, b""
        if forced is not None and forced.garble is None:
            status, body = forced.status, archive.NOT_FOUND if forced.status == 404 else b""
        else:
            try:
                body = await asyncio.to_thread(
                    self.archive.get, file, self.clock.now_ms(), self.faults
                )
            except archive.NotPublished:
                status, body = 404, archive.NOT_FOUND
        if status == 200 and forced is not None and forced.garble is not None:
            body = garbled(body, forced.garble)
        elif status == 200:
            body = self.injector.mangle(body)
        self.stats.count(file.family, status, 0)
        kind = "application/xml" if status == 404 else (
            "text/plain" if file.checksum else "application/zip"
        )  # fmt: skip
        return web.Response(status=status, body=body, content_type=kind)

    # -- admin -------------------------------------------------------------------------
    def _state(self, request: web.Request) -> Simulator | DialectState:
        name = request.match_info.get("exchange", "binance")
        if name != "binance" and name not in self.dialects:
            raise web.HTTPNotFound(text=f"no exchange {name!r} here")
        return self.venue(name)

    async def admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._state(request).stats.as_json())

    async def admin_timeline(self, request: web.Request) -> web.Response:
        timeline = self._state(request).stats.timeline
        rows = [{"t": t, "path": p, "status": s, "weight": w} for t, p, s, w in timeline]
        return web.json_response(rows)

    def _reset_limits(self, state: Simulator | DialectState) -> None:
        if isinstance(state, DialectState):
            state.reset_limits()
        else:
            self.limiter = Limiter()

    async def admin_reset(self, request: web.Request) -> web.Response:
        state = self._state(request)
        body = await request.json() if request.can_read_body else {}
        state.stats = Stats()
        self._reset_limits(state)
        state.injector.configure(Faults() if body.get("faults") else state.faults, reseed=True)
        return web.json_response({"ok": True})

    async def admin_faults(self, request: web.Request) -> web.Response:
        state = self._state(request)
        if request.method == "POST":
            try:
                body = await request.json()
                merged = state.faults.model_dump() | body
                # the random sequence goes on unless the request sets a seed
                state.injector.configure(Faults.model_validate(merged), reseed="seed" in body)
                self._reset_limits(state)  # new budget: fresh windows, no ban
            except (ValidationError, ValueError) as e:
                return web.json_response({"error": str(e)}, status=400)
        return web.json_response(state.faults.model_dump())

    async def admin_clock(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await request.json()
            if "fixed_ms" in body:
                self.clock.fixed_ms = None if body["fixed_ms"] is None else int(body["fixed_ms"])
            if "offset_ms" in body:
                self.clock.offset_ms = int(body["offset_ms"])
            if "run_from_ms" in body:
                self.clock.run_from(int(body["run_from_ms"]), float(body.get("rate", 1.0)))
            if "advance_ms" in body:
                if self.clock.fixed_ms is not None:
                    self.clock.fixed_ms += int(body["advance_ms"])
                else:
                    self.clock.offset_ms += int(body["advance_ms"])
        return web.json_response(
            {
                "now_ms": self.clock.now_ms(),
                "fixed": self.clock.fixed_ms is not None,
                "rate": self.clock.rate,
                "offset_ms": self.clock.offset_ms,
            }
        )

    async def admin_ws(self, request: web.Request) -> web.Response:
        return web.json_response(self.streams.stats.as_json(self.streams.describe()))

    async def admin_ws_closes(self, request: web.Request) -> web.Response:
        closes = self.streams.stats.closes
        rows = [{"futures": f, "stream": s, "t": t, "sent": w} for f, s, t, w in closes]
        return web.json_response(rows)

    async def admin_ws_drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": await self.streams.drop_all()})

    async def admin_ws_settings(self, request: web.Request) -> web.Response:
        self.streams.configure(await request.json())
        return web.json_response(self.streams.settings())

    async def _drop_streams(self, _: web.Application) -> None:
        await self.streams.drop_all()

    def _stream_routes(self, app: web.Application) -> None:
        for prefix, futures in (("", False), ("/fstream", True)):

            async def raw(request: web.Request, futures: bool = futures) -> Any:
                return await self.streams.serve(request, futures, combined=False)

            async def combined(request: web.Request, futures: bool = futures) -> Any:
                return await self.streams.serve(request, futures, combined=True)

            app.router.add_get(f"{prefix}/ws/{{stream}}", raw)
            app.router.add_get(f"{prefix}/stream", combined)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/admin/ws", self.admin_ws)
        app.router.add_get("/admin/ws/closes", self.admin_ws_closes)
        app.router.add_post("/admin/ws/drop", self.admin_ws_drop)
        app.router.add_post("/admin/ws/settings", self.admin_ws_settings)
        self._stream_routes(app)
        app.on_shutdown.append(self._drop_streams)
        for prefix in ("", "/{exchange}"):
            app.router.add_get(f"{prefix}/admin/stats", self.admin_stats)
            app.router.add_get(f"{prefix}/admin/timeline", self.admin_timeline)
            app.router.add_post(f"{prefix}/admin/reset", self.admin_reset)
            app.router.add_route("*", f"{prefix}/admin/faults", self.admin_faults)
            app.router.add_route("*", f"{prefix}/admin/clock", self.admin_clock)
        app.router.add_get(archive.PREFIX + "/{tail:.*}", self.archive_file)
        app.router.add_get("/{tail:.*}", self.exchange)
        return app


class RunningSimulator:
    """A simulator serving on 127.0.0.1 from a background thread (tests, demos, benchmarks)."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(simulator.app(), access_log=None)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(host, port), daemon=True)
        self.url = ""

    def _serve(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, host, port)
        self._loop.run_until_complete(site.start())
        bound = self._runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def start(self) -> RunningSimulator:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("simulator did not start within 15 s")
        return self

    def stop(self) -> None:
        if self._loop.is_running():  # open streams would hold the server's cleanup
            drop = self.simulator.streams.drop_all()
            asyncio.run_coroutine_threadsafe(drop, self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> RunningSimulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_forever(simulator: Simulator, host: str, port: int) -> None:
    web.run_app(simulator.app(), host=host, port=port, access_log=None, print=None)
