-- Passkeys (issue 17, R18): WebAuthn credentials registered by an agent (an
-- opt-in way to sign in without a password) or an administrator (a second
-- factor). Only public keys are kept: `passkey` is the credential as
-- webauthn-rs serialises it (public key, algorithm, counter, flags);
-- `credential_id` (base64url) is unique across accounts, as WebAuthn asks.
-- `counter` repeats the signature counter of `passkey` for queries and for
-- the log of a counter that went backwards (a possible clone).
CREATE TABLE passkeys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL UNIQUE,
    passkey TEXT NOT NULL,
    name TEXT NOT NULL,
    counter BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_account ON passkeys (account_id);

-- A registration or an authentication in progress: the challenge and what
-- the server expects, between the page asking the browser and the browser's
-- answer (any instance may take either request). Behind a random cookie
-- whose hash is the key, for a few minutes, consumed once. `purpose` is
-- `register`, `signin` or `second_factor`.
CREATE TABLE passkey_ceremonies (
    id_hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX passkey_ceremonies_expiry ON passkey_ceremonies (expires_at);
