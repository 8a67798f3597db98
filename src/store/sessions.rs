//! Sessions and the clients each one signed in to.

use sqlx::Row;

use super::sync_read::point_row;
use super::{Store, StoreError, StoreResult, WriteTx};
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
        Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(&self.pool).await?)
    }

    pub async fn session_client_ids(&self, id_hash: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT client_id FROM session_clients WHERE session_id_hash = $1 ORDER BY client_id")
            .bind(id_hash)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(StoreError::from)).collect()
    }
}

pub async fn insert(tx: &mut WriteTx, s: &NewSession<'_>, now: Millis) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, sid, account_id, auth_time, amr, acr, created_at, last_seen_at, \
         absolute_expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
    )
    .bind(s.id_hash)
    .bind(s.sid)
    .bind(s.account_id)
    .bind(s.auth_time)
    .bind(s.amr)
    .bind(s.acr)
    .bind(now)
    .bind(s.absolute_expires_at)
    .bind(s.ip)
    .bind(s.user_agent)
    .execute(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from_insert(e, "session"))?;
    Ok(())
}

pub async fn touch(tx: &mut WriteTx, id_hash: &str, now: Millis) -> StoreResult<()> {
    tx.queue(
        "UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND ended_at IS NULL",
        vec![now.into(), id_hash.into()],
    );
    Ok(())
}

/// Ends a session; false when it had already ended.
pub async fn end(tx: &mut WriteTx, id_hash: &str, reason: &str, now: Millis) -> StoreResult<bool> {
    let done =
        sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id_hash = $3 AND ended_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(id_hash)
            .execute(tx.conn().await?)
            .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn add_client(tx: &mut WriteTx, id_hash: &str, client_id: &str) -> StoreResult<()> {
    tx.queue(
        "INSERT INTO session_clients (session_id_hash, client_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        vec![id_hash.into(), client_id.into()],
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
    let open: Vec<(String, String)> =
        sqlx::query_as("SELECT id_hash, sid FROM sessions WHERE account_id = $1 AND ended_at IS NULL")
            .bind(account_id)
            .fetch_all(tx.conn().await?)
            .await?;
    sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE account_id = $3 AND ended_at IS NULL")
        .bind(now)
        .bind(reason)
        .bind(account_id)
        .execute(tx.conn().await?)
        .await?;
    Ok(open)
}

pub async fn client_ids_in(tx: &mut WriteTx, id_hash: &str) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT client_id FROM session_clients WHERE session_id_hash = $1")
        .bind(id_hash)
        .fetch_all(tx.conn().await?)
        .await?;
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
    Ok(sqlx::query("DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < $1")
        .bind(before)
        .execute(tx.conn().await?)
        .await?
        .rows_affected())
}
