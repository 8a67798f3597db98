-- Failed sign-in counters (R6, CNIL 2022-100), keyed by "email:<normalised>"
-- (whether or not the account exists, so that throttling tells nothing) and
-- by "ip:<address>".
CREATE TABLE signin_throttle (
    key TEXT PRIMARY KEY,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    window_start BIGINT NOT NULL,
    window_failures BIGINT NOT NULL DEFAULT 0,
    blocked_until BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX signin_throttle_updated ON signin_throttle(updated_at);
