//! SQLite: a large write transaction run by the group writer's thread.
//!
//! An annex-1 apply of 5,000 new people is one transaction of about 25,000
//! statements. Through sqlx each went to the writer connection's worker
//! thread, in texts of 32 that sqlx binds argument by argument; the
//! worker's hops and conversions took more time than SQLite's own work.
//! Here the transaction takes the group writer's thread (`group_commit.rs`)
//! for itself: with the write gate held, it begins `BEGIN IMMEDIATE`,
//! receives the statements in chunks as its owner queues them, and runs
//! each through its connection's cached statements while the owner goes on
//! (two cores: building the next messages overlaps writing the last ones).
//! The hot paths' transactions wait meanwhile, as they wait for any other
//! write.
//!
//! Its reads go to a read connection. As the transaction holds SQLite's
//! write lock from its beginning, nothing else commits until it ends: its
//! reads see the database exactly as it was when it began, and never its
//! own writes (`Store::begin_bulk_write` says so to its callers).

use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::oneshot;

use super::StoreResult;
use super::group_commit::{GroupWriter, begin, error_of, run_sql, sqlite_error, writer_gone};
use super::write_tx::{ChainHead, Queued};

/// Statements sent to the writer's thread at a time: enough to make the
/// hand-off's cost negligible, few enough for the thread to start early.
pub(super) const CHUNK: usize = 512;

/// How long a held transaction may leave the writer's thread without a
/// command before it is rolled back. Every other write waits while it runs,
/// so an owner that stalls (or that waits, by mistake, for a write of its
/// own outside the transaction, which would wait for it in turn) must not
/// stop them for good: past this, its commit fails instead. An annex's
/// owner sends a chunk every few milliseconds.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// What the owner of a held transaction sends to the writer's thread.
pub(super) enum Command {
    /// Statements to run in order. Their outcome is not awaited: the first
    /// failure is kept, the statements after it are not run, and the commit
    /// answers with it.
    Run(Vec<Queued>),
    /// Commits, then leaves `head` (the chain head the transaction's log
    /// records lead to; `None`: unknown) in the write gate.
    Commit { head: Option<ChainHead>, reply: oneshot::Sender<StoreResult<()>> },
}

/// A held transaction, as handed to the writer's thread.
pub(super) struct Hold {
    commands: mpsc::Receiver<Command>,
    /// The chain head inside the transaction, once it has begun.
    begun: oneshot::Sender<StoreResult<ChainHead>>,
}

/// The owner's side of a held transaction. Dropping it before the commit
/// rolls the transaction back.
pub(super) struct Held {
    commands: mpsc::Sender<Command>,
    pool: AnyPool,
    read: Option<PoolConnection<Any>>,
}

impl Held {
    /// Asks the writer's thread for a transaction of its own; returns once it
    /// has begun, with the chain head inside it.
    pub(super) async fn begin(writer: &GroupWriter, pool: AnyPool) -> StoreResult<(Held, ChainHead)> {
        let (commands, receiver) = mpsc::channel();
        let (begun, answer) = oneshot::channel();
        if !writer.hold(Hold { commands: receiver, begun }) {
            return Err(writer_gone());
        }
        let head = answer.await.map_err(|_| writer_gone())??;
        Ok((Held { commands, pool, read: None }, head))
    }

    pub(super) fn send(&self, statements: Vec<Queued>) -> StoreResult<()> {
        self.commands.send(Command::Run(statements)).map_err(|_| writer_gone())
    }

    /// A connection for the transaction's reads. It is made read-only, so a
    /// write sent on it by mistake fails at once instead of waiting for the
    /// lock this transaction holds, and it is closed when the transaction
    /// ends rather than handed back read-only to the pool.
    pub(super) async fn read_conn(&mut self) -> StoreResult<&mut AnyConnection> {
        let conn = match self.read.take() {
            Some(conn) => conn,
            None => {
                let mut conn = self.pool.acquire().await?;
                conn.close_on_drop();
                sqlx::query("PRAGMA query_only = ON").execute(&mut *conn).await?;
                conn
            }
        };
        Ok(&mut **self.read.insert(conn))
    }

    pub(super) async fn commit(self, head: Option<ChainHead>) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Commit { head, reply }).map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

/// On the writer's thread, with the write gate held: runs a held
/// transaction to its end; returns the chain head to leave in the gate
/// (`None`: unknown, to be read again).
pub(super) fn run_held(conn: &Connection, hold: Hold) -> Option<ChainHead> {
    run_held_within(conn, hold, IDLE_LIMIT)
}

