//! PostgreSQL through tokio-postgres, for the group writer
//! (`pg_group_commit.rs`): statements prepared once per connection and sent
//! pipelined. The point reads (`pg_read.rs`) share its settings and its
//! parameter types.
//!
//! sqlx waits for each statement's answer before it sends the next, so a
//! batch of the group writer cost one round trip per statement: the writer
//! and a PostgreSQL backend woke each other up a dozen times per batch, and
//! those task switches, not the statements, were most of PostgreSQL's CPU
//! under load. tokio-postgres sends every request it is given before it
//! reads an answer: a batch's statements go out together and their answers
//! come back together.
//!
//! Parameters are declared with the types sqlx declares for the same values
//! (`TEXT` for text, `INT8` for integers), so a statement means here what it
//! means through sqlx.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::write_tx::Param;
use super::{StoreError, StoreResult};

/// Statements kept prepared per connection. The group writer's texts are a
/// few per use case, one per row count of the log's multi-row insert (up to
/// 32) and the transaction's own; past this the cache starts over.
const MAX_PREPARED: usize = 256;

/// As the pool's acquire timeout: a database that is away fails the batch
/// (503) instead of holding it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a batch's round trip or a read may wait for its answers
/// (the log's lock included) before its connection is given up as broken:
/// one that stopped answering without closing would otherwise hold the
/// writer, and every batched write of the instance, until TCP gives up.
/// Far above any answer seen under load (milliseconds).
pub(super) const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// `work`, or "unavailable" after `limit`.
pub(super) async fn within<T>(limit: Duration, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done,
        Err(_) => Err(unavailable(format!("no answer from PostgreSQL in {} s", limit.as_secs_f32()))),
    }
}

/// An error that `StoreError::is_unavailable` recognises (503, "try
/// again"), for a cause that is ours rather than the driver's: a timeout, a
/// connection given up, a batch failed with its connection.
pub(super) fn unavailable(cause: String) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(cause))
}

/// The connection settings of a `postgres://` URL, with the keys
/// tokio-postgres reads (host, port, user, password, dbname, options,
/// sslmode, application_name, connect_timeout); any other is refused.
pub(super) fn config_of(url: &str) -> StoreResult<Config> {
    let mut config = Config::from_str(url).map_err(StoreError::Postgres)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("coop-idp");
    }
    Ok(config)
}

/// One statement to send: its text and parameters.
pub(super) struct Sent<'a> {
    pub(super) sql: &'a str,
    pub(super) params: &'a [Param],
}

impl<'a> Sent<'a> {
    pub(super) fn new(sql: &'a str, params: &'a [Param]) -> Self {
        Sent { sql, params }
    }
}

/// After a connection could not be opened, how long its user (the writer,
/// a reader slot) answers "unavailable" at once instead of trying again:
/// when PostgreSQL does not answer at all, each attempt waits for the
/// connect timeout, and the requests queued behind it would each wait for
/// their own attempt in turn.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// When the last attempt to open a connection failed, and why.
#[derive(Default)]
pub(super) struct LastFailure(Option<(std::time::Instant, String)>);

impl LastFailure {
    /// `Err` while the last failure is more recent than [`RETRY_AFTER`].
    pub(super) fn check(&self) -> StoreResult<()> {
        match &self.0 {
            Some((at, cause)) if at.elapsed() < RETRY_AFTER => {
                Err(unavailable(format!("PostgreSQL unreachable {} ms ago: {cause}", at.elapsed().as_millis())))
            }
            _ => Ok(()),
        }
    }

    /// Records the outcome of an attempt.
    pub(super) fn note<T>(&mut self, attempt: &StoreResult<T>) {
        self.0 = attempt.as_ref().err().map(|e| (std::time::Instant::now(), e.to_string()));
    }
}

