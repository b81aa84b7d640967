"""Routes of the status API. Every answer is JSON but /metrics (Prometheus text format);
bad input is a 400 naming what is accepted, a market that is not watched a 404, a store that
does not answer a 503. Nothing here writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from market_data.api.metrics import StatusCollector
from market_data.domain.calendar import utc_text
from market_data.domain.gaps import EXCHANGE_EMPTY, OPEN, REPAIRED
from market_data.domain.timeframes import Timeframe, UnknownTimeframeError
from market_data.domain.watchlist import Watchlist
from market_data.pipeline.status import Activity, StatusReport, collect_status, one_line
from market_data.store.candles import CandleStore, ping

GAP_STATUSES = (OPEN, REPAIRED, EXCHANGE_EMPTY)
MAX_LIMIT = 10_000


@dataclass
class Sources:
    """What the API reads: the candle store, the orchestrator's activity, the watchlist."""

    store: CandleStore
    #: a view of the orchestrator for one report (made anew for each: it may cache what it
    #: reads, which must not outlive the report)
    activity: Callable[[], Activity]
    watchlist: Watchlist
    #: the store's URL, so that its password can never appear in an answer
    database_url: str = ""
    #: a status report this young is served again (0: every request collects its own); the
    #: server refreshes it in the background, so /metrics and /ingestion/status answer from
    #: memory however many markets are watched
    report_max_age_s: float = 0.0


