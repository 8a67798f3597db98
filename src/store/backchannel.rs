//! The durable queue of back-channel logout notifications.

use super::outbox::Outbox;
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

const OUTBOX: Outbox = Outbox { table: "backchannel_outbox", done: "delivered_at", given_up: "abandoned_at" };

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BackchannelRow {
    pub id: String,
    pub client_id: String,
    pub subject: String,
    pub sid: String,
    pub created_at: Millis,
    pub next_attempt_at: Millis,
    pub attempts: i64,
}

impl Store {
    pub async fn due_backchannel(&self, now: Millis, limit: i64) -> StoreResult<Vec<BackchannelRow>> {
        Ok(sqlx::query_as(
            "SELECT id, client_id, subject, sid, created_at, next_attempt_at, attempts FROM backchannel_outbox \
             WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Depth and oldest creation time of each outbox still to deliver
    /// (`mail`, `backchannel`), for the metrics.
    pub async fn outbox_stats(&self) -> StoreResult<Vec<(&'static str, i64, Option<Millis>)>> {
        let (mail, mail_oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let (bc, bc_oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM backchannel_outbox \
             WHERE delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(vec![("mail", mail, mail_oldest), ("backchannel", bc, bc_oldest)])
    }

    pub async fn pending_backchannel_count(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM backchannel_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}

pub async fn enqueue(
    tx: &mut WriteTx,
    id: &str,
    client_id: &str,
    subject: &str,
    sid: &str,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO backchannel_outbox (id, client_id, subject, sid, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id)
    .bind(client_id)
    .bind(subject)
    .bind(sid)
    .bind(now)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// Claims a due notification for one sender (see `Outbox::claim`).
pub async fn claim(tx: &mut WriteTx, id: &str, seen_next_attempt_at: Millis, lease_until: Millis) -> StoreResult<bool> {
    OUTBOX.claim(tx, id, seen_next_attempt_at, lease_until).await
}

pub async fn mark_delivered(tx: &mut WriteTx, id: &str, now: Millis) -> StoreResult<()> {
    sqlx::query("UPDATE backchannel_outbox SET delivered_at = $1, attempts = attempts + 1 WHERE id = $2")
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
