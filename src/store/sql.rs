//! The one shape of a statement in this module, written once: bind the
//! parameters in the order of `$1, $2, …`, run the statement on the
//! caller's transaction or on the pool, and turn sqlx's error into
//! `StoreError` with `?`. The parameters follow the statement after a `;`,
//! on as few lines as they fit (rustfmt leaves a macro's inside as it is
//! written). The macros expand to the very calls they replace (no boxing,
//! no copy of a parameter), so the hot paths may use them too.

/// `execute!(tx, SQL; p1, p2, …)`: runs one statement in the caller's
/// transaction now; evaluates to the number of rows it changed.
macro_rules! execute {
    ($tx:expr, $sql:expr $(; $($param:expr),* $(,)?)?) => {
        sqlx::query($sql)$($(.bind($param))*)?.execute($tx.conn().await?).await?.rows_affected()
    };
}
pub(super) use execute;

/// `set_alone!(store, SQL; p1, …)`: `execute!` of a compare-and-set in a
/// write transaction of its own, committed at once; evaluates to whether
/// it changed exactly one row (false: another process got there first).
macro_rules! set_alone {
    ($store:expr, $sql:expr $(; $($param:expr),* $(,)?)?) => {{
        let mut tx = $store.begin_write().await?;
        let changed = $crate::store::sql::execute!(tx, $sql $(; $($param),*)?);
        tx.commit().await?;
        changed == 1
    }};
}
pub(super) use set_alone;

/// `insert!(tx, "account", SQL; p1, …)`: `execute!` for an insert whose
/// unique-constraint violation means the record already exists
/// (`StoreError::Conflict("account")`).
macro_rules! insert {
    ($tx:expr, $what:literal, $sql:expr $(; $($param:expr),* $(,)?)?) => {
        sqlx::query($sql)
            $($(.bind($param))*)?
            .execute($tx.conn().await?)
            .await
            .map_err(|e| $crate::store::StoreError::from_insert(e, $what))?
            .rows_affected()
    };
}
pub(super) use insert;

/// `fetch!(fetch_optional(on), SQL; p1, …)`: the rows (`fetch_all`), the row
/// (`fetch_one`) or maybe a row (`fetch_optional`) that SQL selects, read
/// `on` the pool or a transaction's connection, typed by the caller.
macro_rules! fetch {
    ($how:ident($on:expr), $sql:expr $(; $($param:expr),* $(,)?)?) => {
        sqlx::query_as($sql)$($(.bind($param))*)?.$how($on).await?
    };
}
pub(super) use fetch;

/// `fetch_scalar!(…)`: `fetch!` of the first column alone.
macro_rules! fetch_scalar {
    ($how:ident($on:expr), $sql:expr $(; $($param:expr),* $(,)?)?) => {
        sqlx::query_scalar($sql)$($(.bind($param))*)?.$how($on).await?
    };
}
pub(super) use fetch_scalar;

/// `queue!(tx, SQL; p1, …)`: `WriteTx::queue` of one statement, each
/// parameter converted into a `Param` (sent with the commit, see
/// `write_tx.rs`).
macro_rules! queue {
    ($tx:expr, $sql:expr $(; $($param:expr),* $(,)?)?) => {
        $tx.queue($sql, vec![$($($crate::store::write_tx::Param::from($param)),*)?])
    };
}
pub(super) use queue;

/// `queue_insert!(tx, "account", SQL; p1, …)`: `queue!` for an insert whose
/// unique-constraint violation means the record already exists (reported
/// as `StoreError::Conflict("account")` when the queue is sent).
macro_rules! queue_insert {
    ($tx:expr, $what:literal, $sql:expr $(; $($param:expr),* $(,)?)?) => {
        $tx.queue_insert($what, $sql, vec![$($($crate::store::write_tx::Param::from($param)),*)?])
    };
}
pub(super) use queue_insert;
