-- candle_months (sql/013) kept on SQLite: row triggers, as sql/011 keeps candle_series. An
-- upsert that updates a stored candle fires no INSERT trigger. A month emptied keeps its row
-- at 0. The month of an open time: strftime's 'start of month' of its second.

CREATE TRIGGER IF NOT EXISTS candle_months_added AFTER INSERT ON candles BEGIN
    INSERT OR IGNORE INTO candle_months (exchange, symbol, timeframe, month_ts, candles)
    VALUES (NEW.exchange, NEW.symbol, NEW.timeframe,
            CAST(strftime('%s', NEW.ts / 1000, 'unixepoch', 'start of month') AS INTEGER) * 1000, 0);
    UPDATE candle_months SET candles = candles + 1
    WHERE exchange = NEW.exchange AND symbol = NEW.symbol AND timeframe = NEW.timeframe
      AND month_ts = CAST(strftime('%s', NEW.ts / 1000, 'unixepoch', 'start of month') AS INTEGER) * 1000;
END;

CREATE TRIGGER IF NOT EXISTS candle_months_removed AFTER DELETE ON candles BEGIN
    UPDATE candle_months SET candles = candles - 1
    WHERE exchange = OLD.exchange AND symbol = OLD.symbol AND timeframe = OLD.timeframe
      AND month_ts = CAST(strftime('%s', OLD.ts / 1000, 'unixepoch', 'start of month') AS INTEGER) * 1000;
END;
