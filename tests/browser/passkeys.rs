//! Passkeys in Chromium (issue 17), with the WebAuthn automation extension
//! that chromedriver implements: a virtual platform authenticator (CTAP2,
//! internal transport, resident keys, user verification that succeeds).
//! The server's issuer is `http://localhost:PORT` (browsers refuse an IP
//! address as relying-party id).
//!
//! An agent registers a passkey from the security page, signs out, signs
//! in at a relying party with it alone and the ID token says `pop`; a
//! counter that went backwards is refused; a removed passkey no longer
//! signs in; a closed account's passkey is refused. An administrator
//! enrols a passkey as second factor and reaches the console with it. With
//! an authenticator that keeps its credentials, an agent signs in from the
//! sign-in page's passkey autofill without typing anything (Chromium's
//! automation answers a conditional request at once with the credential).

use std::time::Duration;

use axum::http::Method;
use coop_idp::oidc::clients::AuthMethod;
use coop_idp::provisioning::{NewPartner, add_partner};
use fantoccini::Locator;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};

use crate::common::{Db, PASSWORD, TestServer};
use crate::{driver, exchange, relying_party};

const PARTNER: &str = "cc-girou";
const AGENT: &str = "marie.dupont@cc-girou.fr";
const OTHER: &str = "paul.martin@cc-girou.fr";
const ADMIN: &str = "habilitations@caf.fr";
const CLIENT: &str = "portail-partenaires";
const VERIFIER: &str = "browser-journey-code-verifier-0123456789-abcdefghijkl";

/// A command of the WebAuthn extension (`/session/{id}/webauthn/…`).
#[derive(Debug)]
struct WebAuthn {
    method: Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthn {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/{}", session.unwrap_or_default(), self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (Method, Option<String>) {
        (self.method.clone(), self.body.as_ref().map(Value::to_string))
    }
}

async fn webauthn(b: &driver::Browser, method: Method, path: String, body: Option<Value>) -> Value {
    let cmd = WebAuthn { method, path: path.clone(), body };
    b.client.issue_cmd(cmd).await.unwrap_or_else(|e| panic!("webauthn {path}: {e}"))
}

/// Adds a virtual authenticator; returns its id. With `resident` it keeps
/// the credentials it makes (discoverable: the sign-in page's autofill
/// offers them); without, it is a security key with no room left, whose
/// passkeys sign in after the address, and the autofill never answers.
async fn authenticator(b: &driver::Browser, resident: bool) -> String {
    let options = json!({
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": resident,
        "hasUserVerification": true, "isUserVerified": true, "automaticPresenceSimulation": true,
    });
    let id = webauthn(b, Method::POST, "authenticator".into(), Some(options)).await;
    id.as_str().expect("authenticator id").to_string()
}

async fn credentials(b: &driver::Browser, authenticator: &str) -> Vec<Value> {
    let list = webauthn(b, Method::GET, format!("authenticator/{authenticator}/credentials"), None).await;
    list.as_array().cloned().unwrap_or_default()
}

fn authorize_url(server: &TestServer, callback: &str, state: &str) -> String {
    let challenge = coop_idp::crypto::b64url(&coop_idp::crypto::sha256(VERIFIER.as_bytes()));
    let mut u = url::Url::parse(&server.url("/authorize")).expect("url");
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT)
        .append_pair("redirect_uri", callback)
        .append_pair("scope", "openid email")
        .append_pair("state", state)
        .append_pair("nonce", &format!("nonce-{state}"))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    u.to_string()
}

fn payload(id_token: &str) -> Value {
    let part = id_token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&coop_idp::crypto::b64url_decode(part).expect("base64url")).expect("JSON")
}

/// The password sign-in, on the sign-in page already shown.
async fn password(b: &driver::Browser, email: &str, title: &str) {
    b.fill("email", email).await;
    b.fill("password", PASSWORD).await;
    b.submit(title).await;
}

