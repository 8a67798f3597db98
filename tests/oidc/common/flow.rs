//! The authorization code flow as a relying party runs it: by hand, one
//! parameter at a time (`authorize_url`, `exchange`), on any instance of a
//! cluster (`code_at`, `exchange_at`), or through the `openidconnect` crate
//! (`code_flow`); and the token responses, ID tokens and refreshes it gets.

use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreIdToken, CoreIdTokenClaims, CoreTokenResponse};
use openidconnect::{AuthorizationCode, CsrfToken, Nonce, PkceCodeChallenge, Scope};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::http::{browser, http_client, location, query};
use super::server::{Rp, TestServer};
use super::signin::{SignIn, sign_in, submit_sign_in};
use super::{PASSWORD, REDIRECT};

/// An S256 challenge and its verifier.
pub struct Pkce {
    pub challenge: String,
    pub verifier: String,
}

impl Pkce {
    pub fn random() -> Pkce {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        Pkce { challenge: challenge.as_str().to_string(), verifier: verifier.secret().to_string() }
    }
}

/// An authorization URL built by hand, its parameters in the order given.
pub fn authorize_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&server.url("/authorize")).expect("authorize url");
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// A valid code-flow request for `client_id`: scope openid, S256 PKCE.
pub fn code_request<'a>(client_id: &'a str, pkce: &'a Pkce, state: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", state),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
}

/// The same request with `extra` parameters added or replacing existing ones.
pub fn with<'a>(mut params: Vec<(&'a str, &'a str)>, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        params.push((k, v));
    }
    params
}

/// The code of a successful callback (checks it goes to the client).
pub fn code_of(callback: &str) -> String {
    assert!(callback.starts_with(REDIRECT), "expected a redirect to the client, got {callback}");
    let q = query(callback);
    assert!(!q.contains_key("error"), "unexpected error: {callback}");
    q.get("code").cloned().expect("code in the callback")
}

/// GET on the authorization endpoint with a live session: the browser must
/// be sent straight back to the client, no page in between.
pub async fn authorize_silently(browser: &reqwest::Client, url: &str) -> String {
    let r = browser.get(url).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    let loc = location(&r);
    assert!(loc.starts_with(REDIRECT), "expected a redirect to the client without a page, got {loc}");
    loc
}

/// GET on the authorization endpoint that must lead to the sign-in page;
/// returns the sign-in page path.
pub async fn expect_sign_in_page(browser: &reqwest::Client, url: &str) -> String {
    let r = browser.get(url).send().await.expect("authorize");
    assert_eq!(r.status(), 303);
    let loc = location(&r);
    assert!(loc.starts_with("/signin?request="), "expected the sign-in page, got {loc}");
    loc
}

/// The token request for a code, as the RP sends it: HTTP Basic when there
/// is a secret, else `client_id` in the form.
pub async fn exchange(
    server: &TestServer,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    let request = http_client().post(server.url("/token"));
    let request = match secret {
        Some(s) => request.basic_auth(client_id, Some(s)),
        None => {
            form.push(("client_id", client_id));
            request
        }
    };
    request.form(&form).send().await.expect("token request")
}

