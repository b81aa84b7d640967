-- Per series: how many candles are stored, the first and the last open time, kept by the
-- database itself on every insert and delete (sql/011's triggers), so the status report reads
-- one row per series instead of counting the candle table (which grows to 10^10 rows),
-- whoever writes or deletes. A store made before these files gets its rows in sql/012.
CREATE TABLE IF NOT EXISTS candle_series (
    exchange  VARCHAR(32) NOT NULL,
    symbol    VARCHAR(64) NOT NULL,
    timeframe VARCHAR(8)  NOT NULL,
    candles   BIGINT      NOT NULL,
    first_ts  BIGINT,
    last_ts   BIGINT,
    PRIMARY KEY (exchange, symbol, timeframe)
);
