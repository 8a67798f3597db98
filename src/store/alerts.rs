//! The alert detectors' state: how far in the log they have looked
//! (`job_cursors`) and when each alert was last raised (`alert_last`).

use super::sql::{execute, fetch};
use super::{Store, StoreResult, WriteTx};
use crate::clock::Millis;

impl Store {
    /// The last event a background job has examined.
    pub async fn job_cursor(&self, name: &str) -> StoreResult<i64> {
        let row: Option<(i64,)> = fetch!(
            fetch_optional(&self.pool),
            "SELECT last_seq FROM job_cursors WHERE name = $1";
            name
        );
        Ok(row.map(|r| r.0).unwrap_or(0))
    }
}

/// Compare-and-set of a job's cursor: false when another instance moved it
/// first (it then owns these events).
pub async fn advance_cursor(tx: &mut WriteTx, name: &str, from: i64, to: i64) -> StoreResult<bool> {
    let done = execute!(tx, "UPDATE job_cursors SET last_seq = $1 WHERE name = $2 AND last_seq = $3"; to, name, from);
    Ok(done == 1)
}

pub async fn last_raised(tx: &mut WriteTx, detector: &str, subject: &str) -> StoreResult<Option<Millis>> {
    let row: Option<(i64,)> = fetch!(
        fetch_optional(tx.conn().await?),
        "SELECT raised_at FROM alert_last WHERE detector = $1 AND subject = $2";
        detector, subject
    );
    Ok(row.map(|r| r.0))
}

pub async fn set_last_raised(tx: &mut WriteTx, detector: &str, subject: &str, at: Millis) -> StoreResult<()> {
    execute!(
        tx,
        "INSERT INTO alert_last (detector, subject, raised_at) VALUES ($1, $2, $3) \
         ON CONFLICT (detector, subject) DO UPDATE SET raised_at = $3";
        detector, subject, at
    );
    Ok(())
}
