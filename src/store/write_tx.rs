//! Write transactions, and the statements they send in batches.
//!
//! On SQLite every round trip to the connection's worker thread costs two
//! context switches and, under load, a wait for the async task to be
//! scheduled again, which is far more than the statements themselves; and
//! SQLite has one writer, so that time is spent holding the write gate that
//! every other write waits for. So statements whose outcome the caller does
//! not read right away (new tokens, codes, log records) are queued, and
//! `BEGIN`, the queue and `COMMIT` travel together: a refresh-token rotation
//! is two round trips (the single-use check, then everything else with the
//! commit), an authorization code one.
//!
//! On PostgreSQL the same statements are sent one by one at the same moments
//! (the extended protocol takes one statement per message), inside an
//! ordinary sqlx transaction.
//!
//! A transaction begun with `Store::begin_batched_write` is *deferred*: it
//! holds its statements and log records until its commit, then hands them to
//! its backend's group writer (`group_commit.rs`, `pg_group_commit.rs`),
//! which commits it together with others.
//!
//! One begun with `Store::begin_bulk_write` on SQLite is *held*: the group
//! writer's thread runs it alone, its statements handed over in chunks as
//! they are queued (`bulk_write.rs`).

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::bulk_write::{self, Held};
use super::group_commit::GroupWriter;
use super::pg_group_commit::PgGroupWriter;
use super::{Backend, StoreError, StoreResult, events::EventRow};

/// The last record of the connection-log chain: its sequence and hash.
pub type ChainHead = (i64, String);

/// A value bound to a queued statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

/// `impl From<type> for Param` for each type a queued statement binds.
macro_rules! param_from {
    ($($ty:ty => |$v:ident| $param:expr),* $(,)?) => {
        $(impl From<$ty> for Param {
            fn from($v: $ty) -> Self {
                $param
            }
        })*
    };
}

param_from! {
    &str => |v| Param::Text(Some(v.to_string())),
    &String => |v| Param::Text(Some(v.clone())),
    String => |v| Param::Text(Some(v)),
    Option<String> => |v| Param::Text(v),
    Option<&str> => |v| Param::Text(v.map(str::to_string)),
    &Option<String> => |v| Param::Text(v.clone()),
    i64 => |v| Param::Int(Some(v)),
    Option<i64> => |v| Param::Int(v),
}

#[derive(Clone)]
pub(super) struct Queued {
    pub(super) sql: &'static str,
    pub(super) params: Vec<Param>,
    /// For an insert whose unique-constraint violation means that the
    /// record already exists: what it creates (`StoreError::Conflict`).
    pub(super) conflict: Option<&'static str>,
}

impl Queued {
    pub(super) fn new(sql: &'static str, params: Vec<Param>) -> Self {
        Queued { sql, params, conflict: None }
    }
}

/// Statements sent in one SQL text on SQLite. Preparing a text costs more
/// than linear time in its length: one text for the 15,000 statements of a
/// 5,000-person annex took 20 s, texts of 32 take well under a second, and
/// still save all but one round trip in 32.
const STATEMENTS_PER_TEXT: usize = 32;

