//! Pending authorization requests, codes, token families and tokens.

use std::sync::LazyLock;

use super::accounts::fold_roles;
use super::accounts::{AccountRow, Person};
use super::sql::{execute, fetch, queue};
use super::sync_read::point_row;
use super::{Backend, Store, StoreResult, WriteTx};
use crate::clock::Millis;

point_row! {
    #[derive(Debug, Clone)]
    pub struct CodeRow {
        pub code_hash: String,
        pub client_id: String,
        pub account_id: String,
        pub session_id_hash: String,
        pub sid: String,
        pub redirect_uri: String,
        pub code_challenge: String,
        pub scope: String,
        pub nonce: Option<String>,
        pub claims: Option<String>,
        pub auth_time: Millis,
        pub acr: String,
        pub amr: String,
        pub created_at: Millis,
        pub expires_at: Millis,
        pub used_at: Option<Millis>,
        pub family_id: Option<String>,
    }
}

point_row! {
    #[derive(Debug, Clone)]
    pub struct FamilyRow {
        pub id: String,
        pub client_id: String,
        pub account_id: String,
        pub session_id_hash: String,
        pub sid: String,
        pub scope: String,
        pub claims: Option<String>,
        pub auth_time: Millis,
        pub acr: String,
        pub amr: String,
        pub created_at: Millis,
        pub expires_at: Millis,
        pub revoked_at: Option<Millis>,
    }
}

point_row! {
    /// A token found by its hash, with the family it belongs to.
    #[derive(Debug, Clone)]
    pub struct TokenLookup {
        pub token_hash: String,
        pub token_created_at: Millis,
        pub token_expires_at: Millis,
        pub used_at: Option<Millis>,
        #[flatten]
        pub family: FamilyRow,
        pub account_state: String,
    }
}

/// A token, its family, and the account the family belongs to with its
/// roles, read in one statement for the token and userinfo endpoints.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub token: TokenLookup,
    /// `password_hash` is not read (`None`).
    pub account: AccountRow,
    pub roles: Vec<String>,
}

point_row! {
    struct TokenGrantRow {
        #[flatten]
        token: TokenLookup,
        #[flatten]
        account: GrantAccount,
    }
}

point_row! {
    /// The account columns of a grant read (`GRANT_ACCOUNT_COLUMNS`), one role
    /// per row; all NULL when the account is gone (a code's outer join).
    struct GrantAccount {
        account_state: Option<String>,
        account_email: Option<String>,
        account_email_normalized: Option<String>,
        account_given_name: Option<String>,
        account_family_name: Option<String>,
        account_function: Option<String>,
        account_partner_id: Option<String>,
        account_partner_name: Option<String>,
        account_created_at: Option<Millis>,
        account_updated_at: Option<Millis>,
        role: Option<String>,
    }
}

impl GrantAccount {
    /// The account (`None` when it is gone; `password_hash` not read) and
    /// this row's role.
    fn split(self, account_id: &str) -> (Option<AccountRow>, Option<String>) {
        let account = match (self.account_state, self.account_created_at, self.account_updated_at) {
            (Some(state), Some(created_at), Some(updated_at)) => Some(AccountRow {
                id: account_id.to_string(),
                email_normalized: self.account_email_normalized.unwrap_or_default(),
                person: Person {
                    email: self.account_email.unwrap_or_default(),
                    given_name: self.account_given_name.unwrap_or_default(),
                    family_name: self.account_family_name.unwrap_or_default(),
                    function: self.account_function.unwrap_or_default(),
                    partner_id: self.account_partner_id,
                    partner_name: self.account_partner_name,
                },
                state,
                password_hash: None,
                created_at,
                updated_at,
            }),
            _ => None,
        };
        (account, self.role)
    }
}

impl TokenGrantRow {
    fn split(self) -> ((TokenLookup, Option<AccountRow>), Option<String>) {
        let (account, role) = self.account.split(&self.token.family.account_id);
        ((self.token, account), role)
    }
}

const GRANT_ACCOUNT_COLUMNS: &str = "a.state AS account_state, a.email AS account_email, \
     a.email_normalized AS account_email_normalized, a.given_name AS account_given_name, \
     a.family_name AS account_family_name, a.function AS account_function, a.partner_id AS account_partner_id, \
     p.name AS account_partner_name, a.created_at AS account_created_at, a.updated_at AS account_updated_at, r.role";

