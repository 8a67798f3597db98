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
//! The writer has a connection of its own (`pg_client.rs`) on which a batch
//! is two round trips whatever its size: `BEGIN`, every statement, the lock
//! and the head sent together; then the records and `COMMIT` together.
//! [`WRITERS`] tasks can share the queue, so that one batch's statements run
//! while another waits for its flush; since batches are pipelined, one task
//! per instance does better (bigger batches, fewer statements per
//! transaction: BENCHMARKS.md, "PostgreSQL through tokio-postgres").

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};
use tokio_postgres::{Config, Row};

use super::events::{HEAD_SQL, LOG_LOCK, PURGED_HEAD_SQL};
use super::group_commit::{Job, close, submit};
use super::pg_client::{LastFailure, PgConnection, Sent};
use super::pg_merge;
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
    let shapes: Vec<&[Queued]> = jobs.iter().map(|j| j.statements.as_slice()).collect();
    let merged = pg_merge::merge(&shapes);
    let mut apart = vec![true; jobs.len()];
    for j in merged.iter().flat_map(|m| &m.jobs) {
        apart[*j] = false;
    }
    let combined: Vec<Option<(String, Vec<Param>)>> =
        jobs.iter().zip(&apart).map(|(j, &apart)| if apart { one_statement(&j.statements) } else { None }).collect();
    let mut sent = vec![Sent::new("BEGIN", &[])];
    // For each statement sent after BEGIN, the queued statements it carries
    // (to name a conflict; none for a merged one, which names none).
    let mut carried: Vec<&[Queued]> = Vec::new();
    for m in &merged {
        sent.push(Sent::arrays(&m.sql, &m.columns));
        carried.push(&[]);
    }
    for ((job, one), _) in jobs.iter().zip(&combined).zip(&apart).filter(|(_, apart)| **apart) {
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
    use proptest::prelude::*;

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

    /// One transaction of the property test below: the shapes the writer
    /// merges, on keys chosen to collide (unique and foreign-key
    /// violations, two updates of one row). As in the server, a transaction
    /// updates or locks only rows that existed before its batch.
    #[derive(Debug, Clone)]
    enum Op {
        /// A rotation: a token (new or taken) in a family (or one that does
        /// not exist), its parent marked used.
        Rotate {
            new: u8,
            family: u8,
            old: u8,
            at: i64,
        },
        /// A family opened on a session (live, ended or unknown), locked.
        Open {
            id: u8,
            session: u8,
        },
        Touch {
            key: u8,
            at: i64,
        },
        Mark {
            key: u8,
            at: i64,
        },
    }

    impl Op {
        fn statements(&self) -> Vec<Queued> {
            match self.clone() {
                Op::Rotate { new, family, old, at } => {
                    let new = if new < 3 { format!("t{new}") } else { format!("n{new}") };
                    let family = if family == 0 { "fx".to_string() } else { format!("f{}", family % 2) };
                    vec![
                        Queued::new(
                            "INSERT INTO tok (h, fam, parent, n) VALUES ($1, $2, $3, $4)",
                            vec![new.into(), family.into(), format!("t{old}").into(), at.into()],
                        ),
                        Queued::new(
                            "UPDATE tok SET used = $1 WHERE h = $2 AND used IS NULL",
                            vec![at.into(), format!("t{old}").into()],
                        ),
                    ]
                }
                Op::Open { id, session } => vec![Queued::new(
                    "INSERT INTO fam (id, s) VALUES ($1, (SELECT id FROM sess WHERE id = $2 AND ended IS NULL FOR SHARE))",
                    vec![format!("g{id}").into(), format!("s{session}").into()],
                )],
                Op::Touch { key, at } => {
                    vec![Queued::new("UPDATE seen SET at = $1 WHERE k = $2", vec![at.into(), format!("k{key}").into()])]
                }
                Op::Mark { key, at } => vec![Queued::new(
                    "INSERT INTO seen (k, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    vec![format!("m{key}").into(), at.into()],
                )],
            }
        }
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            4 => (0u8..40, 0u8..12, 0u8..6, 0i64..1000).prop_map(|(new, family, old, at)| Op::Rotate { new, family, old, at }),
            2 => (0u8..10, 0u8..4).prop_map(|(id, session)| Op::Open { id, session }),
            2 => (0u8..4, 0i64..1000).prop_map(|(key, at)| Op::Touch { key, at }),
            1 => (0u8..4, 0i64..1000).prop_map(|(key, at)| Op::Mark { key, at }),
        ];
        proptest::collection::vec(op, 1..14)
    }

    const SCHEMA: &str = "CREATE TABLE sess (id TEXT PRIMARY KEY, ended BIGINT); \
        CREATE TABLE fam (id TEXT PRIMARY KEY, s TEXT); \
        CREATE TABLE tok (h TEXT PRIMARY KEY, fam TEXT NOT NULL REFERENCES fam (id), parent TEXT UNIQUE, \
                          used BIGINT, n BIGINT); \
        CREATE TABLE seen (k TEXT PRIMARY KEY, at BIGINT); \
        INSERT INTO sess VALUES ('s0', NULL), ('s1', NULL), ('s2', 5); \
        INSERT INTO fam VALUES ('f0', 's0'), ('f1', 's1'); \
        INSERT INTO tok (h, fam) SELECT 't' || g, 'f' || (g % 2) FROM generate_series(0, 5) g; \
        INSERT INTO seen VALUES ('k0', 0), ('k1', 0), ('k2', 0);";

    const CONTENTS: &str = "SELECT (SELECT string_agg(t::text, ';' ORDER BY h) FROM tok t) || ' | ' || \
        (SELECT string_agg(f::text, ';' ORDER BY id) FROM fam f) || ' | ' || \
        (SELECT string_agg(s::text, ';' ORDER BY k) FROM seen s)";

    /// A connection on a schema of its own, made afresh.
    async fn on_schema(config: &Config, schema: &str) -> PgConnection {
        let mut admin = PgConnection::open(config).await.expect("connect");
        admin.query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"), &[]).await.expect("drop");
        admin.query(&format!("CREATE SCHEMA {schema}"), &[]).await.expect("schema");
        let mut config = config.clone();
        config.options(format!("-c search_path={schema}"));
        let mut conn = PgConnection::open(&config).await.expect("connect");
        for statement in SCHEMA.split(';').filter(|s| !s.trim().is_empty()) {
            conn.query(statement, &[]).await.expect("tables");
        }
        conn
    }

    async fn contents(conn: &mut PgConnection) -> String {
        let rows = conn.query(CONTENTS, &[]).await.expect("contents");
        rows[0].get(0)
    }

    /// The batch through `commit_batch` (merged where it may be) and one
    /// transaction at a time, each in a savepoint: the same outcomes and
    /// the same rows.
    async fn same_as_one_by_one(config: &Config, ops: &[Op], case: usize) {
        let suffix = format!("{}_{case}", std::process::id());
        let mut batched = on_schema(config, &format!("merge_batched_{suffix}")).await;
        let mut alone = on_schema(config, &format!("merge_alone_{suffix}")).await;
        let mut jobs: Vec<Job> = ops
            .iter()
            .map(|op| Job { statements: op.statements(), events: None, reply: tokio::sync::oneshot::channel().0 })
            .collect();
        let (results, clean) = commit_batch(&mut batched, &mut jobs).await;
        assert!(clean, "{ops:?}");
        let expected = run_with_savepoints(&mut alone, &jobs).await.expect("one by one");
        alone.query("COMMIT", &[]).await.expect("commit");
        let outcomes = |r: &[StoreResult<()>]| r.iter().map(Result::is_ok).collect::<Vec<_>>();
        assert_eq!(outcomes(&results), outcomes(&expected), "{ops:?}");
        assert_eq!(contents(&mut batched).await, contents(&mut alone).await, "{ops:?}");
        for schema in ["batched", "alone"] {
            batched.query(&format!("DROP SCHEMA merge_{schema}_{suffix} CASCADE"), &[]).await.expect("drop");
        }
    }

    #[test]
    fn a_batch_ends_as_its_transactions_would_one_by_one() {
        let Some(url) = super::super::pg_client::test_postgres_url() else { return };
        let config = super::super::pg_client::config_of(&url).expect("url");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let case = std::sync::atomic::AtomicUsize::new(0);
        proptest!(ProptestConfig::with_cases(32), |(ops in ops())| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(same_as_one_by_one(&config, &ops, n));
        });
    }

    /// The merged statements are planned as index lookups on tables without
    /// statistics (new, as after an installation): a hash join over a
    /// sequential scan, cached with the statement, would stay after the
    /// tables had grown (`pg_client::WRITER_PLANS`).
    #[tokio::test]
    async fn merged_statements_look_rows_up_by_index_on_tables_without_statistics() {
        let Some(url) = super::super::pg_client::test_postgres_url() else { return };
        let config = super::super::pg_client::config_of(&url).expect("url");
        let schema = format!("merge_plans_{}", std::process::id());
        let mut conn = on_schema(&config, &schema).await;
        let (a, b) =
            (Op::Rotate { new: 10, family: 1, old: 1, at: 5 }, Op::Rotate { new: 11, family: 2, old: 2, at: 5 });
        let (a, b) = (a.statements(), b.statements());
        let merged = pg_merge::merge(&[&a, &b]);
        let explain = format!("EXPLAIN {}", merged[0].sql);
        let results = conn.pipeline(&[Sent::arrays(&explain, &merged[0].columns)]).await.expect("explained");
        let plan: Vec<String> = results.into_iter().flat_map(|r| r.expect("plan")).map(|row| row.get(0)).collect();
        let plan = plan.join("\n");
        assert!(plan.contains("Index Scan using tok_pkey"), "{plan}");
        assert!(!plan.contains("Seq Scan on tok") && !plan.contains("Hash Join"), "{plan}");
        conn.query(&format!("DROP SCHEMA {schema} CASCADE"), &[]).await.expect("drop");
    }
}
