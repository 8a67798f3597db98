//! Passkeys (WebAuthn credentials) and the ceremonies in progress.

use super::sql::{execute, queue};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRow {
    pub id: String,
    pub account_id: String,
    pub credential_id: String,
    /// The credential as webauthn-rs serialises it (public key only).
    pub passkey: String,
    pub name: String,
    pub counter: i64,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CeremonyRow {
    pub id_hash: String,
    pub purpose: String,
    /// `None` for the sign-in page's passkey autofill, which asks for any
    /// of the site's passkeys: the answer names the account.
    pub account_id: Option<String>,
    /// The server's side of the ceremony, as webauthn-rs serialises it.
    pub state: String,
    pub expires_at: Millis,
}

const COLUMNS: &str = "id, account_id, credential_id, passkey, name, counter, created_at, last_used_at";

impl Store {
    /// An account's passkeys, oldest first.
    pub async fn passkeys_of_account(&self, account_id: &str) -> StoreResult<Vec<PasskeyRow>> {
        let sql = format!("SELECT {COLUMNS} FROM passkeys WHERE account_id = $1 ORDER BY created_at, id");
        Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(&self.pool).await?)
    }

    /// The passkey of a credential id (base64url), whichever account holds it.
    pub async fn passkey_by_credential(&self, credential_id: &str) -> StoreResult<Option<PasskeyRow>> {
        let sql = format!("SELECT {COLUMNS} FROM passkeys WHERE credential_id = $1");
        Ok(sqlx::query_as(&sql).bind(credential_id).fetch_optional(&self.pool).await?)
    }

    pub async fn passkey_count(&self, account_id: &str) -> StoreResult<i64> {
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM passkeys WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.0)
    }

    pub async fn passkey_ceremony(&self, id_hash: &str) -> StoreResult<Option<CeremonyRow>> {
        Ok(sqlx::query_as(
            "SELECT id_hash, purpose, account_id, state, expires_at FROM passkey_ceremonies WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?)
    }
}

pub async fn insert(tx: &mut WriteTx, row: &PasskeyRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO passkeys (id, account_id, credential_id, passkey, name, counter, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(&row.account_id)
    .bind(&row.credential_id)
    .bind(&row.passkey)
    .bind(&row.name)
    .bind(row.counter)
    .bind(row.created_at)
    .bind(row.last_used_at)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// Whether a credential id is already registered (to any account).
pub async fn credential_exists_in(tx: &mut WriteTx, credential_id: &str) -> StoreResult<bool> {
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM passkeys WHERE credential_id = $1")
        .bind(credential_id)
        .fetch_one(tx.conn().await?)
        .await?;
    Ok(row.0 > 0)
}

/// Renames one of an account's passkeys; false when it has no such passkey.
pub async fn rename(tx: &mut WriteTx, account_id: &str, id: &str, name: &str) -> StoreResult<bool> {
    let n = sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND account_id = $3")
        .bind(name)
        .bind(id)
        .bind(account_id)
        .execute(tx.conn().await?)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Removes one of an account's passkeys; returns its name, `None` when the
/// account has no such passkey.
pub async fn delete(tx: &mut WriteTx, account_id: &str, id: &str) -> StoreResult<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("DELETE FROM passkeys WHERE id = $1 AND account_id = $2 RETURNING name")
            .bind(id)
            .bind(account_id)
            .fetch_optional(tx.conn().await?)
            .await?;
    Ok(row.map(|r| r.0))
}

/// Removes every passkey of an account (its access closed), with its
/// ceremonies under way.
pub async fn delete_of_account(tx: &mut WriteTx, account_id: &str) -> StoreResult<()> {
    queue!(tx, "DELETE FROM passkey_ceremonies WHERE account_id = $1"; account_id);
    queue!(tx, "DELETE FROM passkeys WHERE account_id = $1"; account_id);
    Ok(())
}

/// Records a use: the credential as updated by the assertion (counter,
/// backup state) and when. Only a counter that moves forward is written,
/// so that two concurrent assertions cannot move it back.
pub async fn record_use(tx: &mut WriteTx, id: &str, passkey: &str, counter: i64, now: Millis) -> StoreResult<bool> {
    let n = sqlx::query(
        "UPDATE passkeys SET passkey = $1, counter = $2, last_used_at = $3 \
         WHERE id = $4 AND (counter < $2 OR (counter = 0 AND $2 = 0))",
    )
    .bind(passkey)
    .bind(counter)
    .bind(now)
    .bind(id)
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// How many ceremonies may stay live at once, past which the oldest go.
#[derive(Debug, Clone, Copy)]
pub struct CeremonyCaps {
    /// Per account and purpose.
    pub per_account: i64,
    /// Per source (an IPv4 address or an IPv6 /64), every purpose.
    pub per_source: i64,
}

/// Opens a ceremony for `source` and leaves at most the caps of live ones:
/// this one and the newest others of its account and purpose, and of its
/// source; the oldest, and every expired one, go.
///
/// On SQLite the write transaction is the only writer. On PostgreSQL two
/// transactions reading under READ COMMITTED would each see room for one
/// more, so they take turns under one advisory lock (in the database, so
/// across instances). One lock rather than one per account and one per
/// source: a ceremony counts against both, and two transactions each
/// holding one key's lock could each delete rows the other is deleting
/// and deadlock on them. The transaction is a few statements long.
pub async fn insert_ceremony(
    tx: &mut WriteTx,
    row: &CeremonyRow,
    source: &str,
    now: Millis,
    caps: CeremonyCaps,
) -> StoreResult<()> {
    if tx.backend == super::Backend::Postgres {
        execute!(tx, "SELECT pg_advisory_xact_lock(7215004)");
    }
    execute!(tx, "DELETE FROM passkey_ceremonies WHERE expires_at < $1"; now);
    if let Some(account_id) = &row.account_id {
        execute!(
            tx,
            "DELETE FROM passkey_ceremonies WHERE account_id = $1 AND purpose = $2 AND id_hash NOT IN \
             (SELECT id_hash FROM passkey_ceremonies WHERE account_id = $1 AND purpose = $2 \
             ORDER BY created_at DESC, id_hash DESC LIMIT $3)";
            account_id, &row.purpose, (caps.per_account - 1).max(0)
        );
    }
    execute!(
        tx,
        "DELETE FROM passkey_ceremonies WHERE source = $1 AND id_hash NOT IN \
         (SELECT id_hash FROM passkey_ceremonies WHERE source = $1 \
         ORDER BY created_at DESC, id_hash DESC LIMIT $2)";
        source, (caps.per_source - 1).max(0)
    );
    execute!(
        tx,
        "INSERT INTO passkey_ceremonies (id_hash, purpose, account_id, source, state, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)";
        &row.id_hash, &row.purpose, &row.account_id, source, &row.state, row.expires_at, now
    );
    Ok(())
}

/// Consumes a ceremony; false when another request already did (one
/// challenge answers once).
pub async fn take_ceremony(tx: &mut WriteTx, id_hash: &str, now: Millis) -> StoreResult<bool> {
    let n = sqlx::query("DELETE FROM passkey_ceremonies WHERE id_hash = $1 AND expires_at >= $2")
        .bind(id_hash)
        .bind(now)
        .execute(tx.conn().await?)
        .await?
        .rows_affected();
    Ok(n == 1)
}
