//! RP-Initiated Logout plan: one test per module. After each logout that
//! signs the user out, a `prompt=none` request must get `login_required`;
//! a request the provider refuses redirects nowhere.

use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow};
use openidconnect::{CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, TokenResponse};
use serde_json::Value;

use crate::common::*;
use crate::on_both_databases;

const EMAIL: &str = "marie.dupont@cc-girou.fr";
const SIGNED_OUT: &str = "http://127.0.0.1:9/signed-out";

on_both_databases!(
    rp_initiated_logout_discovery_endpoint_verification,
    oidcc_rp_initiated_logout,
    rp_initiated_logout_no_state,
    rp_initiated_logout_bad_post_logout_redirect_uri,
    rp_initiated_logout_query_added_to_post_logout_redirect_uri,
    rp_initiated_logout_modified_id_token_hint,
    rp_initiated_logout_bad_id_token_hint,
    rp_initiated_logout_no_id_token_hint,
    rp_initiated_logout_no_params,
    rp_initiated_logout_no_post_logout_redirect_uri,
    rp_initiated_logout_only_state,
    logout_ends_access_and_refresh_tokens_at_once,
);

/// A server with one account and one client, a browser signed in to it, and
/// the ID token it received.
struct SignedIn {
    server: TestServer,
    rp: Rp,
    browser: reqwest::Client,
    id_token: String,
    access_token: String,
    refresh_token: Option<String>,
    secret: String,
}

async fn signed_in(db: Db) -> SignedIn {
    let server = TestServer::start(db).await;
    server.add_account(EMAIL, None).await;
    let secret = server.add_client("platform").await;
    let rp = server.rp("platform", Some(&secret)).await;
    let browser = browser();
    let (tokens, _) = code_flow(&server, &rp, &browser, EMAIL, &["offline_access"]).await;
    let id_token = tokens.id_token().expect("id_token").to_string();
    let access_token = tokens.access_token().secret().clone();
    let refresh_token = tokens.refresh_token().map(|r| r.secret().clone());
    SignedIn { server, rp, browser, id_token, access_token, refresh_token, secret }
}

/// GET /logout with these parameters, in the browser.
async fn logout(s: &SignedIn, params: &[(&str, &str)]) -> reqwest::Response {
    let mut url = url::Url::parse(&s.server.url("/logout")).expect("url");
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    s.browser.get(url.as_str()).send().await.expect("logout")
}

/// A `prompt=none` authorization in the browser; returns the redirect's query.
async fn prompt_none(s: &SignedIn) -> std::collections::HashMap<String, String> {
    let (challenge, _verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, _) =
        s.rp.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_prompt(CoreAuthPrompt::None)
            .set_pkce_challenge(challenge)
            .url();
    let r = s.browser.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert!(to.starts_with(REDIRECT), "prompt=none always answers the client: {to}");
    let q = query(&to);
    assert_eq!(q.get("state"), Some(state.secret()));
    q
}

async fn assert_signed_out(s: &SignedIn) {
    let q = prompt_none(s).await;
    assert_eq!(q.get("error").map(String::as_str), Some("login_required"), "{q:?}");
    assert!(!q.contains_key("code"));
}

async fn assert_still_signed_in(s: &SignedIn) {
    let q = prompt_none(s).await;
    assert!(q.contains_key("code"), "the session is still live: {q:?}");
    assert!(!q.contains_key("error"));
}

/// A refused logout: an error page, no redirect anywhere.
fn assert_no_redirect(r: reqwest::Response) {
    let status = r.status();
    assert!(!status.is_redirection(), "no redirect, got {status} to {}", location(&r));
    assert!(r.headers().get("location").is_none());
    assert_eq!(status, 400);
}

/// A page (200, no redirect) showing that the user is signed out.
async fn assert_signed_out_page(r: reqwest::Response) {
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    let html = r.text().await.expect("html");
    assert!(html.contains("déconnecté") || html.contains("signed out"), "{html}");
    assert!(hidden(&html, "csrf").is_none(), "not a confirmation form");
}

async fn rp_initiated_logout_discovery_endpoint_verification(db: Db) {
    let server = TestServer::start(db).await;
    let metadata = discovery(&server.base).await;
    assert_eq!(metadata["end_session_endpoint"], server.url("/logout"));
    // The advertised endpoint answers (no params: the signed-out page).
    let r = browser().get(server.url("/logout")).send().await.expect("end_session_endpoint");
    assert_eq!(r.status(), 200);
}

