//! What the two outboxes (`mail`, `backchannel`) share: a claim by
//! compare-and-set of the next attempt, and a failure that either retries
//! later or gives up.

use super::{StoreResult, WriteTx};
use crate::clock::Millis;

pub(super) struct Outbox {
    pub(super) table: &'static str,
    /// Set when the message went out (`sent_at`, `delivered_at`).
    pub(super) done: &'static str,
    /// Set when it was given up (`failed_at`, `abandoned_at`).
    pub(super) given_up: &'static str,
}

impl Outbox {
    /// Claims a due message for one sender (another process or instance may
    /// poll the same outbox): moves its next attempt to `lease_until` only if
    /// nobody moved it since it was read. False: someone else has it.
    pub(super) async fn claim(
        &self,
        tx: &mut WriteTx,
        id: &str,
        seen_next_attempt_at: Millis,
        lease_until: Millis,
    ) -> StoreResult<bool> {
        let Outbox { table, done, given_up } = self;
        let sql = format!(
            "UPDATE {table} SET next_attempt_at = $1 WHERE id = $2 AND next_attempt_at = $3 \
             AND {done} IS NULL AND {given_up} IS NULL"
        );
        let done =
            sqlx::query(&sql).bind(lease_until).bind(id).bind(seen_next_attempt_at).execute(tx.conn().await?).await?;
        Ok(done.rows_affected() == 1)
    }

    /// One more failed attempt: tried again at `next_attempt_at`, or given
    /// up (`None`).
    pub(super) async fn mark_failed(
        &self,
        tx: &mut WriteTx,
        id: &str,
        error: &str,
        next_attempt_at: Option<Millis>,
        now: Millis,
    ) -> StoreResult<()> {
        let column = if next_attempt_at.is_some() { "next_attempt_at" } else { self.given_up };
        let sql =
            format!("UPDATE {} SET attempts = attempts + 1, last_error = $1, {column} = $2 WHERE id = $3", self.table);
        sqlx::query(&sql).bind(error).bind(next_attempt_at.unwrap_or(now)).bind(id).execute(tx.conn().await?).await?;
        Ok(())
    }
}
