"""The `market-data` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import traceback
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from tabulate import tabulate

from market_data.api.app import Sources
from market_data.api.server import serve
from market_data.config import database_url, load_watchlist, timeframes_of
from market_data.defs.candles.checks import counts_of
from market_data.defs.candles.cli_runs import (
    check_gaps,
    execute,
    newest_stored_day,
    plan,
    repair_plan,
)
from market_data.defs.candles.migrate import migrate_layout
from market_data.defs.candles.partitions import split_partition_key
from market_data.defs.composite.runs import run_composite
from market_data.defs.reports.status import DagsterActivity, dagster_status
from market_data.defs.resources import build_resources
from market_data.domain.alerts import Message
from market_data.domain.calendar import month_keys, utc_text
from market_data.domain.composite import CompositeMarket, composite_markets
from market_data.domain.gaps import GapCounts
from market_data.domain.symbols import MalformedSymbolError, parse_symbol
from market_data.domain.timeframes import Timeframe, UnknownTimeframeError
from market_data.domain.watchlist import Market, Watchlist, WatchlistError, no_candles
from market_data.exchanges.client import ExchangeClient, SyncExchangeClient
from market_data.exchanges.errors import ExchangeDataError
from market_data.exchanges.venues import venue
from market_data.pipeline.alerts import send
from market_data.pipeline.gaps import months_to_repair
from market_data.pipeline.ingest import unlisted
from market_data.pipeline.live import LiveService, streaming_exchanges
from market_data.signals import stops_cleanly
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.replay import ReplayFileError
from market_data.simulator.server import DIALECTS, Simulator, serve_forever
from market_data.store.candles import CandleStore
from market_data.store.schema import apply_schema, drop_all


def entry() -> None:
    """The console script: the command, then an immediate exit. Everything is committed and
    flushed by then; skipping the interpreter's teardown (freeing Dagster's and ccxt's module
    graphs) saves about two seconds a command."""
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


class _Main(click.Group):
    """The command group; a database that cannot be reached or a watchlist that does not
    parse is one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except sa.exc.OperationalError as e:
            raise click.ClickException(f"database error: {_first_line(e.orig or e)}") from None
        except WatchlistError as e:
            raise click.UsageError(str(e)) from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


#: the run logs' Python tracebacks on the terminal (they are always in the UI's run logs)
VERBOSE = click.option(
    "-v", "--verbose", is_flag=True, help="print the runs' Python tracebacks too"
)


@click.group(cls=_Main)
def main() -> None:
    """Crypto candle history, complete and fresh, with Dagster."""


def _faults(raw: str | None) -> Faults:
    if not raw:
        return Faults()
    text = Path(raw).read_text() if Path(raw).is_file() else raw
    try:
        return Faults.model_validate(json.loads(text))
    except ValueError as e:
        raise click.BadParameter(f"faults: {e}") from e


def _replay(items: tuple[str, ...]) -> dict[str, Path]:
    out = {}
    for item in items:
        symbol, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise click.BadParameter(
                f"--replay {item!r}: expected SYMBOL=FILE with an existing file"
            )
        out[symbol.upper()] = Path(path)
    return out


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--fixed-clock", help="freeze the exchange clock at this UTC time (ISO 8601)")
@click.option("--clock-offset-ms", default=0, type=int, help="shift the exchange clock")
@click.option("--faults", "faults_raw", help="fault settings: JSON text or a JSON file")
@click.option("--replay", multiple=True, help="serve SYMBOL's 1m candles from FILE: SYMBOL=FILE")
@click.option("--extra-pairs", default=0, type=click.IntRange(0, 20_000),
              help="list this many more Binance bases (X001, X002, ...): a spot pair each, a "
              "USD-M perpetual for every second one; listings spread 2017-2026, some delisted")  # fmt: skip
@click.option("--archive-cache-mb", default=256, show_default=True, type=click.IntRange(1),
              help="MB of built archive files (/binance-archive) kept in memory")  # fmt: skip
