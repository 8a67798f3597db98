//! What the two outboxes (`mail`, `backchannel`) share: a claim by
//! compare-and-set of the next attempt, and a failure that either retries
//! later or gives up.

use super::sql::{execute, set_alone};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

pub struct Outbox {
    pub(super) table: &'static str,
    /// Set when the message went out (`sent_at`, `delivered_at`).
    pub(super) done: &'static str,
    /// Set when it was given up (`failed_at`, `abandoned_at`).
    pub(super) given_up: &'static str,
    /// What else a delivered message forgets (`, column = ''`…), or "".
    pub(super) forget_when_done: &'static str,
}

impl Outbox {
    /// Claims a due message for one sender (another process or instance may
    /// poll the same outbox), in a transaction of its own: moves its next
    /// attempt to `lease_until` only if nobody moved it since it was read.
    /// False: someone else has it.
    pub async fn claim(
        &self,
        store: &Store,
        id: &str,
        seen_next_attempt_at: Millis,
        lease_until: Millis,
    ) -> StoreResult<bool> {
        let Outbox { table, done, given_up, .. } = self;
        let sql = format!(
            "UPDATE {table} SET next_attempt_at = $1 WHERE id = $2 AND next_attempt_at = $3 \
             AND {done} IS NULL AND {given_up} IS NULL"
        );
        Ok(set_alone!(store, &sql; lease_until, id, seen_next_attempt_at))
    }

    /// The message went out (one more attempt, the last).
    pub async fn mark_done(&self, tx: &mut WriteTx, id: &str, now: Millis) -> StoreResult<()> {
        let Outbox { table, done, forget_when_done, .. } = self;
        let sql = format!("UPDATE {table} SET {done} = $1, attempts = attempts + 1{forget_when_done} WHERE id = $2");
        execute!(tx, &sql; now, id);
        Ok(())
    }

    /// The messages `ids` went out: [`Outbox::mark_done`] of a batch, in one
    /// statement.
    pub async fn mark_all_done(&self, tx: &mut WriteTx, ids: &[&str], now: Millis) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let Outbox { table, done, forget_when_done, .. } = self;
        let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE {table} SET {done} = $1, attempts = attempts + 1{forget_when_done} WHERE id IN ({})",
            marks.join(", ")
        );
        let query = ids.iter().fold(sqlx::query(&sql).bind(now), |q, id| q.bind(*id));
        query.execute(tx.conn().await?).await?;
        Ok(())
    }

    /// One more failed attempt: tried again at `next_attempt_at`, or given
    /// up (`None`).
    pub async fn mark_failed(
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
        execute!(tx, &sql; error, next_attempt_at.unwrap_or(now), id);
        Ok(())
    }
}
