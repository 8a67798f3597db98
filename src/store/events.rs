//! The connection log's storage: append (chained) and query.

use super::{Backend, ChainHead, Store, StoreResult, WriteTx};
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

/// The last record of the chain, as the appending transaction must see it.
///
/// On PostgreSQL an advisory lock serialises appenders (of every instance);
/// it is taken by the last statements of a transaction, which then waits for
/// nothing else, so it cannot close a deadlock cycle.
///
/// SQLite is serialised by the write gate, which remembers the head it last
/// committed: no read at all in the common case. Another process (the
/// command line) may have appended since; `append_events` notices, and the
/// caller starts again from `reload_chain_head`.
pub async fn chain_head(tx: &mut WriteTx) -> StoreResult<ChainHead> {
    if tx.backend == Backend::Sqlite
        && let Some(head) = tx.cached_head()
    {
        return Ok(head);
    }
    reload_chain_head(tx).await
}

/// The last record of the chain, read from the table.
pub async fn reload_chain_head(tx: &mut WriteTx) -> StoreResult<ChainHead> {
    tx.forget_cached_head();
    if tx.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7215001)").execute(tx.conn().await?).await?;
    }
    let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(tx.conn().await?)
        .await?;
    if let Some(head) = head {
        return Ok(head);
    }
    // Everything was purged: the chain goes on from the last removed record.
    Ok(super::last_log_purge_in(tx).await?.unwrap_or((0, String::new())))
}

/// Appends records chained after the head they were built on, sent in one
/// batch with whatever the transaction queued before them. Returns false,
/// writing none of them, when the table's last record is not the one the
/// first of them links to: the head was stale (SQLite only, after another
/// process appended; on PostgreSQL the head was read under the lock).
pub async fn append_events(tx: &mut WriteTx, rows: &[EventRow]) -> StoreResult<bool> {
    for e in rows {
        tx.queue(
            INSERT_EVENT_SQL,
            vec![
                e.seq.into(),
                e.time_ms.into(),
                (&e.kind).into(),
                (&e.outcome).into(),
                (&e.email).into(),
                (&e.email_normalized).into(),
                (&e.account_id).into(),
                (&e.partner_id).into(),
                (&e.client_id).into(),
                (&e.ip).into(),
                (&e.user_agent).into(),
                (&e.actor).into(),
                (&e.session_hash).into(),
                (&e.details).into(),
                (&e.prev_hash).into(),
                (&e.hash).into(),
            ],
        );
    }
    let appended = tx.flush().await?.len();
    if appended != rows.len() {
        // Each record links to the one before it, so when the first is
        // refused so are the others: nothing of this append was written.
        return Ok(false);
    }
    if let Some(last) = rows.last() {
        tx.appended_head = Some((last.seq, last.hash.clone()));
    }
    Ok(true)
}

/// A record goes in only right after the record it links to (or into an
/// empty table, which a purge leaves linked to the last removed record).
const INSERT_EVENT_SQL: &str = "INSERT INTO events (seq, time_ms, kind, outcome, email, email_normalized, account_id, \
     partner_id, client_id, ip, user_agent, actor, session_hash, details, prev_hash, hash) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 \
     WHERE COALESCE((SELECT hash FROM events ORDER BY seq DESC LIMIT 1), $15) = $15 RETURNING seq";

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