const GRANT_ACCOUNT_JOINS: &str = "JOIN token_families f ON f.id = t.family_id JOIN accounts a ON a.id = f.account_id \
     LEFT JOIN partners p ON p.id = a.partner_id LEFT JOIN account_roles r ON r.account_id = a.id \
     WHERE t.token_hash = $1 ORDER BY r.role";

static ACCESS_GRANT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.token_hash, t.created_at AS token_created_at, t.expires_at AS token_expires_at, \
         CAST(NULL AS BIGINT) AS used_at, {}, {GRANT_ACCOUNT_COLUMNS} FROM access_tokens t {GRANT_ACCOUNT_JOINS}",
        // The token's own scope, narrower than the family's after a refresh.
        FAMILY_COLUMNS.replace("f.scope", "COALESCE(t.scope, f.scope) AS scope")
    )
});

static REFRESH_GRANT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.token_hash, t.created_at AS token_created_at, t.expires_at AS token_expires_at, \
         t.used_at, {FAMILY_COLUMNS}, {GRANT_ACCOUNT_COLUMNS} FROM refresh_tokens t {GRANT_ACCOUNT_JOINS}"
    )
});

type CodeAndSession = (CodeRow, Option<SessionTimes>);

/// A code, its session's times, and its account with its roles.
pub type CodeGrant = (CodeRow, Option<SessionTimes>, Option<(AccountRow, Vec<String>)>);

point_row! {
    struct CodeGrantRow {
        #[flatten]
        code: CodeRow,
        #[flatten]
        session: CodeSessionColumns,
        #[flatten]
        account: GrantAccount,
    }
}

/// The times of a code's session, read with the code: a code dies with its
/// session, and the token endpoint checks it without a second read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimes {
    pub last_seen_at: Millis,
    pub absolute_expires_at: Millis,
    pub ended_at: Option<Millis>,
}

point_row! {
    /// Outer-joined: all `None` when the session is gone.
    struct CodeSessionColumns {
        session_last_seen_at: Option<Millis>,
        session_absolute_expires_at: Option<Millis>,
        session_ended_at: Option<Millis>,
    }
}

impl CodeSessionColumns {
    fn times(&self) -> Option<SessionTimes> {
        Some(SessionTimes {
            last_seen_at: self.session_last_seen_at?,
            absolute_expires_at: self.session_absolute_expires_at?,
            ended_at: self.session_ended_at,
        })
    }
}

impl CodeGrantRow {
    fn split(self) -> ((CodeAndSession, Option<AccountRow>), Option<String>) {
        let (account, role) = self.account.split(&self.code.account_id);
        let session = self.session.times();
        (((self.code, session), account), role)
    }
}

static CODE_GRANT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {CODE_COLUMNS}, s.last_seen_at AS session_last_seen_at, \
         s.absolute_expires_at AS session_absolute_expires_at, s.ended_at AS session_ended_at, \
         {GRANT_ACCOUNT_COLUMNS} FROM authorization_codes c \
         LEFT JOIN sessions s ON s.id_hash = c.session_id_hash \
         LEFT JOIN accounts a ON a.id = c.account_id LEFT JOIN partners p ON p.id = a.partner_id \
         LEFT JOIN account_roles r ON r.account_id = a.id WHERE c.code_hash = $1 ORDER BY r.role"
    )
});

const CODE_COLUMNS: &str = "c.code_hash, c.client_id, c.account_id, c.session_id_hash, c.sid, c.redirect_uri, \
     c.code_challenge, c.scope, c.nonce, c.claims, c.auth_time, c.acr, c.amr, c.created_at, c.expires_at, \
     c.used_at, c.family_id";

const FAMILY_COLUMNS: &str = "f.id, f.client_id, f.account_id, f.session_id_hash, f.sid, f.scope, f.claims, \
     f.auth_time, f.acr, f.amr, f.created_at, f.expires_at, f.revoked_at";