@click.option("--archive-dir", type=click.Path(file_okay=False, path_type=Path),
              help="keep every built archive file in this directory and serve it from there "
              "later (prebuilt, as the real host's; its files outlive the process)")  # fmt: skip
def simulate(
    host: str,
    port: int,
    fixed_clock: str | None,
    clock_offset_ms: int,
    faults_raw: str | None,
    replay: tuple[str, ...],
    extra_pairs: int,
    archive_cache_mb: int,
    archive_dir: Path | None,
) -> None:
    """Run the local exchange simulator: Binance (spot and USD-M futures, REST and
    WebSocket streams) at the root, Bitfinex, Coinbase and Kraken under /bitfinex, /coinbase
    and /kraken of the same port. Ctrl-C or SIGTERM stops it."""

    fixed = None
    if fixed_clock:
        moment = datetime.fromisoformat(fixed_clock.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise click.BadParameter("--fixed-clock needs a UTC offset, e.g. 2026-01-01T00:00Z")
        fixed = int(moment.timestamp() * 1000)
    if archive_dir is not None:
        archive_dir.mkdir(parents=True, exist_ok=True)
    try:
        sim = Simulator(
            _faults(faults_raw), Clock(clock_offset_ms, fixed), _replay(replay), extra_pairs,
            archive_cache_mb * 2**20, archive_dir,
        )  # fmt: skip
    except ReplayFileError as e:
        raise click.BadParameter(str(e), param_hint="--replay") from None
    root = f"http://{host}:{port}"
    click.echo(
        f"exchange simulator: binance {root}, " + ", ".join(f"{d} {root}/{d}" for d in DIALECTS)
    )
    click.echo("admin per exchange: [/<exchange>]/admin/stats, /admin/faults, /admin/reset")
    click.echo(f"binance streams: {root.replace('http', 'ws', 1)}/stream (spot), /fstream/stream")
    with stops_cleanly("simulator"):
        serve_forever(sim, host, port)


@main.group()
def db() -> None:
    """The candle database (DATABASE_URL, or the embedded SQLite file)."""


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(a malformed URL)"


def _store(create: bool = True) -> CandleStore:
    """The candle store of DATABASE_URL, reachable, or one clear line (password hidden)."""
    url = database_url()
    try:
        store = CandleStore(url, create=False)
        with store.engine.connect():
            pass
    except (sa.exc.OperationalError, sa.exc.ArgumentError) as e:
        reason = _first_line(getattr(e, "orig", None) or e)
        raise click.ClickException(
            f"cannot reach the candle database {_redacted(url)}: {reason}"
        ) from None
    if create:
        apply_schema(store.engine)
    return store


@db.command("init")
def db_init() -> None:
    """Create or upgrade the schema (the files in sql/, each once)."""

    store = _store(create=False)
    applied = apply_schema(store.engine)
    click.echo(
        f"{_redacted(database_url())}: "
        + (f"applied {', '.join(applied)}" if applied else "schema up to date")
    )


@db.command("reset")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
def db_reset(force: bool) -> None:
    """Drop every table and create the schema again: all stored candles are lost."""

    url = database_url()
    if not force:
        click.confirm(f"Delete every candle in {_redacted(url)}?", abort=True)
    store = _store(create=False)
    drop_all(store.engine)
    apply_schema(store.engine)
    click.echo(f"{_redacted(url)}: reset")


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=name) from e
    if day > datetime.now(UTC).date():
        raise click.BadParameter(f"{day} is in the future", param_hint=name)
    return day


