//! PostgreSQL: the hot paths' transactions of one instance, committed
//! together.
//!
//! A transaction that writes a connection-log record chains it after the
//! last one under the log's lock (`pg_advisory_xact_lock(7215001)`, shared
//! by every instance), and holds that lock until its COMMIT is flushed to
//! disk. Transaction by transaction, the log's lock, not the tables, bounded
//! how many use cases the whole cluster committed per second: pgbench gave
//! 246–345 transactions/s with the lock against 1,584 without.
//!
//! So, as on SQLite (`group_commit.rs`), the hot paths' transactions, whose
//! statements need no answer (codes, tokens, sessions touched, their log
//! records), are handed to a writer task of the instance. Woken by one, it
//! lets the instance's ready tasks run once (they may queue more), then
//! takes up to [`MAX_BATCH`] waiting transactions and runs them in one
//! PostgreSQL transaction: all their statements first, without the lock;
//! then the lock, the head of the chain, their log records chained one after
//! the other and written by a few multi-row inserts, and one COMMIT. The
//! lock is held for one flush per batch instead of one per transaction, and
//! taken last, by a transaction that then waits for nothing else: it cannot
//! close a deadlock cycle.
//!
//! A batch first runs without savepoints (one failing transaction is rare:
//! a code exchanged twice). When a statement fails, the batch is rolled back
//! and run again with one savepoint per transaction, so that only the
//! failing one is undone and gets its own error (a second use, a session
//! ended), exactly as it would alone.
//!
//! The writer has a connection of its own (`pg_client.rs`) on which a batch
//! is two round trips whatever its size: `BEGIN`, every statement, the lock
//! and the head sent together; then the records and `COMMIT` together.
//! [`WRITERS`] tasks can share the queue, so that one batch's statements run
//! while another waits for its flush; since batches are pipelined, one task
//! per instance does better (bigger batches, fewer statements per
//! transaction: docs/benchmarks/history.md, "PostgreSQL through
//! tokio-postgres").

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};
use tokio_postgres::{Config, Row};

use super::events::{HEAD_SQL, LOG_LOCK, PURGED_HEAD_SQL};
use super::group_commit::{Job, close, submit};
use super::pg_client::{LastFailure, PgConnection, Sent};
use super::write_tx::{ChainHead, Param, PendingEvents, Queued, conflict_named, shift_parameters};
use super::{StoreError, StoreResult};

/// Transactions per batch: bounds the statements one PostgreSQL transaction
/// runs, and so how long the first of them waits for its answer.
const MAX_BATCH: usize = 32;

/// Writer tasks per instance, each with a connection of its own: one (two
/// used 12 % more CPU per refresh, server and PostgreSQL together).
const WRITERS: usize = 1;

/// Log records per insert statement: 32 × 16 parameters, far below
/// PostgreSQL's 65,535.
const EVENTS_PER_INSERT: usize = 32;

pub(super) struct PgGroupWriter {
    /// `None` once the store is closed: the tasks end when they see the
    /// queue closed. Unbounded, but each waiting request holds one job at
    /// most, so the queue is bounded by the requests in flight.
    sender: std::sync::Mutex<Option<mpsc::UnboundedSender<Job>>>,
}

impl PgGroupWriter {
    /// Starts the writer tasks on the current runtime; they connect when
    /// their first batch comes, and again after a connection broke.
    pub(super) fn start(config: Config) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(run(config.clone(), receiver.clone()));
        }
        PgGroupWriter { sender: std::sync::Mutex::new(Some(sender)) }
    }

    /// Hands a transaction to a writer and waits for its outcome.
    pub(super) async fn commit(&self, statements: Vec<Queued>, events: Option<PendingEvents>) -> StoreResult<()> {
        submit(&self.sender, |sender, job| sender.send(job).is_ok(), statements, events).await
    }

    pub(super) fn close(&self) {
        close(&self.sender);
    }
}

