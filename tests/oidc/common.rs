//! Test harness: a real coop-idp server on a free port, on SQLite or on its
//! own PostgreSQL schema, with a cookie-keeping browser and the
//! `openidconnect` crate as relying party.

use std::sync::Arc;

use coop_idp::app::App;
use coop_idp::clock::Clock;
use coop_idp::config::Config;
use coop_idp::oidc::clients::{self, AuthMethod, Registration};
use coop_idp::store::{self, NewAccount, Store};
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, RedirectUrl};
use tokio::sync::watch;

pub type Rp =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

pub const PASSWORD: &str = "Correct-Horse-9-Battery";
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite,
    Postgres(String),
}

impl Db {
    /// PostgreSQL from `COOP_IDP_TEST_POSTGRES_URL`; unset: skipped (said so).
    pub fn postgres() -> Option<Db> {
        match std::env::var("COOP_IDP_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Db::Postgres(url)),
            _ => {
                eprintln!("skipped: COOP_IDP_TEST_POSTGRES_URL is not set, PostgreSQL variant not run");
                None
            }
        }
    }
}

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

pub struct TestServer {
    pub app: Arc<App>,
    pub base: String,
    pub clock: Clock,
    _dir: tempfile::TempDir,
    stop: Option<watch::Sender<bool>>,
    pg_cleanup: Option<(String, String)>,
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        Self::start_with(db, &[]).await
    }

    /// Starts a server; `extra` are configuration overrides (`key`, value).
    pub async fn start_with(db: Db, extra: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://127.0.0.1:{}", addr.port());
        let (database_url, pg_cleanup) = match &db {
            Db::Sqlite => (format!("sqlite://{}/coop-idp.db", dir.path().display()), None),
            Db::Postgres(url) => {
                let schema = format!("t_{}", coop_idp::crypto::random_b64(9).to_lowercase().replace(['-', '_'], "x"));
                let admin = Store::connect(url).await.expect("PostgreSQL reachable (COOP_IDP_TEST_POSTGRES_URL)");
                sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(admin.pool()).await.expect("create schema");
                admin.close().await;
                let sep = if url.contains('?') { '&' } else { '?' };
                (format!("{url}{sep}options=-c%20search_path%3D{schema}"), Some((url.clone(), schema)))
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
        app.spawn_jobs(stop_rx.clone());
        let served = app.clone();
        let mut stop_serving = stop_rx;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_serving.changed().await;
            };
            let _ = coop_idp::web::serve(served, listener, shutdown).await;
        });
        TestServer { app, base, clock, _dir: dir, stop: Some(stop_tx), pg_cleanup }
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
        store::grant_role(&mut tx, account_id, role).await.expect("role");
        tx.commit().await.expect("commit");
    }

    pub async fn close_account(&self, account_id: &str) {
        let mut tx = self.app.store.begin_write().await.expect("tx");
        store::update_account_state(&mut tx, account_id, "closed", self.clock.now_ms()).await.expect("close");
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
        if let Some((url, schema)) = self.pg_cleanup.take() {
            // Drop runs inside the test's runtime; clean up from a thread of its own.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(async {
                        if let Ok(admin) = Store::connect(&url).await {
                            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(admin.pool()).await;
                            admin.close().await;
                        }
                    });
                }
            })
            .join();
        }
    }
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
        store::insert_partner(&mut tx, pid, pname, now).await.expect("insert partner");
    }
    store::insert_account(
        &mut tx,
        &NewAccount {
            id: &id,
            email,
            email_normalized: &email.to_lowercase(),
            given_name: "Marie",
            family_name: "Dupont",
            function: "Coordinatrice CTG",
            partner_id: partner.map(|p| p.0),
            state: "active",
            password_hash: Some(&hash),
            now,
        },
    )
    .await
    .expect("insert account");
    tx.commit().await.expect("commit");
    id
}

/// The RP's HTTP client: no redirects (OAuth clients must not follow them).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
}

/// A browser: keeps cookies, does not follow redirects (tests look at them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("browser")
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The value of a hidden form field in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&#x2f;", "/").replace("&amp;", "&"))
}

/// Query parameters of a URL, as a map.
pub fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url).map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default()
}

/// Follows an authorization URL through the sign-in page; returns the final
/// redirect to the client (its `Location`).
pub async fn sign_in(server: &TestServer, browser: &reqwest::Client, authorize_url: &str, email: &str) -> String {
    let r = browser.get(authorize_url).send().await.expect("authorize");
    assert_eq!(r.status(), 303, "authorize should redirect to the sign-in page");
    let signin = location(&r);
    assert!(signin.starts_with("/signin?request="), "{signin}");
    submit_sign_in(server, browser, &signin, email, PASSWORD).await
}

pub async fn submit_sign_in(
    server: &TestServer,
    browser: &reqwest::Client,
    signin: &str,
    email: &str,
    password: &str,
) -> String {
    let page = browser.get(server.url(signin)).send().await.expect("sign-in page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let csrf = hidden(&html, "csrf").expect("csrf field");
    let request = hidden(&html, "request").expect("request field");
    let r = browser
        .post(server.url("/signin"))
        .form(&[("csrf", csrf.as_str()), ("request", request.as_str()), ("email", email), ("password", password)])
        .send()
        .await
        .expect("sign-in submit");
    assert_eq!(r.status(), 303, "sign-in should succeed");
    // An administrator gives the second factor (enrolling the first time);
    // either way the browser then goes back to the client.
    match location(&r).as_str() {
        "/signin/otp/enrol" => crate::second_step::enrol(server, browser, email).await.1,
        "/signin/otp" => {
            let r = crate::second_step::second_step(server, browser, email, "/signin/otp").await;
            assert_eq!(r.status(), 303, "second factor accepted");
            location(&r)
        }
        other => other.to_string(),
    }
}