class BadQuery(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _params(request: Request, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise BadQuery(400, f"unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")  # fmt: skip
    return {k: v for k, v in request.query_params.items() if v != ""}


class StatusApi:
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        # one collection at a time: the Dagster instance and the store are shared
        self._lock = threading.Lock()
        self._cached: tuple[float, StatusReport] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(StatusCollector(self.report, self.report_age_s))

    def report(self) -> StatusReport:
        """The newest status report, collected now if the one in memory is older than
        ``report_max_age_s`` (one collection at a time: a request waiting for another's
        takes its result)."""
        if (fresh := self._fresh()) is not None:
            return fresh
        with self._lock:
            if (fresh := self._fresh()) is not None:
                return fresh
            return self._collect()

    def refresh(self) -> None:
        """Collect a new report now (the server's background refresher)."""
        with self._lock:
            self._collect()

    def report_age_s(self) -> float | None:
        cached = self._cached
        return None if cached is None else time.monotonic() - cached[0]

    def _fresh(self) -> StatusReport | None:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] <= self.sources.report_max_age_s:
            return cached[1]
        return None

    def _collect(self) -> StatusReport:
        report = collect_status(self.sources.store, self.sources.activity(), self.sources.watchlist)
        if report.database_error:
            report.database_error = self.redact(report.database_error)
        self._cached = (time.monotonic(), report)
        return report

    def redact(self, text: str) -> str:
        password = (
            make_url(self.sources.database_url).password if self.sources.database_url else None
        )
        return text.replace(password, "***") if password else text

    # -- input -----------------------------------------------------------------------------

    def _market_filter(self, params: Mapping[str, str]) -> dict[str, str | None]:
        exchange, timeframe = params.get("exchange"), params.get("timeframe")
        names = [ex.name for ex in self.sources.watchlist.exchanges]
        if exchange is not None and exchange not in names:
            raise BadQuery(400, f"unknown exchange {exchange!r}; watched: {', '.join(names)}")
        if timeframe is not None:
            try:
                Timeframe.parse(timeframe)
            except UnknownTimeframeError as e:
                raise BadQuery(400, str(e)) from None
        return {"exchange": exchange, "symbol": params.get("symbol"), "timeframe": timeframe}

    def _narrowed(self, params: Mapping[str, str]) -> StatusReport:
        wanted = self._market_filter(params)
        report = self.report()
        if not report.database_ok:
            raise BadQuery(503, f"the candle store is unreachable: {report.database_error}")
        narrowed = report.only(**wanted)
        if wanted["symbol"] is not None and not narrowed.markets:
            known = ", ".join(f"{m.exchange} {m.market}" for m in report.markets) or "none yet"
            raise BadQuery(404, f"no watched market named {wanted['symbol']!r} matches; markets: {known}")  # fmt: skip
        return narrowed

    # -- routes ----------------------------------------------------------------------------

    def health(self, request: Request) -> Response:
        _params(request, set())
        store = self.sources.store
        try:
            latency = round(ping(store) * 1000, 2)
            alerts = store.alerts.undelivered()
            report = self._cached[1] if self._cached is not None else None
        except Exception as e:  # what is being reported
            error = self.redact(one_line(e))
            body = {"status": "unavailable", "database": {"ok": False, "error": error}}
            return JSONResponse(body, status_code=503)
        body: dict[str, Any] = {
            "status": "ok",
            "database": {"ok": True, "dialect": store.dialect, "latency_ms": latency},
            "alerts": alerts,
        }
        if report is not None and report.database_ok:  # counted by the last status report
            by_exchange: dict[str, int] = {}
            for m in report.markets:
                by_exchange[m.exchange] = by_exchange.get(m.exchange, 0) + m.rows
            body["candles"] = {
                "total": sum(by_exchange.values()), "by_exchange": by_exchange,
                "as_of": report.generated_at,
            }  # fmt: skip
        return JSONResponse(body)

    def ingestion_status(self, request: Request) -> Response:
        """The status, narrowed by exchange, symbol and timeframe, one page of its markets
        (``limit``, default 1000, and ``offset``): a whole exchange is 15,000 markets."""
        params = _params(request, {"exchange", "symbol", "timeframe", "limit", "offset"})
        limit = _int(params.get("limit", "1000"), "limit", 1, MAX_LIMIT)
        offset = _int(params.get("offset", "0"), "offset", 0, 10**9)
        body = self._narrowed(params).as_json()
        markets = body["markets"]
        body["markets"] = markets[offset : offset + limit]
        body["page"] = {"offset": offset, "limit": limit, "markets_total": len(markets)}
        return JSONResponse(body)

    def gaps(self, request: Request) -> Response:
        params = _params(request, {"exchange", "symbol", "timeframe", "status", "limit"})
        status = params.get("status", OPEN)
        if status not in (*GAP_STATUSES, "all"):
            raise BadQuery(400, f"status must be one of {', '.join((*GAP_STATUSES, 'all'))}")
        limit = _int(params.get("limit", "1000"), "limit", 1, MAX_LIMIT)
        narrowed = self._narrowed(params)
        symbols = sorted({m.symbol for m in narrowed.markets}) if "symbol" in params else None
        rows = self.sources.store.gaps.all_gaps(
            limit=limit + 1, status=None if status == "all" else status,
            exchange=params.get("exchange"), symbols=symbols, timeframe=params.get("timeframe"),
        )  # fmt: skip
        return JSONResponse({
            "status": status,
            "limit": limit,
            "truncated": len(rows) > limit,
            "gaps": [_gap(r) for r in rows[:limit]],
        })  # fmt: skip

    def metrics(self, request: Request) -> Response:
        _params(request, set())
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _gap(row: Mapping[str, Any]) -> dict[str, Any]:
    tf = Timeframe.parse(row["timeframe"])
    return {
        "exchange": row["exchange"], "symbol": row["symbol"], "timeframe": row["timeframe"],
        "start": utc_text(row["gap_start"]), "end": utc_text(row["gap_end"]),
        "start_ms": row["gap_start"], "end_ms": row["gap_end"],
        "candles": (row["gap_end"] - row["gap_start"]) // tf.ms,
        "kind": row["kind"], "status": row["status"], "attempts": row["attempts"],
        "detected_at": utc_text(row["detected_at"]), "repaired_at": utc_text(row["repaired_at"]),
    }  # fmt: skip


def _int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(400, f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise BadQuery(400, f"{name} must be between {lo} and {hi}")
    return value


def _guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    def run(request: Request) -> Response:
        try:
            return handler(request)
        except BadQuery as e:
            return JSONResponse({"error": e.message}, status_code=e.status)

    return run


def create_app(sources: Sources) -> Starlette:
    api = StatusApi(sources)
    routes = []
    for path, handler in (
        ("/health", api.health),
        ("/ingestion/status", api.ingestion_status),
        ("/gaps", api.gaps),
        ("/metrics", api.metrics),
    ):
        routes.append(Route(path, _guarded(handler), methods=["GET"]))
    # the paths the seed scripts' operators already poll
    routes += [
        Route("/system/health", _guarded(api.health), methods=["GET"]),
        Route("/api/ingestion/status", _guarded(api.ingestion_status), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.api = api  # the server's background refresher uses it
    return app
