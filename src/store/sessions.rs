//! Sessions and the clients each one signed in to.

use super::sql::{execute, fetch, fetch_scalar, insert, queue};
use super::sync_read::point_row;
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

point_row! {
    #[derive(Debug, Clone)]
    pub struct SessionRow {
        pub id_hash: String,
        pub sid: String,
        pub account_id: String,
        pub auth_time: Millis,
        pub amr: String,
        pub acr: String,
        pub created_at: Millis,
        pub last_seen_at: Millis,
        pub absolute_expires_at: Millis,
        pub ended_at: Option<Millis>,
    }
}

pub struct NewSession<'a> {
    pub id_hash: &'a str,
    pub sid: &'a str,
    pub account_id: &'a str,
    pub auth_time: Millis,
    pub amr: &'a str,
    pub acr: &'a str,
    pub absolute_expires_at: Millis,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

const SESSION_COLUMNS: &str =
    "id_hash, sid, account_id, auth_time, amr, acr, created_at, last_seen_at, absolute_expires_at, ended_at";

static SESSION_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1"));

impl Store {
    pub async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>> {
        Ok(self.point_read(&SESSION_SQL, id_hash).await?.into_iter().next())
    }

    /// Live sessions of an account (not ended; expiry is the caller's rule).
    pub async fn open_sessions_of_account(&self, account_id: &str) -> StoreResult<Vec<SessionRow>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE account_id = $1 AND ended_at IS NULL");
        Ok(fetch!(fetch_all(&self.pool), &sql; account_id))
    }

    pub async fn session_client_ids(&self, id_hash: &str) -> StoreResult<Vec<String>> {
        let sql = "SELECT client_id FROM session_clients WHERE session_id_hash = $1 ORDER BY client_id";
        Ok(fetch_scalar!(fetch_all(&self.pool), sql; id_hash))
    }
}

pub async fn insert(tx: &mut WriteTx, s: &NewSession<'_>, now: Millis) -> StoreResult<()> {
    insert!(
        tx, "session",
        "INSERT INTO sessions (id_hash, sid, account_id, auth_time, amr, acr, created_at, last_seen_at, \
         absolute_expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)";
        s.id_hash, s.sid, s.account_id, s.auth_time, s.amr, s.acr, now, s.absolute_expires_at, s.ip, s.user_agent
    );
    Ok(())
}

pub async fn touch(tx: &mut WriteTx, id_hash: &str, now: Millis) -> StoreResult<()> {
    queue!(tx, "UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND ended_at IS NULL"; now, id_hash);
    Ok(())
}

/// Ends a session; false when it had already ended.
pub async fn end(tx: &mut WriteTx, id_hash: &str, reason: &str, now: Millis) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id_hash = $3 AND ended_at IS NULL";
        now, reason, id_hash
    );
    Ok(done > 0)
}

pub async fn add_client(tx: &mut WriteTx, id_hash: &str, client_id: &str) -> StoreResult<()> {
    queue!(
        tx,
        "INSERT INTO session_clients (session_id_hash, client_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        id_hash, client_id
    );
    Ok(())
}

/// Ends every session of an account inside the caller's transaction;
/// returns (session id hash, sid) of each, for the back-channel notices.
pub async fn end_all_of_account(
    tx: &mut WriteTx,
    account_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<Vec<(String, String)>> {
    let open: Vec<(String, String)> = fetch!(
        fetch_all(tx.conn().await?),
        "SELECT id_hash, sid FROM sessions WHERE account_id = $1 AND ended_at IS NULL";
        account_id
    );
    queue!(
        tx,
        "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE account_id = $3 AND ended_at IS NULL";
        now, reason, account_id
    );
    Ok(open)
}

pub async fn client_ids_in(tx: &mut WriteTx, id_hash: &str) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = fetch!(
        fetch_all(tx.conn().await?),
        "SELECT client_id FROM session_clients WHERE session_id_hash = $1";
        id_hash
    );
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Ends a session that expired; false when another request or instance
/// already ended it (so the expiry is recorded once).
pub async fn expire(tx: &mut WriteTx, id_hash: &str, reason: &str, now: Millis) -> StoreResult<bool> {
    super::sessions::end(tx, id_hash, reason, now).await
}

/// Deletes the sessions that ended before `before`, with the address and
/// user agent they kept (the connection log keeps its own copy as long).
pub async fn delete_ended_before(tx: &mut WriteTx, before: Millis) -> StoreResult<u64> {
    Ok(execute!(tx, "DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < $1"; before))
}