impl Store {
    pub async fn auth_request(&self, id_hash: &str, now: Millis) -> StoreResult<Option<(String, String)>> {
        let row: Option<(String, String)> = fetch!(
            fetch_optional(&self.pool),
            "SELECT client_id, params FROM auth_requests WHERE id_hash = $1 AND expires_at > $2";
            id_hash, now
        );
        Ok(row)
    }

    pub async fn code(&self, code_hash: &str) -> StoreResult<Option<CodeRow>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT code_hash, client_id, account_id, session_id_hash, sid, redirect_uri, code_challenge, scope, \
             nonce, claims, auth_time, acr, amr, created_at, expires_at, used_at, family_id \
             FROM authorization_codes WHERE code_hash = $1";
            code_hash
        ))
    }

    pub async fn access_token(&self, token_hash: &str) -> StoreResult<Option<TokenLookup>> {
        let sql = format!(
            "SELECT t.token_hash, t.created_at AS token_created_at, t.expires_at AS token_expires_at, \
             NULL AS used_at, {}, a.state AS account_state \
             FROM access_tokens t JOIN token_families f ON f.id = t.family_id \
             JOIN accounts a ON a.id = f.account_id WHERE t.token_hash = $1",
            // The token's own scope, narrower than the family's after a refresh.
            FAMILY_COLUMNS.replace("f.scope", "COALESCE(t.scope, f.scope) AS scope")
        );
        Ok(fetch!(fetch_optional(&self.pool), &sql; token_hash))
    }

    pub async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<TokenLookup>> {
        let sql = format!(
            "SELECT t.token_hash, t.created_at AS token_created_at, t.expires_at AS token_expires_at, \
             t.used_at, {FAMILY_COLUMNS}, a.state AS account_state \
             FROM refresh_tokens t JOIN token_families f ON f.id = t.family_id \
             JOIN accounts a ON a.id = f.account_id WHERE t.token_hash = $1"
        );
        Ok(fetch!(fetch_optional(&self.pool), &sql; token_hash))
    }

    /// A code with its account (`None` if gone; `password_hash` not read)
    /// and the account's roles, in one statement.
    #[allow(clippy::type_complexity)]
    /// A code with its session's times (`None` when the session is gone)
    /// and its account with its roles: one statement.
    pub async fn code_grant(&self, code_hash: &str) -> StoreResult<Option<CodeGrant>> {
        let rows: Vec<CodeGrantRow> = self.point_read(&CODE_GRANT_SQL, code_hash).await?;
        Ok(fold_roles(rows.into_iter().map(CodeGrantRow::split))
            .map(|(((code, session), account), roles)| (code, session, account.map(|a| (a, roles)))))
    }

    /// An access token with its family, account and roles (one statement).
    pub async fn access_grant(&self, token_hash: &str) -> StoreResult<Option<TokenGrant>> {
        self.token_grant(&ACCESS_GRANT_SQL, token_hash).await
    }

    /// A refresh token with its family, account and roles (one statement).
    pub async fn refresh_grant(&self, token_hash: &str) -> StoreResult<Option<TokenGrant>> {
        self.token_grant(&REFRESH_GRANT_SQL, token_hash).await
    }

    async fn token_grant(&self, sql: &str, token_hash: &str) -> StoreResult<Option<TokenGrant>> {
        let rows: Vec<TokenGrantRow> = self.point_read(sql, token_hash).await?;
        // The account is joined, not outer-joined: it is always there.
        Ok(fold_roles(rows.into_iter().map(TokenGrantRow::split))
            .and_then(|((token, account), roles)| account.map(|account| TokenGrant { token, account, roles })))
    }
}

