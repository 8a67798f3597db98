//! Browser tests (R26): the pages as a person uses them, in headless
//! Chromium driven through chromedriver, each page scanned by axe-core and
//! kept as a screenshot; each journey runs in both themes (`theme` key). Skipped (said so) where chromedriver is absent,
//! unless COOP_IDP_TEST_BROWSER=required (.ci/run sets it).
//!
//! SQLite only: storage is covered on both databases by tests/oidc; a second
//! browser run on PostgreSQL would double the time for no new page.

mod admin;
#[allow(dead_code, unused_imports)]
#[path = "../oidc/common/mod.rs"]
mod common;
mod driver;
mod first_hour;
mod passkeys;
#[allow(dead_code)]
#[path = "../oidc/second_step.rs"]
mod second_step;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coop_idp::oidc::clients::AuthMethod;
use coop_idp::provisioning::invite::{Invitation, invite};
use coop_idp::provisioning::{NewPartner, add_partner};
use serde_json::Value;

use common::{Db, TestServer};
use driver::Theme;

const PARTNER: &str = "cc-girou";
const EMAIL: &str = "marie.dupont@cc-girou.fr";
const CLIENT: &str = "portail-partenaires";
/// Compliant with every rule of the convention, and not personal.
const FIRST_PASSWORD: &str = "Tuile-Verte-7-Basalte";
const SECOND_PASSWORD: &str = "Brique-Rouge-4-Granit";
/// Refused: no uppercase, no digit, no special character.
const WEAK_PASSWORD: &str = "motdepasse";
const VERIFIER: &str = "browser-journey-code-verifier-0123456789-abcdefghijkl";

/// A relying party's callback on this machine: records each query it gets
/// and shows a plain page, so the browser lands somewhere real.
struct RelyingParty {
    base: String,
    hits: Arc<Mutex<Vec<String>>>,
}

async fn relying_party() -> RelyingParty {
    use axum::extract::{RawQuery, State};
    use axum::response::Html;
    let hits = Arc::new(Mutex::new(Vec::new()));
    async fn page(State(hits): State<Arc<Mutex<Vec<String>>>>, RawQuery(q): RawQuery) -> Html<&'static str> {
        if let Ok(mut h) = hits.lock() {
            h.push(q.unwrap_or_default());
        }
        Html(
            "<!DOCTYPE html><html lang=\"fr\"><head><title>Application partenaire</title></head><body><main><h1>Application partenaire</h1></main></body></html>",
        )
    }
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(page))
        .route("/signed-out", axum::routing::get(page))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    RelyingParty { base, hits }
}

impl RelyingParty {
    fn callback(&self) -> String {
        format!("{}/callback", self.base)
    }

    fn last_hit(&self) -> String {
        self.hits.lock().map(|h| h.last().cloned().unwrap_or_default()).unwrap_or_default()
    }
}

/// The newest link starting with `prefix` mailed to `to` (file outbox),
/// waiting for the `count`th such message.
async fn mailed_link(server: &TestServer, to: &str, prefix: &str, count: usize) -> String {
    let dir = server.app.config.data_dir.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut names: Vec<_> =
            std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        names.retain(|p: &std::path::PathBuf| {
            p.extension().is_some_and(|x| x == "eml")
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        names.sort();
        let links: Vec<String> = names
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|m| m.lines().any(|l| l.starts_with("To: ") && l.contains(to)))
            .filter_map(|m| {
                let start = m.find(prefix)?;
                let rest = &m[start..];
                Some(rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())].to_string())
            })
            .collect();
        if links.len() >= count {
            return links.last().cloned().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "no message {count} to {to} with {prefix} in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn authorize_url(server: &TestServer, rp: &RelyingParty, state: &str) -> String {
    let challenge = coop_idp::crypto::b64url(&coop_idp::crypto::sha256(VERIFIER.as_bytes()));
    let mut u = url::Url::parse(&server.url("/authorize")).expect("url");
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", &rp.callback())
        .append_pair("scope", "openid email profile")
        .append_pair("state", state)
        .append_pair("nonce", &format!("nonce-{state}"))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    u.to_string()
}

