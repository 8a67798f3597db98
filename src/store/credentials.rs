//! One-time activation and reset links, and the mail outbox.

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

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MailRow {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: Millis,
    pub next_attempt_at: Millis,
    pub attempts: i64,
}

impl Store {
    pub async fn credential_link(&self, token_hash: &str) -> StoreResult<Option<LinkRow>> {
        Ok(sqlx::query_as(
            "SELECT token_hash, account_id, purpose, created_at, expires_at, used_at, superseded_at \
             FROM credential_links WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn latest_link_created_at(&self, account_id: &str, purpose: &str) -> StoreResult<Option<Millis>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT created_at FROM credential_links WHERE account_id = $1 AND purpose = $2 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(account_id)
        .bind(purpose)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn due_mail(&self, now: Millis, limit: i64) -> StoreResult<Vec<MailRow>> {
        Ok(sqlx::query_as(
            "SELECT id, recipient, subject, body_text, body_html, created_at, next_attempt_at, attempts FROM mail_outbox \
             WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// (waiting, failed) message counts.
    pub async fn mail_counts(&self) -> StoreResult<(i64, i64)> {
        let (waiting,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        let (failed,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mail_outbox WHERE failed_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok((waiting, failed))
    }
}

/// Creates a link and supersedes the account's older links of that purpose.
pub async fn insert_credential_link(
    tx: &mut WriteTx,
    token_hash: &str,
    account_id: &str,
    purpose: &str,
    now: Millis,
    expires_at: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE credential_links SET superseded_at = $1 \
         WHERE account_id = $2 AND purpose = $3 AND used_at IS NULL AND superseded_at IS NULL",
    )
    .bind(now)
    .bind(account_id)
    .bind(purpose)
    .execute(tx.conn().await?)
    .await?;
    sqlx::query(
        "INSERT INTO credential_links (token_hash, account_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(account_id)
    .bind(purpose)
    .bind(now)
    .bind(expires_at)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// Uses a link once; false when it was used, superseded or expired meanwhile.
pub async fn consume_credential_link(tx: &mut WriteTx, token_hash: &str, now: Millis) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE credential_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
         AND superseded_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(token_hash)
    .execute(tx.conn().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Invalidates every open link of an account (e.g. after a password reset).
pub async fn supersede_links_of_account(tx: &mut WriteTx, account_id: &str, now: Millis) -> StoreResult<()> {
    sqlx::query(
        "UPDATE credential_links SET superseded_at = $1 WHERE account_id = $2 AND used_at IS NULL AND superseded_at IS NULL",
    )
    .bind(now)
    .bind(account_id)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

pub async fn enqueue_mail(
    tx: &mut WriteTx,
    id: &str,
    recipient: &str,
    subject: &str,
    body_text: &str,
    body_html: &str,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO mail_outbox (id, recipient, subject, body_text, body_html, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id)
    .bind(recipient)
    .bind(subject)
    .bind(body_text)
    .bind(body_html)
    .bind(now)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// Claims a due message for one sender (another process or instance may
/// poll the same outbox): moves its next attempt to `lease_until` only if
/// nobody moved it since it was read. False: someone else has it.
pub async fn claim_mail(
    tx: &mut WriteTx,
    id: &str,
    seen_next_attempt_at: Millis,
    lease_until: Millis,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE mail_outbox SET next_attempt_at = $1 WHERE id = $2 AND next_attempt_at = $3 AND sent_at IS NULL AND failed_at IS NULL",
    )
    .bind(lease_until)
    .bind(id)
    .bind(seen_next_attempt_at)
    .execute(tx.conn().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts the messages that failed for good back in the queue; returns how many.
pub async fn retry_failed_mail(tx: &mut WriteTx, now: Millis) -> StoreResult<u64> {
    Ok(sqlx::query(
        "UPDATE mail_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = $1, created_at = $1 \
         WHERE failed_at IS NOT NULL AND sent_at IS NULL",
    )
    .bind(now)
    .execute(tx.conn().await?)
    .await?
    .rows_affected())
}

/// Marks a message sent and forgets its body: it may hold a one-time link,
/// which must not outlive its delivery in plain text.
pub async fn mark_mail_sent(tx: &mut WriteTx, id: &str, now: Millis) -> StoreResult<()> {
    sqlx::query(
        "UPDATE mail_outbox SET sent_at = $1, attempts = attempts + 1, body_text = '', body_html = '' WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

pub async fn mark_mail_failed(
    tx: &mut WriteTx,
    id: &str,
    error: &str,
    next_attempt_at: Option<Millis>,
    now: Millis,
) -> StoreResult<()> {
    let sql = match next_attempt_at {
        Some(_) => {
            "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3"
        }
        None => "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $1, failed_at = $2 WHERE id = $3",
    };
    sqlx::query(sql).bind(error).bind(next_attempt_at.unwrap_or(now)).bind(id).execute(tx.conn().await?).await?;
    Ok(())
}

/// Revokes every token family of an account (password reset, closure).
pub async fn revoke_families_of_account(
    tx: &mut WriteTx,
    account_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM access_tokens WHERE family_id IN (SELECT id FROM token_families WHERE account_id = $1)")
        .bind(account_id)
        .execute(tx.conn().await?)
        .await?;
    sqlx::query(
        "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 WHERE account_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(account_id)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}
