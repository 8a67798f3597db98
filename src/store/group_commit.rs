//! SQLite: the blind writes of many requests, committed together by one
//! thread.
//!
//! SQLite has one writer. Through sqlx, every transaction took the write
//! gate, sent its batch to the writer connection's worker thread and waited
//! to be scheduled again before releasing the gate: the writes of the whole
//! server were serialised on thread hand-offs, not on SQLite (a third of the
//! profile was kernel wake-ups, a fifth of the CPU idle). Here the hot
//! paths' transactions, whose statements need no answer (tokens, codes, log
//! records), are handed to a thread that owns a connection of its own and
//! calls SQLite synchronously: it takes every transaction waiting, runs each
//! in a savepoint of one `BEGIN IMMEDIATE` … `COMMIT`, and answers each. A
//! transaction that fails (a second use of a code, say) is rolled back to its
//! savepoint alone; the others commit.
//!
//! The log records of these transactions are chained by this thread, after
//! the head it reads inside the transaction: it is always current, even when
//! another process (the command line) appended in between.
//!
//! The thread takes the same write gate as the interactive transactions of
//! `write_tx.rs` for each batch, so the two writers never overlap, and it
//! leaves the chain head it committed in the gate for them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{Mutex, oneshot};

use super::write_tx::{ChainHead, Param, PendingEvents, Queued};
use super::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE, StoreError, StoreResult};

/// Transactions per batch: bounds the time one batch holds the gate.
const MAX_BATCH: usize = 64;

/// How long the writer sleeps before it reads a batch, when the batch before
/// it carried more than one transaction but less than a full one (requests
/// are arriving together). Requests that come one at a time never wait: the
/// batch before theirs carried one, or the writer had a second without
/// writes. PostgreSQL's `commit_delay` and `commit_siblings` work alike.
///
/// Why gather: a commit's cost hardly depends on how many transactions it
/// carries (each writes the log's indexes' and the tokens' last pages to the
/// WAL again: about 88,000 instructions and 24 `pwrite`s a commit, against
/// 200,000 instructions for a refresh grant's whole write). Why sleep rather
/// than wait on the queue: the requests queueing meanwhile then wake no one
/// (each wake of this thread is a futex call and, on a virtual machine, an
/// interrupt to another CPU): 8 % of the server's CPU off a refresh grant at
/// 8 clients. Why 125 µs: with the sleep it costs no more CPU than 250 µs
/// and answers sooner; 500 µs cost more (BENCHMARKS.md, "The writers'
/// waits"; the first window's batches: docs/benchmarks/history.md).
const GATHER: Duration = Duration::from_micros(125);

/// What the writer's thread is handed: a transaction to commit with
/// others, or one to run alone as its owner sends it (`bulk_write.rs`).
pub(super) enum Message {
    Job(Job),
    Hold(super::bulk_write::Hold),
}

/// One transaction: its statements in order, then its log records (chained
/// by the writer).
pub(super) struct Job {
    pub(super) statements: Vec<Queued>,
    pub(super) events: Option<PendingEvents>,
    pub(super) reply: oneshot::Sender<StoreResult<()>>,
}

pub(super) struct GroupWriter {
    /// `None` once the store is closed: the thread ends when it sees the
    /// channel closed.
    sender: std::sync::Mutex<Option<mpsc::Sender<Message>>>,
    /// Set by the checkpoint job when the WAL has grown: the thread empties
    /// it between two groups.
    wal_restart: Arc<AtomicBool>,
}

