-- The connection log (R15): append-only, each record chained to the
-- previous one by a SHA-256 so that an edit, a deletion or a reordering is
-- detected by `coop-idp logs verify`.
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    email TEXT,
    email_normalized TEXT,
    account_id TEXT,
    partner_id TEXT,
    client_id TEXT,
    ip TEXT,
    user_agent TEXT,
    actor TEXT NOT NULL,
    session_hash TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX events_email_time ON events(email_normalized, time_ms);
CREATE INDEX events_account_time ON events(account_id, time_ms);
CREATE INDEX events_partner_time ON events(partner_id, time_ms);
CREATE INDEX events_kind_time ON events(kind, time_ms);
CREATE INDEX events_ip_time ON events(ip, time_ms);
CREATE INDEX events_time ON events(time_ms);
