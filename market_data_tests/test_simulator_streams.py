"""The simulator's Binance WebSocket streams, read by a plain WebSocket client: kline events
as Binance sends them, consistent with REST, and Binance's connection rules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from market_data.simulator.server import RunningSimulator
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, http_get

MINUTE = 60_000


def ws_url(sim: RunningSimulator, path: str) -> str:
    return sim.url.replace("http", "ws", 1) + path


def run(test: Callable[[aiohttp.ClientSession], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            return await test(session)

    return asyncio.run(main())


async def messages(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    out = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT and msg.type != aiohttp.WSMsgType.BINARY:
            break
        out.append(orjson.loads(msg.data))
    return out


def test_each_candle_closes_exactly_once_with_the_rest_values(sim: RunningSimulator) -> None:
    """A frozen clock moved minute by minute (and once by three): every candle's x=true event
    comes once, in order, with the values REST serves for it; updates in between say
    x=false. Spot and futures share stream names on their own hosts."""
    admin(sim.url, "ws/settings", {"update_ms": 100})
    start = NOW_MS - NOW_MS % MINUTE

    async def test(session: aiohttp.ClientSession) -> dict[str, list[dict[str, Any]]]:
        spot = await session.ws_connect(ws_url(sim, "/stream?streams=btcusdt@kline_1m"))
        perp = await session.ws_connect(ws_url(sim, "/fstream/ws/btcusdt@kline_1m"))
        got: dict[str, list[dict[str, Any]]] = {"spot": [], "perp": []}
        for step in (MINUTE, MINUTE, 3 * MINUTE):
            await asyncio.sleep(0.3)
            admin(sim.url, "clock", {"advance_ms": step})
            got["spot"] += [m["data"] for m in await messages(spot, 0.4)]
            got["perp"] += await messages(perp, 0.4)
        await spot.close()
        await perp.close()
        return got

    got = run(test)
    for family, events in got.items():
        closed = [e["k"] for e in events if e["k"]["x"]]
        assert [k["t"] for k in closed] == [start + i * MINUTE for i in range(5)], family
        assert any(not e["k"]["x"] for e in events)
        path = "/api/v3/klines" if family == "spot" else "/fapi/v1/klines"
        _, _, rows = http_get(
            sim.url, path, symbol="BTCUSDT", interval="1m", startTime=start, limit=5
        )
        assert [[k["t"], k["o"], k["h"], k["l"], k["c"], k["v"]] for k in closed] == [
            r[:6] for r in rows
        ], family
    stats = admin(sim.url, "ws")
    assert stats["closes_sent"] == 10


def test_subscriptions_and_their_limits(sim: RunningSimulator) -> None:
    """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS; an unknown stream is refused; past 200
    streams a futures connection refuses more (spot: 1024), and a URL asking for more is
    refused outright."""
    many = "/".join(f"s{i}usdt@kline_1m" for i in range(201))

    async def test(session: aiohttp.ClientSession) -> list[Any]:
        ws = await session.ws_connect(ws_url(sim, "/fstream/stream"))
        replies = []
        for i, (method, params) in enumerate([
            ("SUBSCRIBE", ["btcusdt@kline_1m", "ethusdt@kline_5m"]),
            ("LIST_SUBSCRIPTIONS", []),
            ("UNSUBSCRIBE", ["ethusdt@kline_5m"]),
            ("SUBSCRIBE", ["nosuchusdt@kline_1m"]),
        ]):  # fmt: skip
            await ws.send_str(orjson.dumps({"method": method, "params": params, "id": i}).decode())
            reply = next(m for m in await messages(ws, 0.5) if m.get("id") == i)
            replies.append(reply)
            await asyncio.sleep(0.25)
        await ws.close()
        try:
            await session.ws_connect(ws_url(sim, f"/fstream/stream?streams={many}"))
        except aiohttp.WSServerHandshakeError as e:
            replies.append(e.status)
        return replies

    subscribed, listed, unsubscribed, unknown, refused = run(test)
    assert subscribed == {"result": None, "id": 0}
    assert listed == {"result": ["btcusdt@kline_1m", "ethusdt@kline_5m"], "id": 1}
    assert unsubscribed == {"result": None, "id": 2}
    assert unknown["error"]["code"] == 2 and "nosuchusdt" in unknown["error"]["msg"]
    assert refused == 400


def test_connection_rules_flooding_pings_and_the_24_hour_limit(sim: RunningSimulator) -> None:
    """More than 5 messages in a second closes the connection; the server pings (and a
    client that answers stays); a connection is closed after 24 hours of the exchange's
    clock."""
    admin(sim.url, "ws/settings", {"ping_s": 0.2})

    async def test(session: aiohttp.ClientSession) -> tuple[bool, bool, bool, Any]:
        flood = await session.ws_connect(ws_url(sim, "/stream"))
        for i in range(7):
            await flood.send_str(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
        await messages(flood, 1.0)
        flooded = flood.closed
        quiet = await session.ws_connect(ws_url(sim, "/ws/btcusdt@kline_1m"), autoping=False)
        ping = await quiet.receive(timeout=2)
        while ping.type != aiohttp.WSMsgType.PING:  # kline updates come first
            ping = await quiet.receive(timeout=2)
        pinged = True
        await quiet.pong(ping.data)
        day = await session.ws_connect(ws_url(sim, "/ws/ethusdt@kline_1h"))
        await messages(day, 0.5)
        admin(sim.url, "clock", {"advance_ms": 24 * 3600 * 1000})
        await messages(day, 1.0)
        expired = day.closed
        await quiet.close()
        return flooded, pinged, expired, admin(sim.url, "ws")

    flooded, pinged, expired, stats = run(test)
    assert flooded and pinged and expired
    assert stats["expired"] == 1


@pytest.mark.parametrize(
    "path", ["/stream?streams=btcusdt@kline_1m", "/fstream/ws/btcusdt@kline_1m"]
)
def test_the_admin_endpoint_drops_every_connection(sim: RunningSimulator, path: str) -> None:
    async def test(session: aiohttp.ClientSession) -> tuple[Any, bool]:
        ws = await session.ws_connect(ws_url(sim, path))
        await messages(ws, 0.3)
        dropped = admin(sim.url, "ws/drop", {})
        await messages(ws, 1.0)
        return dropped, ws.closed

    dropped, closed = run(test)
    assert dropped == {"dropped": 1} and closed


def test_connection_attempts_past_the_limit_are_refused_then_banned(sim: RunningSimulator) -> None:
    """Binance's 300 attempts per 5 minutes per address, scaled down: past the limit a
    handshake gets 429 with Retry-After; an address that goes on is banned (418) for
    ban_s; each host (spot, futures) counts its own; an incident refuses with 503."""
    limits = {"connect_limit": 3, "connect_window_s": 60, "ban_after": 2, "ban_s": 30}
    admin(sim.url, "ws/settings", limits)

    async def attempt(session: aiohttp.ClientSession, path: str) -> tuple[int, str | None]:
        try:
            ws = await session.ws_connect(ws_url(sim, path))
        except aiohttp.WSServerHandshakeError as e:
            return e.status, (e.headers or {}).get("Retry-After")
        await ws.close()
        return 101, None

    async def storm(session: aiohttp.ClientSession) -> list[tuple[int, str | None]]:
        return [await attempt(session, "/ws/btcusdt@kline_1m") for _ in range(7)] + [
            await attempt(session, "/fstream/ws/btcusdt@kline_1m")
        ]

    got = run(storm)
    assert [status for status, _ in got] == [101, 101, 101, 429, 429, 418, 418, 101]
    assert 55 <= int(got[3][1] or 0) <= 60 and 29 <= int(got[5][1] or 0) <= 30
    stats = admin(sim.url, "ws")
    assert (stats["limited"], stats["banned"], stats["bans"]) == (2, 2, 1)
    admin(sim.url, "ws/settings", {"forgive": True, "down_s": 1.0})
    later = run(lambda s: attempt(s, "/ws/btcusdt@kline_1m"))
    time.sleep(1.2)
    assert (later, run(lambda s: attempt(s, "/ws/btcusdt@kline_1m"))) == ((503, None), (101, None))
