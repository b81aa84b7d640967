"""Small helpers for tests: free ports, raw HTTP against the simulator, exchange clients."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from market_data.domain.watchlist import ExchangeSettings
from market_data.exchanges.client import ExchangeClient, build_exchange


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binance_client(base_url: str | None = None, **settings: Any) -> ExchangeClient:
    """A real ccxt Binance client, pointed at ``base_url`` (the simulator), unthrottled."""
    return ExchangeClient(
        build_exchange(ExchangeSettings("binance", base_url, **{"rate_limit_ms": 0, **settings}))
    )


def http_get(base: str, path: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body) of a GET, errors included."""
    url = f"{base}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback only)
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def admin(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    method = "POST" if data else "GET"
    req = urllib.request.Request(f"{base}/admin/{path}", data=data, method=method)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())
