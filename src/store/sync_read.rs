//! SQLite: the hot paths' point reads, made synchronously.
//!
//! A read through sqlx is a round trip to the connection's worker thread (two
//! thread wake-ups) and a copy of every value into sqlx's `Any` row. The
//! hot paths' reads (the session behind a cookie, a code at the token
//! endpoint, a token at the token and userinfo endpoints) are lookups by
//! primary key in a warm page cache, which take a few microseconds: it is
//! cheaper to make them on the calling thread, on a connection of their own,
//! than to hand them over. The one other read here is a page of the
//! connection log in order (`Store::events_after`, read by the alerts job
//! and `logs verify`), made off the runtime: the alerts job reads every
//! record once more after its write, and through sqlx's `Any` values that
//! cost about 30,000 instructions a record. Everything else keeps to sqlx.

use std::any::TypeId;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::group_commit::sqlite_error;
use super::{Store, StoreError, StoreResult};

/// Connections kept for later reads; more are opened when all are in use.
const KEPT: usize = 8;

/// Column maps kept: one per row type and statement of the hot reads (a
/// handful); past this, others are found by name on each read.
const MAX_COLUMN_MAPS: usize = 32;

pub(super) struct SyncReaders {
    path: String,
    idle: Mutex<Vec<Connection>>,
    columns: ColumnMaps,
}

/// Where each row type finds its columns in each statement's result, by
/// statement text: a lookup by name scans every column name of the result
/// for each value, which cost as much as the read itself (both readers:
/// `pg_read.rs` too).
#[derive(Default)]
pub(super) struct ColumnMaps(Mutex<Vec<ColumnMap>>);

/// The result columns of one row type in one statement, in the order its
/// fields read them.
struct ColumnMap {
    row: TypeId,
    sql: Box<str>,
    at: Arc<[usize]>,
}

impl ColumnMaps {
    /// The column indices of `R` in the result of `sql`, found by name with
    /// `index_of` the first time.
    pub(super) fn of<R: PointRow, E>(
        &self,
        sql: &str,
        index_of: impl Fn(&str) -> Result<usize, E>,
    ) -> Result<Arc<[usize]>, E> {
        let row = TypeId::of::<R>();
        let known = |maps: &[ColumnMap]| maps.iter().find(|m| m.row == row && *m.sql == *sql).map(|m| m.at.clone());
        if let Some(at) = self.0.lock().ok().and_then(|maps| known(&maps)) {
            return Ok(at);
        }
        let mut names = Vec::new();
        R::column_names(&mut names);
        let at: Arc<[usize]> = names.iter().map(|n| index_of(n)).collect::<Result<_, E>>()?;
        if let Ok(mut maps) = self.0.lock()
            && known(&maps).is_none()
            && maps.len() < MAX_COLUMN_MAPS
        {
            maps.push(ColumnMap { row, sql: sql.into(), at: at.clone() });
        }
        Ok(at)
    }
}

impl SyncReaders {
    pub(super) fn new(path: String) -> Self {
        SyncReaders { path, idle: Mutex::new(Vec::new()), columns: ColumnMaps::default() }
    }

    /// The rows of `R` that `sql` selects for `params` (`$1`, `$2`, …).
    pub(super) fn rows<R: PointRow>(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<R>> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(sql)?;
            let at = self.columns.of::<R, _>(sql, |name| statement.column_index(name))?;
            statement.query_map(params, |row| R::from_sqlite(row, &mut at.iter()))?.collect()
        })
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
pub(super) trait PointRow: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin + 'static {
    /// The names of the columns read, in the order `from_sqlite` reads them.
    fn column_names(names: &mut Vec<&'static str>);
    /// Reads the row, taking each column's index from `at`, in the order of
    /// `column_names`.
    fn from_sqlite(row: &rusqlite::Row<'_>, at: &mut std::slice::Iter<'_, usize>) -> rusqlite::Result<Self>;
    /// The same through tokio-postgres (`pg_read.rs`).
    fn from_postgres(row: &tokio_postgres::Row, at: &mut std::slice::Iter<'_, usize>) -> StoreResult<Self>;
}

/// The index of the next column to read (`PointRow::from_sqlite`).
pub(super) fn next_column(at: &mut std::slice::Iter<'_, usize>) -> rusqlite::Result<usize> {
    at.next().copied().ok_or(rusqlite::Error::InvalidColumnIndex(usize::MAX))
}

/// `PointRow::from_postgres`'s value of the next column.
pub(super) fn next_pg_value<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    row: &tokio_postgres::Row,
    at: &mut std::slice::Iter<'_, usize>,
) -> StoreResult<T> {
    let index = at.next().copied().ok_or_else(|| StoreError::Corrupt("a row read past its columns".into()))?;
    row.try_get(index).map_err(StoreError::Postgres)
}