/// A successful token response: 200 JSON, Bearer, `expires_in`, no-store.
pub async fn token_json(r: reqwest::Response) -> Value {
    let status = r.status();
    let cache = r.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body: Value = r.json().await.expect("token response JSON");
    assert_eq!(status, 200, "token response: {body}");
    assert_eq!(cache, "no-store");
    assert_eq!(body["token_type"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("bearer"));
    assert!(body["expires_in"].as_i64().is_some_and(|e| e > 0), "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    body
}

/// A token-endpoint error: its status and JSON `error`.
pub async fn token_error(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let cache = r.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body: Value = r.json().await.expect("error JSON");
    assert_eq!(cache, "no-store");
    (status, body["error"].as_str().unwrap_or_default().to_string())
}

/// Exchanges `code` and returns the token response (checked).
pub async fn tokens(server: &TestServer, client_id: &str, secret: Option<&str>, code: &str, verifier: &str) -> Value {
    token_json(exchange(server, client_id, secret, code, verifier).await).await
}

/// A JWT's header or payload (`part` 0 or 1), unverified.
pub fn jwt_part(jwt: &str, part: usize) -> Value {
    let segment = jwt.split('.').nth(part).expect("JWT segment");
    serde_json::from_slice(&coop_idp::crypto::b64url_decode(segment).expect("base64url")).expect("JSON")
}

/// Verifies an ID token with the RP library (signature, iss, aud, exp) and
/// the nonce: equal to `nonce`, or absent when none was sent.
pub fn verify_id_token(rp: &Rp, id_token: &str, nonce: Option<&str>) -> CoreIdTokenClaims {
    let token: CoreIdToken = id_token.parse().expect("ID token parses");
    let verifier = rp.id_token_verifier().set_allowed_algs(vec![
        openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        openidconnect::core::CoreJwsSigningAlgorithm::EdDsa,
    ]);
    let claims = match nonce {
        Some(n) => token.claims(&verifier, &Nonce::new(n.to_string())),
        None => token.claims(&verifier, |n: Option<&Nonce>| match n {
            None => Ok(()),
            Some(_) => Err("nonce present although none was sent".to_string()),
        }),
    };
    claims.expect("valid ID token").clone()
}

/// Signs in through the sign-in page with the usual request plus `extra`,
/// exchanges the code; returns the token response.
pub async fn sign_in_for_tokens(
    server: &TestServer,
    browser: &reqwest::Client,
    client_id: &str,
    secret: Option<&str>,
    extra: &[(&str, &str)],
    email: &str,
) -> Value {
    let p = Pkce::random();
    let url = authorize_url(server, &with(code_request(client_id, &p, "st"), extra));
    let callback = sign_in(server, browser, &url, email).await;
    tokens(server, client_id, secret, &code_of(&callback), &p.verifier).await
}

/// With a live session: a code without any page, exchanged; returns the
/// token response.
pub async fn silent_tokens(
    server: &TestServer,
    browser: &reqwest::Client,
    client_id: &str,
    secret: Option<&str>,
    extra: &[(&str, &str)],
) -> Value {
    let p = Pkce::random();
    let url = authorize_url(server, &with(code_request(client_id, &p, "st"), extra));
    let callback = authorize_silently(browser, &url).await;
    tokens(server, client_id, secret, &code_of(&callback), &p.verifier).await
}

pub fn id_token_of(tokens: &Value) -> String {
    tokens["id_token"].as_str().expect("id_token").to_string()
}

/// The response must be an error page: 400, HTML, and no redirect at all.
pub async fn assert_error_page(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 400, "{what}: expected an error page");
    assert!(r.headers().get("location").is_none(), "{what}: must redirect nowhere");
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("text/html"), "{what}: {ct}");
}

/// An error redirect to the client: `error` among `codes`, state and iss
/// echoed, no code.
pub fn assert_error_redirect(loc: &str, codes: &[&str], state: &str, issuer: &str) {
    assert!(loc.starts_with(REDIRECT), "expected an error redirect to the client, got {loc}");
    let q = query(loc);
    let error = q.get("error").map(String::as_str).unwrap_or_default();
    assert!(codes.contains(&error), "error {error:?} not among {codes:?}: {loc}");
    assert_eq!(q.get("state").map(String::as_str), Some(state), "state echoed exactly");
    assert_eq!(q.get("iss").map(String::as_str), Some(issuer), "iss (RFC 9207)");
    for leaked in ["code", "access_token", "id_token"] {
        assert!(!q.contains_key(leaked), "{leaked} in an error redirect: {loc}");
    }
    assert!(!loc.contains('#'), "no fragment response: {loc}");
}

// ---------------------------------------------------------------------------
// The same flow in plain HTTP by base URL, each step on any instance.

pub fn authorize_url_at(base: &str, client_id: &str, pkce: &Pkce, scope: &str) -> String {
    let mut u = url::Url::parse(&format!("{base}/authorize")).expect("URL");
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "st-1")
        .append_pair("nonce", "n-1")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    u.to_string()
}

