//! Back-Channel Logout plan: discovery, the `sid` in ID tokens, and the
//! signed `logout_token` POSTed to the client's `backchannel_logout_uri`,
//! retried while the relying party is unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use coop_idp::oidc::clients::AuthMethod;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use openidconnect::TokenResponse;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::common::*;
use crate::on_both_databases;

const EMAIL: &str = "marie.dupont@cc-girou.fr";
const SIGNED_OUT: &str = "http://127.0.0.1:9/signed-out";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

on_both_databases!(
    backchannel_logout_discovery_endpoint_verification,
    oidcc_backchannel_rp_initiated_logout,
    backchannel_logout_retried_while_receiver_answers_503,
    backchannel_logout_retried_while_receiver_is_down,
    backchannel_logout_on_session_end_by_the_provider,
);

/// A relying party's back-channel logout endpoint, run inside the test.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    /// (Content-Type, logout_token) of each accepted request.
    received: Arc<Mutex<Vec<(String, String)>>>,
    hits: Arc<AtomicUsize>,
    /// Answer 503 to this many requests first.
    refuse_first: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.hits.fetch_add(1, Ordering::SeqCst);
    if r.refuse_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned());
    match token {
        Some(t) => {
            r.received.lock().await.push((content_type, t));
            StatusCode::OK
        }
        None => StatusCode::BAD_REQUEST,
    }
}