def _markets(
    exchange: str, symbols: tuple[str, ...], timeframes: tuple[str, ...], start: date | None
) -> tuple[Watchlist, list[Market]]:
    """The watchlist and the markets named on the command line (watched ones keep their start)."""
    try:
        watchlist = load_watchlist()
        watchlist.exchange(exchange)
    except WatchlistError as e:
        raise click.UsageError(str(e)) from e
    try:
        markets = []
        for s in symbols:
            for tf in timeframes:
                market = Market(
                    exchange, parse_symbol(s), Timeframe.parse(tf), start or watchlist.start
                )
                if start is None:
                    market = watchlist.market_or_default(exchange, market.key)
                markets.append(market)
    except (MalformedSymbolError, UnknownTimeframeError) as e:
        raise click.BadParameter(str(e)) from e
    frames = dict.fromkeys(m.timeframe for m in markets)
    if why := no_candles(exchange, frames, timeframes_of(exchange)):
        raise click.BadParameter(why.split("; ")[0], param_hint="--timeframe")
    return watchlist, markets


@main.command()
@click.option("--exchange", required=True, help="an exchange of the watchlist, e.g. binance")
@click.option(
    "--symbol",
    "symbols",
    multiple=True,
    required=True,
    help="BTC/USDT or BTC-USDT-SPOT; repeatable",
)
@click.option(
    "--timeframe",
    "timeframes",
    multiple=True,
    default=("1h",),
    show_default=True,
    help="repeatable",
)
@click.option("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
@click.option(
    "--end", help="stop before this day, YYYY-MM-DD (default: up to the last closed candle)"
)
@click.option("--resume", is_flag=True, help="start from the newest stored candle of each market")
@click.option("--dry-run", is_flag=True, help="fetch and validate, write nothing")
@VERBOSE
def backfill(
    exchange: str,
    symbols: tuple[str, ...],
    timeframes: tuple[str, ...],
    start: str,
    end: str | None,
    resume: bool,
    dry_run: bool,
    verbose: bool,
) -> None:
    """Backfill candles: Dagster materializations of the candle asset, shown in the UI."""

    first, last = _day(start, "--start"), _day(end, "--end")
    assert first is not None
    if last is not None and last <= first:
        raise click.BadParameter("must be after --start", param_hint="--end")
    watchlist, markets = _markets(exchange, symbols, timeframes, first)
    _check_listed(watchlist, exchange, markets)
    res = build_resources(watchlist)
    store = _store()
    newest = newest_stored_day(store) if resume else None
    plans = plan(markets, first, last, newest)
    click.echo(
        f"{len(plans)} run(s) for {len(markets)} market(s) on {exchange}"
        + (" (dry run)" if dry_run else "")
    )
    outcome = execute(
        plans, watchlist, res, dg.DagsterInstance.get(), click.echo, {"dry_run": dry_run}, verbose
    )
    raise SystemExit(outcome.exit_code)


def _check_listed(watchlist: Watchlist, exchange: str, markets: list[Market]) -> None:
    """Refuse markets the exchange does not list before anything is recorded for them."""
    try:
        with SyncExchangeClient.of(watchlist.exchange(exchange)) as client:
            problems = client.run(unlisted(client.client, markets, _store()))
    except ExchangeDataError as e:
        raise click.ClickException(f"cannot load the markets of {exchange}: {e}") from None
    if problems:
        raise click.UsageError("; ".join(problems))


@main.command()
@click.option(
    "--symbol", required=True, help="a cross_exchange symbol: BTC-USD, BTC-USD-SPOT, BTC/USD"
)
@click.option("--timeframe", default="1h", show_default=True)
@click.option("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
@click.option("--end", help="stop before this day, YYYY-MM-DD (default: up to now)")
def composite(symbol: str, timeframe: str, start: str, end: str | None) -> None:
    """Composite candles of one cross-exchange symbol: Dagster materializations of
    composite/candles (and its divergence check) over the months from --start."""
    first, last = _day(start, "--start"), _day(end, "--end")
    assert first is not None
    if last is not None and last <= first:
        raise click.BadParameter("must be after --start", param_hint="--end")
    try:
        watchlist = load_watchlist()
        text = symbol.strip().upper()
        name = parse_symbol(text if text.count("-") != 1 else f"{text}-SPOT").standard
        market = CompositeMarket(name, Timeframe.parse(timeframe))
    except WatchlistError as e:
        raise click.UsageError(str(e)) from e
    except (MalformedSymbolError, UnknownTimeframeError) as e:
        raise click.BadParameter(str(e)) from e
    known = [m.key for m in composite_markets(watchlist)]
    if market.key not in known:
        raise click.UsageError(
            f"{market.key} is not a composite market of the watchlist's cross_exchange block"
            + (f" (it has {', '.join(known)})" if known else " (it has none)")
        )
    first = max(first, watchlist.start)  # no partition before the watchlist's start
    today = datetime.now(UTC).date()
    months = month_keys(first, min(last - timedelta(days=1), today) if last else today)
    click.echo(f"composite {market.key}: {months[0][:7]}..{months[-1][:7]}")
    ok = run_composite(
        market, months, watchlist, build_resources(watchlist), dg.DagsterInstance.get(), click.echo
    )
    raise SystemExit(0 if ok else 1)


@main.group()
def gaps() -> None:
    """Gaps: expected candles that are not stored (the candles assets' gap check)."""


_market_options = [
    click.option("--exchange", required=True, help="an exchange of the watchlist"),
    click.option("--symbol", "symbols", multiple=True, required=True, help="repeatable"),
    click.option("--timeframe", "timeframes", multiple=True, default=("1h",), show_default=True),
]


def market_options(fn: Any) -> Any:
    for option in reversed(_market_options):
        fn = option(fn)
    return fn


@gaps.command("detect")
@market_options
def gaps_detect(exchange: str, symbols: tuple[str, ...], timeframes: tuple[str, ...]) -> None:
    """Run the gap check over each market's whole history (a Dagster run, no fetching)."""
    watchlist, markets = _markets(exchange, symbols, timeframes, None)
    res = build_resources(watchlist)
    failed = False
    for market in markets:
        results = check_gaps(market, watchlist, res, dg.DagsterInstance.get())
        if not results:
            raise click.ClickException(f"{market.key}: the gap check did not run")
        counts = sum((counts_of(r) for r in results), GapCounts())
        bad = [split_partition_key(str(r.partition))[1] for r in results if not r.passed]
        click.echo(
            f"{'GAPS' if bad else 'ok':4} {exchange} {market.key}: {counts.describe()}"
            + (f" (in {', '.join(bad)})" if bad else "")
        )
        failed |= bool(bad)
    if failed:
        raise SystemExit(1)


@gaps.command("repair")
@market_options
@click.option(
    "--max-gaps", type=click.IntRange(min=1), help="repair at most this many gaps per market"
)
@VERBOSE
def gaps_repair(
    exchange: str,
    symbols: tuple[str, ...],
    timeframes: tuple[str, ...],
    max_gaps: int | None,
    verbose: bool,
) -> None:
    """Fetch only the open gaps of each market (repair runs, each followed by the check)."""
    watchlist, markets = _markets(exchange, symbols, timeframes, None)
    res = build_resources(watchlist)
    instance = dg.DagsterInstance.get()
    store = _store(create=False)
    plans = []
    for market in markets:  # the check first, so the gaps are known
        check_gaps(market, watchlist, res, instance)
        months = months_to_repair(store, market, watchlist.gaps)
        if not months:
            click.echo(f"{exchange} {market.key}: no open gap with repair attempts left")
        plans += repair_plan(market, months)
    if not plans:
        return
    outcome = execute(
        plans,
        watchlist,
        res,
        instance,
        click.echo,
        {"repair": True, "max_gaps": max_gaps},
        verbose,
    )
    raise SystemExit(outcome.exit_code)


@gaps.command("list")
@click.option("--open", "only_open", is_flag=True, help="only gaps still open")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(min=1))
def gaps_list(only_open: bool, limit: int) -> None:
    """The candle_gaps table (kind: missing = never fetched, empty = fetched, the exchange
    returned nothing; status: open, repaired, exchange_empty = empty confirmed)."""
    rows = _store().gaps.all_gaps(only_open, limit + 1)
    truncated = len(rows) > limit
    rows = rows[:limit]

    def iso(ms: int | None) -> str:
        return utc_text(ms) or ""

    table = [
        [r["exchange"], r["symbol"], r["timeframe"], iso(r["gap_start"]), iso(r["gap_end"]), r["kind"],
         r["status"], r["attempts"], iso(r["repaired_at"])]
        for r in rows
    ]  # fmt: skip
    headers = [
        "exchange",
        "symbol",
        "tf",
        "from",
        "to (excl.)",
        "kind",
        "status",
        "attempts",
        "repaired",
    ]
    click.echo(tabulate(table, headers=headers) if table else "no gaps")
    if truncated:
        click.echo(f"(the first {limit} gaps only: --limit N shows more)")


def workers_line(state: dict[str, Any]) -> str:
    """The status report's line on the Celery broker and workers."""
    head = f"runs: Celery broker {state['broker']}"
    if not state["reachable"]:
        return f"{head}: unreachable ({state['error']}); runs wait until it answers"
    workers = ", ".join(f"{w} ({' '.join(qs)})" for w, qs in state["workers"].items())
    line = f"{head}: {len(state['workers'])} worker(s): {workers or 'none'}"
    if state["queues_without_worker"]:
        line += f"; no worker takes {', '.join(state['queues_without_worker'])}"
    return line


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(as_json: bool) -> None:
    """Per market: candles, expected, absent, open gaps (missing: never fetched; empty: the
    exchange returned nothing, unconfirmed), exchange-empty, lag, last run; the database's
    reachability and latency. The same report as reports/status and `GET /ingestion/status`."""
    watchlist = load_watchlist()
    report = dagster_status(
        CandleStore(database_url(), create=False), dg.DagsterInstance.get(), watchlist
    )
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        db = (
            f"{report.database_latency_ms} ms"
            if report.database_ok
            else f"UNREACHABLE ({report.database_error})"
        )
        click.echo(f"database: {db}")
        rows = report.rows()
        click.echo(tabulate(rows, headers=report.headers()) if rows else "no markets yet")
        for exchange, counts in report.runs_24h.items():
            click.echo(
                f"runs in the last 24 h on {exchange}: "
                + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none")
            )
        for exchange, live in report.live.items():
            click.echo(
                f"live on {exchange}: {live['state']}, {live['connections']} connection(s), "
                f"{live['markets']} market(s), heartbeat {live['heartbeat_age_s']}s ago, "
                f"p99 {live['latency_p99_ms']} ms, {live['reconnects']} reconnect(s)"
                + (f", {live['streams_down']} market(s) down" if live["streams_down"] else "")
                + (f", last error: {live['last_error']}" if live["last_error"] else "")
            )
        if report.workers:
            click.echo(workers_line(report.workers))
        if report.store.get("advice"):
            click.echo(f"store: {report.store['advice']}")
        if report.alerts.get("undelivered"):
            a = report.alerts
            click.echo(
                f"alerts: {a['undelivered']} message(s) not delivered, the oldest since "
                f"{utc_text(a['oldest_created_at'])} to {a['target']} ({a['last_error']})"
            )
    if not report.database_ok:
        raise SystemExit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(1, 65535))
