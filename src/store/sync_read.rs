//! SQLite: the hot paths' point reads, made synchronously.
//!
//! A read through sqlx is a round trip to the connection's worker thread (two
//! thread wake-ups) and a copy of every value into sqlx's `Any` row. The
//! hot paths' reads (the session behind a cookie, a code at the token
//! endpoint, a token at the token and userinfo endpoints) are lookups by
//! primary key in a warm page cache, which take a few microseconds: it is
//! cheaper to make them on the calling thread, on a connection of their own,
//! than to hand them over. Only such reads go here; everything else keeps to
//! sqlx.

use std::sync::Mutex;

use rusqlite::Connection;

use super::group_commit::sqlite_error;
use super::{Store, StoreResult};

/// Connections kept for later reads; more are opened when all are in use.
const KEPT: usize = 8;

pub(super) struct SyncReaders {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

impl SyncReaders {
    pub(super) fn new(path: String) -> Self {
        SyncReaders { path, idle: Mutex::new(Vec::new()) }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one).
    pub(super) fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match kept {
            Some(conn) => conn,
            None => self.open().map_err(|e| sqlite_error(&e))?,
        };
        let result = read(&conn).map_err(|e| sqlite_error(&e));
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < KEPT
        {
            idle.push(conn);
        }
        result
    }
}

/// A row that can be read both through sqlx and by `SyncReaders`, under the
/// same column names. Declare it with `point_row!`, which writes both
/// mappers from the one field list.
pub(super) trait PointRow: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

/// Declares a row struct read by column name both through sqlx (the
/// `FromRow` derive, PostgreSQL and SQLite in memory) and through rusqlite
/// (`PointRow`, the hot paths on SQLite on a file, which skip sqlx for
/// speed): one field list, so the two cannot drift apart. A field marked
/// `#[flatten]` is itself a `PointRow` read from the same row.
macro_rules! point_row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$flag:ident])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(sqlx::FromRow)]
        $vis struct $name {
            $( $(#[sqlx($flag)])* $fvis $field: $ty ),*
        }

        impl $crate::store::sync_read::PointRow for $name {
            fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok($name { $( $field: point_row!(@read r, $field $(, $flag)*) ),* })
            }
        }
    };
    (@read $r:ident, $field:ident) => {
        $r.get(stringify!($field))?
    };
    (@read $r:ident, $field:ident, flatten) => {
        $crate::store::sync_read::PointRow::from_sqlite($r)?
    };
}
pub(super) use point_row;

impl Store {
    /// The rows `sql` selects for one key (`$1`): synchronously on SQLite on
    /// a file, through sqlx otherwise.
    pub(super) async fn point_read<R: PointRow>(&self, sql: &str, key: &str) -> StoreResult<Vec<R>> {
        match &self.sync_readers {
            Some(readers) => readers.read(|conn| conn.prepare_cached(sql)?.query_map([key], R::from_sqlite)?.collect()),
            None => Ok(sqlx::query_as(sql).bind(key).fetch_all(&self.pool).await?),
        }
    }
}
