-- Fewer B-trees written per refresh grant (issue 18). SQLite only: the
-- PostgreSQL schema already has one structure per key.
--
-- `seq BIGINT PRIMARY KEY` is not SQLite's rowid alias (only the type name
-- INTEGER is): every log record was written to the table and to a unique
-- index on seq besides. As INTEGER PRIMARY KEY, seq is the rowid itself.
-- The token tables are looked up only by their hash: WITHOUT ROWID keeps
-- each row in its primary key's B-tree, instead of a rowid table plus an
-- index on the hash. Their rows are small (a few hundred bytes), the case
-- SQLite recommends WITHOUT ROWID for.
--
-- Each table is copied once; on a large log this takes as long as reading
-- and writing it (README.md, "Upgrading").

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

CREATE TABLE access_tokens_by_hash (
    token_hash TEXT PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    scope TEXT
) WITHOUT ROWID;
INSERT INTO access_tokens_by_hash (token_hash, family_id, created_at, expires_at, scope)
    SELECT token_hash, family_id, created_at, expires_at, scope FROM access_tokens;
DROP TABLE access_tokens;
ALTER TABLE access_tokens_by_hash RENAME TO access_tokens;
CREATE INDEX access_tokens_family ON access_tokens(family_id);
CREATE INDEX access_tokens_expiry ON access_tokens(expires_at);

CREATE TABLE refresh_tokens_by_hash (
    token_hash TEXT PRIMARY KEY NOT NULL,
    family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    parent_hash TEXT
) WITHOUT ROWID;
INSERT INTO refresh_tokens_by_hash (token_hash, family_id, created_at, expires_at, used_at, parent_hash)
    SELECT token_hash, family_id, created_at, expires_at, used_at, parent_hash FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_by_hash RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
CREATE UNIQUE INDEX refresh_tokens_parent ON refresh_tokens(parent_hash);