/// Authorize on `authorize_base`, sign in on `signin_base`; the code.
pub async fn code_at(
    browser: &reqwest::Client,
    authorize_base: &str,
    signin_base: &str,
    client_id: &str,
    email: &str,
    pkce: &Pkce,
) -> String {
    let r = browser
        .get(authorize_url_at(authorize_base, client_id, pkce, "openid email offline_access"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 303, "authorize redirects to the sign-in page");
    let signin = location(&r);
    assert!(signin.starts_with("/signin?request="), "{signin}");
    let r = SignIn::new(email, PASSWORD).on(&signin).post(browser, signin_base).await;
    assert_eq!(r.status(), 303, "sign-in succeeds");
    let callback = location(&r);
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let q = query(&callback);
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    q.get("code").expect("code").clone()
}

/// Where `/authorize` on `base` sends a browser without a session.
pub async fn fresh_authorize(base: &str, client_id: &str) -> String {
    let r =
        browser().get(authorize_url_at(base, client_id, &Pkce::random(), "openid")).send().await.expect("authorize");
    location(&r)
}

/// A token request (`client_secret_basic`); status and JSON body.
pub async fn token_at(base: &str, client_id: &str, secret: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let r = http_client()
        .post(format!("{base}/token"))
        .basic_auth(client_id, Some(secret))
        .form(form)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

pub async fn exchange_at(
    base: &str,
    client_id: &str,
    secret: &str,
    code: &str,
    pkce: &Pkce,
) -> (u16, serde_json::Value) {
    token_at(
        base,
        client_id,
        secret,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await
}

// ---------------------------------------------------------------------------
// Through the relying-party library.

/// Runs the code flow for `rp` in `browser` (signing in with `PASSWORD`
/// when the browser has no session yet) with `openid` plus `scopes`;
/// returns the token response and the nonce sent.
pub async fn code_flow(
    server: &TestServer,
    rp: &Rp,
    browser: &reqwest::Client,
    email: &str,
    scopes: &[&str],
) -> (CoreTokenResponse, Nonce) {
    code_flow_as(server, rp, browser, (email, PASSWORD), scopes).await
}

/// The same, signing in with `(email, password)`.
pub async fn code_flow_as(
    server: &TestServer,
    rp: &Rp,
    browser: &reqwest::Client,
    (email, password): (&str, &str),
    scopes: &[&str],
) -> (CoreTokenResponse, Nonce) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for s in scopes {
        request = request.add_scope(Scope::new(s.to_string()));
    }
    let (url, state, nonce) = request.url();
    let r = browser.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(r.status(), 303, "authorize redirects");
    let next = location(&r);
    let callback =
        if next.starts_with("/signin") { submit_sign_in(server, browser, &next, email, password).await } else { next };
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let q = query(&callback);
    assert_eq!(q.get("state"), Some(state.secret()));
    let code = q.get("code").expect("code");
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(&http_client())
        .await
        .expect("token response");
    (tokens, nonce)
}

/// A refresh request in plain HTTP (client_secret_basic), to see the status,
/// the headers and the error body that the RP library hides.
pub async fn refresh_raw(
    server: &TestServer,
    client_id: &str,
    secret: &str,
    refresh_token: &str,
    scope: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let r = http_client()
        .post(server.url("/token"))
        .basic_auth(client_id, Some(secret))
        .form(&form)
        .send()
        .await
        .expect("token request");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.json().await.expect("JSON token response");
    (status, headers, body)
}

/// The claims userinfo answers (200) for this bearer token.
pub async fn userinfo(server: &TestServer, access_token: &str) -> Value {
    let r = http_client().get(server.url("/userinfo")).bearer_auth(access_token).send().await.expect("userinfo");
    assert_eq!(r.status(), 200);
    r.json().await.expect("userinfo JSON")
}

/// Status of a userinfo GET with this bearer token.
pub async fn userinfo_status(server: &TestServer, access_token: &str) -> StatusCode {
    http_client().get(server.url("/userinfo")).bearer_auth(access_token).send().await.expect("userinfo").status()
}