/// Declares a row struct read by column name through sqlx (the `FromRow`
/// derive, SQLite in memory and everything but the hot reads), through
/// rusqlite (`PointRow::from_sqlite`, the hot paths on SQLite on a file) and
/// through tokio-postgres (`PointRow::from_postgres`, the hot paths on
/// PostgreSQL, `pg_read.rs`): one field list, so the three cannot drift
/// apart. A field marked `#[flatten]` is itself a `PointRow` read from the
/// same row. rusqlite and tokio-postgres read by index: `ColumnMaps` finds
/// the indices by name once per statement.
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
            fn column_names(names: &mut Vec<&'static str>) {
                $( point_row!(@name names, $ty, $field $(, $flag)*); )*
            }

            fn from_sqlite(r: &rusqlite::Row<'_>, at: &mut std::slice::Iter<'_, usize>) -> rusqlite::Result<Self> {
                Ok($name { $( $field: point_row!(@read r, at, $ty $(, $flag)*) ),* })
            }

            fn from_postgres(
                r: &tokio_postgres::Row,
                at: &mut std::slice::Iter<'_, usize>,
            ) -> $crate::store::StoreResult<Self> {
                Ok($name { $( $field: point_row!(@read_pg r, at, $ty $(, $flag)*) ),* })
            }
        }
    };
    (@name $names:ident, $ty:ty, $field:ident) => {
        $names.push(stringify!($field))
    };
    (@name $names:ident, $ty:ty, $field:ident, flatten) => {
        <$ty as $crate::store::sync_read::PointRow>::column_names($names)
    };
    (@read $r:ident, $at:ident, $ty:ty) => {
        $r.get($crate::store::sync_read::next_column($at)?)?
    };
    (@read $r:ident, $at:ident, $ty:ty, flatten) => {
        <$ty as $crate::store::sync_read::PointRow>::from_sqlite($r, $at)?
    };
    (@read_pg $r:ident, $at:ident, $ty:ty) => {
        $crate::store::sync_read::next_pg_value::<$ty>($r, $at)?
    };
    (@read_pg $r:ident, $at:ident, $ty:ty, flatten) => {
        <$ty as $crate::store::sync_read::PointRow>::from_postgres($r, $at)?
    };
}
pub(super) use point_row;

impl Store {
    /// The rows `sql` selects for one key (`$1`): synchronously on SQLite on
    /// a file, through tokio-postgres on PostgreSQL (`pg_read.rs`), through
    /// sqlx on SQLite in memory.
    pub(super) async fn point_read<R: PointRow>(&self, sql: &str, key: &str) -> StoreResult<Vec<R>> {
        match (&self.sync_readers, &self.pg_readers) {
            (Some(readers), _) => readers.rows(sql, [key]),
            (None, Some(readers)) => readers.rows(sql, &[key.into()]).await,
            (None, None) => Ok(sqlx::query_as(sql).bind(key).fetch_all(&self.pool).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    point_row! {
        #[derive(Debug, PartialEq)]
        struct Inner {
            b: String,
            c: Option<i64>,
        }
    }

    point_row! {
        #[derive(Debug, PartialEq)]
        struct Outer {
            a: i64,
            #[flatten]
            inner: Inner,
            d: String,
        }
    }

    fn readers() -> (tempfile::TempDir, SyncReaders) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db").to_string_lossy().into_owned();
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE t (k TEXT, a INTEGER, b TEXT, c INTEGER, d TEXT); \
             INSERT INTO t VALUES ('x', 1, 'bee', NULL, 'dee'), ('y', 2, 'b2', 7, 'd2');",
        )
        .expect("schema");
        (dir, SyncReaders::new(path))
    }

    #[test]
    fn columns_are_found_by_name_whatever_their_order_in_each_statement() {
        let (_dir, readers) = readers();
        let expected = |k: &str| match k {
            "x" => Outer { a: 1, inner: Inner { b: "bee".into(), c: None }, d: "dee".into() },
            _ => Outer { a: 2, inner: Inner { b: "b2".into(), c: Some(7) }, d: "d2".into() },
        };
        // Two statements, two orders, each read twice (the second time from
        // the kept map).
        for sql in ["SELECT d, c, b, a FROM t WHERE k = $1", "SELECT k, a, b, c, d, 5 AS e FROM t WHERE k = $1"] {
            for key in ["x", "y", "x"] {
                let rows: Vec<Outer> = readers.rows(sql, [key]).expect("read");
                assert_eq!(rows, vec![expected(key)], "{sql} {key}");
            }
        }
        // The inner row alone, from a statement the outer one also read.
        let inner: Vec<Inner> = readers.rows("SELECT d, c, b, a FROM t WHERE k = $1", ["y"]).expect("inner");
        assert_eq!(inner, vec![Inner { b: "b2".into(), c: Some(7) }]);
    }

    #[test]
    fn a_missing_column_is_an_error_not_another_column() {
        let (_dir, readers) = readers();
        let missing: StoreResult<Vec<Outer>> = readers.rows("SELECT a, b, c FROM t WHERE k = $1", ["x"]);
        assert!(missing.is_err());
        let fine: Vec<Outer> = readers.rows("SELECT a, b, c, d FROM t WHERE k = $1", ["x"]).expect("read");
        assert_eq!(fine.len(), 1);
    }
}