async fn run(config: Config, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    let mut conn = None;
    let mut last_failure = LastFailure::default();
    loop {
        let mut jobs = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            // Once behind the tasks that are ready to run: requests whose
            // point read has just been answered queue their transactions
            // first, and the batch carries them (fewer flushes and round
            // trips a transaction; BENCHMARKS.md, "The writers' waits").
            tokio::task::yield_now().await;
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        let results = match connected(&config, &mut conn, &mut last_failure).await {
            Ok(c) => {
                let (results, clean) = commit_batch(c, &mut jobs).await;
                if !clean {
                    // It may still be inside the batch's transaction.
                    conn = None;
                }
                results
            }
            Err(e) => all_failed(jobs.len(), &e),
        };
        for (job, result) in jobs.into_iter().zip(results) {
            // The request may have gone (client disconnected): nothing to do.
            let _ = job.reply.send(result);
        }
    }
}

/// The writer's connection, opened again when it is missing or closed (not
/// within [`RETRY_AFTER`](super::pg_client::RETRY_AFTER) of a failed
/// attempt).
async fn connected<'c>(
    config: &Config,
    slot: &'c mut Option<PgConnection>,
    last_failure: &mut LastFailure,
) -> StoreResult<&'c mut PgConnection> {
    if let Some(conn) = slot.take().filter(|c| !c.is_closed()) {
        return Ok(slot.insert(conn));
    }
    last_failure.check()?;
    let opened = PgConnection::open(config).await;
    last_failure.note(&opened);
    Ok(slot.insert(opened?))
}

/// Runs the batch; the outcome of each transaction, and whether the
/// connection ended it cleanly (else it is closed: it may still be inside
/// the batch's transaction).
async fn commit_batch(conn: &mut PgConnection, jobs: &mut [Job]) -> (Vec<StoreResult<()>>, bool) {
    let count = jobs.len();
    let broken = |e: &StoreError| (all_failed(count, e), false);
    let with_events = jobs.iter().any(|j| j.events.is_some());
    let first = match first_round(conn, jobs, with_events).await {
        Ok(first) => first,
        Err(e) => return broken(&e),
    };
    let (results, head) = match first {
        FirstRound::Done(head) => ((0..count).map(|_| Ok(())).collect(), head),
        FirstRound::Failed(e) => {
            let rolled_back = conn.query("ROLLBACK", &[]).await.is_ok();
            if count == 1 {
                return (vec![Err(e)], rolled_back);
            }
            if e.is_unavailable() || !rolled_back {
                return broken(&e);
            }
            let results = match run_with_savepoints(conn, jobs).await {
                Ok(results) => results,
                Err(e) => return broken(&e),
            };
            let any_events = jobs.iter().zip(&results).any(|(j, r)| r.is_ok() && j.events.is_some());
            let head = if any_events {
                match lock_and_head(conn).await {
                    Ok(head) => Some(head),
                    Err(e) => return broken(&e),
                }
            } else {
                None
            };
            (results, head)
        }
    };
    let succeeded: Vec<&mut Job> = jobs.iter_mut().zip(&results).filter(|(_, r)| r.is_ok()).map(|(j, _)| j).collect();
    match append_and_commit(conn, succeeded, head).await {
        Ok(()) => (results, true),
        Err(e) => broken(&e),
    }
}

enum FirstRound {
    /// Every statement went through; the head of the chain when records
    /// are to be appended.
    Done(Option<ChainHead>),
    /// A transaction's statement failed (its error): the transaction is
    /// aborted.
    Failed(StoreError),
}

