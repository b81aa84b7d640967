"""Alerts without Dagster: the incidents the store shows, one tick (plan, record, queue),
and delivery of the outbox to the webhooks. The Dagster sensor (defs/alerts) adds the failed
runs, which only the instance knows, and calls ``tick``; `market-data alerts test` calls
``send`` directly.

Delivery never blocks ingestion: each webhook has ``timeout_s``, all of a tick's messages
go out concurrently under one deadline, and what fails stays in the outbox to be tried on a
later tick (backoff doubling from ``retry_base_s``). Webhook URLs are secrets: they are
handed in by target name, used for the request and nowhere else (errors say the target's
name, never its URL).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from market_data.domain.alerts import (
    ONE_OFF,
    AlertSettings,
    Incident,
    Message,
    plan,
    retry_delay_s,
)
from market_data.domain.calendar import utc_text
from market_data.domain.freshness import lag_seconds
from market_data.domain.gaps import MISSING
from market_data.domain.watchlist import Market, Watchlist
from market_data.pipeline.live import streaming_exchanges
from market_data.pipeline.orderbooks import crossed
from market_data.pipeline.watched import watched_markets
from market_data.store.alerts import Outgoing
from market_data.store.candles import CandleStore
from market_data.store.series import Series

#: delivered messages, resolved incidents and run events are kept this long, then pruned
KEEP_MS = 30 * 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def store_incidents(
    store: CandleStore, watchlist: Watchlist, settings: AlertSettings, at_ms: int
) -> list[Incident]:
    """Every incident the store shows now: gaps open after their repairs, stale markets, the
    live service down, bans and repeated rate limits reported by runs (the last day), and
    crossed order books."""
    found = _gaps(store, watchlist)
    found += _stale(store, watchlist, settings)
    found += _live_down(store, watchlist, at_ms)
    found += _crossed(store, watchlist)
    for event in store.alerts.events_since(at_ms - 86_400_000):
        found.append(
            Incident(
                f"{event.kind}:{event.exchange}:{event.run_id}",
                event.kind,
                event.exchange,
                f"{event.exchange}: {event.detail}",
                (("run_id", event.run_id),),
                settings.run_link(event.run_id),
            )
        )
    return found


def _gaps(store: CandleStore, watchlist: Watchlist) -> list[Incident]:
    """Gaps of kind missing still open once every repair attempt is spent (exchange-empty
    ones are warnings, not alerts)."""
    out = []
    for g in store.gaps.spent(MISSING, watchlist.gaps.max_attempts):
        market = f"{g['symbol']}:{g['timeframe']}"
        span = f"{utc_text(g['gap_start'])} .. {utc_text(g['gap_end'])}"
        out.append(
            Incident(
                f"gap:{g['exchange']}:{market}:{g['gap_start']}",
                "gap_open",
                g["exchange"],
                f"{g['exchange']} {market}: candles missing {span} after {g['attempts']} repairs",
                (
                    ("market", market),
                    ("gap_start", str(utc_text(g["gap_start"]))),
                    ("gap_end", str(utc_text(g["gap_end"]))),
                    ("attempts", str(g["attempts"])),
                ),
            )
        )
    return out


def _stale(store: CandleStore, watchlist: Watchlist, settings: AlertSettings) -> list[Incident]:
    """Markets with candles whose newest one closed more than ``stale_after_timeframes``
    before the exchange clock (markets not filled yet, and delisted ones, are not stale)."""
    out = []
    for exchange, markets in watched_markets(store, watchlist).items():
        clock = store.gaps.clock(exchange)
        if clock is None or not markets:
            continue
        newest = store.last_ts_of([Series.of(m) for m in markets])
        for market in markets:
            lag = lag_seconds(newest.get(Series.of(market)), market.timeframe.ms, clock)
            limit = settings.stale_after_timeframes * market.timeframe.ms / 1000
            if lag is None or lag <= limit or _delisted(store, market):
                continue
            out.append(
                Incident(
                    f"stale:{exchange}:{market.key}",
                    "stale",
                    exchange,
                    f"{exchange} {market.key}: newest candle closed {lag:.0f} s before the "
                    "exchange clock",
                    (("market", market.key), ("lag_s", f"{lag:.0f}")),
                )
            )
    return out


def _delisted(store: CandleStore, market: Market) -> bool:
    listing = store.instruments.listing(market.exchange, market.symbol.standard)
    return listing.delisted_at is not None


def _live_down(store: CandleStore, watchlist: Watchlist, at_ms: int) -> list[Incident]:
    """The live service of a streaming exchange that has run here (it wrote a heartbeat) and
    is not healthy now: no beat within ``live.stale_after_s``, or connections down."""
    out = []
    stale_after = watchlist.live.stale_after_s
    for exchange in streaming_exchanges(watchlist):
        service = store.live.service(exchange)
        if service is None or service.healthy(stale_after, at_ms):
            continue
        beat = (at_ms - service.heartbeat_at) / 1000
        out.append(
            Incident(
                f"live_down:{exchange}",
                "live_down",
                exchange,
                f"{exchange}: live service down (last heartbeat {beat:.0f} s ago, "
                f"{service.connected}/{service.connections} connections)",
                (("host", service.host), ("last_error", service.last_error or "")),
            )
        )
    return out


def _crossed(store: CandleStore, watchlist: Watchlist) -> list[Incident]:
    """The not_crossed check's verdict over the newest snapshots, per exchange."""
    out = []
    for ex in watchlist.exchanges:
        books = watchlist.orderbooks_of(ex.name)
        newest = store.orderbooks.newest(ex.name) if books else None
        if books is None or newest is None:
            continue
        verdict = crossed(store, ex.name, books.interval_s, newest)
        if not verdict.passed:
            out.append(
                Incident(
                    f"crossed_book:{ex.name}",
                    "crossed_book",
                    ex.name,
                    f"{ex.name}: {verdict.description}",
                    (("crossed", str(verdict.metadata.get("crossed", ""))[:500]),),
                )
            )
    return out


