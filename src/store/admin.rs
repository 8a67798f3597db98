//! Administration: who holds a role, a partner's accounts as the console
//! shows them, and the state of the alert detectors.

use super::{Store, StoreResult, WriteTx, accounts::AccountRow};
use crate::clock::Millis;

/// A partner's account with its last sign-in (from the connection log).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AdminAccountRow {
    pub id: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub function: String,
    pub state: String,
    pub closure_requested_on: Option<String>,
    pub last_signin_ms: Option<Millis>,
}

/// Which events a detector looks back at, by one column.
#[derive(Debug, Clone)]
pub enum EventKey<'a> {
    Ip(&'a str),
    Email(&'a str),
    Account(&'a str),
}

impl Store {
    /// Every (account, role) pair, by email then role.
    pub async fn administrators(&self) -> StoreResult<Vec<(AccountRow, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            account: AccountRow,
            role: String,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT a.id, a.email, a.email_normalized, a.given_name, a.family_name, a.function, a.partner_id, \
             p.name AS partner_name, a.state, a.password_hash, a.created_at, a.updated_at, r.role \
             FROM account_roles r JOIN accounts a ON a.id = r.account_id LEFT JOIN partners p ON p.id = a.partner_id \
             ORDER BY a.email_normalized, r.role",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.account, r.role)).collect())
    }

    pub async fn partner_accounts(&self, partner_id: &str) -> StoreResult<Vec<AdminAccountRow>> {
        Ok(sqlx::query_as(
            "SELECT a.id, a.email, a.given_name, a.family_name, a.function, a.state, a.closure_requested_on, \
             (SELECT MAX(e.time_ms) FROM events e WHERE e.account_id = a.id AND e.kind = 'signin') AS last_signin_ms \
             FROM accounts a WHERE a.partner_id = $1 ORDER BY a.email_normalized",
        )
        .bind(partner_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The last event a background job has examined.
    pub async fn job_cursor(&self, name: &str) -> StoreResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT last_seq FROM job_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0).unwrap_or(0))
    }

    /// Events of `kinds` matching `key`, from `since_ms`, up to and including
    /// record `up_to_seq` (so that a detector judges an event on what had
    /// happened by then, whenever it runs), oldest first, at most `limit`.
    pub async fn events_by_key(
        &self,
        kinds: &[&str],
        key: &EventKey<'_>,
        since_ms: Millis,
        up_to_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<super::events::EventRow>> {
        let (column, value) = match key {
            EventKey::Ip(v) => ("ip", *v),
            EventKey::Email(v) => ("email_normalized", *v),
            EventKey::Account(v) => ("account_id", *v),
        };
        let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
        let sql = format!(
            "SELECT {} FROM events WHERE {column} = $1 AND time_ms >= $2 AND seq <= $3 AND kind IN ({}) \
             ORDER BY seq DESC LIMIT $4",
            super::events::EVENT_COLUMNS,
            placeholders.join(", ")
        );
        let mut q =
            sqlx::query_as::<_, super::events::EventRow>(&sql).bind(value).bind(since_ms).bind(up_to_seq).bind(limit);
        for k in kinds {
            q = q.bind(k.to_string());
        }
        let mut rows = q.fetch_all(&self.pool).await?;
        rows.reverse();
        Ok(rows)
    }
}

/// Compare-and-set of a job's cursor: false when another instance moved it
/// first (it then owns these events).
pub async fn advance_job_cursor(tx: &mut WriteTx, name: &str, from: i64, to: i64) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE job_cursors SET last_seq = $1 WHERE name = $2 AND last_seq = $3")
        .bind(to)
        .bind(name)
        .bind(from)
        .execute(tx.conn().await?)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn alert_last(tx: &mut WriteTx, detector: &str, subject: &str) -> StoreResult<Option<Millis>> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT raised_at FROM alert_last WHERE detector = $1 AND subject = $2")
        .bind(detector)
        .bind(subject)
        .fetch_optional(tx.conn().await?)
        .await?;
    Ok(row.map(|r| r.0))
}

pub async fn set_alert_last(tx: &mut WriteTx, detector: &str, subject: &str, at: Millis) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO alert_last (detector, subject, raised_at) VALUES ($1, $2, $3) \
         ON CONFLICT (detector, subject) DO UPDATE SET raised_at = $3",
    )
    .bind(detector)
    .bind(subject)
    .bind(at)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}