@click.option("--report-max-age", default=15.0, show_default=True, type=click.FloatRange(0),
              help="seconds a status report is served again (refreshed in the background "
              "every half of it); 0: every request collects its own")  # fmt: skip
def api(host: str, port: int, report_max_age: float) -> None:
    """Serve the HTTP status API: GET /health, /ingestion/status, /gaps, /metrics (the same
    numbers as `market-data status`). Ctrl-C or SIGTERM stops it."""
    url = database_url()
    try:
        store = CandleStore(url, create=False)  # the store may be down: /health then says so
    except sa.exc.ArgumentError:
        raise click.ClickException(
            f"DATABASE_URL is not a database URL: {_redacted(url)}"
        ) from None
    watchlist = load_watchlist()
    instance = dg.DagsterInstance.get()
    sources = Sources(
        store,
        lambda: DagsterActivity(instance, watchlist),
        watchlist,
        database_url=url,
        report_max_age_s=report_max_age,
    )
    click.echo(f"status API on http://{host}:{port} (store {_redacted(url)})")
    with stops_cleanly("api"):
        serve(sources, host, port)


@main.command()
def live() -> None:
    """Stream closed candles of every watched market of every exchange that streams
    (Binance) and store each within seconds of its close; fill what a disconnect missed
    over REST; read the watchlist again every live.refresh_s; take order book snapshots
    set below a minute apart. Ctrl-C or SIGTERM stops it."""
    watchlist = load_watchlist()
    store = CandleStore(database_url())
    names = streaming_exchanges(watchlist)
    click.echo(
        f"live: streaming {', '.join(names) or 'nothing (no exchange of the watchlist streams)'}"
        f" into {_redacted(database_url())}"
    )

    def client(w: Watchlist, name: str) -> ExchangeClient:
        return ExchangeClient.of(w.exchange(name))

    def log(line: str) -> None:
        click.echo(f"{datetime.now(UTC):%H:%M:%S} {line}")

    service = LiveService(store, load_watchlist, client, log)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service.run(stop)

    with stops_cleanly("live"):
        asyncio.run(run())