async fn oidcc_rp_initiated_logout(db: Db) {
    let s = signed_in(db).await;
    assert_still_signed_in(&s).await;
    let state = "af0ifjsldkj-Logout_State.42";
    let r =
        logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", SIGNED_OUT), ("state", state)]).await;
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert!(to.starts_with(&format!("{SIGNED_OUT}?")), "{to}");
    let q = query(&to);
    assert_eq!(q.get("state").map(String::as_str), Some(state));
    assert!(!q.contains_key("iss"), "only state is added: {to}");
    assert_signed_out(&s).await;
}

async fn rp_initiated_logout_no_state(db: Db) {
    let s = signed_in(db).await;
    let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", SIGNED_OUT)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), SIGNED_OUT, "redirect without a state");
    assert_signed_out(&s).await;
}

async fn rp_initiated_logout_bad_post_logout_redirect_uri(db: Db) {
    let s = signed_in(db).await;
    for bad in ["http://127.0.0.1:9/elsewhere", "http://127.0.0.1:9/signed-out/", "http://127.0.0.1:9/signed-outx"] {
        let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", bad), ("state", "s")]).await;
        assert_no_redirect(r);
    }
    // A refused request does not sign out; the registered URI then works.
    assert_still_signed_in(&s).await;
    let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", SIGNED_OUT)]).await;
    assert_eq!(r.status(), 303);
    assert_signed_out(&s).await;
}

async fn rp_initiated_logout_query_added_to_post_logout_redirect_uri(db: Db) {
    let s = signed_in(db).await;
    let with_query = format!("{SIGNED_OUT}?foo=bar");
    let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", &with_query)]).await;
    assert_no_redirect(r);
    assert_still_signed_in(&s).await;
    let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", SIGNED_OUT)]).await;
    assert_eq!(location(&r), SIGNED_OUT);
    assert_signed_out(&s).await;
}

fn b64(v: &Value) -> String {
    coop_idp::crypto::b64url(v.to_string().as_bytes())
}

async fn rp_initiated_logout_modified_id_token_hint(db: Db) {
    let s = signed_in(db).await;
    let mut header = jwt_part(&s.id_token, 0);
    let payload = jwt_part(&s.id_token, 1);
    header["alg"] = "none".into();
    let unsigned = format!("{}.{}.", b64(&header), b64(&payload));
    let parts: Vec<&str> = s.id_token.split('.').collect();
    let mut changed = payload.clone();
    changed["sub"] = "someone-else".into();
    let resigned_payload = format!("{}.{}.{}", parts[0], b64(&changed), parts[2]);
    for hint in [unsigned, resigned_payload] {
        let r = logout(&s, &[("id_token_hint", &hint), ("post_logout_redirect_uri", SIGNED_OUT), ("state", "s")]).await;
        assert_no_redirect(r);
    }
    assert_still_signed_in(&s).await;
    let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", SIGNED_OUT)]).await;
    assert_eq!(location(&r), SIGNED_OUT, "the untouched hint is accepted");
    assert_signed_out(&s).await;
}

async fn rp_initiated_logout_bad_id_token_hint(db: Db) {
    let s = signed_in(db).await;
    // Same claims and header, signed by a key that is not the provider's.
    let foreign_dir = tempfile::tempdir().expect("tempdir");
    let foreign = coop_idp::keys::KeyManager::open(foreign_dir.path(), 900, s.server.clock.now_ms()).expect("keys");
    let payload = jwt_part(&s.id_token, 1);
    let forged = foreign.current().sign(jsonwebtoken::Algorithm::RS256, "JWT", &payload).expect("sign");
    let mut header = jwt_part(&forged, 0);
    header["kid"] = jwt_part(&s.id_token, 0)["kid"].clone();
    let forged_parts: Vec<&str> = forged.split('.').collect();
    let forged_with_our_kid = format!("{}.{}.{}", b64(&header), forged_parts[1], forged_parts[2]);
    for hint in [forged.as_str(), forged_with_our_kid.as_str(), "not-a-jwt"] {
        let r = logout(&s, &[("id_token_hint", hint), ("post_logout_redirect_uri", SIGNED_OUT)]).await;
        assert_no_redirect(r);
    }
    assert_still_signed_in(&s).await;
    let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", SIGNED_OUT)]).await;
    assert_eq!(location(&r), SIGNED_OUT);
    assert_signed_out(&s).await;
}

