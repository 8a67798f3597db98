//! Storage: SQLite (embedded default) and PostgreSQL behind one API.
//!
//! All SQL lives under this module. Both dialects accept the same statements
//! (`$n` parameters, `BIGINT` milliseconds, `RETURNING`), so each query is
//! written once; where they differ, the two statements stand side by side in
//! the same function (`match tx.backend`). Migrations are kept per database
//! in `migrations/<db>/`.
//!
//! One file per table (or per small family of tables), holding its row types
//! and all its SQL, reads and writes. Callers name the table:
//! `store::sessions::insert(&mut tx, ..)`, `store::throttle::clear_queued(..)`.
//! The convention: a write is a free function of the table's module taking
//! the caller's `&mut WriteTx`, so that one use case commits once; a read
//! outside a transaction is a `Store` method (`store.session(id_hash)`),
//! written in the `impl Store` block of the same file. Only `Store`,
//! `WriteTx`, `StoreError`, `StoreResult` and `Backend` are named at
//! `store::` itself.
//!
//! - `accounts`: accounts and their roles; `partners`: partners, conventions,
//!   annexes, reminders, the console's annex-1 uploads;
//! - `sessions`; `grants`: pending authorization requests, codes, token
//!   families, access and refresh tokens, assertion identifiers;
//! - `credentials`: one-time links; `totp`: second factor secrets, recovery
//!   codes, pending second steps; `clients`: client registrations;
//! - `events`: the chained connection log; `retention`: leases, checkpoints,
//!   log purges, destructions; `alerts`: the detectors' cursor and memory;
//! - `mail` and `backchannel`: the two outboxes (each its `OUTBOX`, an
//!   `outbox::Outbox`: claimed, marked sent or failed the same way);
//!   `throttle`: sign-in throttling rows; `shared`: the Redis counterpart;
//!   `transfer`: export and import of the whole database.
//!
//! A statement of the common shape (bind the parameters in order, run, map
//! the error) goes through the macros of `sql.rs` (`execute!`, `insert!`,
//! `fetch!`, `fetch_scalar!`, `queue!`), which expand to the plain sqlx
//! calls; the SQL stays in the function that runs it.
//!
//! The hot paths' transactions are committed in groups by one writer:
//! `group_commit.rs` on SQLite (a thread calling SQLite directly),
//! `pg_group_commit.rs` on PostgreSQL (tasks taking the log's lock once per
//! batch).
//!
//! SQLite has a single writer. A deferred transaction that read first and
//! writes later can fail at once with `SQLITE_BUSY` when another connection
//! wrote in between, so on SQLite every write goes through one async gate.

pub mod accounts;
pub mod alerts;
pub mod backchannel;
mod bulk_write;
pub mod clients;
pub mod credentials;
pub mod events;
pub mod grants;
mod group_commit;
pub mod mail;
pub mod outbox;
pub mod partners;
pub mod passkeys;
mod pg_client;
mod pg_group_commit;
mod pg_read;
pub mod retention;
pub mod sessions;
pub mod shared;
mod sql;
mod sync_read;
pub mod throttle;
pub mod totp;
pub mod transfer;
mod wal_writes;
mod write_tx;

pub use write_tx::WriteTx;
use write_tx::{Batched, ChainHead};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// An error of the SQLite group writer (`group_commit.rs`), which does
    /// not go through sqlx; `extended_code` is SQLite's.
    #[error("database: {message}")]
    Sqlite { extended_code: Option<i32>, message: String },
    /// A batch of the PostgreSQL group writer (`pg_group_commit.rs`) failed
    /// as a whole: each of its transactions gets this, with the cause.
    #[error("database (a batch of transactions): {0}")]
    Group(String),
    /// An error of PostgreSQL's group writer or point reads
    /// (`pg_client.rs`, `pg_read.rs`), which do not go through sqlx.
    #[error("database: {}", pg_client::describe(.0))]
    Postgres(tokio_postgres::Error),
}