@main.group()
def alerts() -> None:
    """The alert webhooks of the watchlist's alerts block."""


@alerts.command("test")
def alerts_test() -> None:
    """Send one test message to every alert target and say what each answered (exit 1 if
    any did not take it)."""
    settings = load_watchlist().alerts
    if not settings.targets:
        raise click.ClickException("no alert target in the watchlist (alerts.targets)")
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    message = Message("test", "test", "market-data: test alert", f"a test message sent at {at}")
    failed = 0
    for t in settings.targets:
        url = dg.EnvVar(t.url_env).get_value()
        if not url:
            click.echo(f"{t.name} ({t.kind}): not sent: {t.url_env} is not set")
            failed += 1
            continue
        ok, answer = send(url, message.payload(t.kind), settings.timeout_s)
        click.echo(f"{t.name} ({t.kind}): {'delivered' if ok else 'NOT delivered'}: {answer}")
        failed += not ok
    if failed:
        raise SystemExit(1)


@main.command()
@click.option("--limit", default=None, type=click.IntRange(min=1),
              help="steps that may hit one exchange at once (default: 2 where the exchange "
              "reports the weight used, e.g. Binance, else 1)")  # fmt: skip
def pools(limit: int | None) -> None:
    """Set the concurrency pool of every exchange of the watchlist (exchange:<name>) in the
    Dagster instance, as `dagster instance concurrency set` does."""
    instance = dg.DagsterInstance.get()
    for ex in load_watchlist().exchanges:
        slots = limit or venue(ex.name).pool_limit
        instance.event_log_storage.set_concurrency_slots(f"exchange:{ex.name}", slots)
        click.echo(f"pool exchange:{ex.name}: {slots}")


@main.command("migrate-layout")
def migrate_layout_command() -> None:
    """Move the Dagster instance from the month layout (candles/<exchange>, market x month)
    to the year layout (candles/<exchange>/<timeframe>, market x year): markets added to their
    timeframe's asset, materialized years reported; no candle moves, nothing is fetched.
    Run it once, with the daemon stopped; running it again does only what is missing."""
    done = migrate_layout(dg.DagsterInstance.get(), load_watchlist(), click.echo)
    click.echo(
        f"migrated: {sum(done.markets.values())} market partition(s) added, "
        f"{sum(done.years.values())} year partition(s) reported materialized"
    )
