//! The connection log's storage: append (chained) and query.

use super::sql::{execute, fetch};
use super::sync_read::point_row;
use super::write_tx::{Param, Queued};
use super::{Backend, Store, StoreError, StoreResult, WriteTx, write_tx::ChainHead};
use crate::clock::Millis;

point_row! {
#[derive(Debug, Clone, serde::Serialize)]
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
}

pub(super) const EVENT_COLUMNS: &str = "seq, time_ms, kind, outcome, email, email_normalized, account_id, partner_id, client_id, \
     ip, user_agent, actor, session_hash, details, prev_hash, hash";

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub email_normalized: Option<String>,
    pub partner_id: Option<String>,
    pub kind: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
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
/// nothing else, so it cannot close a deadlock cycle. The hot paths take it
/// once per batch of transactions (`pg_group_commit.rs`).
///
/// SQLite is serialised by the write gate, which remembers the head it last
/// committed: no read at all in the common case. Another process (the
/// command line) may have appended since: the first record is then refused
/// and chained again after the real head (`WriteTx::flush`).
pub async fn chain_head(tx: &mut WriteTx) -> StoreResult<ChainHead> {
    if tx.backend == Backend::Sqlite
        && let Some(head) = tx.cached_head()
    {
        return Ok(head);
    }
    reload_chain_head(tx).await
}

/// The connection log's lock on PostgreSQL, across instances.
pub(super) const LOG_LOCK: &str = "SELECT pg_advisory_xact_lock(7215001)";

/// The last record of the chain, read from the table.
pub async fn reload_chain_head(tx: &mut WriteTx) -> StoreResult<ChainHead> {
    tx.forget_cached_head();
    if tx.backend == Backend::Postgres {
        execute!(tx, LOG_LOCK);
    }
    let conn = tx.conn().await?;
    read_chain_head_on(conn).await
}

/// The head read on the transaction's connection as it is (nothing sent
/// first: this runs while a batch is being retried).
pub(super) async fn read_chain_head_on(conn: &mut sqlx::AnyConnection) -> StoreResult<ChainHead> {
    let head: Option<(i64, String)> = fetch!(fetch_optional(&mut *conn), HEAD_SQL);
    if let Some(head) = head {
        return Ok(head);
    }
    let purged: Option<(i64, String)> = fetch!(fetch_optional(&mut *conn), PURGED_HEAD_SQL);
    Ok(purged.unwrap_or((0, String::new())))
}

/// The last record of the chain.
pub(super) const HEAD_SQL: &str = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1";

/// When every record was purged, the chain goes on from the last removed
/// one.
pub(super) const PURGED_HEAD_SQL: &str = "SELECT up_to_seq, last_hash FROM log_purges ORDER BY up_to_seq DESC LIMIT 1";

/// Appends records, chained with `hash` after `chain_head`: now, or by the
/// SQLite group writer for a batched transaction. They are queued and sent
/// with the commit; `hash` chains them again should the head turn out to be
/// stale.
pub async fn append(tx: &mut WriteTx, mut rows: Vec<EventRow>, hash: fn(&EventRow) -> String) -> StoreResult<()> {
    if tx.chains_at_commit() {
        tx.add_unchained_events(rows, hash);
        return Ok(());
    }
    let head = chain_head(tx).await?;
    chain_after(head, &mut rows, hash);
    queue_chained(tx, rows, hash);
    Ok(())
}

/// Queues records already chained after the transaction's head.
pub(super) fn queue_chained(tx: &mut WriteTx, rows: Vec<EventRow>, rehash: fn(&EventRow) -> String) {
    let Some(last) = rows.last() else { return };
    tx.appended_head = Some((last.seq, last.hash.clone()));
    for row in &rows {
        tx.queue_event(event_insert(row));
    }
    tx.add_pending_events(rows, rehash);
}

/// Links records one after the other from `head` (sequence, previous hash,
/// own hash by `hash`); returns the new head.
pub(super) fn chain_after(head: ChainHead, rows: &mut [EventRow], hash: fn(&EventRow) -> String) -> ChainHead {
    let (mut seq, mut prev) = head;
    for row in rows.iter_mut() {
        seq += 1;
        row.seq = seq;
        row.prev_hash = prev;
        row.hash = hash(row);
        prev = row.hash.clone();
    }
    (seq, prev)
}

pub(super) fn event_insert(e: &EventRow) -> Queued {
    Queued::new(
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
    )
}

