//! The durable queue of back-channel logout notifications.

use super::outbox::Outbox;
use super::sql::{fetch, queue};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

pub const OUTBOX: Outbox =
    Outbox { table: "backchannel_outbox", done: "delivered_at", given_up: "abandoned_at", forget_when_done: "" };

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
        Ok(fetch!(
            fetch_all(&self.pool),
            "SELECT id, client_id, subject, sid, created_at, next_attempt_at, attempts FROM backchannel_outbox \
             WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2";
            now, limit
        ))
    }

    /// Depth and oldest creation time of each outbox still to deliver
    /// (`mail`, `backchannel`), for the metrics.
    pub async fn outbox_stats(&self) -> StoreResult<Vec<(&'static str, i64, Option<Millis>)>> {
        let (mail, mail_oldest): (i64, Option<i64>) = fetch!(
            fetch_one(&self.pool),
            "SELECT COUNT(*), MIN(created_at) FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL"
        );
        let (bc, bc_oldest): (i64, Option<i64>) = fetch!(
            fetch_one(&self.pool),
            "SELECT COUNT(*), MIN(created_at) FROM backchannel_outbox \
             WHERE delivered_at IS NULL AND abandoned_at IS NULL"
        );
        Ok(vec![("mail", mail, mail_oldest), ("backchannel", bc, bc_oldest)])
    }

    pub async fn pending_backchannel_count(&self) -> StoreResult<i64> {
        let (n,): (i64,) = fetch!(
            fetch_one(&self.pool),
            "SELECT COUNT(*) FROM backchannel_outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL"
        );
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
    queue!(
        tx,
        "INSERT INTO backchannel_outbox (id, client_id, subject, sid, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $5)";
        id, client_id, subject, sid, now
    );
    Ok(())
}
