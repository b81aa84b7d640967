"""SQLAlchemy table objects for queries. The schema itself is created by the files in sql/;
these mirror them (a test checks that they agree)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()


def _series_columns() -> list[sa.Column]:
    return [
        sa.Column("exchange", sa.String(32), primary_key=True),
        sa.Column("symbol", sa.String(64), primary_key=True),
        sa.Column("timeframe", sa.String(8), primary_key=True),
    ]


def _candle_columns() -> list[sa.Column]:
    """Open time and the five values of a candle."""
    return [
        sa.Column("ts", sa.BigInteger, primary_key=True),
        *(sa.Column(c, sa.Double, nullable=False) for c in ("open", "high", "low", "close", "volume")),
    ]  # fmt: skip


candles = sa.Table("candles", metadata, *_series_columns(), *_candle_columns())

#: per series: stored candles, first and last open time (kept by the database's triggers)
candle_series = sa.Table(
    "candle_series",
    metadata,
    *_series_columns(),
    sa.Column("candles", sa.BigInteger, nullable=False),
    sa.Column("first_ts", sa.BigInteger),
    sa.Column("last_ts", sa.BigInteger),
)

#: per series and UTC month (month_ts: its first ms): stored candles (the database's triggers)
candle_months = sa.Table(
    "candle_months",
    metadata,
    *_series_columns(),
    sa.Column("month_ts", sa.BigInteger, primary_key=True),
    sa.Column("candles", sa.BigInteger, nullable=False),
)

fetch_coverage = sa.Table(
    "fetch_coverage",
    metadata,
    *_series_columns(),
    sa.Column("start_ts", sa.BigInteger, primary_key=True),
    sa.Column("end_ts", sa.BigInteger, nullable=False),
    sa.Column("candles", sa.Integer, nullable=False),
    sa.Column("fetched_at", sa.BigInteger, nullable=False),
    #: "rest", "archive", "trades" or "stream" (the live service's closes; NULL: rest,
    #: written before sql/009)
    sa.Column("source", sa.String(16)),
    #: the archive file's SHA-256 (source "archive")
    sa.Column("checksum", sa.String(64)),
)

instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("exchange", sa.String(32), primary_key=True),
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("ccxt_symbol", sa.String(64), nullable=False),
    sa.Column("exchange_symbol", sa.String(64)),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("listed_at", sa.BigInteger),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("base", sa.String(32)),
    sa.Column("quote", sa.String(32)),
    sa.Column("settle", sa.String(32)),
    sa.Column("expiry", sa.BigInteger),
    sa.Column("tick_size", sa.Double),
    sa.Column("lot_size", sa.Double),
    sa.Column("delisted_at", sa.BigInteger),
    sa.Column("first_seen_at", sa.BigInteger),
    sa.Column("listing_checked_at", sa.BigInteger),
)

candle_gaps = sa.Table(
    "candle_gaps",
    metadata,
    *_series_columns(),
    sa.Column("gap_start", sa.BigInteger, primary_key=True),
    sa.Column("gap_end", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("detected_at", sa.BigInteger, nullable=False),
    sa.Column("repaired_at", sa.BigInteger),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_attempt_at", sa.BigInteger),
)

exchange_clock = sa.Table(
    "exchange_clock",
    metadata,
    sa.Column("exchange", sa.String(32), primary_key=True),
    sa.Column("now_ms", sa.BigInteger, nullable=False),
    sa.Column("read_at", sa.BigInteger, nullable=False),
)

composite_candles = sa.Table(
    "composite_candles",
    metadata,
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("timeframe", sa.String(8), primary_key=True),
    *_candle_columns(),
    sa.Column("max_high", sa.Double, nullable=False),
    sa.Column("min_low", sa.Double, nullable=False),
    sa.Column("source_count", sa.Integer, nullable=False),
    sa.Column("sources", sa.String(512), nullable=False),
)

live_service = sa.Table(
    "live_service",
    metadata,
    sa.Column("exchange", sa.String(32), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
    sa.Column("connections", sa.Integer, nullable=False),
    sa.Column("connected", sa.Integer, nullable=False),
    sa.Column("streams", sa.Integer, nullable=False),
    sa.Column("exchange_now", sa.BigInteger),
    sa.Column("reconnects", sa.Integer, nullable=False),
    sa.Column("closes_stored", sa.BigInteger, nullable=False),
    sa.Column("latency_p50_ms", sa.Integer),
    sa.Column("latency_p99_ms", sa.Integer),
    sa.Column("last_error", sa.String(512)),
)

live_streams = sa.Table(
    "live_streams",
    metadata,
    *_series_columns(),
    sa.Column("subscribed_at", sa.BigInteger, nullable=False),
    sa.Column("last_close_ts", sa.BigInteger),
    sa.Column("stored_at", sa.BigInteger),
    sa.Column("lag_ms", sa.BigInteger),
    #: its connection open and the stream subscribed (NULL: written before sql/016)
    sa.Column("connected", sa.Boolean),
)


class ExactDecimal(sa.TypeDecorator[Decimal]):
    """Exact decimals: NUMERIC on PostgreSQL, the decimal's text on SQLite (whose NUMERIC
    would turn it into a float)."""

    impl = sa.Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


ORDERBOOK_LEVELS = ("bid_prices", "bid_amounts", "ask_prices", "ask_amounts")


class ExactDecimals(sa.TypeDecorator[list[Decimal]]):
    """Lists of exact decimals: NUMERIC[] on PostgreSQL, a JSON array of decimal text on
    SQLite."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Numeric(asdecimal=True)))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: list[Decimal] | None, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps([str(v) for v in value])

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> list[Decimal] | None:
        if value is None:
            return None
        items = value if dialect.name == "postgresql" else json.loads(value)
        return [Decimal(str(v)) for v in items]


orderbook_snapshots = sa.Table(
    "orderbook_snapshots",
    metadata,
    sa.Column("exchange", sa.String(32), primary_key=True),
    sa.Column("symbol", sa.String(64), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),
    sa.Column("best_bid", ExactDecimal),
    sa.Column("best_ask", ExactDecimal),
    *(sa.Column(c, ExactDecimals, nullable=False) for c in ORDERBOOK_LEVELS),
)

alert_incidents = sa.Table(
    "alert_incidents",
    metadata,
    sa.Column("incident_key", sa.String(512), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("opened_at", sa.BigInteger, nullable=False),
    sa.Column("last_sent_at", sa.BigInteger, nullable=False),
    sa.Column("resolved_at", sa.BigInteger),
)

alert_outbox = sa.Table(
    "alert_outbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_try_at", sa.BigInteger, nullable=False),
    sa.Column("delivered_at", sa.BigInteger),
    sa.Column("last_error", sa.String(512)),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("exchange", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
)

VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
COMPOSITE_VALUES = (*VALUE_COLUMNS, "max_high", "min_low", "source_count", "sources")
KEY_COLUMNS = ("exchange", "symbol", "timeframe", "ts")
