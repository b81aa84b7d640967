"""Faults reach the real ccxt client as the matching ccxt exception and project error type."""

from __future__ import annotations

import time

import ccxt
import pytest

from market_data.exchanges.client import SyncExchangeClient
from market_data.exchanges.errors import (
    BadRequestError,
    BadSymbolError,
    ExchangeBannedError,
    ExchangeUnavailableError,
    PermanentExchangeError,
    RateLimitedError,
    TemporaryExchangeError,
)
from market_data.simulator.server import RunningSimulator
from market_data_tests.helpers import admin, binance_client, http_get

START = 1_700_000_000_000


def test_weight_overrun_is_429_with_retry_after_then_418(
    sim: RunningSimulator, client: SyncExchangeClient
) -> None:
    client.load_markets()
    admin(
        sim.url,
        "faults",
        # an hour's window: no turn of the window during the test (windows start at whole
        # hours, as Binance's minutes at :00); the header is named after it
        {"weight_limit": 4, "weight_window_s": 3600, "ban_after": 2, "ban_seconds": 90},
    )
    status, headers, _ = http_get(
        sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=5
    )
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1H"] == "2"
    client.fetch_ohlcv("BTC/USDT", "1m", START, 5)  # weight 4 of 4
    with pytest.raises(RateLimitedError) as caught:
        client.fetch_ohlcv("BTC/USDT", "1m", START, 5)
    assert isinstance(caught.value.__cause__, ccxt.DDoSProtection)
    # until the window turns (the next whole hour), whole seconds
    assert abs(caught.value.retry_after - (3600 - time.time() % 3600)) <= 2
    with pytest.raises(RateLimitedError):
        client.fetch_ohlcv("BTC/USDT", "1m", START, 5)
    with pytest.raises(ExchangeBannedError) as banned:  # a third overrun: banned
        client.fetch_ohlcv("BTC/USDT", "1m", START, 5)
    assert banned.value.retry_after == 90
    assert isinstance(banned.value, TemporaryExchangeError)
    status, headers, body = http_get(sim.url, "/api/v3/time")
    assert status == 418 and headers["Retry-After"] == "90" and body["code"] == -1003
    assert admin(sim.url, "stats")["requests"]["/api/v3/klines"] == {"200": 2, "429": 2, "418": 1}


