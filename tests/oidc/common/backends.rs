//! The backends a test may need beyond SQLite, and the rule that makes a
//! required one impossible to skip.
//!
//! `COOP_IDP_TEST_POSTGRES_URL` and `COOP_IDP_TEST_REDIS_URL` name them.
//! When a variable is unset, the tests that need the backend print that they
//! were skipped and pass: a newcomer's first `cargo test` needs neither.
//! `COOP_IDP_TEST_POSTGRES=required` and `COOP_IDP_TEST_REDIS=required` (set
//! by `.ci/run`) turn that skip into a failure, so a break in how the
//! variables are read cannot turn those tests green without running them. A
//! URL that is set must answer: a backend named but unreachable fails the
//! test whether required or not (a Redis that does not answer would
//! otherwise be replaced by the database fallback without a word).

use std::sync::OnceLock;
use std::time::Duration;

use coop_idp::store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Redis,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Redis => "Redis",
        }
    }

    /// `COOP_IDP_TEST_POSTGRES` or `COOP_IDP_TEST_REDIS`.
    fn variable(self) -> &'static str {
        match self {
            Backend::Postgres => "COOP_IDP_TEST_POSTGRES",
            Backend::Redis => "COOP_IDP_TEST_REDIS",
        }
    }

    /// Whether the environment says the backend must be there.
    pub fn required(self) -> bool {
        std::env::var(self.variable()).is_ok_and(|v| v == "required")
    }

    /// The backend's URL, checked once per test binary to answer; `None`
    /// when its variable is unset and it is not required. Panics (fails the
    /// test) when it is required but unset, or set but unreachable.
    pub fn configured(self) -> Option<String> {
        let url = std::env::var(format!("{}_URL", self.variable())).ok().filter(|u| !u.is_empty());
        let Some(url) = url else {
            assert!(
                !self.required(),
                "{var}=required but {var}_URL is not set: the {name} tests cannot run. Set {var}_URL \
                 (bash .ci/run does), or unset {var} to let them be skipped.",
                var = self.variable(),
                name = self.name(),
            );
            return None;
        };
        let checked = match self {
            Backend::Postgres => POSTGRES.get_or_init(|| reach(self, url.clone())),
            Backend::Redis => REDIS.get_or_init(|| reach(self, url.clone())),
        };
        if let Err(e) = checked {
            panic!(
                "{var}_URL is set but {name} does not answer: {e}. Start {name} (bash .ci/run does){hint}.",
                var = self.variable(),
                name = self.name(),
                hint = if self.required() { "" } else { ", or unset the variable to skip these tests" },
            );
        }
        Some(url)
    }

    /// For a test that cannot run without the backend: its URL, or `None`
    /// after saying that the test is skipped.
    pub fn for_test(self) -> Option<String> {
        let url = self.configured();
        if url.is_none() {
            eprintln!(
                "skipped: {var}_URL is not set, {name} variant not run ({var}=required makes this a failure)",
                var = self.variable(),
                name = self.name(),
            );
        }
        url
    }
}

static POSTGRES: OnceLock<Result<(), String>> = OnceLock::new();
static REDIS: OnceLock<Result<(), String>> = OnceLock::new();

/// Connects and asks one trivial question, within ten seconds, from a thread
/// of its own (the caller may be inside a runtime, or not in one).
fn reach(backend: Backend, url: String) -> Result<(), String> {
    let ask = async move {
        match backend {
            Backend::Postgres => {
                let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
                let asked = sqlx::query("SELECT 1").execute(store.pool()).await.map(drop).map_err(|e| e.to_string());
                store.close().await;
                asked
            }
            Backend::Redis => {
                let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                let mut connection = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
                redis::cmd("PING").query_async::<String>(&mut connection).await.map(drop).map_err(|e| e.to_string())
            }
        }
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), ask).await.map_err(|_| "no answer within 10 s".to_string())?
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the check panicked".to_string()))
}

/// A PostgreSQL schema of its own on the server at `admin`, dropped with
/// this value: tests on one database never see each other's rows.
pub struct PgSchema {
    admin: String,
    pub name: String,
    /// `admin` with the schema as search path.
    pub url: String,
}

impl PgSchema {
    /// `prefix` tells whose schema it is when one is left behind.
    pub async fn create(admin: &str, prefix: &str) -> PgSchema {
        let name = format!("{prefix}_{}", coop_idp::crypto::random_b64(9).to_lowercase().replace(['-', '_'], "x"));
        let store = Store::connect(admin).await.expect("PostgreSQL reachable (COOP_IDP_TEST_POSTGRES_URL)");
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(store.pool()).await.expect("create schema");
        store.close().await;
        PgSchema { admin: admin.to_string(), url: schema_url(admin, &name), name }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime; clean up from a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    if let Ok(admin) = Store::connect(&url).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA {name} CASCADE")).execute(admin.pool()).await;
                        admin.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// The PostgreSQL URL `url` with `schema` as search path.
pub fn schema_url(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}
