//! The mail outbox: messages queued, claimed by one sender, sent or failed.

use super::outbox::Outbox;
use super::sql::{execute, fetch, queue};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

/// A message sent forgets its body: it may hold a one-time link, which must
/// not outlive its delivery in plain text.
pub const OUTBOX: Outbox = Outbox {
    table: "mail_outbox",
    done: "sent_at",
    given_up: "failed_at",
    forget_when_done: ", body_text = '', body_html = ''",
};

impl Store {
    /// (waiting, failed) message counts.
    pub async fn mail_counts(&self) -> StoreResult<(i64, i64)> {
        let (waiting,): (i64,) = fetch!(
            fetch_one(&self.pool),
            "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL"
        );
        let (failed,): (i64,) =
            fetch!(fetch_one(&self.pool), "SELECT COUNT(*) FROM mail_outbox WHERE failed_at IS NOT NULL");
        Ok((waiting, failed))
    }
}

/// Queues a message, due now; or, in a transaction that holds its mail
/// (`WriteTx::hold_mail_until`), claimed until the hold ends and kept for
/// the caller.
pub async fn enqueue(
    tx: &mut WriteTx,
    id: &str,
    recipient: &str,
    subject: &str,
    body_text: &str,
    body_html: &str,
    now: Millis,
) -> StoreResult<()> {
    let due = tx.held_mail.as_ref().map_or(now, |h| h.until);
    queue!(
        tx,
        "INSERT INTO mail_outbox (id, recipient, subject, body_text, body_html, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)";
        id, recipient, subject, body_text, body_html, now, due
    );
    if let Some(held) = tx.held_mail.as_mut() {
        held.rows.push(MailRow {
            id: id.to_string(),
            recipient: recipient.to_string(),
            subject: subject.to_string(),
            body_text: body_text.to_string(),
            body_html: body_html.to_string(),
            created_at: now,
            next_attempt_at: due,
            attempts: 0,
        });
    }
    Ok(())
}

/// Claims up to `limit` due messages for this sender until `lease_until`,
/// in one statement: a claimed message is no longer due, so two senders
/// (processes, instances) never take the same one, and one that dies
/// mid-send leaves its messages to be tried again once the lease ends.
///
/// The outer condition repeats the inner one (PostgreSQL checks it again
/// on a row another sender changed meanwhile), written with `COALESCE` so
/// that SQLite cannot serve it from `mail_outbox_due`: with that index it
/// walked every waiting message, reading each one's row, to find the
/// `limit` claimed ones (about 200,000 page reads to send 5,000 messages
/// in batches of 64); by the primary key it reads only those.
pub async fn claim_due(tx: &mut WriteTx, now: Millis, lease_until: Millis, limit: i64) -> StoreResult<Vec<MailRow>> {
    Ok(fetch!(
        fetch_all(tx.conn().await?),
        "UPDATE mail_outbox SET next_attempt_at = $1 \
         WHERE id IN (SELECT id FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
                      AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3) \
         AND COALESCE(sent_at, failed_at) IS NULL AND next_attempt_at <= $2 \
         RETURNING id, recipient, subject, body_text, body_html, created_at, next_attempt_at, attempts";
        lease_until, now, limit
    ))
}

/// Puts the messages that failed for good back in the queue; returns how many.
pub async fn retry_failed(tx: &mut WriteTx, now: Millis) -> StoreResult<u64> {
    Ok(execute!(
        tx,
        "UPDATE mail_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = $1, created_at = $1 \
         WHERE failed_at IS NOT NULL AND sent_at IS NULL";
        now
    ))
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
