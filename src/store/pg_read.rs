//! PostgreSQL: the hot paths' point reads (`Store::point_read`: the session
//! behind a cookie, a code with its account, a token with its family and
//! account), through tokio-postgres on connections every request shares.
//!
//! Through sqlx each read took a connection from the pool, waited for its
//! answer alone and copied every value into sqlx's `Any` row. Here the
//! requests of an instance share [`READERS`] connections: tokio-postgres
//! sends each read as it comes, without waiting for the answers of the ones
//! before it, so the reads of concurrent requests reach a backend together
//! and are answered in one wake-up of it; the rows are read by index. The
//! log's pages in order (`Store::events_after`, read by the alerts job after
//! every write) are read here too. Everything else keeps to sqlx.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, Statement};

use super::pg_client::{self, LastFailure};
use super::sync_read::{ColumnMaps, PointRow};
use super::write_tx::Param;
use super::{StoreError, StoreResult};

/// Connections shared by the reads of one instance. One: the reads pile up
/// in its pipeline and one backend answers them back to back, where two
/// backends each woke up for fewer; against two, 10 % less CPU per SSO
/// round trip (ES256) on the reference machine, the refresh grant within the
/// noise (docs/benchmarks/history.md, "The scale-out path, second pass"). A
/// backend spends about 50 µs of CPU on a point read, protocol included: one
/// serves some 20,000 reads a second, several times what an instance asks on
/// the reference machine (about 3,000 a second at full load).
const READERS: usize = 1;

/// Statements kept prepared per connection: the point reads are a handful.
const MAX_PREPARED: usize = 32;

pub(super) struct PgReaders {
    config: Config,
    /// Each connection, opened with the first read that needs it and again
    /// after it closed; the lock is held only to take or replace it.
    slots: Vec<tokio::sync::Mutex<Slot>>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    reader: Option<Arc<Reader>>,
    last_failure: LastFailure,
}

struct Reader {
    client: Client,
    prepared: Mutex<HashMap<Box<str>, Statement>>,
    columns: ColumnMaps,
    /// Set when a read's answer did not come in time or the connection
    /// broke: the next read opens another.
    given_up: AtomicBool,
}

impl PgReaders {
    pub(super) fn new(config: Config) -> Self {
        PgReaders {
            config,
            slots: (0..READERS).map(|_| tokio::sync::Mutex::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The rows of `R` that `sql` selects for `params` (`$1`, `$2`, …).
    pub(super) async fn rows<R: PointRow>(&self, sql: &str, params: &[Param]) -> StoreResult<Vec<R>> {
        let reader = self.reader().await?;
        let read = async {
            let statement = reader.statement(sql, params).await?;
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(pg_client::as_sql).collect();
            let rows = reader.client.query(&statement, &values).await.map_err(StoreError::Postgres)?;
            Ok((statement, rows))
        };
        let answered = pg_client::within(pg_client::ANSWER_LIMIT, read).await;
        if answered.as_ref().is_err_and(StoreError::is_unavailable) {
            reader.given_up.store(true, Ordering::Relaxed);
        }
        let (statement, rows) = answered?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let columns = statement.columns();
        let at = reader.columns.of::<R, _>(sql, |name| {
            columns
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| StoreError::Corrupt(format!("column {name} is not in the result of a point read")))
        })?;
        rows.iter().map(|row| R::from_postgres(row, &mut at.iter())).collect()
    }

    /// The next connection in turn, opened when it is missing or closed (not
    /// within `RETRY_AFTER` of a failed attempt: the reads waiting for the
    /// slot then fail at once instead of each trying in turn).
    async fn reader(&self) -> StoreResult<Arc<Reader>> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(reader) =
            slot.reader.as_ref().filter(|r| !r.client.is_closed() && !r.given_up.load(Ordering::Relaxed))
        {
            return Ok(reader.clone());
        }
        slot.last_failure.check()?;
        let connected = pg_client::open_client(&self.config, "the point reads").await;
        slot.last_failure.note(&connected);
        let client = connected?;
        let reader = Arc::new(Reader {
            client,
            prepared: Mutex::default(),
            columns: ColumnMaps::default(),
            given_up: AtomicBool::new(false),
        });
        slot.reader = Some(reader.clone());
        Ok(reader)
    }
}

impl Reader {
    /// `sql` prepared on this connection for parameters of the types of
    /// `params`.
    async fn statement(&self, sql: &str, params: &[Param]) -> StoreResult<Statement> {
        let known = self.prepared.lock().ok().and_then(|p| p.get(sql).cloned());
        if let Some(statement) = known.filter(|s| pg_client::declared_for(s, params)) {
            return Ok(statement);
        }
        let types: Vec<Type> = params.iter().map(pg_client::type_of).collect();
        let statement = self.client.prepare_typed(sql, &types).await.map_err(StoreError::Postgres)?;
        if let Ok(mut prepared) = self.prepared.lock() {
            if prepared.len() >= MAX_PREPARED {
                prepared.clear();
            }
            prepared.insert(sql.into(), statement.clone());
        }
        Ok(statement)
    }
}
