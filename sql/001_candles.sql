-- Candles: one row per (exchange, symbol, timeframe, open time); upserts key on it, so a
-- candle is stored once however often it is fetched.
CREATE TABLE IF NOT EXISTS candles (
    exchange  VARCHAR(32) NOT NULL,
    symbol    VARCHAR(64) NOT NULL,          -- standard name, e.g. BTC-USDT-SPOT
    timeframe VARCHAR(8)  NOT NULL,          -- 1m, 5m, 1h, ...
    ts        BIGINT      NOT NULL,          -- candle open time, UTC epoch milliseconds
    open      DOUBLE PRECISION NOT NULL,
    high      DOUBLE PRECISION NOT NULL,
    low       DOUBLE PRECISION NOT NULL,
    close     DOUBLE PRECISION NOT NULL,
    volume    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, ts)
);

-- Fetch coverage: the intervals [start_ts, end_ts) that were fetched and how many candles
-- came back. An interval covered here with no candle in it is empty at the exchange; an
-- interval not covered was never fetched (or its fetch failed).
CREATE TABLE IF NOT EXISTS fetch_coverage (
    exchange   VARCHAR(32) NOT NULL,
    symbol     VARCHAR(64) NOT NULL,
    timeframe  VARCHAR(8)  NOT NULL,
    start_ts   BIGINT      NOT NULL,
    end_ts     BIGINT      NOT NULL,
    candles    INTEGER     NOT NULL,
    fetched_at BIGINT      NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, start_ts)
);

-- Instruments: what the exchange lists, under standard names, with the listing date
-- (the first candle) once discovered.
CREATE TABLE IF NOT EXISTS instruments (
    exchange        VARCHAR(32) NOT NULL,
    symbol          VARCHAR(64) NOT NULL,    -- standard name
    ccxt_symbol     VARCHAR(64) NOT NULL,
    exchange_symbol VARCHAR(64),
    type            VARCHAR(16) NOT NULL,    -- spot, perp, future
    listed_at       BIGINT,                  -- first candle open time, UTC epoch ms
    active          BOOLEAN     NOT NULL DEFAULT TRUE,
    updated_at      BIGINT      NOT NULL,
    PRIMARY KEY (exchange, symbol)
);