/// `BEGIN`, every transaction's statements, then the log's lock and the
/// head, sent together. `Err` when the batch cannot go on at all.
async fn first_round(conn: &mut PgConnection, jobs: &[Job], with_events: bool) -> StoreResult<FirstRound> {
    let combined: Vec<Option<(String, Vec<Param>)>> = jobs.iter().map(|j| one_statement(&j.statements)).collect();
    let mut sent = vec![Sent::new("BEGIN", &[])];
    // For each statement sent after BEGIN, the queued statements it carries
    // (to name a conflict).
    let mut carried: Vec<&[Queued]> = Vec::new();
    for (job, one) in jobs.iter().zip(&combined) {
        match one {
            Some((sql, params)) => {
                sent.push(Sent::new(sql, params));
                carried.push(&job.statements);
            }
            None => {
                for (k, q) in job.statements.iter().enumerate() {
                    sent.push(Sent::new(q.sql, &q.params));
                    carried.push(&job.statements[k..=k]);
                }
            }
        }
    }
    if with_events {
        sent.push(Sent::new(LOG_LOCK, &[]));
        sent.push(Sent::new(HEAD_SQL, &[]));
    }
    let mut results = match conn.pipeline(&sent).await {
        Ok(results) => results.into_iter(),
        // Nothing was sent (a statement could not be prepared): the
        // savepoints will find whose it is.
        Err(e) if !e.is_unavailable() => return Ok(FirstRound::Failed(e)),
        Err(e) => return Err(e),
    };
    results.next().unwrap_or_else(|| Ok(Vec::new())).map_err(StoreError::Postgres)?;
    for statements in carried {
        if let Some(Err(e)) = results.next() {
            return Ok(FirstRound::Failed(job_error(e, statements)));
        }
    }
    if !with_events {
        return Ok(FirstRound::Done(None));
    }
    results.next().unwrap_or_else(|| Ok(Vec::new())).map_err(StoreError::Postgres)?;
    let rows = results.next().unwrap_or_else(|| Ok(Vec::new())).map_err(StoreError::Postgres)?;
    Ok(FirstRound::Done(Some(head_from(conn, rows).await?)))
}

/// The second run, after a failure: each transaction in its savepoint, its
/// outcome its own. `Err` when the batch itself cannot go on.
async fn run_with_savepoints(conn: &mut PgConnection, jobs: &[Job]) -> StoreResult<Vec<StoreResult<()>>> {
    conn.query("BEGIN", &[]).await?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        conn.query("SAVEPOINT job", &[]).await?;
        let mut outcome = Ok(());
        for q in &job.statements {
            if let Err(e) = conn.query(q.sql, &q.params).await {
                outcome = Err(job_error_of(e, std::slice::from_ref(q)));
                break;
            }
        }
        match outcome {
            Ok(()) => {
                conn.query("RELEASE SAVEPOINT job", &[]).await?;
            }
            Err(e) if e.is_unavailable() => return Err(e),
            Err(_) => {
                conn.query("ROLLBACK TO SAVEPOINT job", &[]).await?;
                conn.query("RELEASE SAVEPOINT job", &[]).await?;
            }
        }
        results.push(outcome);
    }
    Ok(results)
}

async fn lock_and_head(conn: &mut PgConnection) -> StoreResult<ChainHead> {
    let results = conn.pipeline(&[Sent::new(LOG_LOCK, &[]), Sent::new(HEAD_SQL, &[])]).await?;
    let mut rows = Vec::new();
    for result in results {
        rows = result.map_err(StoreError::Postgres)?;
    }
    head_from(conn, rows).await
}

/// The head read by `HEAD_SQL`, or, when every record was purged, the last
/// purge's.
async fn head_from(conn: &mut PgConnection, rows: Vec<Row>) -> StoreResult<ChainHead> {
    let rows = if rows.is_empty() { conn.query(PURGED_HEAD_SQL, &[]).await? } else { rows };
    match rows.first() {
        Some(row) => Ok((row.try_get(0).map_err(StoreError::Postgres)?, row.try_get(1).map_err(StoreError::Postgres)?)),
        None => Ok((0, String::new())),
    }
}

/// The records of the transactions that went through, chained after `head`
/// in their order and written by multi-row inserts, and `COMMIT`: sent
/// together.
async fn append_and_commit(conn: &mut PgConnection, jobs: Vec<&mut Job>, head: Option<ChainHead>) -> StoreResult<()> {
    let mut inserts = Vec::new();
    if let Some(mut head) = head {
        let mut rows = Vec::new();
        for job in jobs {
            if let Some(pending) = job.events.as_mut() {
                head = super::events::chain_after(head, &mut pending.rows, pending.rehash);
                rows.extend(pending.rows.iter());
            }
        }
        inserts = rows.chunks(EVENTS_PER_INSERT).map(super::events::multi_row_insert).collect();
    }
    let mut sent: Vec<Sent<'_>> = inserts.iter().map(|(sql, params)| Sent::new(sql, params)).collect();
    sent.push(Sent::new("COMMIT", &[]));
    // COMMIT after a failed insert answers ROLLBACK without an error: each
    // answer is checked.
    for result in conn.pipeline(&sent).await? {
        result.map_err(StoreError::Postgres)?;
    }
    Ok(())
}