def test_futures_have_their_own_weight_budget(sim: RunningSimulator) -> None:
    admin(sim.url, "faults", {"weight_limit": 2})
    assert http_get(sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=5)[0] == 200
    assert http_get(sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=5)[0] == 429
    assert http_get(sim.url, "/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=5)[0] == 200


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_temporary(
    sim: RunningSimulator, client: SyncExchangeClient, status: int
) -> None:
    client.load_markets()
    admin(sim.url, "faults", {"error_rate": 1.0, "error_status": status})
    with pytest.raises(ExchangeUnavailableError) as caught:
        client.fetch_ohlcv("BTC/USDT", "1m", START, 5)
    assert isinstance(
        caught.value.__cause__, ccxt.ExchangeNotAvailable | ccxt.NetworkError | ccxt.ExchangeError
    )
    assert str(caught.value).startswith(f"binance: HTTP {status}: ")  # the status comes first


def test_fail_rule_fails_the_kth_request_then_recovers(
    sim: RunningSimulator, client: SyncExchangeClient
) -> None:
    client.load_markets()
    admin(
        sim.url,
        "faults",
        {"fail": [{"path": "/api/v3/klines", "status": 500, "skip": 2, "count": 1}]},
    )
    client.fetch_ohlcv("BTC/USDT", "1m", START, 5)
    client.fetch_ohlcv("BTC/USDT", "1m", START, 5)
    with pytest.raises(ExchangeUnavailableError):
        client.fetch_ohlcv("BTC/USDT", "1m", START, 5)
    assert len(client.fetch_ohlcv("BTC/USDT", "1m", START, 5)) == 5


@pytest.mark.parametrize("fault", ["truncate_rate", "malformed_rate"])
def test_broken_bodies_are_temporary(
    sim: RunningSimulator, client: SyncExchangeClient, fault: str
) -> None:
    client.load_markets()
    admin(sim.url, "faults", {fault: 1.0})
    with pytest.raises(ExchangeUnavailableError):
        client.fetch_ohlcv("BTC/USDT", "1m", START, 50)


def test_latency_beyond_the_timeout_is_temporary(sim: RunningSimulator) -> None:
    with binance_client(sim.url, timeout_ms=200, retry_attempts=1) as slow:
        slow.load_markets()
        admin(sim.url, "faults", {"latency_ms": 600})
        with pytest.raises(ExchangeUnavailableError) as caught:
            slow.fetch_time()
    assert isinstance(caught.value.__cause__, ccxt.RequestTimeout)
    assert str(caught.value).startswith("binance: timed out: ")  # the key word comes first


def test_retry_after_is_rounded_up_so_a_client_that_obeys_it_exactly_gets_in(
    sim: RunningSimulator,
) -> None:
    admin(sim.url, "faults", {"weight_limit": 2, "weight_window_s": 2, "ban_after": 1})
    get = lambda: http_get(sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=5)  # noqa: E731
    assert get()[0] == 200
    status, headers, _ = get()
    # the rest of the 2 s window, rounded up
    assert status == 429 and headers["Retry-After"] in ("1", "2")
    time.sleep(int(headers["Retry-After"]))
    assert get()[0] == 200  # not banned


def test_a_fail_rule_can_send_any_binance_error(
    sim: RunningSimulator, client: SyncExchangeClient
) -> None:
    client.load_markets()
    rule = {"path": "/api/v3/klines", "status": 400, "code": -1121, "msg": "Invalid symbol."}
    admin(sim.url, "faults", {"fail": [rule]})
    status, _, body = http_get(sim.url, "/api/v3/klines", symbol="BTCUSDT", interval="1m")
    assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
    admin(sim.url, "faults", {"fail": [rule]})
    with pytest.raises(BadSymbolError, match="HTTP 400"):
        client.fetch_ohlcv("BTC/USDT", "1m", START, 5)


def test_the_random_faults_keep_their_sequence_across_updates_unless_reseeded(
    sim: RunningSimulator,
) -> None:
    def statuses(n: int) -> list[int]:
        return [http_get(sim.url, "/api/v3/time")[0] for _ in range(n)]

    admin(sim.url, "faults", {"error_rate": 0.5, "seed": 11})
    first = statuses(10)
    admin(sim.url, "faults", {"latency_ms": 1})  # another setting: the sequence goes on
    then = statuses(10)
    admin(sim.url, "faults", {"seed": 11})  # reseeded: it starts again
    assert statuses(20) == first + then
    assert {503, 200} <= set(first + then)


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"symbol": "NOPEUSDT", "interval": "1m"}, {"code": -1121, "msg": "Invalid symbol."}),
        ({"symbol": "BTCUSDT", "interval": "7m"}, {"code": -1120, "msg": "Invalid interval."}),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "limit": 1001},
            {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."},
        ),
        (
            {"interval": "1m"},
            {
                "code": -1102,
                "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            },
        ),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": "yesterday"},
            {
                "code": -1100,
                "msg": "Illegal characters found in parameter 'startTime'; legal range is "
                "'^[0-9]{1,20}$'.",
            },
        ),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": 5, "endTime": 1},
            {"code": -1023, "msg": "Start time is greater than end time."},
        ),
    ],
)
def test_bad_input_gets_binances_error_body(
    sim: RunningSimulator, params: dict, body: dict
) -> None:
    status, _, got = http_get(sim.url, "/api/v3/klines", **params)
    assert (status, got) == (400, body)


def test_error_codes_are_classified_from_the_body_against_any_host(
    client: SyncExchangeClient,
) -> None:
    client.load_markets()
    with pytest.raises(BadSymbolError):
        client.call("publicGetKlines", {"symbol": "NOPEUSDT", "interval": "1m"})
    with pytest.raises(BadRequestError):
        client.call("publicGetKlines", {"symbol": "BTCUSDT", "interval": "7m"})
    with pytest.raises(PermanentExchangeError):
        client.fetch_ohlcv("NOPE/USDT", "1m", START, 5)  # unknown to ccxt's market list


def test_admin_rejects_invalid_fault_settings(sim: RunningSimulator) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as caught:
        admin(sim.url, "faults", {"error_rate": 3})
    assert caught.value.code == 400


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ('{"code":-1121,"msg":"Invalid symbol."}', BadSymbolError),
        ('{"code":-1130,"msg":"Data sent for parameter \'limit\' is not valid."}', BadRequestError),
        ('{"code":-1003,"msg":"Too many requests"}', RateLimitedError),
        ('{"code":-1008,"msg":"Server is currently overloaded"}', ExchangeUnavailableError),
    ],
)
def test_a_generic_ccxt_error_is_classified_by_its_body_code(body: str, kind: type) -> None:
    # On hosts other than Binance's own, ccxt may raise a bare ExchangeError for these codes.
    from market_data.exchanges.errors import classify

    assert (
        type(classify("binance", ccxt.ExchangeError(f"binance {body}"), {"Retry-After": "7"}))
        is kind
    )