impl GroupWriter {
    /// Opens the writer's connection on the database file and starts its
    /// thread.
    pub(super) fn start(path: &str, gate: Arc<Mutex<Option<ChainHead>>>) -> StoreResult<Self> {
        let conn = open_writer(path)?;
        for (pragma, value) in [
            ("journal_mode", "WAL"),
            ("synchronous", "NORMAL"),
            ("foreign_keys", "ON"),
            ("busy_timeout", "5000"),
            // Checkpoints are made by `Store::checkpoint_wal`, off the gate.
            ("wal_autocheckpoint", "0"),
        ] {
            conn.pragma_update_and_check(None, pragma, value, |_| Ok(()))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(()),
                    e => Err(e),
                })
                .map_err(|e| sqlite_error(&e))?;
        }
        conn.set_prepared_statement_cache_capacity(64);
        let (sender, receiver) = mpsc::channel();
        let wal_restart = Arc::new(AtomicBool::new(false));
        let asked = wal_restart.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, receiver, gate, asked))
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(GroupWriter { sender: std::sync::Mutex::new(Some(sender)), wal_restart })
    }

    pub(super) fn ask_for_wal_restart(&self) {
        self.wal_restart.store(true, Ordering::Relaxed);
    }

    /// Hands a transaction to the writer and waits for its outcome.
    pub(super) async fn commit(&self, statements: Vec<Queued>, events: Option<PendingEvents>) -> StoreResult<()> {
        submit(&self.sender, |sender, job| sender.send(Message::Job(job)).is_ok(), statements, events).await
    }

    /// Hands the thread a transaction of its own (`bulk_write.rs`); false
    /// when the writer is gone.
    pub(super) fn hold(&self, hold: super::bulk_write::Hold) -> bool {
        match self.sender.lock() {
            Ok(sender) => sender.as_ref().is_some_and(|s| s.send(Message::Hold(hold)).is_ok()),
            Err(_) => false,
        }
    }

    pub(super) fn close(&self) {
        close(&self.sender);
    }
}

/// The writer's connection, through the VFS that writes a commit's WAL
/// frames at once (`wal_writes.rs`).
fn open_writer(path: &str) -> StoreResult<Connection> {
    super::wal_writes::register().map_err(|e| StoreError::Database(sqlx::Error::Configuration(e.into())))?;
    Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), super::wal_writes::VFS_NAME)
        .map_err(|e| sqlite_error(&e))
}

/// Hands a transaction to a group writer through `send` and waits for its
/// outcome (both writers: `pg_group_commit.rs` too).
pub(super) async fn submit<S>(
    sender: &std::sync::Mutex<Option<S>>,
    send: impl FnOnce(&S, Job) -> bool,
    statements: Vec<Queued>,
    events: Option<PendingEvents>,
) -> StoreResult<()> {
    let (reply, answer) = oneshot::channel();
    let job = Job { statements, events, reply };
    let sent = match sender.lock() {
        Ok(sender) => sender.as_ref().is_some_and(|s| send(s, job)),
        Err(_) => false,
    };
    if !sent {
        return Err(writer_gone());
    }
    answer.await.map_err(|_| writer_gone())?
}

/// Closes a writer's queue: its thread or tasks end when they see it closed.
pub(super) fn close<S>(sender: &std::sync::Mutex<Option<S>>) {
    if let Ok(mut sender) = sender.lock() {
        sender.take();
    }
}

pub(super) fn writer_gone() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

fn run(
    conn: Connection,
    receiver: mpsc::Receiver<Message>,
    gate: Arc<Mutex<Option<ChainHead>>>,
    wal_restart: Arc<AtomicBool>,
) {
    let mut last_batch = 0;
    // A held transaction that arrived while a batch was being gathered: it
    // runs right after that batch.
    let mut held = None;
    loop {
        if wal_restart.swap(false, Ordering::Relaxed) {
            restart_wal(&conn);
        }
        if let Some(hold) = held.take() {
            let mut head = gate.blocking_lock();
            *head = super::bulk_write::run_held(&conn, hold);
            continue;
        }
        let first = match receiver.recv_timeout(Duration::from_secs(1)) {
            Ok(Message::Job(job)) => job,
            Ok(Message::Hold(hold)) => {
                held = Some(hold);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // A second without a write: the next one comes alone.
                last_batch = 0;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if last_batch > 1 && last_batch < MAX_BATCH {
            // Not after a full batch: its successors are already waiting.
            std::thread::sleep(GATHER);
        }
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match receiver.try_recv().ok() {
                Some(Message::Job(job)) => jobs.push(job),
                Some(Message::Hold(hold)) => {
                    held = Some(hold);
                    break;
                }
                None => break,
            }
        }
        last_batch = jobs.len();
        let results = {
            let mut head = gate.blocking_lock();
            let (results, committed_head) = commit_batch(&conn, &mut jobs);
            *head = committed_head;
            results
        };
        for (job, result) in jobs.into_iter().zip(results) {
            // The request may have gone (client disconnected): nothing to do.
            let _ = job.reply.send(result);
        }
    }
}

/// Starts the WAL over (RESTART checkpoint: the file keeps its size, to be
/// written again from its start, which costs no truncation and no sync). It waits for the readers of the
/// moment to finish, at most 100 ms, else it leaves it for the next request.
fn restart_wal(conn: &Connection) {
    let outcome = conn
        .busy_timeout(Duration::from_millis(100))
        .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)));
    if let Err(e) = conn.busy_timeout(Duration::from_secs(5)).and(outcome) {
        tracing::warn!(error = %e, "emptying the SQLite WAL");
    }
}