enum Conn {
    /// A transaction for a group writer (`group_commit.rs`,
    /// `pg_group_commit.rs`): no gate, no connection until it needs one.
    Deferred(Batched),
    /// SQLite: the writer connection; `BEGIN` and `COMMIT` travel with the
    /// queued statements.
    Sqlite {
        conn: PoolConnection<Any>,
        begun: bool,
    },
    Postgres(Transaction<'static, Any>),
    /// SQLite: a transaction run by the group writer's thread
    /// (`bulk_write.rs`); queued statements go there in chunks.
    Held(Held),
}

/// Where a deferred transaction goes at its commit.
pub(super) enum Batched {
    Sqlite { writer: Arc<GroupWriter>, gate: Arc<Mutex<Option<ChainHead>>>, pool: AnyPool },
    Postgres { writer: Arc<PgGroupWriter>, pool: AnyPool },
}

/// Log records appended in a transaction and not yet known to be written,
/// kept so that they can be chained again after a head that turned out to be
/// stale (SQLite, after another process appended).
pub(super) struct PendingEvents {
    pub(super) rows: Vec<EventRow>,
    pub(super) rehash: fn(&EventRow) -> String,
}

impl PendingEvents {
    fn extend(slot: &mut Option<PendingEvents>, rows: Vec<EventRow>, rehash: fn(&EventRow) -> String) {
        match slot {
            Some(p) => p.rows.extend(rows),
            None => *slot = Some(PendingEvents { rows, rehash }),
        }
    }
}

/// A write transaction; on SQLite it also holds the single-writer gate. It
/// rolls back when dropped without `commit`.
pub struct WriteTx {
    conn: Option<Conn>,
    pub backend: Backend,
    gate: Option<OwnedMutexGuard<Option<ChainHead>>>,
    /// The chain head this transaction's appends lead to, published to the
    /// gate only once the transaction has committed.
    pub(super) appended_head: Option<ChainHead>,
    queued: Vec<Queued>,
    pub(super) pending_events: Option<PendingEvents>,
    /// Deferred transactions: log records not chained yet (the group writer
    /// chains them).
    unchained_events: Option<PendingEvents>,
    /// Run once the transaction has committed (counters of what it wrote).
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// Set by [`WriteTx::hold_mail_until`]: the messages this transaction
    /// queues are claimed by their insert, for the caller to deliver.
    pub(super) held_mail: Option<HeldMail>,
    finished: bool,
}

/// Messages queued already claimed, until `until`, by the one who queues
/// them (see `store::mail::enqueue`).
pub(super) struct HeldMail {
    pub(super) until: crate::clock::Millis,
    pub(super) rows: Vec<super::mail::MailRow>,
}

const BEGIN: &str = "BEGIN IMMEDIATE";
const COMMIT: &str = "COMMIT";

impl WriteTx {
    pub(super) fn sqlite(conn: PoolConnection<Any>, gate: Option<OwnedMutexGuard<Option<ChainHead>>>) -> Self {
        Self::with(Conn::Sqlite { conn, begun: false }, Backend::Sqlite, gate)
    }

    pub(super) fn postgres(tx: Transaction<'static, Any>) -> Self {
        Self::with(Conn::Postgres(tx), Backend::Postgres, None)
    }

    /// `head`: the chain head inside the transaction.
    pub(super) fn held(held: Held, head: ChainHead) -> Self {
        let mut tx = Self::with(Conn::Held(held), Backend::Sqlite, None);
        tx.appended_head = Some(head);
        tx
    }

    pub(super) fn deferred(batched: Batched) -> Self {
        let backend = match batched {
            Batched::Sqlite { .. } => Backend::Sqlite,
            Batched::Postgres { .. } => Backend::Postgres,
        };
        Self::with(Conn::Deferred(batched), backend, None)
    }

    fn with(conn: Conn, backend: Backend, gate: Option<OwnedMutexGuard<Option<ChainHead>>>) -> Self {
        WriteTx {
            conn: Some(conn),
            backend,
            gate,
            appended_head: None,
            queued: Vec::new(),
            pending_events: None,
            unchained_events: None,
            after_commit: Vec::new(),
            held_mail: None,
            finished: false,
        }
    }

    /// The messages queued from now on in this transaction are inserted
    /// already claimed until `until` (not due before then), and kept for
    /// [`WriteTx::take_held_mail`]: a caller that delivers what it queued
    /// right after the commit (a command) needs no claim, which rewrote each
    /// message's row, nor to read the messages back. Should it die before
    /// delivering them, they fall due at `until`, as after a lost lease.
    pub fn hold_mail_until(&mut self, until: crate::clock::Millis) {
        self.held_mail = Some(HeldMail { until, rows: Vec::new() });
    }

    /// The messages held so far (see [`WriteTx::hold_mail_until`]); to be
    /// delivered only once the transaction has committed.
    pub fn take_held_mail(&mut self) -> Vec<super::mail::MailRow> {
        self.held_mail.as_mut().map(|h| std::mem::take(&mut h.rows)).unwrap_or_default()
    }

