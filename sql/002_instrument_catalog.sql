-- The instrument catalog: what each exchange lists, refreshed by the instruments asset.
ALTER TABLE instruments ADD COLUMN base VARCHAR(32);
ALTER TABLE instruments ADD COLUMN quote VARCHAR(32);
ALTER TABLE instruments ADD COLUMN settle VARCHAR(32);
ALTER TABLE instruments ADD COLUMN expiry BIGINT;              -- dated futures: delivery, epoch ms
ALTER TABLE instruments ADD COLUMN tick_size DOUBLE PRECISION; -- price precision
ALTER TABLE instruments ADD COLUMN lot_size DOUBLE PRECISION;  -- amount precision
ALTER TABLE instruments ADD COLUMN delisted_at BIGINT;         -- after the last candle, epoch ms
ALTER TABLE instruments ADD COLUMN first_seen_at BIGINT;