/// Runs the batch; the outcome of each transaction, and the chain head after
/// the commit (`None` when it is not known).
///
/// First without savepoints: a savepoint copies every page its transaction
/// touches to the sub-journal, and a batch in which nothing fails (nearly
/// all of them) needs none. A failure undoes the whole batch. A lone
/// transaction's failure is its own answer; a batch runs again, each
/// transaction in its savepoint, so that only the failing one is undone.
fn commit_batch(conn: &Connection, jobs: &mut [Job]) -> (Vec<StoreResult<()>>, Option<ChainHead>) {
    let count = jobs.len();
    let all_failed = |e: &rusqlite::Error| (0..count).map(|_| Err(sqlite_error(e))).collect();
    let mut head = match begin(conn) {
        Ok(head) => head,
        Err(e) => return (all_failed(&e), None),
    };
    match jobs.iter_mut().find_map(|job| run_statements(conn, job, &mut head).err()) {
        None => return commit(conn, (0..count).map(|_| Ok(())).collect(), head),
        Some(e) => {
            let _ = run_sql(conn, "ROLLBACK", &[]);
            if count == 1 {
                return (vec![Err(e)], None);
            }
        }
    }
    let mut head = match begin(conn) {
        Ok(head) => head,
        Err(e) => return (all_failed(&e), None),
    };
    let results = jobs.iter_mut().map(|job| run_job(conn, job, &mut head)).collect();
    commit(conn, results, head)
}

/// `BEGIN IMMEDIATE`, and the chain head as it is inside the transaction.
pub(super) fn begin(conn: &Connection) -> rusqlite::Result<ChainHead> {
    if !conn.is_autocommit() {
        // A transaction left open (a `ROLLBACK` that failed earlier): undone
        // first, or every later batch would fail to begin.
        tracing::error!("the SQLite writer found a transaction left open; it is rolled back");
        run_sql(conn, "ROLLBACK", &[])?;
    }
    run_sql(conn, "BEGIN IMMEDIATE", &[])?;
    read_chain_head(conn).inspect_err(|_| {
        let _ = run_sql(conn, "ROLLBACK", &[]);
    })
}

/// `COMMIT`: the transactions' outcomes stand, or all fail with it.
fn commit(
    conn: &Connection,
    results: Vec<StoreResult<()>>,
    head: ChainHead,
) -> (Vec<StoreResult<()>>, Option<ChainHead>) {
    match run_sql(conn, "COMMIT", &[]) {
        Ok(()) => (results, Some(head)),
        Err(e) => {
            let _ = run_sql(conn, "ROLLBACK", &[]);
            (results.iter().map(|_| Err(sqlite_error(&e))).collect(), None)
        }
    }
}

/// One transaction in its savepoint: all of it, or none of it.
fn run_job(conn: &Connection, job: &mut Job, head: &mut ChainHead) -> StoreResult<()> {
    run_sql(conn, "SAVEPOINT job", &[]).map_err(|e| sqlite_error(&e))?;
    match run_statements(conn, job, head) {
        Ok(()) => run_sql(conn, "RELEASE job", &[]).map_err(|e| sqlite_error(&e)),
        Err(e) => {
            let undone = run_sql(conn, "ROLLBACK TO job", &[]).and_then(|()| run_sql(conn, "RELEASE job", &[]));
            if let Err(undo) = undone {
                tracing::error!(error = %undo, "could not roll a transaction back to its savepoint");
            }
            Err(e)
        }
    }
}

/// A transaction's statements, then its log records chained after `head`,
/// which moves on only if all of them went in.
fn run_statements(conn: &Connection, job: &mut Job, head: &mut ChainHead) -> StoreResult<()> {
    // Chained in place (again when the batch runs a second time).
    let events = job.events.as_mut().map(|p| (p.rehash, p.rows.as_mut_slice()));
    let next = match events {
        Some((rehash, rows)) => super::events::chain_after(head.clone(), rows, rehash),
        None => head.clone(),
    };
    for statement in &job.statements {
        run_sql(conn, statement.sql, &statement.params).map_err(|e| error_of(&e, statement))?;
    }
    for row in job.events.as_ref().map(|p| p.rows.as_slice()).unwrap_or_default() {
        let insert = super::events::event_insert(row);
        run_sql(conn, insert.sql, &insert.params).map_err(|e| sqlite_error(&e))?;
    }
    *head = next;
    Ok(())
}

