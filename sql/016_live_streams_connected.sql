-- Per streamed market: whether the connection that carries it is open and has it subscribed
-- (NULL for rows written before this file), so the status report says which streams are
-- down when one of the service's connections is.
ALTER TABLE live_streams ADD COLUMN connected BOOLEAN;
