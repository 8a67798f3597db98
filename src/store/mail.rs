//! The mail outbox: messages queued, claimed by one sender, sent or failed.

use super::outbox::Outbox;
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

const OUTBOX: Outbox = Outbox { table: "mail_outbox", done: "sent_at", given_up: "failed_at" };

impl Store {
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

pub async fn enqueue(
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

/// Claims a due message for one sender (see `Outbox::claim`).
pub async fn claim(tx: &mut WriteTx, id: &str, seen_next_attempt_at: Millis, lease_until: Millis) -> StoreResult<bool> {
    OUTBOX.claim(tx, id, seen_next_attempt_at, lease_until).await
}

/// Puts the messages that failed for good back in the queue; returns how many.
pub async fn retry_failed(tx: &mut WriteTx, now: Millis) -> StoreResult<u64> {
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
pub async fn mark_sent(tx: &mut WriteTx, id: &str, now: Millis) -> StoreResult<()> {
    sqlx::query(
        "UPDATE mail_outbox SET sent_at = $1, attempts = attempts + 1, body_text = '', body_html = '' WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// `next`: when to try again; `None`: given up.
pub async fn mark_failed(
    tx: &mut WriteTx,
    id: &str,
    error: &str,
    next: Option<Millis>,
    now: Millis,
) -> StoreResult<()> {
    OUTBOX.mark_failed(tx, id, error, next, now).await
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
    /// The text of the messages not yet delivered (newest first, at most
    /// `limit`): what the outbox still holds of each (see `mark_sent`).
    pub async fn undelivered_mail_texts(&self, limit: i64) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT recipient, body_text FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
             ORDER BY created_at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
