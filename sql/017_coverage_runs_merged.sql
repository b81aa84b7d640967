-- Before this file the live service wrote a fetch_coverage row per closed candle (a row per
-- candle of every series kept live); now a close extends its series' row. The rows written
-- before are merged here, once, in the database: each unbroken run of a series' rows (each
-- beginning where the one before ends, of one source, none an archive file's) becomes one
-- row with their candles summed and the newest fetched_at. NULL source is REST (sql/009).
CREATE TEMPORARY TABLE coverage_runs AS
SELECT exchange, symbol, timeframe, min(start_ts) AS start_ts, max(end_ts) AS end_ts,
       sum(candles) AS candles, max(fetched_at) AS fetched_at, max(source) AS source
FROM (
    SELECT exchange, symbol, timeframe, start_ts, end_ts, candles, fetched_at, source,
           sum(brk) OVER (PARTITION BY exchange, symbol, timeframe ORDER BY start_ts
                          ROWS UNBOUNDED PRECEDING) AS run
    FROM (
        SELECT exchange, symbol, timeframe, start_ts, end_ts, candles, fetched_at, source,
               CASE WHEN checksum IS NULL AND lag(checksum) OVER w IS NULL
                         AND lag(end_ts) OVER w = start_ts
                         AND coalesce(lag(source) OVER w, 'rest') = coalesce(source, 'rest')
                    THEN 0 ELSE 1 END AS brk
        FROM fetch_coverage
        WINDOW w AS (PARTITION BY exchange, symbol, timeframe ORDER BY start_ts)
    ) AS marked
) AS runs
GROUP BY exchange, symbol, timeframe, run
HAVING count(*) > 1;

CREATE INDEX coverage_runs_key ON coverage_runs (exchange, symbol, timeframe, start_ts);

DELETE FROM fetch_coverage WHERE checksum IS NULL AND EXISTS (
    SELECT 1 FROM coverage_runs r
    WHERE r.exchange = fetch_coverage.exchange AND r.symbol = fetch_coverage.symbol
      AND r.timeframe = fetch_coverage.timeframe
      AND r.start_ts <= fetch_coverage.start_ts AND fetch_coverage.end_ts <= r.end_ts
      AND coalesce(r.source, 'rest') = coalesce(fetch_coverage.source, 'rest')
);

INSERT INTO fetch_coverage
    (exchange, symbol, timeframe, start_ts, end_ts, candles, fetched_at, source, checksum)
SELECT exchange, symbol, timeframe, start_ts, end_ts, candles, fetched_at, source, NULL
FROM coverage_runs;

DROP TABLE coverage_runs;
