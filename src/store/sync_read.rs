//! SQLite: the hot paths' point reads, made synchronously.
//!
//! A read through sqlx is a round trip to the connection's worker thread (two
//! thread wake-ups) and a copy of every value into sqlx's `Any` row. The
//! token endpoint's and userinfo's one read is a lookup by primary key in a
//! warm page cache, which takes a few microseconds: it is cheaper to make it
//! on the calling thread, on a connection of its own, than to hand it over.
//! Only such reads go here; everything else keeps to sqlx.

use std::sync::Mutex;

use rusqlite::Connection;

use super::StoreResult;
use super::group_commit::sqlite_error;

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
