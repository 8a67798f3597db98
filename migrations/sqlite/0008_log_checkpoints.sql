-- Retention (R19, R20) and tamper evidence of the connection log's tail.
--
-- log_checkpoints: the chain head (seq, hash, time) signed as a compact JWS
-- with the server's signing key, periodically and at every purge, so that a
-- deleted tail or a rewritten chain is detected by `coop-idp logs verify`.
CREATE TABLE log_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    kid TEXT NOT NULL,
    jws TEXT NOT NULL
);

-- Jobs that must run once across instances sharing a database take a lease
-- by compare-and-set; an expired lease may be taken by anyone.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);

-- Ranges of connection-log records removed by purges: the first remaining
-- record's prev_hash is the last removed record's hash.
CREATE TABLE log_purges (
    up_to_seq BIGINT PRIMARY KEY,
    last_hash TEXT NOT NULL,
    removed BIGINT NOT NULL,
    purged_at BIGINT NOT NULL
);

-- What each purge destroyed, per partner and account, for the attestations
-- of destruction: counts and ids, never the data; a person is found again by
-- a keyed hash of the normalised email.
CREATE TABLE destructions (
    id TEXT PRIMARY KEY,
    destroyed_at BIGINT NOT NULL,
    category TEXT NOT NULL,
    partner_id TEXT,
    account_id TEXT,
    email_hmac TEXT,
    details TEXT NOT NULL,
    purge_seq BIGINT NOT NULL
);
CREATE INDEX destructions_partner ON destructions(partner_id, destroyed_at);
CREATE INDEX destructions_email ON destructions(email_hmac);

-- When the personal data of a closed account's user account was destroyed
-- (6 months after the end of the authorisation); the habilitation record
-- stays until 2 years after the closure request.
ALTER TABLE accounts ADD COLUMN data_destroyed_at BIGINT;

-- The minute job looks for open sessions past their timeouts.
CREATE INDEX sessions_open ON sessions(last_seen_at, absolute_expires_at) WHERE ended_at IS NULL;
