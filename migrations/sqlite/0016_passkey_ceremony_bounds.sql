-- Passkey ceremonies are bounded (README "Rules and limits"): at most a few
-- live per account and purpose, and per source (an IPv4 address or an
-- IPv6 /64), the oldest dropped first; `source` and the indexes below serve
-- the count and the delete. A ceremony of the sign-in page's passkey
-- autofill (conditional mediation) is tied to no account until the browser
-- answers: `account_id` becomes nullable. SQLite cannot drop a NOT NULL
-- constraint in place, hence the rebuild; no table references this one.
-- Ceremonies in flight are kept (without a source: they expire within
-- minutes).
CREATE TABLE passkey_ceremonies_new (
    id_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    source TEXT,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO passkey_ceremonies_new (id_hash, purpose, account_id, source, state, expires_at, created_at)
    SELECT id_hash, purpose, account_id, NULL, state, expires_at, created_at FROM passkey_ceremonies;
DROP TABLE passkey_ceremonies;
ALTER TABLE passkey_ceremonies_new RENAME TO passkey_ceremonies;
CREATE INDEX passkey_ceremonies_expiry ON passkey_ceremonies (expires_at);
CREATE INDEX passkey_ceremonies_account ON passkey_ceremonies (account_id, purpose, created_at);
CREATE INDEX passkey_ceremonies_source ON passkey_ceremonies (source, created_at);