impl StoreError {
    /// Unique-constraint violations become `Conflict` so callers can answer
    /// "already exists" instead of a server error.
    /// The database is away or the connection to it broke (503, "try
    /// again"), as opposed to a fault of the request or of the data (500).
    /// Seen when PostgreSQL restarts: refused connections end as a pool
    /// timeout, connections cut mid-query as I/O or protocol errors, and the
    /// server's own goodbye as SQLSTATE class 08 or 57P (admin shutdown,
    /// cannot connect now).
    pub fn is_unavailable(&self) -> bool {
        if let StoreError::Sqlite { extended_code: Some(code), .. } = self {
            // Busy or locked past the timeout, the file unreadable.
            return matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_CANTOPEN);
        }
        if let StoreError::Postgres(e) = self {
            return pg_client::is_unavailable(e);
        }
        let StoreError::Database(e) = self else { return false };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300")
            }
            _ => false,
        }
    }

    fn from_insert(e: sqlx::Error, what: &str) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return StoreError::Conflict(what.to_string());
        }
        StoreError::Database(e)
    }
}

impl StoreError {
    /// A second exchange of a code or rotation of a refresh token, refused by
    /// the unique indexes of migration 0012 (SQLite names the column,
    /// PostgreSQL the index).
    pub fn is_second_use(&self) -> bool {
        const SINGLE_USE: [&str; 4] =
            ["token_families.code_hash", "token_families_code", "refresh_tokens.parent_hash", "refresh_tokens_parent"];
        match self {
            StoreError::Sqlite { extended_code: Some(SQLITE_CONSTRAINT_UNIQUE), message } => {
                SINGLE_USE.iter().any(|name| message.contains(name))
            }
            StoreError::Database(sqlx::Error::Database(db)) => {
                let message = db.message();
                db.is_unique_violation()
                    && SINGLE_USE.iter().any(|name| message.contains(name) || db.constraint() == Some(name))
            }
            StoreError::Postgres(e) => e.as_db_error().is_some_and(|db| {
                *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                    && SINGLE_USE.iter().any(|name| db.message().contains(name) || db.constraint() == Some(name))
            }),
            _ => false,
        }
    }

