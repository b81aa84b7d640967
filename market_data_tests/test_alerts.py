"""Alerts reach a person: a real HTTP receiver on 127.0.0.1 records what the webhooks get.
Incidents come from real runs (the simulator's faults), the real store (SQLite and
PostgreSQL), and the alerts sensor evaluated through Dagster's test API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ccxt
import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
import yaml

from market_data.config import timeframes_of
from market_data.defs.alerts.sensors import alerts_sensor
from market_data.defs.resources import ALERTS_KEY, STORE_KEY, CandleStoreResource
from market_data.domain.alerts import AlertSettings
from market_data.domain.candles import page_from_table
from market_data.domain.gaps import Hole
from market_data.domain.orderbooks import OrderBook
from market_data.domain.watchlist import Watchlist, WatchlistError, parse_watchlist
from market_data.pipeline.alerts import deliver, store_incidents, tick
from market_data.simulator.server import RunningSimulator
from market_data.store.candles import CandleStore
from market_data.store.series import Series
from market_data_tests.candle_harness import Harness
from market_data_tests.conftest import NOW_MS
from market_data_tests.helpers import ROOT, admin, cli, cli_env

HOUR = 3_600_000
SECRET = "T0KEN-s3cret-hook"  # in every webhook URL: it must never show anywhere else


class Receiver:
    """A webhook on 127.0.0.1: records each POST; answers the statuses queued in
    ``answers`` (then 200), or never within ``hang_s``."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.hang_s = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.hang_s:
                    time.sleep(outer.hang_s)
                status = outer.answers.pop(0) if outer.answers else 200
                outer.received.append(
                    {"path": self.path, "status": status, "body": json.loads(body)}
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{SECRET}"

    def taken(self) -> list[dict[str, Any]]:
        """The bodies it answered 2xx."""
        return [r["body"] for r in self.received if 200 <= r["status"] < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    monkeypatch.setenv("TEST_ALERT_HOOK", r.url)
    yield r
    r.close()


def _watchlist(sim_url: str, markets: list[str], **alerts: Any) -> Watchlist:
    data = {
        "start": "2026-11-01",
        "gaps": {"max_attempts": 2},
        "exchanges": {"binance": {"base_url": sim_url, "rate_limit_ms": 0, "step_retries": 0,
                                  "retry_base_s": 0.05, "markets": markets}},
        "alerts": {"targets": [{"name": "ops", "kind": "json", "url_env": "TEST_ALERT_HOOK"}],
                   "ui_url": "http://dagster.example:3000", "stale_after_timeframes": 3,
                   "repeat_after_s": 600, "timeout_s": 2, **alerts},
    }  # fmt: skip
    return parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)


def _evaluate(wl: Watchlist, store_url: str, instance: dg.DagsterInstance, cursor: str | None):
    from market_data.defs.resources import AlertsResource, AlertTargetConfig

    resources = {
        STORE_KEY: CandleStoreResource(database_url=store_url),
        ALERTS_KEY: AlertsResource(
            targets=[AlertTargetConfig(name=t.name, url_env=t.url_env) for t in wl.alerts.targets]
        ),
    }
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = alerts_sensor(wl)(context)
    return result, context.cursor


def _beat(**state: Any) -> dict[str, Any]:
    """A live service heartbeat of binance: one connection wanted, none open."""
    return {"exchange": "binance", "host": "h", "pid": 1, "started_at": 0, "heartbeat_at": 0,
            "connections": 1, "connected": 0, "streams": 1, "exchange_now": None,
            "reconnects": 0, "closes_stored": 0, "latency_p50_ms": None,
            "latency_p99_ms": None, "last_error": None, **state}  # fmt: skip


def _by_kind(bodies: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for b in bodies:
        out.setdefault(f"{b['kind']}/{b['status']}", []).append(b)
    return out


def test_each_kind_fires_once_resolves_once_and_is_not_repeated_too_soon(
    sim: RunningSimulator, store_url: str, receiver: Receiver
) -> None:
    wl = _watchlist(sim.url, ["BTC/USDT/1h", "ETH/USDT/1h"])
    instance = dg.DagsterInstance.ephemeral()
    harness = Harness(wl, store_url, instance)
    store = harness.store
    # a ban and three 429s answered mid-run (retried: the run succeeds), then a run that
    # fails for good
    klines = {"path": "/api/v3/klines", "retry_after_s": 1}
    limits = [{**klines, "status": 418}, {**klines, "status": 429, "count": 3}]
    admin(sim.url, "faults", {"fail": limits})
    assert harness.run_months("BTC-USDT-SPOT:1h", "2026-11").success
    not_found = {
        "path": "/api/v3/klines",
        "count": -1,
        "status": 404,
        "code": -1000,
        "msg": "Not found",
    }
    admin(sim.url, "faults", {"fail": [not_found]})
    failed = harness.run_months("ETH-USDT-SPOT:1h", "2026-11")
    assert not failed.success
    admin(sim.url, "faults", {"fail": []})
    # a gap of kind missing whose repairs are spent; the market then stale (the exchange's
    # clock moved on 5 hours); the live service's last heartbeat 10 minutes old
    btc = Series("binance", "BTC-USDT-SPOT", "1h")
    gap = Hole(NOW_MS - 30 * HOUR - NOW_MS % HOUR, NOW_MS - 28 * HOUR - NOW_MS % HOUR, "missing")
    store.gaps.record(btc, gap.start, gap.end, [gap], 2)
    store.gaps.mark_attempt(btc, [gap.start])
    store.gaps.mark_attempt(btc, [gap.start])
    store.gaps.save_clock("binance", NOW_MS + 5 * HOUR)
    beat = _beat(heartbeat_at=int(time.time() * 1000) - 600_000, last_error="connection reset")
    store.live.beat(beat, [])

    _, cursor = _evaluate(wl, store_url, instance, None)
    kinds = _by_kind(receiver.taken())
    assert set(kinds) == {"ban/firing", "rate_limited/firing", "run_failed/firing",
                          "gap_open/firing", "stale/firing", "live_down/firing"}, kinds  # fmt: skip
    assert all(len(v) == 1 for v in kinds.values()), kinds
    (run,) = kinds["run_failed/firing"][0]["incidents"]
    assert run["run_id"] == failed.run_id and run["markets"] == "ETH-USDT-SPOT:1h"
    assert run["span"] == "2026..2026" and "HTTP 404" in run["reason"]
    assert run["link"] == f"http://dagster.example:3000/runs/{failed.run_id}"
    assert run["exchange"] == "binance"
    (gap_alert,) = kinds["gap_open/firing"][0]["incidents"]
    assert gap_alert["market"] == "BTC-USDT-SPOT:1h" and gap_alert["attempts"] == "2"
    stale = {i["market"] for i in kinds["stale/firing"][0]["incidents"]}
    assert stale == {"BTC-USDT-SPOT:1h"}  # ETH has no candle: not stale, never filled
    assert "418" in kinds["ban/firing"][0]["text"]
    assert "3 rate limits (HTTP 429) in one run" in kinds["rate_limited/firing"][0]["text"]

    # nothing new: nothing sent
    _, cursor = _evaluate(wl, store_url, instance, cursor)
    assert len(receiver.taken()) == 6

    # the conditions end: each state incident resolves once; the one-off ones stay sent
    store.gaps.record(btc, gap.start, gap.end, [], 2)
    _write_hours(store, btc, NOW_MS - NOW_MS % HOUR, 4, NOW_MS + 5 * HOUR)  # caught up
    store.live.beat({**beat, "heartbeat_at": int(time.time() * 1000), "connected": 1}, [])
    _evaluate(wl, store_url, instance, cursor)
    _evaluate(wl, store_url, instance, cursor)
    kinds = _by_kind(receiver.taken())
    resolved = {k for k in kinds if k.endswith("/resolved")}
    assert resolved == {"gap_open/resolved", "stale/resolved", "live_down/resolved"}
    assert all(len(kinds[k]) == 1 for k in resolved) and len(receiver.taken()) == 9


def test_an_open_incident_is_sent_again_only_after_repeat_after_s(
    store_url: str, receiver: Receiver
) -> None:
    store = CandleStore(store_url)
    wl = _watchlist("http://unused", ["BTC/USDT/1h"])
    settings = wl.alerts
    urls = {"ops": receiver.url}
    incidents = store_incidents(store, wl, settings, NOW_MS)  # nothing yet
    assert incidents == []
    store.live.beat(_beat(heartbeat_at=0), [])
    t0 = int(time.time() * 1000)
    for at in (t0, t0 + 60_000, t0 + 599_000):  # within repeat_after_s (600 s): once
        tick(store, settings, store_incidents(store, wl, settings, at), urls, at)
    assert [b["title"] for b in receiver.taken()] == ["live service down"]
    at = t0 + 600_000
    tick(store, settings, store_incidents(store, wl, settings, at), urls, at)
    assert [b["title"] for b in receiver.taken()][-1] == "live service down (still open)"
    assert len(receiver.taken()) == 2


def _write_hours(store: CandleStore, series: Series, first: int, n: int, now: int) -> None:
    """``n`` 1h candles of ``series`` from ``first``, written as a fetch writes them."""
    ts = first + HOUR * np.arange(n)
    table = np.column_stack([ts, *(np.full(n, v) for v in (1.0, 2.0, 0.5, 1.5, 10.0))])
    page = page_from_table(series.symbol, table, HOUR, first, first + n * HOUR, now)
    store.write_pages([(series, page)], new=True)


def _stale_store(tmp_path: Path, n: int) -> tuple[CandleStore, Watchlist]:
    """``n`` markets with one candle each, 10 hours before the exchange clock."""
    markets = [f"C{i:03d}/USDT/1h" for i in range(n)]
    wl = _watchlist("http://unused", markets)
    store = CandleStore(f"sqlite:///{tmp_path}/stale.sqlite")
    for m in wl.markets:
        _write_hours(store, Series.of(m), NOW_MS - NOW_MS % HOUR - 10 * HOUR, 1, NOW_MS)
    store.gaps.save_clock("binance", NOW_MS)
    return store, wl


def test_300_markets_going_stale_together_are_one_message(
    tmp_path: Path, receiver: Receiver
) -> None:
    store, wl = _stale_store(tmp_path, 300)
    result = tick(
        store, wl.alerts, store_incidents(store, wl, wl.alerts, NOW_MS), {"ops": receiver.url}
    )
    (body,) = receiver.taken()
    assert body["kind"] == "stale" and body["count"] == 300 and len(body["incidents"]) == 300
    assert (
        body["title"] == "market stale: 300" and "300 incidents at once on binance" in body["text"]
    )
    assert result.delivered == 1


def test_a_receiver_answering_500_then_200_gets_the_alert_once_late(
    tmp_path: Path, receiver: Receiver
) -> None:
    store, wl = _stale_store(tmp_path, 1)
    receiver.answers = [500]
    urls = {"ops": receiver.url}
    first = tick(store, wl.alerts, store_incidents(store, wl, wl.alerts, NOW_MS), urls, NOW_MS)
    assert first.failed == ["ops: HTTP 500"] and receiver.taken() == []
    pending = store.alerts.undelivered()
    assert pending["undelivered"] == 1 and pending["last_error"] == "HTTP 500"
    # the next tick before the backoff (30 s) sends nothing; after it, the message goes
    assert deliver(store, wl.alerts, urls, NOW_MS + 10_000).delivered == 0
    later = deliver(store, wl.alerts, urls, NOW_MS + 31_000)
    assert later.delivered == 1 and len(receiver.taken()) == 1
    assert receiver.taken()[0]["kind"] == "stale"
    assert store.alerts.undelivered() == {"undelivered": 0}
    assert deliver(store, wl.alerts, urls, NOW_MS + 3_600_000).delivered == 0  # once


def test_a_receiver_that_never_answers_delays_nothing_else(
    tmp_path: Path, receiver: Receiver
) -> None:
    store, wl = _stale_store(tmp_path, 1)
    receiver.hang_s = 30
    started = time.monotonic()
    result = tick(
        store, wl.alerts, store_incidents(store, wl, wl.alerts, NOW_MS), {"ops": receiver.url}
    )
    took = time.monotonic() - started
    assert result.failed == ["ops: no answer within 2 s"]
    assert took < wl.alerts.timeout_s + 3, took  # the tick ends: the message waits in the outbox
    assert store.alerts.undelivered()["undelivered"] == 1
    # the daemon ticks each sensor in a thread of its own: alerts never hold up freshness
    for name in ("dagster.yaml", "dagster.postgres.yaml"):
        sensors = yaml.safe_load((ROOT / name).read_text())["sensors"]
        assert sensors["use_threads"] is True and sensors["num_workers"] >= 2


def test_no_webhook_url_appears_in_logs_runs_events_or_metadata(
    sim: RunningSimulator, store_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    wl = _watchlist(sim.url, ["BTC/USDT/1h"])
    instance = dg.DagsterInstance.ephemeral()
    harness = Harness(wl, store_url, instance)
    admin(sim.url, "faults", {"fail": [{"path": "/api/v3/klines", "count": -1, "status": 404}]})
    assert not harness.run_months("BTC-USDT-SPOT:1h", "2026-11").success
    admin(sim.url, "faults", {"fail": []})
    receiver.answers = [500]  # a failed delivery too: its error is recorded
    with caplog.at_level("DEBUG"):
        _evaluate(wl, store_url, instance, None)
    assert receiver.received  # something was sent, so the URL was used
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        stored = [
            str(row)
            for table in ("alert_outbox", "alert_incidents", "alert_events")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608 (fixed names)
        ]
    engine.dispose()
    events = [str(e) for r in instance.get_runs() for e in instance.all_logs(r.run_id)]
    seen = "\n".join([*stored, *events, caplog.text])
    assert stored and SECRET not in seen and receiver.url not in seen


def test_alerts_test_sends_one_message_to_every_target_and_says_what_each_answered(
    tmp_path: Path, sim: RunningSimulator, receiver: Receiver
) -> None:
    env = cli_env(tmp_path, sim.url, f"sqlite:///{tmp_path}/c.sqlite", ["BTC/USDT/1h"])
    config = Path(env["MARKET_DATA_CONFIG"])
    data = yaml.safe_load(config.read_text())
    data["alerts"] = {"targets": [
        {"name": "chat", "kind": "slack", "url_env": "TEST_ALERT_HOOK"},
        {"name": "pager", "kind": "json", "url_env": "TEST_ALERT_HOOK"},
        {"name": "unset", "kind": "json", "url_env": "TEST_ALERT_NOT_SET"},
    ]}  # fmt: skip
    config.write_text(yaml.safe_dump(data))
    env.pop("TEST_ALERT_NOT_SET", None)
    done = cli({**env, "TEST_ALERT_HOOK": receiver.url}, "alerts", "test")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "chat (slack): delivered: HTTP 200" in lines
    assert "pager (json): delivered: HTTP 200" in lines
    assert "unset (json): not sent: TEST_ALERT_NOT_SET is not set" in lines
    slack, generic = (r["body"] for r in receiver.received)
    assert set(slack) == {"text"} and "test alert" in slack["text"]
    assert generic["status"] == "test" and generic["source"] == "market-data"
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ({"url_env": "https://hooks.slack.com/services/T/B/X"}, "never in this file"),
        ({"url_env": "HOOK", "kind": "email"}, "json or slack"),
        ({"name": "x"}, "a mapping of name, kind"),
    ],
)
def test_a_broken_alerts_block_is_a_clear_error(target: dict, error: str) -> None:
    data = {"exchanges": {"binance": {"markets": ["BTC/USDT/1h"]}},
            "alerts": {"targets": [target]}}  # fmt: skip
    with pytest.raises(WatchlistError, match=error):
        parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)


