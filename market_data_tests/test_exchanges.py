"""The exchange boundary: URL rewriting, retries with exponential backoff and jitter,
Retry-After honoured, bans pause the client."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.client import ExchangeClient, rewrite_urls
from market_data.exchanges.errors import (
    BadSymbolError,
    ExchangeBannedError,
    ExchangeUnavailableError,
    RateLimitedError,
)
from market_data.exchanges.retry import Backoff, call_with_retry
from market_data.simulator.server import RunningSimulator
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import admin, binance_client

START = 1_700_000_000_000


def flaky(errors: list[Exception], result: str = "ok") -> tuple[Callable[[], Any], list[int]]:
    calls = []

    async def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


def retried(
    call: Callable[[], Any], backoff: Backoff | None = None, **kw: Any
) -> tuple[Any, list[float]]:
    """Run call_with_retry to its end; returns its result and the waits it slept."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return asyncio.run(call_with_retry(call, backoff or Backoff(), sleep=sleep, **kw)), slept


def test_rewrite_urls_keeps_paths() -> None:
    urls = {
        "public": "https://api.binance.com/api/v3",
        "nested": {"fapi": "https://fapi.binance.com/fapi/v1"},
        "x": 3,
    }
    assert rewrite_urls(urls, "http://127.0.0.1:9") == {
        "public": "http://127.0.0.1:9/api/v3",
        "nested": {"fapi": "http://127.0.0.1:9/fapi/v1"},
        "x": 3,
    }


def test_backoff_doubles_with_bounded_jitter() -> None:
    backoff = Backoff(base_s=1, cap_s=10, jitter=0.25)
    rng = random.Random(1)
    for attempt, nominal in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)]:
        delays = [backoff.delay(attempt, None, rng) for _ in range(200)]
        assert nominal * 0.75 <= min(delays) < max(delays) <= nominal * 1.25


def test_retry_after_is_honoured() -> None:
    call, calls = flaky(
        [RateLimitedError("429", retry_after=7), RateLimitedError("", retry_after=3)]
    )
    paused: list[float] = []
    result, slept = retried(call, Backoff(base_s=0.1), on_pause=paused.append)
    assert result == "ok" and len(calls) == 3 and slept == [7, 3]
    assert paused == [7, 3]  # a 429 pauses the whole client, not only this call


def test_a_ban_pauses_the_client_until_it_ends(sim: RunningSimulator) -> None:
    rule = {"path": "/api/v3/time", "status": 418, "retry_after_s": 1}
    admin(sim.url, "faults", {"fail": [rule]})
    with binance_client(sim.url) as client:
        started = time.monotonic()
        assert client.fetch_time() == NOW_MS  # retried after the ban, not before
        assert time.monotonic() - started >= 1.0
        assert started + 1.0 <= client.paused_until <= time.monotonic()
    assert admin(sim.url, "stats")["requests"]["/api/v3/time"] == {"418": 1, "200": 1}


def test_every_call_is_retried_loading_the_markets_too(sim: RunningSimulator) -> None:
    admin(sim.url, "faults", {"fail": [{"path": "/api/v3/exchangeInfo", "status": 503}]})
    with binance_client(sim.url, retry_base_s=0.01) as client:
        assert "BTC/USDT" in client.load_markets()
    assert admin(sim.url, "stats")["requests"]["/api/v3/exchangeInfo"] == {"503": 1, "200": 1}


def _pages_concurrently(client: ExchangeClient, pages: int, in_flight: int) -> list[list]:
    async def all_pages() -> list[list]:
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int) -> list:
            async with gate:
                return await client.fetch_ohlcv("BTC/USDT", "1m", START + i * 60_000_000, 1000)

        try:
            return await asyncio.gather(*(one(i) for i in range(pages)))
        finally:
            await client.close()

    return asyncio.run(all_pages())