    /// A token family refused because the session of its code ended before
    /// the commit (see `grants::insert_family`).
    pub fn is_session_gone(&self) -> bool {
        const COLUMN: &str = "session_id_hash";
        match self {
            StoreError::Sqlite { extended_code: Some(SQLITE_CONSTRAINT_NOTNULL), message } => message.contains(COLUMN),
            StoreError::Database(sqlx::Error::Database(db)) => {
                db.kind() == sqlx::error::ErrorKind::NotNullViolation && db.message().contains(COLUMN)
            }
            StoreError::Postgres(e) => e.as_db_error().is_some_and(|db| {
                *db.code() == tokio_postgres::error::SqlState::NOT_NULL_VIOLATION
                    && (db.column() == Some(COLUMN) || db.message().contains(COLUMN))
            }),
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The size of a WAL found at start past which it is copied back at once
/// (`Store::checkpoint_left_wal`): 64 MiB.
const LEFT_WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// WAL frames (pages written) past which the WAL is started over:
/// 8,192 pages of 4 KiB, 32 MiB.
const WAL_RESTART_FRAMES: i64 = 8192;

// SQLite result codes (https://sqlite.org/rescode.html).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_CONSTRAINT_NOTNULL: i32 = 1299;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where write transactions run (on PostgreSQL, the same pool).
    write_pool: AnyPool,
    backend: Backend,
    /// SQLite's single-writer gate. It also keeps the connection-log chain
    /// head last committed through it, so appending an event needs no read.
    write_gate: Option<Arc<Mutex<Option<ChainHead>>>>,
    /// Client registrations read in the last second (see `clients.rs`).
    client_cache: Arc<clients::ClientCache>,
    /// SQLite on a file: the thread that commits the hot paths' transactions
    /// in groups (see `group_commit.rs`).
    group_writer: Option<Arc<group_commit::GroupWriter>>,
    /// PostgreSQL: the tasks that commit them in groups
    /// (`pg_group_commit.rs`).
    pg_group_writer: Option<Arc<pg_group_commit::PgGroupWriter>>,
    /// SQLite on a file: the hot paths' point reads (see `sync_read.rs`).
    sync_readers: Option<Arc<sync_read::SyncReaders>>,
    /// PostgreSQL: the same reads (see `pg_read.rs`).
    pg_readers: Option<Arc<pg_read::PgReaders>>,
    /// SQLite on a file: its WAL (see `checkpoint_left_wal`).
    wal_path: Option<std::path::PathBuf>,
}

impl Store {
    /// Connects; for SQLite, creates the file (and its folder) when missing.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if database_url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let mut url = database_url.to_string();
        if backend == Backend::Sqlite {
            if let Some(path) = sqlite_path(&url)
                && let Some(parent) = std::path::Path::new(&path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') { "&mode=rwc" } else { "?mode=rwc" });
            }
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let (pool, write_pool) = match backend {
            // One connection does every write: SQLite has a single writer
            // anyway, and that connection's page cache is never invalidated
            // by another connection's write, as it is when writes rotate over
            // the pool. Reads use the other connections.
            Backend::Sqlite => {
                (pool_of(&options, backend, 8, false).await?, pool_of(&options, backend, 1, true).await?)
            }
            Backend::Postgres => {
                let pool = pool_of(&options, backend, 16, false).await?;
                (pool.clone(), pool)
            }
        };
        let write_gate = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(None)));
        let (group_writer, sync_readers) = match (&write_gate, sqlite_path(&url)) {
            (Some(gate), Some(path)) => (
                Some(Arc::new(group_commit::GroupWriter::start(&path, gate.clone())?)),
                Some(Arc::new(sync_read::SyncReaders::new(path))),
            ),
            _ => (None, None),
        };
        let (pg_group_writer, pg_readers) = match backend {
            Backend::Postgres => {
                let config = pg_client::config_of(database_url)?;
                (
                    Some(Arc::new(pg_group_commit::PgGroupWriter::start(config.clone()))),
                    Some(Arc::new(pg_read::PgReaders::new(config))),
                )
            }
            Backend::Sqlite => (None, None),
        };
        let wal_path = sqlite_path(&url).map(|path| std::path::PathBuf::from(format!("{path}-wal")));
        Ok(Store {
            pool,
            write_pool,
            backend,
            write_gate,
            client_cache: Arc::default(),
            group_writer,
            pg_group_writer,
            sync_readers,
            pg_readers,
            wal_path,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await?,
        }
        Ok(())
    }

    pub async fn begin_write(&self) -> StoreResult<WriteTx> {
        let gate = match &self.write_gate {
            Some(g) => Some(g.clone().lock_owned().await),
            None => None,
        };
        match self.backend {
            Backend::Sqlite => Ok(WriteTx::sqlite(self.write_pool.acquire().await?, gate)),
            Backend::Postgres => Ok(WriteTx::postgres(self.write_pool.begin().await?)),
        }
    }

    /// A write transaction of many statements (an annex 1 applied). On
    /// SQLite on a file it is run by the group writer's thread
    /// (`bulk_write.rs`), and **its reads see the database as it was when
    /// it began, not its own writes**: read first, or only what it does not
    /// write. Elsewhere it is an ordinary transaction.
    pub async fn begin_bulk_write(&self) -> StoreResult<WriteTx> {
        match &self.group_writer {
            Some(writer) => {
                let (held, head) = bulk_write::Held::begin(writer, self.pool.clone()).await?;
                Ok(WriteTx::held(held, head))
            }
            None => self.begin_write().await,
        }
    }

    /// A write transaction whose statements need no answer before the commit
    /// (the hot paths: codes, tokens, sessions touched, their log records).
    /// It is committed with others by the group writer (`group_commit.rs` on
    /// SQLite, `pg_group_commit.rs` on PostgreSQL), and its log records are
    /// chained there; should it need the connection after all
    /// (`WriteTx::conn`), it becomes an ordinary transaction.
    pub async fn begin_batched_write(&self) -> StoreResult<WriteTx> {
        let pool = self.write_pool.clone();
        match (&self.group_writer, &self.write_gate, &self.pg_group_writer) {
            (Some(writer), Some(gate), _) => {
                Ok(WriteTx::deferred(Batched::Sqlite { writer: writer.clone(), gate: gate.clone(), pool }))
            }
            (_, _, Some(writer)) => Ok(WriteTx::deferred(Batched::Postgres { writer: writer.clone(), pool })),
            _ => self.begin_write().await,
        }
    }

    /// SQLite: copies the WAL back into the database file. Called every
    /// second by a job, since the writers do not checkpoint by themselves.
    ///
    /// A PASSIVE checkpoint never waits for, nor blocks, the writer, but
    /// under steady writes it never lets the WAL start over either: the file
    /// grew to 1.9 GB in a minute of refresh load, slowing reads and the next
    /// start-up. So when the WAL holds more than `WAL_RESTART_FRAMES`, the
    /// group writer is asked to start it over between two groups (a RESTART
    /// checkpoint, with little left to copy): done by the writer itself, it
    /// makes no other writer sleep in a busy handler. The file then stays
    /// at about 100 MB under load; a TRUNCATE instead, measured, tripled
    /// the p99 latency (truncating and syncing the file each time).
    pub async fn checkpoint_wal(&self) -> StoreResult<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let (_busy, frames, _copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.pool).await?;
        if frames > WAL_RESTART_FRAMES
            && let Some(writer) = &self.group_writer
        {
            writer.ask_for_wal_restart();
        }
        Ok(())
    }