/// Parks an authorization request and leaves `source` at most `keep` live
/// ones: this one and its newest others; the oldest, and any expired, go.
/// Returns nothing to read, so on SQLite it rides with the group commit,
/// whose transactions never overlap. On PostgreSQL, where two transactions
/// reading under READ COMMITTED would each see room for one more, a lock on
/// the source (across instances: it lives in the database) makes them take
/// turns.
#[allow(clippy::too_many_arguments)]
pub async fn park_auth_request(
    tx: &mut WriteTx,
    id_hash: &str,
    client_id: &str,
    source: &str,
    params: &str,
    now: Millis,
    expires_at: Millis,
    keep: i64,
) -> StoreResult<()> {
    if tx.backend == super::Backend::Postgres {
        execute!(tx, "SELECT pg_advisory_xact_lock(7215003, hashtext($1))"; source);
    }
    queue!(
        tx,
        "DELETE FROM auth_requests WHERE source = $1 AND (expires_at <= $2 OR id_hash NOT IN \
         (SELECT id_hash FROM auth_requests WHERE source = $1 AND expires_at > $2 \
         ORDER BY created_at DESC, id_hash DESC LIMIT $3))";
        source, now, (keep - 1).max(0)
    );
    queue!(
        tx,
        "INSERT INTO auth_requests (id_hash, client_id, source, params, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)";
        id_hash, client_id, source, params, now, expires_at
    );
    Ok(())
}

pub async fn delete_auth_request(tx: &mut WriteTx, id_hash: &str) -> StoreResult<()> {
    execute!(tx, "DELETE FROM auth_requests WHERE id_hash = $1"; id_hash);
    Ok(())
}

pub async fn insert_code(tx: &mut WriteTx, c: &CodeRow) -> StoreResult<()> {
    queue!(
        tx,
        "INSERT INTO authorization_codes (code_hash, client_id, account_id, session_id_hash, sid, redirect_uri, \
         code_challenge, scope, nonce, claims, auth_time, acr, amr, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
        &c.code_hash, &c.client_id, &c.account_id, &c.session_id_hash, &c.sid, &c.redirect_uri, &c.code_challenge,
        &c.scope, &c.nonce, &c.claims, c.auth_time, &c.acr, &c.amr, c.created_at, c.expires_at
    );
    Ok(())
}

/// Deletes the codes of a session that were never exchanged.
pub fn delete_unredeemed_codes_of_session(tx: &mut WriteTx, session_id_hash: &str) {
    queue!(tx, "DELETE FROM authorization_codes WHERE session_id_hash = $1 AND used_at IS NULL"; session_id_hash);
}

/// Deletes the codes of every session of an account that were never exchanged.
pub fn delete_unredeemed_codes_of_account(tx: &mut WriteTx, account_id: &str) {
    queue!(tx, "DELETE FROM authorization_codes WHERE account_id = $1 AND used_at IS NULL"; account_id);
}

/// Marks a code used and links it to the family it produced. Single use
/// itself is the family's unique `code_hash` (see `insert_family`).
pub fn consume_code(tx: &mut WriteTx, code_hash: &str, family_id: &str, now: Millis) {
    tx.queue(
        "UPDATE authorization_codes SET used_at = $1, family_id = $2 WHERE code_hash = $3 AND used_at IS NULL",
        vec![now.into(), family_id.into(), code_hash.into()],
    );
}