/// One insert of several records already chained (PostgreSQL, under the
/// log's lock, which makes `INSERT_EVENT_SQL`'s check of the link needless):
/// its SQL and parameters.
pub(super) fn multi_row_insert(rows: &[&EventRow]) -> (String, Vec<Param>) {
    const COLUMNS: usize = 16;
    let mut sql = format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES ");
    let mut params = Vec::with_capacity(rows.len() * COLUMNS);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let first = i * COLUMNS + 1;
        sql.push('(');
        for n in first..first + COLUMNS {
            if n > first {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
        params.extend(event_insert(row).params.into_iter().take(COLUMNS));
    }
    (sql, params)
}

/// A record goes in only right after the record it links to (or into an
/// empty table, which a purge leaves linked to the last removed record);
/// otherwise its hash is NULL, which the table refuses with an error naming
/// `events.hash`: the batch stops there, before its COMMIT.
pub(super) const INSERT_EVENT_SQL: &str = "INSERT INTO events (seq, time_ms, kind, outcome, email, \
     email_normalized, account_id, partner_id, client_id, ip, user_agent, actor, session_hash, details, prev_hash, \
     hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
     CASE WHEN COALESCE((SELECT hash FROM events ORDER BY seq DESC LIMIT 1), $15) = $15 THEN $16 END)";

