//! A second factor at the relying party's request (issue 17, point 5):
//! `acr_values=urn:coop-idp:acr:mfa` alone asks an account that holds a
//! second factor (TOTP or a passkey) for it after the password, and the ID
//! token then says `mfa`; the same account without the request signs in as
//! before. A session opened with one factor does not answer such a request
//! silently: it steps up (`login_required` for `prompt=none`). An account
//! holding no second factor is answered with the `acr` it reached. Also: a
//! parked request the store fails to read is an internal error, not
//! "request expired".

use coop_idp::store::events::EventFilter;
use serde_json::{Value, json};

use crate::common::*;
use crate::on_both_databases;
use crate::passkeys::{SoftKey, account, register};
use crate::second_step::{ENROL, VERIFY, enrol, fresh_code, post_code};

on_both_databases!(
    mfa_asked_of_an_agent_with_totp_gets_the_second_step,
    mfa_asked_of_an_agent_with_a_passkey_steps_up_and_only_then,
    a_password_session_steps_up_for_mfa,
    an_account_without_a_second_factor_gets_the_acr_reached,
    a_parked_request_that_cannot_be_read_is_an_internal_error,
);

const MFA: &str = "urn:coop-idp:acr:mfa";
const PASSWORD_ACR: &str = "urn:coop-idp:acr:password";

/// The details of the newest `signin` record.
async fn newest_signin(server: &TestServer) -> Value {
    let filter = EventFilter { kind: Some("signin".into()), limit: 1000, ..Default::default() };
    let rows = server.app.store.query_events(&filter).await.expect("events");
    let newest = rows.iter().max_by_key(|e| e.seq).expect("a signin record");
    serde_json::from_str(&newest.details).expect("details")
}

/// `platform`'s authorization request with `extra`: its PKCE and where the
/// browser is sent.
async fn authorize(server: &TestServer, b: &reqwest::Client, extra: &[(&str, &str)]) -> (Pkce, String) {
    let p = Pkce::random();
    let url = authorize_url(server, &with(code_request("platform", &p, "st"), extra));
    let r = b.get(url).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    (p, location(&r))
}

/// The ID token's claims for the code of `callback`.
async fn id_claims(server: &TestServer, secret: &str, callback: &str, p: &Pkce) -> Value {
    let t = tokens(server, "platform", Some(secret), &code_of(callback), &p.verifier).await;
    jwt_part(&id_token_of(&t), 1)
}

/// The password on the sign-in page `signin`: where it sends the browser.
async fn password(server: &TestServer, b: &reqwest::Client, signin: &str) -> String {
    let r = SignIn::new(EMAIL, PASSWORD).on(signin).post(b, &server.base).await;
    assert_eq!(r.status(), 303, "the password is right");
    location(&r)
}

/// The passkey on the second-step page, as its script does: the options,
/// then the authenticator's answer; the response.
async fn passkey_step(server: &TestServer, b: &reqwest::Client, key: &mut SoftKey) -> reqwest::Response {
    let page = Form::of(b, &server.url(VERIFY)).await;
    assert!(page.html.contains("/signin/otp/passkey"), "the passkey is offered: {}", page.html);
    assert!(!page.html.contains("name=\"code\""), "no TOTP to ask for: {}", page.html);
    let options = page.submit(b, &server.url("/signin/otp/passkey/options"), &[], &[]).await;
    let options: Value = options.json().await.expect("options");
    page.submit(b, &server.url("/signin/otp/passkey"), &[("credential", &key.get(&options))], &[]).await
}

/// A server on `localhost` (passkeys refuse an IP address) with Marie's
/// account holding a passkey, and `platform`: (server, secret, key).
async fn passkey_server(db: Db) -> (TestServer, String, SoftKey) {
    let server = TestServer::start_on_localhost(db).await;
    let id = server.add_account(EMAIL, Some(("cc-girou", "CC du Girou"))).await;
    let secret = server.add_client("platform").await;
    let mut key = SoftKey::new(&server);
    register(&server, &account(&server, &id).await, &mut key, "Ordinateur du bureau").await;
    (server, secret, key)
}

