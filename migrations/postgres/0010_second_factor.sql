-- Second factor (R18): TOTP (RFC 6238) for administrators, optional for
-- agents. The shared secret is needed in clear to compute codes, so it is
-- kept here only, never logged nor shown again after enrolment; `last_step`
-- is the last 30-second step accepted, so that each code is used once.
CREATE TABLE account_totp (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    last_step BIGINT NOT NULL,
    enrolled_at BIGINT NOT NULL
);

-- One-time recovery codes: 128 random bits each, stored as SHA-256 only.
CREATE TABLE totp_recovery_codes (
    code_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX totp_recovery_codes_account ON totp_recovery_codes (account_id);

-- Between a correct password and the second factor: a short-lived,
-- single-use state behind a cookie whose hash is the key. `enrol_secret`
-- holds the candidate secret while an enrolment awaits its first code;
-- `request` is the parked authorization request to resume.
CREATE TABLE pending_second_factor (
    id_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    request TEXT,
    enrol_secret TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX pending_second_factor_expiry ON pending_second_factor (expires_at);

-- Console (issue 6): an annex 1 uploaded for a dry run, kept until the
-- manager applies it ("Appliquer") or for 30 minutes, behind a single-use
-- handle whose hash is the key. The file travels as base64 text, the same
-- on both databases.
CREATE TABLE console_uploads (
    handle_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    partner_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    transmitted TEXT,
    content TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
