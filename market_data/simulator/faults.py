"""Fault injection and request weights: switchable at start and at runtime (admin endpoint)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from market_data.domain.weights import DEFAULT_LIMITS


class Hole(BaseModel):
    """An interval [start_ms, end_ms) in which the exchange has no candle for a market."""

    model_config = ConfigDict(extra="forbid")
    symbol: str | None = Field(None, description="native id, e.g. BTCUSDT; None = every market")
    start_ms: int
    end_ms: int


class FailRule(BaseModel):
    """Answer ``status`` to requests whose path starts with ``path``: after ``skip`` matching
    requests pass, the next ``count`` fail (``count`` < 0: all of them until cleared). A 429
    or 418 comes with Binance's body and ``Retry-After: retry_after_s``. ``query`` narrows the
    rule to requests with those query parameters (e.g. one window's ``startTime``). ``code`` and ``msg``
    set the body's error code and message (any Binance error, e.g. -1121 "Invalid symbol.");
    by default a 429/418 says -1003 and anything else -1008 (server overloaded)."""

    model_config = ConfigDict(extra="forbid")
    path: str = "/"
    query: dict[str, str] = {}
    status: int = 500
    skip: int = 0
    count: int = 1
    retry_after_s: int = Field(1, ge=0)
    code: int | None = None
    msg: str | None = None
    #: instead of an error: a 200 whose body cannot be the exchange's answer, as a flaky proxy
    #: or CDN sends: cut in half ("truncated"), an HTML error page ("html"), well-formed
    #: JSON of the wrong shape ("empty": ``{}`` or ``[]``), or well-formed but with every
    #: top-level list cut to its first two items ("partial": a market list that lost most)
    garble: Literal["truncated", "html", "empty", "partial"] | None = None


HTML_ERROR_PAGE = b"<html><body>502 Bad Gateway</body></html>"


def garbled(body: bytes, how: str) -> bytes:
    """``body`` broken the way ``how`` says (see FailRule.garble)."""
    if how == "truncated":
        return body[: max(1, len(body) // 2)]
    if how == "html":
        return HTML_ERROR_PAGE
    if how == "partial":
        data = json.loads(body)
        if isinstance(data, dict):
            return json.dumps(
                {k: v[:2] if isinstance(v, list) else v for k, v in data.items()}
            ).encode()
        return json.dumps(data[:2] if isinstance(data, list) else data).encode()
    return b"{}" if body.lstrip().startswith(b"{") else b"[]"


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    #: weight budget per window; None = Binance's (6000 spot, 2400 USD-M futures)
    weight_limit: int | None = None
    #: the window's length, whole seconds; windows start at multiples of it (as Binance's
    #: minutes start at :00), and the used-weight header is named after it (1M, 10S)
    weight_window_s: int = Field(60, gt=0)
    #: requests answered 429 within one window before the exchange bans with 418
    ban_after: int = Field(3, ge=1)
    ban_seconds: float = Field(120.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    error_status: int = 503
    latency_ms: float = Field(0.0, ge=0)
    #: share of requests answered ``slow_ms`` late (on top of latency_ms): past a client's
    #: timeout, they time out
    slow_rate: float = Field(0.0, ge=0, le=1)
    slow_ms: float = Field(0.0, ge=0)
    truncate_rate: float = Field(0.0, ge=0, le=1)
    malformed_rate: float = Field(0.0, ge=0, le=1)
    holes: list[Hole] = []
    #: candles Binance's archive files lack while its REST API serves them (the real short
    #: files, e.g. USD-M BTCUSDT 1m of 2022-05: 38,881 of 44,640 minutes); simulator/archive.py
    archive_holes: list[Hole] = []
    #: archive files (a part of the name, e.g. "BTCUSDT-1m-2024-05") whose .CHECKSUM does
    #: not match the zip
    archive_bad_checksum: list[str] = []
    #: every price this exchange serves, moved by this percent (an exchange that diverges)
    price_offset_pct: float = Field(0.0, gt=-50, lt=100)
    fail: list[FailRule] = []
    #: order books whose best bid is at or above the best ask (a broken book)
    crossed_book: bool = False
    seed: int = 0


@dataclass
class _Window:
    index: int = -1  # which window: wall time // window length
    used: int = 0
    overruns: int = 0
    banned_until: float = 0.0


@dataclass
class Limiter:
    """Binance-style IP weight per fixed window (aligned to wall time, as Binance's minutes),
    429 on overrun, 418 after repeated overrun."""

    windows: dict[bool, _Window] = field(
        default_factory=lambda: {False: _Window(), True: _Window()}
    )

    def admit(self, faults: Faults, futures: bool, weight: int) -> tuple[int, int, float]:
        """Charge ``weight``; returns (status, used weight, retry-after seconds)."""
        now = time.time()
        w = self.windows[futures]
        if now < w.banned_until:
            return 418, w.used, w.banned_until - now
        index = int(now // faults.weight_window_s)
        if index != w.index:
            w.index, w.used, w.overruns = index, 0, 0
        limit = faults.weight_limit or DEFAULT_LIMITS[futures]
        retry_after = max(0.0, (index + 1) * faults.weight_window_s - now)
        if w.used + weight > limit:
            w.overruns += 1
            if w.overruns > faults.ban_after:
                w.banned_until = now + faults.ban_seconds
                return 418, w.used, faults.ban_seconds
            return 429, w.used, retry_after
        w.used += weight
        return 200, w.used, 0.0


class Injector:
    """Decides, per request, which fault (if any) applies. Deterministic for a given seed."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.seen = [0] * len(faults.fail)

    def configure(self, faults: Faults, reseed: bool = False) -> None:
        """New settings. The random sequence goes on (so a run of faults is reproducible
        whatever was changed in between) unless ``reseed`` or the seed itself changed; fail
        rules count their requests afresh."""
        if reseed or faults.seed != self.faults.seed:
            self.rng = random.Random(faults.seed)
        self.faults = faults
        self.seen = [0] * len(faults.fail)

    def forced_failure(self, path: str, query: Mapping[str, str]) -> FailRule | None:
        """The rule that fails this request, if one does (error_rate counts as one)."""
        for i, rule in enumerate(self.faults.fail):
            if not path.startswith(rule.path):
                continue
            if any(query.get(k) != v for k, v in rule.query.items()):
                continue
            self.seen[i] += 1
            n = self.seen[i] - rule.skip
            if n > 0 and (rule.count < 0 or n <= rule.count):
                return rule
        if self.faults.error_rate and self.rng.random() < self.faults.error_rate:
            return FailRule(path=path, status=self.faults.error_status)
        return None

    def delay_s(self) -> float:
        """How long this request waits before it is answered."""
        f = self.faults
        slow = f.slow_rate and self.rng.random() < f.slow_rate
        return (f.latency_ms + (f.slow_ms if slow else 0.0)) / 1000

    def mangle(self, body: bytes) -> bytes:
        f = self.faults
        if f.truncate_rate and self.rng.random() < f.truncate_rate:
            return garbled(body, "truncated")
        if f.malformed_rate and self.rng.random() < f.malformed_rate:
            return garbled(body, "html")
        return body