pub(super) struct PgConnection {
    client: Client,
    /// By text; a statement whose parameters' types differ from the
    /// prepared ones is prepared again.
    prepared: HashMap<Box<str>, Statement>,
    /// [`ANSWER_LIMIT`] and [`MAX_PREPARED`], smaller in tests.
    limit: Duration,
    max_prepared: usize,
    /// Set when an answer did not come in time or the connection broke:
    /// its state is unknown, it is not used again.
    given_up: bool,
}

/// Opens a connection and runs it on a task of its own; `who` names its
/// user in the log when it ends. tokio-postgres's `connect_timeout` bounds
/// the socket's connection only: the whole opening, start-up and
/// authentication included, is bounded here too, so that a server that
/// accepts and never answers is "unavailable", not a wait without end.
pub(super) async fn open_client(config: &Config, who: &'static str) -> StoreResult<Client> {
    let limit = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
    let (client, connection) =
        within(limit, async { config.connect(NoTls).await.map_err(StoreError::Postgres) }).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection of {who} ended");
        }
    });
    Ok(client)
}

impl PgConnection {
    pub(super) async fn open(config: &Config) -> StoreResult<Self> {
        Self::open_with_limit(config, ANSWER_LIMIT).await
    }

    async fn open_with_limit(config: &Config, limit: Duration) -> StoreResult<Self> {
        let client = open_client(config, "the group writer").await?;
        Ok(PgConnection { client, prepared: HashMap::new(), limit, max_prepared: MAX_PREPARED, given_up: false })
    }

    /// Closed, or given up after an answer that did not come.
    pub(super) fn is_closed(&self) -> bool {
        self.given_up || self.client.is_closed()
    }