async fn mfa_asked_of_an_agent_with_totp_gets_the_second_step(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let (b, csrf) = signed_in(&server, EMAIL).await;
    let r = b.post(server.url("/account/security/totp")).form(&[("csrf", csrf.as_str())]).send().await.expect("post");
    assert_eq!(location(&r), ENROL);
    enrol(&server, &b, EMAIL).await;

    let c = browser();
    let (p, signin) = authorize(&server, &c, &[("acr_values", MFA)]).await;
    assert_eq!(password(&server, &c, &signin).await, VERIFY, "the second step");
    let r = post_code(&server, &c, VERIFY, &fresh_code(&server, EMAIL).await).await;
    assert_eq!(r.status(), 303);
    let claims = id_claims(&server, &secret, &location(&r), &p).await;
    assert_eq!(claims["acr"], MFA);
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    let details = newest_signin(&server).await;
    assert_eq!((details["method"].clone(), details["acr_requested"].clone()), (json!("password_otp"), json!([MFA])));

    // Without acr_values the record says nothing was asked; an agent who
    // opted in to TOTP still gives a code at every sign-in (its own rule).
    let d = browser();
    let (p, signin) = authorize(&server, &d, &[]).await;
    assert_eq!(password(&server, &d, &signin).await, VERIFY);
    let r = post_code(&server, &d, VERIFY, &fresh_code(&server, EMAIL).await).await;
    let claims = id_claims(&server, &secret, &location(&r), &p).await;
    assert_eq!(claims["acr"], MFA);
    assert!(newest_signin(&server).await.get("acr_requested").is_none());
}

async fn mfa_asked_of_an_agent_with_a_passkey_steps_up_and_only_then(db: Db) {
    let (server, secret, mut key) = passkey_server(db).await;
    // Not asked: the password alone, as before.
    let b = browser();
    let (p, signin) = authorize(&server, &b, &[]).await;
    let callback = password(&server, &b, &signin).await;
    let claims = id_claims(&server, &secret, &callback, &p).await;
    assert_eq!((claims["acr"].clone(), claims["amr"].clone()), (json!(PASSWORD_ACR), json!(["pwd"])));
    // Several values are a preference: the password alone answers them too.
    let c = browser();
    let (p, signin) = authorize(&server, &c, &[("acr_values", &format!("{PASSWORD_ACR} {MFA}"))]).await;
    let callback = password(&server, &c, &signin).await;
    assert_eq!(id_claims(&server, &secret, &callback, &p).await["acr"], PASSWORD_ACR);

    // Asked for mfa: a passkey alone is one factor, refused with a reason.
    let c = browser();
    let (p, signin) = authorize(&server, &c, &[("acr_values", MFA)]).await;
    let form = Form::of(&c, &server.url(&signin)).await;
    let options = form.submit(&c, &server.url("/signin/passkey/options"), &[("email", EMAIL)], &[]).await;
    let options: Value = options.json().await.expect("options");
    let r = form.submit(&c, &server.url("/signin/passkey"), &[("credential", &key.get(&options))], &[]).await;
    assert_eq!(r.status(), 401);
    let html = r.text().await.expect("html");
    assert!(html.contains("deux facteurs") || html.contains("two factors"), "{html}");
    // The password, then the passkey.
    assert_eq!(password(&server, &c, &signin).await, VERIFY, "the passkey is asked after the password");
    let r = passkey_step(&server, &c, &mut key).await;
    assert_eq!(r.status(), 303);
    let claims = id_claims(&server, &secret, &location(&r), &p).await;
    assert_eq!(claims["acr"], MFA);
    assert_eq!(claims["amr"], json!(["pwd", "pop", "user", "mfa"]));
    let details = newest_signin(&server).await;
    assert_eq!(
        (details["method"].clone(), details["acr_requested"].clone()),
        (json!("password_passkey"), json!([MFA]))
    );
}