/// A transaction's error: a unique violation of an insert made with
/// `queue_insert` becomes `Conflict`.
fn job_error(e: tokio_postgres::Error, sent: &[Queued]) -> StoreError {
    job_error_of(StoreError::Postgres(e), sent)
}

fn job_error_of(e: StoreError, sent: &[Queued]) -> StoreError {
    if let StoreError::Postgres(pg) = &e
        && let Some(db) = pg.as_db_error()
        && *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
        && let Some(what) = conflict_named(db.message(), sent)
    {
        return StoreError::Conflict(what.to_string());
    }
    e
}

/// The statements of one transaction as one: the first ones as data-modifying
/// `WITH` clauses of the last. PostgreSQL runs them as one statement, in one
/// snapshot, with the foreign keys checked at its end; the hot paths'
/// transactions write distinct rows and read none of their own writes, so
/// that is the same as running them one after the other. Not for one
/// statement alone, nor when a statement's error must name what it creates
/// (`queue_insert`, see `conflict_of`) or returns rows.
fn one_statement(statements: &[Queued]) -> Option<(String, Vec<Param>)> {
    let combinable = |q: &Queued| {
        q.conflict.is_none()
            && !q.sql.contains("RETURNING")
            && ["INSERT ", "UPDATE ", "DELETE "].iter().any(|verb| q.sql.starts_with(verb))
    };
    if statements.len() < 2 || !statements.iter().all(combinable) {
        return None;
    }
    let mut sql = String::from("WITH ");
    let mut params = Vec::new();
    let last = statements.len() - 1;
    for (i, q) in statements.iter().enumerate() {
        if i == last {
            sql.push(' ');
        } else {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("s{i} AS ("));
        }
        shift_parameters(q.sql, params.len(), &mut sql);
        if i != last {
            sql.push(')');
        }
        params.extend(q.params.iter().cloned());
    }
    Some((sql, params))
}

/// Each transaction of a batch that failed as a whole gets an error of the
/// same kind: "unavailable" (503) when the database went away, else a
/// server error naming the cause.
fn all_failed(count: usize, e: &StoreError) -> Vec<StoreResult<()>> {
    let unavailable = e.is_unavailable();
    (0..count)
        .map(|_| {
            Err(if unavailable {
                super::pg_client::unavailable(format!("group commit: {e}"))
            } else {
                StoreError::Group(e.to_string())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_becomes_one_statement_with_its_parameters_in_order() {
        let statements = vec![
            Queued::new("INSERT INTO a (x, y) VALUES ($1, $2)", vec!["x".into(), 1i64.into()]),
            Queued::new("UPDATE b SET y = $1 WHERE x = $2", vec![2i64.into(), "k".into()]),
            Queued::new("DELETE FROM c WHERE x = $1", vec!["z".into()]),
        ];
        let (sql, params) = one_statement(&statements).expect("combinable");
        assert_eq!(
            sql,
            "WITH s0 AS (INSERT INTO a (x, y) VALUES ($1, $2)), s1 AS (UPDATE b SET y = $3 WHERE x = $4) \
             DELETE FROM c WHERE x = $5"
        );
        assert_eq!(params.len(), 5);
        assert_eq!(params[4], Param::Text(Some("z".into())));
    }

    #[test]
    fn statements_that_must_stay_apart_are_not_combined() {
        let insert = Queued::new("INSERT INTO a (x) VALUES ($1)", vec!["x".into()]);
        assert!(one_statement(std::slice::from_ref(&insert)).is_none(), "one statement alone");
        let returning = Queued::new("UPDATE a SET x = $1 RETURNING x", vec!["y".into()]);
        assert!(one_statement(&[insert.clone(), returning]).is_none(), "rows to read");
        let lock = Queued::new("SELECT pg_advisory_xact_lock(1)", Vec::new());
        assert!(one_statement(&[lock, insert.clone()]).is_none(), "not a data-modifying statement");
        let named = Queued { conflict: Some("account"), ..insert.clone() };
        assert!(one_statement(&[insert, named]).is_none(), "its error names what it creates");
    }
}
