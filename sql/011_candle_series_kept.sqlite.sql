-- candle_series (sql/010) kept on SQLite: row triggers (SQLite has no statement triggers).
-- An upsert that updates a stored candle fires no INSERT trigger.

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
