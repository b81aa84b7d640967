-- Alerts: incidents as recorded (what was sent, and when), the messages waiting for delivery
-- (the outbox: a webhook that failed is tried again on later ticks), and events that runs
-- report (a ban, repeated rate limits). Webhook URLs are secrets: only target names are
-- stored. Times are epoch ms.
CREATE TABLE IF NOT EXISTS alert_incidents (
    incident_key  VARCHAR(512) PRIMARY KEY,
    kind          VARCHAR(32)  NOT NULL,
    summary       TEXT         NOT NULL,
    opened_at     BIGINT       NOT NULL,
    last_sent_at  BIGINT       NOT NULL,
    resolved_at   BIGINT                   -- NULL while open
);

CREATE TABLE IF NOT EXISTS alert_outbox (
    id            VARCHAR(36)  PRIMARY KEY,
    target        VARCHAR(64)  NOT NULL,   -- the target's name, never its URL
    kind          VARCHAR(32)  NOT NULL,
    status        VARCHAR(16)  NOT NULL,   -- firing, resolved, test
    payload       TEXT         NOT NULL,   -- the JSON body
    created_at    BIGINT       NOT NULL,
    attempts      INTEGER      NOT NULL,
    next_try_at   BIGINT       NOT NULL,
    delivered_at  BIGINT,
    last_error    VARCHAR(512)
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (delivered_at, next_try_at);

CREATE TABLE IF NOT EXISTS alert_events (
    id            VARCHAR(36)  PRIMARY KEY,
    kind          VARCHAR(32)  NOT NULL,   -- ban, rate_limited
    exchange      VARCHAR(32)  NOT NULL,
    run_id        VARCHAR(64)  NOT NULL,
    detail        TEXT         NOT NULL,
    at            BIGINT       NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_at ON alert_events (at);