    /// Runs `f` if and once the transaction commits.
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(f));
    }

    fn committed(&mut self) {
        self.finished = true;
        for f in std::mem::take(&mut self.after_commit) {
            f();
        }
    }

    /// Whether appending log records now holds up other transactions until
    /// this one commits: on PostgreSQL the first append takes the log's lock
    /// (`events::LOG_LOCK`) for the rest of the transaction, so a long one
    /// appends last. On SQLite a write transaction holds the only write lock
    /// from its start anyway, and a deferred one chains at its commit.
    pub fn appending_holds_the_log(&self) -> bool {
        matches!(self.conn, Some(Conn::Postgres(_)))
    }

    /// Whether log records appended now are chained by the group writer at
    /// the commit rather than by the caller.
    pub(super) fn chains_at_commit(&self) -> bool {
        matches!(self.conn, Some(Conn::Deferred(_)))
    }

    pub(super) fn add_unchained_events(&mut self, rows: Vec<EventRow>, rehash: fn(&EventRow) -> String) {
        PendingEvents::extend(&mut self.unchained_events, rows, rehash);
    }

    /// A deferred transaction that needs the connection becomes an ordinary
    /// one: it takes the gate and the writer connection (SQLite) or begins a
    /// transaction (PostgreSQL), and chains the log records it already holds
    /// after the head, as `audit::append` would.
    async fn attach(&mut self) -> StoreResult<()> {
        let (gate, pool) = match &self.conn {
            Some(Conn::Deferred(Batched::Sqlite { gate, pool, .. })) => (gate.clone(), pool.clone()),
            Some(Conn::Deferred(Batched::Postgres { pool, .. })) => {
                let mut tx = pool.begin().await?;
                let unchained = match self.unchained_events.take() {
                    Some(mut unchained) => {
                        sqlx::query(super::events::LOG_LOCK).execute(&mut *tx).await?;
                        let head = super::events::read_chain_head_on(&mut tx).await?;
                        super::events::chain_after(head, &mut unchained.rows, unchained.rehash);
                        Some(unchained)
                    }
                    None => None,
                };
                self.conn = Some(Conn::Postgres(tx));
                if let Some(unchained) = unchained {
                    super::events::queue_chained(self, unchained.rows, unchained.rehash);
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let guard = gate.lock_owned().await;
        let conn = pool.acquire().await?;
        self.gate = Some(guard);
        self.conn = Some(Conn::Sqlite { conn, begun: false });
        let Some(mut unchained) = self.unchained_events.take() else { return Ok(()) };
        let head = match self.cached_head() {
            Some(head) => head,
            None => {
                self.queued.insert(0, Queued::new(BEGIN, Vec::new()));
                self.flush_attached().await?;
                let Some(Conn::Sqlite { conn, .. }) = self.conn.as_mut() else {
                    return Err(StoreError::Corrupt("writer connection lost".into()));
                };
                super::events::read_chain_head_on(conn).await?
            }
        };
        super::events::chain_after(head, &mut unchained.rows, unchained.rehash);
        super::events::queue_chained(self, unchained.rows, unchained.rehash);
        Ok(())
    }

    /// The connection, for a statement whose answer is needed now: what was
    /// queued is sent first, so statements keep their order.
    pub async fn conn(&mut self) -> StoreResult<&mut AnyConnection> {
        self.attach().await?;
        if let Some(Conn::Sqlite { begun: false, .. }) = &self.conn {
            self.queued.insert(0, Queued::new(BEGIN, Vec::new()));
        }
        self.flush().await?;
        match self.conn.as_mut() {
            Some(Conn::Sqlite { conn, .. }) => Ok(&mut **conn),
            Some(Conn::Postgres(tx)) => Ok(&mut **tx),
            Some(Conn::Held(held)) => held.read_conn().await,
            Some(Conn::Deferred(_)) | None => Err(StoreError::Corrupt("transaction already finished".into())),
        }
    }

    /// Queues a statement whose outcome is not read (an error still fails
    /// the transaction, at the latest when it commits). `$n` parameters.
    pub(crate) fn queue(&mut self, sql: &'static str, params: Vec<Param>) {
        self.push(Queued::new(sql, params));
    }

    /// Queues an insert whose unique-constraint violation means that `what`
    /// already exists: the error is then `StoreError::Conflict(what)`, as
    /// for an insert sent at once (`insert!`).
    pub(crate) fn queue_insert(&mut self, what: &'static str, sql: &'static str, params: Vec<Param>) {
        self.push(Queued { sql, params, conflict: Some(what) });
    }

    pub(super) fn queue_event(&mut self, insert: Queued) {
        self.push(insert);
    }

    /// A held transaction hands its statements over as they accumulate, for
    /// the writer's thread to run them while this one goes on; an error is
    /// reported at the commit.
    fn push(&mut self, q: Queued) {
        self.queued.push(q);
        if let Some(Conn::Held(held)) = &self.conn
            && self.queued.len() >= bulk_write::CHUNK
        {
            // Refused only when the writer's thread is gone, which the
            // commit reports.
            let _ = held.send(std::mem::take(&mut self.queued));
        }
    }

    pub(super) fn add_pending_events(&mut self, rows: Vec<EventRow>, rehash: fn(&EventRow) -> String) {
        PendingEvents::extend(&mut self.pending_events, rows, rehash);
    }

    /// Sends what is queued; returns the rows of queued `RETURNING` clauses.
    pub(crate) async fn flush(&mut self) -> StoreResult<Vec<AnyRow>> {
        self.attach().await?;
        self.flush_attached().await
    }

    async fn flush_attached(&mut self) -> StoreResult<Vec<AnyRow>> {
        if self.queued.is_empty() {
            return Ok(Vec::new());
        }
        let mut queued = std::mem::take(&mut self.queued);
        let result = match self.conn.as_mut() {
            None | Some(Conn::Deferred(_)) => {
                return Err(StoreError::Corrupt("transaction already finished".into()));
            }
            Some(Conn::Sqlite { conn, begun }) => {
                if !*begun {
                    if queued.first().is_none_or(|q| q.sql != BEGIN) {
                        queued.insert(0, Queued::new(BEGIN, Vec::new()));
                    }
                    *begun = true;
                }
                match send_in_texts(conn, &queued).await {
                    Ok(rows) => Ok(rows),
                    Err((sent, e)) if is_stale_chain(&e) => {
                        // The texts before the failed one went through.
                        queued.drain(..sent);
                        return self.rechain(queued).await;
                    }
                    Err((_, e)) => Err(e),
                }
            }
            Some(Conn::Held(held)) => held.send(queued).map(|()| Vec::new()),
            Some(Conn::Postgres(tx)) => {
                let mut rows = Vec::new();
                let mut failed = None;
                for q in &queued {
                    match bind_all(sqlx::query(q.sql), q.params.clone()).fetch_all(&mut **tx).await {
                        Ok(r) => rows.extend(r),
                        Err(e) => {
                            failed = Some(conflict_of(e, std::slice::from_ref(q)));
                            break;
                        }
                    }
                }
                failed.map_or(Ok(rows), Err)
            }
        };
        match result {
            Ok(rows) => {
                // Whatever was appended is in the table now.
                self.pending_events = None;
                Ok(rows)
            }
            Err(e) => Err(e),
        }
    }

    /// The first log record of a batch was refused because the chain had
    /// moved (another process appended): the statements before it went
    /// through, the transaction is still open; chain the records again after
    /// the head as it is now and send them with what followed them.
    async fn rechain(&mut self, failed: Vec<Queued>) -> StoreResult<Vec<AnyRow>> {
        let Some(mut pending) = self.pending_events.take() else {
            return Err(StoreError::Corrupt("a log record was refused outside an append".into()));
        };
        let Some(first_event) = failed.iter().position(|q| q.sql == super::events::INSERT_EVENT_SQL) else {
            return Err(StoreError::Corrupt("a log record was refused outside an append".into()));
        };
        let rest: Vec<Queued> =
            failed.into_iter().skip(first_event).filter(|q| q.sql != super::events::INSERT_EVENT_SQL).collect();
        let Some(Conn::Sqlite { conn, .. }) = self.conn.as_mut() else {
            return Err(StoreError::Corrupt("re-chaining outside SQLite".into()));
        };
        let head = super::events::read_chain_head_on(conn).await?;
        super::events::chain_after(head, &mut pending.rows, pending.rehash);
        self.queued.extend(pending.rows.iter().map(super::events::event_insert));
        self.appended_head = pending.rows.last().map(|r| (r.seq, r.hash.clone()));
        self.queued.extend(rest);
        let queued = std::mem::take(&mut self.queued);
        let Some(Conn::Sqlite { conn, .. }) = self.conn.as_mut() else {
            return Err(StoreError::Corrupt("re-chaining outside SQLite".into()));
        };
        send_in_texts(conn, &queued).await.map_err(|(_, e)| e)
    }

    pub async fn commit(mut self) -> StoreResult<()> {
        if matches!(self.conn, Some(Conn::Held(_))) {
            self.flush().await?;
            let Some(Conn::Held(held)) = self.conn.take() else {
                return Err(StoreError::Corrupt("held transaction lost".into()));
            };
            self.finished = true;
            held.commit(self.appended_head.take()).await?;
            self.committed();
            return Ok(());
        }
        if let Some(Conn::Deferred(batched)) = &self.conn {
            let statements = std::mem::take(&mut self.queued);
            let events = self.unchained_events.take();
            self.finished = true;
            if !statements.is_empty() || events.is_some() {
                match batched {
                    Batched::Sqlite { writer, .. } => writer.commit(statements, events).await?,
                    Batched::Postgres { writer, .. } => writer.commit(statements, events).await?,
                }
            }
            self.committed();
            return Ok(());
        }
        let result = match self.backend {
            Backend::Sqlite => {
                if matches!(&self.conn, Some(Conn::Sqlite { begun: false, .. })) && self.queued.is_empty() {
                    Ok(())
                } else {
                    self.queue(COMMIT, Vec::new());
                    self.flush().await.map(|_| ())
                }
            }
            Backend::Postgres => match self.flush().await {
                Ok(_) => match self.conn.take() {
                    Some(Conn::Postgres(tx)) => tx.commit().await.map_err(StoreError::from),
                    _ => Ok(()),
                },
                Err(e) => Err(e),
            },
        };
        if result.is_ok() {
            self.committed();
        }
        if let Some(gate) = self.gate.as_mut() {
            // A failed commit leaves the head unknown: read it again next time.
            **gate = if result.is_ok() { self.appended_head.take().or_else(|| gate.take()) } else { None };
        }
        result
    }

    /// The chain head as last committed through this process's gate, if known.
    pub(super) fn cached_head(&self) -> Option<ChainHead> {
        self.appended_head.clone().or_else(|| self.gate.as_ref().and_then(|g| (**g).clone()))
    }

    pub(super) fn forget_cached_head(&mut self) {
        self.appended_head = None;
        if let Some(gate) = self.gate.as_mut() {
            **gate = None;
        }
    }
}

impl Drop for WriteTx {
    /// PostgreSQL: sqlx's transaction rolls itself back. SQLite: the
    /// connection goes back to the pool only after `ROLLBACK`, and the gate
    /// stays held until then so no other write starts inside this one.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(Conn::Sqlite { mut conn, begun: true }) = self.conn.take() else { return };
        let mut gate = self.gate.take();
        if let Some(g) = gate.as_mut() {
            // The batch may have been cut off after its COMMIT went through.
            **g = None;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // "No transaction is active" is expected when the batch
                    // failed in a way that already rolled back.
                    if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await
                        && !e.to_string().contains("no transaction is active")
                    {
                        tracing::warn!(error = %e, "rollback failed; closing the writer connection");
                        conn.close_on_drop();
                    }
                    drop(gate);
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// The error SQLite gives when a log record's link does not match the last
/// record (see `events::INSERT_EVENT_SQL`).
fn is_stale_chain(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(db)) if db.message().contains("events.hash"))
}

/// Sends `queued` on SQLite as texts of [`STATEMENTS_PER_TEXT`] statements;
/// on failure, how many statements the texts before the failed one held.
async fn send_in_texts(conn: &mut AnyConnection, queued: &[Queued]) -> Result<Vec<AnyRow>, (usize, StoreError)> {
    let mut rows = Vec::new();
    for (i, text) in queued.chunks(STATEMENTS_PER_TEXT).enumerate() {
        let (sql, params) = combine(text);
        match bind_all(sqlx::query(&sql), params).fetch_all(&mut *conn).await {
            Ok(r) => rows.extend(r),
            Err(e) => return Err((i * STATEMENTS_PER_TEXT, conflict_of(e, text))),
        }
    }
    Ok(rows)
}

/// A unique-constraint violation of a queued insert made with
/// [`WriteTx::queue_insert`] becomes `Conflict`. In a text of several
/// statements, SQLite names the table (`UNIQUE constraint failed: t.c`).
pub(super) fn conflict_of(e: sqlx::Error, sent: &[Queued]) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
        && let Some(what) = conflict_named(db.message(), sent)
    {
        return StoreError::Conflict(what.to_string());
    }
    StoreError::Database(e)
}

/// What the queued insert of `sent` that a unique violation reported as
/// `message` creates, when it was made with [`WriteTx::queue_insert`].
pub(super) fn conflict_named(message: &str, sent: &[Queued]) -> Option<&'static str> {
    let names_table = |q: &Queued| {
        let table = q.sql.strip_prefix("INSERT INTO ").and_then(|rest| rest.split_whitespace().next());
        sent.len() == 1 || table.is_some_and(|t| message.contains(&format!("{t}.")))
    };
    sent.iter().filter(|q| names_table(q)).find_map(|q| q.conflict)
}