def test_a_crossed_order_book_alerts_and_resolves(tmp_path: Path, receiver: Receiver) -> None:
    data = {"start": "2026-11-01",
            "exchanges": {"binance": {"markets": ["BTC/USDT/1h"], "orderbooks": {"interval_s": 60}}},
            "alerts": {"targets": [{"name": "ops", "url_env": "TEST_ALERT_HOOK"}]}}  # fmt: skip
    wl = parse_watchlist(data, frozenset(ccxt.exchanges), date(2026, 11, 21), timeframes_of)
    store = CandleStore(f"sqlite:///{tmp_path}/b.sqlite")
    crossed = OrderBook.of("BTC-USDT-SPOT", NOW_MS, [["101", "1"]], [["100", "1"]], 10)
    store.orderbooks.write("binance", [crossed])
    urls = {"ops": receiver.url}
    tick(store, wl.alerts, store_incidents(store, wl, wl.alerts, NOW_MS), urls, NOW_MS)
    fine = OrderBook.of("BTC-USDT-SPOT", NOW_MS + 86_400_000, [["99", "1"]], [["100", "1"]], 10)
    store.orderbooks.write("binance", [fine])
    later = NOW_MS + 86_400_000  # past the check window: only the fine book is judged
    tick(store, wl.alerts, store_incidents(store, wl, wl.alerts, later), urls, later)
    assert [(b["kind"], b["status"]) for b in receiver.taken()] == [
        ("crossed_book", "firing"),
        ("crossed_book", "resolved"),
    ]
    assert "1 crossed snapshot" in receiver.taken()[0]["text"]


def test_settings_defaults_are_documented() -> None:
    """The README's alerts block names every setting with its default."""
    readme = (ROOT / "README.md").read_text()
    for name, value in vars(AlertSettings()).items():
        if name in ("targets", "ui_url"):
            continue
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert f"  {name}: {shown}" in readme, name