def test_a_ban_pauses_every_request_in_flight_or_to_come(sim: RunningSimulator) -> None:
    rule = {"path": "/api/v3/klines", "status": 418, "skip": 2, "retry_after_s": 1}
    admin(sim.url, "faults", {"fail": [rule]})
    settings = ExchangeSettings("binance", sim.url, rate_limit_ms=0, retry_base_s=0.01)
    got = _pages_concurrently(ExchangeClient.of(settings), pages=30, in_flight=4)
    assert all(len(rows) == 1000 for rows in got)
    klines = [r for r in admin(sim.url, "timeline") if r["path"] == "/api/v3/klines"]
    (banned,) = [r["t"] for r in klines if r["status"] == 418]
    # the 3 requests already in flight when the ban came back may arrive; nothing after them
    # until the ban is over
    during = [r for r in klines if banned < r["t"] < banned + 0.95]
    assert len(during) <= 3, during
    assert len(klines) == 31


def test_the_throttle_keeps_many_requests_in_flight_under_the_weight_limit(
    sim: RunningSimulator,
) -> None:
    # 40 weight per 2 s = 10 klines per second; ccxt's cost of a spot kline is 0.4 x rateLimit
    admin(sim.url, "faults", {"weight_limit": 40, "weight_window_s": 2})
    settings = ExchangeSettings("binance", sim.url, rate_limit_ms=260)  # 104 ms between starts
    started = time.monotonic()
    got = _pages_concurrently(ExchangeClient.of(settings), pages=30, in_flight=8)
    assert len(got) == 30 and time.monotonic() - started >= 2.9
    assert admin(sim.url, "stats")["requests"]["/api/v3/klines"] == {"200": 30}  # no 429


def test_permanent_errors_are_not_retried() -> None:
    call, calls = flaky([BadSymbolError("nope")])
    with pytest.raises(BadSymbolError):
        retried(call)
    assert len(calls) == 1


def test_exhausted_attempts_raise_the_last_error() -> None:
    call, calls = flaky([ExchangeUnavailableError(f"503 #{i}") for i in range(10)])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with pytest.raises(ExchangeUnavailableError, match="503 #3"):
        asyncio.run(call_with_retry(call, Backoff(attempts=4, base_s=1, jitter=0), sleep=sleep))
    assert len(calls) == 4 and slept == [1, 2, 4]


def test_a_ban_longer_than_the_limit_fails_instead_of_sleeping() -> None:
    call, _ = flaky([ExchangeBannedError("418", retry_after=86_400)])
    with pytest.raises(ExchangeBannedError):
        retried(call, Backoff(max_wait_s=900))


def test_requests_are_paced_by_the_weight_the_exchange_reports(sim: RunningSimulator) -> None:
    """A limit far below ccxt's assumption (40 weight per 2 s, as exchangeInfo says): an
    unthrottled client with 16 requests in flight waits for the window to turn instead of
    running into 429s."""
    admin(sim.url, "faults", {"weight_limit": 40, "weight_window_s": 2})
    client = ExchangeClient.of(ExchangeSettings("binance", sim.url, rate_limit_ms=0))
    budget = client.budget
    started = time.monotonic()
    got = _pages_concurrently(client, pages=40, in_flight=16)
    elapsed = time.monotonic() - started
    assert all(len(rows) == 1000 for rows in got)
    requests = admin(sim.url, "stats")["requests"]
    assert requests["/api/v3/klines"] == {"200": 40}  # no 429, no ban
    assert requests["/api/v3/exchangeInfo"] == {"200": 1}
    # 20 + 80 weight at 40 per window: at least two turns of the window
    assert budget is not None and budget.held > 0 and elapsed >= 2


def test_two_processes_on_one_address_share_its_budget(sim: RunningSimulator) -> None:
    """Two clients (as two processes: neither knows the other's requests) see each other's
    spending in the exchange's count and stay under the limit together."""
    admin(sim.url, "faults", {"weight_limit": 200, "weight_window_s": 2})

    def client() -> ExchangeClient:
        settings = ExchangeSettings("binance", sim.url, rate_limit_ms=0)
        return ExchangeClient(ExchangeClient.of(settings).exchange, max_in_flight=4)

    async def both() -> list[list[list]]:
        a, b = client(), client()
        return await asyncio.gather(
            asyncio.to_thread(_pages_concurrently, a, 120, 4),
            asyncio.to_thread(_pages_concurrently, b, 120, 4),
        )

    got = asyncio.run(both())
    assert [len(pages) for pages in got] == [120, 120]
    requests = admin(sim.url, "stats")["requests"]
    assert requests["/api/v3/klines"] == {"200": 240}  # 480 weight in 200s: no 429