fn read_chain_head(conn: &Connection) -> rusqlite::Result<ChainHead> {
    let last = conn
        .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some(head) = last {
        return Ok(head);
    }
    // Everything was purged: the chain goes on from the last removed record.
    let purged = conn
        .prepare_cached("SELECT up_to_seq, last_hash FROM log_purges ORDER BY up_to_seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(purged.unwrap_or((0, String::new())))
}

/// The numbered parameters (`$1` …) of the store's SQL; SQLite treats them as
/// named parameters, indexed in order of first appearance.
const PARAMETER_NAMES: [&str; 20] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16", "$17",
    "$18", "$19", "$20",
];

pub(super) fn run_sql(conn: &Connection, sql: &str, params: &[Param]) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(sql)?;
    for (i, param) in params.iter().enumerate() {
        let owned;
        let name = match PARAMETER_NAMES.get(i) {
            Some(name) => *name,
            None => {
                owned = format!("${}", i + 1);
                owned.as_str()
            }
        };
        let Some(index) = statement.parameter_index(name)? else {
            return Err(rusqlite::Error::InvalidParameterName(name.to_string()));
        };
        match param {
            Param::Text(v) => statement.raw_bind_parameter(index, v)?,
            Param::Int(v) => statement.raw_bind_parameter(index, v)?,
        }
    }
    // Stepped to the end: a statement with `RETURNING` runs only as its rows
    // are read.
    let mut rows = statement.raw_query();
    while rows.next()?.is_some() {}
    Ok(())
}

/// SQLite's answer, kept with its extended code so that callers can tell a
/// second use (a unique index) or a busy database from other failures.
/// A statement's error: a unique violation of an insert made with
/// `queue_insert` becomes `Conflict`, naming what it creates, as through
/// sqlx (`write_tx::conflict_of`).
pub(super) fn error_of(e: &rusqlite::Error, q: &Queued) -> StoreError {
    if let (Some(what), rusqlite::Error::SqliteFailure(failure, _)) = (q.conflict, e)
        && matches!(failure.extended_code, SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY)
    {
        return StoreError::Conflict(what.to_string());
    }
    sqlite_error(e)
}

