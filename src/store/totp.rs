//! Second factor: TOTP secrets, recovery codes and the pending state
//! between a correct password and the second factor.

use super::sql::{execute, fetch};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TotpRow {
    pub account_id: String,
    pub secret: String,
    pub last_step: i64,
    pub enrolled_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingSecondFactorRow {
    pub id_hash: String,
    pub account_id: String,
    pub request: Option<String>,
    pub enrol_secret: Option<String>,
    /// A console path to go back to after the second factor (step-up).
    pub return_to: Option<String>,
    pub expires_at: Millis,
}

/// A sealed TOTP value where it is stored: an enrolled secret, or the
/// candidate secret of an enrolment in progress.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedTotpValue {
    /// The table: `account_totp` or `pending_second_factor`.
    pub source: String,
    /// The row's key: the account id, or the pending state's id hash.
    pub row_key: String,
    pub account_id: String,
    pub stored: String,
}

impl Store {
    pub async fn totp(&self, account_id: &str) -> StoreResult<Option<TotpRow>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT account_id, secret, last_step, enrolled_at FROM account_totp WHERE account_id = $1";
            account_id
        ))
    }

    /// (account id, secret) of the TOTP secrets not sealed yet (stored in
    /// clear by an earlier version).
    pub async fn totp_secrets_in_clear(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(fetch!(
            fetch_all(&self.pool),
            "SELECT account_id, secret FROM account_totp WHERE secret NOT LIKE 'v1:%' AND secret NOT LIKE 'v2:%'"
        ))
    }

    /// Unused recovery codes left to an account.
    pub async fn recovery_codes_left(&self, account_id: &str) -> StoreResult<i64> {
        let row: (i64,) = fetch!(
            fetch_one(&self.pool),
            "SELECT COUNT(*) FROM totp_recovery_codes WHERE account_id = $1 AND used_at IS NULL";
            account_id
        );
        Ok(row.0)
    }

    pub async fn pending_second_factor(&self, id_hash: &str) -> StoreResult<Option<PendingSecondFactorRow>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT id_hash, account_id, request, enrol_secret, return_to, expires_at FROM pending_second_factor \
             WHERE id_hash = $1";
            id_hash
        ))
    }
}

pub async fn insert_pending(tx: &mut WriteTx, row: &PendingSecondFactorRow, now: Millis) -> StoreResult<()> {
    // An expired state is of no use to anyone: sweep them as new ones come.
    execute!(tx, "DELETE FROM pending_second_factor WHERE expires_at < $1"; now);
    execute!(
        tx,
        "INSERT INTO pending_second_factor (id_hash, account_id, request, enrol_secret, return_to, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        &row.id_hash, &row.account_id, &row.request, &row.enrol_secret, &row.return_to, row.expires_at, now
    );
    Ok(())
}

pub async fn set_pending_enrol_secret(tx: &mut WriteTx, id_hash: &str, secret: &str) -> StoreResult<()> {
    execute!(
        tx,
        "UPDATE pending_second_factor SET enrol_secret = $1 WHERE id_hash = $2 AND enrol_secret IS NULL";
        secret, id_hash
    );
    Ok(())
}

/// Consumes a pending state; false when another request already did (so
/// that one password check opens at most one session).
pub async fn take_pending(tx: &mut WriteTx, id_hash: &str, now: Millis) -> StoreResult<bool> {
    let n = execute!(tx, "DELETE FROM pending_second_factor WHERE id_hash = $1 AND expires_at >= $2"; id_hash, now);
    Ok(n == 1)
}

/// Whether an account holds a second factor (a TOTP secret or a passkey),
/// as the caller's transaction sees it.
pub async fn second_factor_held_in(tx: &mut WriteTx, account_id: &str) -> StoreResult<bool> {
    let row: (i64,) = fetch!(
        fetch_one(tx.conn().await?),
        "SELECT (SELECT COUNT(*) FROM account_totp WHERE account_id = $1) \
         + (SELECT COUNT(*) FROM passkeys WHERE account_id = $1)";
        account_id
    );
    Ok(row.0 > 0)
}