/// Registers a passkey named `name` from the security page.
async fn register(b: &driver::Browser, server: &TestServer, name: &str) {
    b.goto(&server.url("/account/security")).await;
    b.wait_title("Sécurité du compte").await;
    wait_visible(b, "#passkey-add").await;
    b.fill("passkey-name", name).await;
    b.follow("#passkey-add button[type=submit]", "Sécurité du compte").await;
    wait_for(b, "main .fr-alert--success").await;
}

/// Signs out by forgetting the session, as closing the browser would.
async fn sign_out(b: &driver::Browser, server: &TestServer) {
    b.goto(&server.url("/healthz")).await;
    b.client.delete_all_cookies().await.expect("cookies deleted");
}

/// Waits until the form `css`, hidden without the script, is shown.
async fn wait_visible(b: &driver::Browser, css: &str) {
    let script = format!("const f = document.querySelector('{css}'); return !!f && !f.hidden;");
    for _ in 0..200 {
        if b.client.execute(&script, vec![]).await.ok() == Some(Value::Bool(true)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} is not shown: the passkey script did not run");
}

async fn wait_for(b: &driver::Browser, css: &str) {
    for _ in 0..200 {
        if b.exists(css).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {css} on the page: {}", b.main_text().await);
}

/// Clicks the passkey sign-in button after typing `email`.
async fn passkey_sign_in(b: &driver::Browser, email: &str, title: &str) {
    b.wait_title("Se connecter").await;
    wait_visible(b, "#passkey-signin").await;
    b.fill("email", email).await;
    b.follow("#passkey-signin button[type=submit]", title).await;
}

/// A server on localhost with the relying party's client, the partner and
/// the agent's account: (server, relying party, client secret, account id).
async fn agent_at_a_relying_party() -> (TestServer, crate::RelyingParty, String, String) {
    let server = TestServer::start_on_localhost(Db::Sqlite).await;
    let rp = relying_party().await;
    let secret = server
        .add_client_with(CLIENT, AuthMethod::ClientSecretBasic, |r| r.redirect_uris = vec![rp.callback()])
        .await
        .expect("client secret");
    add_partner(
        &server.app,
        NewPartner { id: PARTNER, name: "CC du Girou", convention_signed: Some("2026-01-01"), email_domains: &[] },
    )
    .await
    .expect("partner");
    let agent = server.add_account(AGENT, Some((PARTNER, "CC du Girou"))).await;
    (server, rp, secret, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_signs_in_with_a_passkey_in_a_real_browser() {
    let Some(mut b) = driver::start("an_agent_signs_in_with_a_passkey_in_a_real_browser", driver::Theme::Neutral).await
    else {
        return;
    };
    let (server, rp, secret, agent) = agent_at_a_relying_party().await;
    let auth = authenticator(&b, false).await;

    // A fresh password sign-in, then the security page: register a passkey.
    b.goto(&server.url("/signin")).await;
    b.wait_title("Se connecter").await;
    password(&b, AGENT, "connecté").await;
    b.goto(&server.url("/account/security")).await;
    b.wait_title("Sécurité du compte").await;
    wait_visible(&b, "#passkey-add").await;
    b.check_page("passkeys-security-empty", "fr").await;
    register(&b, &server, "Ordinateur du bureau").await;
    assert!(b.main_text().await.contains("Ordinateur du bureau"), "the passkey is listed");
    b.check_page("passkeys-security", "fr").await;
    assert_eq!(credentials(&b, &auth).await.len(), 1, "the authenticator holds the credential");
    assert_eq!(server.app.store.passkey_count(&agent).await.expect("count"), 1);

    // Signed out, the relying party sends the agent to sign in: the passkey alone.
    sign_out(&b, &server).await;
    b.goto(&authorize_url(&server, &rp.callback(), "pk")).await;
    b.wait_title("Se connecter").await;
    b.check_page("passkeys-signin", "fr").await;
    passkey_sign_in(&b, AGENT, "Application partenaire").await;
    let tokens = exchange(&server, &rp, &secret, "pk").await;
    let claims = payload(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(claims["amr"], json!(["pop", "user"]), "{claims}");
    assert_eq!(claims["acr"], "urn:coop-idp:acr:passkey");

    // A counter that went backwards (a copy of the key): refused.
    let credential = credentials(&b, &auth).await.into_iter().next().expect("credential");
    let id = credential["credentialId"].as_str().expect("credential id").to_string();
    webauthn(&b, Method::DELETE, format!("authenticator/{auth}/credentials/{id}"), None).await;
    let mut copy = credential.clone();
    copy["signCount"] = json!(0);
    webauthn(&b, Method::POST, format!("authenticator/{auth}/credential"), Some(copy)).await;
    sign_out(&b, &server).await;
    b.goto(&server.url("/signin")).await;
    passkey_sign_in(&b, AGENT, "Erreur : Se connecter").await;
    b.check_page("passkeys-signin-refused", "fr").await;
    let stored = server.app.store.passkeys_of_account(&agent).await.expect("passkeys");
    assert!(stored[0].counter >= 1, "the stored counter did not move back: {}", stored[0].counter);

    // Removed from the security page, the passkey no longer signs in.
    b.goto(&server.url("/signin")).await;
    b.wait_title("Se connecter").await;
    password(&b, AGENT, "connecté").await;
    b.goto(&server.url("/account/security")).await;
    b.wait_title("Sécurité du compte").await;
    b.follow("main button.passkey-remove", "Sécurité du compte").await;
    wait_for(&b, "main .fr-alert--success").await;
    assert_eq!(server.app.store.passkey_count(&agent).await.expect("count"), 0);
    sign_out(&b, &server).await;
    b.goto(&server.url("/signin")).await;
    b.wait_title("Se connecter").await;
    wait_visible(&b, "#passkey-signin").await;
    b.fill("email", AGENT).await;
    b.client
        .find(Locator::Css("#passkey-signin button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_for(&b, "#passkey-signin [data-passkey-message]:not([hidden])").await;
    assert_eq!(b.url().await.path(), "/signin", "no sign-in");

    // A closed account's passkey is refused.
    let other = server.add_account(OTHER, Some((PARTNER, "CC du Girou"))).await;
    b.goto(&server.url("/signin")).await;
    b.wait_title("Se connecter").await;
    password(&b, OTHER, "connecté").await;
    register(&b, &server, "Téléphone").await;
    sign_out(&b, &server).await;
    b.goto(&server.url("/signin")).await;
    b.wait_title("Se connecter").await;
    wait_visible(&b, "#passkey-signin").await;
    b.fill("email", OTHER).await;
    // The challenge is asked while the access is open…
    let mut tx = server.app.store.begin_write().await.expect("tx");
    let now = server.app.clock.now_ms();
    coop_idp::provisioning::close_access_in(&server.app, &mut tx, &other, "2026-12-01", "access_closed", now)
        .await
        .expect("close");
    tx.commit().await.expect("commit");
    b.client
        .find(Locator::Css("#passkey-signin button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    // …and the closed account gets none: the page stays, with its message.
    wait_for(&b, "#passkey-signin [data-passkey-message]:not([hidden])").await;
    assert_eq!(b.url().await.path(), "/signin");
    assert_eq!(server.app.store.passkey_count(&other).await.expect("count"), 0, "closing removed its passkeys");
    let pages = b.finish().await;
    assert_eq!(pages.len(), 4, "{pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_uses_a_passkey_as_second_factor_in_a_real_browser() {
    let Some(mut b) =
        driver::start("an_administrator_uses_a_passkey_as_second_factor_in_a_real_browser", driver::Theme::Neutral)
            .await
    else {
        return;
    };
    let server = TestServer::start_on_localhost(Db::Sqlite).await;
    let admin = server.add_account(ADMIN, None).await;
    server.grant_role(&admin, "caf_habilitation").await;
    authenticator(&b, false).await;

    // The password leads to enrolment; a passkey instead of the TOTP app.
    b.goto(&server.url("/admin")).await;
    b.wait_title("Se connecter").await;
    password(&b, ADMIN, "Activer la validation en deux étapes").await;
    wait_visible(&b, "#passkey-enrol").await;
    b.check_page("passkeys-enrol", "fr").await;
    b.fill("passkey-name", "Clé de sécurité").await;
    b.follow("#passkey-enrol button[type=submit]", "Console d'administration").await;
    assert_eq!(server.app.store.passkey_count(&admin).await.expect("count"), 1);
    assert!(server.app.store.totp(&admin).await.expect("totp").is_none(), "no TOTP needed");

    // Later: the password, then the passkey, offered first.
    sign_out(&b, &server).await;
    b.goto(&server.url("/admin")).await;
    b.wait_title("Se connecter").await;
    password(&b, ADMIN, "Code de vérification").await;
    wait_visible(&b, "#passkey-step").await;
    assert!(!b.exists("#code").await, "without TOTP, no code is asked");
    b.check_page("passkeys-second-factor", "fr").await;
    b.follow("#passkey-step button[type=submit]", "Console d'administration").await;
    assert_eq!(b.url().await.path(), "/admin");
    let signins = server
        .app
        .store
        .query_events(&coop_idp::store::events::EventFilter {
            kind: Some("signin".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events");
    assert!(signins.iter().all(|e| e.details.contains("\"password_passkey\"")), "{signins:?}");
    assert!(signins.iter().all(|e| e.details.contains("\"mfa\"")), "{signins:?}");

    // The console's view of an account's passkeys: listed, and removed by
    // the habilitation manager.
    b.goto(&server.url(&format!("/admin/accounts/{admin}/passkeys"))).await;
    b.wait_title("Clés d'accès (passkeys)").await;
    assert!(b.main_text().await.contains("Clé de sécurité"), "the passkey is listed");
    b.check_page("passkeys-console", "fr").await;
    b.follow("main table button[type=submit]", "Clés d'accès (passkeys)").await;
    wait_for(&b, "main .fr-alert--success").await;
    assert_eq!(server.app.store.passkey_count(&admin).await.expect("count"), 0, "removed from the console");
    let removed = server
        .app
        .store
        .query_events(&coop_idp::store::events::EventFilter {
            kind: Some("passkey_removed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].actor, ADMIN, "the manager is the actor");
    let pages = b.finish().await;
    assert_eq!(pages.len(), 3, "{pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_signs_in_with_the_passkey_autofill_in_a_real_browser() {
    let Some(b) =
        driver::start("an_agent_signs_in_with_the_passkey_autofill_in_a_real_browser", driver::Theme::Neutral).await
    else {
        return;
    };
    let (server, rp, secret, agent) = agent_at_a_relying_party().await;
    let auth = authenticator(&b, true).await;

    // Without a passkey the autofill waits: the password signs in.
    b.goto(&server.url("/signin")).await;
    b.wait_title("Se connecter").await;
    assert_eq!(b.attr("#email", "autocomplete").await.as_deref(), Some("username webauthn"));
    password(&b, AGENT, "connecté").await;
    register(&b, &server, "Ordinateur du bureau").await;
    let held = credentials(&b, &auth).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["isResidentCredential"], json!(true), "a discoverable credential: {held:?}");

    // Signed out, the relying party sends the agent to sign in: the passkey
    // is chosen from the autofill, no address typed.
    sign_out(&b, &server).await;
    b.goto(&authorize_url(&server, &rp.callback(), "auto")).await;
    b.wait_title("Application partenaire").await;
    let tokens = exchange(&server, &rp, &secret, "auto").await;
    let claims = payload(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(claims["amr"], json!(["pop", "user"]), "{claims}");
    let signins = server
        .app
        .store
        .query_events(&coop_idp::store::events::EventFilter {
            kind: Some("signin".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events");
    let last = signins.last().expect("signin record");
    assert_eq!(last.account_id.as_deref(), Some(agent.as_str()));
    assert!(last.details.contains("\"method\":\"passkey\""), "{last:?}");
    let stored = server.app.store.passkeys_of_account(&agent).await.expect("passkeys");
    assert!(stored[0].last_used_at.is_some(), "the use is recorded");
    b.finish().await;
}