pub(super) fn sqlite_error(e: &rusqlite::Error) -> StoreError {
    let extended_code = match e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    };
    StoreError::Sqlite { extended_code, message: e.to_string() }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `.cargo/config.toml` builds SQLite without its two process-wide
    /// locks (memory statistics, one page cache for all connections), which
    /// the writer's thread and the point readers contended for: a build
    /// without that setting fails here rather than quietly slower.
    #[test]
    fn sqlite_is_built_without_its_global_locks() {
        let conn = Connection::open_in_memory().expect("open");
        let (memstatus_off, unified_cache): (bool, bool) = conn
            .query_row(
                "SELECT sqlite_compileoption_used('DEFAULT_MEMSTATUS=0'), \
                 sqlite_compileoption_used('ENABLE_MEMORY_MANAGEMENT')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("options");
        assert!(memstatus_off, "SQLite keeps memory statistics (LIBSQLITE3_FLAGS not applied)");
        assert!(!unified_cache, "SQLite shares one page cache (LIBSQLITE3_FLAGS not applied)");
    }

    /// A database with a table `t (k, v)` and the log's two tables, as the
    /// writer's thread reads them (`bulk_write.rs` tests use it too).
    pub(in crate::store) fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("t.db")).expect("open");
        conn.execute_batch(
            "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER); \
             CREATE TABLE events (seq INTEGER PRIMARY KEY, hash TEXT); \
             CREATE TABLE log_purges (up_to_seq INTEGER, last_hash TEXT);",
        )
        .expect("schema");
        (dir, conn)
    }

    fn job(statements: Vec<Queued>) -> (Job, oneshot::Receiver<StoreResult<()>>) {
        let (reply, answer) = oneshot::channel();
        (Job { statements, events: None, reply }, answer)
    }

    /// The keys in table `t`, in order.
    fn keys(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT k FROM t ORDER BY k")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// The value of key `k` in table `t`.
    fn value(conn: &Connection, k: &str) -> i64 {
        conn.query_row("SELECT v FROM t WHERE k = ?1", [k], |r| r.get(0)).expect("row")
    }

    /// The rows of table `t` (-1 when it cannot be read).
    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap_or(-1)
    }

    fn insert(k: &str, v: i64) -> Queued {
        Queued::new("INSERT INTO t (k, v) VALUES ($1, $2)", vec![k.into(), v.into()])
    }

    #[test]
    fn a_restart_starts_the_wal_over() {
        let (_dir, conn) = open();
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).expect("wal");
        conn.pragma_update(None, "wal_autocheckpoint", 0).expect("no autocheckpoint");
        let mut n = 0;
        let mut write = |count: usize| {
            for _ in 0..count {
                n += 1;
                run_sql(&conn, "INSERT INTO t (k, v) VALUES ($1, $2)", &[format!("k{n}").into(), n.into()])
                    .expect("insert");
            }
        };
        write(200);
        write(1);
        // Frames in the WAL, read without checkpointing anything.
        let frames = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA wal_checkpoint(NOOP)", [], |r| r.get(1)).unwrap_or(-1)
        };
        let grown = frames(&conn);
        assert!(grown >= 200, "without a checkpoint the WAL grows on: {grown}");
        restart_wal(&conn);
        run_sql(&conn, "INSERT INTO t (k, v) VALUES ($1, $2)", &["restarted".into(), 0.into()]).expect("insert");
        let restarted = frames(&conn);
        assert!(restarted < 10, "the next write starts at the beginning of the WAL: {restarted}");
        assert_eq!(count(&conn), 202, "nothing lost");
    }

    #[test]
    fn parameters_bind_by_number_whatever_their_order_of_appearance() {
        let (_dir, conn) = open();
        run_sql(&conn, "INSERT INTO t (v, k) VALUES ($2, $1)", &["a".into(), 7.into()]).expect("insert");
        assert_eq!(value(&conn, "a"), 7);
    }

    #[test]
    fn a_failing_transaction_is_undone_alone_and_the_others_commit() {
        let (_dir, conn) = open();
        let (first, _a) = job(vec![insert("a", 1), insert("b", 2)]);
        // Second statement collides with the first transaction's "a".
        let (second, _b) = job(vec![insert("c", 3), insert("a", 4)]);
        let (third, _c) = job(vec![insert("d", 5)]);
        let (results, head) = commit_batch(&conn, &mut [first, second, third]);
        assert!(results[0].is_ok());
        let err = results[1].as_ref().expect_err("collision");
        assert!(matches!(err, StoreError::Sqlite { extended_code: Some(1555), .. }), "{err:?}");
        assert!(results[2].is_ok());
        assert_eq!(head, Some((0, String::new())));
        let keys = keys(&conn);
        // "c" went with its failed transaction.
        assert_eq!(keys, ["a", "b", "d"]);
        assert_eq!(value(&conn, "a"), 1);
    }

    #[test]
    fn a_lone_failing_transaction_leaves_nothing_and_a_clean_batch_commits_whole() {
        let (_dir, conn) = open();
        let (alone, _a) = job(vec![insert("x", 1), insert("x", 2)]);
        let (results, head) = commit_batch(&conn, &mut [alone]);
        assert!(results[0].is_err(), "second insert collides");
        assert_eq!(head, None);
        assert_eq!(count(&conn), 0, "its first statement is undone too");
        assert!(conn.is_autocommit(), "no transaction left open");

        let (first, _b) = job(vec![insert("a", 1)]);
        let (second, _c) = job(vec![insert("b", 2), insert("c", 3)]);
        let (results, head) = commit_batch(&conn, &mut [first, second]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(head, Some((0, String::new())));
        assert_eq!(count(&conn), 3);
        assert!(conn.is_autocommit());
    }

    #[test]
    fn a_transaction_left_open_is_undone_before_the_next_batch() {
        let (_dir, conn) = open();
        run_sql(&conn, "BEGIN", &[]).expect("begin");
        run_sql(&conn, "INSERT INTO t (k, v) VALUES ($1, $2)", &["stale".into(), 0.into()]).expect("insert");
        let (next, _a) = job(vec![insert("a", 1)]);
        let (results, _) = commit_batch(&conn, &mut [next]);
        assert!(results[0].is_ok(), "{results:?}");
        let keys = keys(&conn);
        assert_eq!(keys, ["a"], "the stale write is gone, the batch committed");
        assert!(conn.is_autocommit());
    }
}
