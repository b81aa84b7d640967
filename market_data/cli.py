"""The `market-data` command line."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import click
import dagster as dg
from sqlalchemy.engine import make_url

from market_data.config import database_url, load_watchlist
from market_data.defs.candles.backfill import execute, newest_stored_day, plan
from market_data.defs.resources import build_resources
from market_data.domain.symbols import MalformedSymbolError, parse_symbol
from market_data.domain.timeframes import Timeframe, UnknownTimeframeError
from market_data.domain.watchlist import Market, WatchlistError
from market_data.simulator.book import Clock
from market_data.simulator.faults import Faults
from market_data.simulator.server import Simulator, serve_forever
from market_data.store.candles import CandleStore
from market_data.store.schema import apply_schema, drop_all


@click.group()
def main() -> None:
    """Crypto candle history, complete and fresh, with Dagster."""
    # Dagster flags its beta/preview parameters (backfill_policy, pool) on every load.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


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
def simulate(
    host: str,
    port: int,
    fixed_clock: str | None,
    clock_offset_ms: int,
    faults_raw: str | None,
    replay: tuple[str, ...],
) -> None:
    """Run the local exchange simulator (Binance spot and USD-M futures wire format)."""

    fixed = None
    if fixed_clock:
        moment = datetime.fromisoformat(fixed_clock.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise click.BadParameter("--fixed-clock needs a UTC offset, e.g. 2026-01-01T00:00Z")
        fixed = int(moment.timestamp() * 1000)
    sim = Simulator(_faults(faults_raw), Clock(clock_offset_ms, fixed), _replay(replay))
    click.echo(f"exchange simulator on http://{host}:{port} (admin: /admin/stats, /admin/faults)")
    serve_forever(sim, host, port)


@main.group()
def db() -> None:
    """The candle database (DATABASE_URL, or the embedded SQLite file)."""


def _redacted(url: str) -> str:

    return make_url(url).render_as_string(hide_password=True)


@db.command("init")
def db_init() -> None:
    """Create or upgrade the schema (the files in sql/, each once)."""

    store = CandleStore(database_url(), create=False)
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
    store = CandleStore(url, create=False)
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
def backfill(
    exchange: str,
    symbols: tuple[str, ...],
    timeframes: tuple[str, ...],
    start: str,
    end: str | None,
    resume: bool,
    dry_run: bool,
) -> None:
    """Backfill candles: Dagster materializations of the candle asset, shown in the UI."""

    try:
        watchlist = load_watchlist()
        watchlist.exchange(exchange)
    except WatchlistError as e:
        raise click.UsageError(str(e)) from e
    first, last = _day(start, "--start"), _day(end, "--end")
    assert first is not None
    if last is not None and last <= first:
        raise click.BadParameter("must be after --start", param_hint="--end")
    try:
        markets = [
            Market(exchange, parse_symbol(s), Timeframe.parse(tf), first)
            for s in symbols
            for tf in timeframes
        ]
    except (MalformedSymbolError, UnknownTimeframeError) as e:
        raise click.BadParameter(str(e)) from e
    res = build_resources(watchlist)
    newest = newest_stored_day(CandleStore(database_url())) if resume else None
    plans = plan(markets, first, last, newest)
    click.echo(
        f"{len(plans)} run(s) for {len(markets)} market(s) on {exchange}"
        + (" (dry run)" if dry_run else "")
    )
    ok = execute(plans, watchlist, res, dg.DagsterInstance.get(), dry_run, click.echo)
    if not ok:
        raise SystemExit(1)