    /// Sends every statement before awaiting the first answer; each one's
    /// rows or error, in order. Statements not yet prepared are prepared
    /// first (pipelined too); `Err` when that fails, before anything of
    /// `statements` was sent.
    pub(super) async fn pipeline(
        &mut self,
        statements: &[Sent<'_>],
    ) -> StoreResult<Vec<Result<Vec<Row>, tokio_postgres::Error>>> {
        let limit = self.limit;
        let answered = within(limit, self.pipeline_unbounded(statements)).await;
        if answered.as_ref().is_err_and(StoreError::is_unavailable) {
            self.given_up = true;
        }
        answered
    }

    async fn pipeline_unbounded(
        &mut self,
        statements: &[Sent<'_>],
    ) -> StoreResult<Vec<Result<Vec<Row>, tokio_postgres::Error>>> {
        self.prepare_missing(statements).await?;
        let mut prepared = Vec::with_capacity(statements.len());
        for sent in statements {
            let statement = self.prepared.get(sent.sql).ok_or_else(|| unprepared(sent.sql))?;
            prepared.push(statement);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> =
            statements.iter().map(|sent| sent.params.iter().map(as_sql).collect()).collect();
        // `join_all` polls each query once, in order, before any answer is
        // read: tokio-postgres then sends them in that order.
        let queries = prepared.iter().zip(&params).map(|(statement, params)| self.client.query(*statement, params));
        Ok(futures::future::join_all(queries).await)
    }

    /// One statement alone: its rows, or its error.
    pub(super) async fn query(&mut self, sql: &str, params: &[Param]) -> StoreResult<Vec<Row>> {
        let mut results = self.pipeline(&[Sent::new(sql, params)]).await?;
        results.pop().unwrap_or_else(|| Ok(Vec::new())).map_err(StoreError::Postgres)
    }

    async fn prepare_missing(&mut self, statements: &[Sent<'_>]) -> StoreResult<()> {
        let mut missing = self.missing(statements);
        if missing.is_empty() {
            return Ok(());
        }
        if self.prepared.len() + missing.len() > self.max_prepared {
            // Starting over drops this batch's known statements too.
            self.prepared.clear();
            missing = self.missing(statements);
        }
        let client = &self.client;
        let prepares = missing.iter().map(|(sql, params)| {
            let types: Vec<Type> = params.iter().map(type_of).collect();
            async move { client.prepare_typed(sql, &types).await }
        });
        let results = futures::future::join_all(prepares).await;
        for ((sql, _), result) in missing.into_iter().zip(results) {
            self.prepared.insert(sql.into(), result.map_err(StoreError::Postgres)?);
        }
        Ok(())
    }

    /// The statements of `statements` not prepared for their parameters'
    /// types, each once. Compared in place: this runs for every batch.
    fn missing<'s>(&self, statements: &[Sent<'s>]) -> Vec<(&'s str, &'s [Param])> {
        let mut missing: Vec<(&str, &[Param])> = Vec::new();
        for sent in statements {
            let known = self.prepared.get(sent.sql).is_some_and(|s| declared_for(s, sent.params));
            if !known && !missing.iter().any(|(sql, _)| *sql == sent.sql) {
                missing.push((sent.sql, sent.params));
            }
        }
        missing
    }
}

/// Whether `statement` was prepared for parameters of the types of
/// `params`.
pub(super) fn declared_for(statement: &Statement, params: &[Param]) -> bool {
    statement.params().len() == params.len() && statement.params().iter().zip(params).all(|(t, p)| *t == type_of(p))
}

pub(super) fn type_of(param: &Param) -> Type {
    match param {
        Param::Text(_) => Type::TEXT,
        Param::Int(_) => Type::INT8,
    }
}

pub(super) fn as_sql(param: &Param) -> &(dyn ToSql + Sync) {
    match param {
        Param::Text(v) => v,
        Param::Int(v) => v,
    }
}

fn unprepared(sql: &str) -> StoreError {
    StoreError::Group(format!("statement not prepared: {sql}"))
}

/// An error as the log may show it: a database error's message and
/// SQLSTATE (tokio-postgres's own text says only "db error"), without the
/// DETAIL that its source would add when printed (it quotes the values of
/// the row or key at fault: an address, a session's data), as sqlx's errors
/// never showed it. `StoreError::Postgres` does not expose the source.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The database is away or the connection broke, as opposed to a fault of
/// the statement or the data (`StoreError::is_unavailable`).
pub(super) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P") || code == "53300";
    }
    // No SQLSTATE: the connection closed, an I/O error, a timeout while
    // connecting; a parameter that could not be encoded is ours, not the
    // database's.
    e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || e.to_string().starts_with("timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_read_with_their_keys_and_unknown_ones_refused() {
        let config =
            config_of("postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dbench_x").expect("url");
        assert_eq!(config.get_user(), Some("postgres"));
        assert_eq!(config.get_dbname(), Some("test"));
        assert_eq!(config.get_options(), Some("-c search_path=bench_x"));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_application_name(), Some("coop-idp"));
        let named = config_of("postgresql://u:p@db/idp?application_name=idp-1&connect_timeout=2").expect("url");
        assert_eq!(named.get_application_name(), Some("idp-1"));
        assert_eq!(named.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert!(config_of("postgres://h/db?no_such_key=1").is_err(), "an unknown key is refused, not ignored");
    }

    #[test]
    fn a_failed_connection_is_not_tried_again_for_a_second() {
        let mut last = LastFailure::default();
        assert!(last.check().is_ok(), "never failed");
        let failed: StoreResult<()> = Err(StoreError::Group("connection refused".into()));
        last.note(&failed);
        let refused = last.check().expect_err("within the second");
        assert!(refused.is_unavailable(), "answered as 503: {refused}");
        assert!(refused.to_string().contains("connection refused"), "{refused}");
        let long_ago = std::time::Instant::now().checked_sub(RETRY_AFTER + Duration::from_millis(10));
        last.0 = long_ago.map(|at| (at, "old".to_string()));
        assert!(last.check().is_ok(), "tried again after the second");
        last.note(&failed);
        last.note(&Ok(()));
        assert!(last.check().is_ok(), "a success clears it");
    }