def report_rate_limits(
    store: CandleStore,
    settings: AlertSettings,
    exchange: str,
    run_id: str,
    bans: int,
    rate_limits: int,
) -> None:
    """A run's bans (any) and rate limits (from ``rate_limits_per_run``), for the alerts."""
    at = now_ms()
    if bans:
        store.alerts.report("ban", exchange, run_id, f"banned {bans} time(s) (HTTP 418)", at)
    if rate_limits >= settings.rate_limits_per_run:
        detail = f"{rate_limits} rate limits (HTTP 429) in one run"
        store.alerts.report("rate_limited", exchange, run_id, detail, at)


@dataclass
class TickResult:
    messages: list[Message] = field(default_factory=list)
    delivered: int = 0
    failed: list[str] = field(default_factory=list)  # "<target>: <error>", no URL


def tick(
    store: CandleStore,
    settings: AlertSettings,
    incidents: Iterable[Incident],
    urls: Mapping[str, str],
    at_ms: int | None = None,
    post: Post | None = None,
) -> TickResult:
    """Plan the messages of ``incidents`` against what was sent, record them and queue one per
    target (in one transaction), then deliver whatever is due."""
    at_ms = at_ms or now_ms()
    incidents = list(incidents)
    sent_once = store.alerts.known(i.key for i in incidents if i.kind in ONE_OFF)
    incidents = [i for i in incidents if i.key not in sent_once]
    p = plan(incidents, store.alerts.open_incidents(), at_ms, settings)
    outgoing = [(t.name, m, m.payload(t.kind)) for m in p.messages for t in settings.targets]
    store.alerts.record(p.opened, p.repeated, [r.key for r in p.resolved], outgoing, at_ms)
    store.alerts.prune(at_ms - KEEP_MS)
    result = deliver(store, settings, urls, at_ms, post)
    result.messages = p.messages
    return result


#: posts one body to one URL within a timeout; returns the HTTP status (raises on no answer)
Post = Callable[[str, str, float], int]


def http_post(url: str, body: str, timeout_s: float) -> int:
    request = urllib.request.Request(  # noqa: S310 (the user's own webhook, http or https)
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def send(url: str, body: str, timeout_s: float, post: Post | None = None) -> tuple[bool, str]:
    """Post ``body``: whether the webhook took it (2xx), and what it answered (never the
    URL)."""
    try:
        status = (post or http_post)(url, body, timeout_s)
    except TimeoutError:
        return False, f"no answer within {timeout_s:g} s"
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or type(e).__name__
        if isinstance(reason, TimeoutError):
            return False, f"no answer within {timeout_s:g} s"
        return False, f"not delivered: {str(reason).replace(url, '<url>')[:200]}"
    return 200 <= status < 300, f"HTTP {status}"


def deliver(
    store: CandleStore,
    settings: AlertSettings,
    urls: Mapping[str, str],
    at_ms: int | None = None,
    post: Post | None = None,
) -> TickResult:
    """Send every due message of the outbox, concurrently, all within about one timeout; a
    message not taken is tried again after a backoff. A target without a URL (its variable
    unset) keeps its messages queued, with that reason."""
    at_ms = at_ms or now_ms()
    result = TickResult()
    due = store.alerts.due(at_ms)
    if not due:
        return result

    def one(item: Outgoing) -> tuple[Outgoing, str | None]:
        url = urls.get(item.target)
        if not url:
            return item, "its URL variable is not set"
        ok, answer = send(url, item.payload, settings.timeout_s, post)
        return item, None if ok else answer

    pool = ThreadPoolExecutor(max_workers=min(8, len(due)))
    futures = [pool.submit(one, item) for item in due]
    done, late = wait(futures, timeout=settings.timeout_s + 2)
    pool.shutdown(wait=False, cancel_futures=True)
    outcomes = [f.result() for f in done]
    outcomes += [
        (due[futures.index(f)], f"no answer within {settings.timeout_s:g} s") for f in late
    ]
    for item, error in outcomes:
        if error is None:
            store.alerts.delivered(item.id, at_ms)
            result.delivered += 1
            continue
        next_try = at_ms + int(retry_delay_s(item.attempts + 1, settings) * 1000)
        store.alerts.failed(item.id, error, next_try)
        result.failed.append(f"{item.target}: {error}")
    return result