/// Recovery codes not used yet, as the caller's transaction sees them.
pub async fn recovery_codes_left_in(tx: &mut WriteTx, account_id: &str) -> StoreResult<i64> {
    let row: (i64,) = fetch!(
        fetch_one(tx.conn().await?),
        "SELECT COUNT(*) FROM totp_recovery_codes WHERE account_id = $1 AND used_at IS NULL";
        account_id
    );
    Ok(row.0)
}

/// Records the step of an accepted code, only if it is later than the last
/// one accepted: false means the code (or an earlier one) was already used.
pub async fn advance_step(tx: &mut WriteTx, account_id: &str, step: i64) -> StoreResult<bool> {
    let n = execute!(
        tx,
        "UPDATE account_totp SET last_step = $1 WHERE account_id = $2 AND last_step < $1";
        step, account_id
    );
    Ok(n == 1)
}

/// Enrols an account: its secret, the step of the confirming code, and
/// fresh recovery codes (hashes), replacing any earlier ones.
pub async fn insert(
    tx: &mut WriteTx,
    account_id: &str,
    secret: &str,
    step: i64,
    recovery_hashes: &[String],
    now: Millis,
) -> StoreResult<()> {
    execute!(tx, "DELETE FROM totp_recovery_codes WHERE account_id = $1"; account_id);
    execute!(tx, "DELETE FROM account_totp WHERE account_id = $1"; account_id);
    execute!(
        tx,
        "INSERT INTO account_totp (account_id, secret, last_step, enrolled_at) VALUES ($1, $2, $3, $4)";
        account_id, secret, step, now
    );
    for h in recovery_hashes {
        execute!(
            tx,
            "INSERT INTO totp_recovery_codes (code_hash, account_id, created_at) VALUES ($1, $2, $3)";
            h, account_id, now
        );
    }
    Ok(())
}

/// Spends a recovery code of this account; false when unknown or used.
pub async fn use_recovery_code(tx: &mut WriteTx, account_id: &str, code_hash: &str, now: Millis) -> StoreResult<bool> {
    let n = execute!(
        tx,
        "UPDATE totp_recovery_codes SET used_at = $1 WHERE code_hash = $2 AND account_id = $3 AND used_at IS NULL";
        now, code_hash, account_id
    );
    Ok(n == 1)
}

/// Replaces a stored TOTP secret by its sealed form, only if the row still
/// holds `old`; false when another writer changed it first.
pub async fn replace_secret(tx: &mut WriteTx, account_id: &str, old: &str, new: &str) -> StoreResult<bool> {
    let n = execute!(
        tx,
        "UPDATE account_totp SET secret = $1 WHERE account_id = $2 AND secret = $3";
        new, account_id, old
    );
    Ok(n == 1)
}

/// Removes an account's TOTP secret and recovery codes; false when it had
/// none.
pub async fn delete(tx: &mut WriteTx, account_id: &str) -> StoreResult<bool> {
    execute!(tx, "DELETE FROM totp_recovery_codes WHERE account_id = $1"; account_id);
    let n = execute!(tx, "DELETE FROM account_totp WHERE account_id = $1"; account_id);
    Ok(n == 1)
}

/// Every stored TOTP value (enrolled secrets and pending enrolments' candidates).
pub async fn sealed_values(tx: &mut WriteTx) -> StoreResult<Vec<SealedTotpValue>> {
    Ok(fetch!(
        fetch_all(tx.conn().await?),
        "SELECT 'account_totp' AS source, account_id AS row_key, account_id, secret AS stored FROM account_totp \
         UNION ALL SELECT 'pending_second_factor' AS source, id_hash AS row_key, account_id, enrol_secret AS stored \
         FROM pending_second_factor WHERE enrol_secret IS NOT NULL"
    ))
}

/// Replaces a stored TOTP value if it is still the one read; false otherwise.
pub async fn replace_sealed_value(tx: &mut WriteTx, value: &SealedTotpValue, new: &str) -> StoreResult<bool> {
    let sql = if value.source == "pending_second_factor" {
        "UPDATE pending_second_factor SET enrol_secret = $1 WHERE id_hash = $2 AND enrol_secret = $3"
    } else {
        "UPDATE account_totp SET secret = $1 WHERE account_id = $2 AND secret = $3"
    };
    let n = execute!(tx, sql; new, &value.row_key, &value.stored);
    Ok(n == 1)
}