async fn a_password_session_steps_up_for_mfa(db: Db) {
    let (server, secret, mut key) = passkey_server(db).await;
    let b = browser();
    let (_, signin) = authorize(&server, &b, &[]).await;
    password(&server, &b, &signin).await;
    // The session has the password alone: not silently enough for mfa…
    let (_, loc) = authorize(&server, &b, &[("acr_values", MFA), ("prompt", "none")]).await;
    assert_error_redirect(&loc, &["login_required"], "st", &server.base);
    let (p, signin) = authorize(&server, &b, &[("acr_values", MFA)]).await;
    assert!(signin.starts_with("/signin?request="), "a step-up, not a silent code: {signin}");
    // …but for a request that does not ask for it.
    let (_, loc) = authorize(&server, &b, &[("acr_values", PASSWORD_ACR)]).await;
    assert!(loc.starts_with(REDIRECT) && loc.contains("code="), "{loc}");
    // Stepped up, the session answers mfa silently.
    assert_eq!(password(&server, &b, &signin).await, VERIFY);
    let r = passkey_step(&server, &b, &mut key).await;
    assert_eq!(id_claims(&server, &secret, &location(&r), &p).await["acr"], MFA);
    let (p, loc) = authorize(&server, &b, &[("acr_values", MFA), ("prompt", "none")]).await;
    assert_eq!(id_claims(&server, &secret, &loc, &p).await["acr"], MFA);
}

async fn an_account_without_a_second_factor_gets_the_acr_reached(db: Db) {
    let (server, _, secret) = platform_server(db).await;
    let b = browser();
    let (p, signin) = authorize(&server, &b, &[("acr_values", MFA)]).await;
    // Nothing to step up to: signed in, and the ID token says what was reached.
    let callback = password(&server, &b, &signin).await;
    let claims = id_claims(&server, &secret, &callback, &p).await;
    assert_eq!((claims["acr"].clone(), claims["amr"].clone()), (json!(PASSWORD_ACR), json!(["pwd"])));
    assert_eq!(newest_signin(&server).await["acr_requested"], json!([MFA]));
    // The session answers the next request for mfa silently, for the same reason.
    let (p, loc) = authorize(&server, &b, &[("acr_values", MFA), ("prompt", "none")]).await;
    assert_eq!(id_claims(&server, &secret, &loc, &p).await["acr"], PASSWORD_ACR);
}

async fn rename_parked_table(server: &TestServer, from: &str, to: &str) {
    let sql = format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(&sql).execute(server.app.store.pool()).await.expect("rename");
}

async fn a_parked_request_that_cannot_be_read_is_an_internal_error(db: Db) {
    let server = TestServer::start_on_localhost(db).await;
    server.add_account(EMAIL, Some(("cc-girou", "CC du Girou"))).await;
    server.add_client("platform").await;
    let b = browser();
    let (_, signin) = authorize(&server, &b, &[]).await;
    let form = Form::of(&b, &server.url(&signin)).await;
    let fields = [("email", EMAIL), ("password", PASSWORD)];
    rename_parked_table(&server, "auth_requests", "auth_requests_away").await;
    let r = form.submit(&b, &server.url("/signin"), &fields, &[]).await;
    assert_eq!(r.status(), 500, "a store failure is not an expired request");
    let r = form.submit(&b, &server.url("/signin/passkey"), &[("credential", "{}")], &[]).await;
    assert_eq!(r.status(), 500);
    rename_parked_table(&server, "auth_requests_away", "auth_requests").await;
    // A request that is not there is still "expired", on both forms.
    let plain = Form::of(&b, &server.url("/signin")).await;
    let gone = [("request", "no-such-request"), ("email", EMAIL), ("password", PASSWORD)];
    let r = plain.submit(&b, &server.url("/signin"), &gone, &[]).await;
    assert_eq!(r.status(), 400);
    let r = plain.submit(&b, &server.url("/signin/passkey"), &gone[..1], &[]).await;
    assert_eq!(r.status(), 400);
    // And the real one, readable again, signs in.
    let r = form.submit(&b, &server.url("/signin"), &fields, &[]).await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with(REDIRECT), "{}", location(&r));
}
