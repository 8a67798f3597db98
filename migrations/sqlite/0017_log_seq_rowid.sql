-- One B-tree fewer per connection-log record (issue 18). SQLite only.
--
-- `seq BIGINT PRIMARY KEY` is not SQLite's rowid alias (only the type name
-- INTEGER is): every record was written to the table and to a unique index
-- on seq besides. As INTEGER PRIMARY KEY, seq is the rowid itself, and
-- reading the log in order walks the table alone.
--
-- Tried and dropped (BENCHMARKS.md): the token tables WITHOUT ROWID. Three
-- inserts fewer per refresh grant, but their rows then land at random in
-- the hash's B-tree, which split more often: 15 % more WAL frames written.
--
-- The log is copied once: on a large log this takes as long as reading and
-- writing it (README.md, "Runbook").

CREATE TABLE events_by_rowid (
    seq INTEGER PRIMARY KEY,
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
INSERT INTO events_by_rowid (seq, time_ms, kind, outcome, email, email_normalized, account_id, partner_id,
        client_id, ip, user_agent, actor, session_hash, details, prev_hash, hash)
    SELECT seq, time_ms, kind, outcome, email, email_normalized, account_id, partner_id,
        client_id, ip, user_agent, actor, session_hash, details, prev_hash, hash
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_by_rowid RENAME TO events;
CREATE INDEX events_email_time ON events(email_normalized, time_ms);
CREATE INDEX events_account_time ON events(account_id, time_ms);
CREATE INDEX events_partner_time ON events(partner_id, time_ms);
CREATE INDEX events_kind_time ON events(kind, time_ms);
CREATE INDEX events_ip_time ON events(ip, time_ms);
CREATE INDEX events_time ON events(time_ms);
