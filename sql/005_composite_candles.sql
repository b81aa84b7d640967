-- Composite candles: one symbol and timeframe over the exchanges that have each candle.
-- open/high/low/close are volume-weighted averages of the sources' (a plain average when
-- every source traded nothing); max_high and min_low are the plain extremes; volume is the
-- sum. sources lists the contributing exchanges, comma-separated in name order.
CREATE TABLE IF NOT EXISTS composite_candles (
    symbol       VARCHAR(64)  NOT NULL,      -- the composite's standard name, e.g. BTC-USD-SPOT
    timeframe    VARCHAR(8)   NOT NULL,
    ts           BIGINT       NOT NULL,      -- candle open time, UTC epoch milliseconds
    open         DOUBLE PRECISION NOT NULL,
    high         DOUBLE PRECISION NOT NULL,
    low          DOUBLE PRECISION NOT NULL,
    close        DOUBLE PRECISION NOT NULL,
    volume       DOUBLE PRECISION NOT NULL,
    max_high     DOUBLE PRECISION NOT NULL,
    min_low      DOUBLE PRECISION NOT NULL,
    source_count INTEGER      NOT NULL,
    sources      VARCHAR(512) NOT NULL,
    PRIMARY KEY (symbol, timeframe, ts)
);
