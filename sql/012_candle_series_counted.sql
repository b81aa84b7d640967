-- A store made before sql/010: its series counted once, here (one pass over candles), after
-- the triggers exist (all files of a migration apply in one transaction; on PostgreSQL
-- CREATE TRIGGER has held writers off since, so no write falls between the two).
INSERT INTO candle_series (exchange, symbol, timeframe, candles, first_ts, last_ts)
SELECT exchange, symbol, timeframe, count(*), min(ts), max(ts) FROM candles
GROUP BY exchange, symbol, timeframe
ON CONFLICT (exchange, symbol, timeframe) DO NOTHING;
