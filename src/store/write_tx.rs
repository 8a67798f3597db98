//! Write transactions, and the statements they send in batches.
//!
//! On SQLite every statement is a round trip to the connection's worker
//! thread: two context switches, which cost more than the statement itself.
//! Statements whose outcome the caller does not read right away (inserts of
//! new tokens, codes and log records) are therefore queued and sent together,
//! as one multi-statement query, when the transaction next needs an answer or
//! commits. On PostgreSQL they are sent one by one at the same moments (the
//! extended protocol takes one statement per message), so both databases see
//! the same statements in the same order.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::OwnedMutexGuard;

use super::{Backend, StoreResult};

/// The last record of the connection-log chain: its sequence and hash.
pub type ChainHead = (i64, String);

/// A value bound to a queued statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_string()))
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(Some(v.clone()))
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}
impl From<&Option<String>> for Param {
    fn from(v: &Option<String>) -> Self {
        Param::Text(v.clone())
    }
}
impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

struct Queued {
    sql: &'static str,
    params: Vec<Param>,
}

/// A write transaction; on SQLite it also holds the single-writer gate.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    pub backend: Backend,
    gate: Option<OwnedMutexGuard<Option<ChainHead>>>,
    /// The chain head this transaction's appends lead to, published to the
    /// gate only once the transaction has committed.
    pub(super) appended_head: Option<ChainHead>,
    queued: Vec<Queued>,
}

impl WriteTx {
    pub(super) fn new(
        tx: Transaction<'static, Any>,
        backend: Backend,
        gate: Option<OwnedMutexGuard<Option<ChainHead>>>,
    ) -> Self {
        WriteTx { tx, backend, gate, appended_head: None, queued: Vec::new() }
    }

    /// The connection, for a statement whose answer is needed now: what was
    /// queued is sent first, so statements keep their order.
    pub async fn conn(&mut self) -> StoreResult<&mut AnyConnection> {
        self.flush().await?;
        Ok(&mut self.tx)
    }

    /// Queues a statement whose outcome is not read (an error still fails
    /// the transaction, at the latest when it commits). `$n` parameters.
    pub(crate) fn queue(&mut self, sql: &'static str, params: Vec<Param>) {
        self.queued.push(Queued { sql, params });
    }

    /// Sends what is queued; returns the rows of queued `RETURNING` clauses.
    pub(crate) async fn flush(&mut self) -> StoreResult<Vec<AnyRow>> {
        let queued = std::mem::take(&mut self.queued);
        match (self.backend, queued.len()) {
            (_, 0) => Ok(Vec::new()),
            (Backend::Sqlite, _) => {
                let (sql, params) = combine(&queued);
                Ok(bind_all(sqlx::query(&sql), params).fetch_all(&mut *self.tx).await?)
            }
            (Backend::Postgres, _) => {
                let mut rows = Vec::new();
                for q in queued {
                    rows.extend(bind_all(sqlx::query(q.sql), q.params).fetch_all(&mut *self.tx).await?);
                }
                Ok(rows)
            }
        }
    }

    pub async fn commit(mut self) -> StoreResult<()> {
        self.flush().await?;
        let committed = self.tx.commit().await;
        if let Some(gate) = self.gate.as_mut() {
            // A failed commit leaves the head unknown: read it again next time.
            **gate = if committed.is_ok() { self.appended_head.take().or_else(|| gate.take()) } else { None };
        }
        committed?;
        Ok(())
    }

    /// The chain head as last committed through this process's gate, if known.
    pub(super) fn cached_head(&self) -> Option<ChainHead> {
        self.appended_head.clone().or_else(|| self.gate.as_ref().and_then(|g| (**g).clone()))
    }

    pub(super) fn forget_cached_head(&mut self) {
        self.appended_head = None;
        if let Some(gate) = self.gate.as_mut() {
            **gate = None;
        }
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    params: Vec<Param>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for p in params {
        query = match p {
            Param::Text(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
        };
    }
    query
}

/// One SQL text for several statements, each one's `$n` shifted past the
/// parameters of those before it, and their parameters in order.
fn combine(queued: &[Queued]) -> (String, Vec<Param>) {
    let mut sql = String::with_capacity(queued.iter().map(|q| q.sql.len() + 2).sum());
    let mut params = Vec::with_capacity(queued.iter().map(|q| q.params.len()).sum());
    for (i, q) in queued.iter().enumerate() {
        if i > 0 {
            sql.push_str(";\n");
        }
        let offset = params.len();
        shift_parameters(q.sql, offset, &mut sql);
        params.extend(q.params.iter().cloned());
    }
    (sql, params)
}

/// Copies `sql` into `out` with every `$n` written as `$(n + offset)`.
fn shift_parameters(sql: &str, offset: usize, out: &mut String) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => {
                out.push('$');
                out.push_str(&(n + offset).to_string());
            }
            Err(_) => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shifted(sql: &str, offset: usize) -> String {
        let mut out = String::new();
        shift_parameters(sql, offset, &mut out);
        out
    }

    #[test]
    fn parameters_are_shifted_past_the_previous_statements() {
        assert_eq!(shifted("INSERT INTO t VALUES ($1, $2, $10)", 3), "INSERT INTO t VALUES ($4, $5, $13)");
        assert_eq!(shifted("SELECT 1", 5), "SELECT 1");
        assert_eq!(shifted("a = $1 AND b = $1", 0), "a = $1 AND b = $1");
        // A lone `$` is not a parameter and is left as it is.
        assert_eq!(shifted("x = '$' || $2", 1), "x = '$' || $3");
    }

    #[test]
    fn statements_combine_in_order_with_their_parameters() {
        let queued = vec![
            Queued { sql: "INSERT INTO a VALUES ($1, $2)", params: vec!["x".into(), 1i64.into()] },
            Queued { sql: "INSERT INTO b VALUES ($1)", params: vec![Param::Text(None)] },
        ];
        let (sql, params) = combine(&queued);
        assert_eq!(sql, "INSERT INTO a VALUES ($1, $2);\nINSERT INTO b VALUES ($3)");
        assert_eq!(params, vec![Param::Text(Some("x".into())), Param::Int(Some(1)), Param::Text(None)]);
    }
}
