-- A store made before sql/013: its months counted once, here (one pass over candles, in the
-- database), after the triggers exist (one transaction, as sql/012).
INSERT INTO candle_months (exchange, symbol, timeframe, month_ts, candles)
SELECT exchange, symbol, timeframe, candle_month(ts), count(*) FROM candles
GROUP BY 1, 2, 3, 4
ON CONFLICT (exchange, symbol, timeframe, month_ts) DO NOTHING;
