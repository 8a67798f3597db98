//! A real coop-idp server on a free port, in the test's process, on SQLite
//! or on its own PostgreSQL schema; the accounts and clients it starts with.

use std::sync::Arc;

use coop_idp::app::App;
use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::oidc::clients::{self, AuthMethod, Registration};
use coop_idp::store::accounts::{AccountRow, Person};
use coop_idp::store::{self, Store};
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, RedirectUrl};
use tokio::sync::watch;

use super::backends::{Backend, PgSchema};
use super::http::http_client;
use super::{EMAIL, PASSWORD, REDIRECT};

pub type Rp =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite,
    Postgres(String),
}

impl Db {
    /// PostgreSQL from `COOP_IDP_TEST_POSTGRES_URL`: `None` (said so) when
    /// it is unset, a failure when it is required or does not answer (see
    /// `backends`).
    pub fn postgres() -> Option<Db> {
        Backend::Postgres.for_test().map(Db::Postgres)
    }
}

pub struct TestServer {
    pub app: Arc<App>,
    pub base: String,
    pub clock: Clock,
    _dir: tempfile::TempDir,
    stop: Option<watch::Sender<bool>>,
    /// Dropped after the server stops: its schema goes with it.
    _schema: Option<PgSchema>,
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        Self::start_with(db, &[]).await
    }

    /// Starts a server; `extra` are configuration overrides (`key`, value).
    pub async fn start_with(db: Db, extra: &[(&str, &str)]) -> TestServer {
        Self::start_on(db, extra, "127.0.0.1").await
    }

    /// Starts a server whose issuer is `http://localhost:PORT`: passkeys
    /// need a domain as relying-party id (browsers refuse an IP address).
    pub async fn start_on_localhost(db: Db) -> TestServer {
        Self::start_on(db, &[], "localhost").await
    }

    async fn start_on(db: Db, extra: &[(&str, &str)], host: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{host}:{}", addr.port());
        let (database_url, schema) = match &db {
            Db::Sqlite => (format!("sqlite://{}/coop-idp.db", dir.path().display()), None),
            Db::Postgres(url) => {
                let schema = PgSchema::create(url, "t").await;
                (schema.url.clone(), Some(schema))
            }
        };
        let mut env: Vec<(String, String)> = vec![
            ("COOP_IDP_ISSUER".into(), base.clone()),
            ("COOP_IDP_LISTEN".into(), addr.to_string()),
            ("COOP_IDP_DATA_DIR".into(), dir.path().join("data").display().to_string()),
            ("COOP_IDP_KEYS_DIR".into(), dir.path().join("keys").display().to_string()),
            ("COOP_IDP_DATABASE_URL".into(), database_url.clone()),
        ];
        for (k, v) in extra {
            env.push((format!("COOP_IDP_{}", k.to_ascii_uppercase()), v.to_string()));
        }
        let config = Config::from_sources(None, &env).expect("test configuration");
        std::fs::create_dir_all(&config.data_dir).expect("data dir");
        let store = Store::connect(&database_url).await.expect("database");
        store.migrate().await.expect("migrate");
        let clock = Clock::system();
        let app = App::with_store(config, store, clock.clone()).expect("app");
        let (stop_tx, stop_rx) = watch::channel(false);
        coop_idp::startup::spawn_jobs(&app, stop_rx.clone());
        let served = app.clone();
        let mut stop_serving = stop_rx;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_serving.changed().await;
            };
            let _ = coop_idp::web::serve(served, listener, shutdown).await;
        });
        TestServer { app, base, clock, _dir: dir, stop: Some(stop_tx), _schema: schema }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates an active account through the store layer (the activation
    /// flow belongs to the credentials issue); returns its subject.
    pub async fn add_account(&self, email: &str, partner: Option<(&str, &str)>) -> String {
        create_account(&self.app, email, partner).await
    }

    pub async fn grant_role(&self, account_id: &str, role: &str) {
        let mut tx = self.app.store.begin_write().await.expect("tx");
        store::accounts::grant_role(&mut tx, account_id, role).await.expect("role");
        tx.commit().await.expect("commit");
    }

    pub async fn close_account(&self, account_id: &str) {
        let mut tx = self.app.store.begin_write().await.expect("tx");
        store::accounts::update_state(&mut tx, account_id, "closed", self.clock.now_ms()).await.expect("close");
        tx.commit().await.expect("commit");
    }

    /// Registers a confidential client with `REDIRECT`; returns its secret.
    pub async fn add_client(&self, id: &str) -> String {
        self.add_client_with(id, AuthMethod::ClientSecretBasic, |_| {}).await.expect("secret")
    }

    pub async fn add_client_with(
        &self,
        id: &str,
        auth_method: AuthMethod,
        customise: impl FnOnce(&mut Registration),
    ) -> Option<String> {
        let mut r = Registration {
            id: id.to_string(),
            name: format!("Client {id}"),
            redirect_uris: vec![REDIRECT.to_string()],
            post_logout_redirect_uris: vec!["http://127.0.0.1:9/signed-out".to_string()],
            backchannel_logout_uri: None,
            auth_method,
            id_token_alg: jsonwebtoken::Algorithm::RS256,
            jwks: None,
        };
        customise(&mut r);
        clients::register(&self.app, r).await.expect("register client")
    }

    /// The relying party, configured by discovery.
    pub async fn rp(&self, client_id: &str, secret: Option<&str>) -> Rp {
        let http = http_client();
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(self.base.clone()).expect("issuer"), &http)
            .await
            .expect("discovery");
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_string()),
            secret.map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_string()).expect("redirect"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

/// The usual stage: a server with Marie's account (`EMAIL`) at her partner
/// and the confidential client `platform`; (server, her subject, the secret).
pub async fn platform_server(db: Db) -> (TestServer, String, String) {
    let server = TestServer::start(db).await;
    let sub = server.add_account(EMAIL, Some(("cc-girou", "CC du Girou"))).await;
    let secret = server.add_client("platform").await;
    (server, sub, secret)
}

/// Creates an active account with `PASSWORD` through the store layer (the
/// activation flow belongs to the credentials issue); returns its subject.
pub async fn create_account(app: &App, email: &str, partner: Option<(&str, &str)>) -> String {
    let hash = app.hasher.hash(PASSWORD.to_string()).await.expect("hash");
    let id = coop_idp::accounts::new_subject();
    let now = app.clock.now_ms();
    // Checked first: a failed insert would abort a PostgreSQL transaction.
    let new_partner = match partner {
        Some((pid, pname)) if app.store.partner(pid).await.expect("partner").is_none() => Some((pid, pname)),
        _ => None,
    };
    let mut tx = app.store.begin_write().await.expect("tx");
    if let Some((pid, pname)) = new_partner {
        store::partners::insert(&mut tx, pid, pname, now).await.expect("insert partner");
    }
    let row = AccountRow {
        id: id.clone(),
        email_normalized: email.to_lowercase(),
        person: Person {
            email: email.to_string(),
            given_name: "Marie".into(),
            family_name: "Dupont".into(),
            function: "Coordinatrice CTG".into(),
            partner_id: partner.map(|p| p.0.to_string()),
            partner_name: partner.map(|p| p.1.to_string()),
        },
        state: "active".into(),
        password_hash: Some(hash),
        created_at: now,
        updated_at: now,
    };
    store::accounts::insert(&mut tx, &row).await.expect("insert account");
    tx.commit().await.expect("commit");
    id
}
