//! Storage of retention (R19, R20) and of the log's checkpoints: job leases,
//! signed checkpoints, purged ranges, destruction records, and the
//! destruction of an account's data. The deletions of single tables the
//! purge runs (events, sessions, accounts, annexes) are in those tables'
//! files; every one runs inside the purge's transaction.

use super::sql::{execute, fetch, set_alone};
use super::{Backend, Store, StoreResult, WriteTx};
use crate::clock::Millis;

/// Takes the lease `name` for `holder` until `expires_ms` when nobody holds
/// it or the previous lease has expired (compare-and-set in one statement,
/// so two instances never both win). The lease is not released: it also
/// spaces the runs, once per lease duration across instances.
pub async fn try_acquire_lease(
    store: &Store,
    name: &str,
    holder: &str,
    now: Millis,
    expires_ms: Millis,
) -> StoreResult<bool> {
    Ok(set_alone!(
        store,
        "INSERT INTO job_leases (name, holder, expires_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
         WHERE job_leases.expires_ms <= $4";
        name, holder, expires_ms, now
    ))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: String,
    pub time_ms: Millis,
    pub kid: String,
    pub jws: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogPurgeRow {
    pub up_to_seq: i64,
    pub last_hash: String,
    pub removed: i64,
    pub purged_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DestructionRow {
    pub id: String,
    pub destroyed_at: Millis,
    pub category: String,
    pub partner_id: Option<String>,
    pub account_id: Option<String>,
    pub email_hmac: Option<String>,
    pub details: String,
    pub purge_seq: i64,
}

/// A closed account as the purge sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClosedAccountRow {
    pub id: String,
    pub email_normalized: String,
    pub partner_id: Option<String>,
    pub closure_requested_on: Option<String>,
    pub closed_at: Option<Millis>,
    pub updated_at: Millis,
    pub data_destroyed_at: Option<Millis>,
}

/// A session past its lifetime that nobody ended yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExpiredSessionRow {
    pub id_hash: String,
    pub sid: String,
    pub account_id: String,
    pub absolute_expires_at: Millis,
}

impl Store {
    /// Every checkpoint, oldest first.
    pub async fn checkpoints(&self) -> StoreResult<Vec<CheckpointRow>> {
        Ok(fetch!(fetch_all(&self.pool), "SELECT seq, hash, time_ms, kid, jws FROM log_checkpoints ORDER BY seq"))
    }

    /// The last purged range, if any.
    pub async fn last_log_purge(&self) -> StoreResult<Option<LogPurgeRow>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT up_to_seq, last_hash, removed, purged_at FROM log_purges ORDER BY up_to_seq DESC LIMIT 1"
        ))
    }

    /// The destruction records of a partner, and of one person when
    /// `email_hmac` is given, oldest first.
    pub async fn destructions(&self, partner_id: &str, email_hmac: Option<&str>) -> StoreResult<Vec<DestructionRow>> {
        let columns = "id, destroyed_at, category, partner_id, account_id, email_hmac, details, purge_seq";
        Ok(match email_hmac {
            Some(h) => {
                let sql = format!(
                    "SELECT {columns} FROM destructions WHERE partner_id = $1 AND email_hmac = $2 \
                     ORDER BY destroyed_at, id"
                );
                fetch!(fetch_all(&self.pool), &sql; partner_id, h)
            }
            None => {
                let sql = format!("SELECT {columns} FROM destructions WHERE partner_id = $1 ORDER BY destroyed_at, id");
                fetch!(fetch_all(&self.pool), &sql; partner_id)
            }
        })
    }

    /// Sessions past their absolute lifetime or idle for longer than
    /// `idle_ms`, not yet ended.
    pub async fn expired_sessions(
        &self,
        now: Millis,
        idle_ms: Millis,
        limit: i64,
    ) -> StoreResult<Vec<ExpiredSessionRow>> {
        Ok(fetch!(
            fetch_all(&self.pool),
            "SELECT id_hash, sid, account_id, absolute_expires_at FROM sessions WHERE ended_at IS NULL \
             AND (absolute_expires_at <= $1 OR last_seen_at <= $2) ORDER BY last_seen_at LIMIT $3";
            now, now - idle_ms, limit
        ))
    }
}

pub async fn insert_checkpoint(tx: &mut WriteTx, c: &CheckpointRow) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "INSERT INTO log_checkpoints (seq, hash, time_ms, kid, jws) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
        c.seq, &c.hash, c.time_ms, &c.kid, &c.jws
    );
    Ok(done == 1)
}

