-- When a market's first candle was last looked for: with listed_at NULL, the exchange had
-- none then, so no candle of it is expected (rather than every one since the start date).
ALTER TABLE instruments ADD COLUMN listing_checked_at BIGINT;
UPDATE instruments SET listing_checked_at = updated_at WHERE listed_at IS NOT NULL;