/// The relying party's side: the code from its callback, exchanged for
/// tokens with its secret; returns the token response.
async fn exchange(server: &TestServer, rp: &RelyingParty, secret: &str, state: &str) -> Value {
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(rp.last_hit().as_bytes()).into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some(state), "callback: {query:?}");
    let code = query.get("code").expect("a code in the callback");
    let r = common::http_client()
        .post(server.url("/token"))
        .basic_auth(CLIENT, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", rp.callback().as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200, "token endpoint");
    let tokens: Value = r.json().await.expect("token JSON");
    assert!(tokens["id_token"].as_str().is_some_and(|t| t.split('.').count() == 3), "{tokens}");
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_agent_journey_in_a_real_browser_neutral_theme() {
    partner_agent_journey(Theme::Neutral).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_agent_journey_in_a_real_browser_dsfr_theme() {
    partner_agent_journey(Theme::Dsfr).await;
}

/// Invitation → activation email → password refused then accepted →
/// relying-party sign-in (with a failed attempt first) → lost password →
/// reset → sign-in with the new password → logout confirmation → an error
/// page; every page scanned by axe-core and photographed, in `theme`.
async fn partner_agent_journey(theme: Theme) {
    let started = Instant::now();
    let test = format!("a_partner_agent_journey_in_a_real_browser ({})", theme.code());
    let Some(mut b) = driver::start(&test, theme).await else { return };
    let server = TestServer::start_with(Db::Sqlite, &[("theme", theme.code())]).await;
    let rp = relying_party().await;
    let secret = server
        .add_client_with(CLIENT, AuthMethod::ClientSecretBasic, |r| {
            r.name = "Portail des partenaires".into();
            r.redirect_uris = vec![rp.callback()];
            r.post_logout_redirect_uris = vec![format!("{}/signed-out", rp.base)];
        })
        .await
        .expect("client secret");
    add_partner(
        &server.app,
        NewPartner { id: PARTNER, name: "CC du Girou", convention_signed: Some("2026-01-01"), email_domains: &[] },
    )
    .await
    .expect("partner");
    invite(
        &server.app,
        Invitation {
            partner_id: PARTNER,
            email: EMAIL,
            given_name: "Marie",
            family_name: "Dupont",
            function: "Coordinatrice CTG",
        },
    )
    .await
    .expect("invitation");

    // Activation: the link from the email, a weak password refused, then a good one.
    let link = mailed_link(&server, EMAIL, &format!("{}?token=", server.url("/activate")), 1).await;
    b.goto(&link).await;
    b.wait_title("Créer votre mot de passe").await;
    b.check_page("activation", "fr").await;
    b.fill("password", WEAK_PASSWORD).await;
    b.fill("confirmation", WEAK_PASSWORD).await;
    b.submit("Erreur : Créer votre mot de passe").await;
    assert!(b.exists(".fr-input-group--error #password").await, "the field is marked in error");
    let described = b.attr("#password", "aria-describedby").await.unwrap_or_default();
    assert!(described.contains("password-error"), "the error is tied to the field: {described}");
    assert!(b.exists("[role=alert] a[href='#password']").await, "the summary links to the field");
    b.check_page("activation-error", "fr").await;
    b.fill("password", FIRST_PASSWORD).await;
    b.fill("confirmation", FIRST_PASSWORD).await;
    b.submit("Votre mot de passe est créé").await;
    b.check_page("activated", "fr").await;

    // The relying party sends the agent to sign in; a mistyped password first.
    b.goto(&authorize_url(&server, &rp, "first")).await;
    b.wait_title("Se connecter").await;
    assert!(b.url().await.path() == "/signin", "authorize leads to the sign-in page");
    b.check_page("signin", "fr").await;
    b.fill("email", EMAIL).await;
    b.fill("password", "Pas-Le-Bon-1").await;
    b.submit("Erreur : Se connecter").await;
    assert_eq!(b.attr("#email", "aria-invalid").await.as_deref(), Some("true"));
    b.check_page("signin-error", "fr").await;
    b.fill("email", EMAIL).await;
    b.fill("password", FIRST_PASSWORD).await;
    b.submit("Application partenaire").await;
    exchange(&server, &rp, &secret, "first").await;

    // The English switch on the sign-in page of a new request.
    b.goto(&server.url("/signin?lang=en")).await;
    b.wait_title("Sign in").await;
    b.check_page("signin-en", "en").await;
    b.goto(&server.url("/signin?lang=fr")).await;
    b.wait_title("Se connecter").await;

    // Lost password: the form, the neutral answer, the emailed link, the reset.
    b.goto(&server.url("/password/forgot")).await;
    b.wait_title("Mot de passe oublié").await;
    b.check_page("forgot", "fr").await;
    b.fill("email", EMAIL).await;
    b.submit("Mot de passe oublié").await;
    assert!(b.exists(".fr-alert--success").await, "the neutral answer is shown");
    b.check_page("forgot-sent", "fr").await;
    let link = mailed_link(&server, EMAIL, &format!("{}?token=", server.url("/password/reset")), 1).await;
    b.goto(&link).await;
    b.wait_title("Renouveler votre mot de passe").await;
    b.check_page("reset", "fr").await;
    b.fill("password", SECOND_PASSWORD).await;
    b.fill("confirmation", SECOND_PASSWORD).await;
    b.submit("Votre mot de passe est renouvelé").await;
    b.check_page("reset-done", "fr").await;

    // The reset closed every session: signing in again, with the new password.
    b.goto(&authorize_url(&server, &rp, "second")).await;
    b.wait_title("Se connecter").await;
    b.fill("email", EMAIL).await;
    b.fill("password", SECOND_PASSWORD).await;
    b.submit("Application partenaire").await;
    exchange(&server, &rp, &secret, "second").await;

    // Sign-out asked by the relying party without a token: the agent confirms.
    let mut logout = url::Url::parse(&server.url("/logout")).expect("url");
    logout
        .query_pairs_mut()
        .append_pair("client_id", CLIENT)
        .append_pair("post_logout_redirect_uri", &format!("{}/signed-out", rp.base))
        .append_pair("state", "bye");
    b.goto(logout.as_str()).await;
    b.wait_title("Se déconnecter ?").await;
    b.check_page("logout-confirm", "fr").await;
    b.submit("Application partenaire").await;
    assert!(rp.last_hit().contains("state=bye"), "back at the relying party after sign-out");

    // An error page.
    b.goto(&server.url("/no-such-page")).await;
    b.wait_title("Erreur").await;
    assert!(b.exists("[role=alert]").await);
    b.check_page("error-not-found", "fr").await;

    let pages = b.finish().await;
    assert_eq!(pages.len(), 12, "pages scanned: {pages:?}");
    eprintln!("browser journey ({}): {} pages in {:.1} s", theme.code(), pages.len(), started.elapsed().as_secs_f64());
}