pub async fn last_checkpoint_seq_in(tx: &mut WriteTx) -> StoreResult<Option<i64>> {
    let row: Option<(i64,)> =
        fetch!(fetch_optional(tx.conn().await?), "SELECT seq FROM log_checkpoints ORDER BY seq DESC LIMIT 1");
    Ok(row.map(|r| r.0))
}

/// Serialises purges across instances on PostgreSQL (SQLite: the write gate).
pub async fn lock_purge(tx: &mut WriteTx) -> StoreResult<()> {
    if tx.backend == Backend::Postgres {
        execute!(tx, "SELECT pg_advisory_xact_lock(7215002)");
    }
    Ok(())
}

pub async fn insert_log_purge(tx: &mut WriteTx, p: &LogPurgeRow) -> StoreResult<()> {
    execute!(
        tx,
        "INSERT INTO log_purges (up_to_seq, last_hash, removed, purged_at) VALUES ($1, $2, $3, $4)";
        p.up_to_seq, &p.last_hash, p.removed, p.purged_at
    );
    Ok(())
}

pub async fn last_log_purge_in(tx: &mut WriteTx) -> StoreResult<Option<(i64, String)>> {
    Ok(fetch!(
        fetch_optional(tx.conn().await?),
        "SELECT up_to_seq, last_hash FROM log_purges ORDER BY up_to_seq DESC LIMIT 1"
    ))
}

pub async fn closed_accounts(tx: &mut WriteTx) -> StoreResult<Vec<ClosedAccountRow>> {
    Ok(fetch!(
        fetch_all(tx.conn().await?),
        "SELECT id, email_normalized, partner_id, closure_requested_on, closed_at, updated_at, data_destroyed_at \
         FROM accounts WHERE state = 'closed' ORDER BY id"
    ))
}

/// What destroying a user account's data removed, by kind.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AccountDataCounts {
    pub sessions: u64,
    pub token_families: u64,
    pub authorization_codes: u64,
    pub credential_links: u64,
    pub roles: u64,
    pub emails: u64,
    pub backchannel_notices: u64,
}

/// Destroys the user account's data: credentials, sessions (with their
/// addresses and user agents), grants, links, roles, queued or sent emails.
/// The account row keeps only the habilitation record.
pub async fn destroy_account_data(
    tx: &mut WriteTx,
    account_id: &str,
    email_normalized: &str,
    now: Millis,
) -> StoreResult<AccountDataCounts> {
    let mut run = async |sql: &str, value: &str| -> StoreResult<u64> { Ok(execute!(tx, sql; value)) };
    let counts = AccountDataCounts {
        sessions: run("DELETE FROM sessions WHERE account_id = $1", account_id).await?,
        token_families: run("DELETE FROM token_families WHERE account_id = $1", account_id).await?,
        authorization_codes: run("DELETE FROM authorization_codes WHERE account_id = $1", account_id).await?,
        credential_links: run("DELETE FROM credential_links WHERE account_id = $1", account_id).await?,
        roles: run("DELETE FROM account_roles WHERE account_id = $1", account_id).await?,
        emails: run("DELETE FROM mail_outbox WHERE LOWER(recipient) = $1", email_normalized).await?,
        backchannel_notices: run("DELETE FROM backchannel_outbox WHERE subject = $1", account_id).await?,
    };
    // The second factor is a credential too (not counted in the attestation).
    for sql in [
        "DELETE FROM account_totp WHERE account_id = $1",
        "DELETE FROM totp_recovery_codes WHERE account_id = $1",
        "DELETE FROM pending_second_factor WHERE account_id = $1",
    ] {
        execute!(tx, sql; account_id);
    }
    execute!(tx, "UPDATE accounts SET password_hash = NULL, data_destroyed_at = $1 WHERE id = $2"; now, account_id);
    Ok(counts)
}

pub async fn insert_destruction(tx: &mut WriteTx, d: &DestructionRow) -> StoreResult<()> {
    execute!(
        tx,
        "INSERT INTO destructions (id, destroyed_at, category, partner_id, account_id, email_hmac, details, purge_seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        &d.id, d.destroyed_at, &d.category, &d.partner_id, &d.account_id, &d.email_hmac, &d.details, d.purge_seq
    );
    Ok(())
}