impl Store {
    /// Records matching every given filter, oldest first. `--email` matches
    /// every record about that account: by the address or by the account id
    /// the address had.
    pub async fn query_events(&self, f: &EventFilter) -> StoreResult<Vec<EventRow>> {
        // A person's records: those naming the address, and those of every
        // account that address had. The accounts are read first, so that the
        // main query names them: given `account_id IN (SELECT …)` or an OR,
        // PostgreSQL's estimates led it to scan the whole table (4 s on 10
        // million events).
        let accounts: Vec<String> = match &f.email_normalized {
            Some(email) => sqlx::query_as::<_, (String,)>(
                "SELECT DISTINCT account_id FROM events WHERE email_normalized = $1 AND account_id IS NOT NULL",
            )
            .bind(email.clone())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect(),
            None => Vec::new(),
        };
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.email_normalized.is_some() {
            let mut person = format!("email_normalized = {}", next());
            if !accounts.is_empty() {
                let list: Vec<String> = accounts.iter().map(|_| next()).collect();
                person.push_str(&format!(" OR account_id IN ({})", list.join(", ")));
            }
            sql.push_str(&format!(" AND ({person})"));
        }
        // In the order of the binds below.
        for (condition, given) in [
            ("partner_id =", f.partner_id.is_some()),
            ("kind =", f.kind.is_some()),
            ("outcome =", f.outcome.is_some()),
            ("ip =", f.ip.is_some()),
            ("time_ms >=", f.since_ms.is_some()),
            ("time_ms <", f.until_ms.is_some()),
        ] {
            if given {
                sql.push_str(&format!(" AND {condition} {}", next()));
            }
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {} OFFSET {}", next(), next()));
        let mut q = sqlx::query_as::<_, EventRow>(&sql);
        if let Some(e) = &f.email_normalized {
            q = q.bind(e.clone());
            for id in &accounts {
                q = q.bind(id.clone());
            }
        }
        for v in [&f.partner_id, &f.kind, &f.outcome, &f.ip].into_iter().flatten() {
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
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
        if let Some(readers) = &self.sync_readers {
            // The alerts job reads every record once more after its write;
            // through sqlx's `Any` rows that read cost about 30,000
            // instructions a record (docs/benchmarks/history.md). One
            // hand-off per page, off the runtime: a page is up to 5,000
            // records for `logs verify`.
            let readers = readers.clone();
            return tokio::task::spawn_blocking(move || readers.rows(&sql, (seq, limit)))
                .await
                .map_err(|e| StoreError::Sqlite { extended_code: None, message: format!("log reader: {e}") })?;
        }
        if let Some(readers) = &self.pg_readers {
            return readers.rows(&sql, &[seq.into(), limit.into()]).await;
        }
        Ok(fetch!(fetch_all(&self.pool), &sql; seq, limit))
    }
}

/// The last record (seq, hash, time), read in the caller's transaction after
/// `chain_head` took the appenders' lock.
pub async fn head_in(tx: &mut WriteTx) -> StoreResult<Option<(i64, String, Millis)>> {
    let head: Option<(i64, String, Millis)> =
        fetch!(fetch_optional(tx.conn().await?), "SELECT seq, hash, time_ms FROM events ORDER BY seq DESC LIMIT 1");
    Ok(head)
}

/// The last record strictly older than `before`, such that every record up
/// to it is older too (the removed part is always a prefix of the chain).
pub async fn prefix_before(tx: &mut WriteTx, before: Millis) -> StoreResult<Option<(i64, i64, String)>> {
    let first_kept: (Option<i64>,) = fetch!(
        fetch_one(tx.conn().await?),
        "SELECT MIN(seq) FROM events WHERE time_ms >= $1";
        before
    );
    let bounds: (Option<i64>, Option<i64>) = match first_kept.0 {
        Some(kept) => {
            fetch!(fetch_one(tx.conn().await?), "SELECT MIN(seq), MAX(seq) FROM events WHERE seq < $1"; kept)
        }
        None => fetch!(fetch_one(tx.conn().await?), "SELECT MIN(seq), MAX(seq) FROM events"),
    };
    let (Some(first), Some(last)) = bounds else { return Ok(None) };
    let hash: (String,) = fetch!(fetch_one(tx.conn().await?), "SELECT hash FROM events WHERE seq = $1"; last);
    Ok(Some((first, last, hash.0)))
}

/// Per partner (None: records without one), how many records up to `seq`.
pub async fn counts_by_partner(tx: &mut WriteTx, up_to_seq: i64) -> StoreResult<Vec<(Option<String>, i64)>> {
    Ok(fetch!(
        fetch_all(tx.conn().await?),
        "SELECT partner_id, COUNT(*) FROM events WHERE seq <= $1 GROUP BY partner_id ORDER BY partner_id";
        up_to_seq
    ))
}

/// Deletes the records up to `up_to_seq`, and the checkpoints of that range
/// (nothing is left for them to vouch for).
pub async fn delete_up_to(tx: &mut WriteTx, up_to_seq: i64) -> StoreResult<u64> {
    execute!(tx, "DELETE FROM log_checkpoints WHERE seq <= $1"; up_to_seq);
    Ok(execute!(tx, "DELETE FROM events WHERE seq <= $1"; up_to_seq))
}

/// Which events a detector looks back at, by one column.
#[derive(Debug, Clone)]
pub enum EventKey<'a> {
    Ip(&'a str),
    Email(&'a str),
    Account(&'a str),
}

impl Store {
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
    ) -> StoreResult<Vec<EventRow>> {
        let (column, value) = match key {
            EventKey::Ip(v) => ("ip", *v),
            EventKey::Email(v) => ("email_normalized", *v),
            EventKey::Account(v) => ("account_id", *v),
        };
        let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
        let sql = format!(
            "SELECT {} FROM events WHERE {column} = $1 AND time_ms >= $2 AND seq <= $3 AND kind IN ({}) \
             ORDER BY seq DESC LIMIT $4",
            EVENT_COLUMNS,
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as::<_, EventRow>(&sql).bind(value).bind(since_ms).bind(up_to_seq).bind(limit);
        for k in kinds {
            q = q.bind(k.to_string());
        }
        let mut rows = q.fetch_all(&self.pool).await?;
        rows.reverse();
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64) -> EventRow {
        EventRow {
            seq,
            time_ms: 1,
            kind: "k".into(),
            outcome: "success".into(),
            email: None,
            email_normalized: None,
            account_id: None,
            partner_id: None,
            client_id: None,
            ip: None,
            user_agent: None,
            actor: "a".into(),
            session_hash: None,
            details: "{}".into(),
            prev_hash: format!("p{seq}"),
            hash: format!("h{seq}"),
        }
    }

    #[test]
    fn several_records_go_in_one_insert_each_with_its_own_parameters() {
        let (first, second) = (record(7), record(8));
        let (sql, params) = multi_row_insert(&[&first, &second]);
        assert!(sql.starts_with(&format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, ")), "{sql}");
        assert!(
            sql.ends_with(
                "$15, $16), ($17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 32);
        assert_eq!(params[0], Param::Int(Some(7)));
        assert_eq!(params[16], Param::Int(Some(8)), "the second row starts after the first's 16");
        assert_eq!(params[15], Param::Text(Some("h7".into())), "the last column is the hash");
        assert_eq!(params[31], Param::Text(Some("h8".into())));
    }
}
