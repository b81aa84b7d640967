"""The exchange boundary: URL rewriting, retries with exponential backoff and jitter,
Retry-After honoured, bans pause the client."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from market_data.exchanges.client import rewrite_urls
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


def flaky(errors: list[Exception], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    calls = []

    def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


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
    slept: list[float] = []
    assert call_with_retry(call, Backoff(base_s=0.1), sleep=slept.append) == "ok"
    assert len(calls) == 3 and slept[0] == 7 and slept[1] == 3


def test_a_ban_pauses_the_client_until_it_ends(sim: RunningSimulator) -> None:
    client = binance_client(sim.url)
    admin(
        sim.url, "faults", {"fail": [{"path": "/api/v3/time", "status": 418, "retry_after_s": 1}]}
    )
    started = time.monotonic()
    assert client.fetch_time() == NOW_MS  # retried after the ban, not before
    assert time.monotonic() - started >= 1.0
    assert started + 1.0 <= client.paused_until <= time.monotonic()  # every call waited for it
    assert admin(sim.url, "stats")["requests"]["/api/v3/time"] == {"418": 1, "200": 1}


def test_every_call_is_retried_loading_the_markets_too(sim: RunningSimulator) -> None:
    client = binance_client(sim.url, retry_base_s=0.01)
    admin(sim.url, "faults", {"fail": [{"path": "/api/v3/exchangeInfo", "status": 503}]})
    assert "BTC/USDT" in client.load_markets()
    assert admin(sim.url, "stats")["requests"]["/api/v3/exchangeInfo"] == {"503": 1, "200": 1}


def test_permanent_errors_are_not_retried() -> None:
    call, calls = flaky([BadSymbolError("nope")])
    with pytest.raises(BadSymbolError):
        call_with_retry(call, sleep=lambda s: None)
    assert len(calls) == 1


def test_exhausted_attempts_raise_the_last_error() -> None:
    call, calls = flaky([ExchangeUnavailableError(f"503 #{i}") for i in range(10)])
    slept: list[float] = []
    with pytest.raises(ExchangeUnavailableError, match="503 #3"):
        call_with_retry(call, Backoff(attempts=4, base_s=1, jitter=0), sleep=slept.append)
    assert len(calls) == 4 and slept == [1, 2, 4]


def test_a_ban_longer_than_the_limit_fails_instead_of_sleeping() -> None:
    call, _ = flaky([ExchangeBannedError("418", retry_after=86_400)])
    with pytest.raises(ExchangeBannedError):
        call_with_retry(call, Backoff(max_wait_s=900), sleep=lambda s: pytest.fail("slept"))
