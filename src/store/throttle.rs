//! Failed sign-in counters.

use super::sql::{execute, fetch};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ThrottleRow {
    pub key: String,
    pub consecutive_failures: i64,
    pub window_start: Millis,
    pub window_failures: i64,
    pub blocked_until: Millis,
}

impl Store {
    pub async fn throttle(&self, key: &str) -> StoreResult<Option<ThrottleRow>> {
        Ok(fetch!(
            fetch_optional(&self.pool),
            "SELECT key, consecutive_failures, window_start, window_failures, blocked_until FROM signin_throttle WHERE key = $1";
            key
        ))
    }
}

pub async fn for_update(tx: &mut WriteTx, key: &str) -> StoreResult<Option<ThrottleRow>> {
    // On PostgreSQL the row lock serialises concurrent attempts on one key;
    // the row is created first, since `FOR UPDATE` locks nothing that does
    // not exist yet and two first attempts would both read "none". SQLite is
    // already serialised by the write gate.
    let sql = match tx.backend {
        super::Backend::Postgres => {
            execute!(
                tx,
                "INSERT INTO signin_throttle (key, consecutive_failures, window_start, window_failures, blocked_until, \
                 updated_at) VALUES ($1, 0, 0, 0, 0, 0) ON CONFLICT (key) DO NOTHING";
                key
            );
            "SELECT key, consecutive_failures, window_start, window_failures, blocked_until FROM signin_throttle WHERE key = $1 FOR UPDATE"
        }
        super::Backend::Sqlite => {
            "SELECT key, consecutive_failures, window_start, window_failures, blocked_until FROM signin_throttle WHERE key = $1"
        }
    };
    Ok(fetch!(fetch_optional(tx.conn().await?), sql; key))
}

pub async fn save(tx: &mut WriteTx, row: &ThrottleRow, now: Millis) -> StoreResult<()> {
    execute!(
        tx,
        "INSERT INTO signin_throttle (key, consecutive_failures, window_start, window_failures, blocked_until, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO UPDATE SET consecutive_failures = $2, window_start = $3, \
         window_failures = $4, blocked_until = $5, updated_at = $6";
        &row.key, row.consecutive_failures, row.window_start, row.window_failures, row.blocked_until, now
    );
    Ok(())
}

pub async fn clear(tx: &mut WriteTx, key: &str) -> StoreResult<()> {
    execute!(tx, "DELETE FROM signin_throttle WHERE key = $1"; key);
    Ok(())
}

/// [`clear`] queued in a batched transaction (a sign-in's).
pub fn clear_queued(tx: &mut WriteTx, key: &str) {
    tx.queue("DELETE FROM signin_throttle WHERE key = $1", vec![key.into()]);
}

/// Gives back one failure of a counter (a source's budget, spent by a
/// reservation that succeeded), in one statement: no read, so it can ride
/// in a batched transaction.
pub fn give_back_queued(tx: &mut WriteTx, key: &str, now: Millis) {
    tx.queue(
        "UPDATE signin_throttle SET \
         window_failures = CASE WHEN window_failures > 0 THEN window_failures - 1 ELSE 0 END, \
         consecutive_failures = CASE WHEN consecutive_failures > 0 THEN consecutive_failures - 1 ELSE 0 END, \
         updated_at = $2 WHERE key = $1",
        vec![key.into(), now.into()],
    );
}

/// Forgets counters idle for a day (they can no longer block anything).
pub async fn delete_stale(tx: &mut WriteTx, now: Millis) -> StoreResult<u64> {
    Ok(execute!(tx, "DELETE FROM signin_throttle WHERE updated_at < $1 AND blocked_until < $2"; now - 86_400_000, now))
}
