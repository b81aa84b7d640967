"""Binance's WebSocket kline streams, read natively (aiohttp), not through ccxt.pro.

Why not ccxt's ``watch_ohlcv_for_symbols``: ccxt keeps each kline in a cache of OHLCV rows
and drops Binance's ``k.x`` flag, so a caller cannot tell the closed candle from the last
update of one in progress; it would have to infer the close from the next candle's first
update (late by one update interval, and wrong when that update is lost). The native stream
says ``x: true`` exactly once per candle, at its close.

One ``StreamConnection`` carries up to the venue's streams per connection (Binance: 1024
spot, 200 USD-M futures) and keeps itself connected: it connects, subscribes its streams
with ``SUBSCRIBE`` requests (at most 5 messages a second, as Binance allows), reports the
streams it has confirmed (``on_open``: the caller fills what it missed over REST), passes
every kline event on, and on any loss (the 24-hour disconnect, a dropped network, silence
past ``silence_s``) reconnects after a backoff with jitter. Pings are answered by aiohttp.
``StreamPool`` spreads a market type's streams over as many connections as the limit needs.

Every new connection to a host first takes a slot of that host's ``ConnectBudget``, shared
by all of its connections: Binance allows 300 connection attempts per 5 minutes per
address, and a network blip that drops every connection, or an incident that refuses
handshakes for minutes, would otherwise have each connection retry on its own until the
address is banned. A refusal that says when to come back (429, 418 with Retry-After)
holds every connection of the host until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from market_data.exchanges.errors import retry_after
from market_data.exchanges.retry import Backoff

PARAMS_PER_MESSAGE = 200
MESSAGE_SPACING_S = 0.25  # Binance: at most 5 incoming messages a second per connection
SILENCE_S = 30.0  # no message for this long: the connection is dead
RECONNECT = Backoff(attempts=1_000_000, base_s=0.5, cap_s=30.0)
#: new connections per host we allow ourselves per window (Binance: 300 per 300 s)
CONNECT_LIMIT, CONNECT_WINDOW_S = 250, 300.0
REFUSED_WAIT_S = 60.0  # a 429/418 without Retry-After: wait this long


class ConnectBudget:
    """Connection attempts to one host: at most ``limit`` in any ``window_s``, none while the
    host said to wait. Shared by the host's connections (one event loop)."""

    def __init__(self, limit: int = CONNECT_LIMIT, window_s: float = CONNECT_WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self.attempts: deque[float] = deque()
        self.paused_until = 0.0

    async def take(self) -> None:
        """Wait for a slot, then count the attempt."""
        while True:
            now = time.monotonic()
            while self.attempts and self.attempts[0] <= now - self.window_s:
                self.attempts.popleft()
            wait = self.paused_until - now
            if wait <= 0 and len(self.attempts) < self.limit:
                self.attempts.append(now)
                return
            if wait <= 0:
                wait = self.attempts[0] + self.window_s - now
            await asyncio.sleep(wait + 0.01)

    def pause(self, seconds: float) -> None:
        """No attempt for ``seconds`` (the host refused with a Retry-After)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


@dataclass(frozen=True)
class Kline:
    """One kline event: a candle in progress (``closed`` False) or its final values."""

    stream: str
    ts: int  # open time, epoch ms
    values: tuple[float, float, float, float, float]  # open, high, low, close, volume
    closed: bool
    event_ms: int  # the exchange's clock when it sent the event
    received: float  # our wall clock (s) when it arrived


def parse_kline(raw: str | bytes, received: float) -> Kline | None:
    """A combined stream's kline event (``{"stream", "data"}``), else None."""
    body = orjson.loads(raw)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("e") != "kline":
        return None
    k = data["k"]
    values = (float(k["o"]), float(k["h"]), float(k["l"]), float(k["c"]), float(k["v"]))
    return Kline(body["stream"], int(k["t"]), values, bool(k["x"]), int(data["E"]), received)


OnKline = Callable[[Kline], None]
OnOpen = Callable[[frozenset[str]], Awaitable[None]]
Log = Callable[[str], None]


class StreamConnection:
    """One WebSocket connection to a combined-stream endpoint, kept connected."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        on_kline: OnKline,
        on_open: OnOpen,
        log: Log,
        silence_s: float = SILENCE_S,
        backoff: Backoff = RECONNECT,
        budget: ConnectBudget | None = None,
    ) -> None:
        self.url, self.session = url, session
        self.budget = budget or ConnectBudget()
        self.on_kline, self.on_open, self.log = on_kline, on_open, log
        self.silence_s, self.backoff = silence_s, backoff
        self.wanted: set[str] = set()
        self.subscribed: set[str] = set()
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self._changed = asyncio.Event()
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = 0
        self._rng = random.Random()

    def want(self, names: Iterable[str]) -> None:
        self.wanted = set(names)
        self._changed.set()

    async def run(self) -> None:
        """Connect, subscribe, read; on any loss wait and start again. Until cancelled."""
        attempt = 0
        while True:
            while not self.wanted:  # nothing to carry: no connection
                self._changed.clear()
                await self._changed.wait()
            got_messages = False
            await self.budget.take()
            try:
                async with self.session.ws_connect(self.url, autoping=True) as ws:
                    self.connected, self.subscribed = True, set()
                    reader = asyncio.create_task(self._read(ws))
                    try:
                        got_messages = await self._serve(ws, reader)
                    finally:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await reader
            except aiohttp.WSServerHandshakeError as e:
                self.last_error = f"handshake refused: HTTP {e.status} {e.message}"[:500]
                if e.status in (418, 429):  # the host's limit: every connection holds
                    wait = retry_after(e.headers) or REFUSED_WAIT_S
                    self.budget.pause(wait)
                    self.log(f"stream host refused a connection (HTTP {e.status}): "
                             f"no new connection for {wait:.0f}s")  # fmt: skip
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError) as e:
                self.last_error = f"{type(e).__name__}: {e}"[:500]
            finally:
                self.connected = False
                for future in self._replies.values():
                    future.cancel()
                self._replies.clear()
            attempt = 1 if got_messages else attempt + 1
            delay = self.backoff.delay(attempt, None, self._rng)
            self.reconnects += 1
            self.log(f"stream connection lost ({self.last_error}); reconnecting in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, reader: asyncio.Task) -> bool:
        """Keep the subscriptions equal to ``wanted`` while the reader runs; True once the
        connection delivered (so the next reconnect starts its backoff afresh)."""
        while not reader.done():
            self._changed.clear()
            added = sorted(self.wanted - self.subscribed)
            gone = sorted(self.subscribed - self.wanted)
            if gone:
                await self._request(ws, "UNSUBSCRIBE", gone)
                self.subscribed -= set(gone)
            if added:
                await self._request(ws, "SUBSCRIBE", added)
                self.subscribed |= set(added)
                await self.on_open(frozenset(added))  # REST fills what the stream missed
            changed = asyncio.create_task(self._changed.wait())
            await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        self.last_error = self.last_error or "closed by the exchange"
        return bool(reader.result()) if not reader.cancelled() else False

    async def _request(
        self, ws: aiohttp.ClientWebSocketResponse, method: str, names: list[str]
    ) -> None:
        for i in range(0, len(names), PARAMS_PER_MESSAGE):
            self._ids += 1
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._replies[self._ids] = future
            body = {"method": method, "params": names[i : i + PARAMS_PER_MESSAGE], "id": self._ids}
            await ws.send_str(orjson.dumps(body).decode())
            reply = await asyncio.wait_for(future, self.silence_s)
            if reply.get("error"):
                raise aiohttp.ClientError(f"{method} refused: {reply['error']}")
            await asyncio.sleep(MESSAGE_SPACING_S)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Every message until the connection ends or stays silent; True if any came."""
        got = False
        while True:
            try:
                msg = await ws.receive(timeout=self.silence_s)
            except TimeoutError:
                self.last_error = f"no message for {self.silence_s:.0f}s"
                return got
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                self.last_error = f"closed ({msg.type.name}, {ws.close_code})"
                return got
            got = True
            received = time.time()
            kline = parse_kline(msg.data, received)
            if kline is not None:
                self.on_kline(kline)
                continue
            body = orjson.loads(msg.data)
            future = self._replies.pop(body.get("id"), None) if isinstance(body, dict) else None
            if future is not None and not future.done():
                future.set_result(body)


class StreamPool:
    """A market type's streams over connections of at most ``max_streams`` each."""

    def __init__(self, make: Callable[[], StreamConnection], max_streams: int) -> None:
        self.make, self.max_streams = make, max_streams
        self.connections: list[tuple[StreamConnection, asyncio.Task]] = []

    def want(self, names: set[str]) -> None:
        """Subscribe ``names`` and nothing else: streams stay on their connection, new ones
        fill connections with room, then new connections."""
        assigned = [conn.wanted & names for conn, _ in self.connections]
        placed = set().union(*assigned) if assigned else set()
        todo = sorted(names - placed)
        for i in range(len(self.connections)):
            room = self.max_streams - len(assigned[i])
            assigned[i] |= set(todo[:room])
            todo = todo[room:]
        while todo:
            conn = self.make()
            self.connections.append((conn, asyncio.create_task(conn.run())))
            assigned.append(set(todo[: self.max_streams]))
            todo = todo[self.max_streams :]
        for (conn, _), streams in zip(self.connections, assigned, strict=True):
            if streams != conn.wanted:
                conn.want(streams)

    @property
    def open(self) -> int:
        return sum(c.connected for c, _ in self.connections if c.wanted)

    @property
    def used(self) -> int:
        return sum(1 for c, _ in self.connections if c.wanted)

    async def close(self) -> None:
        for _, task in self.connections:
            task.cancel()
        for _, task in self.connections:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