    /// A server that accepts the connection and never answers its start-up
    /// message: the opening ends at the timeout, as "unavailable".
    #[tokio::test]
    async fn a_server_that_never_answers_is_unavailable_after_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let config = config_of(&format!("postgres://u@127.0.0.1:{port}/db?connect_timeout=1")).expect("url");
        let started = std::time::Instant::now();
        let e = open_client(&config, "the test").await.expect_err("no answer");
        assert!(e.is_unavailable(), "{e}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
        held.abort();
    }

    /// A unique violation's DETAIL quotes the key (here an address): the
    /// store's error shows the message and SQLSTATE only.
    #[tokio::test]
    async fn a_database_error_is_shown_without_the_values_it_quotes() {
        let Some(url) = postgres_url() else { return };
        let mut conn = PgConnection::open(&config_of(&url).expect("url")).await.expect("connect");
        conn.query("CREATE TEMPORARY TABLE t (email TEXT PRIMARY KEY)", &[]).await.expect("table");
        let insert = "INSERT INTO t (email) VALUES ($1)";
        let email = [Param::Text(Some("marie.dupont@cc-girou.fr".into()))];
        conn.query(insert, &email).await.expect("first");
        let e = conn.query(insert, &email).await.expect_err("second");
        let shown = e.to_string();
        assert!(shown.contains("23505") && shown.contains("duplicate key"), "{shown}");
        assert!(!shown.contains("marie.dupont"), "{shown}");
        let StoreError::Postgres(pg) = &e else { panic!("{e:?}") };
        let quoted = std::error::Error::source(pg).map(|s| s.to_string()).unwrap_or_default();
        assert!(quoted.contains("marie.dupont"), "the source quotes it: {quoted}");
        assert!(std::error::Error::source(&e).is_none(), "and is not reachable from the store's error");
    }

    /// An answer that does not come in time: "unavailable", and the
    /// connection is not used again.
    #[tokio::test]
    async fn an_answer_that_does_not_come_in_time_gives_the_connection_up() {
        let Some(url) = postgres_url() else { return };
        let config = config_of(&url).expect("url");
        let mut conn = PgConnection::open_with_limit(&config, Duration::from_millis(300)).await.expect("connect");
        conn.query("SELECT 1", &[]).await.expect("in time");
        assert!(!conn.is_closed());
        let started = std::time::Instant::now();
        let e = conn.query("SELECT pg_sleep(3)", &[]).await.expect_err("too late");
        assert!(e.is_unavailable(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(conn.is_closed(), "given up");
    }

    /// A full cache starts over, and the batch that made it full still
    /// finds every one of its statements prepared, the known ones included.
    #[tokio::test]
    async fn a_full_statement_cache_starts_over_without_losing_the_batchs_statements() {
        let Some(url) = postgres_url() else { return };
        let mut conn = PgConnection::open(&config_of(&url).expect("url")).await.expect("connect");
        conn.max_prepared = 2;
        let (a, b, c) = ("SELECT 1", "SELECT 2", "SELECT 3");
        for batch in [[a, b], [a, c], [c, b], [a, a]] {
            let sent: Vec<Sent<'_>> = batch.iter().map(|sql| Sent::new(sql, &[])).collect();
            for result in conn.pipeline(&sent).await.expect("prepared") {
                assert_eq!(result.expect("answered").len(), 1, "{batch:?}");
            }
            assert!(conn.prepared.len() <= 2, "bounded: {}", conn.prepared.len());
        }
    }

    /// `COOP_IDP_TEST_POSTGRES_URL`, or `None` when PostgreSQL is not
    /// required here.
    fn postgres_url() -> Option<String> {
        let url = std::env::var("COOP_IDP_TEST_POSTGRES_URL").ok();
        if url.is_none() {
            assert_ne!(std::env::var("COOP_IDP_TEST_POSTGRES").as_deref(), Ok("required"), "PostgreSQL is required");
        }
        url
    }

    #[test]
    fn parameters_are_declared_as_sqlx_declares_them() {
        assert_eq!(type_of(&Param::Text(None)), Type::TEXT);
        assert_eq!(type_of(&Param::Int(Some(3))), Type::INT8);
    }
}