async fn rp_initiated_logout_no_id_token_hint(db: Db) {
    let s = signed_in(db).await;
    let r = logout(&s, &[("client_id", "platform"), ("post_logout_redirect_uri", SIGNED_OUT), ("state", "st1")]).await;
    // Without a hint the user is asked to confirm: no redirect yet, still signed in.
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    let html = r.text().await.expect("html");
    let csrf = hidden(&html, "csrf").expect("confirmation form");
    assert_still_signed_in(&s).await;

    // A forged confirmation (wrong CSRF) does nothing.
    let forged = s
        .browser
        .post(s.server.url("/logout/confirm"))
        .form(&[("csrf", "x".repeat(43).as_str()), ("client_id", "platform"), ("post_logout_redirect_uri", SIGNED_OUT)])
        .send()
        .await
        .expect("confirm");
    assert_eq!(forged.status(), 403);
    assert_still_signed_in(&s).await;

    // Confirmed: signed out, then sent to the registered URI with the state.
    let mut form = vec![("csrf".to_string(), csrf)];
    for name in ["client_id", "post_logout_redirect_uri", "state"] {
        form.push((name.to_string(), hidden(&html, name).expect("hidden field")));
    }
    let r = s.browser.post(s.server.url("/logout/confirm")).form(&form).send().await.expect("confirm");
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("{SIGNED_OUT}?state=st1"));
    assert_signed_out(&s).await;
}

/// The confirmation page (200, no redirect, a form with a CSRF token); the token.
async fn assert_confirmation(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    let html = r.text().await.expect("html");
    hidden(&html, "csrf").expect("a confirmation form")
}

async fn confirm(s: &SignedIn, form: &[(&str, &str)]) -> reqwest::Response {
    s.browser.post(s.server.url("/logout/confirm")).form(form).send().await.expect("confirm")
}

async fn rp_initiated_logout_no_params(db: Db) {
    let s = signed_in(db).await;
    assert_still_signed_in(&s).await;
    // Any page can send the browser here: nothing changes until the user
    // confirms, whether the request is a GET or a POST.
    let csrf = assert_confirmation(logout(&s, &[]).await).await;
    assert_still_signed_in(&s).await;
    let empty: &[(&str, &str)] = &[];
    let posted = s.browser.post(s.server.url("/logout")).form(empty).send().await.expect("logout");
    assert_confirmation(posted).await;
    assert_still_signed_in(&s).await;
    // A confirmation without the CSRF token changes nothing either.
    assert_eq!(confirm(&s, empty).await.status(), 403);
    assert_still_signed_in(&s).await;
    assert_signed_out_page(confirm(&s, &[("csrf", &csrf)]).await).await;
    assert_signed_out(&s).await;
}

async fn rp_initiated_logout_no_post_logout_redirect_uri(db: Db) {
    let s = signed_in(db).await;
    assert_signed_out_page(logout(&s, &[("id_token_hint", &s.id_token)]).await).await;
    assert_signed_out(&s).await;
}

async fn rp_initiated_logout_only_state(db: Db) {
    let s = signed_in(db).await;
    let csrf = assert_confirmation(logout(&s, &[("state", "only-state")]).await).await;
    assert_still_signed_in(&s).await;
    assert_signed_out_page(confirm(&s, &[("csrf", &csrf), ("state", "only-state")]).await).await;
    assert_signed_out(&s).await;
}

async fn logout_ends_access_and_refresh_tokens_at_once(db: Db) {
    let s = signed_in(db).await;
    assert_eq!(userinfo_status(&s.server, &s.access_token).await, 200, "live before the logout");
    let r = logout(&s, &[("id_token_hint", &s.id_token), ("post_logout_redirect_uri", SIGNED_OUT)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(userinfo_status(&s.server, &s.access_token).await, 401, "access token ended with the session");
    let refresh = s.refresh_token.as_deref().expect("refresh token");
    let (status, _, body) = refresh_raw(&s.server, "platform", &s.secret, refresh, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_signed_out(&s).await;
}