pub(super) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    params: Vec<Param>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for p in params {
        query = match p {
            Param::Text(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
        };
    }
    query
}

/// One SQL text for several statements, each one's `$n` shifted past the
/// parameters of those before it, and their parameters in order.
fn combine(queued: &[Queued]) -> (String, Vec<Param>) {
    let mut sql = String::with_capacity(queued.iter().map(|q| q.sql.len() + 2).sum());
    let mut params = Vec::with_capacity(queued.iter().map(|q| q.params.len()).sum());
    for (i, q) in queued.iter().enumerate() {
        if i > 0 {
            sql.push_str(";\n");
        }
        let offset = params.len();
        shift_parameters(q.sql, offset, &mut sql);
        params.extend(q.params.iter().cloned());
    }
    (sql, params)
}

/// Copies `sql` into `out` with every `$n` written as `$(n + offset)`.
/// Byte by byte, with the numbers written by hand: through `str::find` and
/// `write!` this was 7 % of an annex-1 command's instructions (30,000
/// statements, 310,000 parameters).
pub(super) fn shift_parameters(sql: &str, offset: usize, out: &mut String) {
    let bytes = sql.as_bytes();
    let mut copied = 0;
    let mut at = 0;
    while let Some(dollar) = bytes[at..].iter().position(|&b| b == b'$').map(|p| at + p) {
        let digits = bytes[dollar + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        at = dollar + 1 + digits;
        // `$` alone, or a number too large to be one of ours, is copied as is.
        let Some(n) = sql[dollar + 1..at].parse::<usize>().ok().and_then(|n| n.checked_add(offset)) else {
            continue;
        };
        out.push_str(&sql[copied..dollar]);
        out.push('$');
        push_decimal(out, n);
        copied = at;
    }
    out.push_str(&sql[copied..]);
}

fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[first..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shifted(sql: &str, offset: usize) -> String {
        let mut out = String::new();
        shift_parameters(sql, offset, &mut out);
        out
    }

    #[test]
    fn parameters_are_shifted_past_the_previous_statements() {
        assert_eq!(shifted("INSERT INTO t VALUES ($1, $2, $10)", 3), "INSERT INTO t VALUES ($4, $5, $13)");
        assert_eq!(shifted("SELECT 1", 5), "SELECT 1");
        assert_eq!(shifted("a = $1 AND b = $1", 0), "a = $1 AND b = $1");
        // A lone `$` is not a parameter and is left as it is.
        assert_eq!(shifted("x = '$' || $2", 1), "x = '$' || $3");
        // A number past `usize` is not one of ours either.
        assert_eq!(shifted("$99999999999999999999999 $1", 1), "$99999999999999999999999 $2");
    }

    /// The first form, through `str::find` and `to_string`: the reference.
    fn shifted_slowly(sql: &str, offset: usize) -> String {
        let mut out = String::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            match after[..digits].parse::<usize>().ok().and_then(|n| n.checked_add(offset)) {
                Some(n) => out.push_str(&format!("${n}")),
                None => out.push_str(&rest[at..at + 1 + digits]),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        out
    }

    proptest::proptest! {
        #[test]
        fn shifting_matches_the_reference(sql in "([a-z ,()'é]|\\$|\\$[0-9]{1,3}|\\$[0-9]{25})*", offset in 0usize..100_000) {
            proptest::prop_assert_eq!(shifted(&sql, offset), shifted_slowly(&sql, offset));
        }
    }

    #[test]
    fn statements_combine_in_order_with_their_parameters() {
        let queued = vec![
            Queued::new("INSERT INTO a VALUES ($1, $2)", vec!["x".into(), 1i64.into()]),
            Queued::new("INSERT INTO b VALUES ($1)", vec![Param::Text(None)]),
        ];
        let (sql, params) = combine(&queued);
        assert_eq!(sql, "INSERT INTO a VALUES ($1, $2);\nINSERT INTO b VALUES ($3)");
        assert_eq!(params, vec![Param::Text(Some("x".into())), Param::Int(Some(1)), Param::Text(None)]);
    }
}
