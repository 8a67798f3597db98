-- Passkey ceremonies are bounded (README "Rules and limits"): at most a few
-- live per account and purpose, and per source (an IPv4 address or an
-- IPv6 /64), the oldest dropped first; `source` and the indexes below serve
-- the count and the delete. A ceremony of the sign-in page's passkey
-- autofill (conditional mediation) is tied to no account until the browser
-- answers: `account_id` becomes nullable. Ceremonies in flight are kept
-- (without a source: they expire within minutes).
ALTER TABLE passkey_ceremonies ALTER COLUMN account_id DROP NOT NULL;
ALTER TABLE passkey_ceremonies ADD COLUMN source TEXT;
CREATE INDEX passkey_ceremonies_account ON passkey_ceremonies (account_id, purpose, created_at);
CREATE INDEX passkey_ceremonies_source ON passkey_ceremonies (source, created_at);
