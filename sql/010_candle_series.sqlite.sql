-- Per series: how many candles are stored, the first and the last open time, kept by the
-- database itself on every insert and delete (row triggers: SQLite has no statement
-- triggers), so the status report reads one row per series instead of counting candles.
-- An upsert that updates a stored candle fires no INSERT trigger.
CREATE TABLE IF NOT EXISTS candle_series (
    exchange  VARCHAR(32) NOT NULL,
    symbol    VARCHAR(64) NOT NULL,
    timeframe VARCHAR(8)  NOT NULL,
    candles   BIGINT      NOT NULL,
    first_ts  BIGINT,
    last_ts   BIGINT,
    PRIMARY KEY (exchange, symbol, timeframe)
);

CREATE TRIGGER IF NOT EXISTS candle_series_added AFTER INSERT ON candles BEGIN
    INSERT OR IGNORE INTO candle_series (exchange, symbol, timeframe, candles, first_ts, last_ts)
    VALUES (NEW.exchange, NEW.symbol, NEW.timeframe, 0, NEW.ts, NEW.ts);
    UPDATE candle_series SET candles = candles + 1,  -- (edges are NULL once a series is emptied)
        first_ts = min(coalesce(first_ts, NEW.ts), NEW.ts),
        last_ts = max(coalesce(last_ts, NEW.ts), NEW.ts)
    WHERE exchange = NEW.exchange AND symbol = NEW.symbol AND timeframe = NEW.timeframe;
END;

CREATE TRIGGER IF NOT EXISTS candle_series_removed AFTER DELETE ON candles BEGIN
    UPDATE candle_series SET
        candles = candles - 1,
        first_ts = CASE WHEN OLD.ts > first_ts THEN first_ts ELSE (
            SELECT ts FROM candles WHERE exchange = OLD.exchange AND symbol = OLD.symbol
            AND timeframe = OLD.timeframe ORDER BY ts LIMIT 1) END,
        last_ts = CASE WHEN OLD.ts < last_ts THEN last_ts ELSE (
            SELECT ts FROM candles WHERE exchange = OLD.exchange AND symbol = OLD.symbol
            AND timeframe = OLD.timeframe ORDER BY ts DESC LIMIT 1) END
    WHERE exchange = OLD.exchange AND symbol = OLD.symbol AND timeframe = OLD.timeframe;
END;

INSERT INTO candle_series (exchange, symbol, timeframe, candles, first_ts, last_ts)
SELECT exchange, symbol, timeframe, count(*), min(ts), max(ts) FROM candles
GROUP BY exchange, symbol, timeframe;