fn run_held_within(conn: &Connection, hold: Hold, idle_limit: Duration) -> Option<ChainHead> {
    let head = match begin(conn) {
        Ok(head) => head,
        Err(e) => {
            let _ = hold.begun.send(Err(sqlite_error(&e)));
            return None;
        }
    };
    if hold.begun.send(Ok(head.clone())).is_err() {
        // The owner went away while waiting.
        return rollback(conn).then_some(head);
    }
    let mut failed = None;
    // Ends when the owner drops its side without committing, or stalls.
    loop {
        let command = match hold.commands.recv_timeout(idle_limit) {
            Ok(command) => command,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::error!(
                    idle_s = idle_limit.as_secs(),
                    "a held write transaction sent nothing for too long; it is rolled back"
                );
                break;
            }
        };
        match command {
            Command::Run(statements) => {
                if failed.is_none() {
                    failed =
                        statements.iter().find_map(|q| run_sql(conn, q.sql, &q.params).err().map(|e| error_of(&e, q)));
                }
            }
            Command::Commit { head: committed, reply } => {
                let outcome = match failed.take() {
                    Some(e) => Err(e),
                    None => run_sql(conn, "COMMIT", &[]).map_err(|e| sqlite_error(&e)),
                };
                let left = match outcome {
                    Ok(()) => committed,
                    Err(_) => rollback(conn).then_some(head),
                };
                let _ = reply.send(outcome);
                return left;
            }
        }
    }
    rollback(conn).then_some(head)
}

/// Whether the transaction was undone (else the writer will find it open
/// and undo it before its next batch).
fn rollback(conn: &Connection) -> bool {
    match run_sql(conn, "ROLLBACK", &[]) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "rolling back a held transaction");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::store::group_commit::tests::open;
    use crate::store::write_tx::Param;

    fn insert(k: &str) -> Queued {
        Queued { sql: "INSERT INTO t (k) VALUES ($1)", params: vec![Param::from(k)], conflict: Some("t") }
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).expect("count")
    }

    /// The writer's side, on a thread, as the group writer runs it; the
    /// owner's side here.
    fn hold(
        conn: Connection,
        idle_limit: Duration,
    ) -> (mpsc::Sender<Command>, std::thread::JoinHandle<(Connection, Option<ChainHead>)>) {
        let (commands, receiver) = mpsc::channel();
        let (begun, answer) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let left = run_held_within(&conn, Hold { commands: receiver, begun }, idle_limit);
            (conn, left)
        });
        assert_eq!(answer.blocking_recv().expect("begun").expect("head"), (0, String::new()));
        (commands, thread)
    }

    fn commit(commands: &mpsc::Sender<Command>, head: Option<ChainHead>) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        commands.send(Command::Commit { head, reply }).expect("send");
        answer.blocking_recv().expect("answer")
    }

    #[test]
    fn a_held_transaction_commits_all_its_chunks_and_leaves_its_head() {
        let (_dir, conn) = open();
        let (commands, thread) = hold(conn, IDLE_LIMIT);
        commands.send(Command::Run(vec![insert("a"), insert("b")])).expect("send");
        commands.send(Command::Run(vec![insert("c")])).expect("send");
        commit(&commands, Some((3, "h3".into()))).expect("commit");
        let (conn, left) = thread.join().expect("thread");
        assert_eq!(count(&conn), 3);
        assert_eq!(left, Some((3, "h3".into())));
        assert!(conn.is_autocommit(), "no transaction left open");
    }

    #[test]
    fn a_failed_statement_fails_the_commit_and_leaves_nothing() {
        let (_dir, conn) = open();
        let (commands, thread) = hold(conn, IDLE_LIMIT);
        commands.send(Command::Run(vec![insert("a"), insert("a"), insert("b")])).expect("send");
        commands.send(Command::Run(vec![insert("c")])).expect("send");
        match commit(&commands, Some((9, "h9".into()))) {
            Err(StoreError::Conflict(what)) => assert_eq!(what, "t"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let (conn, left) = thread.join().expect("thread");
        assert_eq!(count(&conn), 0);
        // The head as it was before the transaction.
        assert_eq!(left, Some((0, String::new())));
        assert!(conn.is_autocommit());
    }

    #[test]
    fn an_owner_that_stalls_or_goes_is_rolled_back_and_the_writer_is_freed() {
        let (_dir, conn) = open();
        let (commands, thread) = hold(conn, Duration::from_millis(200));
        commands.send(Command::Run(vec![insert("a")])).expect("send");
        // Nothing more within the limit: the writer's thread moves on.
        let (conn, left) = thread.join().expect("thread");
        assert_eq!(count(&conn), 0);
        assert_eq!(left, Some((0, String::new())));
        assert!(conn.is_autocommit());
        // What it sends afterwards is refused: its commit fails.
        assert!(commands.send(Command::Run(vec![insert("b")])).is_err());

        // An owner that drops its side before committing: the same.
        let (commands, thread) = hold(conn, IDLE_LIMIT);
        commands.send(Command::Run(vec![insert("a")])).expect("send");
        drop(commands);
        let (conn, _) = thread.join().expect("thread");
        assert_eq!(count(&conn), 0);
    }
}
