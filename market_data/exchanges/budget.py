"""Pacing by the exchange's own count: the weight this address used in the current window.

ccxt's throttle spaces requests by what ccxt assumes of an exchange's limits. Binance says
what it counted on every answer (``X-MBX-USED-WEIGHT-1M``: the weight used by every process
on the address in the minute so far) and what its limit is (exchangeInfo's ``rateLimits``).
`WeightBudget` keeps, per API family (spot /api and USD-M /fapi have separate budgets), the
highest count the exchange reported in this window plus the weight of our requests in
flight, and holds a request whose weight would take that past the limit, spread evenly over
the window (a tenth of it at once), until there is room (windows start at whole multiples
of their length, as Binance's minutes start at :00). So a limit lower than expected, or a
second process on the same address, slows us down before a 429, not after.

For such an exchange it replaces ccxt's throttle (client.build_exchange), which models
Binance as one bucket for spot and futures at half the futures budget (a 1000-candle
futures page costs 250 ms of it): a run of both families crawled at 13 % and 45 % of their
budgets (bench/scale.py). Requests to an exchange that sends no such header pass
untouched; a 429 that still comes (a limit lowered since exchangeInfo was read) is honoured
by the retry path as before.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from market_data.domain.weights import (
    DEFAULT_LIMITS,
    WEIGHT_HEADER,
    binance_weight,
    window_seconds,
)

_HEADER = re.compile(re.escape(WEIGHT_HEADER) + r"(\d+)([SMHD])$", re.IGNORECASE)
#: after a window turns, wait this much more (our clock and the exchange's differ a little)
TURN_MARGIN_S = 0.05
#: plus up to this much at random, so processes held at once do not all start at once
TURN_JITTER_S = 0.2
#: the share of a window's budget that may be spent at once; the rest comes evenly over it
EVEN_HEADSTART = 0.1
#: share of the limit left unused while another process spends weight on the address (its
#: requests in flight are not in the count we last saw); alone, a client uses all of it
SHARED_HEADROOM = 0.05


@dataclass
class Window:
    """One family's budget in the current window."""

    limit: int
    seconds: int = 60
    index: int = -1  # which window: wall time // seconds
    seen: int = 0  # the highest used weight the exchange reported in this window
    mine: int = 0  # the weight of our requests answered in this window
    reserved: int = 0  # the weight of our requests sent and not yet answered

    def estimate(self) -> int:
        return max(self.seen, self.mine) + self.reserved

    def cap(self) -> float:
        """The most this client lets the window's count reach."""
        shared = self.seen > self.mine + self.reserved  # someone else spent weight here
        return self.limit * (1 - SHARED_HEADROOM) if shared else float(self.limit)

    def allowed(self, now: float) -> float:
        """What the count may be at ``now``: the cap spread over the window (plus a tenth of
        it at once), so the budget is spent evenly rather than in a burst at the turn."""
        elapsed = now - self.index * self.seconds
        return min(self.cap(), self.cap() * (elapsed / self.seconds + EVEN_HEADSTART))

    def wait(self, weight: int, now: float) -> float:
        """Seconds until ``weight`` more fits: later in the window, or after the turn."""
        need = self.estimate() + weight
        if need <= self.cap():
            at = (need / self.cap() - EVEN_HEADSTART) * self.seconds
            return max(0.01, at - (now - self.index * self.seconds))
        return (self.index + 1) * self.seconds - now

    def at(self, now: float) -> Window:
        index = int(now // self.seconds)
        if index != self.index:  # a new window: the exchange's count starts again
            self.index, self.seen, self.mine = index, 0, 0
        return self

    def resize(self, seconds: int) -> None:
        """The exchange counts over windows of ``seconds`` (its header or exchangeInfo)."""
        if seconds != self.seconds:
            self.seconds, self.index = seconds, -1


@dataclass(frozen=True)
class Request:
    family: str  # scheme://host/api or .../fapi
    futures: bool
    endpoint: str
    weight: int


def request_of(url: str) -> Request:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    futures = "/fapi/" in path
    marker = "/fapi/" if futures else "/api/"
    at = path.find(marker)
    family = f"{parts.scheme}://{parts.netloc}{path[: at + len(marker) - 1] if at >= 0 else path}"
    endpoint = path.rsplit("/", 1)[-1]
    limit = parse_qs(parts.query).get("limit", [""])[0]
    weight = binance_weight(endpoint, int(limit) if limit.isdigit() else None, futures)
    return Request(family, futures, endpoint, weight)


@dataclass
class WeightBudget:
    """Binance's used-weight budget as the client sees it (one per client: per address)."""

    sleep: Callable[[float], Awaitable[None]]
    clock: Callable[[], float] = time.time
    windows: dict[str, Window] = field(default_factory=dict)
    #: requests held back, and the seconds they waited, since the client was made
    held: int = 0
    held_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def window(self, request: Request) -> Window:
        window = self.windows.get(request.family)
        if window is None:
            window = self.windows[request.family] = Window(DEFAULT_LIMITS[request.futures])
        return window.at(self.clock())

    async def acquire(self, url: str) -> tuple[Request, int]:
        """Wait until the request to ``url`` fits in its family's window; reserve its
        weight. Returns what `release` needs."""
        request = request_of(url)
        while True:
            window = self.window(request)
            now = self.clock()
            # a request heavier than the whole budget still goes, alone, in a fresh window
            if window.estimate() + request.weight <= window.allowed(now) or not window.estimate():
                window.reserved += request.weight
                return request, window.index
            wait = window.wait(request.weight, now)
            wait += TURN_MARGIN_S + self.rng.uniform(0, TURN_JITTER_S)
            self.held += 1
            self.held_s += wait
            await self.sleep(wait)

    def release(self, ticket: tuple[Request, int]) -> None:
        request, index = ticket
        window = self.window(request)
        window.reserved = max(0, window.reserved - request.weight)
        if window.index == index:
            window.mine += request.weight

    def observe(self, url: str, headers: Mapping[str, Any] | None, body: Any) -> None:
        """What an answer says: the used weight (header), and in exchangeInfo the limit."""
        request = request_of(url)
        for name, value in (headers or {}).items():
            match = _HEADER.match(str(name))
            if match and str(value).isdigit():
                window = self.window(request)
                window.resize(window_seconds(match.group(2), int(match.group(1))))
                window.at(self.clock())  # a new window first: its count starts again
                window.seen = max(window.seen, int(value))
        if request.endpoint == "exchangeInfo" and isinstance(body, str):
            self._limits(request, body)

    def _limits(self, request: Request, body: str) -> None:
        start = body.find('"rateLimits"')
        if start < 0:
            return
        start = body.find("[", start)
        end = body.find("]", start)
        try:
            limits = json.loads(body[start : end + 1])
        except ValueError:
            return
        for limit in limits:
            if isinstance(limit, dict) and limit.get("rateLimitType") == "REQUEST_WEIGHT":
                window = self.window(request)
                window.limit = int(limit["limit"])
                window.resize(window_seconds(str(limit["interval"]), int(limit["intervalNum"])))
                return