    /// SQLite on a file: copies the WAL back into the database when the file
    /// is larger than [`LEFT_WAL_LIMIT`]; whether it did. Called at every
    /// start. Commands of the command line exit with their connections
    /// open, so SQLite's own checkpoint at close never runs, and without a
    /// server (whose job checkpoints every second) their WAL only grew:
    /// 50 MB after one annex 1 of 5,000 people. PASSIVE: it waits for no
    /// one; the next write starts the WAL over once all of it is copied.
    pub async fn checkpoint_left_wal(&self) -> StoreResult<bool> {
        self.checkpoint_if_wal_over(LEFT_WAL_LIMIT).await
    }

    async fn checkpoint_if_wal_over(&self, limit: u64) -> StoreResult<bool> {
        let Some(path) = &self.wal_path else { return Ok(false) };
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() > limit => {}
            _ => return Ok(false),
        }
        let _: (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.pool).await?;
        Ok(true)
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.group_writer {
            writer.close();
        }
        if let Some(writer) = &self.pg_group_writer {
            writer.close();
        }
        self.pool.close().await;
        self.write_pool.close().await;
    }
}

/// `writer`: the SQLite connection that does every write. It never
/// checkpoints the WAL itself (a checkpoint writes and syncs the database
/// file, which would hold the write gate for milliseconds);
/// `Store::checkpoint_wal` does it from a reading connection instead.
async fn pool_of(options: &AnyConnectOptions, backend: Backend, max: u32, writer: bool) -> StoreResult<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        // Fail fast when the database is away: requests answer 503.
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection it hands out by default: one more
        // round trip (a worker-thread hop on SQLite, a network round trip on
        // PostgreSQL) per statement. A connection idle for a second is still
        // checked, so one broken while the database restarted is replaced
        // rather than failing a request.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < Duration::from_secs(1) {
                    return Ok(true);
                }
                Ok(conn.ping().await.is_ok())
            })
        })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                    )
                    .await?;
                    if writer {
                        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    }
                }
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await?)
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Splits a space- or JSON-stored list.
pub(crate) fn json_list(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_absent_database_is_unavailable() {
        for away in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::Protocol("unexpected end of stream".into()),
        ] {
            assert!(StoreError::Database(away).is_unavailable());
        }
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Conflict("account".into()).is_unavailable());
        assert!(!StoreError::Corrupt("bad JSON".into()).is_unavailable());
    }

    #[tokio::test]
    async fn a_wal_left_larger_than_the_limit_is_copied_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let store = Store::connect(&format!("sqlite:{}", path.display())).await.expect("connect");
        sqlx::query("CREATE TABLE t (v TEXT)").execute(store.pool()).await.expect("create");
        for _ in 0..50 {
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind("x".repeat(4000))
                .execute(store.pool())
                .await
                .expect("insert");
        }
        let db_size = || std::fs::metadata(&path).expect("db").len();
        let before = db_size();
        // Under the limit: left to the server's job.
        assert!(!store.checkpoint_if_wal_over(u64::MAX).await.expect("checkpoint"));
        assert_eq!(db_size(), before);
        assert!(store.checkpoint_if_wal_over(1).await.expect("checkpoint"));
        assert!(db_size() >= before + 50 * 4000, "{} then {}", before, db_size());
    }
}
