"""Binance's WebSocket market streams: kline events for spot and USD-M futures.

Served as Binance serves them (one simulator port stands in for both hosts):

    spot     stream.binance.com:9443  ->  /ws/<stream>, /stream?streams=<a>/<b>
    futures  fstream.binance.com      ->  /fstream/ws/<stream>, /fstream/stream?streams=...

A stream is ``<symbol>@kline_<interval>`` (symbol in lower case). Raw streams (/ws) carry
the event itself; combined streams (/stream) wrap it as ``{"stream": name, "data": event}``.
On any connection the client may send ``SUBSCRIBE``, ``UNSUBSCRIBE`` and
``LIST_SUBSCRIPTIONS`` requests (``{"method", "params", "id"}``) and gets ``{"result",
"id"}`` back, or ``{"error": {"code", "msg"}, "id"}``.

Rules, as Binance documents them: at most 1024 streams per connection on spot and 200 on
futures (a URL asking for more is refused with HTTP 400, a SUBSCRIBE past it gets an
error); at most 5 incoming messages per second (past it the connection is closed); the
server pings every 20 s (futures: 3 min) and closes a connection that does not answer;
every connection is closed after 24 hours (of the exchange's clock); at most 300
connection attempts per 5 minutes per address and host (spot, futures): an attempt past
it is refused with HTTP 429 and a Retry-After, and an address that goes on past
``ban_after`` refusals is banned for ``ban_s`` (HTTP 418 to every attempt, as Binance's
REST does). An incident (``down_s``) refuses every handshake with HTTP 503 for a while;
those attempts count too.

Events: an update of the candle in progress every ``update_ms`` of wall time per stream
(Binance: 2000 ms spot, 250 ms futures) and, at the candle's close, its final values with
``k.x = true``, exactly once per candle (a candle the exchange has no trades for, absent
from the REST klines too, is not sent). Values come from the same book as the REST klines
at the same clock, through the same formatting.

A close is computed ahead: a background task (``_prepare``) works through every stream's
next close, the soonest first, while the clock runs towards it, so the moment 15,000
streams close together costs sends, not 15,000 candle computations. A close computed under
other fault settings than those in force when it is sent is computed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from market_data.simulator.binance import INTERVALS, kline_row
from market_data.simulator.book import CandleBook, Clock
from market_data.simulator.faults import Injector
from market_data.simulator.markets import SimMarket

MAX_STREAMS = {False: 1024, True: 200}  # per connection, by "is futures"
UPDATE_MS = {False: 2000, True: 250}
PING_S = {False: 20.0, True: 180.0}
LIFETIME_MS = 24 * 3600 * 1000
MESSAGES_PER_S = 5
CONNECT_LIMIT, CONNECT_WINDOW_S = 300, 300.0  # attempts per address and host, per window
BAN_AFTER, BAN_S = 10, 600.0  # refusals past the limit before a ban, and its length
FIXED_CLOCK_POLL_S = 0.02  # with a frozen clock, how often a moved clock is noticed
PREPARE_BATCH = 64  # candles computed between two yields to the event loop
PREPARE_IDLE_S = 0.2  # with nothing to compute ahead, how long before looking again


@dataclass
class Stream:
    name: str
    market: SimMarket
    tf_ms: int
    #: open time of the candle in progress as last sent (None: nothing sent yet)
    current: int | None = None
    #: wall time (monotonic) of the last update sent (at subscription: a random moment of
    #: the last update interval, so a connection's streams are not all due at once)
    updated_at: float = -math.inf

    @property
    def key(self) -> tuple[bool, str]:
        return self.market.futures, self.name


@dataclass
class StreamStats:
    connections: int = 0
    refused: int = 0
    updates_sent: int = 0
    closes_sent: int = 0
    dropped: int = 0
    expired: int = 0
    #: handshakes refused: past the attempt limit (429), banned (418), an incident (503)
    limited: int = 0
    banned: int = 0
    down: int = 0
    #: bans given
    bans: int = 0
    #: (is futures, stream, candle open time, wall time sent) of every close, newest last
    closes: deque[tuple[bool, str, int, float]] = field(
        default_factory=lambda: deque(maxlen=200_000)
    )

    def as_json(self, open_connections: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "connections": open_connections,
            "connections_opened": self.connections,
            "refused": self.refused,
            "updates_sent": self.updates_sent,
            "closes_sent": self.closes_sent,
            "dropped": self.dropped,
            "expired": self.expired,
            "limited": self.limited,
            "banned": self.banned,
            "down": self.down,
            "bans": self.bans,
        }


class StreamError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    futures: bool
    combined: bool
    opened_ms: int
    transport: Any
    streams: dict[str, Stream] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    received: deque[float] = field(default_factory=deque)


class KlineStreams:
    """Every open stream connection of the simulator, and what they were sent."""

    def __init__(self, book: CandleBook, clock: Clock, injector: Injector) -> None:
        self.book, self.clock, self.injector = book, clock, injector
        self.connections: set[Connection] = set()
        self.stats = StreamStats()
        #: None = Binance's update speed per family
        self.update_ms: int | None = None
        #: None = Binance's ping interval per family
        self.ping_s: float | None = None
        self.connect_limit, self.connect_window_s = CONNECT_LIMIT, CONNECT_WINDOW_S
        self.ban_after, self.ban_s = BAN_AFTER, BAN_S
        self.down_until = 0.0  # monotonic: an incident refuses handshakes until then
        #: (is futures, address) -> its attempts' times, refusals in a row, banned until
        self.attempts: dict[tuple[bool, str], deque[float]] = {}
        self.refusals: dict[tuple[bool, str], int] = {}
        self.banned_until: dict[tuple[bool, str], float] = {}
        self._preparer: asyncio.Task[None] | None = None
        #: each stream's next close computed ahead, by (is futures, stream name): (open time,
        #: the faults it was computed under, the event); kept across reconnections
        self.ready: dict[tuple[bool, str], tuple[int, object, dict[str, Any] | None]] = {}

    # -- subscriptions ------------------------------------------------------------------
    def stream(self, name: str, futures: bool) -> Stream:
        symbol, _, kind = name.partition("@")
        interval = kind.removeprefix("kline_")
        market = self.book.index.family(futures).get(symbol.upper())
        if not kind.startswith("kline_") or interval not in INTERVALS or market is None:
            raise StreamError(2, f"Invalid request: unknown stream {name!r}")
        return Stream(name, market, INTERVALS[interval])

    def subscribe(self, conn: Connection, names: list[str]) -> None:
        streams = [self.stream(str(n), conn.futures) for n in names]
        added = {s.name: s for s in streams if s.name not in conn.streams}
        if len(conn.streams) + len(added) > MAX_STREAMS[conn.futures]:
            raise StreamError(
                2, f"Invalid request: too many streams (max {MAX_STREAMS[conn.futures]})"
            )
        phase = time.monotonic() - self._update_s(conn) * random.random()
        for stream in added.values():
            stream.updated_at = phase
        conn.streams |= added
        conn.wake.set()

    # -- the connection -----------------------------------------------------------------
    def admit(self, futures: bool, address: str) -> web.Response | None:
        """The attempt counted against its address and host: None if it may connect, else
        the refusal (429 past the limit, 418 banned, 503 during an incident)."""
        key, now = (futures, address), time.monotonic()
        if self.banned_until.get(key, 0.0) > now:
            self.stats.banned += 1
            wait = self.banned_until[key] - now
            return _refusal(
                418, -1003, f"Way too many connection attempts; banned for {wait:.0f}s", wait
            )
        attempts = self.attempts.setdefault(key, deque())
        attempts.append(now)
        while attempts and attempts[0] <= now - self.connect_window_s:
            attempts.popleft()
        if len(attempts) > self.connect_limit:
            self.refusals[key] = self.refusals.get(key, 0) + 1
            if self.refusals[key] > self.ban_after:
                self.banned_until[key], self.refusals[key] = now + self.ban_s, 0
                self.stats.bans += 1
                self.stats.banned += 1
                return _refusal(
                    418,
                    -1003,
                    f"Way too many connection attempts; banned for {self.ban_s:.0f}s",
                    self.ban_s,
                )
            self.stats.limited += 1
            wait = attempts[0] + self.connect_window_s - now
            return _refusal(
                429,
                -1003,
                f"Too many connection attempts: {self.connect_limit} per {self.connect_window_s:.0f}s",
                wait,
            )
        self.refusals[key] = 0
        if now < self.down_until:
            self.stats.down += 1
            return _refusal(503, -1001, "Service unavailable", None)
        return None

    async def serve(self, request: web.Request, futures: bool, combined: bool) -> Any:
        refused = self.admit(futures, request.remote or "")
        if refused is not None:
            return refused
        names = (
            [n for n in request.query.get("streams", "").split("/") if n]
            if combined
            else [request.match_info["stream"]]
        )
        conn = Connection(
            web.WebSocketResponse(heartbeat=self.ping_s or PING_S[futures]),
            futures,
            combined,
            self.clock.now_ms(),
            request.transport,
        )
        try:
            if len(names) > MAX_STREAMS[futures]:
                raise StreamError(2, f"too many streams (max {MAX_STREAMS[futures]})")
            self.subscribe(conn, names)
        except StreamError as e:
            self.stats.refused += 1
            return web.json_response({"code": e.code, "msg": e.msg}, status=400)
        await conn.ws.prepare(request)
        self.connections.add(conn)
        self.stats.connections += 1
        if self._preparer is None or self._preparer.done():
            self._preparer = asyncio.create_task(self._prepare())
        pusher = asyncio.create_task(self._push(conn))
        try:
            async for msg in conn.ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if self._flooded(conn):
                    break
                await self._request(conn, msg.data)
        finally:
            pusher.cancel()
            self.connections.discard(conn)
            await conn.ws.close()
        return conn.ws

    def _flooded(self, conn: Connection) -> bool:
        now = time.monotonic()
        conn.received.append(now)
        while conn.received and conn.received[0] < now - 1.0:
            conn.received.popleft()
        return len(conn.received) > MESSAGES_PER_S

    async def _request(self, conn: Connection, raw: str) -> None:
        try:
            body = orjson.loads(raw)
            method, ident = body.get("method"), body.get("id")
            params = body.get("params") or []
        except (orjson.JSONDecodeError, AttributeError):
            await conn.ws.send_bytes(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        try:
            result: Any = None
            if method == "SUBSCRIBE":
                self.subscribe(conn, params)
            elif method == "UNSUBSCRIBE":
                for name in params:
                    conn.streams.pop(str(name), None)
            elif method == "LIST_SUBSCRIPTIONS":
                result = sorted(conn.streams)
            else:
                raise StreamError(1, f"Invalid request: unknown method {method!r}")
            reply: dict[str, Any] = {"result": result, "id": ident}
        except StreamError as e:
            reply = {"error": {"code": e.code, "msg": e.msg}, "id": ident}
        await conn.ws.send_str(orjson.dumps(reply).decode())

    async def _push(self, conn: Connection) -> None:
        """Each close as the exchange's clock passes it, and updates every update_ms."""
        try:
            while not conn.ws.closed:
                # cleared before the streams are read: a SUBSCRIBE while this round yields
                # wakes the next one (cleared after, its streams would wait for the next
                # close, and miss the one in progress)
                conn.wake.clear()
                now = self.clock.now_ms()
                if now - conn.opened_ms >= LIFETIME_MS:
                    self.stats.expired += 1
                    await conn.ws.close(code=1000, message=b"24h connection limit")
                    return
                streams = list(conn.streams.values())
                # the closes first, all of them, then the updates of the candles in progress;
                # a close not computed ahead, and each update, cost a candle computation: the
                # loop is yielded every PREPARE_BATCH streams (a connection of 1024 streams
                # would hold it for a second, and every other connection's pings with it)
                closes = []
                for i, s in enumerate(streams):
                    closes += self._closes(s, now)
                    if i % PREPARE_BATCH == PREPARE_BATCH - 1:
                        await asyncio.sleep(0)
                delay = self.injector.faults.latency_ms / 1000
                if delay:  # the exchange is this far away
                    await asyncio.sleep(delay)
                await self._send(conn, closes, closed=True)
                wall, update_s = time.monotonic(), self._update_s(conn)
                due = [s for s in streams if wall - s.updated_at >= update_s]
                updates = []
                for i, s in enumerate(due):
                    s.updated_at = wall
                    if (e := self._update(s, now)) is not None:
                        updates.append(e)
                    if i % PREPARE_BATCH == PREPARE_BATCH - 1:
                        await asyncio.sleep(0)
                await self._send(conn, updates, closed=False)
                # from the clock as it is now: this round's sends may have taken a while
                sleep_s = self._sleep_s(conn, self.clock.now_ms(), time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.wake.wait(), sleep_s)
        except (ConnectionResetError, RuntimeError):
            return  # the client went away mid-send

    def _update_s(self, conn: Connection) -> float:
        return (self.update_ms or UPDATE_MS[conn.futures]) / 1000

    def _sleep_s(self, conn: Connection, now: int, wall: float) -> float:
        """Until the next update or the next close, whichever is first (in wall time)."""
        update_s = self._update_s(conn)
        oldest = min((s.updated_at for s in conn.streams.values()), default=wall)
        until_update = max(0.0, oldest + update_s - wall)
        rate = self.clock.rate_per_ms()
        if rate is None:  # a frozen clock: close as soon as it is moved
            return min(until_update, FIXED_CLOCK_POLL_S)
        closes = [s.tf_ms - now % s.tf_ms for s in conn.streams.values()]
        until_close = min(closes, default=update_s * 1000) / rate / 1000
        return max(0.0005, min(until_update, until_close))

    async def _prepare(self) -> None:
        """Every stream's next close computed ahead, the soonest first, while connections
        are open (yielding to the sends every PREPARE_BATCH closes)."""
        while self.connections:
            faults = self.injector.faults
            streams = {
                s.key: s
                for conn in list(self.connections)
                for s in list(conn.streams.values())
                if s.current is not None
            }
            todo = sorted(
                (
                    (s.current + s.tf_ms, key, s)
                    for key, s in streams.items()
                    if (ready := self.ready.get(key)) is None
                    or ready[0] != s.current
                    or ready[1] is not faults
                ),
                key=lambda item: item[0],
            )
            if not todo:
                await asyncio.sleep(PREPARE_IDLE_S)
                continue
            for i, (_, key, stream) in enumerate(todo):
                t = stream.current
                if t is not None and faults is self.injector.faults:
                    event = self._event(stream, t, t + stream.tf_ms, closed=True)
                    self.ready[key] = (t, faults, event)
                if i % PREPARE_BATCH == PREPARE_BATCH - 1:
                    await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def _send(
        self, conn: Connection, events: list[tuple[str, dict[str, Any]]], closed: bool
    ) -> None:
        for stream, event in events:
            payload = {"stream": stream, "data": event} if conn.combined else event
            await conn.ws.send_bytes(orjson.dumps(payload))
            if closed:
                self.stats.closes_sent += 1
                self.stats.closes.append((conn.futures, stream, event["k"]["t"], time.time()))
            else:
                self.stats.updates_sent += 1

    def _closes(self, stream: Stream, now: int) -> list[tuple[str, dict[str, Any]]]:
        """Every candle of ``stream`` that closed since its last event, in order (a moved
        clock may close several at once), each exactly once."""
        tf = stream.tf_ms
        current = now - now % tf
        out = []
        if stream.current is not None and stream.current < current:
            for t in range(stream.current, current, tf):
                ready = self.ready.get(stream.key)
                if ready is not None and ready[0] == t and ready[1] is self.injector.faults:
                    event = None if ready[2] is None else {**ready[2], "E": now}
                else:
                    event = self._event(stream, t, now, closed=True)
                if event is not None:
                    out.append((stream.name, event))
        stream.current = current
        return out

    def _update(self, stream: Stream, now: int) -> tuple[str, dict[str, Any]] | None:
        current = now - now % stream.tf_ms
        if stream.market.ends_ms is not None and current >= stream.market.ends_ms:
            return None
        event = self._event(stream, current, now, closed=False)
        return None if event is None else (stream.name, event)

    def _event(self, stream: Stream, t: int, now: int, closed: bool) -> dict[str, Any] | None:
        market, tf = stream.market, stream.tf_ms
        bars = self.book.klines(market, tf, t, t, 1, now, self.injector.faults)
        if not len(bars) or int(bars.ts[0]) != t:
            return None
        ts, o, h, low, c, v, close_time, q, n, taker_v, taker_q, _ = kline_row(bars, market, tf)
        return {
            "e": "kline",
            "E": now,
            "s": market.id,
            "k": {
                "t": ts, "T": close_time, "s": market.id, "i": _interval(tf),
                "f": 0, "L": n, "o": o, "c": c, "h": h, "l": low, "v": v, "n": n,
                "x": closed, "q": q, "V": taker_v, "Q": taker_q, "B": "0",
            },
        }  # fmt: skip

    # -- admin --------------------------------------------------------------------------
    async def drop_all(self) -> int:
        """Cut every connection without a closing handshake (as a network failure does)."""
        conns = list(self.connections)
        if self._preparer is not None:
            self._preparer.cancel()
            self._preparer = None
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
            self.connections.discard(conn)
        self.stats.dropped += len(conns)
        return len(conns)

    def settings(self) -> dict[str, Any]:
        return {
            "update_ms": self.update_ms,
            "ping_s": self.ping_s,
            "connect_limit": self.connect_limit,
            "connect_window_s": self.connect_window_s,
            "ban_after": self.ban_after,
            "ban_s": self.ban_s,
            "down_s": round(max(0.0, self.down_until - time.monotonic()), 3),
        }

    def configure(self, body: dict[str, Any]) -> None:
        """The admin endpoint's settings (missing keys left as they are)."""
        if "update_ms" in body:
            self.update_ms = None if body["update_ms"] is None else int(body["update_ms"])
        if "ping_s" in body:
            self.ping_s = None if body["ping_s"] is None else float(body["ping_s"])
        for key in ("connect_limit", "ban_after"):
            if key in body:
                setattr(self, key, int(body[key]))
        for key in ("connect_window_s", "ban_s"):
            if key in body:
                setattr(self, key, float(body[key]))
        if "down_s" in body:
            self.down_until = time.monotonic() + float(body["down_s"])
        if body.get("forgive"):  # attempts, refusals and bans forgotten
            self.attempts.clear()
            self.refusals.clear()
            self.banned_until.clear()

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "futures": c.futures,
                "combined": c.combined,
                "streams": len(c.streams),
                "opened_ms": c.opened_ms,
            }
            for c in self.connections
        ]


def _refusal(status: int, code: int, msg: str, retry_after_s: float | None) -> web.Response:
    headers = (
        {} if retry_after_s is None else {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
    )
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def _interval(tf_ms: int) -> str:
    return next(code for code, ms in INTERVALS.items() if ms == tf_ms)