impl Receiver {
    fn serve(&self, listener: TcpListener) {
        let app = Router::new().route("/backchannel", post(receive)).with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    pub(crate) async fn start() -> (Receiver, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let uri = format!("http://{}/backchannel", listener.local_addr().expect("addr"));
        let r = Receiver::default();
        r.serve(listener);
        (r, uri)
    }

    pub(crate) async fn tokens(&self) -> Vec<(String, String)> {
        self.received.lock().await.clone()
    }

    /// Polls until a token arrives (the sender retries with backoff from 1 s).
    pub(crate) async fn wait_for_token(&self, within: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(t) = self.tokens().await.first() {
                return Some(t.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Registers `id` with a back-channel logout URI; returns its secret.
async fn add_backchannel_client(server: &TestServer, id: &str, uri: &str) -> String {
    let uri = uri.to_string();
    server
        .add_client_with(id, AuthMethod::ClientSecretBasic, |r| r.backchannel_logout_uri = Some(uri))
        .await
        .expect("secret")
}

/// Signs in to `client_id` in `browser`; returns the raw ID token.
async fn sign_in_to(server: &TestServer, browser: &reqwest::Client, client_id: &str, secret: &str) -> String {
    let rp = server.rp(client_id, Some(secret)).await;
    let (tokens, _) = code_flow(server, &rp, browser, EMAIL, &[]).await;
    tokens.id_token().expect("id_token").to_string()
}

async fn rp_logout(server: &TestServer, browser: &reqwest::Client, id_token: &str) {
    let mut url = url::Url::parse(&server.url("/logout")).expect("url");
    url.query_pairs_mut().append_pair("id_token_hint", id_token).append_pair("post_logout_redirect_uri", SIGNED_OUT);
    let r = browser.get(url.as_str()).send().await.expect("logout");
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), SIGNED_OUT);
}

/// Verifies a logout token as a relying party would, against the provider's
/// JWKS; returns its claims.
pub(crate) async fn verify_logout_token(server: &TestServer, token: &str, client_id: &str, id_token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("JWT header");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"), "explicit typing (OIDC BCL §2.4)");
    let kid = header.kid.clone().expect("kid");
    assert_eq!(Some(kid.as_str()), jwt_part(id_token, 0)["kid"].as_str(), "signed like the client's ID tokens");
    let jwks: JwkSet =
        http_client().get(server.url("/jwks")).send().await.expect("jwks").json().await.expect("JWK set");
    let jwk = jwks.find(&kid).expect("logout token key published in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[server.base.as_str()]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation).expect("valid logout token").claims;

    // The same token with a broken signature does not verify.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[2] = coop_idp::crypto::b64url(b"not the signature");
    assert!(jsonwebtoken::decode::<Value>(&parts.join("."), &key, &validation).is_err());

    let id = jwt_part(id_token, 1);
    let now = server.clock.now_secs();
    assert!(claims["iat"].as_i64().is_some_and(|iat| (now - 60..=now + 5).contains(&iat)), "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16), "{claims}");
    assert_eq!(claims["sub"], id["sub"]);
    assert!(id["sid"].is_string(), "ID tokens carry sid: {id}");
    assert_eq!(claims["sid"], id["sid"], "sid of the session that ended");
    assert_eq!(claims["events"][EVENT], serde_json::json!({}), "{claims}");
    assert!(claims.get("nonce").is_none(), "a logout token never has a nonce: {claims}");
    claims
}

async fn backchannel_logout_discovery_endpoint_verification(db: Db) {
    let server = TestServer::start(db).await;
    let metadata = discovery(&server.base).await;
    assert_eq!(metadata["backchannel_logout_supported"], true);
    assert_eq!(metadata["backchannel_logout_session_supported"], true);
    assert!(metadata["end_session_endpoint"].is_string());
}

async fn oidcc_backchannel_rp_initiated_logout(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account(EMAIL, None).await;
    let (receiver, uri) = Receiver::start().await;
    let (bystander, bystander_uri) = Receiver::start().await;
    let secret = add_backchannel_client(&server, "platform", &uri).await;
    // Registered for back-channel logout, but never used in this session.
    add_backchannel_client(&server, "bystander", &bystander_uri).await;
    let browser = browser();
    let id_token = sign_in_to(&server, &browser, "platform", &secret).await;
    // A second sign-in in the same session gets the same sid.
    let again = sign_in_to(&server, &browser, "platform", &secret).await;
    assert_eq!(jwt_part(&again, 1)["sid"], jwt_part(&id_token, 1)["sid"]);
    assert!(receiver.tokens().await.is_empty(), "nothing sent before the logout");

    rp_logout(&server, &browser, &id_token).await;
    let (content_type, token) = receiver.wait_for_token(Duration::from_secs(15)).await.expect("logout token delivered");
    assert!(content_type.starts_with("application/x-www-form-urlencoded"), "{content_type}");
    verify_logout_token(&server, &token, "platform", &id_token).await;

    // Exactly once, and only to the clients of that session.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.tokens().await.len(), 1, "delivered once");
    assert_eq!(bystander.hits.load(Ordering::SeqCst), 0, "a client the session never used is not told");
    assert_eq!(server.app.store.pending_backchannel_count().await.expect("count"), 0);
}

async fn backchannel_logout_retried_while_receiver_answers_503(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account(EMAIL, None).await;
    let (receiver, uri) = Receiver::start().await;
    receiver.refuse_first.store(2, Ordering::SeqCst);
    let secret = add_backchannel_client(&server, "platform", &uri).await;
    let browser = browser();
    let id_token = sign_in_to(&server, &browser, "platform", &secret).await;
    rp_logout(&server, &browser, &id_token).await;

    // The first answer is a 503: not delivered, still queued.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while receiver.hits.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "first attempt made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.tokens().await.is_empty());
    assert_eq!(server.app.store.pending_backchannel_count().await.expect("count"), 1, "kept for a retry");

    let (_, token) = receiver.wait_for_token(Duration::from_secs(15)).await.expect("delivered after the 503s");
    assert_eq!(receiver.hits.load(Ordering::SeqCst), 3, "two refusals, then the delivery");
    verify_logout_token(&server, &token, "platform", &id_token).await;
    wait_until_nothing_pending(&server).await;
}

async fn backchannel_logout_retried_while_receiver_is_down(db: Db) {
    let server = TestServer::start(db).await;
    server.add_account(EMAIL, None).await;
    // A port that nothing listens on (yet).
    let reserved = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = reserved.local_addr().expect("addr");
    drop(reserved);
    let secret = add_backchannel_client(&server, "platform", &format!("http://{addr}/backchannel")).await;
    let browser = browser();
    let id_token = sign_in_to(&server, &browser, "platform", &secret).await;
    rp_logout(&server, &browser, &id_token).await;

    // Wait for a failed attempt: the notification stays queued.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (attempts,): (i64,) = sqlx::query_as("SELECT attempts FROM backchannel_outbox")
            .fetch_one(server.app.store.pool())
            .await
            .expect("outbox row");
        if attempts > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "first attempt made");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.app.store.pending_backchannel_count().await.expect("count"), 1, "kept for a retry");

    // The relying party comes up: the retry reaches it.
    let receiver = Receiver::default();
    receiver.serve(TcpListener::bind(addr).await.expect("bind the reserved port again"));
    let (_, token) = receiver.wait_for_token(Duration::from_secs(15)).await.expect("delivered once the RP is up");
    verify_logout_token(&server, &token, "platform", &id_token).await;
    wait_until_nothing_pending(&server).await;
}

async fn backchannel_logout_on_session_end_by_the_provider(db: Db) {
    let server = TestServer::start(db).await;
    let sub = server.add_account(EMAIL, None).await;
    let (receiver, uri) = Receiver::start().await;
    let secret = add_backchannel_client(&server, "platform", &uri).await;
    let browser = browser();
    let id_token = sign_in_to(&server, &browser, "platform", &secret).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(receiver.tokens().await.is_empty(), "nothing sent while the session lives");

    // An administrator ends every session of the account (closure, reset).
    let mut tx = server.app.store.begin_write().await.expect("begin");
    let now = server.app.clock.now_ms();
    let notices = coop_idp::auth::session::end_all_of_account_in(&server.app, &mut tx, &sub, "admin", now)
        .await
        .expect("end sessions");
    tx.commit().await.expect("commit");
    server.app.backchannel_wake.notify_one();
    assert_eq!(notices, 1);
    let (_, token) = receiver.wait_for_token(Duration::from_secs(15)).await.expect("logout token delivered");
    verify_logout_token(&server, &token, "platform", &id_token).await;
}

async fn wait_until_nothing_pending(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.app.store.pending_backchannel_count().await.expect("count") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "marked delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