/// Inserts a token family. Its session is read from the live session in the
/// same statement, so a session that ended between the code's read and
/// this commit leaves the column NULL, which NOT NULL refuses
/// (`StoreError::is_session_gone`): a code never outlives its session (R4,
/// R12). On PostgreSQL `FOR SHARE` makes the statement wait for a session
/// end in progress and read its outcome; SQLite has one writer at a time.
pub async fn insert_family(tx: &mut WriteTx, f: &FamilyRow, from_code: Option<&str>) -> StoreResult<()> {
    macro_rules! insert_family_sql {
        ($live_session:literal) => {
            concat!(
                "INSERT INTO token_families (id, client_id, account_id, session_id_hash, sid, scope, claims, \
                 auth_time, acr, amr, created_at, expires_at, code_hash) VALUES ($1, $2, $3, ",
                "(SELECT id_hash FROM sessions WHERE id_hash = $4 AND ended_at IS NULL",
                $live_session,
                "), $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )
        };
    }
    let sql = match tx.backend {
        Backend::Sqlite => insert_family_sql!(""),
        Backend::Postgres => insert_family_sql!(" FOR SHARE"),
    };
    tx.queue(
        sql,
        vec![
            (&f.id).into(),
            (&f.client_id).into(),
            (&f.account_id).into(),
            (&f.session_id_hash).into(),
            (&f.sid).into(),
            (&f.scope).into(),
            (&f.claims).into(),
            f.auth_time.into(),
            (&f.acr).into(),
            (&f.amr).into(),
            f.created_at.into(),
            f.expires_at.into(),
            from_code.map(str::to_string).into(),
        ],
    );
    Ok(())
}

pub async fn insert_access_token(
    tx: &mut WriteTx,
    token_hash: &str,
    family_id: &str,
    scope: &str,
    now: Millis,
    expires_at: Millis,
) -> StoreResult<()> {
    tx.queue(
        "INSERT INTO access_tokens (token_hash, family_id, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        vec![token_hash.into(), family_id.into(), scope.into(), now.into(), expires_at.into()],
    );
    Ok(())
}

pub async fn insert_refresh_token(
    tx: &mut WriteTx,
    token_hash: &str,
    family_id: &str,
    now: Millis,
    expires_at: Millis,
    replaces: Option<&str>,
) -> StoreResult<()> {
    tx.queue(
        "INSERT INTO refresh_tokens (token_hash, family_id, created_at, expires_at, parent_hash) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![token_hash.into(), family_id.into(), now.into(), expires_at.into(), replaces.map(str::to_string).into()],
    );
    Ok(())
}

/// Rotation: marks the presented token used. Single use itself is the
/// successor's unique `parent_hash` (see `insert_refresh_token`).
pub fn consume_refresh_token(tx: &mut WriteTx, token_hash: &str, now: Millis) {
    tx.queue(
        "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        vec![now.into(), token_hash.into()],
    );
}

/// Revokes a family and deletes its access tokens, so that they stop working
/// at once. Returns whether the family was live.
pub async fn revoke_family(tx: &mut WriteTx, family_id: &str, reason: &str, now: Millis) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL";
        now, reason, family_id
    );
    execute!(tx, "DELETE FROM access_tokens WHERE family_id = $1"; family_id);
    Ok(done > 0)
}

pub async fn revoke_families_of_session(
    tx: &mut WriteTx,
    session_id_hash: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<()> {
    execute!(
        tx,
        "DELETE FROM access_tokens WHERE family_id IN (SELECT id FROM token_families WHERE session_id_hash = $1)";
        session_id_hash
    );
    execute!(
        tx,
        "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 WHERE session_id_hash = $3 AND revoked_at IS NULL";
        now, reason, session_id_hash
    );
    Ok(())
}

pub async fn delete_access_token(tx: &mut WriteTx, token_hash: &str) -> StoreResult<()> {
    execute!(tx, "DELETE FROM access_tokens WHERE token_hash = $1"; token_hash);
    Ok(())
}

/// Remembers a client-assertion `jti` until it expires; false on replay.
pub async fn remember_assertion_jti(
    tx: &mut WriteTx,
    client_id: &str,
    jti: &str,
    expires_at: Millis,
    now: Millis,
) -> StoreResult<bool> {
    execute!(tx, "DELETE FROM client_assertion_jtis WHERE expires_at < $1"; now);
    let done = execute!(
        tx,
        "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        client_id, jti, expires_at
    );
    Ok(done == 1)
}

/// Deletes what has expired; run by a background job.
pub async fn delete_expired(tx: &mut WriteTx, now: Millis) -> StoreResult<u64> {
    let mut n = 0;
    for sql in [
        "DELETE FROM auth_requests WHERE expires_at < $1",
        "DELETE FROM access_tokens WHERE expires_at < $1",
        // Used codes are kept a little so that a replay is recognised and punished.
        "DELETE FROM authorization_codes WHERE expires_at < $1 - 600000",
        "DELETE FROM client_assertion_jtis WHERE expires_at < $1",
    ] {
        n += execute!(tx, sql; now);
    }
    Ok(n)
}

/// Revokes every token family of an account (password reset, closure).
pub async fn revoke_families_of_account(
    tx: &mut WriteTx,
    account_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<()> {
    queue!(
        tx,
        "DELETE FROM access_tokens WHERE family_id IN (SELECT id FROM token_families WHERE account_id = $1)";
        account_id
    );
    queue!(
        tx,
        "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 WHERE account_id = $3 AND revoked_at IS NULL";
        now, reason, account_id
    );
    Ok(())
}
