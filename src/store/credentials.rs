//! One-time activation and reset links.

use super::sql::{execute, fetch, queue};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkRow {
    pub token_hash: String,
    pub account_id: String,
    pub purpose: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
    pub superseded_at: Option<Millis>,
}

impl Store {
    pub async fn credential_link(&self, token_hash: &str) -> StoreResult<Option<LinkRow>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT token_hash, account_id, purpose, created_at, expires_at, used_at, superseded_at \
             FROM credential_links WHERE token_hash = $1";
            token_hash
        ))
    }

    pub async fn latest_link_created_at(&self, account_id: &str, purpose: &str) -> StoreResult<Option<Millis>> {
        let row: Option<(i64,)> = fetch!(
            fetch_optional(&self.pool),
            "SELECT created_at FROM credential_links WHERE account_id = $1 AND purpose = $2 ORDER BY created_at DESC LIMIT 1";
            account_id, purpose
        );
        Ok(row.map(|r| r.0))
    }
}

/// Creates a link and supersedes the account's older links of that purpose.
pub async fn insert_link(
    tx: &mut WriteTx,
    token_hash: &str,
    account_id: &str,
    purpose: &str,
    now: Millis,
    expires_at: Millis,
) -> StoreResult<()> {
    queue!(
        tx,
        "UPDATE credential_links SET superseded_at = $1 \
         WHERE account_id = $2 AND purpose = $3 AND used_at IS NULL AND superseded_at IS NULL";
        now, account_id, purpose
    );
    queue!(
        tx,
        "INSERT INTO credential_links (token_hash, account_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
        token_hash, account_id, purpose, now, expires_at
    );
    Ok(())
}

/// Uses a link once; false when it was used, superseded or expired meanwhile.
pub async fn consume_link(tx: &mut WriteTx, token_hash: &str, now: Millis) -> StoreResult<bool> {
    let done = execute!(
        tx,
        "UPDATE credential_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
         AND superseded_at IS NULL AND expires_at > $1";
        now, token_hash
    );
    Ok(done == 1)
}

/// Invalidates every open link of an account (e.g. after a password reset).
pub async fn supersede_links_of_account(tx: &mut WriteTx, account_id: &str, now: Millis) -> StoreResult<()> {
    queue!(
        tx,
        "UPDATE credential_links SET superseded_at = $1 WHERE account_id = $2 AND used_at IS NULL AND superseded_at IS NULL";
        now, account_id
    );
    Ok(())
}
