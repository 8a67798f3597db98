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
//! records), are handed to a writer task of the instance. It takes up to
//! [`MAX_BATCH`] waiting transactions and runs them in one PostgreSQL
//! transaction: all their statements first, without the lock; then the
//! lock, the head of the chain, their log records chained one after the
//! other and written by a few multi-row inserts, and one COMMIT. The lock is
//! held for one flush per batch instead of one per transaction, and taken
//! last, by a transaction that then waits for nothing else: it cannot close
//! a deadlock cycle.
//!
//! A batch first runs without savepoints (one failing transaction is rare:
//! a code exchanged twice). When a statement fails, the batch is rolled back
//! and run again with one savepoint per transaction, so that only the
//! failing one is undone and gets its own error (a second use, a session
//! ended), exactly as it would alone.
//!
//! [`WRITERS`] tasks share the queue: while one holds the lock and waits for
//! its flush, the next one runs its batch's statements.

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{Mutex, mpsc};

use super::group_commit::{Job, close, submit};
use super::write_tx::{ChainHead, Param, PendingEvents, Queued, bind_all, conflict_of, shift_parameters};
use super::{StoreError, StoreResult};

/// Transactions per batch: bounds the statements one PostgreSQL transaction
/// runs, and so how long the first of them waits for its answer.
const MAX_BATCH: usize = 32;

/// Writer tasks per instance, each with a pooled connection while it runs a
/// batch (the pool has 16).
const WRITERS: usize = 2;

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
    /// Starts the writer tasks on the current runtime.
    pub(super) fn start(pool: AnyPool) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(run(pool.clone(), receiver.clone()));
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

async fn run(pool: AnyPool, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    loop {
        let mut jobs = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            jobs
        };
        let results = match pool.acquire().await {
            Ok(mut conn) => {
                let (results, clean) = commit_batch(&mut conn, &mut jobs).await;
                if !clean {
                    conn.close_on_drop();
                }
                results
            }
            Err(e) => all_failed(jobs.len(), &StoreError::Database(e)),
        };
        for (job, result) in jobs.into_iter().zip(results) {
            // The request may have gone (client disconnected): nothing to do.
            let _ = job.reply.send(result);
        }
    }
}

/// Runs the batch; the outcome of each transaction, and whether the
/// connection ended it cleanly (else it is closed rather than pooled: it may
/// still be inside the batch's transaction).
async fn commit_batch(conn: &mut AnyConnection, jobs: &mut [Job]) -> (Vec<StoreResult<()>>, bool) {
    let count = jobs.len();
    let broken = |e: &StoreError| (all_failed(count, e), false);
    if let Err(e) = run_sql(conn, "BEGIN").await {
        return broken(&e);
    }
    // A plain loop: an iterator adapter's closure held across an await makes
    // the task's future not `Send` (rustc #102211).
    let mut failed = None;
    for job in jobs.iter() {
        if let Err(e) = send_job(conn, job).await {
            failed = Some(e);
            break;
        }
    }
    let results = match failed {
        None => (0..count).map(|_| Ok(())).collect(),
        Some(e) => {
            let rolled_back = run_sql(conn, "ROLLBACK").await.is_ok();
            if count == 1 {
                return (vec![Err(e)], rolled_back);
            }
            if e.is_unavailable() || !rolled_back {
                return broken(&e);
            }
            match run_with_savepoints(conn, jobs).await {
                Ok(results) => results,
                Err(e) => return broken(&e),
            }
        }
    };
    let succeeded: Vec<&mut Job> = jobs.iter_mut().zip(&results).filter(|(_, r)| r.is_ok()).map(|(j, _)| j).collect();
    if let Err(e) = append_events(conn, succeeded).await {
        return broken(&e);
    }
    match run_sql(conn, "COMMIT").await {
        Ok(()) => (results, true),
        Err(e) => broken(&e),
    }
}

/// The second run, after a failure: each transaction in its savepoint, its
/// outcome its own. `Err` when the batch itself cannot go on.
async fn run_with_savepoints(conn: &mut AnyConnection, jobs: &[Job]) -> StoreResult<Vec<StoreResult<()>>> {
    run_sql(conn, "BEGIN").await?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        run_sql(conn, "SAVEPOINT job").await?;
        match send_job(conn, job).await {
            Ok(()) => run_sql(conn, "RELEASE SAVEPOINT job").await?,
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => {
                run_sql(conn, "ROLLBACK TO SAVEPOINT job").await?;
                run_sql(conn, "RELEASE SAVEPOINT job").await?;
                results.push(Err(e));
                continue;
            }
        }
        results.push(Ok(()));
    }
    Ok(results)
}

/// The log's lock, the head, then the records of the transactions that went
/// through, chained in their order.
async fn append_events(conn: &mut AnyConnection, jobs: Vec<&mut Job>) -> StoreResult<()> {
    let mut with_events: Vec<&mut PendingEvents> = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(pending) = job.events.as_mut() {
            with_events.push(pending);
        }
    }
    if with_events.is_empty() {
        return Ok(());
    }
    run_sql(conn, super::events::LOG_LOCK).await?;
    let mut head: ChainHead = super::events::read_chain_head_on(conn).await?;
    let mut rows = Vec::new();
    for pending in with_events {
        head = super::events::chain_after(head, &mut pending.rows, pending.rehash);
        rows.extend(pending.rows.iter());
    }
    for chunk in rows.chunks(EVENTS_PER_INSERT) {
        let (sql, params) = super::events::multi_row_insert(chunk);
        bind_all(sqlx::query(&sql), params).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A transaction's statements, in one round trip where SQL allows it.
async fn send_job(conn: &mut AnyConnection, job: &Job) -> StoreResult<()> {
    if let Some((sql, params)) = one_statement(&job.statements) {
        return match bind_all(sqlx::query(&sql), params).execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(e) => Err(StoreError::Database(e)),
        };
    }
    for statement in &job.statements {
        send(conn, statement).await?;
    }
    Ok(())
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

async fn send(conn: &mut AnyConnection, statement: &Queued) -> StoreResult<Vec<AnyRow>> {
    bind_all(sqlx::query(statement.sql), statement.params.clone())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| conflict_of(e, std::slice::from_ref(statement)))
}

async fn run_sql(conn: &mut AnyConnection, sql: &'static str) -> StoreResult<()> {
    sqlx::query(sql).execute(&mut *conn).await?;
    Ok(())
}

/// Each transaction of a batch that failed as a whole gets an error of the
/// same kind: "unavailable" (503) when the database went away, else a
/// server error naming the cause.
fn all_failed(count: usize, e: &StoreError) -> Vec<StoreResult<()>> {
    let unavailable = e.is_unavailable();
    (0..count)
        .map(|_| {
            Err(if unavailable {
                StoreError::Database(sqlx::Error::Protocol(format!("group commit: {e}")))
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
