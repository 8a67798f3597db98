//! Test harness shared by every integration test (and by tests/browser):
//! - `server`: a real coop-idp server on a free port, on SQLite or on its
//!   own PostgreSQL schema, with its accounts and clients;
//! - `backends`: PostgreSQL and Redis from the environment, and the rule
//!   that a required backend cannot be skipped;
//! - `http`: the relying party's client, a cookie-keeping browser, forms,
//!   discovery and JWKS;
//! - `signin`: signing in as a person does, second factor included;
//! - `flow`: the authorization code flow as a relying party runs it;
//! - `admin`: the cast of the console and admin API tests;
//! - `mail`: the file outbox, its links, and an SMTP receiver;
//! - `cli`: the `coop-idp` binary on a server's installation or a fresh one.

pub mod admin;
mod backends;
mod cli;
mod flow;
mod http;
mod mail;
mod server;
mod signin;

pub use backends::*;
pub use cli::*;
pub use flow::*;
pub use http::*;
pub use mail::*;
pub use server::*;
pub use signin::*;

/// Marie, the agent most tests sign in as.
pub const EMAIL: &str = "marie.dupont@cc-girou.fr";
/// The password of every account the tests create through the store.
pub const PASSWORD: &str = "Correct-Horse-9-Battery";
/// The redirect URI every test client registers.
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Declares each listed `async fn name(db: Db)` as two tests, `name::sqlite`
/// and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::common::Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::common::Db::postgres() { super::$name(db).await }
            }
        }
    )* };
}
