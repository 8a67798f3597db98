//! The connection log's storage: append (chained) and query.

use super::{Backend, Store, StoreResult, WriteTx};
use crate::clock::Millis;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub time_ms: Millis,
    pub kind: String,
    pub outcome: String,
    pub email: Option<String>,
    pub email_normalized: Option<String>,
    pub account_id: Option<String>,
    pub partner_id: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub actor: String,
    pub session_hash: Option<String>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

pub(super) const EVENT_COLUMNS: &str = "seq, time_ms, kind, outcome, email, email_normalized, account_id, partner_id, client_id, \
     ip, user_agent, actor, session_hash, details, prev_hash, hash";

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub email_normalized: Option<String>,
    pub partner_id: Option<String>,
    pub kind: Option<String>,
    pub ip: Option<String>,
    pub since_ms: Option<Millis>,
    pub until_ms: Option<Millis>,
    pub limit: i64,
    pub offset: i64,
}

/// The last record of the chain, read inside the appending transaction. On
/// PostgreSQL an advisory lock serialises appenders; it is taken by the last
/// statements of a transaction, which then waits for nothing else, so it
/// cannot close a deadlock cycle. SQLite is serialised by the write gate.
pub async fn chain_head(tx: &mut WriteTx) -> StoreResult<(i64, String)> {
    if tx.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7215001)").execute(&mut *tx.tx).await?;
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *tx.tx).await?;
    Ok(head.unwrap_or((0, String::new())))
}

pub async fn insert_event(tx: &mut WriteTx, e: &EventRow) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(e.seq)
    .bind(e.time_ms)
    .bind(&e.kind)
    .bind(&e.outcome)
    .bind(&e.email)
    .bind(&e.email_normalized)
    .bind(&e.account_id)
    .bind(&e.partner_id)
    .bind(&e.client_id)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.actor)
    .bind(&e.session_hash)
    .bind(&e.details)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *tx.tx)
    .await?;
    Ok(())
}

impl Store {
    /// Records matching every given filter, oldest first. `--email` matches
    /// every record about that account: by the address or by the account id
    /// the address had.
    pub async fn query_events(&self, f: &EventFilter) -> StoreResult<Vec<EventRow>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.email_normalized.is_some() {
            let (a, b) = (next(), next());
            sql.push_str(&format!(
                " AND (email_normalized = {a} OR account_id IN (SELECT DISTINCT account_id FROM events \
                 WHERE email_normalized = {b} AND account_id IS NOT NULL))"
            ));
        }
        if f.partner_id.is_some() {
            sql.push_str(&format!(" AND partner_id = {}", next()));
        }
        if f.kind.is_some() {
            sql.push_str(&format!(" AND kind = {}", next()));
        }
        if f.ip.is_some() {
            sql.push_str(&format!(" AND ip = {}", next()));
        }
        if f.since_ms.is_some() {
            sql.push_str(&format!(" AND time_ms >= {}", next()));
        }
        if f.until_ms.is_some() {
            sql.push_str(&format!(" AND time_ms < {}", next()));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {} OFFSET {}", next(), next()));
        let mut q = sqlx::query_as::<_, EventRow>(&sql);
        if let Some(e) = &f.email_normalized {
            q = q.bind(e.clone()).bind(e.clone());
        }
        for v in [&f.partner_id, &f.kind, &f.ip].into_iter().flatten() {
            q = q.bind(v.clone());
        }
        for v in [f.since_ms, f.until_ms].into_iter().flatten() {
            q = q.bind(v);
        }
        q = q.bind(f.limit).bind(f.offset);
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// The whole chain in order, in pages, for verification.
    pub async fn events_after(&self, seq: i64, limit: i64) -> StoreResult<Vec<EventRow>> {
        Ok(sqlx::query_as(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
