-- candle_series (sql/010) kept on PostgreSQL: statement triggers over the rows a statement
-- added or removed.

-- Rows added by an INSERT or COPY (an upsert's rows that updated a candle are not in
-- `added`). Series in key order: concurrent writers lock their rows in one order.
CREATE OR REPLACE FUNCTION candle_series_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO candle_series AS s (exchange, symbol, timeframe, candles, first_ts, last_ts)
    SELECT exchange, symbol, timeframe, count(*), min(ts), max(ts) FROM added
    GROUP BY exchange, symbol, timeframe ORDER BY exchange, symbol, timeframe
    ON CONFLICT (exchange, symbol, timeframe) DO UPDATE SET
        candles = s.candles + EXCLUDED.candles,
        first_ts = LEAST(s.first_ts, EXCLUDED.first_ts),
        last_ts = GREATEST(s.last_ts, EXCLUDED.last_ts);
    RETURN NULL;
END $$;

-- Rows deleted: the count goes down, and a series whose first or last candle went gets its
-- new edges from the primary key (an index lookup each).
CREATE OR REPLACE FUNCTION candle_series_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE candle_series AS s SET
        candles = s.candles - r.n,
        first_ts = CASE WHEN r.lo > s.first_ts THEN s.first_ts ELSE (
            SELECT c.ts FROM candles c WHERE c.exchange = s.exchange AND c.symbol = s.symbol
            AND c.timeframe = s.timeframe ORDER BY c.ts LIMIT 1) END,
        last_ts = CASE WHEN r.hi < s.last_ts THEN s.last_ts ELSE (
            SELECT c.ts FROM candles c WHERE c.exchange = s.exchange AND c.symbol = s.symbol
            AND c.timeframe = s.timeframe ORDER BY c.ts DESC LIMIT 1) END
    FROM (SELECT exchange, symbol, timeframe, count(*) AS n, min(ts) AS lo, max(ts) AS hi
          FROM removed GROUP BY exchange, symbol, timeframe) AS r
    WHERE s.exchange = r.exchange AND s.symbol = r.symbol AND s.timeframe = r.timeframe;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION candle_series_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM candle_series;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER candle_series_added AFTER INSERT ON candles
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION candle_series_added();
CREATE OR REPLACE TRIGGER candle_series_removed AFTER DELETE ON candles
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION candle_series_removed();
CREATE OR REPLACE TRIGGER candle_series_truncated AFTER TRUNCATE ON candles
    FOR EACH STATEMENT EXECUTE FUNCTION candle_series_truncated();
